"""The live decision loop, split into the three roles the Ray runtime runs as separate actors.

Closed bars arrive one minute at a time and decisions follow at once. Each role is a plain
class (no Ray) that talks to the others only through messages, so the actors stay thin and
the in-process `TradingSession`, which composes the three, is the same code path:

    minute t:  ExecutionService.on_minute(bars)      fills of open orders during bar t
                                                      (PaperBroker.step -> OrderManager,
                                                      Portfolio), limit expiry at t's close
               -> MinuteReport                        equity, positions, open entries, and the
                                                      risk events (trades closed, marks)
               StrategyRunner.on_snapshots(snaps)     each strategy's `on_bar` over the newest
               -> [Candidate]                         rows of bars + streaming indicators
               RiskDesk.decide(report, candidates)    replays the risk events, marks equity,
               -> [Decision]                          evaluates every candidate in order
               ExecutionService.submit(decisions)     orders for the approved ones
               -> [SignalRecord]

It is the backtest's sequence — the execution service IS a `Backtest` minus the look at the
future the fast engine uses to jump, and minus the RiskManager, whose calls it records as
events instead — so a paper run and `scalper backtest` over the same bars make the same
decisions (tests/test_trading.py). The risk manager is marked at the backtest's event times
(a minute with a fill, an expiry or a signal), so halts trip at the same moment in both.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from scalper.backtest import MIN, Backtest, BacktestResult, SignalRecord, SymbolData, _TradeBook
from scalper.config import Config
from scalper.report import Trade
from scalper.types import Bar, Fill, OrderIntent, OrderRole, Position, Signal, Snapshot

if TYPE_CHECKING:
    from scalper.live_gate import LiveGate

log = logging.getLogger(__name__)


class Candidate(msgspec.Struct, frozen=True):
    """A strategy's signal at a bar close, with that close (a market order's reference price)."""

    signal: Signal
    close: float


class MinuteReport(msgspec.Struct, frozen=True):
    """What the risk desk needs from the execution side after a minute's fills and expiries.

    `risk_events` are the RiskManager calls the execution side made, in order:
    ("mark", equity, ts) or ("trade_closed", symbol, pnl, ts)."""

    ts: int  # the minute (bar open)
    risk_events: list[tuple]
    event: bool  # an order changed (fill, expiry): the risk manager is marked at the close
    equity: float
    positions: dict[str, Position]
    open_entries: dict[str, int]


class Decision(msgspec.Struct, frozen=True):
    """The risk desk's answer to one candidate: an order intent, or a refusal with its code."""

    signal: Signal
    close: float
    approved: bool
    reason: str
    detail: str
    intent: OrderIntent | None = None
    # the model gate's scores and the models' name -> version, when models judged the signal
    scores: dict[str, float] = {}
    models: dict[str, str] = {}


