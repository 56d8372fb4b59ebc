"""Indicators: the streaming path gives compute_batch's numbers on every bar, warm-up included.

Pure logic, no Ray. The first pandas_ta call in a process JIT-compiles (or loads from numba's
disk cache) its SMA kernel: ~9 s cold, ~0.6 s cached.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalper.config import IndicatorsConfig
from scalper.indicators import (
    StreamingIndicators,
    TalibUnavailableError,
    compute_batch,
    compute_streaming,
    indicator_columns,
)
from scalper.types import NS_PER_MINUTE, Bar

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data/samples/es_ticks_2013-09.parquet"
NS_PER_DAY = 1440 * NS_PER_MINUTE
OHLCV = ["timestamp", "open", "high", "low", "close", "volume"]

# Columns whose pandas math StreamingIndicators replays operation by operation (bit-identical);
# Bollinger and the volume SMA use numba's np.convolve (a BLAS dot) for the mean: a few ulps.
EXACT = ["ema_9", "ema_21", "ema_50", "ema_200", "rsi_14", "session_vwap", "atr_14"]


# ------------------------------------------------------------------------------- data


def es_minute_bars() -> pd.DataFrame:
    """The bundled ES ticks as 1-minute bars, by a plain pandas resample."""
    ticks = pd.read_parquet(SAMPLE).set_index("timestamp").sort_index(kind="stable")
    ohlc = ticks["price"].resample("1min").ohlc()
    ohlc["volume"] = ticks["volume"].resample("1min").sum().astype(np.float64)
    bars = ohlc.dropna(subset=["open"]).reset_index()
    bars["timestamp"] = bars["timestamp"].dt.tz_convert(None).astype("datetime64[ns]").astype(np.int64)
    return bars[OHLCV].reset_index(drop=True)


def synthetic_bars(
    n: int, seed: int = 0, start_ns: int = 1_380_585_600 * 10**9, step_ns: int = NS_PER_MINUTE
):
    """Seeded regime-switching random walk of OHLCV bars on a 0.25 tick.

    Regimes (quiet / normal / trending / volatile) switch as a Markov chain; ~3% of bars are
    empty minutes (flat at the previous close, zero volume), some at session starts.
    """
    rng = np.random.default_rng(seed)
    sig = np.array([0.00008, 0.0003, 0.0003, 0.0012])
    mu = np.array([0.0, 0.0, 0.00008, -0.00005])
    vol_scale = np.array([0.4, 1.0, 1.3, 3.0])
    regime = np.empty(n, dtype=np.int64)
    r = 1
    switch = rng.random(n) < 1 / 400
    nxt = rng.integers(0, 4, n)
    for i in range(n):
        if switch[i]:
            r = nxt[i]
        regime[i] = r
    logret = rng.normal(mu[regime], sig[regime])
    close = np.round(1700.0 * np.exp(np.cumsum(logret)) * 4) / 4
    open_ = np.r_[close[0], close[:-1]]
    wick = np.round(rng.exponential(sig[regime] * 1700 * 0.8) * 4, 0) / 4
    wick2 = np.round(rng.exponential(sig[regime] * 1700 * 0.8) * 4, 0) / 4
    high = np.maximum(open_, close) + wick
    low = np.minimum(open_, close) - wick2
    volume = np.round(rng.lognormal(5.0, 1.0, n) * vol_scale[regime])
    empty = rng.random(n) < 0.03
    ts = start_ns + np.arange(n, dtype=np.int64) * step_ns
    empty |= (ts % NS_PER_DAY == 0) & (rng.random(n) < 0.5)  # some sessions open on an empty minute
    empty[0] = False
    for i in np.nonzero(empty)[0]:
        c = close[i - 1]
        open_[i] = high[i] = low[i] = close[i] = c
        volume[i] = 0.0
        if i + 1 < n:
            open_[i + 1] = c
            high[i + 1] = max(high[i + 1], c)
            low[i + 1] = min(low[i + 1], c)
    return pd.DataFrame(
        {"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def stream(bars: pd.DataFrame, cfg: IndicatorsConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-bar streaming values and ready flags, indexed like `bars`."""
    s = StreamingIndicators(cfg)
    vals, ready = [], []
    cols = [bars[c].tolist() for c in OHLCV]
    for row in zip(*cols, strict=True):
        s.update(*row)
        vals.append(s.values())
        ready.append(s.ready())
    names = indicator_columns(cfg)
    return (
        pd.DataFrame(vals, index=bars.index, columns=names, dtype=np.float64),
        pd.DataFrame(ready, index=bars.index, columns=names, dtype=bool),
    )


