"""Start-up cost a user feels: `scalper --help` and importing the domain package.

    .venv/bin/python bench/bench_startup.py

Targets (issue 2): `scalper --help` < 1 s; domain import <= 1.5 s. Each figure is the best
of 5 fresh processes (imports are only cold once per process).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from common import machine_info

SCALPER = Path(sys.executable).with_name("scalper")
DOMAIN = (
    "import scalper.types, scalper.config, scalper.candles, scalper.indicators, scalper.store, "
    "scalper.feeds, scalper.pipeline, scalper.tables"
)


def best_process(cmd: list[str], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    rows = [
        ("`scalper --help`", best_process([str(SCALPER), "--help"]), "< 1 s"),
        ("`python -c 'import scalper.cli'`", best_process([sys.executable, "-c", "import scalper.cli"]), "-"),
        (
            "import every domain module (no pandas_ta call)",
            best_process([sys.executable, "-c", DOMAIN]),
            "<= 1.5 s",
        ),
        (
            "import pandas_ta (what the first batch indicator call adds)",
            best_process([sys.executable, "-c", "import pandas_ta"]),
            "-",
        ),
        ("bare interpreter start", best_process([sys.executable, "-c", "pass"]), "-"),
    ]
    print(f"### Start-up, {machine_info()}\n")
    print("| what | wall time (best of 5 processes) | target |")
    print("| --- | ---: | --- |")
    for what, seconds, target in rows:
        print(f"| {what} | {seconds:.3f} s | {target} |")


if __name__ == "__main__":
    main()
