"""CandleManager: exact bars from ticks, and every gap / late / duplicate / bad-tick rule."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from scalper.candles import CandleManager
from scalper.config import CandlesConfig
from scalper.types import NS_PER_MINUTE as MIN
from scalper.types import NS_PER_SECOND as SEC
from scalper.types import BarBatch, RejectReason, TickBatch

SAMPLE = "data/samples/es_ticks_2013-09.parquet"
T0 = 1_700_000_040 * SEC - (1_700_000_040 * SEC) % MIN  # a minute boundary


def cfg(**kw) -> CandlesConfig:
    bad = kw.pop("bad_ticks", {})
    return msgspec.convert({**kw, "bad_ticks": bad}, CandlesConfig)


def feed_ticks(m: CandleManager, ticks, clock_ns=None):
    bars = []
    for t in ticks:
        bars += m.on_tick(*t, clock_ns=clock_ns)
    return bars


@pytest.fixture(scope="module")
def es_ticks():
    t = pq.read_table(SAMPLE)
    ts = t["timestamp"].cast("int64").to_numpy().astype(np.int64) * 1_000_000
    return ts, t["price"].to_numpy().astype(np.float64), t["volume"].to_numpy().astype(np.float64)


def bars_frame(bars) -> pd.DataFrame:
    return pd.DataFrame([msgspec.structs.asdict(b) for b in bars])


# ---------------------------------------------------------------- real data


def test_bars_from_bundled_ticks_equal_an_independent_pandas_resample(es_ticks):
    ts, price, size = es_ticks
    m = CandleManager("ES")
    bars = m.on_batch(ts, price, size) + m.flush()
    df = pd.DataFrame({"p": price, "v": size, "pv": price * size}, index=pd.to_datetime(ts, utc=True))
    ref = df.resample("1min").agg(
        open=("p", "first"),
        high=("p", "max"),
        low=("p", "min"),
        close=("p", "last"),
        volume=("v", "sum"),
        trades=("p", "size"),
        pv=("pv", "sum"),
    )
    ref = ref[ref["trades"] > 0]
    got = bars_frame(bars)
    assert len(got) == len(ref) == 2264
    assert m.accepted == 500_000 and sum(m.rejected.values()) == 0
    np.testing.assert_array_equal(got["ts"].to_numpy(), ref.index.asi8)
    for col in ("open", "high", "low", "close", "volume", "trades"):
        np.testing.assert_array_equal(got[col].to_numpy(), ref[col].to_numpy(), err_msg=col)
    np.testing.assert_allclose(got["vwap"].to_numpy(), (ref["pv"] / ref["volume"]).to_numpy(), rtol=1e-12)


def test_batch_gives_the_same_bars_as_one_tick_at_a_time_on_real_data(es_ticks):
    ts, price, size = es_ticks
    a = CandleManager("ES")
    batch_bars = a.on_batch(ts, price, size) + a.flush()
    b = CandleManager("ES")
    tick_bars = []
    for t, p, s in zip(ts.tolist(), price.tolist(), size.tolist(), strict=True):
        tick_bars += b.on_tick(t, p, s)
    tick_bars += b.flush()
    assert batch_bars == tick_bars
    assert a.stats() == b.stats()


def _messy_stream(seed: int, n: int = 4000):
    """Ticks with disorder, late prints, duplicates, bad values, spikes and a real jump."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.cumsum(rng.exponential(0.7 * SEC, n)).astype(np.int64)
    ts[n // 2 :] += 7 * MIN  # a gap of empty minutes
    price = 100.0 * np.exp(np.cumsum(rng.normal(0, 2e-4, n)))
    price[int(n * 0.7) :] *= 1.03  # a real level shift: must be confirmed, not rejected forever
    price = np.round(price, 2)
    size = rng.integers(1, 20, n).astype(np.float64)
    ids = np.arange(n).astype(object)
    for j, i in enumerate(rng.choice(np.arange(5, n - 5), 48, replace=False)):
        kind = j % 8
        if kind == 0:
            price[i] = np.nan
        elif kind == 1:
            price[i] = -price[i]
        elif kind == 2:
            size[i] = -1
        elif kind == 3:
            price[i] *= 1.08  # isolated spike
        elif kind == 4:
            ts[i], ts[i + 1] = ts[i + 1], ts[i]  # out of order
        elif kind == 5:
            ts[i] -= 2 * MIN  # late
        elif kind == 6:
            ids[i] = ids[i - 1]  # duplicate trade id
        else:
            size[i] = np.inf
    return ts, price, size, ids


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("empty", ["skip", "flat"])
def test_batch_gives_the_same_bars_as_one_tick_at_a_time_on_messy_streams(seed, empty):
    ts, price, size, ids = _messy_stream(seed)
    c = cfg(empty_minutes=empty, bad_ticks={"spike_window_bars": 10})
    rng = np.random.default_rng(100 + seed)
    a, b = CandleManager("X", c), CandleManager("X", c)
    batch_bars, tick_bars = [], []
    i = 0
    while i < len(ts):
        j = min(len(ts), i + int(rng.integers(1, 400)))
        batch_bars += a.on_batch(ts[i:j], price[i:j], size[i:j], ids[i:j])
        for k in range(i, j):
            tick_bars += b.on_tick(int(ts[k]), float(price[k]), float(size[k]), ids[k])
        if rng.random() < 0.3:  # the feed's heartbeat after a batch
            hb = int(ts[i:j].max()) + int(rng.integers(0, 2 * SEC))
            batch_bars += a.on_heartbeat(hb)
            tick_bars += b.on_heartbeat(hb)
        i = j
    batch_bars += a.flush()
    tick_bars += b.flush()
    assert batch_bars == tick_bars
    assert a.stats() == b.stats()
    rejected = a.stats()
    for reason in ("non_finite", "duplicate", "late", "spike"):
        assert rejected[f"rejected_{reason}"] > 0, reason
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in batch_bars)
    # the level shift was accepted: late bars trade near the new level
    assert batch_bars[-1].close > price[int(len(ts) * 0.7) - 10] * 1.01


