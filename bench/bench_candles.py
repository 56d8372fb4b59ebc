"""Tick -> bar aggregation speed of CandleManager (one core, one process).

    .venv/bin/python bench/bench_candles.py

Targets (issue 2): batch >= 2,000,000 ticks/s (the bundled 500k ticks in < 0.25 s);
tick-at-a-time >= 300,000 ticks/s.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from scalper.candles import CandleManager
from scalper.types import NS_PER_SECOND

from common import best_of, machine_info  # bench/ is on sys.path when a script here runs

SAMPLE = Path(__file__).resolve().parents[1] / "data/samples/es_ticks_2013-09.parquet"


def load():
    t = pq.read_table(SAMPLE)
    ts = t["timestamp"].cast("int64").to_numpy().astype(np.int64) * 1_000_000
    return ts, t["price"].to_numpy().astype(np.float64), t["volume"].to_numpy().astype(np.float64)


def whole_batch(ts, p, v) -> None:
    m = CandleManager("ES")
    m.on_batch(ts, p, v)
    m.flush()


def interval_batches(chunks) -> None:
    m = CandleManager("ES")
    for t, p, v in chunks:
        m.on_batch(t, p, v)
    m.flush()


def one_by_one(tl, pl, vl) -> None:
    m = CandleManager("ES")
    on_tick = m.on_tick
    for i in range(len(tl)):
        on_tick(tl[i], pl[i], vl[i])
    m.flush()


def main() -> None:
    ts, p, v = load()
    n = len(ts)
    # the live shape: one batch per 100 ms of event time that had trades
    bucket = ts // (100_000_000)
    cuts = np.flatnonzero(bucket[1:] != bucket[:-1]) + 1
    bounds = np.concatenate(([0], cuts, [n]))
    chunks = [(ts[a:b], p[a:b], v[a:b]) for a, b in itertools.pairwise(bounds)]
    tl, pl, vl = ts.tolist(), p.tolist(), v.tolist()

    t_batch = best_of(lambda: whole_batch(ts, p, v), 7)
    t_chunks = best_of(lambda: interval_batches(chunks), 3)
    t_tick = best_of(lambda: one_by_one(tl, pl, vl), 3)

    # a bigger synthetic stream: 10 M in-order ticks, 1 per ~50 ms
    rng = np.random.default_rng(0)
    big = 10_000_000
    bts = 1_700_000_000 * NS_PER_SECOND + np.cumsum(rng.integers(1, 100_000_000, big))
    bp = np.round(100 * np.exp(np.cumsum(rng.normal(0, 1e-4, big))), 2)
    bv = rng.integers(1, 10, big).astype(np.float64)
    t0 = time.perf_counter()
    whole_batch(bts, bp, bv)
    t_big = time.perf_counter() - t0

    print(f"### Candles (tick -> 1-minute bar), {machine_info()}\n")
    print("| path | ticks | time | ticks/s | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(
        f"| batch, bundled ES ticks in one call | {n:,} | {t_batch:.3f} s | {n / t_batch:,.0f} | >= 2,000,000/s, < 0.25 s |"
    )
    print(
        f"| batch, bundled ES ticks in {len(chunks):,} calls (one per 100 ms with trades) | {n:,} | "
        f"{t_chunks:.3f} s | {n / t_chunks:,.0f} | - |"
    )
    print(f"| tick at a time, bundled ES ticks | {n:,} | {t_tick:.3f} s | {n / t_tick:,.0f} | >= 300,000/s |")
    print(
        f"| batch, synthetic in-order ticks in one call | {big:,} | {t_big:.3f} s | {big / t_big:,.0f} | - |"
    )


if __name__ == "__main__":
    main()
