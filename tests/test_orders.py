"""Order state machine, OrderManager (idempotency, brackets, OCO, expiry, flatten) and Portfolio."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from scalper.config import Config
from scalper.execution.orders import (
    ALLOWED,
    InvalidTransition,
    OrderEvent,
    OrderManager,
    apply_fill,
    transition,
)
from scalper.execution.portfolio import Portfolio
from scalper.types import NS_PER_MINUTE as MIN
from scalper.types import (
    Fill,
    Order,
    OrderIntent,
    OrderRole,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

S = OrderStatus
T0 = 1_700_000_000 * 1_000_000_000 // MIN * MIN  # a minute boundary

VALID = [
    (S.NEW, S.ACCEPTED),
    (S.NEW, S.REJECTED),
    (S.ACCEPTED, S.PARTIALLY_FILLED),
    (S.ACCEPTED, S.FILLED),
    (S.ACCEPTED, S.CANCELED),
    (S.ACCEPTED, S.EXPIRED),
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED),
    (S.PARTIALLY_FILLED, S.FILLED),
    (S.PARTIALLY_FILLED, S.CANCELED),
    (S.PARTIALLY_FILLED, S.EXPIRED),
]
INVALID = [pair for pair in itertools.product(list(S), list(S)) if pair not in VALID]


def make_cfg(**execution) -> Config:
    doc = msgspec.to_builtins(Config())
    doc["execution"].update(execution)
    doc["instruments"]["X"] = {"tick_size": 0.01, "lot_size": 1.0, "multiplier": 1.0}
    return msgspec.convert(doc, Config)


def order(status: OrderStatus = S.NEW, quantity: float = 10.0) -> Order:
    return Order("o1", "X", Side.BUY, OrderType.MARKET, quantity, status=status)


def intent(coid: str = "e1", **kw) -> OrderIntent:
    base = dict(
        client_order_id=coid,
        symbol="X",
        side=Side.BUY,
        quantity=10.0,
        order_type=OrderType.MARKET,
        stop_loss=95.0,
        take_profit=110.0,
        strategy="momentum",
    )
    base.update(kw)
    return OrderIntent(**base)


def fill_of(o: Order, qty: float, price: float, ts: int, n: int = 0) -> Fill:
    return Fill(
        f"{o.client_order_id}-f{ts}-{n}", o.client_order_id, o.symbol, o.side, qty, price, 0.0, "taker", ts
    )


# ------------------------------------------------------------------ state machine


def test_the_allowed_table_is_exactly_the_specified_transitions():
    assert {(a, b) for a, targets in ALLOWED.items() for b in targets} == set(VALID)


@pytest.mark.parametrize(("from_status", "to_status"), VALID)
def test_every_valid_transition_is_applied_with_its_time_and_reason(from_status, to_status):
    o = order(from_status)
    transition(o, to_status, T0 + 5, "why")
    assert (o.status, o.updated_ts, o.reason) == (to_status, T0 + 5, "why")


@pytest.mark.parametrize(("from_status", "to_status"), INVALID)
def test_every_invalid_transition_is_refused_naming_id_from_and_to(from_status, to_status):
    o = order(from_status)
    with pytest.raises(InvalidTransition) as exc:
        transition(o, to_status, T0)
    msg = str(exc.value)
    assert "o1" in msg and from_status.value in msg and to_status.value in msg
    assert o.status == from_status  # unchanged


def test_final_states_allow_nothing():
    for st in S:
        assert (not ALLOWED[st]) == st.is_final


def test_apply_fill_tracks_vwap_partial_then_filled():
    o = order(S.ACCEPTED)
    apply_fill(o, 4, 100.0, T0)
    assert o.status == S.PARTIALLY_FILLED and o.filled_qty == 4 and o.avg_fill_price == 100.0
    apply_fill(o, 6, 105.0, T0 + MIN)
    assert o.status == S.FILLED and o.filled_qty == 10
    assert o.avg_fill_price == pytest.approx((4 * 100 + 6 * 105) / 10)
    assert o.remaining == 0


def test_apply_fill_refuses_overfill_and_fills_on_closed_or_new_orders():
    o = order(S.ACCEPTED)
    apply_fill(o, 8, 100.0, T0)
    with pytest.raises(ValueError, match="overfill"):
        apply_fill(o, 3, 100.0, T0)
    assert o.filled_qty == 8 and o.status == S.PARTIALLY_FILLED
    with pytest.raises(ValueError):
        apply_fill(o, 0, 100.0, T0)
    with pytest.raises(InvalidTransition):
        apply_fill(order(S.NEW), 1, 100.0, T0)
    with pytest.raises(InvalidTransition):
        apply_fill(order(S.CANCELED), 1, 100.0, T0)


# ------------------------------------------------------------------ OrderManager


def test_submit_accepts_a_market_entry_and_logs_the_event():
    om = OrderManager(make_cfg())
    o = om.submit(intent(), T0, ref_price=100.0)
    assert o.status == S.ACCEPTED and o.role == OrderRole.ENTRY and o.created_ts == T0
    assert o.client_order_id == "e1" and o.strategy == "momentum"
    assert om.events == [OrderEvent(T0, "e1", S.NEW, S.ACCEPTED, "")]
    assert om.open_orders("X") == [o] and om.get("e1") is o


def test_submit_is_idempotent_for_a_known_client_order_id():
    om = OrderManager(make_cfg())
    first = om.submit(intent(), T0, ref_price=100.0)
    again = om.submit(intent(quantity=99.0), T0 + 5 * MIN, ref_price=100.0)
    assert again is first and again.quantity == 10.0
    assert len(om.orders) == 1 and len(om.events) == 1


def test_submit_of_a_rejected_id_again_returns_the_rejection():
    om = OrderManager(make_cfg())
    bad = om.submit(intent(quantity=0.0), T0)
    assert bad.status == S.REJECTED and bad.reason == "non_positive_quantity"
    assert om.submit(intent(quantity=0.0), T0) is bad and len(om.orders) == 1


@pytest.mark.parametrize(
    ("kw", "ref", "reason"),
    [
        ({"quantity": -1.0}, 100.0, "non_positive_quantity"),
        ({"order_type": OrderType.LIMIT, "limit_price": None}, 100.0, "invalid_limit_price"),
        (
            {"order_type": OrderType.LIMIT, "limit_price": 100.5, "post_only": True},
            100.0,
            "post_only_would_cross",
        ),
        ({"post_only": True}, 100.0, "post_only_not_limit"),
        ({"stop_loss": 120.0, "take_profit": 110.0}, 100.0, "invalid_bracket"),
        ({"stop_loss": 101.0, "take_profit": 110.0}, 100.0, "bracket_not_around_entry"),
        ({"tif": TimeInForce.GTD}, 100.0, "gtd_without_expiry"),
        ({"order_type": OrderType.STOP}, 100.0, "unsupported_order_type"),
    ],
)
def test_submit_rejects_with_a_reason(kw, ref, reason):
    om = OrderManager(make_cfg())
    o = om.submit(intent(**kw), T0, ref_price=ref)
    assert o.status == S.REJECTED and o.reason == reason
    assert om.events[-1] == OrderEvent(T0, "e1", S.NEW, S.REJECTED, reason)
    assert om.open_orders() == []


def test_post_only_limit_below_the_price_is_accepted():
    om = OrderManager(make_cfg())
    o = om.submit(intent(order_type=OrderType.LIMIT, limit_price=99.5, post_only=True), T0, ref_price=100.0)
    assert o.status == S.ACCEPTED and o.post_only and o.limit_price == 99.5


def test_limit_with_expiry_bars_is_gtd_and_expires_that_many_bars_later():
    om = OrderManager(make_cfg())
    o = om.submit(intent(order_type=OrderType.LIMIT, limit_price=99.0, expiry_bars=3), T0, ref_price=100.0)
    assert o.tif == TimeInForce.GTD and o.expire_ts == T0 + 3 * MIN


def test_bracket_is_created_on_entry_fill_and_active_only_from_the_next_bar():
    om = OrderManager(make_cfg())
    e = om.submit(intent(), T0, ref_price=100.0)
    assert om.legs("e1") == []  # no bracket before the entry fills
    changed = om.on_fill(fill_of(e, 10, 100.2, T0))  # filled during bar T0
    sl, tp = om.legs("e1")
    assert changed == [e, sl, tp]
    assert e.status == S.FILLED
    for leg in (sl, tp):
        assert leg.parent_id == "e1" and leg.oco_id == "e1-oco" and leg.side == Side.SELL
        assert leg.quantity == 10 and leg.status == S.ACCEPTED
        assert leg.created_ts == T0 + MIN  # the fill bar's close = the next bar's open
    assert (sl.client_order_id, sl.role, sl.order_type, sl.stop_price) == (
        "e1-sl",
        OrderRole.STOP_LOSS,
        OrderType.STOP,
        95.0,
    )
    assert (tp.client_order_id, tp.role, tp.order_type, tp.limit_price) == (
        "e1-tp",
        OrderRole.TAKE_PROFIT,
        OrderType.LIMIT,
        110.0,
    )


def test_a_short_entry_gets_a_buy_bracket():
    om = OrderManager(make_cfg())
    e = om.submit(intent(side=Side.SELL, stop_loss=105.0, take_profit=90.0), T0, ref_price=100.0)
    om.on_fill(fill_of(e, 10, 100.0, T0))
    sl, tp = om.legs("e1")
    assert sl.side == tp.side == Side.BUY and sl.stop_price == 105.0 and tp.limit_price == 90.0


def test_one_leg_filling_cancels_the_other_with_reason_oco():
    om = OrderManager(make_cfg())
    e = om.submit(intent(), T0, ref_price=100.0)
    om.on_fill(fill_of(e, 10, 100.0, T0))
    sl, tp = om.legs("e1")
    changed = om.on_fill(fill_of(sl, 10, 94.9, T0 + 3 * MIN))
    assert changed == [sl, tp]
    assert sl.status == S.FILLED and tp.status == S.CANCELED and tp.reason == "oco"
    assert om.events[-1] == OrderEvent(T0 + 3 * MIN, "e1-tp", S.ACCEPTED, S.CANCELED, "oco")
    assert om.open_orders() == []


def test_partial_entry_fills_resize_the_legs():
    om = OrderManager(make_cfg())
    e = om.submit(intent(order_type=OrderType.LIMIT, limit_price=99.0), T0, ref_price=100.0)
    om.on_fill(fill_of(e, 3, 99.0, T0))
    sl, tp = om.legs("e1")
    assert sl.quantity == tp.quantity == 3 and e.status == S.PARTIALLY_FILLED
    changed = om.on_fill(fill_of(e, 5, 99.0, T0 + MIN))
    assert changed == [e, sl, tp] and sl.quantity == tp.quantity == 8
    assert sl.created_ts == T0 + MIN  # still the first fill's bar close
    om.on_fill(fill_of(e, 2, 99.0, T0 + 2 * MIN))
    assert e.status == S.FILLED and sl.quantity == tp.quantity == 10


def test_a_leg_fill_cancels_the_rest_of_a_partially_filled_entry():
    om = OrderManager(make_cfg())
    e = om.submit(intent(order_type=OrderType.LIMIT, limit_price=99.0), T0, ref_price=100.0)
    om.on_fill(fill_of(e, 4, 99.0, T0))
    sl, tp = om.legs("e1")
    changed = om.on_fill(fill_of(sl, 4, 95.0, T0 + 2 * MIN))
    assert set(o.client_order_id for o in changed) == {"e1-sl", "e1-tp", "e1"}
    assert e.status == S.CANCELED and e.reason == "bracket_exit" and tp.reason == "oco"


def test_every_change_to_a_symbols_orders_moves_its_version_and_no_other_symbols():
    # the backtest keeps what it derives from a symbol's open orders until this count moves
    doc = msgspec.to_builtins(make_cfg())
    doc["instruments"]["Y"] = doc["instruments"]["X"]
    om = OrderManager(msgspec.convert(doc, Config))
    seen = {"X": 0, "Y": 0}

    def moved(*symbols: str) -> bool:
        now = {s: om.versions.get(s, 0) for s in seen}
        ok = all((now[s] > seen[s]) == (s in symbols) for s in seen)
        seen.update(now)
        return ok

    y = om.submit(
        intent(
            "y1", symbol="Y", order_type=OrderType.LIMIT, limit_price=49.0, stop_loss=45.0, take_profit=60.0
        ),
        T0,
        ref_price=50.0,
    )
    assert moved("Y")  # created and accepted
    e = om.submit(intent(order_type=OrderType.LIMIT, limit_price=99.0), T0, ref_price=100.0)
    assert moved("X")
    om.on_fill(fill_of(e, 3, 99.0, T0))
    assert moved("X")  # partial fill, bracket legs created
    sl, tp = om.legs("e1")
    om.on_fill(fill_of(e, 5, 99.0, T0 + MIN))
    assert moved("X") and sl.quantity == 8  # legs resized
    om.on_fill(fill_of(sl, 8, 95.0, T0 + 2 * MIN))
    assert moved("X") and tp.status == S.CANCELED  # OCO and the entry's rest canceled
    om.cancel(y.client_order_id, T0 + 2 * MIN, "test")
    assert moved("Y")
    om.expire(T0 + 10 * MIN)
    assert moved()  # nothing open: nothing changed


def test_a_duplicate_fill_id_is_ignored_and_an_unknown_order_raises():
    om = OrderManager(make_cfg())
    e = om.submit(intent(), T0, ref_price=100.0)
    f = fill_of(e, 4, 100.0, T0)
    om.on_fill(f)
    assert om.on_fill(f) == [] and e.filled_qty == 4
    with pytest.raises(KeyError):
        om.on_fill(Fill("z", "nope", "X", Side.BUY, 1, 1.0, 0.0, "taker", T0))


def test_expiry_marks_a_limit_entry_expired_at_its_expire_ts():
    om = OrderManager(make_cfg())
    o = om.submit(intent(order_type=OrderType.LIMIT, limit_price=99.0, expiry_bars=2), T0, ref_price=100.0)
    assert om.expire(T0 + MIN) == []  # one bar in: still live
    assert om.expire(T0 + 2 * MIN) == [o]
    assert o.status == S.EXPIRED and o.reason == "expired"
    assert om.events[-1] == OrderEvent(T0 + 2 * MIN, "e1", S.ACCEPTED, S.EXPIRED, "expired")
    assert om.expire(T0 + 10 * MIN) == []


def test_expiry_converts_to_a_market_order_for_the_remaining_quantity():
    om = OrderManager(make_cfg(limit_expiry_action="market"))
    o = om.submit(intent(order_type=OrderType.LIMIT, limit_price=99.0, expiry_bars=2), T0, ref_price=100.0)
    om.on_fill(fill_of(o, 4, 99.0, T0))
    old, new = om.expire(T0 + 2 * MIN)
    assert old is o and o.status == S.EXPIRED and o.reason == "expired_to_market"
    assert new.client_order_id == "e1-mkt" and new.order_type == OrderType.MARKET
    assert new.quantity == 6 and new.side == Side.BUY and new.role == OrderRole.ENTRY
    assert new.status == S.ACCEPTED and new.created_ts == T0 + 2 * MIN and new.parent_id == "e1"
    # its fills grow the same bracket
    om.on_fill(fill_of(new, 6, 100.5, T0 + 2 * MIN))
    sl, tp = om.legs("e1")
    assert sl.quantity == tp.quantity == 10


def test_expiry_to_market_of_an_unfilled_limit_then_creates_the_bracket():
    om = OrderManager(make_cfg(limit_expiry_action="market"))
    om.submit(intent(order_type=OrderType.LIMIT, limit_price=99.0, expiry_bars=1), T0, ref_price=100.0)
    _, new = om.expire(T0 + MIN)
    om.on_fill(fill_of(new, 10, 100.0, T0 + MIN))
    sl, tp = om.legs("e1-mkt")
    assert tp.quantity == 10
    assert sl.client_order_id == "e1-sl" and sl.quantity == 10 and sl.created_ts == T0 + 2 * MIN


def test_cancel_an_open_order_and_cancel_again_is_a_no_op():
    om = OrderManager(make_cfg())
    o = om.submit(intent(order_type=OrderType.LIMIT, limit_price=99.0), T0, ref_price=100.0)
    assert om.cancel("e1", T0 + MIN, "user") == [o]
    assert o.status == S.CANCELED and o.reason == "user"
    assert om.cancel("e1", T0 + 2 * MIN, "user") == []
    with pytest.raises(KeyError):
        om.cancel("nope", T0)


def test_flatten_cancels_the_symbols_open_orders_and_places_a_market_exit():
    om = OrderManager(make_cfg())
    e = om.submit(intent(), T0, ref_price=100.0)
    om.on_fill(fill_of(e, 10, 100.0, T0))
    other = om.submit(intent("e2", symbol="Y"), T0, ref_price=100.0)
    out = om.flatten("X", 10.0, T0 + 5 * MIN, "kill_switch")
    sl, tp = om.legs("e1")
    exit_order = out[-1]
    assert out[:-1] == [sl, tp] and sl.status == tp.status == S.CANCELED and sl.reason == "kill_switch"
    assert exit_order.role == OrderRole.EXIT and exit_order.order_type == OrderType.MARKET
    assert exit_order.side == Side.SELL and exit_order.quantity == 10 and exit_order.status == S.ACCEPTED
    assert exit_order.created_ts == T0 + 5 * MIN
    assert other.status == S.ACCEPTED  # another symbol is untouched
    assert om.flatten("X", 10.0, T0 + 5 * MIN, "kill_switch") == [exit_order]  # idempotent
    assert om.open_orders("X") == [exit_order]


def test_flatten_a_short_buys_and_flat_places_nothing():
    om = OrderManager(make_cfg())
    (exit_order,) = om.flatten("X", -3.0, T0, "halt")
    assert exit_order.side == Side.BUY and exit_order.quantity == 3
    assert om.flatten("Y", 0.0, T0, "halt") == []


def test_every_status_change_is_in_the_event_log():
    om = OrderManager(make_cfg())
    e = om.submit(intent(), T0, ref_price=100.0)
    om.on_fill(fill_of(e, 10, 100.0, T0))
    sl, _tp = om.legs("e1")
    om.on_fill(fill_of(sl, 10, 95.0, T0 + 2 * MIN))
    assert [(ev.client_order_id, ev.from_status, ev.to_status, ev.reason) for ev in om.events] == [
        ("e1", S.NEW, S.ACCEPTED, ""),
        ("e1", S.ACCEPTED, S.FILLED, ""),
        ("e1-sl", S.NEW, S.ACCEPTED, ""),
        ("e1-tp", S.NEW, S.ACCEPTED, ""),
        ("e1-sl", S.ACCEPTED, S.FILLED, ""),
        ("e1-tp", S.ACCEPTED, S.CANCELED, "oco"),
    ]
    assert [o.client_order_id for o in om.orders] == ["e1", "e1-sl", "e1-tp"]


# ------------------------------------------------------------------ Portfolio


_fill_no = itertools.count(1)


def pf(side: Side, qty: float, price: float, fee: float = 0.0, sym: str = "ES") -> Fill:
    n = next(_fill_no)
    return Fill(f"f{n}", "o", sym, side, qty, price, fee, "taker", T0 + n)


def test_portfolio_long_round_trip_with_multiplier_and_fees():
    p = Portfolio(100_000.0)
    assert p.apply_fill(pf(Side.BUY, 2, 4000.0, fee=5.0), 50.0) == 0.0
    assert p.cash == 100_000.0 - 5.0
    assert p.equity({"ES": 4010.0}) == pytest.approx(100_000 - 5 + 2 * 10 * 50)
    realized = p.apply_fill(pf(Side.SELL, 2, 4010.0, fee=5.0), 50.0)
    assert realized == pytest.approx(2 * 10 * 50)
    assert p.cash == pytest.approx(100_000 + 1000 - 10)
    assert p.positions["ES"].quantity == 0 and p.positions["ES"].opened_ts is None
    assert p.equity({}) == pytest.approx(p.cash)
    assert p.fees_paid == 10.0 and p.realized_pnl == pytest.approx(1000.0)


def test_portfolio_short_profit_when_price_falls():
    p = Portfolio(0.0)
    p.apply_fill(pf(Side.SELL, 3, 100.0), 1.0)
    assert p.positions["ES"].quantity == -3 and p.positions["ES"].avg_price == 100.0
    assert p.equity({"ES": 90.0}) == pytest.approx(30.0)
    assert p.apply_fill(pf(Side.BUY, 3, 90.0), 1.0) == pytest.approx(30.0)


def test_portfolio_add_averages_and_reduce_keeps_the_average():
    p = Portfolio(0.0)
    p.apply_fill(pf(Side.BUY, 1, 100.0), 10.0)
    p.apply_fill(pf(Side.BUY, 3, 104.0), 10.0)
    pos = p.positions["ES"]
    assert pos.quantity == 4 and pos.avg_price == pytest.approx(103.0)
    assert p.apply_fill(pf(Side.SELL, 1, 105.0), 10.0) == pytest.approx(20.0)
    assert pos.quantity == 3 and pos.avg_price == pytest.approx(103.0)
    assert p.equity({"ES": 103.0}) == pytest.approx(20.0)


def test_portfolio_flip_realizes_the_closed_part_and_opens_the_rest_at_the_fill_price():
    p = Portfolio(0.0)
    p.apply_fill(pf(Side.BUY, 2, 100.0), 50.0)
    f = pf(Side.SELL, 5, 98.0, fee=1.5)
    realized = p.apply_fill(f, 50.0)
    assert realized == pytest.approx(2 * -2 * 50)
    pos = p.positions["ES"]
    assert pos.quantity == -3 and pos.avg_price == 98.0 and pos.opened_ts == f.ts
    assert p.cash == pytest.approx(-200 - 1.5)
    assert p.equity({"ES": 97.0}) == pytest.approx(-201.5 + 3 * 1 * 50)


def test_portfolio_negative_fee_is_a_rebate_and_a_missing_mark_is_an_error():
    p = Portfolio(1000.0)
    p.apply_fill(pf(Side.BUY, 1, 100.0, fee=-0.5), 1.0)
    assert p.cash == 1000.5
    with pytest.raises(KeyError, match="ES"):
        p.equity({})
    assert p.equity({"ES": 100.0}, {"ES": 2.0}) == 1000.5
