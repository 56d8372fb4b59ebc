"""`make bench`: run every benchmark script here, one process each, and print their tables.

    .venv/bin/python bench/run_all.py [--quick]

The figures recorded in docs/BENCHMARKS.md come from these scripts. `--quick` skips the
slow ones (the EMA warm-up study and the store's 1M-bar run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    ("bench_startup.py", True),
    ("bench_candles.py", True),
    ("bench_indicators.py", True),
    ("bench_feeds.py", True),
    ("bench_pipeline.py", True),
    ("bench_backtest.py", False),
    ("bench_vs_backtesting_py.py", False),
    ("bench_backtest_parallel.py", False),
    ("bench_runtime_ray.py", False),
    ("bench_scale.py", False),
    ("bench_live_minute.py", False),
    ("bench_gate.py", True),
    ("bench_serve.py", False),
    ("bench_store.py", False),
    ("ema_warmup.py", False),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="only the fast benchmarks")
    args = ap.parse_args()
    failed = []
    for name, quick in SCRIPTS:
        if args.quick and not quick:
            continue
        print(f"\n<!-- bench/{name} -->", flush=True)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(HERE / name)], cwd=HERE.parent)
        print(f"\n_(bench/{name}: {time.perf_counter() - start:.0f} s)_", flush=True)
        if done.returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
