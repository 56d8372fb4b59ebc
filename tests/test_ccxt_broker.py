"""CcxtBroker against the local Binance-protocol exchange: real ccxt, real HTTP, injected faults."""

from __future__ import annotations

import logging

import pytest
from exchange import API_KEY, SECRET, LocalExchange

from scalper.config import Config, with_overrides
from scalper.execution.ccxt import (
    LIVE_CONFIRMATION,
    BrokerError,
    BrokerUnavailable,
    CcxtBroker,
    LiveTradingRefused,
    credentials,
    make_exchange,
    require_live_confirmation,
)
from scalper.execution.orders import OrderManager
from scalper.types import Order, OrderIntent, OrderRole, OrderStatus, OrderType, Side

ENV = {"SCALPER_BINANCE_API_KEY": API_KEY, "SCALPER_BINANCE_SECRET": SECRET}


def live_config(ex: LocalExchange, **extra) -> Config:
    overrides = {
        "symbols": ["BTCUSDT"],
        "feed.kind": "ccxt",
        "feed.ccxt.urls": ex.ccxt_urls(),
        "feed.ccxt.backoff_initial_s": 0.01,
        "feed.ccxt.backoff_max_s": 0.05,
        "feed.ccxt.timeout_ms": 2000,
        **extra,
    }
    return with_overrides(Config(), overrides)


@pytest.fixture
def broker(ex):
    b = CcxtBroker(live_config(ex), env=ENV)
    b.connect()
    yield b
    b.close()


def order(
    cid: str, side: Side, qty: float, otype: OrderType = OrderType.MARKET, limit: float | None = None
) -> Order:
    return Order(
        client_order_id=cid,
        symbol="BTCUSDT",
        side=side,
        order_type=otype,
        quantity=qty,
        limit_price=limit,
        status=OrderStatus.ACCEPTED,
    )


def test_market_order_fills_and_moves_balances_and_position(ex, broker):
    report = broker.submit(order("sc-m1", Side.BUY, 0.5), ref_price=100.0)
    assert report.status == OrderStatus.FILLED
    assert report.filled_qty == pytest.approx(0.5)
    assert report.avg_price == pytest.approx(100.0)
    assert report.fee == pytest.approx(0.0005 * 100.0)  # 0.1% taker fee in BTC, valued in USDT
    assert ex.order_by_client_id("sc-m1").executed == pytest.approx(0.5)
    assert ex.requests_to("POST", "/api/v3/order")[0]["newClientOrderId"] == "sc-m1"
    assert broker.positions()["BTCUSDT"] == pytest.approx(0.4995)
    assert broker.balances()["USDT"].total == pytest.approx(9_950.0)


def test_quantity_and_price_are_rounded_to_the_market_precision_before_sending(ex, broker):
    broker.submit(order("sc-p1", Side.BUY, 0.123456789, OrderType.LIMIT, 90.12345), ref_price=100.0)
    sent = ex.requests_to("POST", "/api/v3/order")[0]
    assert sent["quantity"] == "0.12345"  # step 0.00001, truncated
    assert sent["price"] == "90.12"  # tick 0.01


def test_order_below_min_notional_is_refused_without_reaching_the_exchange(ex, broker):
    report = broker.submit(order("sc-small", Side.BUY, 0.01), ref_price=100.0)  # 1 USDT < 5
    assert report.status == OrderStatus.REJECTED
    assert report.reason.startswith("below_min_notional")
    assert ex.requests_to("POST", "/api/v3/order") == []


def test_insufficient_balance_is_a_rejection_with_the_exchange_reason(ex, broker):
    report = broker.submit(order("sc-big", Side.BUY, 500.0), ref_price=100.0)  # 50,000 USDT > 10,000
    assert report.status == OrderStatus.REJECTED
    assert "insufficient balance" in report.reason
    assert ex.order_by_client_id("sc-big") is None


