"""PaperBroker fill model: eligibility, market/limit/stop prices, OCO, IOC, participation,
fees, and the vectorised first_fill_index against bar-by-bar stepping."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from scalper.config import Config
from scalper.execution.orders import OrderManager
from scalper.execution.paper import PaperBroker
from scalper.types import NS_PER_MINUTE as MIN
from scalper.types import (
    Bar,
    Order,
    OrderIntent,
    OrderRole,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)

T0 = 1_700_000_000 * 1_000_000_000 // MIN * MIN
S = OrderStatus


def make_cfg(**execution) -> Config:
    doc = msgspec.to_builtins(Config())
    doc["execution"].update(
        {"slippage_bps": 0.0, "slippage_ticks": 0, "maker_fee_bps": 0.0, "taker_fee_bps": 0.0}
    )
    doc["execution"].update(execution)
    doc["instruments"]["X"] = {"tick_size": 0.25, "lot_size": 1.0, "multiplier": 50.0}
    return msgspec.convert(doc, Config)


def bar(i: int, o: float, h: float, low: float, c: float, v: float = 1000.0, sym: str = "X") -> Bar:
    return Bar(sym, T0 + i * MIN, o, h, low, c, v, 10, (o + c) / 2)


def order(
    otype: OrderType = OrderType.MARKET,
    side: Side = Side.BUY,
    qty: float = 10.0,
    created: int = 0,
    coid: str = "o1",
    **kw,
) -> Order:
    """An accepted order created at the OPEN of bar `created` (= the close of bar created - 1)."""
    kw.setdefault("status", S.ACCEPTED)
    return Order(coid, "X", side, otype, qty, created_ts=T0 + created * MIN, **kw)


def legs(stop: float, target: float, qty: float = 10.0, created: int = 0) -> list[Order]:
    """A long's bracket: sell stop + sell limit, one OCO group."""
    common = dict(side=Side.SELL, qty=qty, created=created, parent_id="e", oco_id="e-oco")
    return [
        order(OrderType.STOP, coid="e-sl", stop_price=stop, role=OrderRole.STOP_LOSS, **common),
        order(OrderType.LIMIT, coid="e-tp", limit_price=target, role=OrderRole.TAKE_PROFIT, **common),
    ]


# ------------------------------------------------------------------ eligibility / market


def test_nothing_fills_in_the_bar_that_produced_the_signal():
    br = PaperBroker(make_cfg())
    signal_bar = bar(0, 100, 101, 99, 100.5)
    o = order(created=1)  # decided at bar 0's close = bar 1's open
    assert br.on_bar(signal_bar, [o]) == []
    (f,) = br.on_bar(bar(1, 100.75, 102, 100, 101), [o])
    assert f.price == 100.75 and f.ts == T0 + MIN and f.quantity == 10


def test_market_fills_at_the_next_open_plus_bps_and_tick_slippage_and_pays_taker_fee():
    br = PaperBroker(make_cfg(slippage_bps=10.0, slippage_ticks=2, taker_fee_bps=2.0))
    (buy,) = br.on_bar(bar(1, 100, 101, 99, 100), [order(created=1)])
    # 100 x 1.001 + 2 x 0.25 = 100.6, off the 0.25 grid: the next worse tick for a buyer
    assert buy.price == 100.75
    assert buy.liquidity == "taker"
    assert buy.fee == pytest.approx(buy.price * 10 * 50 * 2.0 / 1e4)
    (sell,) = br.on_bar(bar(1, 100, 101, 99, 100), [order(side=Side.SELL, created=1)])
    assert sell.price == 99.25  # 100 x 0.999 - 0.5 = 99.4, down to the tick for a seller


def test_orders_of_other_symbols_and_closed_orders_are_ignored():
    br = PaperBroker(make_cfg())
    other = order(created=0)
    other.symbol = "Y"
    done = order(created=0, coid="o2", status=S.CANCELED)
    assert br.on_bar(bar(0, 100, 101, 99, 100), [other, done]) == []


