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
    cluster: wall seconds per model (includes Ray Train's start-up per run).
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
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("scalper").setLevel(logging.ERROR)
    print(machine_info())
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
    if a.ray:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        from training.xgb import train

        with tempfile.TemporaryDirectory() as d:
            write_dataset(Path(d) / "ds", cfg, signals, regime, {"synthetic": True})
            t0 = time.perf_counter()
            cards = train(
                with_overrides(cfg, {"ray.include_dashboard": False}),
                Path(d) / "ds",
                ["regime", "validator", "sizer"],
                Path(d) / "models",
            )
            total = time.perf_counter() - t0
        parts = ", ".join(
            f"{k} {c.metrics['training']['wall_seconds']} s ({c.rows:,} rows)" for k, c in cards.items()
        )
        print(f"(e) Ray Train, {a.workers} worker(s): {parts}; total with cluster start {total:.1f} s")


if __name__ == "__main__":
    main()