def test_429_then_success_backs_off_and_sends_exactly_one_order(ex, broker):
    ex.fault("POST", "/api/v3/order", status=429, times=2)
    sleeps: list[float] = []
    broker._sleep = sleeps.append
    report = broker.submit(order("sc-429", Side.BUY, 0.1), ref_price=100.0)
    assert report.status == OrderStatus.FILLED
    assert len(ex.requests_to("POST", "/api/v3/order")) == 3  # two refused, one accepted
    assert sum(1 for o in ex.orders.values() if o.client_order_id == "sc-429") == 1
    assert sleeps == [0.01, 0.02]  # exponential backoff between attempts


def test_418_on_reads_is_retried_with_backoff(ex, broker):
    ex.fault("GET", "/api/v3/account", status=418, times=1)
    assert broker.balances()["USDT"].total == pytest.approx(10_000.0)
    assert len(ex.requests_to("GET", "/api/v3/account")) == 2


def test_timeout_while_the_order_is_created_is_looked_up_not_resent(ex):
    cfg = live_config(ex, **{"feed.ccxt.timeout_ms": 300})
    b = CcxtBroker(cfg, env=ENV)
    b.connect()
    ex.fault("POST", "/api/v3/order", delay_s=1.0)  # processed, answered after the client gave up
    report = b.submit(order("sc-slow", Side.BUY, 0.2), ref_price=100.0)
    assert report.status == OrderStatus.FILLED
    assert report.client_order_id == "sc-slow"
    assert len(ex.requests_to("POST", "/api/v3/order")) == 1  # never sent twice
    assert [o.client_order_id for o in ex.orders.values()] == ["sc-slow"]
    assert ex.requests_to("GET", "/api/v3/order")[0]["origClientOrderId"] == "sc-slow"
    b.close()


def test_timeout_before_the_order_exists_resends_it_once(ex, broker):
    ex.fault("POST", "/api/v3/order", status=504, body={"code": -1007, "msg": "Timeout waiting for response"})
    report = broker.submit(order("sc-504", Side.BUY, 0.1), ref_price=100.0)
    assert report.status == OrderStatus.FILLED
    assert len(ex.requests_to("POST", "/api/v3/order")) == 2
    assert sum(1 for o in ex.orders.values() if o.client_order_id == "sc-504") == 1


def test_no_answer_at_all_raises_unavailable_so_the_service_reconciles(ex):
    cfg = live_config(ex, **{"feed.ccxt.order_retries": 1})
    b = CcxtBroker(cfg, env=ENV, sleep=lambda s: None)
    b.connect()
    ex.fault("POST", "/api/v3/order", status=503, times=10)
    ex.fault("GET", "/api/v3/order", status=503, times=10)
    with pytest.raises(BrokerUnavailable, match="reconcile"):
        b.submit(order("sc-down", Side.BUY, 0.1), ref_price=100.0)
    b.close()


def test_partial_fills_become_order_manager_fills_exactly_once(ex, broker):
    cfg = broker.cfg
    manager = OrderManager(cfg)
    intent = OrderIntent(
        client_order_id="sc-part",
        symbol="BTCUSDT",
        side=Side.BUY,
        quantity=0.4,
        order_type=OrderType.LIMIT,
        limit_price=95.0,
        stop_loss=90.0,
        take_profit=110.0,
    )
    entry = manager.submit(intent, now_ts=0)
    report = broker.submit(entry)
    assert report.status == OrderStatus.ACCEPTED and report.filled_qty == 0

    ex.fill("sc-part", 0.1, 95.0)
    report = broker.order_status("sc-part", "BTCUSDT")
    assert report.status == OrderStatus.PARTIALLY_FILLED
    fills = broker.new_fills(entry, report)
    assert [(f.quantity, f.price) for f in fills] == [(pytest.approx(0.1), pytest.approx(95.0))]
    for f in fills:
        manager.on_fill(f)
    assert broker.new_fills(entry, broker.order_status("sc-part", "BTCUSDT")) == []  # nothing new

    ex.fill("sc-part", 0.3, 94.0)
    report = broker.order_status("sc-part", "BTCUSDT")
    fills = broker.new_fills(entry, report)
    for f in fills:
        manager.on_fill(f)
    assert entry.status == OrderStatus.FILLED
    assert entry.filled_qty == pytest.approx(0.4)
    assert entry.avg_fill_price == pytest.approx((0.1 * 95 + 0.3 * 94) / 0.4)
    assert [leg.quantity for leg in manager.legs("sc-part")] == [pytest.approx(0.4)] * 2