def assert_same_numbers(batch: pd.DataFrame, streamed: pd.DataFrame, rtol: float = 1e-9) -> None:
    assert list(batch.columns) == list(streamed.columns)
    for name in batch.columns:
        b = batch[name].to_numpy()
        s = streamed[name].to_numpy()
        nan_b, nan_s = np.isnan(b), np.isnan(s)
        where = np.nonzero(nan_b != nan_s)[0]
        assert where.size == 0, f"{name}: NaN positions differ first at row {where[:5]}"
        ok = ~nan_b
        np.testing.assert_allclose(s[ok], b[ok], rtol=rtol, atol=0, err_msg=name)


@pytest.fixture(scope="module")
def es_bars() -> pd.DataFrame:
    return es_minute_bars()


@pytest.fixture(scope="module")
def es_batch_and_stream(es_bars):
    cfg = IndicatorsConfig()
    return compute_batch(es_bars, cfg), *stream(es_bars, cfg)


# ------------------------------------------------------------------------------- equality


def test_stream_equals_batch_on_every_real_es_minute_bar(es_bars, es_batch_and_stream):
    batch, streamed, _ = es_batch_and_stream
    assert len(es_bars) > 2000
    assert batch.index.equals(es_bars.index)
    assert (batch.dtypes == np.float64).all()
    assert_same_numbers(batch, streamed)


def test_compute_streaming_gives_the_per_bar_stream_values(es_bars, es_batch_and_stream):
    _, streamed, _ = es_batch_and_stream
    pd.testing.assert_frame_equal(compute_streaming(es_bars, IndicatorsConfig()), streamed)


def test_stream_is_bit_identical_where_pandas_math_is_replayed(es_bars, es_batch_and_stream):
    batch, streamed, _ = es_batch_and_stream
    # pandas_ta adds float epsilon to every high-low when ANY bar is flat; the stream always
    # does, which is right for real minute data (it has flat bars).
    assert (es_bars["high"] == es_bars["low"]).any()
    for name in EXACT:
        b, s = batch[name].to_numpy(), streamed[name].to_numpy()
        assert np.array_equal(b, s, equal_nan=True), name
    for name in ["bb_lower", "bb_mid", "bb_upper", "volume_sma_20"]:
        b, s = batch[name].to_numpy(), streamed[name].to_numpy()
        ok = ~np.isnan(b)
        assert np.max(np.abs(s[ok] - b[ok]) / np.abs(b[ok])) < 1e-14, name


def test_stream_equals_batch_on_100k_synthetic_multi_day_bars():
    # The project's own regime-switching market; 4 trades a minute on average leaves ~3% of the
    # minutes empty (flat, zero volume). It also carries extra columns (trades, vwap): ignored.
    from scalper.config import SyntheticFeed
    from scalper.feeds.synthetic import synthetic_bars as feed_bars

    bars = feed_bars(SyntheticFeed(seed=11, ticks_per_minute=4.0), "ES", 100_000)
    assert len(bars) == 100_000
    assert bars["timestamp"].iloc[-1] - bars["timestamp"].iloc[0] > 60 * NS_PER_DAY  # many VWAP resets
    assert (bars["volume"] == 0).any()
    cfg = IndicatorsConfig()
    assert_same_numbers(compute_batch(bars, cfg), stream(bars, cfg)[0])


def test_vwap_is_nan_until_the_session_trades():
    bars = synthetic_bars(5_000, seed=13)
    day_open = (bars["timestamp"] % NS_PER_DAY).isin([0, NS_PER_MINUTE])  # two empty minutes
    bars.loc[day_open, "volume"] = 0.0
    cfg = IndicatorsConfig()
    batch = compute_batch(bars, cfg)
    streamed, ready = stream(bars, cfg)
    assert day_open.sum() >= 6
    assert batch.loc[day_open, "session_vwap"].isna().all()
    assert not ready.loc[day_open, "session_vwap"].any()
    assert batch["session_vwap"].notna().sum() == len(bars) - day_open.sum()
    assert_same_numbers(batch, streamed)


