"""Dataset schema and the model registry: versions, `latest`, and refusing a schema mismatch."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import xgboost as xgb

from scalper.backtest import load_bars
from scalper.config import Config, with_overrides
from scalper.ml.dataset import DatasetSchemaError, collect, read_dataset, write_dataset
from scalper.ml.features import feature_names
from scalper.ml.registry import ModelCard, ModelNotFoundError, ModelSchemaError, Registry


@pytest.fixture(scope="module")
def cfg():
    return with_overrides(Config(), {"feed.synthetic.minutes": 900})


@pytest.fixture(scope="module")
def dataset(cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    signals, regime = collect(cfg, load_bars(cfg, synthetic=True, symbols=["AAA", "BBB"]))
    write_dataset(out, cfg, signals, regime, {"synthetic": True})
    return out, signals, regime


def test_dataset_round_trips_with_its_schema(cfg, dataset):
    out, signals, regime = dataset
    back = read_dataset(out, cfg, "signals")
    assert list(back.columns[9 : 9 + len(feature_names(cfg))]) == feature_names(cfg)
    assert len(back) == len(signals) and set(back["outcome"]) <= {
        "target",
        "stop",
        "timeout",
        "unfilled",
        "open",
    }
    assert len(read_dataset(out, cfg, "regime")) == len(regime)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["signals"] == len(signals) and manifest["symbols"] == ["AAA", "BBB"]


def test_reading_with_another_feature_list_is_a_clear_error(cfg, dataset):
    out, _, _ = dataset
    other = with_overrides(
        cfg, {"indicators.ema_lengths": [9, 21, 50, 100], "strategies.momentum.trend_ema": 50}
    )
    with pytest.raises(
        DatasetSchemaError, match=r"missing \['dist_ema_100'\].*unexpected \['dist_ema_200'\]"
    ):
        read_dataset(out, other, "signals")


def test_a_file_with_another_schema_version_is_refused(cfg, dataset, tmp_path):
    out, _, _ = dataset
    table = pq.read_table(out / "signals.parquet")
    meta = dict(table.schema.metadata)
    doc = json.loads(meta[b"scalper.dataset"])
    doc["schema"] = 999
    meta[b"scalper.dataset"] = json.dumps(doc).encode()
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "signals.parquet")
    with pytest.raises(DatasetSchemaError, match="schema version 999"):
        read_dataset(tmp_path, cfg, "signals")


def _booster(names):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(names)))
    y = (x[:, 0] > 0).astype(float)
    return xgb.train(
        {"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(x, label=y, feature_names=names), 5
    ), x


def test_registry_versions_latest_and_card(tmp_path):
    names = ["a", "b", "c"]
    reg = Registry(tmp_path)
    assert reg.is_empty()
    booster, x = _booster(names)
    c1 = reg.save(booster, ModelCard(name="validator", kind="binary", features=names, metrics={"auc": 0.6}))
    c2 = reg.save(
        booster, ModelCard(name="validator", kind="binary", features=names, extra={"threshold": 0.4})
    )
    assert (c1.version, c2.version) == ("v0001", "v0002")
    assert reg.latest("validator") == "v0002" and reg.versions("validator") == ["v0001", "v0002"]
    model = reg.load("validator", features=names)
    assert model.card.extra == {"threshold": 0.4} and model.card.feature_hash
    np.testing.assert_allclose(
        model.predict(pd.DataFrame(x, columns=names)), booster.predict(xgb.DMatrix(x, feature_names=names))
    )
    assert (tmp_path / "validator" / "v0001" / "model.ubj").exists()
    assert reg.load("validator", "v0001").card.metrics == {"auc": 0.6}


def test_loading_with_another_feature_order_is_refused(tmp_path):
    reg = Registry(tmp_path)
    booster, _ = _booster(["a", "b", "c"])
    reg.save(booster, ModelCard(name="validator", kind="binary", features=["a", "b", "c"]))
    with pytest.raises(ModelSchemaError, match="another order"):
        reg.load("validator", features=["b", "a", "c"])
    with pytest.raises(ModelSchemaError, match=r"missing \['c'\]"):
        reg.load("validator", features=["a", "b"])
    with pytest.raises(ModelNotFoundError, match="not found"):
        reg.load("regime")


@pytest.mark.parametrize(
    ("objective", "extra"),
    [("binary:logistic", {}), ("multi:softprob", {"num_class": 3}), ("reg:squarederror", {})],
)
def test_a_loaded_model_predicts_exactly_what_its_booster_predicts(tmp_path, objective, extra):
    """The registry predicts in place on one thread: the numbers must be the booster's own."""
    names = ["a", "b", "c", "d"]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, len(names)))
    y = rng.integers(0, 3, size=300) if "num_class" in extra else (x[:, 0] + x[:, 1] > 0).astype(float)
    booster = xgb.train(
        {"objective": objective, "nthread": 2, **extra}, xgb.DMatrix(x, label=y, feature_names=names), 8
    )
    Registry(tmp_path).save(booster, ModelCard(name="sizer", kind="regression", features=names))
    model = Registry(tmp_path).load("sizer", features=names)
    x32 = x.astype(np.float32)
    expected = booster.predict(xgb.DMatrix(x32, feature_names=names))
    for rows in (x32[:1], x32[:7], x32):
        got = model.predict(pd.DataFrame(rows, columns=names))
        assert got.shape == expected[: len(rows)].shape
        np.testing.assert_array_equal(got, expected[: len(rows)])


