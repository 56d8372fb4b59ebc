"""Brackets and exits of LiveExecutionService against the local Binance exchange (127.0.0.1).

Exchange-side brackets (one OCO order list resting on the exchange once the entry is done)
and service-managed ones; exits the exchange fills only in part (thin liquidity), whose rest
is sent again under a new client id; the end of a run, which keeps a position's exits. The
exchange's clock is moved by the test (`Clock`), so minutes pass without waiting.
"""

from __future__ import annotations

import msgspec
import pytest
from exchange.live import MIN, T0, bar, decision, live_cfg, posted

from scalper.execution.live import LiveExecutionService
from scalper.types import OrderStatus, OrderType

T = T0 * 10**9  # the first minute (ns)


def entered(market, clock, tmp_path, brackets: str) -> LiveExecutionService:
    """A market buy of 0.5 at 100 (stop 95, target 110) decided at the close of minute T."""
    svc = LiveExecutionService(live_cfg(market, tmp_path, brackets))
    svc.on_minute([bar(clock.after(T))])
    assert svc.submit([decision("sc-x1", T)])[0].approved
    assert svc.orders.get("sc-x1").status == OrderStatus.FILLED
    return svc


def test_exchange_brackets_rest_as_one_oco_once_the_entry_fills_and_the_target_closes_the_trade(
    market, clock, tmp_path, keys
):
    svc = entered(market, clock, tmp_path, "exchange")
    [oco] = market.order_lists.values()  # placed at once, not a minute later
    assert [market.orders[i].client_order_id for i in oco.legs] == ["sc-x1-sl", "sc-x1-tp"]
    assert float(oco.quantity) == pytest.approx(0.4995)  # the BTC held: the entry's fee was paid in it
    assert set(svc.working) == {"sc-x1-sl", "sc-x1-tp"}

    svc.on_minute([bar(clock.after(T + MIN))])  # nothing reached: the legs rest
    market.add_trade("BTCUSDT", 111.0, 1.0)  # the exchange fills the target between two bars
    svc.on_minute([bar(clock.after(T + 2 * MIN), high=111.0)])
    legs = {o.client_order_id: o for o in svc.orders.legs("sc-x1")}
    assert legs["sc-x1-tp"].status == OrderStatus.FILLED and legs["sc-x1-tp"].avg_fill_price == 110.0
    assert legs["sc-x1-sl"].status == OrderStatus.CANCELED and legs["sc-x1-sl"].reason == "oco"
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.0)
    assert [t.exit_reason for t in svc.trades] == ["take_profit"]
    assert svc.working == {}
    assert posted(market) == {"sc-x1": 1, "sc-x1-sl": 1, "sc-x1-tp": 1}  # no market exit was sent


def test_service_brackets_stay_off_the_exchange_until_a_bar_reaches_a_leg(market, clock, tmp_path, keys):
    svc = entered(market, clock, tmp_path, "service")
    assert market.order_lists == {} and svc.working == {}
    svc.on_minute([bar(clock.after(T + MIN))])
    svc.on_minute([bar(clock.after(T + 2 * MIN), high=111.0)])  # the target reached: a market sell
    assert market.order_by_client_id("sc-x1-tp").type == "MARKET"
    assert [t.exit_reason for t in svc.trades] == ["take_profit"]
    assert posted(market) == {"sc-x1": 1, "sc-x1-tp": 1}