def test_market_order_beyond_the_liquidity_expires_partly_filled(ex, broker):
    ex.market_liquidity = 0.15
    report = broker.submit(order("sc-thin", Side.BUY, 0.5), ref_price=100.0)
    assert report.status == OrderStatus.EXPIRED
    assert report.filled_qty == pytest.approx(0.15)


def test_cancel_and_open_orders(ex, broker):
    broker.submit(order("sc-rest", Side.BUY, 0.1, OrderType.LIMIT, 90.0))
    assert [o.client_order_id for o in broker.open_orders()] == ["sc-rest"]
    report = broker.cancel("sc-rest", "BTCUSDT")
    assert report.status == OrderStatus.CANCELED
    assert broker.open_orders() == []
    assert ex.balance("USDT") == (pytest.approx(10_000.0), 0)  # the locked quote came back
    assert broker.cancel("sc-never", "BTCUSDT") is None


def test_unknown_order_status_is_none(broker):
    assert broker.order_status("sc-nobody", "BTCUSDT") is None


def test_bracket_owner_follows_the_config_and_the_venue(ex):
    def owner(exchange: str, brackets: str) -> str:
        cfg = live_config(ex, **{"feed.ccxt.exchange": exchange, "feed.ccxt.brackets": brackets})
        return CcxtBroker(cfg, make_exchange(cfg.feed.ccxt)).bracket_owner  # no network: construction only

    assert owner("binance", "auto") == "exchange"  # Binance spot: OCO order lists
    assert owner("binance", "service") == "service"
    assert owner("bybit", "auto") == "service"  # no OCO this broker speaks: the service's
    with pytest.raises(BrokerError, match='brackets = "exchange": bybit'):
        owner("bybit", "exchange")


def leg(
    cid: str, role: OrderRole, qty: float, stop: float | None = None, limit: float | None = None
) -> Order:
    return Order(
        client_order_id=cid,
        symbol="BTCUSDT",
        side=Side.SELL,
        order_type=OrderType.STOP if stop else OrderType.LIMIT,
        quantity=qty,
        role=role,
        stop_price=stop,
        limit_price=limit,
        status=OrderStatus.ACCEPTED,
        parent_id="sc-b",
        oco_id="sc-b-oco",
    )


def test_a_bracket_rests_as_one_oco_list_locking_the_coins_once_and_the_stop_fills_at_market(ex, broker):
    broker.submit(order("sc-b", Side.BUY, 0.5), ref_price=100.0)
    stop, target = (
        leg("sc-b-sl", OrderRole.STOP_LOSS, 0.5, stop=95.0),
        leg("sc-b-tp", OrderRole.TAKE_PROFIT, 0.5, limit=110.0),
    )
    reports = broker.submit_oco(stop, target, 0.4995)  # the BTC held after the 0.1% fee
    assert {c: r.status for c, r in reports.items()} == {
        "sc-b-sl": OrderStatus.ACCEPTED,
        "sc-b-tp": OrderStatus.ACCEPTED,
    }
    sent = ex.requests_to("POST", "/api/v3/orderList/oco")[0]
    assert (sent["aboveType"], sent["aboveClientOrderId"], sent["abovePrice"]) == (
        "LIMIT_MAKER",
        "sc-b-tp",
        "110",
    )
    assert (sent["belowType"], sent["belowClientOrderId"], sent["belowStopPrice"]) == (
        "STOP_LOSS",
        "sc-b-sl",
        "95",
    )
    assert sent["listClientOrderId"] == "sc-b-oco" and sent["quantity"] == "0.4995"
    assert [float(x) for x in ex.balance("BTC")] == [0.0, pytest.approx(0.4995)]  # locked once for both legs
    assert sorted(o.client_order_id for o in broker.open_orders()) == ["sc-b-sl", "sc-b-tp"]

    ex.add_trade("BTCUSDT", 94.5, 1.0)  # through the stop
    sl, tp = broker.order_status("sc-b-sl", "BTCUSDT"), broker.order_status("sc-b-tp", "BTCUSDT")
    assert (sl.status, sl.filled_qty, sl.avg_price) == (
        OrderStatus.FILLED,
        pytest.approx(0.4995),
        pytest.approx(94.5),
    )
    assert (tp.status, tp.filled_qty) == (OrderStatus.EXPIRED, 0.0)
    assert [float(x) for x in ex.balance("BTC")] == [0.0, 0.0]


