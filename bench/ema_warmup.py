"""How much history does EMA-200 need? Seeded-from-H-bars vs long-history EMA at the same bar.

    .venv/bin/python bench/ema_warmup.py

pandas_ta's EMA (native, presma) seeds with the SMA of its first 200 bars, then decays the seed
error by (199/201) per bar. For each history length H and each evaluation bar t, EMA-200 is
computed from exactly the H bars t-H+1..t (what a live system has after loading H bars of
warm-up), and compared with the EMA-200 at t computed over a long reference history:

* synthetic bars (this folder's ES-like regime-switching walk, the same at 4x volatility, and
  the project feed `scalper.feeds.synthetic` at its default 60% annual volatility): reference =
  all history from bar 0, evaluation bars t >= 5,000 (>= 5,000 bars of reference);
* the bundled real ES minutes (~2,260 bars): reference = all history from bar 0, evaluation bars
  t with at least H + 600 bars of history, so the reference's own seed error is < 0.3% of the
  measured difference. H values that leave no such bar are n/a.

Reported: max and median of |EMA_H - EMA_ref| / EMA_ref in percent, and the smallest H whose
max stays under 0.01%. `candles.warmup_bars` (default 1200) is the H a live system uses.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_indicators import synthetic_bars

from scalper.config import SyntheticFeed
from scalper.feeds.synthetic import synthetic_bars as feed_bars

from common import machine_info

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data/samples/es_ticks_2013-09.parquet"
LENGTH = 200
HISTORIES = [200, 400, 800, 1200, 1600, 2400, 3200]
THRESHOLD_PCT = 0.01
REAL_MARGIN = 600


def es_minute_bars() -> pd.DataFrame:
    ticks = pd.read_parquet(SAMPLE).set_index("timestamp").sort_index(kind="stable")
    ohlc = ticks["price"].resample("1min").ohlc()
    return ohlc.dropna(subset=["open"]).reset_index(drop=True)


def reference_ema(close: np.ndarray) -> np.ndarray:
    """pandas_ta's own EMA-200 (native engine) over the whole series."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pandas_ta as ta

        return ta.ema(pd.Series(close), length=LENGTH, talib=False, presma=True).to_numpy()


def windowed_ema(close: np.ndarray, ends: np.ndarray, history: int) -> np.ndarray:
    """EMA-200 at each bar in `ends`, from only the `history` bars ending there (pandas_ta math)."""
    windows = sliding_window_view(close, history)[ends - history + 1]  # (len(ends), history)
    alpha = 1.0 / (1.0 + (LENGTH - 1) / 2)
    old, new = 1.0 - alpha, alpha
    e = windows[:, :LENGTH].mean(axis=1)
    for j in range(LENGTH, history):
        x = windows[:, j]
        e = (old * e + new * x) / (old + new)
    return e


def measure(close: np.ndarray, eval_from: dict[int, int], max_eval: int = 4000) -> dict[int, tuple]:
    """{H: (max %, median %, evaluation bars)} or None where there is no evaluation bar."""
    ref = reference_ema(close)
    out = {}
    for h in HISTORIES:
        first = max(eval_from[h], h - 1)
        if first >= len(close):
            out[h] = None
            continue
        ends = np.arange(first, len(close))
        if len(ends) > max_eval:
            ends = ends[np.linspace(0, len(ends) - 1, max_eval).astype(np.int64)]
        rel = np.abs(windowed_ema(close, ends, h) - ref[ends]) / np.abs(ref[ends]) * 100
        out[h] = (float(rel.max()), float(np.median(rel)), len(ends))
    return out


def smallest_ok(res: dict[int, tuple]) -> int | None:
    for h in HISTORIES:
        if res[h] is not None and res[h][0] < THRESHOLD_PCT:
            return h
    return None


def main() -> None:
    real = es_minute_bars()["close"].to_numpy(dtype=np.float64)
    synth = synthetic_bars(200_000, seed=21)["close"].to_numpy()
    synth_hot = synthetic_bars(200_000, seed=22, vol_mult=4.0)["close"].to_numpy()
    feed = feed_bars(SyntheticFeed(seed=23), "ES", 200_000)["close"].to_numpy(dtype=np.float64)
    datasets = {
        f"real ES 1-min ({len(real):,} bars)": measure(real, {h: h - 1 + REAL_MARGIN for h in HISTORIES}),
        f"synthetic ES-like ({len(synth):,} bars)": measure(synth, dict.fromkeys(HISTORIES, 5000)),
        f"synthetic 4x volatility ({len(synth_hot):,} bars)": measure(
            synth_hot, dict.fromkeys(HISTORIES, 5000)
        ),
        f"scalper.feeds.synthetic default, 60% annual vol ({len(feed):,} bars)": measure(
            feed, dict.fromkeys(HISTORIES, 5000)
        ),
    }

    print("## EMA-200 warm-up: relative difference vs long-history EMA\n")
    print(f"Machine: {machine_info()}\n")
    names = list(datasets)
    print("| history H (bars) | " + " | ".join(f"{n}: max % / median % (eval bars)" for n in names) + " |")
    print("| --- |" + " --- |" * len(names))
    for h in HISTORIES:
        cells = []
        for n in names:
            r = datasets[n][h]
            cells.append("n/a (too little history)" if r is None else f"{r[0]:.2e} / {r[1]:.2e} ({r[2]:,})")
        print(f"| {h} | " + " | ".join(cells) + " |")
    print()
    picks = {n: smallest_ok(datasets[n]) for n in names}
    for n, h in picks.items():
        print(f"- {n}: smallest H with max < {THRESHOLD_PCT}%: {h if h is not None else 'none measured'}")
    measured = [h for h in picks.values() if h is not None]
    if measured:
        need = max(measured)
        verdict = "supports" if need <= 1200 else "does NOT support"
        print(
            f"\nRecommendation: warm up EMA-200 with at least {need} bars (the largest of the above). "
            f"This {verdict} the config default candles.warmup_bars = 1200."
        )


if __name__ == "__main__":
    main()
