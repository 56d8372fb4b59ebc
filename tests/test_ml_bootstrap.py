"""Bootstrap decisions without Ray: is the registry complete, what history is learnt from, and
`scalper train all --bootstrap` doing nothing (and starting nothing) when the models exist."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from scalper.config import Config, default_document, with_overrides
from scalper.ml.bootstrap import bootstrap_bars, registry_status
from scalper.ml.models import spec
from scalper.ml.registry import MODEL_NAMES, ModelCard, Registry

ROOT = Path(__file__).resolve().parents[1]
ES = str(ROOT / "data" / "samples" / "es_ticks_2013-09.parquet")


class _Booster:
    """Stands in for an xgboost Booster: the registry only calls save_model."""

    def save_model(self, path: str) -> None:
        Path(path).write_bytes(b"not a real model")


def _register(root: Path, cfg: Config, name: str, features: list[str] | None = None) -> str:
    s = spec(cfg, name)
    card = ModelCard(name=name, kind=s.kind, features=features or list(s.features), git_commit="test")
    return Registry(root).save(_Booster(), card).version


def _complete(root: Path, cfg: Config) -> None:
    for name in MODEL_NAMES:
        _register(root, cfg, name)


def test_an_empty_registry_is_incomplete_and_names_every_missing_model(tmp_path):
    status = registry_status(tmp_path / "models", Config())
    assert not status.complete
    assert status.versions == {"validator": None, "regime": None, "sizer": None}
    assert status.problems == ["validator: no model", "regime: no model", "sizer: no model"]


def test_a_registry_with_current_models_of_all_three_is_complete(tmp_path):
    cfg = Config()
    _complete(tmp_path, cfg)
    status = registry_status(tmp_path, cfg)
    assert status.complete and status.problems == []
    assert status.versions == {"validator": "v0001", "regime": "v0001", "sizer": "v0001"}


def test_a_registry_missing_one_model_is_incomplete(tmp_path):
    cfg = Config()
    _register(tmp_path, cfg, "validator")
    _register(tmp_path, cfg, "regime")
    status = registry_status(tmp_path, cfg)
    assert not status.complete and status.problems == ["sizer: no model"]


def test_a_model_trained_on_another_feature_list_makes_the_registry_stale(tmp_path):
    cfg = Config()
    _complete(tmp_path, cfg)
    other = with_overrides(
        cfg, {"indicators.ema_lengths": [9, 21, 50, 100], "strategies.momentum.trend_ema": 50}
    )
    status = registry_status(tmp_path, other)
    assert not status.complete
    assert any(p.startswith("validator v0001: trained on another feature list") for p in status.problems)
    assert "dist_ema_100" in " ".join(status.problems)


def test_latest_naming_a_version_without_its_model_file_is_incomplete(tmp_path):
    cfg = Config()
    _complete(tmp_path, cfg)
    (tmp_path / "regime" / "v0001" / "model.ubj").unlink()
    status = registry_status(tmp_path, cfg)
    assert not status.complete and status.problems[0].startswith("regime: `latest` names v0001")


def _bootstrap_cfg(**changes) -> Config:
    return with_overrides(
        Config(),
        {
            "feed.replay.path": ES,
            "ml.bootstrap_symbols": ["SYN1", "SYN2"],
            "ml.bootstrap_minutes": 300,
            **changes,
        },
    )


def test_bootstrap_history_is_the_synthetic_symbols_plus_the_replay_file():
    bars, source = bootstrap_bars(_bootstrap_cfg())
    assert sorted(bars) == ["ES", "SYN1", "SYN2"]
    assert len(bars["SYN1"]) == 300 and len(bars["SYN2"]) == 300
    assert len(bars["ES"]) == 2264  # the bundled ticks as 1-minute bars
    assert source["synthetic_symbols"] == ["SYN1", "SYN2"] and source["data_symbols"] == ["ES"]
    assert source["bootstrap"] is True and source["synthetic_minutes"] == 300


def test_bootstrap_without_the_replay_file_learns_from_synthetic_history_only():
    bars, source = bootstrap_bars(_bootstrap_cfg(**{"ml.bootstrap_replay": False}))
    assert sorted(bars) == ["SYN1", "SYN2"] and source["data"] is None


def test_bootstrap_refuses_a_synthetic_symbol_named_like_a_real_one():
    with pytest.raises(ValueError, match="'ES'"):
        bootstrap_bars(_bootstrap_cfg(**{"ml.bootstrap_symbols": ["ES"]}))


def test_bootstrap_with_nothing_to_learn_from_is_an_error():
    with pytest.raises(ValueError, match="no history"):
        bootstrap_bars(_bootstrap_cfg(**{"ml.bootstrap_symbols": [], "ml.bootstrap_replay": False}))


# ------------------------------------------------------------------------------------ CLI


def run(argv: list[str]) -> int:
    """`scalper ARGV` (the real command line parser)."""
    from scalper.cli import main

    return main(argv)


def _config_file(tmp_path: Path) -> Path:
    doc = default_document()
    doc["ml"]["registry"] = str(tmp_path / "models")
    doc["ml"]["datasets_dir"] = str(tmp_path / "datasets")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    return path


def test_bootstrap_with_a_complete_registry_does_nothing_and_says_so(tmp_path, capsys, monkeypatch):
    import scalper.cli_ml as cli_ml

    def no_training(*args, **kwargs):
        raise AssertionError("bootstrap trained although the registry was complete")

    monkeypatch.setattr(cli_ml, "_train_models", no_training)
    _complete(tmp_path / "models", Config())
    t0 = time.perf_counter()
    assert run(["--config", str(_config_file(tmp_path)), "train", "all", "--bootstrap"]) == 0
    assert time.perf_counter() - t0 < 5.0
    out = capsys.readouterr().out
    assert "bootstrap: nothing to do" in out and "validator v0001, regime v0001, sizer v0001" in out
    assert not (tmp_path / "datasets").exists()
    assert Registry(tmp_path / "models").versions("validator") == ["v0001"]


def test_bootstrap_trains_every_model_when_one_is_missing(tmp_path, capsys, monkeypatch):
    import scalper.cli_ml as cli_ml

    calls = []

    def fake_training(cfg, dataset, models, registry, data="parquet"):
        calls.append((Path(dataset), list(models), registry, data))
        raise ValueError("stop here")

    monkeypatch.setattr(cli_ml, "_train_models", fake_training)
    cfg_path = _config_file(tmp_path)
    doc = json.loads(cfg_path.read_text())
    doc["feed"]["replay"]["path"] = ES
    doc["ml"]["bootstrap_symbols"] = ["SYN1"]
    doc["ml"]["bootstrap_minutes"] = 600
    cfg_path.write_text(json.dumps(doc))
    _register(tmp_path / "models", Config(), "validator")
    assert run(["--config", str(cfg_path), "train", "all", "--bootstrap"]) == 3
    captured = capsys.readouterr()
    assert "regime: no model; sizer: no model" in captured.out
    assert "error: bootstrap: stop here" in captured.err
    dataset = tmp_path / "datasets" / "bootstrap"
    assert calls == [(dataset, ["validator", "regime", "sizer"], str(tmp_path / "models"), "memory")]
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["symbols"] == ["ES", "SYN1"] and manifest["signals"] > 0


def test_bootstrap_is_only_for_all_models(tmp_path, capsys):
    assert run(["train", "validator", "--bootstrap", "--registry", str(tmp_path)]) == 2
    assert "train all --bootstrap" in capsys.readouterr().err


def test_train_needs_a_dataset_unless_it_bootstraps(capsys):
    assert run(["train", "all"]) == 2
    assert "--dataset DIR is required" in capsys.readouterr().err


def test_set_overrides_are_validated_like_the_config_file(tmp_path, capsys):
    assert run(["train", "all", "--dataset", str(tmp_path), "--set", "ml.walk_forward_train_days=0"]) == 2
    assert "ml.walk_forward_train_days" in capsys.readouterr().err
    assert run(["train", "all", "--dataset", str(tmp_path), "--set", "ml.nope=1"]) == 2
    assert "ml.nope: unknown setting" in capsys.readouterr().err


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory):
    """A 2-symbol x 2-day synthetic dataset and training.xgb's splits of it."""
    from scalper.backtest import load_bars
    from scalper.ml.dataset import collect, write_dataset
    from training.xgb import plan

    cfg = with_overrides(Config(), {"feed.synthetic.minutes": 2880, "ml.num_boost_round": 5})
    root = tmp_path_factory.mktemp("ds")
    signals, regime = collect(cfg, load_bars(cfg, synthetic=True, symbols=["AAA", "BBB"]))
    write_dataset(root, cfg, signals, regime, {"synthetic": True})
    specs, plans = plan(cfg, root, ["validator", "regime", "sizer"])
    return cfg, root, specs, plans


