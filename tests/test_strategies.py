"""Strategies: each entry rule and its near-misses on hand-built columns, then two properties on
real ES minute bars: no look-ahead (a truncated history gives the same signals) and live ==
backtest (`on_bar` over a sliding window gives exactly what `signals` gives over the series)."""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from scalper.candles import CandleManager
from scalper.config import (
    BreakoutConfig,
    Config,
    MeanReversionConfig,
    MomentumConfig,
    StrategiesConfig,
)
from scalper.indicators import compute_batch
from scalper.strategies import (
    STRATEGIES,
    Breakout,
    MeanReversion,
    Momentum,
    SignalArrays,
    Strategy,
    build_strategies,
)
from scalper.strategies.base import market_arrays, shift, side_from
from scalper.strategies.breakout import prior_max, prior_min
from scalper.types import NS_PER_MINUTE, OrderType, Side, Signal

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data/samples/es_ticks_2013-09.parquet"
T0 = 1_378_000_000 * 1_000_000_000


def make_cfg(allow_short: bool = True, **sections: msgspec.Struct) -> Config:
    return Config(strategies=StrategiesConfig(allow_short=allow_short, **sections))


def columns(n: int, **cols: object) -> dict[str, np.ndarray]:
    """n rows: timestamps one minute apart plus the given columns (scalars are broadcast)."""
    out = {"timestamp": T0 + np.arange(n, dtype=np.int64) * NS_PER_MINUTE}
    for name, v in cols.items():
        a = np.asarray(v, dtype=np.float64)
        out[name] = np.full(n, float(a)) if a.ndim == 0 else a.copy()
        assert out[name].shape == (n,), name
    return out


