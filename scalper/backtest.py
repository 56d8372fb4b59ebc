"""The in-process backtest: the live decision code over history, in event time, no Ray.

Same classes as the live path: the strategies' one vectorised rule, the RiskManager, the
OrderManager (brackets, OCO, expiry), the PaperBroker fill model and the Portfolio. What
makes it fast is WHERE it looks, not a second implementation: signals are computed over
all bars at once (the rule is causal, so that is what the live path computes bar by bar),
and between events the broker's vectorised `first_fill_index` jumps over bars on which
nothing can fill. Bars are visited only when a signal is decided, an order can fill, or an
order expires; at each of those the same calls as live are made, in the same order:

    bar t:  fills of open orders during bar t (broker.on_bar)  -> OrderManager, Portfolio
            at bar t's close: expiry of limit entries, equity mark -> RiskManager
            signals decided at bar t's close -> RiskManager.evaluate -> OrderManager.submit
            (active from bar t+1: nothing fills in the bar that produced the signal)
"""

from __future__ import annotations

import bisect
import gc
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec
import numpy as np

from scalper.config import Config, InstrumentTable
from scalper.report import Trade
from scalper.types import (
    NS_PER_MINUTE,
    Bar,
    Fill,
    Order,
    OrderIntent,
    OrderRole,
    OrderStatus,
    Signal,
    TickBatch,
)

log = logging.getLogger(__name__)

MIN = NS_PER_MINUTE


@dataclass
class SymbolData:
    """One symbol's bars and indicators as numpy columns (timestamp = bar open, int64 ns)."""

    symbol: str
    cols: dict[str, np.ndarray]
    # tick mode: the trades behind the bars, (ts int64 ns, price float64) in time order
    ticks: tuple[np.ndarray, np.ndarray] | None = None

    def bar_ticks(self, i: int) -> np.ndarray:
        """Prices of the trades of bar i, in time order, within the bar's range (a trade the
        CandleManager rejected as bad lies outside it and is left out)."""
        assert self.ticks is not None
        ts, price = self.ticks
        t0 = int(self.cols["timestamp"][i])
        a, b = np.searchsorted(ts, [t0, t0 + MIN])
        p = price[a:b]
        return p[(p >= self.cols["low"][i]) & (p <= self.cols["high"][i])]

    @property
    def ts(self) -> np.ndarray:
        return self.cols["timestamp"]

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def bar(self, i: int) -> Bar:
        c = self.cols  # .item(i): a Python scalar without a numpy scalar in between
        close = float(c["close"].item(i))
        vwap = c.get("vwap")
        trades = c.get("trades")
        return Bar(
            self.symbol,
            int(c["timestamp"].item(i)),
            float(c["open"].item(i)),
            float(c["high"].item(i)),
            float(c["low"].item(i)),
            close,
            float(c["volume"].item(i)),
            int(trades.item(i)) if trades is not None else -1,
            float(vwap.item(i)) if vwap is not None else close,
        )


