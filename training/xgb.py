"""Ray Train XGBoost training of the validator, regime and sizer models into the registry.

ONE Ray Train run per `train` call, whatever the number of models: Ray Train's start-up
(controller, worker group, rabit tracker, dataset split coordinators) costs 20-40 s here
while fitting these models takes seconds, so the three models share a run. The run is a
`ray.train.xgboost.XGBoostTrainer` on `ml.train_workers` workers; its train loop fits, inside
Ray's XGBoost collective (one model from all workers' shards), in this order:

* regime     on its shard of the regime rows before the validation part;
* validator  on its shard of the signals before the validation part;
* sizer      on its shard of the validation signals: the validator and regime models just
             fitted predict those rows (out of sample), and the sizer learns realised R from
             that (scalper/ml/sizing.py).

One Ray Dataset per model feeds a run, so that Ray Data's equal split gives every worker rows
of every model: a worker with an empty shard leaves XGBoost's histogram allreduce early and the
others wait forever (measured: a 2-worker run where the first worker got no sizer row hung).
By default Ray Data reads them from the dataset's Parquet files (rows filtered by timestamps
the driver chose), materialized before the run starts; `data="memory"` builds them from the
frames the driver already holds (the bootstrap). Each run gets a unique
name (Train V2 RESUMES a run whose name it has seen). Reporting is not allowed to dominate: a
`ray.train.report` costs ~2 s here, so the workers report once, at the end (rank 0 with all the
models in one checkpoint), never per boosting round (no RayTrainReportCallback).

The splits and metrics are domain code (scalper/ml/models.py): the validation part (the latest
`ml.validation_fraction` of the rows, purged) is predicted in the driver, in process, to choose
the validator's threshold and to score every model.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray

from scalper.config import Config
from scalper.ml import models as mdl
from scalper.ml.dataset import check_schema, read_dataset
from scalper.ml.features import feature_names, market_feature_names
from scalper.ml.regime import REGIMES
from scalper.ml.registry import MODEL_NAMES, LoadedModel, ModelCard, Registry

log = logging.getLogger(__name__)

ORDER = ("regime", "validator", "sizer")  # the sizer learns from the other two
SIZER_HOLDOUT = 0.3  # latest share of the validation signals kept to score the sizer
MIN_SIZER_ROWS = 10


def run_name(models: list[str] | tuple[str, ...]) -> str:
    """A name no earlier run has (Train V2 resumes a reused one): scalper-<what>-<time>-<random>."""
    what = "all" if set(models) == set(MODEL_NAMES) else "+".join(m for m in ORDER if m in models)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"scalper-{what}-{stamp}-{uuid.uuid4().hex[:6]}"


def _matrix(frame: pd.DataFrame, features: list[str], label: str | None = None) -> Any:
    import xgboost

    y = None if label is None else frame[label].to_numpy(dtype=np.float32)
    return xgboost.DMatrix(frame[features].to_numpy(dtype=np.float32), label=y, feature_names=features)


def fit_shards(
    config: dict[str, Any], shards: dict[str, pd.DataFrame]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One worker's part of a run: the models of `config` fitted in ORDER on its shards (inside
    Ray's XGBoost collective when called by the train loop, so every worker builds the same
    DMatrices in the same order). Each shard needs rows: a worker fitting on an empty one skips
    the histogram allreduce and the others wait for it forever (hence one dataset per model).
    Returns (boosters, metrics)."""
    import xgboost

    specs, rounds = config["models"], config["rounds"]
    boosters: dict[str, Any] = {}
    rows: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for name in ORDER:
        if name not in specs:
            continue
        m = specs[name]
        t0 = time.perf_counter()
        frame = shards[name]
        if name == "sizer":
            p = boosters["validator"].predict(_matrix(frame, specs["validator"]["features"]))
            probs = None
            if "regime" in boosters:  # as (rows, classes)
                probs = boosters["regime"].predict(_matrix(frame, specs["regime"]["features"]))
                probs = np.asarray(probs).reshape(len(frame), len(REGIMES))
            frame = mdl.sizer_frame(frame, np.asarray(p).reshape(len(frame)), probs)
        boosters[name] = xgboost.train(
            m["params"], _matrix(frame, m["features"], m["label"]), num_boost_round=rounds
        )
        rows[name], seconds[name] = len(frame), round(time.perf_counter() - t0, 3)
    return boosters, {"shard_rows": rows, "fit_seconds": seconds}


