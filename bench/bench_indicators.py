"""Indicator speed: streaming update per bar, and compute_batch on 1,000,000 bars.

    .venv/bin/python bench/bench_indicators.py [--stream-bars 200000] [--batch-bars 1000000]

(a) StreamingIndicators.update over the whole default set (EMA 9/21/50/200, RSI 14, daily
    VWAP, Bollinger 20/2, volume SMA 20, ATR 14), microseconds per bar per symbol, best of 3
    (warm-up bars included). Target: <= 15 us. Also update + values() (what a Snapshot costs).
(b) compute_batch (pandas_ta, native engine) on 1M bars: the first call in a fresh process with
    an EMPTY numba cache (cold JIT), the first call with numba's on-disk cache, and the best of 3
    warm calls.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scalper.config import IndicatorsConfig
from scalper.indicators import StreamingIndicators, compute_batch

from common import machine_info

ROOT = Path(__file__).resolve().parents[1]
NS_PER_MINUTE = 60 * 10**9
NS_PER_DAY = 1440 * NS_PER_MINUTE
OHLCV = ["timestamp", "open", "high", "low", "close", "volume"]


def synthetic_bars(
    n: int,
    seed: int = 0,
    start_ns: int = 1_380_585_600 * 10**9,
    step_ns: int = NS_PER_MINUTE,
    vol_mult: float = 1.0,
) -> pd.DataFrame:
    """Seeded regime-switching random walk of 1-minute OHLCV bars on a 0.25 tick (ES-like).

    Regimes quiet / normal / trending / volatile (per-minute log-return sigma 0.008% / 0.03% /
    0.03% / 0.12%, times `vol_mult`) switch as a Markov chain (mean stay 400 bars); ~3% of bars
    are empty minutes: flat at the previous close with zero volume.
    """
    rng = np.random.default_rng(seed)
    sig = np.array([0.00008, 0.0003, 0.0003, 0.0012]) * vol_mult
    mu = np.array([0.0, 0.0, 0.00008, -0.00005]) * vol_mult
    vol_scale = np.array([0.4, 1.0, 1.3, 3.0])
    switch = rng.random(n) < 1 / 400
    nxt = rng.integers(0, 4, n)
    regime = np.empty(n, dtype=np.int64)
    r = 1
    for i in range(n):
        if switch[i]:
            r = nxt[i]
        regime[i] = r
    close = np.round(1700.0 * np.exp(np.cumsum(rng.normal(mu[regime], sig[regime]))) * 4) / 4
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) + np.round(rng.exponential(sig[regime] * 1700 * 0.8) * 4) / 4
    low = np.minimum(open_, close) - np.round(rng.exponential(sig[regime] * 1700 * 0.8) * 4) / 4
    volume = np.round(rng.lognormal(5.0, 1.0, n) * vol_scale[regime])
    empty = rng.random(n) < 0.03
    empty[0] = False
    idx = np.nonzero(empty)[0]
    prev = close[idx - 1]
    # consecutive empty minutes: carry the last real close forward
    for k in range(1, len(idx)):
        if idx[k] == idx[k - 1] + 1:
            prev[k] = prev[k - 1]
    open_[idx] = high[idx] = low[idx] = close[idx] = prev
    volume[idx] = 0.0
    after = idx + 1
    keep = after < n
    after, prev = after[keep], prev[keep]
    open_[after] = prev
    high[after] = np.maximum(high[after], prev)
    low[after] = np.minimum(low[after], prev)
    ts = start_ns + np.arange(n, dtype=np.int64) * step_ns
    return pd.DataFrame(
        {"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def bench_stream(bars: pd.DataFrame, repeat: int = 3) -> tuple[float, float]:
    """(best us/bar for update, best us/bar for update + values())."""
    rows = list(zip(*(bars[c].tolist() for c in OHLCV), strict=True))
    cfg = IndicatorsConfig()
    best_u = best_uv = float("inf")
    for _ in range(repeat):
        s = StreamingIndicators(cfg)
        upd = s.update
        t0 = time.perf_counter()
        for row in rows:
            upd(*row)
        best_u = min(best_u, time.perf_counter() - t0)
        s = StreamingIndicators(cfg)
        upd, vals = s.update, s.values
        t0 = time.perf_counter()
        for row in rows:
            upd(*row)
            vals()
        best_uv = min(best_uv, time.perf_counter() - t0)
    return best_u / len(rows) * 1e6, best_uv / len(rows) * 1e6


_FIRST_CALL = """
import json, sys, time
sys.path.insert(0, {bench!r})
from bench_indicators import synthetic_bars
from scalper.config import IndicatorsConfig
from scalper.indicators import compute_batch
bars = synthetic_bars({n}, seed=1)
t0 = time.perf_counter()
compute_batch(bars, IndicatorsConfig())
print(json.dumps(time.perf_counter() - t0))
"""


def first_call_seconds(n: int, cold: bool) -> float:
    """compute_batch's first call in a fresh process (pandas_ta import + numba JIT or cache load)."""
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["NUMBA_CACHE_DIR"] = cache  # empty: forces compilation
        code = _FIRST_CALL.format(bench=str(Path(__file__).resolve().parent), n=n)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
        )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream-bars", type=int, default=200_000)
    ap.add_argument("--batch-bars", type=int, default=1_000_000)
    args = ap.parse_args()

    stream_bars = synthetic_bars(args.stream_bars, seed=1)
    us_update, us_update_values = bench_stream(stream_bars)

    cold = first_call_seconds(args.batch_bars, cold=True)
    cached = first_call_seconds(args.batch_bars, cold=False)
    batch_bars = synthetic_bars(args.batch_bars, seed=1)
    cfg = IndicatorsConfig()
    compute_batch(batch_bars, cfg)  # warm-up: JIT / cache load excluded below
    warm = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        compute_batch(batch_bars, cfg)
        warm = min(warm, time.perf_counter() - t0)

    print("## Indicator benchmark\n")
    print(f"Machine: {machine_info()}\n")
    print("| measurement | result |")
    print("| --- | --- |")
    print(
        f"| streaming `update`, whole set, {args.stream_bars:,} bars, best of 3 | "
        f"**{us_update:.2f} us/bar/symbol** (target <= 15) |"
    )
    print(f"| streaming `update` + `values()` dict | {us_update_values:.2f} us/bar/symbol |")
    print(f"| `compute_batch` {args.batch_bars:,} bars, warm, best of 3 | **{warm:.2f} s** |")
    print(f"| `compute_batch` first call, fresh process, empty numba cache (cold JIT) | {cold:.2f} s |")
    print(f"| `compute_batch` first call, fresh process, numba disk cache present | {cached:.2f} s |")
    print(
        "\nWhole set = EMA 9/21/50/200, RSI 14, daily VWAP, Bollinger 20/2, volume SMA 20, ATR 14; "
        "synthetic regime-switching ES-like bars. First-call figures include importing pandas_ta."
    )


if __name__ == "__main__":
    main()