class SignalRecord:
    """A decided signal: approved (the order's id and quantity) or refused (the code in `reason`).

    `detail`, the sentence with the numbers, may be given as a function that writes it: it is
    written when first read (a backtest decides tens of thousands of signals and most
    sentences are never read). `scores` / `models`: the model gate's scores (P(win), regime
    probabilities, size multiplier) and the models' versions, when a gate decided the signal.
    """

    __slots__ = ("_detail", "approved", "client_order_id", "models", "quantity", "reason", "scores", "signal")

    def __init__(
        self,
        signal: Signal,
        approved: bool,
        reason: str,
        detail: str | Callable[[], str],
        client_order_id: str | None,
        quantity: float,
        scores: dict[str, float] | None = None,
        models: dict[str, str] | None = None,
    ):
        self.signal = signal
        self.approved = approved
        self.reason = reason
        self._detail = detail
        self.client_order_id = client_order_id
        self.quantity = quantity
        self.scores: dict[str, float] = {} if scores is None else scores
        self.models: dict[str, str] = {} if models is None else models

    @property
    def detail(self) -> str:
        d = self._detail
        if not isinstance(d, str):
            d = self._detail = d()
        return d

    @detail.setter
    def detail(self, value: str) -> None:
        self._detail = value

    _NAMES = ("signal", "approved", "reason", "detail", "client_order_id", "quantity", "scores", "models")

    def _fields(self) -> tuple[Any, ...]:
        """The constructor's arguments, in order, the sentence written."""
        return tuple(getattr(self, n) for n in self._NAMES)

    def __eq__(self, other: object) -> bool:
        return self._fields() == other._fields() if isinstance(other, SignalRecord) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dataclass it replaces

    def __repr__(self) -> str:
        return f"SignalRecord({', '.join(f'{n}={v!r}' for n, v in zip(self._NAMES, self._fields(), strict=True))})"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (Ray) with its sentence written: a function may not travel."""
        return (SignalRecord, self._fields())


@dataclass
class BacktestResult:
    cfg: Config
    symbols: list[str]
    trades: list[Trade]
    signals: list[SignalRecord]
    orders: list[Order]
    fills: list[Fill]
    equity_ts: np.ndarray
    equity: np.ndarray
    bars: int
    seconds: float
    open_positions: dict[str, float] = field(default_factory=dict)
    strategies: list[str] | None = None  # the strategies that ran (None: those enabled in cfg)
    summary: dict[str, Any] = field(default_factory=dict)
    # bars before --from per symbol: history for the indicators and rules only (`run_from`)
    warmup_bars: dict[str, int] = field(default_factory=dict)


def prepare(
    symbol: str, bars: Any, cfg: Config, ticks: tuple[np.ndarray, np.ndarray] | None = None
) -> SymbolData:
    """Bars (DataFrame with BAR_COLUMNS) -> columns with the batch indicators added
    (and the trades behind them, for tick-mode fills)."""
    from scalper.indicators import compute_batch

    bars = bars.reset_index(drop=True)
    ind = compute_batch(bars, cfg.indicators)
    cols = {name: bars[name].to_numpy() for name in bars.columns if name != "symbol"}
    cols["timestamp"] = cols["timestamp"].astype(np.int64)
    for name in ind.columns:
        cols[name] = ind[name].to_numpy(dtype=np.float64)
    return SymbolData(symbol, cols, ticks)


class Backtest:
    """Runs the strategies over prepared symbols with shared risk and one portfolio."""

    def __init__(
        self, cfg: Config, strategies: Sequence[str] | None = None, jump: bool = True, gate: Any = None
    ):
        """`jump=False` visits every bar while orders are open instead of jumping to the next
        possible fill (slow; the tests use it to prove jumping changes nothing). `gate`: a
        scalper.ml.gate.ModelGate; its refusals are recorded, its accepted signals go to the
        RiskManager with the gate's size multiplier."""
        from scalper.execution.orders import OrderManager
        from scalper.execution.paper import PaperBroker
        from scalper.execution.portfolio import Portfolio
        from scalper.risk import RiskManager
        from scalper.strategies import build_strategies

        self.cfg = cfg
        self.strategies = build_strategies(cfg, strategies)
        self.risk = RiskManager(cfg)
        self.orders = OrderManager(cfg)
        self.broker = PaperBroker(cfg)
        self.portfolio = Portfolio(cfg.risk.starting_equity)
        self._instruments = InstrumentTable(cfg)
        self.jump = jump
        self.gate = gate
        self.tick_mode = cfg.execution.fill_mode == "tick"
        # (fill ts, symbol, cash, position quantity, average price) after every fill
        self._after_fill: list[tuple[int, str, float, float, float]] = []
        self._entries_key: tuple[int, int] | None = None
        self._entries_count: dict[str, int] = {}

    # ----------------------------------------------------------------------------- run

    def run(self, data: Mapping[str, SymbolData]) -> BacktestResult:
        """Backtest `data` (prepared symbols). The cyclic garbage collector is paused meanwhile:
        the run builds hundreds of thousands of lasting objects (signals, records, orders,
        fills, events), next to no cycles, and the collector's passes over them cost ~15% of it."""
        with _gc_paused():
            return self._run(data)

    def _run(self, data: Mapping[str, SymbolData]) -> BacktestResult:
        t0 = time.perf_counter()
        symbols = list(data)
        if self.tick_mode and any(sd.ticks is None for sd in data.values()):
            raise ValueError(
                'execution.fill_mode = "tick" needs the trades behind the bars: backtest a ticks file '
                '(--data TICKS or the replay file), or use fill_mode "bar"'
            )
        signals: list[Signal] = []
        for sd in data.values():
            for strategy in self.strategies:
                signals.extend(strategy.signals(sd.symbol, sd.cols))
        strategy_order = {s.name: i for i, s in enumerate(self.strategies)}
        symbol_order = {s: i for i, s in enumerate(symbols)}
        signals.sort(key=lambda s: (s.ts, symbol_order[s.symbol], strategy_order[s.strategy]))
        gated = self.gate.evaluate(signals, data) if self.gate is not None else None
        book = _TradeBook(self.cfg)
        records: list[SignalRecord] = []
        fills: list[Fill] = []
        index = {s: _Index(sd.ts) for s, sd in data.items()}
        next_bar = {s: 0 for s in symbols}  # first bar index not yet searched for fills
        orders, broker, jump = self.orders, self.broker, self.jump
        # The OrderManager counts the changes to each symbol's orders: what is derived from a
        # symbol's open orders (the list, their next expiry and first possible fill) is kept
        # until its count moves (an order of another symbol changes nothing here).
        versions = orders.versions
        books = {s: _OpenBook() for s in symbols}
        n_bars = {s: len(sd) for s, sd in data.items()}

        def book_of(s: str) -> _OpenBook:
            ob = books[s]
            v = versions.get(s, 0)
            if ob.version != v:
                ob.reset(orders.open_orders(s), v)
            return ob

        close_cols = {s: sd.cols["close"] for s, sd in data.items()}
        here: dict[str, int | None] = {}

        def last_close(s: str) -> float | None:
            """The symbol's close at or before the minute being visited (`t_next`)."""
            i = here[s]
            if i is None:
                i = index[s].last_at_or_before(t_next)
            return float(close_cols[s].item(i)) if i is not None else None

        n_sig = len(signals)
        sig_i = 0
        while True:
            # the next minute at which anything can happen
            t_sig = signals[sig_i].ts if sig_i < n_sig else None
            t_next = t_sig
            for s in symbols:
                ob = book_of(s)
                if not ob.open:
                    continue
                nb = next_bar[s]
                # The open orders stand unchanged until the next signal, a fill, or the next
                # expiry, whichever comes first: an expiry can ADD an order (a limit entry
                # converted to market, active from the bar after the expiry), so bars past
                # it are not searched (nor skipped) with the orders of before.
                t_until = t_sig
                if ob.expiry is not None and (t_until is None or ob.expiry - MIN < t_until):
                    t_until = ob.expiry - MIN
                stop = n_bars[s] if t_until is None else index[s].upto(t_until)
                if jump:
                    # the first fill from `nb` on; the same answer for a later `nb` up to it
                    if ob.start < 0 or nb < ob.start or (ob.fill is not None and nb > ob.fill):
                        ob.fill = broker.first_fill_index(
                            ob.open, data[s].cols, nb, n_bars[s], first_bar_at=index[s].first_at_or_after
                        )
                        ob.start = nb
                    j = ob.fill if ob.fill is not None and ob.fill < stop else None
                else:
                    j = nb if nb < stop else None
                if j is None:
                    next_bar[s] = max(nb, stop)
                else:
                    t_j = index[s].ts_at(j)
                    t_next = t_j if t_next is None or t_j < t_next else t_next
                if ob.expiry is not None:
                    t_e = ob.expiry - MIN  # the bar whose close is the expiry time
                    t_next = t_e if t_next is None or t_e < t_next else t_next
            if t_next is None:
                break
            here = {s: index[s].at(t_next) for s in symbols}  # bar t_next's index (None: no bar)
            # 1. fills during bar t_next
            for s in symbols:
                i = here[s]
                if i is None or i < next_bar[s]:
                    continue
                ob = book_of(s)
                if not ob.open:
                    continue
                next_bar[s] = i + 1
                if jump and ob.start >= 0 and ob.start <= i and (ob.fill is None or i < ob.fill):
                    continue  # nothing can fill (nor an IOC end) before the first possible fill
                bar = data[s].bar(i)
                ticks = data[s].bar_ticks(i) if self.tick_mode else None
                for fill in self._broker_fills(bar, ob.open, ticks):
                    fills.append(fill)
                    self._on_fill(fill, book)
            close_ts = t_next + MIN
            # 2. expiries at the close
            orders.expire(close_ts)
            # 3. mark equity, then signals decided at this close
            self.risk.mark(self._equity_marked(last_close), close_ts)
            if t_sig == t_next:
                while sig_i < n_sig and signals[sig_i].ts == t_next:
                    sig = signals[sig_i]
                    close = float(close_cols[sig.symbol].item(here[sig.symbol]))
                    if gated is None:
                        records.append(self._decide(sig, close))
                    else:
                        records.append(self._decide_gated(sig, close, gated[sig_i]))
                    sig_i += 1
                for s in symbols:
                    if book_of(s).open:
                        i = here[s]
                        next_bar[s] = max(next_bar[s], (i + 1) if i is not None else index[s].upto(t_next))

        equity_ts, equity = self._equity_curve(data)
        result = BacktestResult(
            cfg=self.cfg,
            symbols=symbols,
            trades=book.closed,
            signals=records,
            orders=list(self.orders.orders),
            fills=fills,
            equity_ts=equity_ts,
            equity=equity,
            bars=sum(len(sd) for sd in data.values()),
            seconds=time.perf_counter() - t0,
            open_positions={s: p.quantity for s, p in self.portfolio.positions.items() if p.quantity},
            strategies=[s.name for s in self.strategies],
        )
        return result

    # ----------------------------------------------------------------------------- steps

    def _broker_fills(
        self, bar: Bar, open_orders: list[Order], ticks: np.ndarray | None = None
    ) -> list[Fill]:
        fills, ioc_cancels = self.broker.step(bar, open_orders, ticks)
        for order in ioc_cancels:  # IOC remainders: one bar's chance only
            self.orders.cancel(order.client_order_id, bar.ts + MIN, "ioc")
        return list(fills)

    def _on_fill(self, fill: Fill, book: _TradeBook) -> None:
        order = self.orders.get(fill.client_order_id)
        mult = self._instruments[fill.symbol].multiplier
        realized = self.portfolio.apply_fill(fill, mult)
        pos = self.portfolio.positions[fill.symbol]
        self._after_fill.append((fill.ts, fill.symbol, self.portfolio.cash, pos.quantity, pos.avg_price))
        self.orders.on_fill(fill)
        closed = book.on_fill(fill, order, realized, self.orders)
        for trade in closed:
            self.risk.on_trade_closed(trade.symbol, trade.pnl, fill.ts)

    def _decide_gated(self, signal: Signal, close: float, gd: Any) -> SignalRecord:
        """The gate's decision first: refused -> recorded with its reason; accepted -> sized."""
        if not gd.accepted:
            rec = SignalRecord(signal, False, gd.reason, gd.detail, None, 0.0)
        else:
            rec = self._decide(signal, close, gd.size_multiplier)
        rec.scores, rec.models = dict(gd.scores), dict(self.gate.models)
        return rec

    def _decide(self, signal: Signal, close: float, size_multiplier: float = 1.0) -> SignalRecord:
        """Risk decision and order for a signal decided at the close (price `close`) of its bar."""
        ref = signal.limit_price if signal.limit_price is not None else close
        decision = self.risk.judge(
            signal,
            ref_price=ref,
            positions=self.portfolio.positions,
            open_entry_orders=self._open_entries(),
            size_multiplier=size_multiplier,
        )
        return self._submit(signal, close, decision.reason, decision.detail, decision.intent)

    def _open_entries(self) -> dict[str, int]:
        """`orders.open_counts(ENTRY)`, kept while the orders do not change (read-only)."""
        events = self.orders.events
        key = (id(events), len(events))
        if self._entries_key != key:
            self._entries_key, self._entries_count = key, self.orders.open_counts(OrderRole.ENTRY)
        return self._entries_count

    def _submit(
        self,
        signal: Signal,
        close: float,
        reason: str,
        detail: str | Callable[[], str],
        intent: OrderIntent | None,
    ) -> SignalRecord:
        """The order of an approved decision (`intent`), or the record of a refusal (None)."""
        if intent is None:
            return SignalRecord(signal, False, reason, detail, None, 0.0)
        order = self.orders.submit(intent, signal.decided_ts, ref_price=close)
        ok = order.status != OrderStatus.REJECTED
        return SignalRecord(
            signal,
            ok,
            reason if ok else f"order_rejected:{order.reason}",
            detail,
            order.client_order_id,
            intent.quantity,
        )

    def _equity_marked(self, close_of: Callable[[str], float | None]) -> float:
        """cash + unrealized P&L, each open position at `close_of(symbol)` (its average price
        when there is no close yet)."""
        marks: dict[str, float] = {}
        multipliers: dict[str, float] = {}
        for s, pos in self.portfolio.positions.items():
            if pos.quantity:
                close = close_of(s)
                marks[s] = close if close is not None else pos.avg_price
                multipliers[s] = self._instruments[s].multiplier
        if not marks:  # flat: what Portfolio.equity adds up is nothing
            return self.portfolio.cash + 0.0
        return self.portfolio.equity(marks, multipliers)

    @property
    def cash_after_fills(self) -> list[float]:
        return [cash for _, _, cash, _, _ in self._after_fill]

    def _equity_curve(self, data: Mapping[str, SymbolData]) -> tuple[np.ndarray, np.ndarray]:
        """Equity at every bar close of the union of the symbols' minutes (vectorised), from
        the cash and positions recorded after each fill."""
        grid = np.unique(np.concatenate([sd.ts for sd in data.values()])) if data else np.array([], np.int64)
        if not self._after_fill or grid.size == 0:
            return grid + MIN, np.full(grid.shape[0], self.cfg.risk.starting_equity, dtype=np.float64)
        steps_ts, syms, cash, qty_after, avg_after = zip(*self._after_fill, strict=True)
        traded = dict.fromkeys(syms)  # in the order of their first fill

        # a fill during bar t counts at bar t's close: step functions looked up per grid bar
        def last_step(at_ts: Sequence[int]) -> np.ndarray:
            """Per grid bar, the index of the last step (time-ordered `at_ts`) counted at its
            close, -1 before the first: one pass over the grid, no search per bar."""
            where = np.searchsorted(grid, np.asarray(at_ts, dtype=np.int64), side="right") - 1
            np.maximum(where, 0, out=where)  # a step before the first bar counts from it
            last = np.append(where[1:] != where[:-1], True)  # each bar's last step
            k = np.full(grid.shape[0], -1, dtype=np.int64)
            k[where[last]] = np.flatnonzero(last)
            return np.maximum.accumulate(k)

        def step(k: np.ndarray, values: Sequence[float], default: float) -> np.ndarray:
            vals = np.asarray(values, dtype=np.float64)
            return np.where(k >= 0, vals[np.maximum(k, 0)], default)

        equity = step(last_step(steps_ts), cash, self.cfg.risk.starting_equity)
        for s in traded:
            sd = data[s]
            if np.array_equal(sd.ts, grid):  # a bar in every minute of the grid: no search
                close = sd.cols["close"]
            else:
                last = np.searchsorted(sd.ts, grid, side="right") - 1
                close = np.where(last >= 0, sd.cols["close"][np.maximum(last, 0)], np.nan)
            mine = [n for n, x in enumerate(syms) if x == s]
            k = last_step([steps_ts[n] for n in mine])
            qty = step(k, [qty_after[n] for n in mine], 0.0)
            avg = step(k, [avg_after[n] for n in mine], 0.0)
            mult = self._instruments[s].multiplier
            equity += np.nan_to_num(np.where(qty != 0, qty * (close - avg) * mult, 0.0))
        return grid + MIN, equity


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (restored as it was, also on an error)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _Index:
    """Bar index of a timestamp for one symbol (timestamps sorted, unique)."""

    def __init__(self, ts: np.ndarray):
        self.ts = ts
        self._list = ts.tolist()
        # bisect bound to the list: called with no Python frame (every visit, every order searched)
        # first_at_or_after(t): index of the first bar with ts >= t (len when none)
        self.first_at_or_after: Callable[[int], int] = partial(bisect.bisect_left, self._list)
        # upto(t): index just past the last bar with ts <= t
        self.upto: Callable[[int], int] = partial(bisect.bisect_right, self._list)
        # ts_at(i): the open time of bar i
        self.ts_at: Callable[[int], int] = self._list.__getitem__

    def at(self, t: int) -> int | None:
        i = bisect.bisect_left(self._list, t)
        return i if i < len(self._list) and self._list[i] == t else None

    def last_at_or_before(self, t: int) -> int | None:
        i = bisect.bisect_right(self._list, t) - 1
        return i if i >= 0 else None