def test_in_memory_training_rows_are_the_rows_ray_data_selects_from_the_parquet_files(small_plan):
    """The bootstrap's in-memory Ray Datasets and `scalper train`'s Parquet reads train each model
    on the same rows, purged: no training label is known after its model's held-out part starts."""
    import pyarrow.parquet as pq

    from scalper.ml.features import feature_names
    from training.xgb import memory_frames, regime_selector, signal_selector

    cfg, root, specs, plans = small_plan
    names = feature_names(cfg)
    frames = memory_frames(specs, plans, names)
    assert set(frames) == {"regime", "validator", "sizer"}  # one dataset per model
    table = pq.read_table(root / "signals.parquet").to_pandas()
    cut, sizer_cut = plans["validator"]["cut"], plans["sizer"]["cut"]
    for name, selector in (
        ("validator", signal_selector(names, None, cut, False)),
        ("sizer", signal_selector(names, cut, sizer_cut, True)),
    ):
        got = selector(table).reset_index(drop=True)
        assert len(got) > 10 and got.equals(frames[name])
        assert (plans[name]["train"]["exit_ts"] <= plans[name]["cut"]).all()
    assert cut <= plans["sizer"]["train"]["ts"].min()
    s = specs["regime"]
    got = regime_selector(s, plans["regime"]["cut"])(pq.read_table(root / "regime.parquet").to_pandas())
    assert got.reset_index(drop=True).equals(frames["regime"])
    assert (plans["regime"]["train"]["label_ts"] <= plans["regime"]["cut"]).all()


