"""A trade's R-multiple is its P&L over the risk PLANNED at sizing (quantity filled x |planned
entry - stop| x multiplier), not over the distance between the actual fill and the stop."""

from __future__ import annotations

import msgspec
import pytest

from scalper.config import Config
from scalper.trading import Decision, ExecutionService
from scalper.types import NS_PER_MINUTE as MIN
from scalper.types import Bar, OrderIntent, OrderType, Side, Signal

T0 = 1_700_000_000 * 1_000_000_000 // MIN * MIN


def make_cfg(**execution) -> Config:
    doc = msgspec.to_builtins(Config())
    doc["symbols"] = ["X"]
    doc["execution"].update(
        {"slippage_bps": 0.0, "slippage_ticks": 0, "maker_fee_bps": 0.0, "taker_fee_bps": 0.0, **execution}
    )
    doc["instruments"]["X"] = {"tick_size": 0.01, "lot_size": 1.0, "multiplier": 2.0}
    return msgspec.convert(doc, Config)


def bar(i: int, o: float, h: float, low: float, c: float, v: float = 1000.0) -> Bar:
    return Bar("X", T0 + i * MIN, o, h, low, c, v, 10, (o + c) / 2)


def place(svc: ExecutionService, order_type: OrderType, close: float, limit: float | None = None) -> None:
    """A long decided at bar 0's close: stop 98, target 104, 10 units."""
    sig = Signal("X", T0, "mean_reversion", Side.BUY, order_type, 98.0, 104.0, limit_price=limit)
    intent = OrderIntent(
        "sc-r1", "X", Side.BUY, 10.0, order_type, 98.0, 104.0, limit_price=limit, strategy=sig.strategy
    )
    svc.on_minute([bar(0, close, close, close, close)])
    svc.submit([Decision(sig, close, True, "approved", "", intent)])


def test_a_limit_filled_at_a_gap_open_next_to_its_stop_has_an_r_of_about_minus_one_when_stopped():
    svc = ExecutionService(make_cfg())
    place(svc, OrderType.LIMIT, close=100.5, limit=100.0)
    svc.on_minute([bar(1, 98.01, 98.2, 98.005, 98.1)])  # gaps through the limit: filled at 98.01
    svc.on_minute([bar(2, 96.0, 96.5, 95.5, 96.0)])  # gaps through the stop: out at 96
    (trade,) = svc.trades
    assert (trade.entry_price, trade.exit_price, trade.exit_reason) == (98.01, 96.0, "stop_loss")
    # planned risk: 10 x |100 - 98| x 2 = 40; P&L (96 - 98.01) x 10 x 2 = -40.2
    assert trade.r_multiple == pytest.approx(-40.2 / 40.0)  # not -40.2 / (0.01 x 10 x 2) = -201


def test_a_limit_filled_at_a_gap_open_next_to_its_stop_that_wins_is_not_a_hundred_r_trade():
    svc = ExecutionService(make_cfg())
    place(svc, OrderType.LIMIT, close=100.5, limit=100.0)
    svc.on_minute([bar(1, 98.01, 98.2, 98.005, 98.1)])
    svc.on_minute([bar(2, 104.5, 105.0, 104.0, 104.5)])  # opens through the target: maker at 104.5
    (trade,) = svc.trades
    assert trade.exit_reason == "take_profit"
    assert trade.r_multiple == pytest.approx((104.5 - 98.01) * 10 * 2 / 40.0)  # ~3.2, not ~649


def test_a_market_entry_is_measured_against_the_decision_close_it_was_sized_at():
    svc = ExecutionService(make_cfg())
    place(svc, OrderType.MARKET, close=100.0)
    svc.on_minute([bar(1, 98.5, 98.6, 98.2, 98.3)])  # opened 1.5 below the close: filled at 98.5
    svc.on_minute([bar(2, 97.5, 97.8, 97.0, 97.2)])  # stopped at the open, 97.5
    (trade,) = svc.trades
    assert trade.r_multiple == pytest.approx((97.5 - 98.5) * 10 * 2 / (10 * 2.0 * 2))


def test_a_partly_filled_entry_is_measured_on_the_quantity_filled():
    # a participation cap of 2% of 250 units fills 5 of the 10 in the entry bar
    svc = ExecutionService(make_cfg(max_volume_participation=0.02))
    place(svc, OrderType.LIMIT, close=100.5, limit=100.0)
    svc.on_minute([bar(1, 99.5, 99.8, 99.4, 99.6, v=250.0)])
    svc.orders.cancel("sc-r1", T0 + 2 * MIN)  # the rest is given up
    svc.on_minute([bar(2, 97.0, 97.2, 96.8, 97.0, v=1e6)])
    (trade,) = svc.trades
    assert trade.quantity == 5.0
    assert trade.r_multiple == pytest.approx((97.0 - 99.5) * 5 * 2 / (5 * 2.0 * 2))
