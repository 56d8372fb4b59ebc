"""Ray Train XGBoost training of the validator, regime and sizer models into the registry.

Ray Data reads the dataset's Parquet file; `ray.train.xgboost.XGBoostTrainer` runs
`xgboost.train` on `ml.train_workers` workers (Ray's rabit collective joins their shards
into one model). Each run gets a unique name (Train V2 RESUMES a run whose name it has seen,
so a reused name would silently continue an old run). Reporting is not allowed to dominate:
a `ray.train.report` costs ~2 s here, so the workers report once, at the end (rank 0 with
the model checkpoint), never per boosting round (no RayTrainReportCallback).

What each model learns and how rows are split is domain code (scalper/ml/models.py); the
validation part (the latest `ml.validation_fraction` of the rows, purged) is predicted in
the driver, in process, to choose the validator's threshold and to train the sizer on
out-of-sample validator probabilities (scalper/ml/sizing.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray

from scalper.config import Config
from scalper.ml import models as mdl
from scalper.ml.dataset import check_schema, read_dataset
from scalper.ml.features import market_feature_names
from scalper.ml.registry import LoadedModel, ModelCard, Registry

log = logging.getLogger(__name__)

MODEL_FILE = "model.ubj"


def run_name(model: str) -> str:
    """A name no earlier run has: Train V2 resumes a reused one."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"scalper-{model}-{stamp}-{uuid.uuid4().hex[:6]}"


def _train_loop(config: dict[str, Any]) -> None:
    """Per worker: its shard -> DMatrix -> xgboost.train (inside Ray's collective); rank 0
    reports the model once at the end."""
    import xgboost
    from ray.train import Checkpoint, get_context, get_dataset_shard, report

    shard = get_dataset_shard("train").materialize().to_pandas()
    features, label = config["features"], config["label"]
    dtrain = xgboost.DMatrix(
        shard[features].to_numpy(dtype=np.float32),
        label=shard[label].to_numpy(dtype=np.float32),
        feature_names=features,
    )
    t0 = time.perf_counter()
    booster = xgboost.train(config["params"], dtrain, num_boost_round=config["rounds"])
    metrics = {"rows": len(shard), "train_seconds": time.perf_counter() - t0}
    if get_context().get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as d:
            booster.save_model(os.path.join(d, MODEL_FILE))
            report(metrics, checkpoint=Checkpoint.from_directory(d))
    else:
        report(metrics)