class _OpenBook:
    """One symbol's open orders at one version of them (`OrderManager.versions`), with what
    the engine derives from them: their next expiry and, searched from bar `start` on, the
    first bar at which one can fill (`fill`, None: none to the end of the data)."""

    __slots__ = ("expiry", "fill", "open", "start", "version")

    def __init__(self) -> None:
        self.reset([], -1)

    def reset(self, open_orders: list[Order], version: int) -> None:
        self.version = version
        self.open = open_orders
        self.expiry = _next_expiry(open_orders)
        self.start = -1  # not searched yet
        self.fill: int | None = None


def _next_expiry(orders: list[Order]) -> int | None:
    times = [o.expire_ts for o in orders if o.expire_ts is not None]
    return min(times) if times else None


class _TradeBook:
    """Closed round trips from fills: an entry order's fills open a trade, its legs' fills close it."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.open: dict[str, dict[str, Any]] = {}  # entry order id -> trade in progress
        self.closed: list = []
        self._instruments = InstrumentTable(cfg)

    def on_fill(self, fill: Fill, order: Order | None, realized: float, orders: Any) -> list:
        if order is None:
            return []
        if order.role == OrderRole.ENTRY:
            # an expired limit replaced by a market order (`E-mkt`) grows the same trade
            key = order.parent_id if order.parent_id in self.open else order.client_order_id
            t = self.open.get(key)
            if t is None:
                t = self.open[key] = {
                    "qty": 0.0,
                    "cost": 0.0,
                    "fees": 0.0,
                    "exit_qty": 0.0,
                    "exit_value": 0.0,
                    "pnl": 0.0,
                    "entry_ts": fill.ts,
                    "order": order,
                    "reason": "",
                }
            t["qty"] += fill.quantity
            t["cost"] += fill.quantity * fill.price
            t["fees"] += fill.fee
            t["pnl"] += realized
            return []
        parent = order.parent_id
        if parent is None or parent not in self.open:
            # a flatten/exit order: attribute to the symbol's open trades
            matches = [k for k, v in self.open.items() if v["order"].symbol == fill.symbol]
            if not matches:
                return []
            parent = matches[0]
        t = self.open[parent]
        t["exit_qty"] += fill.quantity
        t["exit_value"] += fill.quantity * fill.price
        t["fees"] += fill.fee
        t["pnl"] += realized
        t["reason"] = order.role.value if order.role != OrderRole.EXIT else (order.reason or "exit")
        t["exit_ts"] = fill.ts
        if t["exit_qty"] + 1e-12 < t["qty"]:
            return []
        del self.open[parent]
        entry: Order = t["order"]
        qty = t["qty"]
        entry_price = t["cost"] / qty
        mult = self._instruments[entry.symbol].multiplier
        # R is measured against the risk PLANNED at sizing (|planned entry - stop|), for the
        # quantity filled: a limit filled at a gap open right next to its stop is not a 100 R trade
        planned = orders.planned_risk(entry.client_order_id, entry_price)
        risk = abs(planned[0] - planned[1]) * qty * mult if planned is not None else math.nan
        pnl = t["pnl"] - t["fees"]
        trade = Trade(
            symbol=entry.symbol,
            strategy=entry.strategy,
            side="long" if entry.side.sign > 0 else "short",
            quantity=qty,
            entry_ts=t["entry_ts"],
            entry_price=entry_price,
            exit_ts=t["exit_ts"],
            exit_price=t["exit_value"] / t["exit_qty"],
            fees=t["fees"],
            pnl=pnl,
            r_multiple=pnl / risk if risk and math.isfinite(risk) else math.nan,
            exit_reason=t["reason"],
            entry_order_id=entry.client_order_id,
        )
        self.closed.append(trade)
        return [trade]


# --------------------------------------------------------------------------------- data in


def load_bars(
    cfg: Config,
    data: str | None = None,
    synthetic: bool = False,
    symbols: Sequence[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    ticks_out: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    symbol: str | None = None,
    warmup: int = 0,
    warmup_out: dict[str, int] | None = None,
    synthetic_ticks: bool = False,
) -> dict[str, Any]:
    """{symbol: bars DataFrame} from a ticks or bars file (CSV/Parquet), the synthetic market,
    or, with neither, the configured replay file. `start`/`end`: ISO dates or times (UTC).
    Pass `ticks_out={}` to also get the trades behind tick-built bars (tick-mode fills).

    `symbol`: the symbol of a file without a symbol column (else feed.replay.default_symbol,
    with a warning naming it and its instrument when the file is `data`), or the one symbol
    to keep. `warmup`: up to that many bars before `start` are kept when the data has them
    (history for the indicators and rules, see `run_from`); `warmup_out` receives how many
    each symbol got. `synthetic`: bars drawn directly from the synthetic market (fast);
    `synthetic_ticks`: bars built by the CandleManager from its ticks, the bars `scalper run`
    makes of the same feed."""
    import pandas as pd

    from scalper.feeds.replay import file_columns, read_bars, read_ticks
    from scalper.feeds.synthetic import synthetic_bars
    from scalper.feeds.synthetic import synthetic_ticks as synthetic_tick_series

    wanted = list(symbols) if symbols else None
    out: dict[str, Any] = {}
    if synthetic:
        for sym in wanted or ([symbol] if symbol else cfg.symbols):
            out[sym] = synthetic_bars(cfg.feed.synthetic, sym)
    elif synthetic_ticks:
        for sym in wanted or ([symbol] if symbol else cfg.symbols):
            t = synthetic_tick_series(cfg.feed.synthetic, sym)
            out[sym] = _bars_from_ticks(cfg, TickBatch(sym, t["ts"], t["price"], t["size"]), ticks_out)
    else:
        rcfg = cfg.feed.replay
        path = data or rcfg.path
        names = set(file_columns(path))
        c = rcfg.columns
        kind = ("bars" if {c.open, c.high, c.low, c.close} <= names else "ticks") if data else rcfg.kind
        default_symbol = rcfg.default_symbol
        if c.symbol is not None and c.symbol in names:
            if symbol is not None:
                wanted = wanted or [symbol]
        elif symbol is not None:
            default_symbol = symbol
        if kind == "bars":
            frame = read_bars(
                path,
                rcfg.columns,
                timestamp_unit=rcfg.timestamp_unit,
                default_symbol=default_symbol,
                symbols=wanted,
            )
            for sym, group in frame.groupby("symbol", sort=False):
                out[str(sym)] = group.drop(columns=["symbol"]).reset_index(drop=True)
        else:
            batches = read_ticks(
                path,
                rcfg.columns,
                timestamp_unit=rcfg.timestamp_unit,
                default_symbol=default_symbol,
                symbols=wanted,
            )
            for sym, batch in batches.items():
                out[sym] = _bars_from_ticks(cfg, batch, ticks_out)
        if data and symbol is None and (c.symbol is None or c.symbol not in names):
            _warn_default_symbol(cfg, data, c.symbol)  # once the file has been read without error
    lo = pd.Timestamp(start, tz="UTC").value if start else None
    hi = pd.Timestamp(end, tz="UTC").value if end else None
    for sym, frame in list(out.items()):
        ts = frame["timestamp"].to_numpy()  # sorted (one symbol's bars)
        a = int(np.searchsorted(ts, lo)) if lo is not None else 0
        b = int(np.searchsorted(ts, hi)) if hi is not None else len(ts)
        first = max(0, a - max(0, warmup)) if b > a else a  # no bar in range: no history either
        if warmup_out is not None:
            warmup_out[sym] = a - first
        out[sym] = frame.iloc[first:b].reset_index(drop=True)
    return out


def _warn_default_symbol(cfg: Config, path: str, column: str | None) -> None:
    """A file without a symbol column is traded as feed.replay.default_symbol, with that
    symbol's instrument (multiplier, fees): say so, it may not be what the file holds."""
    sym = cfg.feed.replay.default_symbol
    rules = cfg.instrument(sym)
    fee = "execution fee bps" if rules.fee_per_unit is None else f"fee per unit {rules.fee_per_unit:g}"
    log.warning(
        "%s has no symbol column (%s): its rows are traded as %s (feed.replay.default_symbol) with "
        "instruments.%s (multiplier %g, tick size %g, %s); name its symbol with --symbol NAME",
        path,
        repr(column) if column is not None else "replay.columns.symbol is null",
        sym,
        sym if sym in cfg.instruments else "default",
        rules.multiplier,
        rules.tick_size,
        fee,
    )