def _collective_worker(rank, args, config, shards, results) -> None:
    from xgboost import collective

    from training.xgb import fit_shards

    with collective.CommunicatorContext(**args):
        boosters, metrics = fit_shards(config, shards)
    results.put((rank, metrics["shard_rows"], boosters["sizer"].save_raw("json")))


def test_two_workers_each_with_half_of_every_models_rows_build_one_model_together(small_plan):
    """What a 2-worker Ray Train run does, without Ray: XGBoost's collective over two processes,
    each with the half of every model's dataset an equal split gives it. It must finish (a
    worker without rows of one model made the other wait forever) and agree on every model."""
    import multiprocessing as mp

    from xgboost.tracker import RabitTracker

    from scalper.ml.features import feature_names
    from training.xgb import loop_config, memory_frames

    cfg, _, specs, plans = small_plan
    frames = memory_frames(specs, plans, feature_names(cfg))
    config = loop_config(cfg, specs, list(frames))
    halves = [
        {n: f.iloc[: len(f) // 2] for n, f in frames.items()},
        {n: f.iloc[len(f) // 2 :] for n, f in frames.items()},
    ]
    tracker = RabitTracker(host_ip="127.0.0.1", n_workers=2)
    tracker.start()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_collective_worker, args=(k, tracker.worker_args(), config, halves[k], results))
        for k in range(2)
    ]
    for proc in procs:
        proc.start()
    try:
        got = dict((r, (rows, model)) for r, rows, model in (results.get(timeout=120) for _ in procs))
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    assert got[0][0]["sizer"] > 0 and got[1][0]["sizer"] > 0
    assert got[0][0]["sizer"] + got[1][0]["sizer"] == len(frames["sizer"])
    assert got[0][1] == got[1][1]  # one model from both shards


# ------------------------------------------------------------------ a model that cannot be loaded


def _real_registry(root: Path, cfg: Config) -> None:
    """Tiny real xgboost models of the three kinds, with the features this config computes."""
    import msgspec
    import numpy as np
    import xgboost as xgb

    from scalper.ml.models import params

    reg = Registry(root)
    for name in MODEL_NAMES:
        s = spec(cfg, name)
        x = np.random.default_rng(0).normal(size=(60, len(s.features)))
        y = np.arange(60) % 3 if s.kind == "multiclass" else (x[:, 0] > 0).astype(float)
        booster = xgb.train(params(cfg, s.kind), xgb.DMatrix(x, label=y), 2)
        card = reg.save(booster, ModelCard(name=name, kind=s.kind, features=list(s.features), git_commit="t"))
        if name == "validator":  # a card written before the checksum was kept
            path = root / name / card.version / "card.json"
            path.write_bytes(msgspec.json.encode(msgspec.structs.replace(card, model_sha256="")))


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200] + b"garbage\n")


