"""The live-style TradingSession (bars one minute at a time) makes exactly the backtest's decisions."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from scalper import backtest as bt
from scalper.config import Config, default_document
from scalper.report import fingerprint
from scalper.trading import TradingSession


def replay(session: TradingSession, data: dict[str, bt.SymbolData]) -> None:
    """Feed the session every minute of the union of the symbols' bars, in time order."""
    grid = np.unique(np.concatenate([sd.ts for sd in data.values()]))
    where = {s: {int(t): i for i, t in enumerate(sd.ts.tolist())} for s, sd in data.items()}
    for t in grid.tolist():
        bars, ticks = [], {}
        for s, sd in data.items():
            i = where[s].get(t)
            if i is not None:
                bars.append(sd.bar(i))
                if sd.ticks is not None:
                    ticks[s] = sd.bar_ticks(i)
        session.on_minute(bars, ticks or None)


def same_trades(a, b) -> None:
    """Equal trades: every field exact, except prices and P&L within 1e-9 relative (a limit at a
    Bollinger band can be 1 ulp apart: pandas_ta's SMA is a BLAS dot product, the stream's is
    not; R-multiples divide by a small stop distance and magnify that)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for name in (
            "symbol",
            "strategy",
            "side",
            "quantity",
            "entry_ts",
            "exit_ts",
            "exit_reason",
            "entry_order_id",
        ):
            assert getattr(x, name) == getattr(y, name), (name, x, y)
        for name in ("entry_price", "exit_price", "fees", "pnl", "r_multiple"):
            assert getattr(x, name) == pytest.approx(getattr(y, name), rel=1e-9, nan_ok=True), (name, x, y)


def decisions(records):
    return [
        (r.signal.symbol, r.signal.ts, r.signal.strategy, r.signal.side, r.approved, r.reason, r.quantity)
        for r in records
    ]


def test_bar_by_bar_session_makes_the_backtests_decisions_on_the_bundled_ticks():
    cfg = Config()
    bars = bt.load_bars(cfg)
    data = {s: bt.prepare(s, b, cfg) for s, b in bars.items()}
    backtest = bt.Backtest(cfg).run(data)
    session = TradingSession(cfg)
    replay(session, data)
    assert decisions(session.records) == decisions(backtest.signals)
    same_trades(session.trades, backtest.trades)
    assert fingerprint(session.trades) == fingerprint(backtest.trades)


@pytest.mark.parametrize("fill_mode", ["bar", "tick"])
def test_bar_by_bar_session_equals_the_backtest_on_several_symbols(fill_mode):
    doc = default_document()
    doc["symbols"] = ["AAA", "BBB", "CCC"]
    doc["feed"]["synthetic"].update(minutes=2 * 1440, ticks_per_minute=30.0)
    doc["risk"].update(max_drawdown_pct=50.0, daily_loss_limit_pct=20.0, max_open_positions=2)
    doc["execution"]["fill_mode"] = fill_mode
    cfg = msgspec.convert(doc, Config)
    # bars made from the synthetic trades by the CandleManager (so tick mode has the trades)
    from scalper.candles import CandleManager
    from scalper.feeds.synthetic import synthetic_ticks
    from scalper.tables import bars_frame

    data = {}
    for sym in cfg.symbols:
        t = synthetic_ticks(cfg.feed.synthetic, sym)
        m = CandleManager(sym, cfg.candles)
        frame = bars_frame(sym, m.on_batch(t["ts"], t["price"], t["size"]) + m.flush()).drop(
            columns=["symbol"]
        )
        frame["timestamp"] = frame["timestamp"].astype("int64")
        data[sym] = bt.prepare(sym, frame, cfg, (t["ts"], t["price"]))
    backtest = bt.Backtest(cfg).run(data)
    session = TradingSession(cfg)
    replay(session, data)
    assert len(backtest.trades) > 20
    assert decisions(session.records) == decisions(backtest.signals)
    same_trades(session.trades, backtest.trades)
    assert fingerprint(session.trades) == fingerprint(backtest.trades)
    assert {r.reason for r in backtest.signals} >= {"approved", "position_exists"}


def test_session_and_backtest_agree_when_expired_limits_turn_market_with_partial_fills():
    """Limit entries fill in part (participation cap), expire, and become market orders that
    fill over the next bars: minute by minute, the backtest (jumping or stepping) and the
    session fill, trade and decide alike."""
    doc = default_document()
    doc["symbols"] = ["AAA", "BBB"]
    doc["feed"]["synthetic"]["minutes"] = 360
    doc["risk"].update(max_drawdown_pct=90.0, daily_loss_limit_pct=90.0)
    doc["execution"].update(limit_expiry_action="market", max_volume_participation=0.02)
    cfg = msgspec.convert(doc, Config)
    data = {s: bt.prepare(s, b, cfg) for s, b in bt.load_bars(cfg, synthetic=True).items()}
    backtest = bt.Backtest(cfg).run(data)
    stepped = bt.Backtest(cfg, jump=False).run(data)
    session = TradingSession(cfg)
    replay(session, data)
    assert any(o.client_order_id.endswith("-mkt") and o.filled_qty for o in backtest.orders)
    assert decisions(session.records) == decisions(backtest.signals) == decisions(stepped.signals)
    assert [(f.fill_id, f.quantity) for f in session.execution.fills] == [
        (f.fill_id, f.quantity) for f in backtest.fills
    ]
    assert backtest.fills == stepped.fills
    same_trades(session.trades, backtest.trades)
    assert fingerprint(session.trades) == fingerprint(backtest.trades) == fingerprint(stepped.trades)


def test_strategy_runner_gives_each_minute_its_own_past_when_minutes_arrive_out_of_order():
    """After an actor restart Ray may resend pending minutes in any order: a runner that refills
    its windows whenever it is out of sequence gives every minute the in-order candidates."""
    from scalper.feeds import make_feed
    from scalper.pipeline import MarketDataPipeline, by_minute
    from scalper.trading import StrategyRunner

    doc = default_document()
    doc["symbols"] = ["AAA", "BBB"]
    doc["feed"]["kind"] = "synthetic"
    doc["feed"]["synthetic"].update(minutes=6 * 60, ticks_per_minute=20.0)
    cfg = msgspec.convert(doc, Config)
    pipe, snaps = MarketDataPipeline(cfg), []
    for event in make_feed(cfg):
        if pipe.on_event(event):
            snaps += pipe.drain_snapshots()
    minutes = by_minute(snaps)
    in_order = StrategyRunner(cfg)
    want = {m[0].bar.ts: in_order.on_snapshots(m) for m in minutes}
    assert sum(map(len, want.values())) > 5

    # minutes 0..199 in order, then 202, 200, 201, 203.. (as after a restart); refill from the past
    order = [*range(200), 202, 200, 201, *range(203, len(minutes))]
    runner, got, refills = StrategyRunner(cfg), {}, 0
    for k in order:
        ts, previous = minutes[k][0].bar.ts, minutes[k - 1][0].bar.ts if k else None
        if not runner.follows(previous):
            runner.remember([s for s in snaps if s.bar.ts < ts])
            refills += 1
        got[ts] = runner.on_snapshots(minutes[k])
    assert refills == 3  # 202 after 199, 200 after 202, 203 after 201 (201 follows 200)
    assert got == want
