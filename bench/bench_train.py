"""ML pipeline speed and model quality on synthetic data (rerunnable; prints every figure).

    .venv/bin/python bench/bench_train.py [--symbols 4] [--days 14] [--ray] [--workers 1]

(a) Dataset collection: `scalper.ml.dataset.collect` over `--symbols` synthetic symbols of
    `--days` days (indicators, every strategy's rule, features, triple-barrier labels), one
    process: bars/s. Target (issue 5): >= 200,000 bars/s per core.
(b) In-process batch inference of the validator (xgboost predict on the feature frame): rows/s.
    Target: >= 100,000 rows/s.
(c) In-process XGBoost fit of the validator on a synthetic 1,000,000 x 40 frame (--big-rows),
    one thread: seconds (the work Ray Train spreads over workers).
(d) Walk-forward (scalper.ml.evaluation.walk_forward) on the collected data: per-fold and
    pooled out-of-sample AUC / Brier / regime accuracy, and the backtest effect of each
    variant (baseline, +validator, +regime, +sizer), with its wall time.
(e) --ray: `training.xgb.train` of all three models with Ray Train (`--workers`) on a local
    cluster, in ONE Ray Train run: cluster start, the run's wall time, its data loading and fits.
(f) --ray-rows N: Ray Train of the validator alone on a signals dataset of N rows (the
    collected signals resampled with replacement, in time order; 36 features), `--workers`
    workers: wall seconds of `training.xgb.train` (Ray Data read + XGBoostTrainer + scoring and
    registering), without the cluster start. Target (issue 5): 1,000,000 rows <= 90 s, 2 workers.
(g) --bootstrap: `scalper train all --bootstrap` with config.json into an empty temporary
    registry, in a fresh process (Ray start included): wall seconds. Target: <= 180 s.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scalper.backtest import load_bars, prepare
from scalper.config import Config, with_overrides
from scalper.ml import evaluation as ev
from scalper.ml import models as mdl
from scalper.ml.dataset import collect, write_dataset

from common import machine_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=4)
    ap.add_argument("--days", type=float, default=14.0)
    ap.add_argument("--big-rows", type=int, default=1_000_000)
    ap.add_argument("--ray", action="store_true")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--ray-rows", type=int, default=0, help="(f): validator rows for Ray Train (0: skip)")
    ap.add_argument("--bootstrap", action="store_true", help="(g): time `scalper train all --bootstrap`")
    ap.add_argument("--skip-local", action="store_true", help="skip (b)-(d)")
    ap.add_argument(
        "--data",
        choices=["parquet", "memory", "both"],
        default="parquet",
        help="(e): Ray Data reads the Parquet files, or in-memory datasets (what the bootstrap uses), or both",
    )
    a = ap.parse_args()
    print(machine_info())
    if a.bootstrap:
        bench_bootstrap()
        if not (a.ray or a.ray_rows):
            return
    warnings.simplefilter("ignore")
    logging.getLogger("scalper").setLevel(logging.ERROR)
    cfg = with_overrides(
        Config(),
        {
            "feed.synthetic.minutes": int(a.days * 1440),
            "ml.walk_forward_train_days": max(2.0, a.days * 0.4),
            "ml.walk_forward_test_days": max(1.0, a.days * 0.15),
            "ml.train_workers": a.workers,
        },
    )
    symbols = [f"S{i:02d}" for i in range(a.symbols)]
    bars = load_bars(cfg, synthetic=True, symbols=symbols)
    prepare(symbols[0], bars[symbols[0]].iloc[:500], cfg)  # imports, numba JIT
    n = sum(len(b) for b in bars.values())
    t0 = time.perf_counter()
    signals, regime = collect(cfg, bars)
    dt_collect = time.perf_counter() - t0
    print(
        f"(a) collect: {n:,} bars, {len(signals):,} signals, {len(regime):,} regime rows in {dt_collect:.2f} s "
        f"= {n / dt_collect:,.0f} bars/s (one process)"
    )
    if not a.skip_local:
        bench_local(cfg, a, signals, regime, bars)
    if a.ray or a.ray_rows:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        from training.xgb import ensure_started

        rcfg = with_overrides(cfg, {"ray.include_dashboard": False, "ray.num_cpus": 2})
        print(f"    Ray start: {ensure_started(rcfg):.1f} s ({load_avg()})")
        if a.ray:
            bench_ray_all(rcfg, a, signals, regime)
        if a.ray_rows:
            bench_ray_rows(rcfg, a, signals, regime)


def load_avg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def bench_local(cfg: Config, a: argparse.Namespace, signals, regime, bars) -> None:
    spec = mdl.spec(cfg, "validator")
    labelled = mdl.trainable(signals, spec)
    booster = mdl.fit(cfg, spec, labelled)
    big = labelled.sample(200_000, replace=True, random_state=0)
    t0 = time.perf_counter()
    mdl.predict(booster, big, spec.features)
    dt_pred = time.perf_counter() - t0
    print(f"(b) validator inference: {len(big):,} rows in {dt_pred:.3f} s = {len(big) / dt_pred:,.0f} rows/s")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(a.big_rows, 40)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(size=a.big_rows) > 0).astype(np.float32)
    import xgboost as xgb

    t0 = time.perf_counter()
    xgb.train(mdl.params(cfg, "binary"), xgb.DMatrix(x, label=y), num_boost_round=cfg.ml.num_boost_round)
    print(
        f"(c) in-process validator fit, {a.big_rows:,} x 40, {cfg.ml.num_boost_round} rounds, 1 thread: "
        f"{time.perf_counter() - t0:.1f} s"
    )
    data = {s: prepare(s, b, cfg) for s, b in bars.items()}
    t0 = time.perf_counter()
    report = ev.walk_forward(cfg, signals, regime, data)
    dt_wf = time.perf_counter() - t0
    print(
        f"(d) walk-forward: {len(report['folds'])} folds in {dt_wf:.1f} s "
        f"(train {cfg.ml.walk_forward_train_days:g} d, test {cfg.ml.walk_forward_test_days:g} d)"
    )
    for f in report["folds"]:
        if "validator" not in f:
            print(f"    fold {f['fold']}: skipped ({f.get('skipped')})")
            continue
        v, r = f["validator"], f.get("regime", {})
        print(
            f"    fold {f['fold']}: validator AUC {v.get('auc'):.3f}, Brier {v['brier']:.4f} (base {v['brier_baseline']:.4f}), "
            f"E[R] all {v['expectancy_r_all']:+.3f} / accepted {v['expectancy_r_accepted'] if v['expectancy_r_accepted'] is None else round(v['expectancy_r_accepted'], 3)}; "
            f"regime acc {r.get('accuracy', float('nan')):.3f} (majority {r.get('majority_accuracy', float('nan')):.3f})"
        )
    pv, pr = report["pooled"].get("validator", {}), report["pooled"].get("regime", {})
    print(
        f"    pooled: validator AUC {pv.get('auc'):.3f}, Brier {pv.get('brier'):.4f} (base {pv.get('brier_baseline'):.4f}); "
        f"regime accuracy {pr.get('accuracy', float('nan')):.3f} (majority {pr.get('majority_accuracy', float('nan')):.3f})"
    )
    for name, t in report["backtest_totals"].items():
        print(
            f"    {name:>24}: net P&L {t['net_pnl']:>11,.2f}, trades {t['trades']:>5}, mean Sharpe "
            f"{t['mean_sharpe'] if t['mean_sharpe'] is None else round(t['mean_sharpe'], 2)}, worst max DD {t['worst_max_drawdown_pct']:.2f}%"
        )


def bench_ray_all(cfg: Config, a: argparse.Namespace, signals, regime) -> None:
    from training.xgb import train

    kinds = ["parquet", "memory"] if a.data == "both" else [a.data]
    with tempfile.TemporaryDirectory() as d:
        write_dataset(Path(d) / "ds", cfg, signals, regime, {"synthetic": True})
        for k, kind in enumerate(kinds * (2 if a.data == "both" else 1)):
            t0 = time.perf_counter()
            cards = train(
                cfg, Path(d) / "ds", ["regime", "validator", "sizer"], Path(d) / f"models{k}", data=kind
            )
            total = time.perf_counter() - t0
            t = cards["validator"].metrics["training"]
            rows = ", ".join(f"{n} {c.rows:,}" for n, c in cards.items())
            fits = ", ".join(f"{n} {v:.2f} s" for n, v in t["fit_seconds"].items())
            print(
                f"(e) Ray Train, data={kind}, {a.workers} worker(s), one run for the three models ({rows} rows): "
                f"train() {total:.1f} s = run {t['wall_seconds']:.1f} s (shard loading {t['load_seconds']:.1f} s; "
                f"fits {fits}) + driver split/read/score/register ({load_avg()})"
            )


def bench_ray_rows(cfg: Config, a: argparse.Namespace, signals, regime) -> None:
    from training.xgb import train

    spec = mdl.spec(cfg, "validator")
    labelled = mdl.trainable(signals, spec)
    big = labelled.sample(a.ray_rows, replace=True, random_state=0).sort_values("ts", kind="stable")
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        write_dataset(Path(d) / "big", cfg, big, regime, {"synthetic": True, "resampled_rows": a.ray_rows})
        print(f"    wrote {len(big):,} x {len(spec.features)} signals in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        cards = train(cfg, Path(d) / "big", ["validator"], Path(d) / "models")
        total = time.perf_counter() - t0
    c = cards["validator"]
    t = c.metrics["training"]
    print(
        f"(f) Ray Train validator, {c.rows:,} training rows x {len(c.features)} features (of {a.ray_rows:,}), "
        f"{a.workers} worker(s), {cfg.ml.num_boost_round} rounds: train() {total:.1f} s = Ray Train run "
        f"{t['wall_seconds']:.1f} s (per worker: shard loading {t['load_seconds']:.1f} s, fit {t['fit_seconds']['validator']:.1f} s "
        f"on {t['shard_rows']['validator']:,} rows) + driver split/score/register; {load_avg()}"
    )


def bench_bootstrap() -> None:
    import subprocess

    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
        cmd = [
            str(Path(sys.executable).parent / "scalper"),
            "train",
            "all",
            "--bootstrap",
            "--config",
            "config.json",
            "--registry",
            f"{d}/models",
            "--dataset",
            f"{d}/bootstrap",
        ]
        before = load_avg()
        t0 = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
        print("\n".join(f"    | {ln}" for ln in lines))
        if out.returncode != 0:
            print(out.stderr[-3000:])
        t1 = time.perf_counter()
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        noop = time.perf_counter() - t1
        print(
            f"(g) bootstrap (empty registry -> 3 models): {wall:.1f} s wall, exit {out.returncode} "
            f"(before: {before}; after: {load_avg()}); second run (no-op): {noop:.1f} s, exit {again.returncode}: "
            f"{again.stdout.strip()[:80]}"
        )


if __name__ == "__main__":
    main()
