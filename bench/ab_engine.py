"""The backtest engine alone, for comparing two commits back to back (A/B).

    .venv/bin/python bench/ab_engine.py [--repeat 3] [--profile]

Times `Backtest(cfg).run(data)` (best of `--repeat`, every run listed) over one symbol-year of
synthetic bars in bench_backtest.py's three configs: the defaults, loose risk limits (90%) and
no risk halt (100%). The `scalper` package is whichever Python finds first, so another commit
is measured by pointing PYTHONPATH at a checkout of it, e.g.:

    git worktree add /tmp/old c5eb8ec
    PYTHONPATH=/tmp/old .venv/bin/python bench/ab_engine.py     # the old engine
    .venv/bin/python bench/ab_engine.py                         # this checkout

Alternate the two a few times: on this shared 2-core VM one commit's runs spread by ±20-30%.
`--profile`: also cProfile one no-halt run and print the 25 functions with the most own time.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backtest import loose_config

from scalper import backtest as bt
from scalper.config import Config
from scalper.feeds.synthetic import synthetic_bars


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    logging.getLogger("scalper").setLevel(logging.ERROR)  # the risk halts' warnings
    print(f"scalper from {Path(bt.__file__).resolve().parents[1]}")
    cfg = Config()
    data = {"SYN": bt.prepare("SYN", synthetic_bars(cfg.feed.synthetic, "SYN", 525_600), cfg)}
    configs = {"defaults": cfg, "loose90": loose_config(90.0), "nohalt": loose_config(100.0)}
    for name, c in configs.items():
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = bt.Backtest(c).run(data)
            times.append(time.perf_counter() - t0)
        runs = " ".join(f"{t:.3f}" for t in times)
        print(f"{name:9s} best {min(times):.3f} s  runs [{runs}]  trades {len(result.trades):,}")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(bt.Backtest(configs["nohalt"]).run, data)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