def loop_config(cfg: Config, specs: dict[str, mdl.ModelSpec], datasets: list[str]) -> dict[str, Any]:
    """What every worker needs: each model's features, label and XGBoost parameters, the rounds
    and the dataset names."""
    return {
        "models": {
            n: {"features": list(s.features), "label": s.label, "params": mdl.params(cfg, s.kind)}
            for n, s in specs.items()
        },
        "rounds": cfg.ml.num_boost_round,
        "datasets": datasets,
    }


def _train_loop(config: dict[str, Any]) -> None:
    """Per worker: its shards of the run's datasets -> fit_shards; rank 0 reports all the models
    once, at the end (one checkpoint)."""
    from ray.train import Checkpoint, get_context, get_dataset_shard, report

    start = time.perf_counter()
    with ThreadPoolExecutor(max(1, len(config["datasets"]))) as pool:  # the reads overlap
        futures = {
            n: pool.submit(lambda n=n: get_dataset_shard(n).materialize().to_pandas())
            for n in config["datasets"]
        }
        shards = {n: f.result() for n, f in futures.items()}
    load_seconds = round(time.perf_counter() - start, 3)
    boosters, metrics = fit_shards(config, shards)
    metrics.update(load_seconds=load_seconds, loop_seconds=round(time.perf_counter() - start, 3))
    if get_context().get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as d:
            for name, booster in boosters.items():
                booster.save_model(os.path.join(d, f"{name}.ubj"))
            report(metrics, checkpoint=Checkpoint.from_directory(d))
    else:
        report(metrics)


def _read(path: Path, columns: list[str], select: Callable[[pd.DataFrame], pd.DataFrame]) -> ray.data.Dataset:
    """Ray Data reads one Parquet file of the dataset (`columns`, then `select` per batch, fused
    into the read tasks), materialized BEFORE the trainer starts: while the train workers run
    they hold their CPUs, and on a laptop cluster whose CPUs they all hold (2 workers on 2
    cores) a read task would wait for a CPU forever (measured: a run that never started)."""
    ds = ray.data.read_parquet(str(path), columns=columns)
    return ds.map_batches(select, batch_format="pandas").materialize()


def regime_selector(spec: mdl.ModelSpec, cut: int) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Per batch of regime.parquet: the labelled rows before `cut` whose label was known by then
    (purged), as the spec's features and label."""
    features, label, known = list(spec.features), spec.label, spec.known_ts

    def select(df: pd.DataFrame) -> pd.DataFrame:
        ok = np.isfinite(pd.to_numeric(df[label], errors="coerce").to_numpy(dtype=np.float64))
        ok &= (df["ts"].to_numpy() < cut) & (df[known].to_numpy() <= cut)
        return df.loc[ok, [*features, label]]

    return select