def test_an_oco_on_the_wrong_side_of_the_market_is_refused_with_the_exchange_reason(ex, broker):
    broker.submit(order("sc-b", Side.BUY, 0.5), ref_price=100.0)
    stop, target = (
        leg("sc-b-sl", OrderRole.STOP_LOSS, 0.4, stop=101.0),
        leg("sc-b-tp", OrderRole.TAKE_PROFIT, 0.4, limit=110.0),
    )
    reports = broker.submit_oco(stop, target, 0.4)  # the stop is above the last price (100)
    assert {r.status for r in reports.values()} == {OrderStatus.REJECTED}
    assert "relationship of the prices" in reports["sc-b-sl"].reason
    assert broker.open_orders() == []


def test_an_oco_whose_answer_is_lost_is_looked_up_by_the_stop_id_not_sent_again(ex):
    b = CcxtBroker(live_config(ex, **{"feed.ccxt.timeout_ms": 300}), env=ENV)
    b.connect()
    b.submit(order("sc-b", Side.BUY, 0.5), ref_price=100.0)
    ex.fault("POST", "/api/v3/orderList/oco", delay_s=1.0)  # created; the answer comes too late
    stop, target = (
        leg("sc-b-sl", OrderRole.STOP_LOSS, 0.4, stop=95.0),
        leg("sc-b-tp", OrderRole.TAKE_PROFIT, 0.4, limit=110.0),
    )
    reports = b.submit_oco(stop, target, 0.4)
    assert {r.status for r in reports.values()} == {OrderStatus.ACCEPTED}
    assert len(ex.requests_to("POST", "/api/v3/orderList/oco")) == 1
    assert len(ex.order_lists) == 1
    b.close()


def test_keys_only_from_the_environment_with_a_clear_error():
    with pytest.raises(BrokerError, match="SCALPER_BINANCE_API_KEY, SCALPER_BINANCE_SECRET"):
        credentials("binance", env={})
    assert credentials("binance", env=ENV) == {"apiKey": API_KEY, "secret": SECRET}


def test_keys_never_appear_in_logs_or_repr(ex, caplog):
    caplog.set_level(logging.DEBUG)
    b = CcxtBroker(live_config(ex), env=ENV)
    b.connect()
    b.submit(order("sc-log", Side.BUY, 0.1), ref_price=100.0)
    b.submit(order("sc-log2", Side.BUY, 500.0), ref_price=100.0)  # a rejection is logged too
    b.balances()
    text = caplog.text + repr(b) + str(b)
    assert "sc-log" in caplog.text  # the log did record the session
    assert API_KEY not in text and SECRET not in text
    b.close()


def test_live_money_needs_the_exact_confirmation():
    cfg = Config().feed.ccxt
    with pytest.raises(LiveTradingRefused, match="REAL MONEY"):
        require_live_confirmation(cfg, "yes")
    require_live_confirmation(cfg, LIVE_CONFIRMATION)
    sandbox = with_overrides(Config(), {"feed.ccxt.sandbox": True}).feed.ccxt
    require_live_confirmation(sandbox, None)  # fake money: no prompt


def test_a_symbol_the_exchange_does_not_list_is_a_clear_error(ex):
    cfg = with_overrides(live_config(ex), {"symbols": ["NOPEUSDT"]})
    b = CcxtBroker(cfg, env=ENV)
    with pytest.raises(BrokerError, match=r"NOPEUSDT.*feed\.ccxt\.markets"):
        b.connect()
    b.close()
