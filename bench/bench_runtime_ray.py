"""Paper trading of the bundled ES ticks through the Ray actors (actors/runtime.py) vs in process.


    RAY_AUTH_MODE=disabled .venv/bin/python bench/bench_runtime_ray.py [--shards 1]

Both runs replay the same feed with config.json; the table shows wall times, the number of
actor calls and whether the trade fingerprints are equal.
"""

from __future__ import annotations

import argparse
import os
import time

from scalper.config import Config
from scalper.feeds import make_feed
from scalper.pipeline import MarketDataPipeline, trade_minutes
from scalper.report import fingerprint
from scalper.trading import TradingSession

from common import machine_info


def in_process(cfg: Config) -> list:
    pipe, session = MarketDataPipeline(cfg), TradingSession(cfg)
    for event in make_feed(cfg):
        if pipe.on_event(event):
            trade_minutes(session, pipe.drain_snapshots())
    return session.trades


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from actors.runtime import run_paper_on_ray

    cfg = Config()
    t0 = time.perf_counter()
    local = in_process(cfg)
    t_local = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    t_start = time.perf_counter() - t0
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        result = run_paper_on_ray(cfg, Path(tmp), shards=args.shards)
    ray.shutdown()
    trades = result["execution"].trades
    same = fingerprint(trades) == fingerprint(local)
    print(f"### Paper trading through Ray actors, {machine_info()}\n")
    print("| run | wall time | actor calls | trades | fingerprint equal |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| in process (feed -> pipeline -> TradingSession) | {t_local:.1f} s | - | {len(local)} | - |")
    print(
        f"| Ray: feed, {args.shards} candle shard(s), 3 strategies, risk manager, trading service "
        f"(Ray start {t_start:.1f} s not included) | "
        f"{result['seconds']:.1f} s | {result['feed']['actor_calls']:,} | {len(trades)} | {same} |"
    )


if __name__ == "__main__":
    main()