@pytest.mark.parametrize("brackets", ["service", "exchange"])
def test_a_partly_filled_market_exit_sends_its_rest_under_a_new_id_once_per_minute_until_flat(
    market, clock, tmp_path, keys, brackets
):
    svc = entered(market, clock, tmp_path, brackets)
    svc.on_minute([bar(clock.after(T + MIN))])
    market.market_liquidity = 0.2  # a thin book: each market order fills 0.2 at most, the rest EXPIRES
    if brackets == "exchange":
        market.add_trade("BTCUSDT", 94.0, 1.0)  # triggers the resting stop
    svc.on_minute([bar(clock.after(T + 2 * MIN), low=94.0)])
    # the stop's 0.2 and its first rest's 0.2 this minute; the next rest waits for the next minute
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.1)
    stop, rest1, rest2 = (svc.orders.get(c) for c in ("sc-x1-sl", "sc-x1-sl-r1", "sc-x1-sl-r2"))
    assert stop.status == OrderStatus.EXPIRED and stop.filled_qty == pytest.approx(0.2)
    # the first exit: the resting OCO's triggered stop, or the service's market sell
    assert market.order_by_client_id("sc-x1-sl").type == ("STOP_LOSS" if brackets == "exchange" else "MARKET")
    assert rest1.status == OrderStatus.EXPIRED and rest1.filled_qty == pytest.approx(0.2)
    assert rest2.status == OrderStatus.ACCEPTED and rest2.quantity == pytest.approx(0.1)
    assert svc.orders.get("sc-x1-tp").status == OrderStatus.CANCELED  # one exit per position
    assert market.order_by_client_id("sc-x1-sl-r2") is None

    market.market_liquidity = None
    svc.on_minute([bar(clock.after(T + 3 * MIN), low=94.0)])
    assert svc.orders.get("sc-x1-sl-r2").status == OrderStatus.FILLED
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.0)
    assert [t.exit_reason for t in svc.trades] == ["stop_loss"]
    assert market.balance("BTC") == (0, 0)  # every coin sold, the fee's dust included
    svc.on_minute([bar(clock.after(T + 4 * MIN), low=90.0)])  # flat: nothing more goes out
    sent = posted(market)
    assert max(sent.values()) == 1 and {"sc-x1-sl-r1", "sc-x1-sl-r2"} <= set(sent)
    assert not any(c.endswith("-r3") for c in sent)


def test_an_oco_the_exchange_refuses_leaves_the_legs_to_the_service(market, clock, tmp_path, keys):
    market.fault(
        "POST",
        "/api/v3/orderList/oco",
        status=400,
        body={"code": -2010, "msg": "The relationship of the prices for the orders is not correct."},
    )
    svc = entered(market, clock, tmp_path, "exchange")
    assert market.order_lists == {} and svc.working == {}
    svc.on_minute([bar(clock.after(T + MIN))])  # not retried every minute
    assert len(market.requests_to("POST", "/api/v3/orderList/oco")) == 1
    svc.on_minute([bar(clock.after(T + 2 * MIN), low=94.0)])  # the service's stop: a market sell
    assert market.order_by_client_id("sc-x1-sl").type == "MARKET"
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.0)


def test_an_oco_canceled_on_the_exchange_by_hand_is_watched_by_the_service(market, clock, tmp_path, keys):
    svc = entered(market, clock, tmp_path, "exchange")
    svc.exchange.cancel("sc-x1-tp", "BTCUSDT")  # someone cancels the list on the web site
    svc.on_minute([bar(clock.after(T + MIN))])
    legs = svc.orders.legs("sc-x1")
    assert [o.status for o in legs] == [OrderStatus.ACCEPTED, OrderStatus.ACCEPTED]  # still protected here
    assert svc.working == {} and len(market.order_lists) == 1  # and not placed again
    svc.on_minute([bar(clock.after(T + 2 * MIN), low=94.0)])
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.0)
    assert [t.exit_reason for t in svc.trades] == ["stop_loss"]
    assert max(posted(market).values()) == 1  # the exit went out under a new id


def test_a_replayed_journal_re_attaches_to_the_oco_and_sends_nothing_again(market, clock, tmp_path, keys):
    cfg = live_cfg(market, tmp_path, "exchange")
    calls = [
        ("minute", [bar(T)]),
        ("submit", [decision("sc-r1", T)]),
        ("minute", [bar(T + MIN)]),
    ]
    first = LiveExecutionService(cfg)
    clock.after(T)
    for kind, payload in calls:
        first.on_minute(payload) if kind == "minute" else first.submit(payload)
    before = posted(market)
    assert before == {"sc-r1": 1, "sc-r1-sl": 1, "sc-r1-tp": 1}

    replayed = LiveExecutionService(cfg)  # the TradingService after a crash
    for kind, payload in calls:
        replayed.on_minute(payload) if kind == "minute" else replayed.submit(payload)
    assert posted(market) == before and len(market.order_lists) == 1
    assert set(replayed.working) == {"sc-r1-sl", "sc-r1-tp"}
    assert replayed.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.5)


@pytest.mark.parametrize("brackets", ["service", "exchange"])
def test_the_end_of_a_run_cancels_entries_but_keeps_the_exits_of_open_positions(
    market, clock, tmp_path, keys, brackets
):
    svc = entered(market, clock, tmp_path, brackets)
    svc.submit([decision("sc-l1", T, qty=1.0, otype=OrderType.LIMIT, limit_price=97.0)])  # resting entry
    canceled = svc.orders.cancel_all(T + 2 * MIN, "shutdown")
    assert [o.client_order_id for o in canceled] == ["sc-l1"]
    assert market.order_by_client_id("sc-l1").status == "CANCELED"
    assert [o.status for o in svc.orders.legs("sc-x1")] == [OrderStatus.ACCEPTED] * 2
    on_exchange = {o.client_order_id: o.status for o in market.orders.values()}
    if brackets == "exchange":  # still protecting the position while nobody runs
        assert on_exchange["sc-x1-sl"] == on_exchange["sc-x1-tp"] == "NEW"
    else:
        assert "sc-x1-sl" not in on_exchange


