"""RiskManager: sizing, every refusal code (and a near miss), caps, kill switch, cooldown, restarts."""

from __future__ import annotations

import math
import re

import msgspec
import pytest

from scalper import risk
from scalper.config import Config, InstrumentConfig, RiskConfig
from scalper.risk import REFUSAL_CODES, RiskManager, RiskState, client_order_id, decode_state
from scalper.types import NS_PER_MINUTE, NS_PER_SECOND, OrderType, Position, Side, Signal, TimeInForce

DAY = 86_400 * NS_PER_SECOND
T0 = 20_000 * DAY + 10 * 3600 * NS_PER_SECOND  # some day, 10:00 UTC
# caps loose enough that only the rule under test binds (ES notional is ~10x equity)
LOOSE = dict(max_position_pct=10_000.0, max_gross_exposure_pct=100_000.0)

INSTRUMENTS = {
    "default": InstrumentConfig(),
    "ES": InstrumentConfig(tick_size=0.25, lot_size=1.0, min_quantity=1.0, multiplier=50.0),
    "BTC": InstrumentConfig(tick_size=0.1, lot_size=0.001, min_quantity=0.001),
    "FX": InstrumentConfig(lot_size=0.1),
}


def make_cfg(instruments: dict[str, InstrumentConfig] | None = None, **risk_fields) -> Config:
    return Config(
        symbols=["ES", "BTC", "FX", "AAA", "BBB", "CCC"],
        risk=RiskConfig(**risk_fields),
        instruments=instruments or INSTRUMENTS,
    )


def sig(
    symbol: str = "ES",
    *,
    side: Side = Side.BUY,
    entry: float = 4500.0,
    stop: float | None = None,
    target: float | None = None,
    ts: int = T0,
    strategy: str = "momentum",
    order_type: OrderType = OrderType.MARKET,
    limit: float | None = None,
    expiry_bars: int | None = None,
) -> Signal:
    """A signal 2.0 below/above `entry` for the stop and 4.0 for the target unless given."""
    s = side.sign
    return Signal(
        symbol=symbol,
        ts=ts,
        strategy=strategy,
        side=side,
        order_type=order_type,
        stop_loss=entry - 2.0 * s if stop is None else stop,
        take_profit=entry + 4.0 * s if target is None else target,
        limit_price=limit,
        expiry_bars=expiry_bars,
        reason="test",
    )


def ev(rm: RiskManager, signal: Signal, *, ref: float | None = None, positions=None, **kw):
    ref_price = ref if ref is not None else (signal.limit_price or 4500.0)
    return rm.evaluate(signal, ref_price=ref_price, positions=positions or {}, **kw)


def long_pos(symbol: str, qty: float, price: float) -> Position:
    return Position(symbol=symbol, quantity=qty, avg_price=price)


def assert_refused(decision, code: str, *numbers: str) -> None:
    """Refused with `code` (a documented one), no intent, and `detail` names every number."""
    assert not decision.approved, decision
    assert decision.reason == code, decision
    assert code in REFUSAL_CODES
    assert decision.intent is None
    assert re.search(r"\d", decision.detail), decision.detail
    for n in numbers:
        assert n in decision.detail, (n, decision.detail)


def assert_approved(decision, qty: float | None = None):
    assert decision.approved, decision
    assert decision.reason == "approved"
    assert decision.intent is not None
    if qty is not None:
        assert decision.intent.quantity == qty, decision
    return decision.intent


# ------------------------------------------------------------------------------ sizing


def test_es_sizing_100k_equity_half_percent_stop_2_points_multiplier_50_is_5_contracts():
    rm = RiskManager(make_cfg(**LOOSE))
    intent = assert_approved(ev(rm, sig(entry=4500.0, stop=4498.0)), 5.0)
    assert intent.side == Side.BUY and intent.symbol == "ES"


def test_quantity_rounds_down_to_whole_lots():
    rm = RiskManager(make_cfg(**LOOSE))
    # 500 / (3.0 x 50) = 3.33 contracts -> 3
    assert_approved(ev(rm, sig(entry=4500.0, stop=4497.0)), 3.0)


