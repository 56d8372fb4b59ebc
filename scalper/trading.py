"""The live decision loop: closed bars arrive one minute at a time, decisions follow at once.

`TradingSession` is what the Ray runtime's actors will host (candle shards feed it closed
bars, the trading service owns its orders). It runs the backtest's components and steps —
it IS a `Backtest`, minus the look at the future the fast engine uses to jump — so that a
paper run and `scalper backtest` over the same bars make the same decisions:

    minute t:  fills of open orders during bar t (PaperBroker.step) -> OrderManager, Portfolio
               at t's close: limit expiry; streaming indicators update; each strategy's
               `on_bar` over the newest rows; equity mark -> RiskManager; decisions -> orders

The risk manager is marked at the same event times as in the backtest (a minute with a
fill, an expiry or a signal), so halts trip at the same moment in both. Indicators come from
the streaming path (equal to pandas_ta's batch on every bar; see tests).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping, Sequence

import numpy as np

from scalper.backtest import MIN, Backtest, SignalRecord, _TradeBook
from scalper.config import Config
from scalper.report import Trade
from scalper.types import Bar, Fill

log = logging.getLogger(__name__)

_BAR_FIELDS = ("open", "high", "low", "close", "volume")


class TradingSession(Backtest):
    """Bar-by-bar trading over many symbols with shared risk and one portfolio (no Ray, no I/O)."""

    def __init__(self, cfg: Config, strategies: Sequence[str] | None = None):
        from scalper.indicators import StreamingIndicators, indicator_columns

        super().__init__(cfg, strategies, jump=False)
        self.symbols = list(cfg.symbols)
        self._rank = {s: i for i, s in enumerate(self.symbols)}
        self._names = indicator_columns(cfg.indicators)
        self._indicators = {s: StreamingIndicators(cfg.indicators) for s in self.symbols}
        self._lookback = max((st.lookback() for st in self.strategies), default=1)
        self._history: dict[str, dict[str, deque]] = {
            s: {c: deque(maxlen=self._lookback) for c in ("timestamp", *_BAR_FIELDS, *self._names)}
            for s in self.symbols
        }
        self._last_close: dict[str, float] = {}
        self._last_minute: int | None = None
        self.book = _TradeBook(cfg)
        self.records: list[SignalRecord] = []
        self.fills: list[Fill] = []

    @property
    def trades(self) -> list[Trade]:
        return self.book.closed

    def on_minute(
        self, bars: Sequence[Bar], ticks: Mapping[str, np.ndarray] | None = None
    ) -> list[SignalRecord]:
        """The closed bars of one minute (any subset of the symbols); returns its decisions.

        `ticks` (tick-mode fills): {symbol: that bar's trade prices in time order}.
        """
        if not bars:
            return []
        t = bars[0].ts
        if any(b.ts != t for b in bars):
            raise ValueError("on_minute: every bar must belong to the same minute")
        if self._last_minute is not None and t <= self._last_minute:
            raise ValueError(f"on_minute: minute {t} is not after the last one ({self._last_minute})")
        bars = sorted(bars, key=lambda b: self._rank.get(b.symbol, len(self._rank)))
        self._catch_up_expiries(t)
        close_ts = t + MIN
        event = False
        # 1. fills during bar t
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
        # 2. expiries at the close
        if self.orders.expire(close_ts):
            event = True
        # 3. the bar into the indicators, the strategies on the newest rows
        signals = []
        for bar in bars:
            self._last_close[bar.symbol] = bar.close
            ind = self._indicators[bar.symbol]
            ind.update_bar(bar)
            hist = self._history[bar.symbol]
            hist["timestamp"].append(bar.ts)
            for name in _BAR_FIELDS:
                hist[name].append(getattr(bar, name))
            for name, value in ind.values().items():
                hist[name].append(value)
            window = {c: np.asarray(v) for c, v in hist.items()}
            for strategy in self.strategies:
                sig = strategy.on_bar(bar.symbol, window)
                if sig is not None:
                    signals.append((sig, bar.close))
        # 4. mark, then decide (the backtest's event times and order)
        if signals or event:
            self.risk.mark(self._equity_marked(self._last_close.get), close_ts)
        out = [self._decide(sig, close) for sig, close in signals]
        self.records.extend(out)
        self._last_minute = t
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