def _bars_from_ticks(
    cfg: Config, batch: TickBatch, ticks_out: dict[str, tuple[np.ndarray, np.ndarray]] | None
) -> Any:
    """One symbol's ticks -> its bars by the CandleManager (the candle rules of `cfg`), as a
    DataFrame with int64 timestamps; the trades go to `ticks_out` (time order) if given."""
    from scalper.candles import CandleManager
    from scalper.tables import bars_frame

    sym = batch.symbol
    if ticks_out is not None:
        order = np.argsort(batch.ts, kind="stable")
        ticks_out[sym] = (
            np.asarray(batch.ts)[order].astype(np.int64),
            np.asarray(batch.price)[order].astype(np.float64),
        )
    manager = CandleManager(sym, cfg.candles)
    bars = manager.on_ticks(batch) + manager.flush()
    frame = bars_frame(sym, bars).drop(columns=["symbol"])
    frame["timestamp"] = frame["timestamp"].astype("int64")
    return frame


def start_ns(start: str | None) -> int | None:
    """--from as int64 ns UTC (None: trade from the first bar)."""
    import pandas as pd

    return pd.Timestamp(start, tz="UTC").value if start else None


class _TradingFrom:
    """A strategy whose signals before `start` (on warm-up bars) are held back from the engine.

    Its rule runs over every bar, warm-up included, so a signal from `start` on is the one
    the whole history gives; the held ones go to `held`."""

    def __init__(self, inner: Any, start: int, held: list[Signal]):
        self._inner, self._start, self._held = inner, start, held

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def signals(self, symbol: str, cols: Any) -> list[Signal]:
        out = self._inner.signals(symbol, cols)
        self._held.extend(s for s in out if s.ts < self._start)
        return [s for s in out if s.ts >= self._start]