def test_short_sizing_mirrors_long():
    rm = RiskManager(make_cfg(**LOOSE))
    intent = assert_approved(ev(rm, sig(side=Side.SELL, entry=4500.0, stop=4502.5)), 4.0)
    assert intent.side == Side.SELL


def test_fractional_crypto_lots_round_down_to_0_001():
    rm = RiskManager(make_cfg(**LOOSE))
    # 500 / 150 = 3.3333 BTC -> 3.333
    assert_approved(ev(rm, sig("BTC", entry=30_000.0, stop=29_850.0, target=30_300.0), ref=30_000.0), 3.333)


def test_float_error_does_not_lose_a_lot():
    # 100 / (100 - 99.8) is 499.99999999999 in floats: still 500.0 (5000 lots of 0.1)
    rm = RiskManager(make_cfg(risk_per_trade_pct=0.1, **LOOSE))
    assert_approved(ev(rm, sig("FX", entry=100.0, stop=99.8, target=101.0), ref=100.0), 500.0)
    assert risk._floor_lots(0.3, 0.1) == 0.3
    assert risk._floor_lots(0.7, 0.1) == 0.7
    assert risk._floor_lots(0.0069999, 0.001) == 0.006
    assert risk._floor_lots(-1.0, 1.0) == 0.0


def test_size_multiplier_scales_the_risk_budget():
    rm = RiskManager(make_cfg(**LOOSE))
    assert_approved(ev(rm, sig(ts=T0, entry=4500.0, stop=4498.0), size_multiplier=0.5), 2.0)  # 2.5 -> 2


def test_size_multiplier_is_clipped_at_the_cap():
    rm = RiskManager(make_cfg(size_multiplier_cap=2.0, **LOOSE))
    assert_approved(ev(rm, sig(entry=4500.0, stop=4498.0), size_multiplier=5.0), 10.0)  # 5 x 2, not 5 x 5


def test_size_multiplier_zero_or_negative_is_size_below_minimum():
    rm = RiskManager(make_cfg(**LOOSE))
    assert_refused(ev(rm, sig(), size_multiplier=0.0), "size_below_minimum", "multiplier 0")
    assert_refused(ev(rm, sig(), size_multiplier=-1.0), "size_below_minimum", "multiplier 0")


def test_size_below_minimum_when_the_budget_buys_less_than_one_contract():
    rm = RiskManager(make_cfg(**LOOSE))
    # 500 / (20 x 50) = 0.5 contract -> 0
    d = ev(rm, sig(entry=4500.0, stop=4480.0, target=4600.0))
    assert_refused(d, "size_below_minimum", "500", "1,000", "minimum 1")
    # near miss: 10 points away -> exactly 1 contract
    assert_approved(ev(rm, sig(entry=4500.0, stop=4490.0, target=4600.0, ts=T0 + NS_PER_MINUTE)), 1.0)


def test_size_below_min_quantity_larger_than_the_lot():
    inst = {"default": InstrumentConfig(lot_size=0.001, min_quantity=0.01)}
    rm = RiskManager(make_cfg(inst, **LOOSE))
    # 500 / 100,000 = 0.005 < min_quantity 0.01
    d = ev(rm, sig("BTC", entry=200_000.0, stop=100_000.0, target=300_000.0), ref=200_000.0)
    assert_refused(d, "size_below_minimum", "0.005", "0.01")
    # near miss: 50,000 away -> 0.01
    d = ev(rm, sig("BTC", entry=200_000.0, stop=150_000.0, target=300_000.0), ref=200_000.0)
    assert_approved(d, 0.01)


def test_below_min_notional_and_near_miss():
    inst = {"default": InstrumentConfig(lot_size=1.0, min_notional=1_000.0)}
    rm = RiskManager(make_cfg(inst, **LOOSE))
    # 500 / 50 = 10 units x 99 = 990 < 1,000
    assert_refused(
        ev(rm, sig("AAA", entry=99.0, stop=49.0, target=200.0), ref=99.0),
        "below_min_notional",
        "990",
        "1,000",
    )
    # near miss: 10 units x 100 = 1,000
    assert_approved(ev(rm, sig("AAA", entry=100.0, stop=50.0, target=200.0), ref=100.0), 10.0)


# ------------------------------------------------------------------------------ caps


