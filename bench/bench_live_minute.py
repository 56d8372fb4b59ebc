"""The live decision loop's cost per closed minute, in process, at many symbols.

    .venv/bin/python bench/bench_live_minute.py [--symbols 500] [--minutes 40] [--repeat 3]

The synthetic market (config.json otherwise) for `--symbols` symbols and `--minutes` event
minutes goes through the MarketDataPipeline once (not timed); then its closed minutes go
through a fresh `TradingSession.on_snapshots` (execution, the three strategies, the risk desk;
no models), best of `--repeat`: the wall time per minute, and the StrategyRunner's share
(`StrategyRunner.on_snapshots` alone, same minutes). This is the work every strategy actor and
the risk manager do per bar close in a Ray run, without the actor calls. The script only uses
APIs that existed before `Strategy.on_bars`, so it measures an earlier commit as well.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import machine_info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--minutes", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import os

    from scalper.config import Config, with_overrides
    from scalper.feeds import make_feed
    from scalper.pipeline import MarketDataPipeline, by_minute
    from scalper.trading import StrategyRunner, TradingSession

    cfg = with_overrides(
        Config(),
        {
            "symbols": [f"S{i:03d}" for i in range(args.symbols)],
            "feed.kind": "synthetic",
            "feed.synthetic.minutes": args.minutes,
        },
    )
    pipe, snaps = MarketDataPipeline(cfg), []
    for event in make_feed(cfg):
        if pipe.on_event(event):
            snaps += pipe.drain_snapshots()
    minutes = by_minute(snaps)

    def per_minute(make, call) -> float:
        best = float("inf")
        for _ in range(args.repeat):
            obj = make()
            t0 = time.perf_counter()
            for m in minutes:
                call(obj, m)
            best = min(best, time.perf_counter() - t0)
        return best / len(minutes)

    session = per_minute(lambda: TradingSession(cfg), lambda s, m: s.on_snapshots(m))
    runner = per_minute(lambda: StrategyRunner(cfg), lambda r, m: r.on_snapshots(m))
    print(f"machine: {machine_info()}; load {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"{args.symbols} symbols, {len(minutes)} minutes ({len(snaps):,} bars), best of {args.repeat}: "
        f"TradingSession {1e3 * session:.1f} ms per minute, of which StrategyRunner {1e3 * runner:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