def test_a_gtd_order_does_not_fill_at_or_after_its_expire_ts():
    br = PaperBroker(make_cfg())
    o = order(OrderType.LIMIT, limit_price=99.0, created=0, expire_ts=T0 + 2 * MIN, tif=TimeInForce.GTD)
    assert br.on_bar(bar(2, 98, 98, 97, 98), [o]) == []
    assert len(br.on_bar(bar(1, 100, 100, 98, 98), [o])) == 1


def test_fill_ids_are_deterministic():
    br = PaperBroker(make_cfg())
    a = br.on_bar(bar(3, 100, 101, 99, 100), [order(created=0)])
    b = PaperBroker(make_cfg()).on_bar(bar(3, 100, 101, 99, 100), [order(created=0)])
    assert a == b and a[0].fill_id == f"o1-f{T0 + 3 * MIN}"


# ------------------------------------------------------------------ limits


def test_a_limit_touched_but_not_traded_through_does_not_fill():
    br = PaperBroker(make_cfg())
    assert br.on_bar(bar(2, 100, 101, 99.0, 100), [order(OrderType.LIMIT, limit_price=99.0)]) == []
    sell = order(OrderType.LIMIT, side=Side.SELL, limit_price=101.0)
    assert br.on_bar(bar(2, 100, 101.0, 99, 100), [sell]) == []


def test_a_limit_traded_through_fills_at_the_limit_as_maker():
    br = PaperBroker(make_cfg(maker_fee_bps=-1.0, taker_fee_bps=5.0))
    (f,) = br.on_bar(bar(2, 100, 101, 98.75, 100), [order(OrderType.LIMIT, limit_price=99.0)])
    assert f.price == 99.0 and f.liquidity == "maker"
    assert f.fee == pytest.approx(-99.0 * 10 * 50 * 1.0 / 1e4)  # a rebate
    (s,) = br.on_bar(bar(2, 100, 101.5, 99, 100), [order(OrderType.LIMIT, side=Side.SELL, limit_price=101.0)])
    assert s.price == 101.0 and s.liquidity == "maker"


def test_a_resting_limit_fills_at_a_better_open():
    br = PaperBroker(make_cfg())
    (f,) = br.on_bar(bar(5, 98.0, 98.5, 97, 98), [order(OrderType.LIMIT, limit_price=99.0, created=1)])
    assert f.price == 98.0 and f.liquidity == "maker"
    (s,) = br.on_bar(
        bar(5, 102, 103, 101.5, 102), [order(OrderType.LIMIT, side=Side.SELL, limit_price=101.0)]
    )
    assert s.price == 102.0


def test_a_limit_marketable_on_arrival_takes_at_the_open_capped_by_the_limit():
    br = PaperBroker(make_cfg(slippage_bps=10.0, taker_fee_bps=2.0, maker_fee_bps=0.0))
    (f,) = br.on_bar(bar(1, 98.0, 98.5, 97, 98), [order(OrderType.LIMIT, limit_price=99.0, created=1)])
    # 98 x 1.001 = 98.098, up to the buyer's next tick
    assert f.liquidity == "taker" and f.price == 98.25 and f.fee > 0
    (g,) = br.on_bar(bar(1, 98.95, 99.5, 98, 99), [order(OrderType.LIMIT, limit_price=99.0, created=1)])
    assert g.price == 99.0  # slippage would pass the limit: capped


def test_a_post_only_limit_never_takes():
    br = PaperBroker(make_cfg(taker_fee_bps=2.0))
    o = order(OrderType.LIMIT, limit_price=99.0, created=1, post_only=True)
    (f,) = br.on_bar(bar(1, 98.0, 98.5, 97, 98), [o])
    assert f.liquidity == "maker" and f.price == 99.0 and f.fee == 0.0