@pytest.mark.parametrize(
    "overrides",
    [
        {"vwap_anchor": "W"},
        {"vwap_anchor": "M"},
        # com == 1 (alpha 0.5) takes pandas' irregular-interval branch of ewm
        {"ema_lengths": [2, 3, 5], "rsi_length": 2, "atr_length": 2, "bbands_length": 2},
        {"ema_lengths": [200, 9], "bbands_std": 1.5, "volume_sma_length": 7},
    ],
)
def test_stream_equals_batch_for_other_settings(overrides):
    # 37-minute steps: 20,000 bars cover ~17 months, so weekly and monthly sessions roll over.
    bars = synthetic_bars(20_000, seed=5, start_ns=1_356_998_400 * 10**9, step_ns=37 * NS_PER_MINUTE)
    cfg = IndicatorsConfig(**overrides)
    assert_same_numbers(compute_batch(bars, cfg), stream(bars, cfg)[0])


def test_stream_equals_batch_on_constant_prices_and_huge_jumps():
    # Constant stretches hit pandas' "weighted == cur" guard and RSI's 0/0; jumps of many orders
    # of magnitude force the rolling variance's recompute of the window.
    bars = synthetic_bars(3_000, seed=7)
    px = ["open", "high", "low", "close"]
    bars.loc[0:300, px] = 1700.0
    bars.loc[0:50, "volume"] = 0.0
    bars.loc[1000:1005, px] = 1e7
    bars.loc[2000:2100, px] = 1e-3
    cfg = IndicatorsConfig()
    batch = compute_batch(bars, cfg)
    assert batch["rsi_14"].iloc[14:300].isna().all()  # no gain, no loss yet
    assert_same_numbers(batch, stream(bars, cfg)[0])


def test_batch_row_depends_only_on_bars_up_to_it():
    # What a live system computes at bar i from bars[:i + 1] is the full-history batch's row i
    # (pandas_ta alone would give RSI from row 1 and ATR at row 13 on a long frame, but None on
    # a frame shorter than 15 rows: those warm-up rows are blanked).
    bars = synthetic_bars(260, seed=3)
    cfg = IndicatorsConfig()
    full = compute_batch(bars, cfg)
    for k in [*range(1, 24), 50, 199, 200, 201, 260]:
        part = compute_batch(bars.iloc[:k], cfg)
        assert_same_numbers(part, full.iloc[:k], rtol=1e-12)


# ------------------------------------------------------------------------------- warm-up


@pytest.mark.parametrize("rows", [0, 1, 2, 5, 13, 14, 15, 19, 20, 49])
def test_fewer_rows_than_a_window_give_nan_columns_not_errors(rows):
    bars = synthetic_bars(60, seed=2).iloc[:rows]
    bars.index = bars.index + 100  # the output keeps the input's index, whatever it is
    cfg = IndicatorsConfig()
    out = compute_batch(bars, cfg)
    assert list(out.columns) == indicator_columns(cfg)
    assert out.index.equals(bars.index)
    assert (out.dtypes == np.float64).all()
    windows = {"ema_9": 9, "ema_21": 21, "ema_50": 50, "ema_200": 200, "rsi_14": 15, "session_vwap": 1}
    windows |= {"bb_lower": 20, "bb_mid": 20, "bb_upper": 20, "volume_sma_20": 20, "atr_14": 15}
    for name, window in windows.items():
        assert out[name].notna().sum() == max(0, rows - window + 1), name
    assert_same_numbers(out, stream(bars, cfg)[0])


def test_ready_flags_flip_exactly_at_the_first_non_nan_value(es_batch_and_stream):
    batch, _, ready = es_batch_and_stream
    first = {}
    for name in batch.columns:
        b = batch[name].to_numpy()
        i = int(np.argmax(~np.isnan(b)))
        first[name] = i
        assert not ready[name].iloc[:i].any(), name
        assert ready[name].iloc[i], name
        assert (ready[name].to_numpy() == ~np.isnan(b)).all(), name
    assert first == {
        "ema_9": 8,
        "ema_21": 20,
        "ema_50": 49,
        "ema_200": 199,
        "rsi_14": 14,
        "session_vwap": 0,
        "bb_lower": 19,
        "bb_mid": 19,
        "bb_upper": 19,
        "volume_sma_20": 19,
        "atr_14": 14,
    }


