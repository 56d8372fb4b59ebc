"""100 symbol-years of backtests in parallel on Ray, with a progress bar: time and peak memory.

    .venv/bin/python bench/bench_backtest_parallel.py [--symbols 100] [--minutes 525600]

Each symbol is one Ray task (synthetic bars -> indicators -> full backtest); the local
cluster gets every CPU of the machine. Peak memory = the largest sum of the resident memory
of this process and all its children (the Ray processes), sampled every 0.5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time

import msgspec
import psutil

from scalper import backtest as bt
from scalper.config import Config, default_document

from common import machine_info


class PeakMemory:
    """Samples the RSS of this process tree in a thread; `.peak` in bytes."""

    def __init__(self, period: float = 0.5):
        self.peak = 0
        self._stop = threading.Event()
        self._period = period
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process(os.getpid())
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self._period)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--minutes", type=int, default=525_600)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    doc = default_document()
    doc["feed"]["synthetic"]["minutes"] = args.minutes
    doc["ray"]["include_dashboard"] = False
    cfg = msgspec.convert(doc, Config)
    symbols = [f"S{i:03d}" for i in range(args.symbols)]
    jobs = bt.make_jobs(symbols, per_symbol=True, synthetic=True)
    from actors.backtests import ensure_ray, run_jobs

    t0 = time.perf_counter()
    with PeakMemory() as mem:
        ensure_ray(cfg)
        start = time.perf_counter() - t0
        results, wall = run_jobs(cfg, jobs, progress=True)
    bars = sum(r.summary["bars"] for r in results)
    trades = sum(r.summary["overall"]["trades"] for r in results)
    task_s = sum(r.seconds for r in results)
    print(f"### Parallel backtests on Ray, {machine_info()}\n")
    print("| what | value |")
    print("| --- | ---: |")
    print(f"| jobs (one symbol each) | {len(results)} |")
    print(f"| bars (1-minute) | {bars:,} ({bars / 525_600:.1f} symbol-years) |")
    print(f"| trades | {trades:,} |")
    print(f"| Ray start | {start:.1f} s |")
    print(f"| wall time for the jobs | {wall:.1f} s |")
    print(f"| throughput | {bars / wall:,.0f} bars/s |")
    print(f"| sum of task times (generate + indicators + backtest) | {task_s:.1f} s |")
    print(f"| peak memory, this process + Ray processes (RSS) | {mem.peak / 2**30:.2f} GiB |")


if __name__ == "__main__":
    main()
