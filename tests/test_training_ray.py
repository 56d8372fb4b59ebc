"""Ray Train on a small dataset yields a registered validator that loads and predicts."""

from __future__ import annotations

import numpy as np
import pytest

from scalper.backtest import load_bars
from scalper.config import Config, with_overrides
from scalper.ml.dataset import collect, read_dataset, write_dataset
from scalper.ml.features import feature_names
from scalper.ml.gate import ModelGate
from scalper.ml.registry import Registry

pytestmark = pytest.mark.ray


def test_ray_train_validator_registers_a_model_that_loads_and_predicts(ray_cluster, tmp_path):
    from training.xgb import train

    cfg = with_overrides(
        Config(),
        {
            "feed.synthetic.minutes": 1440,
            "ml.num_boost_round": 10,
            "ml.train_workers": 1,
            "ray.address": "auto",
        },
    )
    signals, regime = collect(cfg, load_bars(cfg, synthetic=True, symbols=["AAA"]))
    write_dataset(tmp_path / "ds", cfg, signals, regime, {"synthetic": True})
    cards = train(cfg, tmp_path / "ds", ["validator"], registry=tmp_path / "models")
    card = cards["validator"]
    assert card.version == "v0001" and card.features == feature_names(cfg)
    assert card.run_name and card.run_name.startswith("scalper-validator-")
    assert 0.0 <= card.extra["threshold"] <= 1.0 and "auc" in card.metrics
    model = Registry(tmp_path / "models").load("validator", features=feature_names(cfg))
    frame = read_dataset(tmp_path / "ds", cfg, "signals")
    p = model.predict(frame)
    assert p.shape == (len(frame),) and np.all((p >= 0) & (p <= 1)) and np.unique(p).size > 1
    gate = ModelGate.from_registry(cfg, str(tmp_path / "models"), use=("validator",))
    assert gate.models == {"validator": "v0001"}