def test_all_ready_turns_true_with_the_slowest_indicator(es_bars):
    s = StreamingIndicators(IndicatorsConfig())
    flags = []
    for row in zip(*(es_bars[c].tolist() for c in OHLCV), strict=True):
        s.update(*row)
        flags.append(s.all_ready)
        assert s.all_ready == all(s.ready().values())
    assert flags.index(True) == 199  # EMA-200's first value


# ------------------------------------------------------------------------------- API


def test_update_bar_warm_and_reset_agree_with_update(es_bars):
    cfg = IndicatorsConfig()
    a = StreamingIndicators(cfg)
    b = StreamingIndicators(cfg)
    part = es_bars.iloc[:500]
    for row in part.itertuples(index=False):
        a.update(row.timestamp, row.open, row.high, row.low, row.close, row.volume)
        b.update_bar(Bar("ES", row.timestamp, row.open, row.high, row.low, row.close, row.volume, 1, 0.0))
    c = StreamingIndicators(cfg)
    c.warm(part)
    assert a.values() == b.values() == c.values()
    assert a.bars_seen == c.bars_seen == 500
    c.reset()
    assert c.bars_seen == 0 and not any(c.ready().values())
    c.warm(part)
    assert c.values() == a.values()


def test_vwap_restarts_at_utc_midnight():
    day = 1_380_585_600 * 10**9
    bars = pd.DataFrame(
        {
            "timestamp": [day - NS_PER_MINUTE, day, day + NS_PER_MINUTE],
            "open": [10.0, 20.0, 20.0],
            "high": [12.0, 21.0, 23.0],
            "low": [9.0, 19.0, 20.0],
            "close": [11.0, 20.0, 23.0],
            "volume": [5.0, 2.0, 2.0],
        }
    )
    cfg = IndicatorsConfig()
    out = compute_batch(bars, cfg)
    expected = [32 / 3, 20.0, (40 + 44) / 4]
    np.testing.assert_allclose(out["session_vwap"], expected, rtol=1e-15)
    np.testing.assert_allclose(stream(bars, cfg)[0]["session_vwap"], expected, rtol=1e-15)


def test_values_and_ready_are_keyed_by_indicator_columns():
    cfg = IndicatorsConfig(ema_lengths=[5, 8], rsi_length=3, volume_sma_length=4, atr_length=6)
    names = indicator_columns(cfg)
    bands = ["bb_lower", "bb_mid", "bb_upper"]
    assert names == ["ema_5", "ema_8", "rsi_3", "session_vwap", *bands, "volume_sma_4", "atr_6"]
    s = StreamingIndicators(cfg)
    assert list(s.values()) == names and list(s.ready()) == names
    assert all(np.isnan(v) for v in s.values().values()) and not s.all_ready


def test_unsorted_or_incomplete_bars_are_rejected():
    bars = synthetic_bars(30, seed=1)
    with pytest.raises(ValueError, match="sorted"):
        compute_batch(bars.iloc[::-1], IndicatorsConfig())
    with pytest.raises(ValueError, match="volume"):
        compute_batch(bars.drop(columns="volume"), IndicatorsConfig())


# ------------------------------------------------------------------------------- engine


def test_engine_is_passed_explicitly_to_pandas_ta(monkeypatch):
    import pandas_ta

    seen: dict[str, list] = {}
    for fname in ["ema", "rsi", "bbands", "sma", "atr"]:
        original = getattr(pandas_ta, fname)

        def spy(*args, _f=original, _name=fname, **kwargs):
            seen.setdefault(_name, []).append(kwargs.get("talib", "missing"))
            return _f(*args, **kwargs)

        monkeypatch.setattr(pandas_ta, fname, spy)
    compute_batch(synthetic_bars(300, seed=4), IndicatorsConfig(engine="native"))
    assert seen == {"ema": [False] * 4, "rsi": [False], "bbands": [False], "sma": [False], "atr": [False]}


def test_talib_engine_without_the_talib_module_raises_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "talib", None)  # makes `import talib` fail
    with pytest.raises(TalibUnavailableError, match=r"pip install ta-lib.*'native'"):
        compute_batch(synthetic_bars(30, seed=1), IndicatorsConfig(engine="talib"))


def test_streaming_refuses_the_talib_engine():
    with pytest.raises(NotImplementedError, match="native"):
        StreamingIndicators(IndicatorsConfig(engine="talib"))


def test_importing_indicators_does_not_import_pandas_ta_or_numba():
    code = (
        "import sys, scalper.indicators; "
        "print(sorted(m for m in ('pandas_ta', 'numba', 'pandas', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