def fit_ray(
    cfg: Config,
    spec: mdl.ModelSpec,
    train: ray.data.Dataset,
    name: str | None = None,
    storage: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """XGBoostTrainer on `train` (a Ray Dataset with the spec's features and label): (booster, info)."""
    import xgboost
    from ray.train import RunConfig, ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    name = name or run_name(spec.name)
    trainer = XGBoostTrainer(
        _train_loop,
        train_loop_config={
            "features": list(spec.features),
            "label": spec.label,
            "params": mdl.params(cfg, spec.kind),
            "rounds": cfg.ml.num_boost_round,
        },
        scaling_config=ScalingConfig(num_workers=cfg.ml.train_workers, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(
            name=name, storage_path=storage or str(Path(tempfile.gettempdir()) / "scalper-train")
        ),
        datasets={"train": train},
    )
    t0 = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - t0
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name}: no checkpoint reported ({result.error})")
    with result.checkpoint.as_directory() as d:
        booster = xgboost.Booster()
        booster.load_model(str(Path(d) / MODEL_FILE))
    booster.feature_names = list(spec.features)
    info = {
        "run_name": name,
        "wall_seconds": round(wall, 3),
        "workers": cfg.ml.train_workers,
        **(result.metrics or {}),
    }
    return booster, info


def _columns_dataset(path: Path, spec: mdl.ModelSpec, lo: int | None, cut: int | None) -> ray.data.Dataset:
    """Ray Data over the Parquet file: the spec's columns, labelled rows with ts < cut whose
    label was known by the cut (purged)."""
    features, label, known = list(spec.features), spec.label, spec.known_ts
    ds = ray.data.read_parquet(str(path), columns=["ts", known, *features, label])

    def keep(df: pd.DataFrame) -> pd.DataFrame:
        ok = np.isfinite(pd.to_numeric(df[label], errors="coerce").to_numpy(dtype=np.float64))
        if cut is not None:
            ok &= (df["ts"] < cut).to_numpy() & (df[known] <= cut).to_numpy()
        if lo is not None:
            ok &= (df["ts"] >= lo).to_numpy()
        return df.loc[ok, [*features, label]]

    return ds.map_batches(keep, batch_format="pandas")


def train(
    cfg: Config,
    dataset: str | Path,
    models: list[str],
    registry: str | Path | None = None,
    progress: Any = None,
) -> dict[str, ModelCard]:
    """Train `models` (validator, regime, sizer; the sizer needs the validator of the same
    run) on the dataset directory and register them; returns their cards."""
    from actors.backtests import ensure_ray

    ensure_ray(cfg)
    root = Path(dataset)
    reg = Registry(registry or cfg.ml.registry)
    frac = cfg.ml.validation_fraction
    cards: dict[str, ModelCard] = {}
    fitted: dict[str, LoadedModel] = {}
    say = progress or (lambda msg: log.info("%s", msg))
    if "sizer" in models and "validator" not in models:
        raise ValueError(
            "train sizer: train it with the validator (`scalper train all`): it learns from the validator's probabilities"
        )
    ds_name = str(root)

    if "regime" in models:
        spec = mdl.spec(cfg, "regime")
        path = root / "regime.parquet"
        check_schema(path, cfg, "regime")
        frame = mdl.trainable(read_dataset(path, cfg, "regime"), spec)
        train_part, valid = mdl.time_split(frame, frac, spec.known_ts)
        cut = int(valid["ts"].min())
        say(f"regime: Ray Train on {len(train_part):,} rows, {cfg.ml.train_workers} worker(s)")
        booster, info = fit_ray(cfg, spec, _columns_dataset(path, spec, None, cut))
        model = LoadedModel(ModelCard(name="regime", kind=spec.kind, features=spec.features), booster)
        metrics = mdl.multiclass_metrics(valid["regime"].to_numpy(), model.predict(valid))
        cards["regime"] = reg.save(
            booster,
            _card(
                cfg,
                spec,
                train_part,
                info,
                metrics,
                ds_name,
                {"classes": ["trending", "ranging", "volatile"]},
            ),
        )
        fitted["regime"] = LoadedModel(cards["regime"], booster)

    if "validator" in models:
        spec = mdl.spec(cfg, "validator")
        path = root / "signals.parquet"
        check_schema(path, cfg, "signals")
        frame = mdl.trainable(read_dataset(path, cfg, "signals"), spec)
        train_part, valid = mdl.time_split(frame, frac, spec.known_ts)
        if len(train_part) < 30 or train_part["label"].nunique() < 2:
            raise ValueError(
                f"train validator: {len(train_part)} labelled signals before the validation part; collect more data"
            )
        cut = int(valid["ts"].min())
        say(f"validator: Ray Train on {len(train_part):,} signals, {cfg.ml.train_workers} worker(s)")
        booster, info = fit_ray(cfg, spec, _columns_dataset(path, spec, None, cut))
        model = LoadedModel(ModelCard(name="validator", kind=spec.kind, features=spec.features), booster)
        p = model.predict(valid)
        chosen = mdl.choose_threshold(p, valid["r_multiple"].to_numpy())
        metrics = {**mdl.binary_metrics(valid["label"].to_numpy(), p), "threshold_choice": chosen}
        cards["validator"] = reg.save(
            booster, _card(cfg, spec, train_part, info, metrics, ds_name, {"threshold": chosen["threshold"]})
        )
        fitted["validator"] = LoadedModel(cards["validator"], booster)

        if "sizer" in models:
            sspec = mdl.spec(cfg, "sizer")
            probs = fitted["regime"].predict(valid[market_feature_names(cfg)]) if "regime" in fitted else None
            sf = mdl.sizer_frame(valid, p, probs)
            sf = sf[np.isfinite(sf["r_multiple"])].sort_values("ts", kind="stable")
            s_train, s_valid = mdl.time_split(sf, 0.3, sspec.known_ts)
            say(f"sizer: Ray Train on {len(s_train):,} out-of-sample validator rows")
            sbooster, sinfo = fit_ray(
                cfg, sspec, ray.data.from_pandas(s_train[[*sspec.features, "r_multiple"]])
            )
            smodel = LoadedModel(ModelCard(name="sizer", kind=sspec.kind, features=sspec.features), sbooster)
            smetrics = mdl.regression_metrics(s_valid["r_multiple"].to_numpy(), smodel.predict(s_valid))
            r2 = float(np.mean(s_train["r_multiple"].to_numpy() ** 2))
            cards["sizer"] = reg.save(
                sbooster, _card(cfg, sspec, s_train, sinfo, smetrics, ds_name, {"mean_r2": r2})
            )
    return cards


def _card(
    cfg: Config,
    spec: mdl.ModelSpec,
    frame: pd.DataFrame,
    info: dict[str, Any],
    metrics: dict[str, Any],
    dataset: str,
    extra: dict[str, Any],
) -> ModelCard:
    return ModelCard(
        name=spec.name,
        kind=spec.kind,
        features=list(spec.features),
        data_start_ts=int(frame["ts"].min()) if len(frame) else None,
        data_end_ts=int(frame["ts"].max()) if len(frame) else None,
        rows=len(frame),
        params={
            **mdl.params(cfg, spec.kind),
            "num_boost_round": cfg.ml.num_boost_round,
            "workers": cfg.ml.train_workers,
        },
        metrics={**metrics, "training": info},
        extra=extra,
        dataset=dataset,
        run_name=info.get("run_name"),
    )