def signal_selector(
    features: list[str], lo: int | None, hi: int, need_r: bool
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Per batch of signals.parquet: the labelled signals with lo <= ts < hi whose outcome was
    known by hi (purged; with `need_r`, a finite realised R too), as features, label, r_multiple.
    The validator's rows: lo None, hi its cut; the sizer's: from that cut to the sizer's."""

    def select(df: pd.DataFrame) -> pd.DataFrame:
        ts, known = df["ts"].to_numpy(), df["exit_ts"].to_numpy()
        ok = np.isfinite(pd.to_numeric(df["label"], errors="coerce").to_numpy(dtype=np.float64))
        ok &= (ts < hi) & (known <= hi)
        if lo is not None:
            ok &= ts >= lo
        if need_r:
            ok &= np.isfinite(df["r_multiple"].to_numpy(dtype=np.float64))
        return df.loc[ok, [*features, "label", "r_multiple"]]

    return select


def _parquet_datasets(
    root: Path, specs: dict[str, mdl.ModelSpec], plans: dict[str, dict[str, Any]], names: list[str]
) -> dict[str, ray.data.Dataset]:
    """Ray Data reads the dataset's Parquet files: one dataset per model."""
    out: dict[str, ray.data.Dataset] = {}
    if "regime" in plans:
        s = specs["regime"]
        out["regime"] = _read(
            root / "regime.parquet",
            ["ts", s.known_ts, *s.features, s.label],
            regime_selector(s, plans["regime"]["cut"]),
        )
    columns = ["ts", "exit_ts", *names, "label", "r_multiple"]
    if "validator" in plans:
        out["validator"] = _read(
            root / "signals.parquet", columns, signal_selector(names, None, plans["validator"]["cut"], False)
        )
    if "sizer" in plans:
        out["sizer"] = _read(
            root / "signals.parquet",
            columns,
            signal_selector(names, plans["validator"]["cut"], plans["sizer"]["cut"], True),
        )
    return out


def memory_frames(
    specs: dict[str, mdl.ModelSpec], plans: dict[str, dict[str, Any]], names: list[str]
) -> dict[str, pd.DataFrame]:
    """Each model's training rows as the Parquet path selects them, from the driver's split
    frames."""
    out: dict[str, pd.DataFrame] = {}
    if "regime" in plans:
        s = specs["regime"]
        out["regime"] = plans["regime"]["train"][[*s.features, s.label]].reset_index(drop=True)
    for name in ("validator", "sizer"):
        if name in plans:
            out[name] = plans[name]["train"][[*names, "label", "r_multiple"]].reset_index(drop=True)
    return out


def _memory_datasets(
    specs: dict[str, mdl.ModelSpec], plans: dict[str, dict[str, Any]], names: list[str]
) -> dict[str, ray.data.Dataset]:
    return {n: ray.data.from_pandas(f) for n, f in memory_frames(specs, plans, names).items()}


def ensure_started(cfg: Config) -> float:
    """Connect to / start the cluster (actors.backtests.ensure_ray); returns the seconds it took.
    Ray Train's health check polls every 2 s by default, most of a run of these small models:
    an embedded cluster polls every 0.2 s unless RAY_TRAIN_HEALTH_CHECK_INTERVAL_S is set."""
    from actors.backtests import ensure_ray

    t0 = time.perf_counter()
    if not ray.is_initialized():  # an embedded cluster inherits these
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ensure_ray(cfg)
    return time.perf_counter() - t0


def _held_out(cfg: Config, root: Path, spec: mdl.ModelSpec, dataset: str, rows: str) -> dict[str, Any]:
    """One dataset's training rows, held-out rows and the time `cut` where the held-out part
    starts; ValueError when fewer than 30 labelled `rows` (or one label) come before it."""
    path = root / f"{dataset}.parquet"
    check_schema(path, cfg, dataset)
    frame = mdl.trainable(read_dataset(path, cfg, dataset), spec)
    train_part, valid = mdl.time_split(frame, cfg.ml.validation_fraction, spec.known_ts)
    if len(train_part) < 30 or train_part[spec.label].nunique() < 2:
        raise ValueError(
            f"train {spec.name}: {len(train_part)} labelled {rows} before the validation part; collect more data"
        )
    return {"train": train_part, "valid": valid, "cut": int(valid["ts"].min())}


def plan(
    cfg: Config, root: Path, models: list[str]
) -> tuple[dict[str, mdl.ModelSpec], dict[str, dict[str, Any]]]:
    """The specs and, per model, its training rows, its held-out rows and the time `cut` where
    the held-out part starts (scalper.ml.models.time_split: latest ml.validation_fraction held
    out, training rows purged; the sizer's rows are the validator's held-out part, split again).
    ValueError when a model would have too few rows."""
    specs = {name: mdl.spec(cfg, name) for name in ORDER if name in models}
    plans: dict[str, dict[str, Any]] = {}

    if "regime" in specs:
        plans["regime"] = _held_out(cfg, root, specs["regime"], "regime", "regime rows")

    if "validator" in specs:
        plans["validator"] = _held_out(cfg, root, specs["validator"], "signals", "signals")
        valid = plans["validator"]["valid"]
        if "sizer" in specs:
            rows = valid[np.isfinite(valid["r_multiple"].to_numpy(dtype=np.float64))]
            s_train, s_valid = mdl.time_split(rows, SIZER_HOLDOUT, "exit_ts")
            if len(s_train) < MIN_SIZER_ROWS:
                raise ValueError(
                    f"train sizer: {len(s_train)} validation signals to learn from; collect more data"
                )
            plans["sizer"] = {"train": s_train, "valid": s_valid, "cut": int(s_valid["ts"].min())}
    return specs, plans


def train(
    cfg: Config,
    dataset: str | Path,
    models: list[str],
    registry: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    data: str = "parquet",
) -> dict[str, ModelCard]:
    """Train `models` (any of validator, regime, sizer; the sizer needs the validator) on the
    dataset directory in ONE Ray Train run and register them; returns their cards (registry
    order: regime, validator, sizer).

    `data`: "parquet" - Ray Data reads the dataset's Parquet files (read tasks on the cluster);
    "memory" - Ray Datasets from the rows the driver already read to choose the splits (no Ray
    Data list/read tasks to start: faster on a busy 2-core machine, docs/BENCHMARKS.md "ML
    pipeline"; what the bootstrap uses, its data being small)."""
    if data not in ("parquet", "memory"):
        raise ValueError(f"train: data must be 'parquet' or 'memory', got {data!r}")
    say = progress or (lambda msg: log.info("%s", msg))
    unknown = set(models) - set(MODEL_NAMES)
    if unknown:
        raise ValueError(f"train: unknown models {sorted(unknown)} (expected {list(MODEL_NAMES)})")
    if "sizer" in models and "validator" not in models:
        raise ValueError(
            "train sizer: train it with the validator (`scalper train all`): it learns from the validator's probabilities"
        )
    root = Path(dataset)
    specs, plans = plan(cfg, root, models)
    elapsed = ensure_started(cfg)
    if elapsed > 0.5:
        say(f"Ray: local cluster up in {elapsed:.1f} s")
    names = feature_names(cfg)
    if data == "memory":
        datasets = _memory_datasets(specs, plans, names)
    else:
        datasets = _parquet_datasets(root, specs, plans, names)
    say(
        "Ray Train: one run fitting "
        + ", ".join(f"{n} on {len(plans[n]['train']):,} rows" for n in ORDER if n in plans)
        + f", {cfg.ml.train_workers} worker(s), {cfg.ml.num_boost_round} rounds"
    )
    boosters, info = fit_ray(cfg, {n: specs[n] for n in plans}, datasets)
    say(f"Ray Train: run {info['run_name']} done in {info['wall_seconds']:.1f} s")
    return _register(cfg, root, specs, plans, boosters, info, Registry(registry or cfg.ml.registry))


def fit_retrying_once(fit: Callable[[str], Any], name: str) -> tuple[Any, str]:
    """(fit(name), name), or, when that Ray Train run fails with a worker lost
    (ray.train.WorkerGroupError), one more run named `name`-retry, said in the log.

    Why: on a loaded machine Ray Train can tear down a healthy run - its PlacementGroupCleaner
    takes a State API miss for a dead controller and removes the workers' placement group
    ("A worker health check failed ... Destroying worker since its placement group was
    removed"); a rerun succeeds. Nothing is registered before a run succeeds, so a rerun is
    safe. A second failure is raised: a real error in the training loop fails twice."""
    from ray.train import WorkerGroupError

    try:
        return fit(name), name
    except WorkerGroupError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("Ray Train run %s failed (%s: %s); retrying it once", name, type(exc).__name__, first)
    retry = f"{name}-retry"
    return fit(retry), retry


def fit_ray(
    cfg: Config,
    specs: dict[str, mdl.ModelSpec],
    datasets: dict[str, ray.data.Dataset],
    name: str | None = None,
    storage: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One XGBoostTrainer run over `datasets` (one per model, named after it): ({model: booster},
    info)."""
    import xgboost
    from ray.train import RunConfig, ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    name = name or run_name(list(specs))

    def fit(run: str) -> Any:
        # the workers get the DataContext current when the trainer is made: no progress bars there
        ctx = ray.data.DataContext.get_current()
        bars, ctx.enable_progress_bars = ctx.enable_progress_bars, False
        trainer = XGBoostTrainer(
            _train_loop,
            train_loop_config=loop_config(cfg, specs, list(datasets)),
            scaling_config=ScalingConfig(num_workers=cfg.ml.train_workers, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(
                name=run, storage_path=storage or str(Path(tempfile.gettempdir()) / "scalper-train")
            ),
            datasets=datasets,
        )
        ctx.enable_progress_bars = bars
        return trainer.fit()

    t0 = time.perf_counter()
    result, name = fit_retrying_once(fit, name)
    wall = time.perf_counter() - t0
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {name}: no checkpoint reported ({result.error})")
    boosters: dict[str, Any] = {}
    with result.checkpoint.as_directory() as d:
        for n, s in specs.items():
            booster = xgboost.Booster()
            booster.load_model(str(Path(d) / f"{n}.ubj"))
            booster.feature_names = list(s.features)
            boosters[n] = booster
    info = {
        "run_name": name,
        "wall_seconds": round(wall, 3),
        "workers": cfg.ml.train_workers,
        "models": list(specs),
        **(result.metrics or {}),
    }
    return boosters, info


def _register(
    cfg: Config,
    root: Path,
    specs: dict[str, mdl.ModelSpec],
    plans: dict[str, dict[str, Any]],
    boosters: dict[str, Any],
    info: dict[str, Any],
    reg: Registry,
) -> dict[str, ModelCard]:
    """Score each model on its held-out rows (in process) and register it."""
    cards: dict[str, ModelCard] = {}
    ds_name = str(root)

    def loaded(name: str) -> LoadedModel:
        s = specs[name]
        return LoadedModel(ModelCard(name=name, kind=s.kind, features=list(s.features)), boosters[name])

    if "regime" in plans:
        valid = plans["regime"]["valid"]
        metrics = mdl.multiclass_metrics(valid["regime"].to_numpy(), loaded("regime").predict(valid))
        cards["regime"] = reg.save(
            boosters["regime"],
            _card(
                cfg,
                specs["regime"],
                plans["regime"]["train"],
                info,
                metrics,
                ds_name,
                {"classes": ["trending", "ranging", "volatile"]},
            ),
        )
    if "validator" in plans:
        valid = plans["validator"]["valid"]
        p = loaded("validator").predict(valid)
        chosen = mdl.choose_threshold(p, valid["r_multiple"].to_numpy())
        metrics = {**mdl.binary_metrics(valid["label"].to_numpy(), p), "threshold_choice": chosen}
        cards["validator"] = reg.save(
            boosters["validator"],
            _card(
                cfg,
                specs["validator"],
                plans["validator"]["train"],
                info,
                metrics,
                ds_name,
                {"threshold": chosen["threshold"]},
            ),
        )
    if "sizer" in plans:
        s_train, s_valid = plans["sizer"]["train"], plans["sizer"]["valid"]
        v, r = loaded("validator"), loaded("regime") if "regime" in boosters else None
        mf = market_feature_names(cfg)
        sf = mdl.sizer_frame(s_valid, v.predict(s_valid), r.predict(s_valid[mf]) if r else None)
        metrics = mdl.regression_metrics(s_valid["r_multiple"].to_numpy(), loaded("sizer").predict(sf))
        r2 = float(np.mean(s_train["r_multiple"].to_numpy(dtype=np.float64) ** 2))
        cards["sizer"] = reg.save(
            boosters["sizer"], _card(cfg, specs["sizer"], s_train, info, metrics, ds_name, {"mean_r2": r2})
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
