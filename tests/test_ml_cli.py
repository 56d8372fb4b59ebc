"""`scalper collect` / `scalper train` argument handling and exit codes (no Ray)."""

from __future__ import annotations

import json

import pytest


def run(argv: list[str]) -> int:
    """`scalper ARGV` (the real command line parser)."""
    from scalper.cli import main

    return main(argv)


def test_collect_synthetic_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    assert run(["collect", "--synthetic", "--symbols", "AAA", "--minutes", "600", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["symbols"] == ["AAA"] and manifest["signals"] > 0
    assert manifest["source"]["synthetic_minutes"] == 600
    assert "signals" in capsys.readouterr().out


def test_collect_a_missing_file_exits_3(tmp_path, capsys):
    assert run(["collect", "--data", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "ds")]) == 3
    assert "error" in capsys.readouterr().err


def test_train_without_a_dataset_exits_3(tmp_path, capsys):
    assert run(["train", "validator", "--dataset", str(tmp_path / "none")]) == 3
    assert "scalper collect" in capsys.readouterr().err


def test_train_with_zero_workers_is_a_config_error(tmp_path, capsys):
    assert run(["train", "all", "--dataset", str(tmp_path), "--workers", "0"]) == 2
    assert "train_workers" in capsys.readouterr().err


@pytest.mark.parametrize("bootstrap", [False, True])
def test_evaluate_on_data_it_cannot_evaluate_is_refused_before_anything_trains(
    tmp_path, capsys, monkeypatch, bootstrap
):
    """A 1-day dataset (less than one walk-forward fold) or a bootstrap dataset: --evaluate
    used to train and register the models first, then refuse."""
    import scalper.cli_ml as cli_ml

    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing --evaluate")

    monkeypatch.setattr(cli_ml, "_train_models", no_training)
    ds = tmp_path / "ds"
    assert run(["collect", "--synthetic", "--symbols", "AAA", "--minutes", "1440", "--out", str(ds)]) == 0
    if bootstrap:
        manifest = json.loads((ds / "manifest.json").read_text())
        manifest["source"]["bootstrap"] = True
        (ds / "manifest.json").write_text(json.dumps(manifest))
    registry = tmp_path / "models"
    code = run(["train", "all", "--dataset", str(ds), "--registry", str(registry), "--evaluate"])
    err = capsys.readouterr().err
    assert code == 3 and not registry.exists()
    assert ("is a bootstrap dataset" if bootstrap else "less than one fold") in err


def test_bad_config_exits_2(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text('{"ml": {"label_horizon_bars": 0}}')
    with pytest.raises(SystemExit) as exc:
        run(["--config", str(bad), "collect", "--synthetic", "--out", str(tmp_path / "ds")])
    assert exc.value.code == 2


def test_evaluation_summary_prints_every_fold_with_its_scores_and_backtest_effect():
    from scalper.cli_ml import format_evaluation

    bt = {"net_pnl": -12.5, "trades": 3}
    report = {
        "folds": [
            {
                "fold": 0,
                "test": ["2024-01-08T00:00:00+00:00", "2024-01-10T00:00:00+00:00"],
                "test_signals": 42,
                "validator": {"auc": 0.61, "brier": 0.22, "brier_baseline": 0.23},
                "regime": {"accuracy": 0.75, "majority_accuracy": 0.57},
                "backtest": {"baseline": {"net_pnl": -100.0, "trades": 9}, "validator": bt},
            },
            {"fold": 1, "skipped": "fold 1: too few labelled signals"},
        ],
        "pooled": {"validator": {"auc": 0.61}},
        "backtest_totals": {},
    }
    lines = format_evaluation(report).splitlines()
    assert lines[0].startswith("walk-forward: 1 fold(s) of 2")
    assert (
        "fold 0 test 2024-01-08T00:00..2024-01-10T00:00: 42 signals, AUC 0.610, Brier 0.220 (base 0.230)"
        in lines[1]
    )
    assert "regime 0.750 (0.570)" in lines[1] and "baseline / validator: -100 (9) / -12 (3)" in lines[1]
    assert lines[2] == "  fold 1: skipped (fold 1: too few labelled signals)"


def test_collect_from_a_date_loads_warm_up_history_so_its_rows_equal_those_of_the_whole_history(tmp_path):
    """`collect --from` gives the rows a collect over all the bars gives from that time on
    (the warm-up reaches the data's first bar here), not those of indicators starting cold."""
    import pandas as pd

    from scalper import backtest as bt
    from scalper.config import Config, with_overrides
    from scalper.ml import dataset

    src = ["--synthetic", "--symbols", "AAA", "--minutes", "1440"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    start = "2024-01-02T10:00:00Z"  # 600 bars after the synthetic market's start
    assert run(["collect", *src, "--out", str(whole)]) == 0
    assert run(["collect", *src, "--from", start, "--out", str(cut)]) == 0
    t0 = pd.Timestamp(start).value
    for table in ("signals", "regime"):
        a = pd.read_parquet(whole / f"{table}.parquet")
        a = a[a["ts"] >= t0].reset_index(drop=True)
        b = pd.read_parquet(cut / f"{table}.parquet")
        assert len(b) > 0
        pd.testing.assert_frame_equal(a, b)
    # the same bars from --from on, without the history: other rows (indicators starting cold)
    cfg = with_overrides(Config(), {"feed.synthetic.minutes": 1440})
    bars = bt.load_bars(cfg, None, True, ["AAA"])["AAA"]
    cold, _ = dataset.collect(cfg, {"AAA": bars[bars["timestamp"] >= t0].reset_index(drop=True)})
    warm = pd.read_parquet(cut / "signals.parquet")
    assert len(cold) != len(warm) or not cold.equals(warm)
    # the --parallel path's task (called here without Ray) loads the same history
    from training.collect import _collect_one

    signals, _regime, n_bars = _collect_one(cfg, None, True, "AAA", start, None)
    assert n_bars == 1440 - 600
    pd.testing.assert_frame_equal(signals.reset_index(drop=True), warm, check_dtype=False)