# ---------------------------------------------------------------- bar boundaries


def test_a_bar_is_stamped_with_its_open_time_and_emitted_after_the_boundary_delay():
    m = CandleManager("X", cfg(boundary_delay_ms=250))
    assert m.on_tick(T0 + 1 * SEC, 10.0, 1) == []
    assert m.on_tick(T0 + 59 * SEC, 10.1, 2) == []
    assert m.on_tick(T0 + MIN + 100_000_000, 10.2, 1) == []  # inside the delay: not closed yet
    bars = m.on_heartbeat(T0 + MIN + 250_000_000)
    assert len(bars) == 1
    bar = bars[0]
    assert (bar.ts, bar.open, bar.high, bar.low, bar.close) == (T0, 10.0, 10.1, 10.0, 10.1)
    assert (bar.volume, bar.trades) == (3.0, 2)
    assert bar.vwap == pytest.approx((10 + 20.2) / 3)


def test_a_late_tick_inside_the_delay_is_included():
    m = CandleManager("X", cfg(boundary_delay_ms=500))
    m.on_tick(T0 + 10 * SEC, 10.0, 1)
    m.on_tick(T0 + MIN + 200_000_000, 10.5, 1)  # next minute started, previous not yet closed
    m.on_tick(T0 + 59_900_000_000, 10.2, 4)  # belongs to the first minute, arrives late
    (bar,) = m.on_heartbeat(T0 + MIN + SEC)
    assert (bar.close, bar.volume, bar.trades) == (10.2, 5, 2)
    assert m.rejected[RejectReason.LATE] == 0


def test_a_tick_after_its_minute_closed_is_counted_late_and_dropped():
    m = CandleManager("X", cfg(boundary_delay_ms=250))
    m.on_tick(T0 + 10 * SEC, 10.0, 1)
    (bar,) = m.on_heartbeat(T0 + MIN + SEC)
    assert m.on_tick(T0 + 30 * SEC, 99.0, 1) == []
    assert m.rejected[RejectReason.LATE] == 1
    assert bar.high == 10.0


def test_out_of_order_ticks_set_open_and_close_by_timestamp():
    m = CandleManager("X")
    feed_ticks(
        m,
        [
            (T0 + 30 * SEC, 100.1, 1),
            (T0 + 10 * SEC, 100.0, 1),
            (T0 + 50 * SEC, 100.2, 1),
            (T0 + 40 * SEC, 99.9, 1),
        ],
    )
    (bar,) = m.flush()
    assert (bar.open, bar.high, bar.low, bar.close) == (100.0, 100.2, 99.9, 100.2)


def test_equal_timestamps_keep_arrival_order_for_open_and_close():
    m = CandleManager("X")
    feed_ticks(m, [(T0 + SEC, 1.0, 1), (T0 + SEC, 1.01, 1), (T0 + 2 * SEC, 1.02, 1), (T0 + 2 * SEC, 1.03, 1)])
    (bar,) = m.flush()
    assert (bar.open, bar.close) == (1.0, 1.03)


