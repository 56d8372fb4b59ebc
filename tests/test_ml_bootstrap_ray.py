"""`scalper train all --bootstrap` on a small configuration: one Ray Train run fills an empty
registry with three models that load and predict (and gate a backtest); a second bootstrap is a
no-op."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scalper.backtest import Backtest, load_bars, prepare
from scalper.config import default_document, load
from scalper.ml.dataset import read_dataset
from scalper.ml.features import feature_names, market_feature_names
from scalper.ml.gate import ModelGate
from scalper.ml.registry import Registry
from scalper.ml.sizing import SIZER_FEATURES

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str]) -> int:
    """`scalper ARGV` (the real command line parser)."""
    from scalper.cli import main

    return main(argv)


def test_bootstrap_fills_an_empty_registry_with_models_that_predict_then_does_nothing(
    ray_cluster, tmp_path, capsys, monkeypatch
):
    doc = default_document()
    doc["feed"]["replay"]["path"] = str(ROOT / "data" / "samples" / "es_ticks_2013-09.parquet")
    doc["ml"].update(
        registry=str(tmp_path / "models"),
        datasets_dir=str(tmp_path / "datasets"),
        bootstrap_symbols=["SYN1"],
        bootstrap_minutes=1440,
        num_boost_round=10,
        train_workers=1,
    )
    doc["ray"]["address"] = "auto"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    cfg = load(path)

    assert run(["--config", str(path), "train", "all", "--bootstrap"]) == 0
    out = capsys.readouterr().out
    assert "bootstrap done in" in out and "registry" in out

    reg = Registry(tmp_path / "models")
    assert {n: reg.latest(n) for n in ("validator", "regime", "sizer")} == {
        "validator": "v0001",
        "regime": "v0001",
        "sizer": "v0001",
    }
    cards = {n: reg.card(n) for n in ("validator", "regime", "sizer")}
    run_names = {c.run_name for c in cards.values()}
    assert len(run_names) == 1 and run_names.pop().startswith("scalper-all-")  # ONE Ray Train run
    manifest = json.loads((tmp_path / "datasets" / "bootstrap" / "manifest.json").read_text())
    assert manifest["symbols"] == ["ES", "SYN1"]

    signals = read_dataset(tmp_path / "datasets" / "bootstrap", cfg, "signals")
    validator = reg.load("validator", features=feature_names(cfg))
    p = validator.predict(signals)
    assert p.shape == (len(signals),) and np.all((p >= 0) & (p <= 1)) and np.unique(p).size > 1
    regime = reg.load("regime", features=market_feature_names(cfg))
    probs = regime.predict(signals)
    assert probs.shape == (len(signals), 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    sizer = reg.load("sizer", features=list(SIZER_FEATURES))
    assert cards["sizer"].extra["mean_r2"] > 0
    assert np.all(np.isfinite(sizer.predict(np.zeros((4, len(SIZER_FEATURES))))))

    gate = ModelGate.from_registry(cfg)
    assert gate.models == {"validator": "v0001", "regime": "v0001", "sizer": "v0001"}
    es = load_bars(cfg)["ES"]
    result = Backtest(cfg, gate=gate).run({"ES": prepare("ES", es, cfg)})
    assert result.signals and all("p_validator" in rec.scores for rec in result.signals)

    def no_training(*args, **kwargs):
        raise AssertionError("a second bootstrap trained again")

    import scalper.cli_ml as cli_ml

    monkeypatch.setattr(cli_ml, "_train_models", no_training)
    assert run(["--config", str(path), "train", "all", "--bootstrap"]) == 0
    assert "bootstrap: nothing to do" in capsys.readouterr().out
    assert reg.versions("validator") == ["v0001"] and reg.versions("sizer") == ["v0001"]