# ------------------------------------------------------------------ stops and brackets


def test_a_stop_fills_at_the_stop_minus_slippage_when_touched():
    br = PaperBroker(make_cfg(slippage_bps=10.0, taker_fee_bps=2.0))
    (f,) = br.on_bar(bar(3, 100, 100.5, 95.0, 99), legs(95.0, 110.0)[:1])
    assert f.price == 94.75 and f.liquidity == "taker"  # 95 x 0.999 = 94.905, down to the tick


def test_a_gap_through_the_stop_fills_at_the_open_not_the_stop():
    br = PaperBroker(make_cfg())
    (f,) = br.on_bar(bar(3, 93.0, 94, 92, 93.5), legs(95.0, 110.0))
    assert f.client_order_id == "e-sl" and f.price == 93.0
    buy_stop = order(OrderType.STOP, stop_price=105.0)
    (g,) = br.on_bar(bar(3, 107.0, 108, 106, 107), [buy_stop])
    assert g.price == 107.0


def test_stop_and_target_in_one_bar_fill_the_stop_only():
    br = PaperBroker(make_cfg())
    fills = br.on_bar(bar(3, 100, 111, 94, 100), legs(95.0, 110.0))
    assert [f.client_order_id for f in fills] == ["e-sl"] and fills[0].price == 95.0
    # whatever order the legs are given in
    fills = br.on_bar(bar(3, 100, 111, 94, 100), legs(95.0, 110.0)[::-1])
    assert [f.client_order_id for f in fills] == ["e-sl"]


def test_an_open_through_the_target_fills_the_target_even_if_the_stop_is_hit_later():
    br = PaperBroker(make_cfg())
    fills = br.on_bar(bar(3, 112, 113, 94, 100), legs(95.0, 110.0))
    assert [(f.client_order_id, f.price) for f in fills] == [("e-tp", 112.0)]


def test_the_bracket_is_not_active_in_the_entry_fill_bar():
    cfg = make_cfg()
    om, br = OrderManager(cfg), PaperBroker(cfg)
    om.submit(
        OrderIntent("e1", "X", Side.BUY, 2, OrderType.MARKET, stop_loss=95.0, take_profit=110.0),
        T0 + MIN,
        100.0,
    )
    crash = bar(1, 100, 100, 90, 91)  # the entry fills at the open, then the price falls through the stop
    (f,) = br.on_bar(crash, om.open_orders("X"))
    om.on_fill(f)
    assert br.on_bar(crash, om.open_orders("X")) == []  # legs exist but start next bar
    (g,) = br.on_bar(bar(2, 91, 92, 90, 91), om.open_orders("X"))
    assert g.client_order_id == "e1-sl" and g.price == 91.0
    om.on_fill(g)
    assert om.get("e1-tp").status == S.CANCELED and om.open_orders() == []


# ------------------------------------------------------------------ IOC and partial fills


def test_an_ioc_limit_not_filled_in_its_first_bar_is_reported_for_cancel():
    cfg = make_cfg()
    om, br = OrderManager(cfg), PaperBroker(cfg)
    o = om.submit(
        OrderIntent(
            "i1", "X", Side.BUY, 5, OrderType.LIMIT, 90.0, 110.0, limit_price=99.0, tif=TimeInForce.IOC
        ),
        T0 + MIN,
        100.0,
    )
    b1 = bar(1, 100, 101, 99.5, 100)
    assert br.on_bar(b1, om.open_orders()) == []
    assert br.last_ioc_cancels == [o]
    fills, cancels = br.step(b1, om.open_orders())
    assert fills == [] and cancels == [o]
    om.cancel(o.client_order_id, b1.ts + MIN, "ioc")
    assert o.status == S.CANCELED and o.reason == "ioc"