def fired(strategy: Strategy, cols: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """(row, side) of every row where the rule gives a signal; side +1 long, -1 short."""
    side = strategy.rule(cols).side
    return [(int(i), int(side[i])) for i in np.flatnonzero(side)]


def last_signal(strategy: Strategy, cols: dict[str, np.ndarray]) -> Signal | None:
    sigs = [s for s in strategy.signals("TEST", cols) if s.ts == cols["timestamp"][-1]]
    return sigs[0] if sigs else None


# ------------------------------------------------------------------------------- momentum


def momentum_long(**over: object) -> dict[str, np.ndarray]:
    """ema9 crosses above ema21 at row 1, close above ema50, RSI 60, ATR 2."""
    base: dict[str, object] = dict(
        close=[100.0, 102.0],
        ema_9=[99.0, 101.0],
        ema_21=[100.0, 100.0],
        ema_50=[95.0, 95.0],
        rsi_14=[55.0, 60.0],
        atr_14=2.0,
    )
    return columns(2, **(base | over))


def momentum_short(**over: object) -> dict[str, np.ndarray]:
    """ema9 crosses below ema21 at row 1, close below ema50, RSI 40, ATR 2."""
    base: dict[str, object] = dict(
        close=[100.0, 98.0],
        ema_9=[101.0, 99.0],
        ema_21=[100.0, 100.0],
        ema_50=[105.0, 105.0],
        rsi_14=[45.0, 40.0],
        atr_14=2.0,
    )
    return columns(2, **(base | over))


def test_momentum_long_on_the_cross_bar_is_a_market_buy_with_atr_stop_and_target():
    s = Momentum(Config())
    sig = last_signal(s, momentum_long())
    assert sig is not None
    assert (sig.side, sig.order_type, sig.strategy) == (Side.BUY, OrderType.MARKET, "momentum")
    assert sig.limit_price is None and sig.expiry_bars is None
    assert sig.stop_loss == pytest.approx(102.0 - 1.5 * 2.0)
    assert sig.take_profit == pytest.approx(102.0 + 2.0 * 2.0)
    assert sig.ts == T0 + NS_PER_MINUTE
    assert sig.values["close"] == 102.0 and sig.values["rsi_14"] == 60.0
    assert sig.values["ema_9_prev"] == 99.0 and sig.values["ema_21_prev"] == 100.0
    assert sig.reason == "ema_cross_up"  # the machine code; the sentence is made on demand
    assert s.explain(sig).startswith("ema9 crossed above ema21")
    assert "rsi 60.0 in (50, 70)" in s.explain(sig)


def test_momentum_short_on_the_cross_down_is_a_market_sell_with_mirrored_prices():
    s = Momentum(Config())
    sig = last_signal(s, momentum_short())
    assert sig is not None
    assert (sig.side, sig.order_type) == (Side.SELL, OrderType.MARKET)
    assert sig.stop_loss == pytest.approx(98.0 + 1.5 * 2.0)
    assert sig.take_profit == pytest.approx(98.0 - 2.0 * 2.0)
    assert sig.reason == "ema_cross_down" and "rsi 40.0 in (30, 50)" in s.explain(sig)


def test_momentum_stop_and_target_follow_the_configured_atr_multiples():
    s = Momentum(make_cfg(momentum=MomentumConfig(stop_atr=0.5, target_atr=3.0)))
    sig = last_signal(s, momentum_long(atr_14=4.0))
    assert sig is not None
    assert (sig.stop_loss, sig.take_profit) == (102.0 - 2.0, 102.0 + 12.0)


def test_momentum_fast_equal_to_slow_on_the_previous_bar_counts_as_a_cross():
    assert fired(Momentum(Config()), momentum_long(ema_9=[100.0, 101.0])) == [(1, 1)]
    assert fired(Momentum(Config()), momentum_short(ema_9=[100.0, 99.0])) == [(1, -1)]


def test_momentum_no_signal_when_fast_was_already_above_slow():
    assert fired(Momentum(Config()), momentum_long(ema_9=[100.5, 101.0])) == []
    assert fired(Momentum(Config()), momentum_short(ema_9=[99.5, 99.0])) == []


def test_momentum_no_signal_when_the_cross_is_against_the_trend_ema():
    assert fired(Momentum(Config()), momentum_long(ema_50=[103.0, 103.0])) == []
    assert fired(Momentum(Config()), momentum_long(ema_50=[102.0, 102.0])) == []  # close == trend
    assert fired(Momentum(Config()), momentum_short(ema_50=[97.0, 97.0])) == []


@pytest.mark.parametrize(
    ("rsi", "fires"),
    [(50.0, False), (50.01, True), (69.99, True), (70.0, False), (75.0, False), (45.0, False)],
)
def test_momentum_long_rsi_band_is_strict(rsi, fires):
    assert fired(Momentum(Config()), momentum_long(rsi_14=[55.0, rsi])) == ([(1, 1)] if fires else [])


@pytest.mark.parametrize(
    ("rsi", "fires"),
    [(30.0, False), (30.01, True), (49.99, True), (50.0, False), (25.0, False), (55.0, False)],
)
def test_momentum_short_rsi_band_is_the_strict_mirror(rsi, fires):
    assert fired(Momentum(Config()), momentum_short(rsi_14=[45.0, rsi])) == ([(1, -1)] if fires else [])


def test_momentum_rsi_band_comes_from_config():
    s = Momentum(make_cfg(momentum=MomentumConfig(rsi_long_min=55.0, rsi_long_max=65.0)))
    assert fired(s, momentum_long(rsi_14=[55.0, 56.0])) == [(1, 1)]
    assert fired(s, momentum_long(rsi_14=[55.0, 54.0])) == []
    assert fired(s, momentum_short(rsi_14=[45.0, 40.0])) == [(1, -1)]  # in (35, 45)
    assert fired(s, momentum_short(rsi_14=[45.0, 46.0])) == []


def test_momentum_uses_the_configured_ema_columns():
    cfg = Config(
        indicators=msgspec.structs.replace(Config().indicators, ema_lengths=[5, 9, 21, 50, 100]),
        strategies=StrategiesConfig(momentum=MomentumConfig(fast_ema=5, slow_ema=21, trend_ema=100)),
    )
    s = Momentum(cfg)
    assert s.columns() == ["close", "ema_5", "ema_21", "ema_100", "rsi_14", "atr_14"]
    cols = momentum_long()
    cols["ema_5"], cols["ema_100"] = cols.pop("ema_9"), cols.pop("ema_50")
    assert fired(s, cols) == [(1, 1)]


# ------------------------------------------------------------------------- mean reversion


def mr_long(**over: object) -> dict[str, np.ndarray]:
    """close 95 below bb_lower 96 and vwap 100, RSI 25, ATR 1."""
    base: dict[str, object] = dict(
        close=95.0, bb_lower=96.0, bb_mid=100.0, bb_upper=104.0, session_vwap=100.0, rsi_14=25.0, atr_14=1.0
    )
    return columns(1, **(base | over))


def mr_short(**over: object) -> dict[str, np.ndarray]:
    """close 105 above bb_upper 104 and vwap 100, RSI 75, ATR 1."""
    base: dict[str, object] = dict(
        close=105.0, bb_lower=96.0, bb_mid=100.0, bb_upper=104.0, session_vwap=100.0, rsi_14=75.0, atr_14=1.0
    )
    return columns(1, **(base | over))


def test_mean_reversion_long_is_a_limit_buy_at_the_lower_band_targeting_the_middle():
    strategy = MeanReversion(Config())
    sig = last_signal(strategy, mr_long())
    assert sig is not None
    assert (sig.side, sig.order_type, sig.strategy) == (Side.BUY, OrderType.LIMIT, "mean_reversion")
    assert sig.limit_price == 96.0
    assert sig.expiry_bars == 3
    assert sig.take_profit == 100.0
    assert sig.stop_loss == pytest.approx(96.0 - 1.5 * 1.0)
    text = strategy.explain(sig)
    assert sig.reason == "oversold_below_band" and "rsi 25.0 < 30" in text and "target bb_mid 100.00" in text


def test_mean_reversion_short_is_a_limit_sell_at_the_upper_band():
    sig = last_signal(MeanReversion(Config()), mr_short())
    assert sig is not None
    assert (sig.side, sig.order_type) == (Side.SELL, OrderType.LIMIT)
    assert sig.limit_price == 104.0
    assert sig.take_profit == 100.0
    assert sig.stop_loss == pytest.approx(104.0 + 1.5 * 1.0)


def test_mean_reversion_expiry_stop_and_vwap_target_come_from_config():
    cfg = make_cfg(mean_reversion=MeanReversionConfig(limit_expiry_bars=7, stop_atr=2.0, target="vwap"))
    s = MeanReversion(cfg)
    sig = last_signal(s, mr_long(session_vwap=99.0, atr_14=0.5))
    assert sig is not None
    assert (sig.limit_price, sig.expiry_bars, sig.take_profit, sig.stop_loss) == (96.0, 7, 99.0, 95.0)
    sig = last_signal(s, mr_short(session_vwap=101.0, atr_14=0.5))
    assert sig is not None
    assert (sig.limit_price, sig.take_profit, sig.stop_loss) == (104.0, 101.0, 105.0)


def test_mean_reversion_no_signal_below_the_band_but_above_vwap():
    s = MeanReversion(Config())
    assert fired(s, mr_long(session_vwap=94.0)) == []
    assert fired(s, mr_long(session_vwap=95.0)) == []  # close == vwap: not beyond it
    assert fired(s, mr_short(session_vwap=106.0)) == []


def test_mean_reversion_no_signal_inside_the_band():
    s = MeanReversion(Config())
    assert fired(s, mr_long(close=96.0)) == []  # on the band is not outside it
    assert fired(s, mr_short(close=104.0)) == []


@pytest.mark.parametrize(("rsi", "fires"), [(29.99, True), (30.0, False), (35.0, False)])
def test_mean_reversion_long_needs_rsi_strictly_oversold(rsi, fires):
    assert fired(MeanReversion(Config()), mr_long(rsi_14=rsi)) == ([(0, 1)] if fires else [])


@pytest.mark.parametrize(("rsi", "fires"), [(70.01, True), (70.0, False), (65.0, False)])
def test_mean_reversion_short_needs_rsi_strictly_overbought(rsi, fires):
    assert fired(MeanReversion(Config()), mr_short(rsi_14=rsi)) == ([(0, -1)] if fires else [])


def test_mean_reversion_skips_a_target_on_the_wrong_side_of_the_limit():
    s = MeanReversion(make_cfg(mean_reversion=MeanReversionConfig(target="vwap")))
    # close 95 < vwap 95.5, but vwap is below the limit (96): a buy there cannot reach it
    assert fired(s, mr_long(session_vwap=95.5)) == []
    assert fired(s, mr_long(session_vwap=96.0)) == []  # target == limit: no profit either
    assert fired(MeanReversion(Config()), mr_long(session_vwap=95.5)) == [(0, 1)]  # bb_mid target is fine
    assert fired(s, mr_short(session_vwap=104.5)) == []  # vwap above the sell limit (104)
    assert fired(s, mr_short(session_vwap=103.5)) == [(0, -1)]
    # a zero-width band (flat closes) puts bb_mid on the limit
    assert fired(MeanReversion(Config()), mr_long(bb_lower=100.0, bb_upper=100.0, close=99.0)) == []


# ------------------------------------------------------------------------------- breakout


def bo_cfg(n: int = 3, k: float = 1.5, **kw: object) -> Config:
    return make_cfg(breakout=BreakoutConfig(lookback_bars=n, volume_multiple=k, **kw))


def bo_cols(high, low, close, volume=100.0, sma=50.0, atr=1.0) -> dict[str, np.ndarray]:
    n = len(close)
    return columns(n, high=high, low=low, close=close, volume=volume, volume_sma_20=sma, atr_14=atr)


def test_breakout_long_ignores_the_current_bars_own_high():
    # previous 3 highs 10, 11, 12; this bar trades to 13 and closes at 12.5. Counting this
    # bar's own high in the max (13) would make the breakout impossible.
    cols = bo_cols(high=[10, 11, 12, 13], low=[9, 9, 9, 12], close=[9.5, 10.5, 11.5, 12.5])
    s = Breakout(bo_cfg())
    sig = last_signal(s, cols)
    assert sig is not None
    assert (sig.side, sig.order_type, sig.strategy) == (Side.BUY, OrderType.MARKET, "breakout")
    assert sig.values["high_max_3"] == 12.0
    assert sig.limit_price is None and sig.expiry_bars is None
    assert (sig.stop_loss, sig.take_profit) == (12.5 - 1.0, 12.5 + 2.0)
    assert sig.reason == "range_break_up"
    assert s.explain(sig) == "close 12.50 > 3-bar high 12.00, volume 100 > 1.5 x sma 50.0"
    assert np.isnan(prior_max(cols["high"], 3)[:3]).all()
    assert prior_max(cols["high"], 3)[3] == 12.0  # and not 13


def test_breakout_short_ignores_the_current_bars_own_low():
    cols = bo_cols(high=[11, 10, 9, 8], low=[10, 9, 8, 7], close=[10.5, 9.5, 8.5, 7.5])
    sig = last_signal(Breakout(bo_cfg()), cols)
    assert sig is not None
    assert sig.side == Side.SELL
    assert sig.values["low_min_3"] == 8.0
    assert (sig.stop_loss, sig.take_profit) == (7.5 + 1.0, 7.5 - 2.0)
    assert prior_min(cols["low"], 3)[3] == 8.0


def test_breakout_window_is_exactly_the_previous_n_bars():
    s = Breakout(bo_cfg(n=3))
    close = [9.0, 9.0, 9.0, 9.0, 15.0]
    # a high 4 bars back is outside the 3-bar window: it does not block the breakout
    assert fired(s, bo_cols(high=[20, 10, 10, 10, 15], low=9.0, close=close)) == [(4, 1)]
    # 3 bars back is inside: it does
    assert fired(s, bo_cols(high=[10, 20, 10, 10, 15], low=9.0, close=close)) == []
    # and 1 bar back too
    assert fired(s, bo_cols(high=[10, 10, 10, 20, 15], low=9.0, close=close)) == []
    # mirrored for lows
    close = [9.0, 9.0, 9.0, 9.0, 3.0]
    assert fired(s, bo_cols(high=10.0, low=[1, 8, 8, 8, 3], close=close)) == [(4, -1)]
    assert fired(s, bo_cols(high=10.0, low=[8, 1, 8, 8, 3], close=close)) == []


def test_breakout_needs_n_previous_bars_before_the_first_signal():
    s = Breakout(bo_cfg(n=3))
    rising = np.arange(8, dtype=np.float64)
    cols = bo_cols(high=rising + 0.5, low=rising - 0.5, close=rising + 1.0)  # every bar breaks out
    assert fired(s, cols) == [(i, 1) for i in range(3, 8)]
    assert s.lookback() == 4
    assert s.on_bar("TEST", {k: v[:3] for k, v in cols.items()}) is None  # too little history
    assert s.on_bar("TEST", {k: v[:4] for k, v in cols.items()}) is not None


@pytest.mark.parametrize(("volume", "fires"), [(75.0, False), (75.0001, True), (60.0, False)])
def test_breakout_volume_must_be_strictly_above_the_multiple(volume, fires):
    cols = bo_cols(high=[10, 11, 12, 13], low=[9, 9, 9, 12], close=[9.5, 10.5, 11.5, 12.5], volume=volume)
    assert fired(Breakout(bo_cfg(k=1.5)), cols) == ([(3, 1)] if fires else [])


def test_breakout_close_equal_to_the_n_bar_high_is_not_a_breakout():
    cols = bo_cols(high=[10, 11, 12, 13], low=[9, 9, 9, 11], close=[9.5, 10.5, 11.5, 12.0])
    assert fired(Breakout(bo_cfg()), cols) == []


def test_breakout_reads_the_volume_sma_column_named_by_the_indicator_config():
    cfg = Config(
        indicators=msgspec.structs.replace(Config().indicators, volume_sma_length=30),
        strategies=StrategiesConfig(breakout=BreakoutConfig(lookback_bars=3)),
    )
    s = Breakout(cfg)
    assert "volume_sma_30" in s.columns() and "volume_sma_20" not in s.columns()
    cols = bo_cols(high=[10, 11, 12, 13], low=[9, 9, 9, 12], close=[9.5, 10.5, 11.5, 12.5])
    cols["volume_sma_30"] = cols.pop("volume_sma_20")
    assert fired(s, cols) == [(3, 1)]


def test_breakout_stop_and_target_follow_the_configured_atr_multiples():
    cols = bo_cols(high=[10, 11, 12, 13], low=[9, 9, 9, 12], close=[9.5, 10.5, 11.5, 12.5], atr=0.5)
    sig = last_signal(Breakout(bo_cfg(stop_atr=2.0, target_atr=3.0)), cols)
    assert sig is not None
    assert (sig.stop_loss, sig.take_profit) == (12.5 - 1.0, 12.5 + 1.5)


# ----------------------------------------------------------------------- shared behaviour

LONG_CASES = {
    "momentum": (Config(), momentum_long),
    "mean_reversion": (Config(), mr_long),
    "breakout": (
        bo_cfg(),
        lambda: bo_cols(high=[10, 11, 12, 13], low=[9, 9, 9, 12], close=[9.5, 10.5, 11.5, 12.5]),
    ),
}
SHORT_CASES = {
    "momentum": (Config(), momentum_short),
    "mean_reversion": (Config(), mr_short),
    "breakout": (
        bo_cfg(),
        lambda: bo_cols(high=[11, 10, 9, 8], low=[10, 9, 8, 7], close=[10.5, 9.5, 8.5, 7.5]),
    ),
}


# columns a strategy reads for the other side only: a NaN there does not block this side
OTHER_SIDE_ONLY = {
    ("mean_reversion", 1): {"bb_upper"},
    ("mean_reversion", -1): {"bb_lower"},
    ("breakout", 1): {"low"},
    ("breakout", -1): {"high"},
}


def nan_cases():
    for name in STRATEGIES:
        for cases, sign in ((LONG_CASES, 1), (SHORT_CASES, -1)):
            cfg, make = cases[name]
            for col in STRATEGIES[name](cfg).columns():
                yield pytest.param(
                    name, cfg, make, col, sign, id=f"{name}-{'long' if sign > 0 else 'short'}-{col}"
                )


@pytest.mark.parametrize(("name", "cfg", "make", "col", "sign"), list(nan_cases()))
def test_a_nan_in_any_column_the_rule_reads_gives_no_signal(name, cfg, make, col, sign):
    s = STRATEGIES[name](cfg)
    cols = make()
    last = len(cols["timestamp"]) - 1
    assert fired(s, cols) == [(last, sign)]  # the case fires as built
    # breakout: a NaN in the N-bar window (this bar's own high/low is not read)
    cols[col][last - 1 if col in ("high", "low") else last] = np.nan
    if col in OTHER_SIDE_ONLY.get((name, sign), ()):  # what only the other side reads
        assert fired(s, cols) == [(last, sign)]
        return
    assert fired(s, cols) == []
    assert s.on_bar("TEST", cols) is None


def test_a_nan_on_the_previous_bar_blocks_the_momentum_cross():
    for col in ("ema_9", "ema_21"):
        cols = momentum_long()
        cols[col][0] = np.nan
        assert fired(Momentum(Config()), cols) == []


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_zero_atr_gives_no_signal(name):
    cfg, make = LONG_CASES[name]
    cols = make()
    cols["atr_14"][:] = 0.0
    assert fired(STRATEGIES[name](cfg), cols) == []


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_allow_short_false_silences_shorts_but_not_longs(name):
    cfg, make_short = SHORT_CASES[name]
    no_short = msgspec.structs.replace(
        cfg, strategies=msgspec.structs.replace(cfg.strategies, allow_short=False)
    )
    assert fired(STRATEGIES[name](cfg), make_short()) != []
    assert fired(STRATEGIES[name](no_short), make_short()) == []
    _, make_long = LONG_CASES[name]
    assert fired(STRATEGIES[name](no_short), make_long()) != []


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_rule_returns_equal_length_typed_arrays_with_nan_where_no_signal(name):
    cfg, make = LONG_CASES[name]
    s = STRATEGIES[name](cfg)
    cols = make()
    sa = s.rule(cols)
    n = len(cols["timestamp"])
    assert isinstance(sa, SignalArrays)
    for field in ("side", "limit_price", "stop_loss", "take_profit", "expiry_bars", "reason"):
        assert getattr(sa, field).shape == (n,), field
    assert sa.side.dtype == np.int8
    assert sa.limit_price.dtype == sa.stop_loss.dtype == sa.take_profit.dtype == np.float64
    assert np.issubdtype(sa.expiry_bars.dtype, np.integer)
    off = sa.side == 0
    assert np.isnan(sa.stop_loss[off]).all() and np.isnan(sa.take_profit[off]).all()
    assert (
        np.isnan(sa.limit_price[off]).all()
        and (sa.expiry_bars[off] == 0).all()
        and (sa.reason[off] == 0).all()
    )
    assert sa.reason[-1] == 1 and s.reason_names[1] != "none"
    assert len(s.reasons) == len(s.reason_names) == 3


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_on_bar_returns_the_newest_rows_signal_from_a_longer_window(name):
    cfg, make = LONG_CASES[name]
    s = STRATEGIES[name](cfg)
    cols = make()
    pad = 5  # older rows before the case must not matter
    window = {k: np.concatenate([np.repeat(v[:1], pad), v]) for k, v in cols.items()}
    window["timestamp"] = T0 + np.arange(len(window["timestamp"]), dtype=np.int64) * NS_PER_MINUTE
    sig = s.on_bar("TEST", window)
    assert sig is not None and sig.ts == window["timestamp"][-1]
    assert sig == s.signals("TEST", window)[-1]
    shorter = {k: v[:-1] for k, v in window.items()}
    previous = [x for x in s.signals("TEST", window) if x.ts == window["timestamp"][-2]]
    assert s.on_bar("TEST", shorter) == (previous[0] if previous else None)


def test_signals_accepts_a_dataframe_with_a_datetime_timestamp():
    cols = momentum_long()
    df = pd.DataFrame(cols)
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    assert Momentum(Config()).signals("TEST", df) == Momentum(Config()).signals("TEST", cols)


def test_missing_column_is_a_clear_error():
    cols = momentum_long()
    del cols["rsi_14"]
    with pytest.raises(KeyError, match="rsi_14"):
        Momentum(Config()).signals("TEST", cols)


def test_shift_only_lags_forward():
    x = np.array([1.0, 2.0, 3.0])
    assert np.array_equal(shift(x), [np.nan, 1.0, 2.0], equal_nan=True)
    assert np.isnan(shift(x, 5)).all()
    with pytest.raises(ValueError, match="look-ahead"):
        shift(x, 0)


def test_lookbacks_and_columns():
    cfg = Config()
    mom, mr, bo = build_strategies(cfg)
    assert (mom.lookback(), mr.lookback(), bo.lookback()) == (2, 1, 21)
    assert mom.columns() == ["close", "ema_9", "ema_21", "ema_50", "rsi_14", "atr_14"]
    assert set(mr.columns()) == {
        "close",
        "bb_lower",
        "bb_mid",
        "bb_upper",
        "session_vwap",
        "rsi_14",
        "atr_14",
    }
    assert set(bo.columns()) == {"close", "high", "low", "volume", "volume_sma_20", "atr_14"}


def test_build_strategies_gives_the_enabled_or_the_named_ones():
    assert [s.name for s in build_strategies(Config())] == ["momentum", "mean_reversion", "breakout"]
    cfg = make_cfg(momentum=MomentumConfig(enabled=False))
    assert [s.name for s in build_strategies(cfg)] == ["mean_reversion", "breakout"]
    assert [s.name for s in build_strategies(cfg, ["breakout", "momentum"])] == ["breakout", "momentum"]
    assert [type(s) for s in build_strategies(Config(), ["mean_reversion"])] == [MeanReversion]
    with pytest.raises(ValueError, match="valid names: momentum, mean_reversion, breakout") as e:
        build_strategies(Config(), ["momentum", "turtle"])
    assert "'turtle'" in str(e.value)


# ------------------------------------------------------------------- real ES minute bars


@pytest.fixture(scope="module")
def es_cols() -> dict[str, np.ndarray]:
    """The bundled ES ticks -> CandleManager 1-minute bars -> compute_batch indicators."""
    ticks = pd.read_parquet(SAMPLE)
    ts_ms = ticks["timestamp"].dt.tz_convert(None).to_numpy().astype("datetime64[ms]").astype(np.int64)
    cm = CandleManager("ES")
    bars = cm.on_batch(ts_ms * 1_000_000, ticks["price"].to_numpy(), ticks["volume"].to_numpy()) + cm.flush()
    frame = pd.DataFrame(
        {
            "timestamp": np.array([b.ts for b in bars], dtype=np.int64),
            **{
                c: np.array([getattr(b, c) for b in bars], dtype=np.float64)
                for c in ("open", "high", "low", "close", "volume")
            },
        }
    )
    ind = compute_batch(frame, Config().indicators)
    cols = {c: frame[c].to_numpy() for c in frame} | {c: ind[c].to_numpy() for c in ind}
    assert len(bars) > 2000 and np.all(np.diff(cols["timestamp"]) > 0)
    return cols


REAL_CASES = {
    "momentum": Config(),
    "mean_reversion": Config(),
    "breakout": Config(),
    "mean_reversion-vwap": make_cfg(mean_reversion=MeanReversionConfig(target="vwap")),
    "breakout-5bars-1x": make_cfg(breakout=BreakoutConfig(lookback_bars=5, volume_multiple=1.0)),
    "momentum-wide-rsi-long-only": make_cfg(
        allow_short=False, momentum=MomentumConfig(rsi_long_min=40.0, rsi_long_max=90.0)
    ),
}


def real_strategy(case: str) -> Strategy:
    return STRATEGIES[case.split("-")[0]](REAL_CASES[case])


def lookahead_mismatches(
    strategy: Strategy, cols: dict[str, np.ndarray], seed: int = 0
) -> tuple[int, list[int]]:
    """(cut points tried, cut points k where signals on rows [:k+1] differ from the full run's rows <= k)."""
    full = strategy.signals("ES", cols)
    ts = cols["timestamp"]
    n = len(ts)
    rows = np.searchsorted(ts, [s.ts for s in full])
    rng = np.random.default_rng(seed)
    cuts = sorted({*rows.tolist(), *rng.integers(0, n, 50).tolist(), 0, n - 1})
    bad = []
    for k in cuts:
        got = strategy.signals("ES", {c: a[: k + 1] for c, a in cols.items()})
        want = [s for s in full if s.ts <= ts[k]]
        if got != want:
            bad.append(k)
    return len(cuts), bad


def test_real_es_data_gives_signals(es_cols):
    counts = {name: len(s.signals("ES", es_cols)) for name, s in ((n, real_strategy(n)) for n in STRATEGIES)}
    assert max(counts.values()) > 0, counts


@pytest.mark.parametrize("case", list(REAL_CASES))
def test_no_lookahead_truncated_history_gives_the_same_signals(es_cols, case):
    s = real_strategy(case)
    tried, bad = lookahead_mismatches(s, es_cols)
    assert tried > 50
    assert bad == [], f"{case}: signals change when the future is removed, at rows {bad[:10]}"


def test_the_lookahead_check_catches_a_rule_that_peeks(es_cols):
    class Peeking(Breakout):
        def rule(self, cols):
            close = np.asarray(cols["close"], dtype=np.float64)
            atr = np.asarray(cols[self.atr_col], dtype=np.float64)
            nxt = np.append(close[1:], np.nan)  # the NEXT bar's close: look-ahead
            long = (nxt >= close + 0.75) & (atr > 0)  # a big next-bar rise
            return market_arrays(side_from(long, np.zeros_like(long)), close, atr, 1.0, 1.0)

    _, bad = lookahead_mismatches(Peeking(Config()), es_cols)
    assert len(bad) > 10


@pytest.mark.parametrize("case", list(REAL_CASES))
def test_live_on_bar_over_a_sliding_window_equals_the_backtest(es_cols, case):
    s = real_strategy(case)
    backtest = s.signals("ES", es_cols)
    rng = np.random.default_rng(1)
    n = len(es_cols["timestamp"])
    live = []
    for i in range(n):
        # a live window holds at least lookback rows (more is fine); fewer only at the start
        start = max(0, i + 1 - s.lookback() - int(rng.integers(0, 10)))
        sig = s.on_bar("ES", {c: a[start : i + 1] for c, a in es_cols.items()})
        if sig is not None:
            live.append(sig)
    assert live == backtest
    assert all(math.isfinite(x.stop_loss) and math.isfinite(x.take_profit) for x in live)
    for x in live:  # stop on the losing side, target on the winning side of the entry
        entry = x.limit_price if x.order_type == OrderType.LIMIT else x.values["close"]
        assert x.side.sign * (entry - x.stop_loss) > 0 and x.side.sign * (x.take_profit - entry) > 0


@pytest.mark.parametrize("case", list(REAL_CASES))
def test_on_bars_over_many_symbols_at_once_equals_the_backtest(es_cols, case):
    """Every ES minute's window as its own 'symbol', all decided in one `on_bars` call."""
    s = real_strategy(case)
    k, n = s.lookback(), len(es_cols["timestamp"])
    ends = np.arange(k - 1, n)
    rows = ends[:, None] - (k - 1) + np.arange(k)
    block = {c: es_cols[c][rows] for c in ("timestamp", *s.columns())}
    live = s.on_bars([str(i) for i in ends.tolist()], block)
    assert [msgspec.structs.replace(x, symbol="ES") for x in live] == s.signals("ES", es_cols)
    assert [int(x.symbol) for x in live] == sorted(int(x.symbol) for x in live)


def test_bar_windows_give_each_symbols_last_rows_oldest_first_across_the_ring():
    from scalper.types import Bar, Snapshot
    from scalper.windows import BarWindows

    w = BarWindows(["close", "rsi_14"], length=4)
    for t in range(10):
        for sym, n in (("A", 10), ("B", 3), ("C", 7)):
            if t < n:
                bar = Bar(sym, t, 1.0, 1.0, 1.0, 100.0 + t, 1.0, 1, 1.0)
                w.append(Snapshot(bar, {"rsi_14": float(t)}, {}))
    names, _ = w.last(["C", "B", "A", "Z"], 3)
    assert names == ["C", "B", "A"]  # Z never seen
    names, block = w.last(["C", "B", "A"], 4)
    assert names == ["C", "A"]  # B has 3 rows only
    assert block["timestamp"].tolist() == [[3, 4, 5, 6], [6, 7, 8, 9]]
    assert block["close"].tolist() == [[103.0, 104.0, 105.0, 106.0], [106.0, 107.0, 108.0, 109.0]]
    assert block["rsi_14"][1].tolist() == [6.0, 7.0, 8.0, 9.0]
    with pytest.raises(ValueError, match="keep 4 rows"):
        w.last(["A"], 5)
