"""Shared bits of the benchmark scripts: machine description and best-of timing."""

from __future__ import annotations

import datetime as dt
import os
import platform
import time
from collections.abc import Callable


def machine_info() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{dt.date.today().isoformat()}, {platform.system()} {platform.machine()}, {cpu}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    """Fastest wall time of `repeat` calls, in seconds (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