class _RiskEvents:
    """Stands in for the RiskManager inside the execution service: records what it must hear."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def mark(self, equity: float, ts: int) -> None:
        self.events.append(("mark", equity, ts))

    def on_trade_closed(self, symbol: str, pnl: float, ts: int) -> None:
        self.events.append(("trade_closed", symbol, pnl, ts))

    def drain(self) -> list[tuple]:
        out, self.events = self.events, []
        return out


class ExecutionService(Backtest):
    """Orders, brackets, the paper broker, the portfolio and the trade book of a run.

    The TradingService actor hosts one. It never decides: it fills, expires and submits."""

    def __init__(self, cfg: Config):
        super().__init__(cfg, strategies=[], jump=False)
        self.risk = _RiskEvents()  # type: ignore[assignment]
        self.book = _TradeBook(cfg)
        self.records: list[SignalRecord] = []
        self.fills: list[Fill] = []
        self.last_minute: int | None = None
        self._last_close: dict[str, float] = {}
        self._closes: dict[str, tuple[list[int], list[float]]] = {}

    @property
    def trades(self) -> list[Trade]:
        return self.book.closed

    def on_minute(self, bars: Sequence[Bar], ticks: Mapping[str, np.ndarray] | None = None) -> MinuteReport:
        """Fills during the minute's bars and expiries at its close (bars: one minute, any
        subset of the symbols; `ticks` for tick-mode fills: {symbol: the bar's trade prices})."""
        t = bars[0].ts
        if any(b.ts != t for b in bars):
            raise ValueError("on_minute: every bar must belong to the same minute")
        if self.last_minute is not None and t <= self.last_minute:
            raise ValueError(f"on_minute: minute {t} is not after the last one ({self.last_minute})")
        self._catch_up_expiries(t)
        event = False
        for bar in bars:
            open_orders = self.orders.open_orders(bar.symbol)
            if not open_orders:
                continue
            before = len(self.orders.events)
            tick_prices = ticks.get(bar.symbol) if (self.tick_mode and ticks is not None) else None
            if self.tick_mode and tick_prices is None:
                raise ValueError(f'execution.fill_mode = "tick": no trades given for {bar.symbol}')
            for fill in self._broker_fills(bar, open_orders, tick_prices):
                self.fills.append(fill)
                self._on_fill(fill, self.book)
            event = event or len(self.orders.events) != before
        if self.orders.expire(t + MIN):
            event = True
        for bar in bars:
            self._last_close[bar.symbol] = bar.close
            ts, closes = self._closes.setdefault(bar.symbol, ([], []))
            ts.append(bar.ts)
            closes.append(bar.close)
        self.last_minute = t
        return MinuteReport(
            ts=t,
            risk_events=self.risk.drain(),
            event=event,
            equity=self._equity_marked(self._last_close.get),
            positions={s: p for s, p in self.portfolio.positions.items() if p.quantity},
            open_entries=self.orders.open_counts(OrderRole.ENTRY),
        )

    def submit(self, decisions: Sequence[Decision]) -> list[SignalRecord]:
        """Orders for the approved decisions, in order; every decision becomes a record."""
        out = []
        for d in decisions:
            rec = self._submit(d.signal, d.close, d.reason, d.detail, d.intent if d.approved else None)
            if d.models:
                rec.scores, rec.models = dict(d.scores), dict(d.models)
            out.append(rec)
        self.records.extend(out)
        return out

    def _catch_up_expiries(self, t: int) -> None:
        """Limit entries that expired at the close of a minute without any bar (a gap)."""
        while True:
            times = [o.expire_ts for o in self.orders.open_orders() if o.expire_ts is not None]
            due = min(times) if times else None
            if due is None or due > t:
                return
            if self.orders.expire(due):
                self.risk.mark(self._equity_marked(self._last_close.get), due)

    def symbol_data(self) -> dict[str, SymbolData]:
        """The minutes and closes seen per symbol (what the equity curve is marked at)."""
        return {
            s: SymbolData(
                s, {"timestamp": np.asarray(ts, dtype=np.int64), "close": np.asarray(c, dtype=np.float64)}
            )
            for s, (ts, c) in self._closes.items()
        }

    def result(self, seconds: float = 0.0) -> BacktestResult:
        """Everything `backtest.write_run` writes, as for a backtest over the same bars."""
        data = self.symbol_data()
        equity_ts, equity = self._equity_curve(data)
        return BacktestResult(
            cfg=self.cfg,
            symbols=list(self.cfg.symbols),
            trades=self.trades,
            signals=self.records,
            orders=list(self.orders.orders),
            fills=self.fills,
            equity_ts=equity_ts,
            equity=equity,
            bars=sum(len(sd) for sd in data.values()),
            seconds=seconds,
            open_positions={s: p.quantity for s, p in self.portfolio.positions.items() if p.quantity},
        )


class StrategyRunner:
    """Strategies over per-symbol rolling windows of bars + indicators (one strategy actor each)."""

    def __init__(self, cfg: Config, strategies: Sequence[str] | None = None):
        from scalper.strategies import build_strategies
        from scalper.windows import BarWindows

        self.strategies = build_strategies(cfg, strategies)
        lookback = max((st.lookback() for st in self.strategies), default=1)
        self._windows = BarWindows([c for st in self.strategies for c in st.columns()], lookback)
        self.at: int | None = None  # the newest minute in the windows

    def follows(self, previous: int | None) -> bool:
        """Do the windows end at minute `previous`? Not when minutes came out of order (Ray
        resends a restarted actor's pending calls in no guaranteed order): then refill them."""
        return self.at == previous

    def on_snapshots(self, snaps: Sequence[Snapshot]) -> list[Candidate]:
        """The bars closed at one minute (with their indicators) -> candidate signals, in the
        order given (symbol by symbol, strategy by strategy)."""
        if not snaps:
            return []
        for snap in snaps:
            self._append(snap)
        where = {snap.bar.symbol: i for i, snap in enumerate(snaps)}
        symbols = list(where)
        found: list[tuple[int, int, Signal]] = []
        for j, strategy in enumerate(self.strategies):
            names, block = self._windows.last(symbols, strategy.lookback())
            found += [(where[sig.symbol], j, sig) for sig in strategy.on_bars(names, block)]
        found.sort(key=lambda f: (f[0], f[1]))
        return [Candidate(sig, snaps[i].bar.close) for i, _, sig in found]

    def remember(self, snaps: Sequence[Snapshot]) -> None:
        """Refill the windows, from empty, with earlier bars (time order) without deciding anything."""
        self._windows.clear()
        self.at = None
        for snap in sorted(snaps, key=lambda s: s.bar.ts):
            self._append(snap)

    def _append(self, snap: Snapshot) -> None:
        self._windows.append(snap)
        ts = snap.bar.ts
        self.at = ts if self.at is None or ts > self.at else self.at


class RiskDesk:
    """The RiskManager's side of a minute: hears the execution side's events, then decides."""

    def __init__(self, cfg: Config, state: Any = None, gate: LiveGate | None = None):
        from scalper.execution.orders import order_problem
        from scalper.risk import RiskManager
        from scalper.strategies import STRATEGIES

        self.cfg = cfg
        self.risk = RiskManager(cfg, state)
        # imported here, not at the first decision: the first bar close of a run is not slower
        self._order_problem = order_problem
        self.gate = gate
        self.last_minute: int | None = None
        self._rank = {s: i for i, s in enumerate(cfg.symbols)}
        self._strategy_rank = {name: i for i, name in enumerate(STRATEGIES)}

    def decide(
        self, report: MinuteReport, candidates: Sequence[Candidate], snaps: Sequence[Snapshot] = ()
    ) -> list[Decision]:
        """Apply the minute's risk events, mark equity at its close when anything happened,
        and evaluate the candidates in the backtest's order (symbol, then strategy). With a
        model gate (fed the minute's closed bars, `snaps`), its refusals are recorded and its
        accepted signals sized by its multiplier, as `Backtest(gate=...)` does."""
        order_problem = self._order_problem
        risk = self.risk
        for ev in report.risk_events:
            if ev[0] == "mark":
                risk.mark(ev[1], ev[2])
            else:
                risk.on_trade_closed(ev[1], ev[2], ev[3])
        close_ts = report.ts + MIN
        if candidates or report.event:
            risk.mark(report.equity, close_ts)
        ordered = sorted(
            candidates,
            key=lambda c: (
                self._rank.get(c.signal.symbol, len(self._rank)),
                self._strategy_rank.get(c.signal.strategy, 99),
            ),
        )
        open_entries = dict(report.open_entries)
        gated: list[Any] = [None] * len(ordered)
        scores_of: list[dict[str, float]] = [{}] * len(ordered)
        models: dict[str, str] = {}
        if self.gate is not None:
            self.gate.remember(snaps)
            if ordered:
                gated = self.gate.evaluate(ordered)
                scores_of = [dict(g.scores) if g is not None else {} for g in gated]
                models = self.gate.models if any(g is not None and g.scores for g in gated) else {}
        out = []
        for c, g, scores in zip(ordered, gated, scores_of, strict=True):
            sig = c.signal
            if g is not None and not g.accepted:
                out.append(Decision(sig, c.close, False, g.reason, g.detail, None, scores, models))
                continue
            ref = sig.limit_price if sig.limit_price is not None else c.close
            d = risk.evaluate(
                sig,
                ref_price=ref,
                positions=report.positions,
                open_entry_orders=open_entries,
                size_multiplier=1.0 if g is None else g.size_multiplier,
            )
            approved = d.approved and d.intent is not None
            if approved and not order_problem(self.cfg, d.intent, c.close):
                # the execution side will accept it: an entry order open on the symbol from now
                open_entries[sig.symbol] = open_entries.get(sig.symbol, 0) + 1
            intent = d.intent if approved else None
            out.append(Decision(sig, c.close, approved, d.reason, d.detail, intent, scores, models))
        self.last_minute = report.ts
        return out


class TradingSession:
    """The three roles in one process: bar-by-bar trading over many symbols (no Ray, no I/O)."""

    def __init__(self, cfg: Config, strategies: Sequence[str] | None = None, gate: Any = None):
        """`gate`: a scalper.ml.gate.ModelGate judging the signals (None: rules only)."""
        from scalper.indicators import StreamingIndicators
        from scalper.live_gate import LiveGate

        self.cfg = cfg
        self.execution = ExecutionService(cfg)
        self.runner = StrategyRunner(cfg, strategies)
        self.desk = RiskDesk(cfg, gate=LiveGate(cfg, gate) if gate is not None else None)
        self._rank = {s: i for i, s in enumerate(cfg.symbols)}
        self._indicators: dict[str, StreamingIndicators] = {}

    @property
    def trades(self) -> list[Trade]:
        return self.execution.trades

    @property
    def records(self) -> list[SignalRecord]:
        return self.execution.records

    @property
    def risk(self):
        return self.desk.risk

    def on_minute(
        self, bars: Sequence[Bar], ticks: Mapping[str, np.ndarray] | None = None
    ) -> list[SignalRecord]:
        """The closed bars of one minute (any subset of the symbols); returns its decisions.

        `ticks` (tick-mode fills): {symbol: that bar's trade prices in time order}.
        """
        from scalper.indicators import StreamingIndicators

        snaps = []
        for bar in bars:
            ind = self._indicators.get(bar.symbol)
            if ind is None:
                ind = self._indicators[bar.symbol] = StreamingIndicators(self.cfg.indicators)
            ind.update_bar(bar)
            snaps.append(Snapshot(bar, ind.values(), {}))
        return self.on_snapshots(snaps, ticks)

    def on_snapshots(
        self, snaps: Sequence[Snapshot], ticks: Mapping[str, np.ndarray] | None = None
    ) -> list[SignalRecord]:
        """As `on_minute`, for bars whose indicators are already computed (a candle shard's)."""
        if not snaps:
            return []
        snaps = sorted(snaps, key=lambda s: self._rank.get(s.bar.symbol, len(self._rank)))
        report = self.execution.on_minute([s.bar for s in snaps], ticks)
        decisions = self.desk.decide(report, self.runner.on_snapshots(snaps), snaps)
        return self.execution.submit(decisions)