def test_heartbeat_closes_a_quiet_symbols_bar():
    m = CandleManager("X")
    m.on_tick(T0 + 5 * SEC, 10.0, 1)
    assert m.on_heartbeat(T0 + 59 * SEC) == []
    assert [b.ts for b in m.on_heartbeat(T0 + 2 * MIN)] == [T0]


def test_empty_minutes_are_skipped_by_default():
    m = CandleManager("X")
    m.on_tick(T0 + SEC, 10.0, 1)
    bars = m.on_tick(T0 + 4 * MIN + SEC, 10.1, 1) + m.flush()
    assert [b.ts for b in bars] == [T0, T0 + 4 * MIN]


def test_empty_minutes_become_flat_bars_at_the_last_close_when_configured():
    m = CandleManager("X", cfg(empty_minutes="flat"))
    m.on_tick(T0 + SEC, 10.0, 1)
    m.on_tick(T0 + 30 * SEC, 10.5, 1)
    bars = m.on_tick(T0 + 4 * MIN + SEC, 10.6, 1) + m.flush()
    assert [b.ts for b in bars] == [T0 + i * MIN for i in range(5)]
    for flat in bars[1:4]:
        assert (flat.open, flat.high, flat.low, flat.close, flat.vwap) == (10.5,) * 5
        assert (flat.volume, flat.trades) == (0.0, 0)


def test_no_flat_bar_is_made_up_before_the_first_tick():
    m = CandleManager("X", cfg(empty_minutes="flat"))
    assert m.on_heartbeat(T0 + 10 * MIN) == []
    m.on_tick(T0 + 10 * MIN + SEC, 10.0, 1)
    assert [b.ts for b in m.on_heartbeat(T0 + 13 * MIN + SEC)] == [
        T0 + 10 * MIN,
        T0 + 11 * MIN,
        T0 + 12 * MIN,
    ]


def test_flat_bars_stop_after_the_gap_cap_like_a_session_break():
    m = CandleManager("X", cfg(empty_minutes="flat", flat_max_gap_minutes=3))
    m.on_tick(T0 + SEC, 10.0, 1)
    bars = m.on_heartbeat(T0 + 60 * MIN)
    assert [b.ts for b in bars] == [T0 + i * MIN for i in range(4)]
    bars = m.on_tick(T0 + 61 * MIN, 10.1, 1) + m.flush()
    assert [b.ts for b in bars] == [T0 + 61 * MIN]


def test_first_partial_minute_is_dropped_when_the_manager_started_mid_minute():
    m = CandleManager("X", cfg(first_partial_bar="drop"), started_ns=T0 + 20 * SEC)
    m.on_tick(T0 + 21 * SEC, 10.0, 1)
    bars = m.on_tick(T0 + MIN + SEC, 10.1, 1) + m.on_heartbeat(T0 + 2 * MIN + SEC)
    assert [b.ts for b in bars] == [T0 + MIN]
    assert m.dropped_partial_bars == 1


def test_first_partial_minute_is_emitted_when_configured():
    m = CandleManager("X", cfg(first_partial_bar="emit"), started_ns=T0 + 20 * SEC)
    m.on_tick(T0 + 21 * SEC, 10.0, 1)
    assert [b.ts for b in m.on_heartbeat(T0 + MIN + SEC)] == [T0]


def test_first_minute_is_complete_when_started_on_its_boundary_or_without_a_start_clock():
    for started in (T0, None):
        m = CandleManager("X", started_ns=started)
        m.on_tick(T0 + 21 * SEC, 10.0, 1)
        assert [b.ts for b in m.on_heartbeat(T0 + MIN + SEC)] == [T0]


# ---------------------------------------------------------------- bad ticks


@pytest.mark.parametrize(
    ("tick", "reason"),
    [
        ((T0 + SEC, float("nan"), 1.0), RejectReason.NON_FINITE),
        ((T0 + SEC, float("inf"), 1.0), RejectReason.NON_FINITE),
        ((T0 + SEC, 10.0, float("nan")), RejectReason.NON_FINITE),
        ((T0 + SEC, 10.0, float("-inf")), RejectReason.NON_FINITE),
        ((np.iinfo(np.int64).min, 10.0, 1.0), RejectReason.NON_FINITE),
        ((T0 + SEC, 0.0, 1.0), RejectReason.NON_POSITIVE_PRICE),
        ((T0 + SEC, -5.0, 1.0), RejectReason.NON_POSITIVE_PRICE),
        ((T0 + SEC, 10.0, -1.0), RejectReason.NEGATIVE_SIZE),
    ],
)
def test_bad_values_are_rejected_with_a_reason_on_both_paths(tick, reason):
    m = CandleManager("X")
    assert m.on_tick(*tick) == []
    assert m.rejected == {reason: 1} and m.accepted == 0
    b = CandleManager("X")
    b.on_batch(np.array([tick[0]], dtype=np.int64), np.array([tick[1]]), np.array([tick[2]]))
    assert b.rejected == {reason: 1} and b.accepted == 0