def test_a_model_that_cannot_be_loaded_counts_as_missing(tmp_path):
    cfg = Config()
    _real_registry(tmp_path, cfg)
    assert registry_status(tmp_path, cfg).complete
    _corrupt(tmp_path / "validator" / "v0001" / "model.ubj")  # its card has no checksum: loaded
    _corrupt(tmp_path / "regime" / "v0001" / "model.ubj")  # checksum
    problems = registry_status(tmp_path, cfg).problems
    assert len(problems) == 2
    assert problems[0].startswith(f"validator v0001: cannot load {tmp_path}/validator/v0001/model.ubj: ")
    assert problems[1] == (
        f"regime v0001: {tmp_path}/regime/v0001/model.ubj is not the file registered "
        "(its sha256 differs from the card's)"
    )


def test_bootstrap_retrains_when_a_model_file_is_corrupt(tmp_path, capsys, monkeypatch):
    """The run's error says `scalper train all --bootstrap`: that command must not answer
    'nothing to do' for a model the run cannot load."""
    import scalper.cli_ml as cli_ml

    trained = []

    def fake_training(cfg, dataset, models, registry, data="parquet"):
        trained.append(list(models))
        raise ValueError("stop here")

    monkeypatch.setattr(cli_ml, "_train_models", fake_training)
    cfg_path = _config_file(tmp_path)
    doc = json.loads(cfg_path.read_text())
    doc["feed"]["replay"]["path"] = ES
    doc["ml"]["bootstrap_symbols"] = ["SYN1"]
    doc["ml"]["bootstrap_minutes"] = 600
    cfg_path.write_text(json.dumps(doc))
    _real_registry(tmp_path / "models", Config())
    _corrupt(tmp_path / "models" / "validator" / "v0001" / "model.ubj")
    assert run(["--config", str(cfg_path), "train", "all", "--bootstrap"]) == 3
    out = capsys.readouterr().out
    assert "is not ready (validator v0001: cannot load" in out and "model.ubj" in out
    assert trained == [["validator", "regime", "sizer"]]


def test_a_run_on_a_corrupt_model_says_which_file_in_one_line(tmp_path, capsys):
    from conftest import shipped_config

    _real_registry(tmp_path / "models", Config())
    path = tmp_path / "models" / "validator" / "v0001" / "model.ubj"
    _corrupt(path)
    config = shipped_config(tmp_path, registry=str(tmp_path / "models"))
    with pytest.raises(SystemExit) as exc:
        run(["backtest", "--config", config, "--synthetic", "--out", str(tmp_path / "run")])
    assert exc.value.code == 3
    err = capsys.readouterr().err
    assert f"cannot load {path}: " in err
    assert "Stack trace" not in err and "json.cc" not in err and len(err.strip().splitlines()) == 1
