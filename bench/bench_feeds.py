"""Feed throughput: the synthetic market (ticks, bars, as a feed) and the bundled-file replay.

    .venv/bin/python bench/bench_feeds.py [--quick]

Prints a markdown table (one core, one process, best of N runs). A feed's rate counts every
event it yields (TickBatch + Heartbeat); with 100 ms intervals most events of a quiet feed are
heartbeats, and a TickBatch costs about as much as the numpy slices it holds, so feeds of
many ticks per symbol per interval move far more ticks per second than sparse ones.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import msgspec

from scalper.config import ReplayFeed, SyntheticFeed
from scalper.feeds import FileReplayFeed, SyntheticMarketFeed, synthetic_bars, synthetic_ticks
from scalper.types import TickBatch

from common import best_of, machine_info

SAMPLE = Path(__file__).resolve().parents[1] / "data/samples/es_ticks_2013-09.parquet"


def drain(feed) -> tuple[int, int]:
    """(events, ticks) of one full pass over a feed."""
    events = ticks = 0
    for e in feed:
        events += 1
        if type(e) is TickBatch:
            ticks += len(e.ts)
    return events, ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, one run each")
    args = parser.parse_args()
    repeat = 1 if args.quick else 3
    rows: list[tuple[str, str, str, str]] = []

    # 1. synthetic ticks, whole series (the generator itself)
    minutes = 240 if args.quick else 1440
    cfg = msgspec.structs.replace(SyntheticFeed(), ticks_per_minute=600.0, minutes=minutes)
    n = len(synthetic_ticks(cfg, "BENCH")["ts"])
    t = best_of(lambda: synthetic_ticks(cfg, "BENCH"), repeat)
    rows.append(
        ("synthetic_ticks (1 symbol, 600 ticks/min)", f"{n:,} ticks", f"{t:.3f}", f"{n / t:,.0f} ticks/s")
    )

    # 2. synthetic 1-minute bars drawn directly
    n = 100_000 if args.quick else 1_000_000
    t = best_of(lambda: synthetic_bars(SyntheticFeed(), "BENCH", n), repeat)
    rows.append(("synthetic_bars (1 symbol)", f"{n:,} bars", f"{t:.3f}", f"{n / t:,.0f} bars/s"))

    # 3. the synthetic market as a feed: many symbols, 100 ms batches
    for nsym, tpm, mins in ((100, 600.0, 15 if args.quick else 60), (10, 6000.0, 15 if args.quick else 60)):
        cfg = msgspec.structs.replace(SyntheticFeed(), ticks_per_minute=tpm, minutes=mins)
        feed = SyntheticMarketFeed(cfg, [f"S{i:03d}" for i in range(nsym)])
        t0 = time.perf_counter()
        events, ticks = drain(feed)
        t = time.perf_counter() - t0
        rows.append(
            (
                f"synthetic feed ({nsym} symbols x {tpm:g} ticks/min, {mins} min, 100 ms)",
                f"{events:,} events, {ticks:,} ticks",
                f"{t:.3f}",
                f"{events / t:,.0f} events/s, {ticks / t:,.0f} ticks/s",
            )
        )

    # 4. replay of the bundled ES file (500,000 real ticks over ~45 h, 100 ms batches)
    cfg = msgspec.convert({"path": str(SAMPLE)}, ReplayFeed)
    t_load = best_of(lambda: FileReplayFeed(cfg), repeat)
    feed = FileReplayFeed(cfg)
    events, ticks = drain(feed)
    t = best_of(lambda: drain(feed), repeat)
    rows.append(
        (
            "replay: read + check the parquet",
            f"{ticks:,} ticks",
            f"{t_load:.3f}",
            f"{ticks / t_load:,.0f} ticks/s",
        )
    )
    rows.append(
        (
            "replay: iterate the feed (100 ms)",
            f"{events:,} events, {ticks:,} ticks",
            f"{t:.3f}",
            f"{events / t:,.0f} events/s, {ticks / t:,.0f} ticks/s",
        )
    )

    print("## Feeds\n")
    print(f"Machine: {machine_info()}. Best of {repeat}.\n")
    print("| what | size | seconds | rate |")
    print("| --- | --- | ---: | ---: |")
    for r in rows:
        print(f"| {' | '.join(r)} |")


if __name__ == "__main__":
    main()
