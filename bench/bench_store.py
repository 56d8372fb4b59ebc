"""BarStore speed on local disk: bulk append and read, warm-start tail, and the live pattern.

    .venv/bin/python bench/bench_store.py [--dir DIR]

1,000,000 one-minute bars over ~695 UTC dates (one symbol), written to a temporary folder
under DIR (default: the system temp dir), which is removed afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from scalper.store import BarStore
from scalper.types import NS_PER_MINUTE

from common import best_of, machine_info

DAY = 86_400 * 10**9


def bars(n: int) -> pd.DataFrame:
    t0 = int(pd.Timestamp("2022-01-01", tz="UTC").value)
    rng = np.random.default_rng(0)
    close = 100 + np.cumsum(rng.normal(0, 0.1, n))
    return pd.DataFrame(
        {
            "timestamp": t0 + np.arange(n, dtype=np.int64) * NS_PER_MINUTE,
            "open": close + rng.normal(0, 0.05, n),
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": rng.random(n) * 10,
            "trades": rng.integers(0, 50, n),
            "vwap": close,
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    df = bars(1_000_000)
    t0 = int(df["timestamp"].iloc[0])
    dates = int(df["timestamp"].floordiv(DAY).nunique())
    rows: list[tuple[str, str]] = []
    base = tempfile.mkdtemp(dir=args.dir, prefix="scalper-store-bench-")
    try:
        for durable in (True, False):
            store = BarStore(tempfile.mkdtemp(dir=base), durable=durable)
            start = time.perf_counter()
            store.append("ES", df)
            rows.append(
                (
                    f"append 1,000,000 bars in one call, fsync={durable}",
                    f"{time.perf_counter() - start:.2f} s",
                )
            )
            if not durable:
                continue
            got = store.read("ES")
            assert got.equals(df), "round trip changed the bars"
            rows.append(("read all", f"{best_of(lambda s=store: s.read('ES'), 3):.2f} s"))
            root = store.uri
            rows.append(
                (
                    "raw pyarrow.dataset read of the same files (no dedupe, no pandas)",
                    f"{best_of(lambda r=root: ds.dataset(r, partitioning='hive').to_table(), 3):.2f} s",
                )
            )
            one_day = (t0 + 300 * DAY, t0 + 301 * DAY)
            rows.append(
                ("read one day", f"{best_of(lambda s=store, r=one_day: s.read('ES', *r)) * 1e3:.1f} ms")
            )
            month = (t0 + 300 * DAY, t0 + 330 * DAY)
            rows.append(
                ("read 30 days", f"{best_of(lambda s=store, r=month: s.read('ES', *r), 3) * 1e3:.1f} ms")
            )
            rows.append(
                ("tail(1200) (warm start)", f"{best_of(lambda s=store: s.tail('ES', 1200)) * 1e3:.1f} ms")
            )
            rows.append(("last_timestamp", f"{best_of(lambda s=store: s.last_timestamp('ES')) * 1e3:.1f} ms"))
            live = BarStore(tempfile.mkdtemp(dir=base), durable=durable)
            k = 300
            start = time.perf_counter()
            for i in range(k):
                live.append("ES", df.iloc[i : i + 1])
            rows.append(
                (
                    "live pattern: append one bar, x300 (fsync)",
                    f"{(time.perf_counter() - start) / k * 1e3:.2f} ms/append",
                )
            )
            rows.append(
                (
                    "read a day held in 300 one-bar files",
                    f"{best_of(lambda s=live: s.read('ES'), 3) * 1e3:.0f} ms",
                )
            )
            start = time.perf_counter()
            live.compact("ES", "2022-01-01")
            rows.append(("compact that day", f"{(time.perf_counter() - start) * 1e3:.0f} ms"))
            rows.append(("read it after compact", f"{best_of(lambda s=live: s.read('ES'), 3) * 1e3:.1f} ms"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"### Bar store (local disk, 1,000,000 bars over {dates} dates), {machine_info()}\n")
    print("| operation | time |")
    print("| --- | ---: |")
    for what, value in rows:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    main()