def _corrupt(path) -> None:
    """What the audit did: the file's first 200 bytes and a line of garbage."""
    path.write_bytes(path.read_bytes()[:200] + b"garbage\n")


def test_a_corrupt_model_file_is_one_line_naming_the_file_and_the_reason(tmp_path):
    from scalper.ml.registry import ModelFileError

    reg = Registry(tmp_path)
    booster, _ = _booster(["a", "b", "c"])
    reg.save(booster, ModelCard(name="validator", kind="binary", features=["a", "b", "c"]))
    path = tmp_path / "validator" / "v0001" / "model.ubj"
    _corrupt(path)
    with pytest.raises(ModelFileError) as exc:
        reg.load("validator", features=["a", "b", "c"])
    msg = str(exc.value)
    assert "\n" not in msg and "Stack trace" not in msg and "json.cc" not in msg
    assert msg.startswith(f"model validator v0001: cannot load {path}: ") and len(msg) > len(str(path)) + 40


def test_a_model_file_replaced_after_registration_is_refused_by_its_checksum(tmp_path):
    from scalper.ml.registry import ModelFileError

    reg = Registry(tmp_path)
    b1, _ = _booster(["a", "b", "c"])
    card = reg.save(b1, ModelCard(name="validator", kind="binary", features=["a", "b", "c"]))
    assert len(card.model_sha256) == 64
    other = xgb.train(
        {"objective": "binary:logistic", "nthread": 1}, xgb.DMatrix(np.ones((10, 3)), label=np.ones(10)), 1
    )
    other.save_model(str(tmp_path / "validator" / "v0001" / "model.ubj"))  # loads, but is not v0001
    with pytest.raises(ModelFileError, match="is not the file registered"):
        reg.load("validator")


def test_an_unreadable_card_is_one_line_naming_it(tmp_path):
    from scalper.ml.registry import ModelFileError

    reg = Registry(tmp_path)
    booster, _ = _booster(["a", "b", "c"])
    reg.save(booster, ModelCard(name="validator", kind="binary", features=["a", "b", "c"]))
    (tmp_path / "validator" / "v0001" / "card.json").write_text("{not json")
    with pytest.raises(ModelFileError, match=r"validator/v0001/card.json is not a model card"):
        reg.load("validator")