def test_a_tick_far_from_the_feed_clock_is_rejected_either_side():
    m = CandleManager("X", cfg(bad_ticks={"max_clock_skew_s": 5}))
    clock = T0 + 30 * SEC
    m.on_tick(clock + 6 * SEC, 10.0, 1, clock_ns=clock)
    m.on_tick(clock - 6 * SEC, 10.0, 1, clock_ns=clock)
    m.on_tick(clock - 4 * SEC, 10.0, 1, clock_ns=clock)
    assert m.rejected == {RejectReason.CLOCK_SKEW: 2} and m.accepted == 1
    b = CandleManager("X", cfg(bad_ticks={"max_clock_skew_s": 5}))
    b.on_batch(
        np.array([clock + 6 * SEC, clock - 6 * SEC, clock - 4 * SEC]),
        np.full(3, 10.0),
        np.ones(3),
        clock_ns=clock,
    )
    assert b.rejected == {RejectReason.CLOCK_SKEW: 2} and b.accepted == 1


def test_duplicate_trade_ids_are_dropped_and_counted():
    m = CandleManager("X")
    feed_ticks(m, [(T0 + SEC, 10.0, 1, "a"), (T0 + 2 * SEC, 10.0, 1, "b"), (T0 + 3 * SEC, 10.0, 1, "a")])
    (bar,) = m.flush()
    assert bar.trades == 2 and m.rejected == {RejectReason.DUPLICATE: 1}


def test_duplicate_detection_forgets_ids_beyond_its_window():
    m = CandleManager("X", cfg(dedupe_window=2))
    feed_ticks(
        m,
        [
            (T0 + SEC, 10.0, 1, 1),
            (T0 + 2 * SEC, 10.0, 1, 2),
            (T0 + 3 * SEC, 10.0, 1, 3),
            (T0 + 4 * SEC, 10.0, 1, 1),
        ],
    )
    assert m.accepted == 4


def test_ticks_without_trade_ids_are_never_duplicates():
    m = CandleManager("X")
    feed_ticks(m, [(T0 + SEC, 10.0, 1)] * 3)
    assert m.accepted == 3


def _warm_manager(**bad) -> CandleManager:
    """A manager with 60 quiet minutes behind it (1-minute sigma ~ 0.05%)."""
    m = CandleManager("X", cfg(bad_ticks={"spike_window_bars": 30, **bad}))
    rng = np.random.default_rng(1)
    price = 100.0
    for i in range(60):
        price *= 1 + rng.normal(0, 5e-4)
        m.on_tick(T0 + i * MIN + SEC, price, 1)
    m.on_heartbeat(T0 + 60 * MIN + SEC)
    return m


def test_a_price_spike_beyond_k_sigma_is_rejected():
    m = _warm_manager()
    last = m.history(1)["close"].iloc[0]
    m.on_tick(T0 + 60 * MIN + 2 * SEC, last * 1.01, 1)  # 1% in a market moving 0.05%/min
    m.on_tick(T0 + 60 * MIN + 3 * SEC, last * 1.0005, 1)
    assert m.rejected == {RejectReason.SPIKE: 1}
    (bar,) = m.flush()
    assert bar.high < last * 1.001


def test_a_real_jump_is_accepted_after_it_is_confirmed():
    m = _warm_manager(spike_confirm_ticks=3)
    last = m.history(1)["close"].iloc[0]
    for i in range(5):
        m.on_tick(T0 + 60 * MIN + (2 + i) * SEC, last * 1.02, 1)
    assert m.rejected[RejectReason.SPIKE] == 2
    assert m.accepted == 60 + 3
    (bar,) = m.flush()
    assert bar.close == pytest.approx(last * 1.02)


def test_a_move_after_a_long_gap_is_not_a_spike():
    m = _warm_manager()
    last = m.history(1)["close"].iloc[0]
    m.on_tick(T0 + 3 * 24 * 60 * MIN, last * 1.01, 1)  # 1% after a weekend: plausible
    assert m.rejected.get(RejectReason.SPIKE, 0) == 0