def test_max_position_reduces_the_quantity_to_fit():
    rm = RiskManager(make_cfg(max_position_pct=25.0, max_gross_exposure_pct=1_000.0))
    # 500 / 1 = 500 units x 100 = 50,000 > 25% of 100,000 -> 250 units
    d = ev(rm, sig("AAA", entry=100.0, stop=99.0, target=102.0), ref=100.0)
    assert_approved(d, 250.0)
    assert "max_position" in d.detail and "500 -> 250" in d.detail and "25,000" in d.detail


def test_max_position_near_miss_is_not_reduced():
    rm = RiskManager(make_cfg(max_position_pct=50.0, max_gross_exposure_pct=1_000.0))
    d = ev(rm, sig("AAA", entry=100.0, stop=99.0, target=102.0), ref=100.0)  # exactly 50,000
    assert_approved(d, 500.0)
    assert "reduced" not in d.detail


def test_max_position_refuses_when_one_contract_does_not_fit():
    rm = RiskManager(make_cfg(max_position_pct=25.0, max_gross_exposure_pct=100_000.0))
    # one ES contract at 4500 is 225,000 of notional > 25,000
    d = ev(rm, sig(entry=4500.0, stop=4498.0))
    assert_refused(d, "max_position", "225,000", "25,000", "25%")


def test_max_position_counts_the_held_position_when_adding_is_allowed():
    rm = RiskManager(
        make_cfg(one_position_per_symbol=False, max_position_pct=25.0, max_gross_exposure_pct=1_000.0)
    )
    held = {"AAA": long_pos("AAA", 200.0, 100.0)}  # 20,000 held -> room 5,000 -> 50 units
    d = ev(rm, sig("AAA", entry=100.0, stop=99.0, target=102.0), ref=100.0, positions=held)
    assert_approved(d, 50.0)


def test_max_gross_exposure_reduces_the_quantity_to_fit():
    rm = RiskManager(make_cfg(max_position_pct=100.0, max_gross_exposure_pct=100.0))
    held = {"BBB": long_pos("BBB", -90.0, 1_000.0)}  # 90,000 of gross: a short counts by |qty|
    d = ev(rm, sig("AAA", entry=100.0, stop=99.0, target=102.0), ref=100.0, positions=held)
    assert_approved(d, 100.0)  # room 10,000 -> 100 units
    assert "max_gross_exposure" in d.detail and "500 -> 100" in d.detail


def test_max_gross_exposure_uses_each_positions_multiplier_and_avg_price():
    rm = RiskManager(make_cfg(max_position_pct=100.0, max_gross_exposure_pct=100.0))
    held = {"ES": long_pos("ES", 0.0, 0.0), "BTC": long_pos("BTC", 1.0, 95_000.0)}  # flat ES ignored
    d = ev(rm, sig("AAA", entry=100.0, stop=99.0, target=102.0), ref=100.0, positions=held)
    assert_approved(d, 50.0)  # room 5,000
    held = {"ES": long_pos("ES", 1.0, 1_800.0)}  # 1 x 1,800 x 50 = 90,000
    d = ev(
        rm, sig("AAA", entry=100.0, stop=99.0, target=102.0, ts=T0 + NS_PER_MINUTE), ref=100.0, positions=held
    )
    assert_approved(d, 100.0)


def test_max_gross_exposure_refuses_when_nothing_fits_and_near_miss():
    rm = RiskManager(make_cfg(max_position_pct=100.0, max_gross_exposure_pct=100.0))
    held = {"BBB": long_pos("BBB", 99_950.0, 1.0)}  # room 50 < one unit at 100
    d = ev(rm, sig("AAA", entry=100.0, stop=99.0, target=102.0), ref=100.0, positions=held)
    assert_refused(d, "max_gross_exposure", "99,950", "100,000")
    held = {"BBB": long_pos("BBB", 99_900.0, 1.0)}  # room 100 = exactly one unit
    d = ev(rm, sig("AAA", entry=100.0, stop=99.0, target=102.0, ts=T0 + 1), ref=100.0, positions=held)
    assert_approved(d, 1.0)