def run_from(engine: Backtest, data: Mapping[str, SymbolData], start: int | None) -> BacktestResult:
    """`engine.run(data)` trading from bar open time `start` (ns) on; `start` None: all bars.

    The bars before `start` are warm-up (freqtrade's startup candles): the indicators and the
    rules' windows see them, but no order comes from them. A signal on one is recorded
    refused (reason "warmup"), so that the run directory still says what the rules saw (and
    `scalper verify` finds every signal the bars call for); the equity curve, the bar count
    and the statistics start at `start`. `result.warmup_bars`: the warm-up bars per symbol.
    When the warm-up reaches back to the data's first bar, the signals from `start` on are
    exactly those of the run over all bars (a test)."""
    if start is None:
        return engine.run(data)
    held: list[Signal] = []
    strategies = engine.strategies
    engine.strategies = [_TradingFrom(s, start, held) for s in strategies]
    try:
        result = engine.run(data)
    finally:
        engine.strategies = strategies
    symbol_order = {s: i for i, s in enumerate(data)}
    strategy_order = {s.name: i for i, s in enumerate(strategies)}
    held.sort(key=lambda s: (s.ts, symbol_order[s.symbol], strategy_order[s.strategy]))
    why = "a warm-up bar before --from: history for the indicators and rules, not traded"
    result.signals = [SignalRecord(s, False, "warmup", why, None, 0.0) for s in held] + result.signals
    keep = result.equity_ts > start  # the closes of the bars from `start` on
    result.equity_ts, result.equity = result.equity_ts[keep], result.equity[keep]
    result.warmup_bars = {s: int(np.searchsorted(sd.ts, start)) for s, sd in data.items()}
    result.bars -= sum(result.warmup_bars.values())
    return result