def test_spike_rule_uses_only_the_cold_threshold_before_enough_bars():
    m = CandleManager("X")
    m.on_tick(T0 + SEC, 100.0, 1)
    m.on_tick(T0 + 2 * SEC, 105.0, 1)  # 5% < 10% cold threshold
    m.on_tick(T0 + 3 * SEC, 130.0, 1)  # 24%: rejected
    assert m.accepted == 2 and m.rejected == {RejectReason.SPIKE: 1}


def test_a_batch_for_another_symbol_is_rejected_not_mixed_in():
    m = CandleManager("X")
    batch = TickBatch("Y", np.array([T0 + SEC]), np.array([10.0]), np.array([1.0]))
    assert m.on_ticks(batch) == []
    assert m.rejected == {RejectReason.WRONG_SYMBOL: 1}


def test_garbage_never_raises():
    rng = np.random.default_rng(5)
    m = CandleManager("X")
    n = 2000
    ts = rng.integers(-(10**18), 10**18, n)
    price = rng.choice([np.nan, np.inf, -1.0, 0.0, 1e300, 1e-300, 5.0], n)
    size = rng.choice([np.nan, -np.inf, -1.0, 0.0, 1e300, 3.0], n)
    m.on_batch(ts, price, size, clock_ns=int(ts[0]))
    m.on_batch(ts, price, size)
    for i in range(200):
        m.on_tick(int(ts[i]), float(price[i]), float(size[i]))
    m.flush()
    assert m.accepted + sum(m.rejected.values()) == 2 * n + 200


# ---------------------------------------------------------------- history


def test_ring_buffer_keeps_the_last_n_bars_in_order():
    m = CandleManager("X", cfg(warmup_bars=200, ring_size=200))
    for i in range(450):
        m.on_tick(T0 + i * MIN + SEC, 100.0 + (i % 7) * 0.01, 1)
    m.flush()
    hist = m.history()
    assert len(hist) == 200
    np.testing.assert_array_equal(hist["timestamp"].to_numpy(), T0 + np.arange(250, 450) * MIN)
    assert list(m.history(3)["timestamp"]) == [T0 + i * MIN for i in (447, 448, 449)]
    assert list(hist.columns) == ["timestamp", "open", "high", "low", "close", "volume", "trades", "vwap"]


def test_warm_start_continues_from_stored_bars():
    a = CandleManager("X")
    for i in range(30):
        a.on_tick(T0 + i * MIN + SEC, 100.0 + i * 0.01, 1)
    a.on_heartbeat(T0 + 30 * MIN + SEC)
    b = CandleManager("X", cfg(empty_minutes="flat"))
    b.warm(a.history())
    assert len(b.history()) == 30
    assert b.on_tick(T0 + 10 * MIN, 1.0, 1) == []  # already closed: late
    assert b.rejected == {RejectReason.LATE: 1}
    bars = b.on_tick(T0 + 32 * MIN + SEC, 100.31, 1) + b.flush()
    assert [x.ts for x in bars] == [
        T0 + 30 * MIN,
        T0 + 31 * MIN,
        T0 + 32 * MIN,
    ]  # flats from the stored close
    assert bars[0].close == pytest.approx(100.29)


def test_bar_batches_pass_through_in_order_and_late_bars_are_rejected():
    m = CandleManager("X")
    n = 3
    ts = T0 + np.arange(n) * MIN
    one = np.ones(n)
    batch = BarBatch(
        "X", ts, one * 10, one * 11, one * 9, one * 10.5, one * 7, np.full(n, 3), np.full(n, math.nan)
    )
    bars = m.on_bars(batch)
    assert [b.ts for b in bars] == list(ts) and bars[0].vwap == 10.5
    assert m.on_bars(batch) == [] and m.rejected == {RejectReason.LATE: 3}


def test_an_arrow_table_gives_the_same_bars_as_numpy_columns(es_ticks):
    ts, price, size = es_ticks
    a = CandleManager("ES")
    from_arrow = a.on_arrow(pq.read_table(SAMPLE), size="volume") + a.flush()
    b = CandleManager("ES")
    assert from_arrow == b.on_batch(ts, price, size) + b.flush()


def test_arrow_nulls_are_rejected_as_non_finite():
    import pyarrow as pa

    table = pa.table(
        {
            "timestamp": pa.array([T0 + SEC, None, T0 + 3 * SEC], pa.int64()),
            "price": pa.array([10.0, 10.0, None]),
            "size": pa.array([1, 1, 1], pa.int32()),
        }
    )
    m = CandleManager("X")
    m.on_arrow(table)
    assert m.accepted == 1 and m.rejected == {RejectReason.NON_FINITE: 2}