def test_non_finite_position_price_fails_safe():
    rm = RiskManager(make_cfg(max_position_pct=100.0, max_gross_exposure_pct=100.0))
    held = {"BBB": long_pos("BBB", 1.0, math.nan)}
    d = ev(rm, sig("AAA", entry=100.0, stop=99.0, target=102.0), ref=100.0, positions=held)
    assert_refused(d, "max_gross_exposure", "nan")


# ------------------------------------------------------------------------------ gates


def test_position_exists_refuses_a_second_entry_on_the_symbol():
    rm = RiskManager(make_cfg(**LOOSE))
    d = ev(rm, sig(), positions={"ES": long_pos("ES", -2.0, 4510.0)})
    assert_refused(d, "position_exists", "-2")
    # near miss: a flat position record does not count
    assert_approved(ev(rm, sig(), positions={"ES": long_pos("ES", 0.0, 0.0)}))


def test_position_exists_counts_an_open_entry_order_on_the_symbol():
    rm = RiskManager(make_cfg(**LOOSE))
    assert_refused(ev(rm, sig(), open_entry_orders={"ES": 1}), "position_exists", "1 open entry order")
    assert_approved(ev(rm, sig(), open_entry_orders={"ES": 0, "BTC": 1}))


def test_one_position_per_symbol_false_allows_adding():
    rm = RiskManager(make_cfg(one_position_per_symbol=False, **LOOSE))
    assert_approved(ev(rm, sig(), positions={"ES": long_pos("ES", 2.0, 4490.0)}), 5.0)


def test_max_open_positions_counts_positions_and_open_entry_orders():
    rm = RiskManager(make_cfg(max_open_positions=3, **LOOSE))
    held = {s: long_pos(s, 1.0, 10.0) for s in ("AAA", "BBB")}
    d = ev(rm, sig(), positions=held, open_entry_orders=1)
    assert_refused(d, "max_open_positions", "2 open positions", "1 open entry orders", "3")
    d = ev(rm, sig(), positions=held, open_entry_orders={"CCC": 1})
    assert_refused(d, "max_open_positions", "3")
    # near miss: 2 positions + 0 orders < 3
    assert_approved(ev(rm, sig(), positions=held, open_entry_orders=0))


def test_max_open_positions_does_not_block_adding_to_an_open_position():
    rm = RiskManager(make_cfg(max_open_positions=2, one_position_per_symbol=False, **LOOSE))
    held = {"ES": long_pos("ES", 1.0, 4500.0), "AAA": long_pos("AAA", 1.0, 10.0)}
    assert_approved(ev(rm, sig(), positions=held))
    d = ev(rm, sig("BBB", entry=100.0, stop=99.0, target=102.0), ref=100.0, positions=held)
    assert_refused(d, "max_open_positions")


def test_order_rate_is_a_sliding_60s_window_of_event_time():
    rm = RiskManager(make_cfg(max_orders_per_minute=3, one_position_per_symbol=False, **LOOSE))
    for dt in (0, 10, 20):
        assert_approved(ev(rm, sig(ts=T0 + dt * NS_PER_SECOND)))
    d = ev(rm, sig(ts=T0 + 59 * NS_PER_SECOND))
    assert_refused(d, "max_orders_per_minute", "3 entries", "60 s")
    # a refusal is not an order: at +60 s the first approval (+0 s) has left the window
    assert_approved(ev(rm, sig(ts=T0 + 60 * NS_PER_SECOND)))
    assert_refused(ev(rm, sig(ts=T0 + 60 * NS_PER_SECOND)), "max_orders_per_minute")
    assert len(rm.state.recent_order_ts) == 3


def test_order_rate_uses_event_time_not_the_call_order():
    rm = RiskManager(make_cfg(max_orders_per_minute=2, one_position_per_symbol=False, **LOOSE))
    assert_approved(ev(rm, sig(ts=T0)))
    assert_approved(ev(rm, sig(ts=T0)))
    assert_approved(ev(rm, sig(ts=T0 + 5 * NS_PER_MINUTE)))  # far later in event time: fine


# ------------------------------------------------------------------------------ invalid signals


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(stop=math.nan), ["stop_loss", "nan"]),
        (dict(target=math.inf), ["take_profit", "inf"]),
        (dict(stop=4501.0), ["4,501", "not below", "4,500"]),  # stop above the entry of a long
        (dict(stop=4500.0), ["4,500", "not below"]),  # stop AT the entry: zero risk per unit
        (dict(target=4499.0), ["4,499", "not above", "4,500"]),  # target below the entry of a long
        (dict(side=Side.SELL, stop=4499.0, target=4490.0), ["4,499", "not above"]),
        (dict(side=Side.SELL, stop=4510.0, target=4501.0), ["4,501", "not below"]),
        (dict(order_type=OrderType.LIMIT), ["limit_price"]),
        (dict(order_type=OrderType.STOP), ["stop", "market or limit"]),
        (dict(order_type=OrderType.LIMIT, limit=4500.0, expiry_bars=0), ["expiry_bars 0"]),
    ],
)
def test_invalid_signals_are_refused(kwargs, words):
    rm = RiskManager(make_cfg(**LOOSE))
    assert_refused(ev(rm, sig(**kwargs), ref=4500.0), "invalid_signal", *words)


def test_non_finite_ref_price_or_size_multiplier_is_invalid():
    rm = RiskManager(make_cfg(**LOOSE))
    assert_refused(ev(rm, sig(), ref=math.nan), "invalid_signal", "entry price", "nan")
    assert_refused(ev(rm, sig(), size_multiplier=math.nan), "invalid_signal", "size multiplier")
    assert_refused(ev(rm, sig("AAA", entry=0.0, stop=-1.0, target=1.0), ref=0.0), "invalid_signal", "0")


def test_limit_entry_is_sized_at_its_limit_price_and_expires_gtd():
    rm = RiskManager(make_cfg(**LOOSE))
    s = sig(order_type=OrderType.LIMIT, limit=4495.0, stop=4493.0, target=4505.0, expiry_bars=3)
    intent = assert_approved(rm.evaluate(s, ref_price=4500.0, positions={}), 5.0)  # 2.0 from the LIMIT price
    assert intent.order_type == OrderType.LIMIT and intent.limit_price == 4495.0
    assert intent.tif == TimeInForce.GTD and intent.expiry_bars == 3


def test_market_entry_intent_is_gtc_with_the_signal_bracket():
    rm = RiskManager(make_cfg(**LOOSE))
    s = sig(entry=4500.0, stop=4498.0, target=4504.0)
    intent = assert_approved(ev(rm, s))
    assert intent.order_type == OrderType.MARKET and intent.limit_price is None
    assert intent.tif == TimeInForce.GTC and intent.expiry_bars is None
    assert (intent.stop_loss, intent.take_profit) == (4498.0, 4504.0)
    assert (intent.strategy, intent.signal_ts, intent.reason) == ("momentum", T0, "test")
    assert intent.client_order_id == client_order_id(s)


# ------------------------------------------------------------------------------ client order ids


def test_client_order_id_is_deterministic_per_signal():
    s = sig()
    cid = client_order_id(s)
    assert re.fullmatch(r"sc-[0-9a-f]{20}", cid)
    assert client_order_id(sig()) == cid
    # a second manager (a restart) gives the same id for the same signal
    a = assert_approved(ev(RiskManager(make_cfg(**LOOSE)), s))
    b = assert_approved(ev(RiskManager(make_cfg(**LOOSE)), s))
    assert a.client_order_id == b.client_order_id == cid
    others = {
        client_order_id(sig(ts=T0 + NS_PER_MINUTE)),
        client_order_id(sig(side=Side.SELL)),
        client_order_id(sig(strategy="breakout")),
        client_order_id(sig("BTC")),
    }
    assert cid not in others and len(others) == 4


# ------------------------------------------------------------------------------ kill switch


def test_daily_loss_limit_halts_and_near_miss_does_not():
    rm = RiskManager(make_cfg(**LOOSE))
    rm.mark(100_000.0, T0)
    rm.mark(97_001.0, T0 + NS_PER_MINUTE)
    assert not rm.is_halted
    rm.mark(97_000.0, T0 + 2 * NS_PER_MINUTE)  # -3.0%
    assert rm.is_halted and rm.state.halt_reason == "daily_loss_limit"
    assert rm.state.halted_ts == T0 + 2 * NS_PER_MINUTE


def test_halted_refuses_entries_but_allows_exits(caplog):
    rm = RiskManager(make_cfg(**LOOSE))
    rm.mark(100_000.0, T0)
    with caplog.at_level("WARNING", logger="scalper.risk"):
        rm.mark(96_000.0, T0 + NS_PER_MINUTE)
    assert "HALTED" in caplog.text and "daily_loss_limit" in caplog.text
    d = ev(rm, sig(ts=T0 + NS_PER_MINUTE))
    assert_refused(d, "halted", "daily_loss_limit")
    assert rm.allows_exit("ES") and rm.allows_exit("BTC")
    # halted wins even over an invalid signal
    assert ev(rm, sig(stop=math.nan)).reason == "halted"


def test_daily_halt_clears_on_the_next_utc_day():
    rm = RiskManager(make_cfg(**LOOSE))
    rm.mark(100_000.0, T0)
    rm.mark(96_000.0, T0 + NS_PER_MINUTE)
    rm.mark(95_500.0, T0 + 13 * 3600 * NS_PER_SECOND)  # 23:00, same day
    assert rm.is_halted
    next_day = (T0 // DAY + 1) * DAY
    rm.mark(95_500.0, next_day)
    assert not rm.is_halted and rm.state.day_start_equity == 95_500.0
    assert_approved(ev(rm, sig(ts=next_day)))
    # the new day's limit is measured from its own start: 3% of 95,500 = 2,865
    rm.mark(92_636.0, next_day + NS_PER_MINUTE)
    assert not rm.is_halted
    rm.mark(92_635.0, next_day + 2 * NS_PER_MINUTE)
    assert rm.is_halted


def test_max_drawdown_halts_and_stays_halted_across_days_until_reset():
    rm = RiskManager(make_cfg(**LOOSE))
    equity = 100_000.0
    for day in range(4):  # -2% a day: never the daily limit
        rm.mark(equity, T0 + day * DAY)
        equity -= 2_000.0
        rm.mark(equity, T0 + day * DAY + NS_PER_MINUTE)
        assert not rm.is_halted, day
    rm.mark(90_000.0, T0 + 5 * DAY)  # 10% below the 100,000 peak
    assert rm.is_halted and rm.state.halt_reason == "max_drawdown"
    rm.mark(91_000.0, T0 + 6 * DAY)  # a new day does not clear a drawdown halt
    assert rm.is_halted and rm.state.halt_reason == "max_drawdown"
    assert_refused(ev(rm, sig(ts=T0 + 6 * DAY)), "halted", "max_drawdown")
    rm.reset_halt("operator reviewed the losses")
    assert not rm.is_halted and rm.state.peak_equity == 91_000.0
    rm.mark(91_000.0, T0 + 6 * DAY + NS_PER_MINUTE)
    assert not rm.is_halted
    assert_approved(ev(rm, sig(ts=T0 + 6 * DAY + NS_PER_MINUTE)))


def test_drawdown_takes_precedence_over_daily_loss():
    rm = RiskManager(make_cfg(**LOOSE))
    rm.mark(100_000.0, T0)
    rm.mark(96_000.0, T0 + NS_PER_MINUTE)
    assert rm.state.halt_reason == "daily_loss_limit"
    rm.mark(89_000.0, T0 + 2 * NS_PER_MINUTE)
    assert rm.state.halt_reason == "max_drawdown"
    rm.mark(89_000.0, T0 + DAY)
    assert rm.is_halted


def test_operator_halt_is_kept_until_reset():
    rm = RiskManager(make_cfg(**LOOSE))
    rm.halt("manual: broker outage", T0)
    rm.mark(100_000.0, T0 + DAY)
    assert rm.is_halted and rm.state.halt_reason == "manual: broker outage"
    rm.reset_halt("broker back")
    assert not rm.is_halted


def test_mark_rejects_non_finite_equity():
    rm = RiskManager(make_cfg())
    with pytest.raises(ValueError, match="finite"):
        rm.mark(math.nan, T0)
    assert rm.state.equity == 100_000.0


def test_sizing_follows_marked_equity():
    rm = RiskManager(make_cfg(**LOOSE))
    rm.mark(200_000.0, T0)
    assert_approved(ev(rm, sig(entry=4500.0, stop=4498.0)), 10.0)


def test_state_survives_a_restart_through_msgspec_json():
    cfg = make_cfg(max_orders_per_minute=2, one_position_per_symbol=False, **LOOSE)
    rm = RiskManager(cfg)
    rm.mark(100_000.0, T0)
    assert_approved(ev(rm, sig(ts=T0)))
    for _ in range(2):
        rm.on_trade_closed("BTC", -10.0, T0)
    rm.on_trade_closed("AAA", -10.0, T0)
    rm.on_trade_closed("AAA", -10.0, T0)
    rm.on_trade_closed("AAA", -10.0, T0)
    rm.mark(96_000.0, T0 + NS_PER_MINUTE)
    assert rm.is_halted

    raw = msgspec.json.encode(rm.state)
    restored = RiskManager(cfg, decode_state(raw))
    assert restored.state == rm.state
    assert restored.is_halted and restored.state.halt_reason == "daily_loss_limit"
    assert_refused(ev(restored, sig(ts=T0 + NS_PER_MINUTE)), "halted")
    # the rest of the memory came back too: losses, cooldowns, the order-rate window
    assert restored.state.consecutive_losses == {"BTC": 2}
    assert restored.state.cooldown_until == {"AAA": T0 + 30 * NS_PER_MINUTE}
    next_day = (T0 // DAY + 1) * DAY
    restored.reset_halt("test")
    assert restored.state.recent_order_ts == [T0 + NS_PER_MINUTE]
    assert_approved(ev(restored, sig(ts=T0)))
    assert_refused(ev(restored, sig(ts=T0)), "max_orders_per_minute")
    assert_approved(ev(restored, sig(ts=next_day)))


def test_fresh_state_starts_at_the_configured_equity():
    st = RiskManager(make_cfg(starting_equity=50_000.0)).state
    assert isinstance(st, RiskState)
    assert (st.equity, st.peak_equity, st.day_start_equity, st.halted) == (
        50_000.0,
        50_000.0,
        50_000.0,
        False,
    )


# ------------------------------------------------------------------------------ cooldown


def test_cooldown_after_n_consecutive_losses_and_its_expiry():
    rm = RiskManager(make_cfg(cooldown_after_losses=3, cooldown_bars=30, **LOOSE))
    for i in range(3):
        rm.on_trade_closed("ES", -100.0, T0 + i * NS_PER_MINUTE)
    until = T0 + 2 * NS_PER_MINUTE + 30 * NS_PER_MINUTE
    assert rm.state.cooldown_until["ES"] == until
    assert rm.state.consecutive_losses.get("ES", 0) == 0
    # decided at until - 1 minute: refused; a signal on another symbol is unaffected
    d = ev(rm, sig(ts=until - 2 * NS_PER_MINUTE))
    assert_refused(d, "cooldown", "3 consecutive losses", str(until), "1 min left")
    btc = sig("BTC", entry=30_000.0, stop=29_850.0, target=30_300.0, ts=until - 2 * NS_PER_MINUTE)
    assert_approved(ev(rm, btc, ref=30_000.0))
    # decided exactly at `until`: the cooldown is over (and forgotten)
    assert_approved(ev(rm, sig(ts=until - NS_PER_MINUTE)))
    assert "ES" not in rm.state.cooldown_until


def test_a_win_resets_the_loss_count():
    rm = RiskManager(make_cfg(cooldown_after_losses=3, **LOOSE))
    rm.on_trade_closed("ES", -1.0, T0)
    rm.on_trade_closed("ES", -1.0, T0)
    rm.on_trade_closed("ES", 0.0, T0)  # flat counts as not a loss
    rm.on_trade_closed("ES", -1.0, T0)
    rm.on_trade_closed("ES", -1.0, T0)
    assert "ES" not in rm.state.cooldown_until
    assert rm.state.consecutive_losses["ES"] == 2
    assert_approved(ev(rm, sig()))
    rm.on_trade_closed("ES", -1.0, T0)
    assert_refused(ev(rm, sig(ts=T0 + NS_PER_MINUTE)), "cooldown")


def test_losses_on_other_symbols_do_not_count():
    rm = RiskManager(make_cfg(cooldown_after_losses=2, **LOOSE))
    rm.on_trade_closed("ES", -1.0, T0)
    rm.on_trade_closed("BTC", -1.0, T0)
    assert rm.state.cooldown_until == {}


# ------------------------------------------------------------------------------ bookkeeping


def test_every_refusal_code_is_documented_in_the_module():
    doc = risk.__doc__ or ""
    for code in REFUSAL_CODES:
        assert f'"{code}"' in doc, code


def test_counts_by_outcome():
    rm = RiskManager(make_cfg(**LOOSE))
    ev(rm, sig())
    ev(rm, sig(stop=math.nan))
    assert rm.counts == {"approved": 1, "invalid_signal": 1}


def test_cooldown_bars_zero_means_no_cooldown():
    rm = RiskManager(make_cfg(cooldown_after_losses=1, cooldown_bars=0, **LOOSE))
    rm.on_trade_closed("ES", -1.0, T0)
    assert rm.state.cooldown_until == {} and rm.state.consecutive_losses == {}
    assert_approved(ev(rm, sig()))


def test_a_later_cooldown_never_shortens_an_earlier_one():
    rm = RiskManager(make_cfg(cooldown_after_losses=1, cooldown_bars=30, **LOOSE))
    rm.on_trade_closed("ES", -1.0, T0 + 10 * NS_PER_MINUTE)
    rm.on_trade_closed("ES", -1.0, T0)  # reported late, with an earlier time
    assert rm.state.cooldown_until["ES"] == T0 + 40 * NS_PER_MINUTE


def test_futures_caps_count_margin_not_notional():
    es = InstrumentConfig(
        tick_size=0.25, lot_size=1.0, min_quantity=1.0, multiplier=50.0, margin_per_unit=5_000.0
    )
    rm = RiskManager(make_cfg({"default": InstrumentConfig(), "ES": es}))  # default caps: 25% / 100%
    # 500 of risk / (1.5 points x 50) = 6 contracts; 6 x 5,000 margin = 30,000 > 25% of 100,000
    d = ev(rm, sig(stop=4500.0 - 1.5))
    assert d.approved and d.intent.quantity == 5
    assert "margin 5,000" in d.detail
    # gross exposure counts the margin of held positions too: 15 held x 5,000 = 75,000 of 100,000
    d = ev(rm, sig("ES", ts=T0 + NS_PER_MINUTE), positions={"AAA": long_pos("AAA", 750, 100.0)})
    assert d.approved  # AAA ties up its notional, 75,000; ES adds 25,000 = the 100% cap
    d = ev(rm, sig("ES", ts=T0 + 2 * NS_PER_MINUTE), positions={"AAA": long_pos("AAA", 760, 100.0)})
    assert d.approved and d.intent.quantity == 4


def test_the_shipped_config_sizes_an_es_trade():
    rm = RiskManager(Config())
    d = ev(rm, sig(entry=1640.0, stop=1638.5, target=1643.0), ref=1640.0)
    assert d.approved and d.intent.quantity == 5


def test_judge_is_evaluate_with_the_sentence_written_on_demand():
    """The backtest's `judge` makes evaluate's decisions (same state changes) and sentences."""
    limits = {"max_position_pct": 300.0, "max_gross_exposure_pct": 1000.0}
    a, b = RiskManager(make_cfg(**limits)), RiskManager(make_cfg(**limits))
    held = {"ES": long_pos("ES", 1, 4500.0)}
    # approved with its quantity reduced to the position cap, refused, approved
    cases = [(sig(), {}), (sig(ts=T0 + NS_PER_MINUTE), held), (sig("AAA", entry=100.0), {})]
    for signal, positions in cases:
        d = ev(a, signal, positions=positions)
        j = b.judge(signal, ref_price=signal.limit_price or 4500.0, positions=positions)
        assert (j.approved, j.reason, j.intent, j.detail()) == (d.approved, d.reason, d.intent, d.detail)
    assert a.state == b.state and a.counts == b.counts
    b.halt("operator", T0)
    assert (
        b.judge(sig(), ref_price=4500.0, positions={}).detail() == f"trading halted since ts={T0}: operator"
    )