# --------------------------------------------------------------------------------- results out


def summarize(result: BacktestResult) -> dict[str, Any]:
    """summary.json: overall, per strategy and per symbol figures, and the trade fingerprint."""
    from scalper.report import equity_stats, fingerprint, group_stats, time_in_market_pct, trade_stats

    cfg = result.cfg
    start = float(cfg.risk.starting_equity)
    span_ns = int(result.equity_ts[-1] - result.equity_ts[0]) + MIN if result.equity_ts.size else 0
    days = max(span_ns / 86_400e9, 1e-9)
    in_market = round(time_in_market_pct(result.trades, result.equity_ts), 4)
    per_year = cfg.backtest.periods_per_year
    overall = {
        **trade_stats(result.trades, days),
        **equity_stats(result.equity, start, per_year),
        "exposure_pct": in_market,
    }
    by_strategy = {
        name: group_stats(
            [t for t in result.trades if t.strategy == name], days, start, result.equity_ts, per_year
        )
        for name in sorted({s.signal.strategy for s in result.signals} | {t.strategy for t in result.trades})
    }
    by_symbol = {
        sym: group_stats(
            [t for t in result.trades if t.symbol == sym], days, start, result.equity_ts, per_year
        )
        for sym in result.symbols
    }
    refused: dict[str, int] = {}
    for rec in result.signals:
        if not rec.approved:
            refused[rec.reason] = refused.get(rec.reason, 0) + 1
    return {
        "symbols": result.symbols,
        "strategies": result.strategies if result.strategies is not None else _enabled_strategies(cfg),
        "bars": result.bars,
        "warmup_bars": result.warmup_bars,
        "days": round(days, 4),
        "starting_equity": start,
        "signals": len(result.signals),
        "signals_approved": sum(1 for r in result.signals if r.approved),
        "signals_refused": dict(sorted(refused.items())),
        "orders": len(result.orders),
        "fills": len(result.fills),
        "open_positions_at_end": result.open_positions,
        "overall": overall,
        "by_strategy": by_strategy,
        "by_symbol": by_symbol,
        "trade_fingerprint": fingerprint(result.trades),
        "seconds": round(result.seconds, 3),
        "bars_per_second": round(result.bars / result.seconds) if result.seconds > 0 else None,
        "risk_halted": None,
    }


def _enabled_strategies(cfg: Config) -> list[str]:
    from scalper.strategies import STRATEGIES

    return [name for name in STRATEGIES if getattr(cfg.strategies, name).enabled]


def _explainer(result: BacktestResult):
    """signal -> its strategy's human sentence (the reason code if the strategy is unknown)."""
    from scalper.strategies import build_strategies

    names = sorted({rec.signal.strategy for rec in result.signals})
    try:
        by_name = {st.name: st for st in build_strategies(result.cfg, names)} if names else {}
    except ValueError:  # a strategy this build does not know (e.g. registered by a test)
        by_name = {}

    def explain(signal: Signal) -> str:
        st = by_name.get(signal.strategy)
        return st.explain(signal) if st is not None else signal.reason

    return explain


