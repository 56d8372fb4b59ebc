"""The Strategy interface: ONE vectorised rule that serves the backtest and the live path.

A strategy's entry rule is written once, in `rule(cols)`, as numpy over whole columns (bar
columns such as `close`, `high`, `volume` and indicator columns named by
`scalper.indicators.indicator_columns`). Row i of the result uses rows <= i only: positive
lags (`shift(x, 1)`), causal windows, never a centered window or a future row. Whatever a row
needs and does not have (NaN, or too little history) gives no signal on that row.

* Backtest: `rule` over all bars at once (`signals(symbol, cols)` wraps the nonzero rows as
  `scalper.types.Signal`s; an engine may use the `SignalArrays` directly).
* Live: `on_bar(symbol, window)` runs the SAME `rule` on the newest `lookback()` rows and
  returns the newest row's signal. Both paths are one function, so they agree by construction
  (and tests/test_strategies.py proves it on real data).

`SignalArrays.reason` is a small int code; `Strategy.reason_names[code]` is its stable name,
which is what `Signal.reason` carries, and `Strategy.reasons[code]` a `str.format` template
filled, off the hot path, from the values that triggered the signal (`explain(signal)`).
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

import numpy as np

from scalper.config import Config
from scalper.types import OrderType, Side, Signal

log = logging.getLogger(__name__)

__all__ = [
    "LONG_CODE",
    "NONE",
    "SHORT_CODE",
    "SignalArrays",
    "Strategy",
    "as_columns",
    "market_arrays",
    "reason_from",
    "shift",
    "side_from",
]

_EMPTY: Mapping[str, np.ndarray] = MappingProxyType({})

# reason codes shared by every strategy: 0 = no signal, 1 = the long rule, 2 = the short rule
NONE, LONG_CODE, SHORT_CODE = 0, 1, 2


class SignalArrays(NamedTuple):
    """The rule's answer for every row; all arrays have the input's length.

    side: int8, +1 long / -1 short / 0 none. limit_price: float64, NaN = market order (and
    where no signal). stop_loss, take_profit: float64, NaN where no signal. expiry_bars: int32,
    0 = none. reason: int8 code (0 where no signal). extra: derived series the rule computed
    that explain a signal (e.g. the breakout's N-bar high); `signals` adds them to `values`.
    """

    side: np.ndarray
    limit_price: np.ndarray
    stop_loss: np.ndarray
    take_profit: np.ndarray
    expiry_bars: np.ndarray
    reason: np.ndarray
    extra: Mapping[str, np.ndarray] = _EMPTY


def shift(x: np.ndarray, lag: int = 1) -> np.ndarray:
    """x moved `lag` >= 1 rows later (row i holds x[i - lag]); the first `lag` rows are NaN."""
    if lag < 1:
        raise ValueError(f"shift: lag must be >= 1 (no look-ahead), got {lag}")
    out = np.empty(x.shape[0], dtype=np.float64)
    out[:lag] = np.nan
    out[lag:] = x[:-lag] if lag < x.shape[0] else x[:0]
    return out


def side_from(long: np.ndarray, short: np.ndarray) -> np.ndarray:
    """int8 side from the two boolean masks; a row where both hold (bad data) gets none."""
    return long.astype(np.int8) - short.astype(np.int8)


def reason_from(side: np.ndarray) -> np.ndarray:
    """Reason code 1 for longs, 2 for shorts, 0 elsewhere."""
    code = np.zeros(side.shape[0], dtype=np.int8)
    code[side > 0] = LONG_CODE
    code[side < 0] = SHORT_CODE
    return code


def market_arrays(
    side: np.ndarray,
    close: np.ndarray,
    atr: np.ndarray,
    stop_atr: float,
    target_atr: float,
    extra: Mapping[str, np.ndarray] = _EMPTY,
) -> SignalArrays:
    """SignalArrays of a market entry at `close` with ATR-multiple stop and target."""
    n = side.shape[0]
    sgn = side.astype(np.float64)
    on = side != 0
    stop = np.where(on, close - sgn * (stop_atr * atr), np.nan)
    target = np.where(on, close + sgn * (target_atr * atr), np.nan)
    return SignalArrays(
        side=side,
        limit_price=np.full(n, np.nan),
        stop_loss=stop,
        take_profit=target,
        expiry_bars=np.zeros(n, dtype=np.int32),
        reason=reason_from(side),
        extra=extra,
    )


def as_columns(data: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """numpy columns `names` from a mapping of arrays or a DataFrame (timestamp as int64 ns)."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        try:
            col = data[name]
        except KeyError:
            raise KeyError(f"strategy input lacks column {name!r}") from None
        if name == "timestamp" and getattr(getattr(col, "dtype", None), "tz", None) is not None:
            col = col.dt.tz_convert(None)  # a tz-aware pandas column: its UTC wall time
        a = np.asarray(col)
        if name == "timestamp":
            if a.dtype.kind == "M":
                a = a.astype("datetime64[ns]").view(np.int64)
            out[name] = a.astype(np.int64, copy=False)
        else:
            out[name] = a.astype(np.float64, copy=False)
    return out


class Strategy(ABC):
    """An entry rule over bar + indicator columns. Subclasses set `name`, the reason tuples,
    and implement `columns`, `lookback` and `rule`."""

    name: ClassVar[str]
    # index = reason code; 0 is "no signal"
    reason_names: ClassVar[tuple[str, ...]] = ("none", "long", "short")
    reasons: ClassVar[tuple[str, ...]] = ("", "long", "short")

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.section = getattr(cfg.strategies, self.name)
        self.allow_short = bool(cfg.strategies.allow_short)
        self.rsi_col = f"rsi_{cfg.indicators.rsi_length}"
        self.atr_col = f"atr_{cfg.indicators.atr_length}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.section!r}, allow_short={self.allow_short})"

    # ------------------------------------------------------------------ the rule (abstract)

    @abstractmethod
    def columns(self) -> list[str]:
        """Bar/indicator columns the rule reads."""

    @abstractmethod
    def lookback(self) -> int:
        """Rows of history the rule needs, the current row included."""

    @abstractmethod
    def rule(self, cols: Mapping[str, np.ndarray]) -> SignalArrays:
        """THE rule, vectorised over rows; row i uses rows <= i only."""

    def reason_fields(self, values: Mapping[str, float]) -> dict[str, Any]:
        """Named fields for the `reasons` templates, from a signal's `values` (off the hot path)."""
        return dict(values)

    def explain(self, signal: Signal) -> str:
        """The human sentence of one of this strategy's signals (its reason code + trigger values).

        A Signal carries the machine reason code (`reason_names`, e.g. "ema_cross_up"); the
        sentence is made when it is shown or written, not on the hot path.
        """
        try:
            code = self.reason_names.index(signal.reason)
        except ValueError:
            return signal.reason
        return self.reason_text(code, signal.values)

    def reason_text(self, code: int, values: Mapping[str, float]) -> str:
        """The human reason of a signal with reason `code` and trigger `values`."""
        if code == NONE:
            return ""
        try:
            return self.reasons[code].format(**self.reason_fields(values))
        except (KeyError, IndexError, ValueError) as exc:  # never let a message kill a signal
            log.warning("%s: cannot format reason %d (%s)", self.name, code, exc)
            return self.reason_names[code] if code < len(self.reason_names) else str(code)

    # ------------------------------------------------------------------ the two paths

    def _inputs(self, cols: Any) -> dict[str, np.ndarray]:
        return as_columns(cols, ["timestamp", *self.columns()])

    def _signal(self, symbol: str, cols: Mapping[str, np.ndarray], out: SignalArrays, i: int) -> Signal:
        side = int(out.side[i])
        values = {c: float(cols[c][i]) for c in self.columns()}
        for key, arr in out.extra.items():
            values[key] = float(arr[i])
        limit = float(out.limit_price[i])
        code = int(out.reason[i])
        expiry = int(out.expiry_bars[i])
        return Signal(
            symbol=symbol,
            ts=int(cols["timestamp"][i]),
            strategy=self.name,
            side=Side.BUY if side > 0 else Side.SELL,
            order_type=OrderType.LIMIT if math.isfinite(limit) else OrderType.MARKET,
            stop_loss=float(out.stop_loss[i]),
            take_profit=float(out.take_profit[i]),
            limit_price=limit if math.isfinite(limit) else None,
            expiry_bars=expiry if expiry > 0 else None,
            reason=self.reason_names[code],
            values=values,
        )

    def signals(self, symbol: str, cols: Any) -> list[Signal]:
        """Backtest path: the rule over every row; one Signal per row that fires, in row order.

        `cols`: a mapping of equal-length columns (or a DataFrame) holding `timestamp`
        (int64 ns, bar open time) and every name in `columns()`.
        """
        arrays = self._inputs(cols)
        out = self.rule(arrays)
        rows = np.flatnonzero(out.side)
        log.debug("%s %s: %d signals over %d rows", self.name, symbol, rows.size, out.side.shape[0])
        # gather every needed value at the signal rows with one numpy take per column, then
        # build the Signals exactly as _signal does for one row (same values, same types)
        names = [*self.columns(), *out.extra]
        picked = [arrays[c][rows].astype(np.float64).tolist() for c in self.columns()]
        picked += [np.asarray(a)[rows].astype(np.float64).tolist() for a in out.extra.values()]
        side = out.side[rows].tolist()
        limit = out.limit_price[rows].astype(np.float64).tolist()
        stop = out.stop_loss[rows].astype(np.float64).tolist()
        target = out.take_profit[rows].astype(np.float64).tolist()
        expiry = out.expiry_bars[rows].tolist()
        code = out.reason[rows].tolist()
        ts = arrays["timestamp"][rows].astype(np.int64).tolist()
        # one row of values per signal (zip(*picked) transposes the columns in C)
        rows_values = zip(*picked, strict=True) if picked else ((),) * rows.size
        signals = []
        for k, row in enumerate(rows_values):
            values = dict(zip(names, row, strict=True))
            lim = limit[k]
            finite = math.isfinite(lim)
            signals.append(
                Signal(
                    symbol=symbol,
                    ts=ts[k],
                    strategy=self.name,
                    side=Side.BUY if side[k] > 0 else Side.SELL,
                    order_type=OrderType.LIMIT if finite else OrderType.MARKET,
                    stop_loss=stop[k],
                    take_profit=target[k],
                    limit_price=lim if finite else None,
                    expiry_bars=expiry[k] if expiry[k] > 0 else None,
                    reason=self.reason_names[code[k]],
                    values=values,
                )
            )
        return signals

    def on_bar(self, symbol: str, window: Any) -> Signal | None:
        """Live path: the newest row's signal, from the rule over the last `lookback()` rows.

        `window` holds recent rows, oldest first, newest last (at least `lookback()` of them;
        with fewer there is not enough history for a signal and the answer is None).
        """
        k = self.lookback()
        n = len(window["timestamp"])
        if n < k:
            return None
        tail = {name: a[n - k :] for name, a in self._inputs(window).items()}
        out = self.rule(tail)
        if out.side[k - 1] == 0:
            return None
        return self._signal(symbol, tail, out, k - 1)

    def on_bars(self, symbols: Sequence[str], block: Mapping[str, np.ndarray]) -> list[Signal]:
        """Live path for many symbols at once: `on_bar` of each, in one run of the rule.

        `block[c]` is (len(symbols), lookback()): each symbol's last rows, oldest first. The
        rule runs once over the rows laid end to end; a symbol's newest row reads at most
        `lookback()` rows (its own), so each answer equals `on_bar` on that symbol's window.
        """
        k, m = self.lookback(), len(symbols)
        if m == 0:
            return []
        flat = {name: np.asarray(block[name]).reshape(m * k) for name in ("timestamp", *self.columns())}
        cols = self._inputs(flat)
        out = self.rule(cols)
        newest = np.arange(m) * k + (k - 1)
        fired = newest[out.side[newest] != 0].tolist()
        return [self._signal(symbols[i // k], cols, out, i) for i in fired]