def test_a_take_profit_filled_in_part_on_the_exchange_closes_the_stop_and_sends_no_rest_while_it_rests(
    market, clock, tmp_path, keys
):
    """The exchange EXPIRES the stop at the target's first (partial) fill: the stop is closed
    here too ("oco"), not re-sized and then read as a list canceled by hand, whose rest would
    go out at market (`-r1`) while the target's rest still holds the coins."""
    svc = entered(market, clock, tmp_path, "exchange")
    svc.on_minute([bar(clock.after(T + MIN))])
    market.fill("sc-x1-tp", 0.2, 110.0)  # a counterparty takes part of the target
    assert market.order_by_client_id("sc-x1-sl").status == "EXPIRED"
    svc.on_minute([bar(clock.after(T + 2 * MIN), high=110.0)])
    stop, target = svc.orders.get("sc-x1-sl"), svc.orders.get("sc-x1-tp")
    assert stop.status == OrderStatus.CANCELED and stop.reason == "oco"
    assert target.status == OrderStatus.PARTIALLY_FILLED and target.filled_qty == pytest.approx(0.2)
    assert set(svc.working) == {"sc-x1-tp"}
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.3)

    svc.on_minute([bar(clock.after(T + 3 * MIN), low=94.0)])  # a bar through the (ended) stop
    assert market.order_by_client_id("sc-x1-tp").status == "PARTIALLY_FILLED"  # still resting
    assert not any(c.startswith("sc-x1-sl") for c in posted(market) if c != "sc-x1-sl")
    assert svc.orders.get("sc-x1-sl-r1") is None

    market.add_trade("BTCUSDT", 111.0, 1.0)  # the target's rest fills
    svc.on_minute([bar(clock.after(T + 4 * MIN), high=111.0)])
    assert target.status == OrderStatus.FILLED
    assert svc.portfolio.positions["BTCUSDT"].quantity == pytest.approx(0.0)
    assert [t.exit_reason for t in svc.trades] == ["take_profit"]
    assert svc.working == {} and posted(market) == {"sc-x1": 1, "sc-x1-sl": 1, "sc-x1-tp": 1}


def test_a_service_leg_left_open_part_filled_keeps_the_other_leg_of_its_bracket_unsent(
    market, clock, tmp_path, keys, monkeypatch
):
    """A venue that leaves a market order open part-filled (the local one EXPIRES its rest: its
    reports are read as still PARTIALLY_FILLED here): the stop working on the exchange is the
    bracket's exit, so the target, re-sized to the rest, is not sent too when a bar reaches it."""
    svc = entered(market, clock, tmp_path, "service")
    broker = svc.exchange

    def still_open(report):
        if (
            report is not None
            and report.status == OrderStatus.EXPIRED
            and report.order_type == OrderType.MARKET
        ):
            return msgspec.structs.replace(report, status=OrderStatus.PARTIALLY_FILLED)
        return report

    submit, order_status = broker.submit, broker.order_status
    monkeypatch.setattr(broker, "submit", lambda *a, **k: still_open(submit(*a, **k)))
    monkeypatch.setattr(broker, "order_status", lambda *a, **k: still_open(order_status(*a, **k)))
    svc.on_minute([bar(clock.after(T + MIN))])
    market.market_liquidity = 0.2
    svc.on_minute([bar(clock.after(T + 2 * MIN), low=94.0)])  # the stop: a market sell, 0.2 filled
    stop, target = svc.orders.get("sc-x1-sl"), svc.orders.get("sc-x1-tp")
    assert stop.status == OrderStatus.PARTIALLY_FILLED and "sc-x1-sl" in svc.working
    assert target.status == OrderStatus.ACCEPTED and target.quantity == pytest.approx(0.3)

    svc.on_minute([bar(clock.after(T + 3 * MIN), high=111.0)])  # the target reached: not sent
    assert market.order_by_client_id("sc-x1-tp") is None
    assert posted(market) == {"sc-x1": 1, "sc-x1-sl": 1}