_ORDER_COLUMNS = [f.encode_name for f in msgspec.structs.fields(Order)]


def write_run(result: BacktestResult, out_dir: str, config_json: bytes | None = None) -> dict[str, Any]:
    """The run directory: trades, orders, signals, equity, ledger.sqlite, summary.json, config.json."""
    import json
    from pathlib import Path

    import msgspec
    import pandas as pd

    from scalper.report import TRADE_COLUMNS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trades = pd.DataFrame([msgspec.structs.asdict(t) for t in result.trades], columns=list(TRADE_COLUMNS))
    for col in ("entry_ts", "exit_ts"):
        trades[col.replace("_ts", "_time")] = pd.to_datetime(trades[col], unit="ns", utc=True)
    trades.to_parquet(out / "trades.parquet", index=False)
    trades.to_csv(out / "trades.csv", index=False)
    order_rows = [msgspec.to_builtins(o) for o in result.orders]
    # a run without orders still gets the columns (readers and verify look them up)
    orders = pd.DataFrame(order_rows) if order_rows else pd.DataFrame(columns=_ORDER_COLUMNS)
    orders.to_parquet(out / "orders.parquet", index=False)
    sig_rows = []
    explain = _explainer(result)
    for rec in result.signals:
        s = rec.signal
        sig_rows.append(
            {
                "symbol": s.symbol,
                "ts": s.ts,
                "time": pd.Timestamp(s.ts, unit="ns", tz="UTC"),
                "strategy": s.strategy,
                "side": s.side.value,
                "order_type": s.order_type.value,
                "limit_price": s.limit_price,
                "stop_loss": s.stop_loss,
                "take_profit": s.take_profit,
                "approved": rec.approved,
                "decision": rec.reason,
                "detail": rec.detail,
                "client_order_id": rec.client_order_id,
                "quantity": rec.quantity,
                "reason": s.reason,
                "explanation": explain(s),
                "values": json.dumps(s.values),
                "model_scores": json.dumps(rec.scores) if rec.scores else None,
                # the models' view of the signal, when they judged it (see docs/SERVE.md)
                "regime": _regime_of(rec.scores),
                "p_win": rec.scores.get("p_validator"),
                "size_multiplier": rec.scores.get("size_multiplier"),
                "models": json.dumps(rec.models) if rec.models else None,
            }
        )
    pd.DataFrame(sig_rows).to_parquet(out / "signals.parquet", index=False)
    pd.DataFrame(
        {"time": pd.to_datetime(result.equity_ts, unit="ns", utc=True), "equity": result.equity}
    ).to_parquet(out / "equity.parquet", index=False)
    if config_json is not None:
        (out / "config.json").write_bytes(config_json)
    summary = summarize(result)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _regime_of(scores: Mapping[str, float]) -> str | None:
    """The most probable regime in a signal's model scores (None without a regime model)."""
    probs = {k[2:]: v for k, v in scores.items() if k in ("p_trending", "p_ranging", "p_volatile")}
    return max(probs, key=probs.__getitem__) if probs else None


def write_ledger(
    bt: Backtest,
    result: BacktestResult,
    path: str,
    config_json: str | None = None,
    risk_state: msgspec.Struct | None = None,
) -> None:
    """ledger.sqlite of a finished backtest, in one transaction: every order with its whole
    transition history, every fill, the final positions, equity at each fill, the risk state
    (`bt.risk.state` unless given: a paper run's risk manager lives apart from its orders)."""
    from pathlib import Path

    import msgspec

    from scalper.ledger import Ledger

    for stale in (Path(path), Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)  # a rerun into the same directory starts a fresh ledger
    ledger = Ledger(path)
    try:
        with ledger.batch():
            ledger.set_meta("kind", "backtest")
            ledger.set_meta("starting_cash", float(bt.cfg.risk.starting_equity))
            if config_json is not None:
                ledger.set_meta("config", config_json)
            for order in bt.orders.orders:
                ledger.record_order(
                    msgspec.structs.replace(
                        order, status=OrderStatus.NEW, filled_qty=0.0, avg_fill_price=0.0, reason=""
                    )
                )
            for ev in bt.orders.events:
                ledger.record_transition(ev.ts, ev.client_order_id, ev.from_status, ev.to_status, ev.reason)
            for fill in result.fills:
                ledger.record_fill(fill)
            for order in bt.orders.orders:
                ledger.record_order(order)
            for position in bt.portfolio.positions.values():
                ledger.record_position(position)
            # equity at the close of the bar holding each fill, with the cash after that fill: the
            # first close after the fill's time (a backtest fill has its bar's open, a live one
            # the exchange's time inside the minute)
            at = np.searchsorted(result.equity_ts, [f.ts for f in result.fills], side="right").tolist()
            points = [
                (int(result.equity_ts[i]), cash, float(result.equity[i]))
                for i, cash in zip(at, bt.cash_after_fills, strict=True)
                if i < result.equity.shape[0]
            ]
            ledger.record_equity_many(points)
            ledger.save_risk_state(risk_state if risk_state is not None else bt.risk.state)
    finally:
        ledger.close()


