"""Order prices on the instrument's tick grid, the same for backtest, paper and live.

The RiskManager puts a signal's limit, stop-loss and take-profit on the grid (the nearest tick,
as ccxt's `price_to_precision` does before a live order is sent) and sizes from those prices;
the paper broker moves a slipped taker price to the next tick against the taker."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from scalper import backtest as bt
from scalper.config import Config
from scalper.execution.orders import OrderManager, round_to_tick, tick_against
from scalper.risk import INVALID_SIGNAL, RiskManager
from scalper.types import NS_PER_MINUTE as MIN
from scalper.types import Fill, OrderType, Side, Signal

T0 = 1_700_000_000 * 1_000_000_000 // MIN * MIN


def make_cfg() -> Config:
    doc = msgspec.to_builtins(Config())
    doc["symbols"] = ["ES"]
    doc["feed"]["ccxt"]["markets"] = {"ES": "ES/USDT"}
    return msgspec.convert(doc, Config)  # ES: tick 0.25, multiplier 50, margin 5,000


def on_grid(x: float, tick: float) -> bool:
    """`x` is exactly a multiple of `tick` as a clean decimal (no float noise)."""
    return x == round(round(x / tick) * tick, 10)


# ------------------------------------------------------------------ rounding


def test_round_to_tick_gives_the_nearest_tick_without_float_noise():
    assert round_to_tick(1640.854303, 0.25) == 1640.75
    assert round_to_tick(1642.791395, 0.25) == 1642.75
    assert round_to_tick(1642.7500000001, 0.25) == 1642.75
    assert round_to_tick(1642.875, 0.25) == 1643.0  # half a tick: up, as ccxt
    assert round_to_tick(0.1 + 0.2, 0.1) == 0.3  # 0.30000000000000004
    assert round_to_tick(100.13, 0.01) == 100.13  # 100.13 / 0.01 = 10012.999999999998
    assert round_to_tick(1.025, 0.05) == 1.05  # a decimal tie whose float quotient is 20.4999...
    assert round_to_tick(3 * 0.1, 0.1) == 0.3
    assert round_to_tick(64_123.456789, 0.01) == 64_123.46
    assert round_to_tick(123.0, 5.0) == 125.0
    assert math.isnan(round_to_tick(math.nan, 0.25))


def test_round_to_tick_matches_ccxt_price_to_precision():
    from ccxt.base.decimal_to_precision import ROUND, TICK_SIZE, decimal_to_precision

    rng = np.random.default_rng(7)
    for tick in (0.25, 0.01, 0.05, 0.1, 0.5, 1e-5, 1.0, 5.0):
        prices = list(np.round(rng.uniform(0.5, 5_000.0, 400), 6))
        # decimal ties and the grid itself, where float division is noisiest
        prices += [round((k + 0.5) * tick, 10) for k in range(1, 200)]
        prices += [round(k * tick, 10) for k in range(1, 200)]
        for p in prices:
            want = float(decimal_to_precision(p, ROUND, tick, TICK_SIZE))
            assert round_to_tick(float(p), tick) == want, (p, tick)


def test_tick_against_moves_a_slipped_price_to_the_next_worse_tick_and_leaves_grid_prices():
    assert tick_against(100.6, 0.25, Side.BUY) == 100.75
    assert tick_against(99.4, 0.25, Side.SELL) == 99.25
    assert tick_against(0.1 + 0.2, 0.1, Side.BUY) == 0.3  # on the grid up to float noise: stays
    assert tick_against(100.13, 0.01, Side.SELL) == 100.13
    assert tick_against(1642.75, 0.25, Side.SELL) == 1642.75


# ------------------------------------------------------------------ the risk manager's intent


def signal(
    otype: OrderType, sl: float, tp: float, limit: float | None = None, side: Side = Side.BUY
) -> Signal:
    return Signal("ES", T0, "mean_reversion", side, otype, sl, tp, limit_price=limit, expiry_bars=5)


def test_the_intent_carries_prices_on_the_grid_and_is_sized_from_them():
    rm = RiskManager(make_cfg())
    sig = signal(OrderType.LIMIT, 1640.854303, 1642.791395, limit=1641.862)
    d = rm.evaluate(sig, ref_price=1641.862, positions={})
    assert d.approved, d.detail
    it = d.intent
    assert (it.limit_price, it.stop_loss, it.take_profit) == (1641.75, 1640.75, 1642.75)
    # 1,000 of risk (1% of 100,000) / (1 point x 50) = 20, then the margin cap
    risk = rm.state.equity * rm.risk.risk_per_trade_pct / 100
    assert it.quantity <= math.floor(risk / ((1641.75 - 1640.75) * 50))
    assert "@ 1,641.75" in d.detail and "stop 1 away" in d.detail


def test_a_stop_that_rounds_onto_the_entry_is_refused_and_says_so():
    rm = RiskManager(make_cfg())
    d = rm.evaluate(signal(OrderType.LIMIT, 1641.65, 1643.0, limit=1641.75), ref_price=1641.75, positions={})
    assert not d.approved and d.reason == INVALID_SIGNAL
    assert "stop_loss 1,641.75 is not below the entry 1,641.75" in d.detail
    assert "rounded to the tick 0.25: stop_loss 1,641.65 -> 1,641.75" in d.detail
    # a market entry: its reference price is the close, the stop rounds onto it
    d = rm.evaluate(signal(OrderType.MARKET, 1642.1, 1640.0, side=Side.SELL), ref_price=1642.0, positions={})
    assert not d.approved and "short stop_loss 1,642 is not above the entry 1,642" in d.detail


def test_a_rounded_stop_stays_on_the_losing_side_of_the_entry():
    rm = RiskManager(make_cfg())
    d = rm.evaluate(signal(OrderType.LIMIT, 1641.55, 1643.0, limit=1641.75), ref_price=1641.75, positions={})
    assert d.approved and d.intent.stop_loss == 1641.5 < d.intent.limit_price


# ------------------------------------------------------------------ live == paper


def test_live_and_paper_place_the_same_prices_for_the_same_intent():
    """The live broker's ccxt rounding (offline: markets set by hand) leaves the intent's
    prices as they are, and gives them for the strategy's raw prices too."""
    import ccxt

    from scalper.execution.ccxt import CcxtBroker

    cfg = make_cfg()
    exchange = ccxt.binance()
    exchange.set_markets(
        [
            {
                "id": "ESUSDT",
                "symbol": "ES/USDT",
                "base": "ES",
                "quote": "USDT",
                "baseId": "ES",
                "quoteId": "USDT",
                "active": True,
                "type": "spot",
                "spot": True,
                "precision": {"price": 0.25, "amount": 1.0},
                "limits": {"amount": {"min": 1.0}, "cost": {"min": 0.0}, "price": {}, "leverage": {}},
            }
        ]
    )
    broker = CcxtBroker(cfg, exchange=exchange)
    broker.connect()
    sig = signal(OrderType.LIMIT, 1640.854303, 1642.791395, limit=1641.862)
    intent = RiskManager(cfg).evaluate(sig, ref_price=1641.862, positions={}).intent
    om = OrderManager(cfg)
    entry = om.submit(intent, T0 + MIN, ref_price=1641.862)
    prepared = broker.prepare(entry)  # (amount, price) as the live service would send them
    assert not isinstance(prepared, str), prepared
    assert prepared[1] == entry.limit_price == 1641.75
    fill = Fill("f1", entry.client_order_id, "ES", Side.BUY, entry.quantity, 1641.75, 0.0, "maker", T0 + MIN)
    om.on_fill(fill)
    stop, target = om.legs(entry.client_order_id)
    for placed, raw in ((stop.stop_price, sig.stop_loss), (target.limit_price, sig.take_profit)):
        assert float(exchange.price_to_precision("ES/USDT", placed)) == placed
        assert float(exchange.price_to_precision("ES/USDT", raw)) == placed


# ------------------------------------------------------------------ a backtest of the ES sample


@pytest.fixture(scope="module")
def es_run():
    cfg = Config()
    bars = bt.load_bars(cfg)
    return bt.Backtest(cfg).run({s: bt.prepare(s, b, cfg) for s, b in bars.items()})


def test_every_order_and_fill_price_of_an_es_backtest_is_on_the_quarter_point_grid(es_run):
    assert es_run.orders and es_run.fills
    prices = [p for o in es_run.orders for p in (o.limit_price, o.stop_price) if p is not None]
    prices += [o.avg_fill_price for o in es_run.orders if o.filled_qty]
    prices += [f.price for f in es_run.fills]
    off = [p for p in prices if not on_grid(p, 0.25)]
    assert not off, off[:5]