def test_an_ioc_partially_filled_by_the_participation_cap_cancels_the_rest():
    br = PaperBroker(make_cfg(max_volume_participation=0.1))
    o = order(qty=10, created=1, tif=TimeInForce.IOC)
    fills, cancels = br.step(bar(1, 100, 101, 99, 100, v=45.0), [o])
    assert [f.quantity for f in fills] == [4.0] and cancels == [o]
    full = order(qty=3, created=1, tif=TimeInForce.IOC)
    fills, cancels = br.step(bar(1, 100, 101, 99, 100, v=45.0), [full])
    assert [f.quantity for f in fills] == [3.0] and cancels == []


def test_participation_cap_fills_part_per_bar_rounded_down_to_the_lot_and_the_rest_stays_open():
    cfg = make_cfg(max_volume_participation=0.25)
    om, br = OrderManager(cfg), PaperBroker(cfg)
    om.submit(OrderIntent("e1", "X", Side.BUY, 10, OrderType.MARKET, 90.0, 110.0), T0 + MIN, 100.0)
    got = []
    for i, vol in enumerate([17.0, 3.0, 12.0, 100.0], start=1):  # caps 4.25 -> 4, 0.75 -> 0, 3, rest
        for f in br.on_bar(bar(i, 100 + i, 101 + i, 99 + i, 100 + i, v=vol), om.open_orders("X")):
            if f.client_order_id == "e1":
                got.append(f.quantity)
                om.on_fill(f)
    assert got == [4.0, 3.0, 3.0]
    e = om.get("e1")
    assert e.status == S.FILLED and e.avg_fill_price == pytest.approx((4 * 101 + 3 * 103 + 3 * 104) / 10)
    assert om.get("e1-sl").quantity == 10


def test_a_partly_filled_stop_was_triggered_and_fills_its_rest_at_the_next_open():
    br = PaperBroker(make_cfg(max_volume_participation=0.5))
    sl = legs(95.0, 110.0)[0]
    (f,) = br.on_bar(bar(3, 96, 96, 94, 95, v=8.0), [sl])
    assert f.quantity == 4.0 and f.price == 95.0
    sl.filled_qty, sl.status = 4.0, S.PARTIALLY_FILLED
    (g,) = br.on_bar(bar(4, 97, 98, 96.5, 97, v=100.0), [sl])  # back above the stop: still fills
    assert g.quantity == 6.0 and g.price == 97.0


# ------------------------------------------------------------------ first_fill_index


def arrays_of(bars: list[Bar], ts_key: str = "ts") -> dict[str, np.ndarray]:
    return {
        ts_key: np.array([b.ts for b in bars], dtype=np.int64),
        "open": np.array([b.open for b in bars]),
        "high": np.array([b.high for b in bars]),
        "low": np.array([b.low for b in bars]),
        "close": np.array([b.close for b in bars]),
        "volume": np.array([b.volume for b in bars]),
    }


def bar_at(symbol: str, a: dict[str, np.ndarray], i: int) -> Bar:
    return Bar(
        symbol,
        int(a["ts"][i]),
        float(a["open"][i]),
        float(a["high"][i]),
        float(a["low"][i]),
        float(a["close"][i]),
        float(a["volume"][i]),
        1,
        float(a["close"][i]),
    )


def test_first_fill_index_respects_created_ts_and_the_search_bounds():
    br = PaperBroker(make_cfg())
    bars = [bar(i, 100, 101, 99, 100) for i in range(10)]
    a = arrays_of(bars, ts_key="timestamp")  # the backtest's column name works too
    lim = order(OrderType.LIMIT, limit_price=99.5, created=4)
    assert br.first_fill_index([lim], a, 0, 10) == 4
    assert br.first_fill_index([lim], a, 6, 10) == 6
    assert br.first_fill_index([lim], a, 0, 4) is None
    assert br.first_fill_index([order(OrderType.LIMIT, limit_price=99.0)], a, 0, 10) is None  # only touched
    assert br.first_fill_index([], a, 0, 10) is None


def random_market(seed: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = np.cumsum(rng.integers(1, 3, size=n))  # some minutes missing
    close = 100 + np.cumsum(rng.normal(0, 0.4, size=n))
    open_ = np.concatenate([[100.0], close[:-1]]) + rng.normal(0, 0.15, size=n)  # small gaps
    high = np.maximum(open_, close) + rng.exponential(0.3, size=n)
    low = np.minimum(open_, close) - rng.exponential(0.3, size=n)
    volume = np.where(rng.random(n) < 0.1, 0.0, rng.exponential(40.0, size=n))
    return {
        "ts": T0 + steps.astype(np.int64) * MIN,
        "open": np.round(open_, 2),
        "high": np.round(high, 2),
        "low": np.round(low, 2),
        "close": np.round(close, 2),
        "volume": np.round(volume, 1),
    }


def random_decisions(seed: int, a: dict[str, np.ndarray]) -> dict[int, list[tuple[OrderIntent, float]]]:
    """Entry intents decided at some bar closes (bar index -> intents with their ref price)."""
    rng = np.random.default_rng(seed + 1000)
    n = len(a["ts"])
    out: dict[int, list[tuple[OrderIntent, float]]] = {}
    for k in sorted(rng.choice(n - 1, size=max(1, n // 12), replace=False).tolist()):
        close = float(a["close"][k])
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        sign = side.sign
        limit = rng.random() < 0.5
        lp = round(close - sign * rng.uniform(-0.3, 1.0), 2) if limit else None
        entry = lp if lp is not None else close
        tif = TimeInForce.IOC if rng.random() < 0.15 else TimeInForce.GTC
        expiry = int(rng.integers(1, 6)) if limit and tif != TimeInForce.IOC and rng.random() < 0.7 else None
        it = OrderIntent(
            client_order_id=f"s{seed}-{k}",
            symbol="X",
            side=side,
            quantity=float(rng.integers(1, 20)),
            order_type=OrderType.LIMIT if limit else OrderType.MARKET,
            stop_loss=round(entry - sign * rng.uniform(0.3, 2.0), 2),
            take_profit=round(entry + sign * rng.uniform(0.3, 2.0), 2),
            limit_price=lp,
            tif=tif,
            expiry_bars=expiry,
        )
        out.setdefault(k, []).append((it, close))
    return out


def simulate(cfg: Config, a: dict[str, np.ndarray], decisions, jump: bool):
    """The backtest loop: per visited bar i, fills during i, IOC cancels, expiry and decisions
    at i's close. Stepping visits every bar; jumping only the bars that can matter."""
    om, br = OrderManager(cfg), PaperBroker(cfg)
    ts = a["ts"]
    n = len(ts)
    fills, visited = [], 0
    decision_bars = sorted(decisions)
    i = 0
    while i < n:
        j = None
        if jump:
            cands = [k for k in decision_bars if k >= i][:1]
            open_orders = om.open_orders("X")
            j = br.first_fill_index(open_orders, a, i, n)
            if j is not None:
                cands.append(j)
            for o in open_orders:
                if o.expire_ts is not None:
                    cands.append(max(i, int(np.searchsorted(ts, o.expire_ts - MIN, side="left"))))
            cands = [c for c in cands if c < n]
            if not cands:
                break
            i = min(cands)
        visited += 1
        b = bar_at("X", a, i)
        step = br.step(b, om.open_orders("X"))
        if j == i:  # first_fill_index is exact, not just early: something happens at j
            assert step.fills or step.ioc_cancels
        for f in step.fills:
            fills.append(f)
            om.on_fill(f)
        for o in step.ioc_cancels:
            om.cancel(o.client_order_id, b.ts + MIN, "ioc")
        om.expire(b.ts + MIN)
        for it, ref in decisions.get(i, []):
            om.submit(it, b.ts + MIN, ref_price=ref)
        i += 1
    return fills, om, visited


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "execution",
    [
        {},
        {"max_volume_participation": 0.05, "limit_expiry_action": "market"},
        {"slippage_bps": 2.0, "slippage_ticks": 1, "taker_fee_bps": 2.0, "maker_fee_bps": -0.5},
    ],
)
def test_first_fill_index_jumping_gives_the_same_fills_as_stepping_bar_by_bar(seed, execution):
    cfg = make_cfg(**execution)
    a = random_market(seed, 1500)
    decisions = random_decisions(seed, a)
    step_fills, step_om, step_visits = simulate(cfg, a, decisions, jump=False)
    jump_fills, jump_om, jump_visits = simulate(cfg, a, decisions, jump=True)
    assert len(step_fills) > 50  # the comparison means something
    assert jump_fills == step_fills
    assert [msgspec.to_builtins(o) for o in jump_om.orders] == [
        msgspec.to_builtins(o) for o in step_om.orders
    ]
    assert jump_om.events == step_om.events
    assert jump_visits < step_visits  # and it did skip bars


def test_a_per_unit_fee_replaces_the_bps_fee_for_that_instrument():
    from scalper.config import Config
    from scalper.execution.paper import PaperBroker

    broker = PaperBroker(Config())
    assert broker.fee(1640.0, 5, 50.0, True, per_unit=2.25) == 11.25
    assert broker.fee(1640.0, 5, 50.0, True) == 1640.0 * 5 * 50.0 * 2.0 / 1e4


# ------------------------------------------------------------------------------ tick mode


def test_tick_mode_fills_the_leg_the_trades_reach_first():
    broker = PaperBroker(make_cfg())
    b = bar(1, 100.0, 103.0, 97.0, 101.0)
    # the trades go up to the target (102.5) first, then down through the stop (98)
    up_first = np.array([100.0, 101.5, 103.0, 99.0, 97.0, 101.0])
    (fill,) = broker.step(b, legs(stop=98.0, target=102.5), up_first).fills
    assert fill.client_order_id == "e-tp" and fill.price == 102.5
    # the other way round: the stop first
    down_first = np.array([100.0, 97.0, 103.0, 101.0])
    (fill,) = broker.step(b, legs(stop=98.0, target=102.5), down_first).fills
    assert fill.client_order_id == "e-sl" and fill.price == 97.0
    # bar mode cannot know: it assumes the stop
    (fill,) = broker.step(b, legs(stop=98.0, target=102.5)).fills
    assert fill.client_order_id == "e-sl" and fill.price == 98.0


def test_tick_mode_fills_a_stop_at_the_trade_that_triggers_it():
    broker = PaperBroker(make_cfg())
    b = bar(1, 100.0, 100.5, 96.0, 97.0)
    (fill,) = broker.step(b, legs(stop=98.0, target=110.0), np.array([100.0, 99.0, 96.5, 96.0, 97.0])).fills
    assert fill.price == 96.5  # the stop became a market order at 96.5, not 98


def test_tick_mode_market_and_limit_prices_equal_bar_mode():
    broker = PaperBroker(make_cfg())
    b = bar(1, 100.0, 100.5, 98.0, 99.0)
    ticks = np.array([100.0, 99.5, 98.0, 99.0])
    for o in (order(), order(OrderType.LIMIT, limit_price=98.5), order(OrderType.LIMIT, limit_price=101.0)):
        assert broker.step(b, [o], ticks).fills == broker.step(b, [o]).fills


def test_tick_mode_needs_tick_data_in_a_backtest():
    from scalper import backtest as bt

    doc = msgspec.to_builtins(Config())
    doc["execution"]["fill_mode"] = "tick"
    cfg = msgspec.convert(doc, Config)
    bars = bt.load_bars(cfg, synthetic=True)
    data = {s: bt.prepare(s, b, cfg) for s, b in bars.items()}
    with pytest.raises(ValueError, match="needs the trades"):
        bt.Backtest(cfg).run(data)