def format_summary(summary: dict[str, Any], out: str) -> str:
    """The lines `scalper backtest` prints (every figure is in summary.json)."""
    o = summary["overall"]

    from scalper.report import pnl_line

    def num(x: Any, fmt: str = ",.2f", unit: str = "") -> str:
        if x is None:
            return "n/a"
        text = format(x, fmt)
        if text.startswith("-") and float(text[1:].replace(",", "")) == 0:  # -0.001 -> 0.00, not -0.00
            text = text[1:]
        return text + unit

    lines = [
        f"backtest {', '.join(summary['symbols'])}: {summary['bars']:,} bars ({summary['days']:.1f} days) "
        f"in {summary['seconds']:.2f} s ({num(summary['bars_per_second'], ',.0f')} bars/s)",
        f"  signals {summary['signals']:,}: approved {summary['signals_approved']:,}, refused "
        + (", ".join(f"{k} {v:,}" for k, v in summary["signals_refused"].items()) or "none"),
        f"  {pnl_line(summary)}, "
        f"win rate {num(o['win_rate'] and o['win_rate'] * 100, '.1f', '%')}, "
        f"profit factor {num(o['profit_factor'])}, "
        f"max drawdown {num(o['max_drawdown_pct'], unit='%')}, Sharpe {num(o['sharpe'])}",
    ]
    for name, st in summary["by_strategy"].items():
        lines.append(f"    {name:>15}: {st['trades']:>5,} trades, net {num(st['net_pnl'])}")
    lines.append(f"  trade fingerprint {summary['trade_fingerprint'][:16]}")
    lines.append(
        f"  files: {out}/ (summary.json, trades.csv, trades.parquet, orders.parquet, signals.parquet, "
        "equity.parquet, ledger.sqlite, config.json)"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------- many runs


class BacktestJob(msgspec.Struct, frozen=True):
    """One backtest of a batch (a symbol group x a parameter set); runs anywhere (a Ray task)."""

    name: str
    symbols: list[str]
    overrides: dict[str, Any] = msgspec.field(default_factory=dict)
    data: str | None = None
    synthetic: bool = False
    start: str | None = None
    end: str | None = None
    strategies: list[str] | None = None
    symbol: str | None = None  # the symbol of a file without a symbol column (--symbol)
    synthetic_ticks: bool = False  # bars built from the synthetic market's ticks (feed.kind synthetic)


class JobResult(msgspec.Struct):
    job: BacktestJob
    summary: dict[str, Any]
    trades: list[Trade]
    seconds: float


def run_job(cfg: Config, job: BacktestJob) -> JobResult:
    """Load, prepare and backtest one job (pure: the Ray task is a thin wrapper around this)."""
    from scalper.config import with_overrides

    t0 = time.perf_counter()
    cfg = with_overrides(cfg, job.overrides) if job.overrides else cfg
    ticks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    bars = load_bars(
        cfg,
        job.data,
        job.synthetic,
        job.symbols,
        job.start,
        job.end,
        ticks_out=ticks,
        symbol=job.symbol,
        warmup=cfg.candles.warmup_bars if job.start else 0,
        synthetic_ticks=job.synthetic_ticks,
    )
    data = {s: prepare(s, b, cfg, ticks.get(s)) for s, b in bars.items() if len(b)}
    from scalper.live_gate import configured_gate

    engine = Backtest(cfg, job.strategies, gate=configured_gate(cfg))
    result = run_from(engine, data, start_ns(job.start))
    return JobResult(job, summarize(result), result.trades, time.perf_counter() - t0)


def make_jobs(
    symbols: Sequence[str],
    *,
    per_symbol: bool,
    grid: Sequence[dict[str, Any]] = (),
    **common: Any,
) -> list[BacktestJob]:
    """Symbols (one job each, or one job for all) x parameter sets (the grid)."""
    groups = [[s] for s in symbols] if per_symbol else [list(symbols)]
    params = list(grid) or [{}]
    jobs = []
    for p_i, overrides in enumerate(params):
        for group in groups:
            name = "+".join(group) if len(group) <= 3 else f"{group[0]}+{len(group) - 1}"
            if len(params) > 1:
                name += f"#{p_i}"
            jobs.append(BacktestJob(name=name, symbols=group, overrides=dict(overrides), **common))
    return jobs


def combine(results: Sequence[JobResult]) -> dict[str, Any]:
    """One summary of many jobs: totals, a row per job, and a fingerprint over all trades."""
    import hashlib

    rows = []
    for r in results:
        o = r.summary["overall"]
        rows.append(
            {
                "job": r.job.name,
                "symbols": r.job.symbols,
                "overrides": r.job.overrides,
                "bars": r.summary["bars"],
                "trades": o["trades"],
                "net_pnl": o["net_pnl"],
                "return_pct": o["return_pct"],
                "max_drawdown_pct": o["max_drawdown_pct"],
                "sharpe": o["sharpe"],
                "win_rate": o["win_rate"],
                "profit_factor": o["profit_factor"],
                "trade_fingerprint": r.summary["trade_fingerprint"],
                "seconds": round(r.seconds, 3),
            }
        )
    h = hashlib.sha256()
    for row in sorted(rows, key=lambda x: x["job"]):
        h.update(f"{row['job']}:{row['trade_fingerprint']}".encode())
    return {
        "jobs": len(rows),
        "bars": sum(r["bars"] for r in rows),
        "trades": sum(r["trades"] for r in rows),
        "net_pnl": sum(r["net_pnl"] for r in rows),
        "task_seconds": round(sum(r.seconds for r in results), 3),
        "fingerprint": h.hexdigest(),
        "by_job": rows,
    }


def write_combined(
    results: Sequence[JobResult], out_dir: str, wall_seconds: float, cfg: Config | None = None
) -> dict[str, Any]:
    """summary.json (combined), jobs.csv, trades.parquet/csv (with a job column) and, given
    `cfg`, the configuration the jobs started from (config.json; each job's overrides are in
    jobs.csv) in `out_dir`."""
    import json
    from pathlib import Path

    import pandas as pd

    from scalper.report import TRADE_COLUMNS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = combine(results)
    summary["wall_seconds"] = round(wall_seconds, 3)
    summary["bars_per_second"] = round(summary["bars"] / wall_seconds) if wall_seconds > 0 else None
    if cfg is not None:
        (out / "config.json").write_bytes(msgspec.json.format(msgspec.json.encode(cfg), indent=2) + b"\n")
    rows = [{"job": r.job.name, **msgspec.structs.asdict(t)} for r in results for t in r.trades]
    trades = pd.DataFrame(rows, columns=["job", *TRADE_COLUMNS])
    trades.to_parquet(out / "trades.parquet", index=False)
    trades.to_csv(out / "trades.csv", index=False)
    pd.DataFrame(summary["by_job"]).to_csv(out / "jobs.csv", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary
