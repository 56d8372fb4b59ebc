"""The models on Ray Serve (issue 6): call latency from an actor, batched throughput, and bar
close -> orders with all three models in a paper run.

    RAY_AUTH_MODE=disabled .venv/bin/python bench/bench_serve.py [--calls 300] [--symbols 100]
        [--minutes 60] [--speed 20]

Models: the three fitted on 2 synthetic symbols x 2 days (scalper.ml.evaluation.fit_fold_models,
~20 s), saved to a temporary registry and deployed with `serve.models.deploy_models` on an
embedded local cluster (`num_cpus=2`), config.json otherwise (serve section: 0 CPUs per
replica, max batch 64, no batch wait).

(a) from inside an actor (a probe actor holding a `ServedModel`): `--calls` sequential validator
    calls with the rows of one bar close (10 signals), p50 / p99 / max. Target p50 <= 10 ms,
    p99 <= 30 ms.
(b) throughput: 16 threads in the probe actor each sending 32-row requests for 5 s: rows/s
    through Serve with batching. Target >= 5,000 predictions/s.
(c) `--symbols` synthetic symbols for `--minutes` event minutes at `--speed` x real time (20x:
    a minute every 3 s, far more than the per-minute work, so no queue builds and the latency
    is the real-time one; the first ~25 minutes are the strategies' warm-up, without signals)
    with ml.enabled (the risk manager judges every signal through the three deployments): bar
    close -> orders submitted p50 / p99 over all minutes and over the minutes whose signals the
    models judged. Target p99 <= 150 ms at 100 symbols.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine_info


def fit_registry(root: Path):
    """Fit the three models on a small synthetic market; save them to a registry at `root`."""
    from scalper.backtest import load_bars
    from scalper.config import Config, with_overrides
    from scalper.ml import evaluation as ev
    from scalper.ml.dataset import collect
    from scalper.ml.registry import Registry

    cfg = with_overrides(
        Config(),
        {"symbols": ["AAA", "BBB"], "feed.synthetic.minutes": 2 * 1440, "ml.num_boost_round": 50},
    )
    bars = load_bars(cfg, synthetic=True, symbols=cfg.symbols)
    signals, regime = collect(cfg, bars)
    models, _ = ev.fit_fold_models(cfg, signals, regime)
    reg = Registry(root)
    for m in models.values():
        reg.save(m.booster, m.card)
    return cfg, reg


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--speed", type=float, default=20.0)
    ap.add_argument("--batch-wait-ms", type=float, default=None, help="serve.batch_wait_timeout_s x 1000")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from scalper.config import with_overrides
    from scalper.ml.features import feature_names

    print(f"machine: {machine_info()}; load {os.getloadavg()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    t0 = time.perf_counter()
    cfg, reg = fit_registry(tmp / "models")
    print(f"models fitted and registered in {time.perf_counter() - t0:.1f} s")
    cfg = with_overrides(cfg, {"ml.enabled": True, "ml.registry": str(reg.root)})
    if args.batch_wait_ms is not None:
        cfg = with_overrides(cfg, {"serve.batch_wait_timeout_s": args.batch_wait_ms / 1e3})
    print(f"serve: {cfg.serve}")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    from serve.models import deploy_models

    t0 = time.perf_counter()
    print(f"deployed {deploy_models(cfg)} in {time.perf_counter() - t0:.1f} s")
    n_feat = len(feature_names(cfg))

    @ray.remote(num_cpus=0)
    class Probe:
        def __init__(self, timeout: float):
            from serve.client import ServedModel

            self.model = ServedModel("validator", timeout)

        def latency(self, calls: int, rows: int) -> list[float]:
            x = np.random.default_rng(0).normal(size=(rows, n_feat)).astype(np.float32)
            out = []
            for _ in range(calls):
                t = time.perf_counter()
                self.model.predict(x)
                out.append(time.perf_counter() - t)
            return out

        def throughput(self, threads: int, rows: int, seconds: float) -> tuple[int, int]:
            x = np.random.default_rng(1).normal(size=(rows, n_feat)).astype(np.float32)
            done = [0] * threads
            errors = [0]
            stop = time.perf_counter() + seconds

            def loop(k: int) -> None:
                while time.perf_counter() < stop:
                    try:
                        self.model.predict(x)
                        done[k] += rows
                    except Exception:
                        errors[0] += 1

            ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            return sum(done), errors[0]

    probe = Probe.remote(5.0)
    ray.get(probe.latency.remote(20, 10))  # warm up
    lat = ray.get(probe.latency.remote(args.calls, 10))
    print(
        f"(a) validator call from an actor, 10 rows, {args.calls} calls: p50 {1e3 * pct(lat, 50):.1f} ms, "
        f"p99 {1e3 * pct(lat, 99):.1f} ms, max {1e3 * max(lat):.1f} ms (target p50 <= 10, p99 <= 30)"
    )
    from ray import serve

    from serve.models import APP

    validator = serve.get_deployment_handle("validator", app_name=APP)
    before = validator.stats.remote().result()
    rows, errors = ray.get(probe.throughput.remote(16, 32, 5.0))
    after = validator.stats.remote().result()
    per_batch = (after["requests"] - before["requests"]) / max(1, after["batches"] - before["batches"])
    print(
        f"(b) throughput, 16 callers x 32 rows for 5 s: {rows / 5.0:,.0f} predictions/s, {errors} errors, "
        f"{per_batch:.1f} requests per batch (target >= 5,000/s)"
    )
    ray.kill(probe)

    from actors.runtime import run_paper_on_ray

    syms = [f"S{i:03d}" for i in range(args.symbols)]
    run_cfg = with_overrides(
        cfg,
        {
            "symbols": syms,
            "feed.kind": "synthetic",
            "feed.synthetic.minutes": args.minutes,
            "feed.synthetic.speed": args.speed,
            "feed.synthetic.max_quiet_s": 2.0,
        },
    )
    t0 = time.perf_counter()
    res = run_paper_on_ray(run_cfg, tmp / "run", shards=2)
    lat, minutes = res["latencies"], res["latency_minutes"]
    ex = res["execution"]
    judged_minutes = {r.signal.ts for r in ex.records if r.models}
    with_models = [x for x, m in zip(lat, minutes, strict=True) if m in judged_minutes]
    print(
        f"(c) {args.symbols} symbols, {args.speed:g}x real time, {res['feed']['minutes']} minutes in "
        f"{time.perf_counter() - t0:.0f} s: bar close -> orders p50 {1e3 * pct(lat, 50):.0f} ms, "
        f"p99 {1e3 * pct(lat, 99):.0f} ms, max {1e3 * max(lat):.0f} ms (n={len(lat)}); minutes with signals "
        f"judged by the models: p50 {1e3 * pct(with_models, 50):.0f} ms, p99 {1e3 * pct(with_models, 99):.0f} ms, "
        f"max {1e3 * max(with_models, default=float('nan')):.0f} ms (n={len(with_models)}); "
        f"{len(ex.records)} signals, {sum(1 for r in ex.records if r.models)} judged (target p99 <= 150 ms)"
    )
    print(f"load at the end {os.getloadavg()}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
