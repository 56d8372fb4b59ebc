"""Bias checks a user can run on their own data (cf. freqtrade's `lookahead-analysis` and
`recursive-analysis`).

`lookahead_check` - does any decision use data it could not have seen?
  One full backtest, then, for each signal bar t (all of them, or `max_cuts` spread evenly
  over them), the same backtest on the data CUT at t: every symbol's bars with ts <= t only,
  indicators recomputed on those bars with `backtest.prepare`. It compares, cut run vs full
  run:
  (a) indicators: every column at every bar <= t, bit for bit (NaN == NaN, -0.0 != 0.0);
  (b) signals decided at or before t: the same Signal (every field, trigger values
      included), approved or refused with the same reason and detail, same quantity and
      client order id, and - with the models (`gate`) - the same model scores and versions;
  (c) trades closed (exit fill) at or before t, and fills at or before t: identical.
  A causal system gives identical answers: the full run may only differ AFTER t. A strategy
  rule that peeks at a later row, or an indicator computed with a centered window or over
  the whole series, changes something at or before t on some cut and is named in the report.

  Cost: per cut, the indicators of every symbol over its prefix (pandas_ta, ~15 ms for 2,000
  bars, ~45 ms for 43,000) plus one engine run over the prefix, the larger part as measured
  (ES sample, 2,264 bars: ~55 ms a cut; 43,200 synthetic bars: ~0.37 s a cut), so `max_cuts`
  is the main knob. `indicator_window=W` bounds the indicator part for long data (many
  symbols, or hundreds of thousands of bars): on a prefix longer than W bars the indicators
  are recomputed on the last W bars before the cut twice - once ending at the cut, once with
  W bars after it - and the two are compared bit for bit on those W bars (a causal indicator
  cannot tell them apart; both frames start at the same bar, so the start-up history, the
  subject of `recursive_check`, is the same). Any dependence on bars up to W after the cut
  shows on the bars just before it. The engine then re-runs on the cut bars with the full
  run's indicator columns truncated at the cut, so in that mode (a) checks the indicators
  and (b), (c) the strategies and the engine.

`recursive_check` - how much start-up history does each indicator need?
  For `sample` start bars s spread evenly over [min L, n - min L], the indicators are computed
  on bars s .. s+F-1 alone (F = min(n - s, max L)) and compared with the same bars computed
  from the start of the data: row s+k-1 of the frame is the value with exactly k bars of
  history, so one computation gives every history length k at once. Only k <= s is compared,
  so that the reference has at least k more bars of history than the frame (its own start-up
  error is then negligible): a length L needs 2 L bars of data, longer ones are skipped.
  Reported per indicator: max and median relative difference at each L of `lengths`, and the
  history it needs (smallest k from which every compared k' >= k is within `tolerance`): an
  SMA-n needs exactly n bars, an EMA-200 hundreds. The session-anchored VWAP depends on its
  session, not on a bar count (the live warm start loads back to the session start, see
  `pipeline.warm_start`), so it is compared only where the frame holds its whole session.
  The report says whether `candles.warmup_bars` is enough.

Both reports are msgspec Structs (`msgspec.json.encode(report)`); `format_lookahead` and
`format_recursive` give the text the CLI prints. The engine's own log lines (risk halts...)
are muted during the cut re-runs (the full run logs them once) unless this module's logger is
at DEBUG.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from scalper import backtest as bt
from scalper.config import Config
from scalper.types import BAR_COLUMNS

log = logging.getLogger(__name__)

__all__ = [
    "CutResult",
    "DecisionDiff",
    "IndicatorDiff",
    "IndicatorHistory",
    "LengthStat",
    "LookaheadReport",
    "RecursiveReport",
    "format_lookahead",
    "format_recursive",
    "lookahead_check",
    "recursive_check",
]

Progress = Callable[[int, int], None]

# loggers of the code the cut runs repeat (levels set on a package apply to its modules)
_ENGINE_LOGGERS = ("scalper.backtest", "scalper.risk", "scalper.execution", "scalper.strategies")


# ------------------------------------------------------------------------------------ reports


class IndicatorDiff(msgspec.Struct, kw_only=True):
    """A column whose values at or before the cut differ between the two computations."""

    symbol: str
    column: str
    row: int  # first differing bar (index in the symbol's bars)
    ts: int  # its timestamp (bar open, ns UTC)
    full: float | None  # value in the reference (full run, or the window with the future)
    cut: float | None  # value computed from bars <= the cut only
    rows: int  # how many bars differ
    max_abs: float | None  # largest |full - cut| over them (None: a NaN on one side only)


class DecisionDiff(msgspec.Struct, kw_only=True):
    """A signal, trade or fill at or before the cut that is not the same in both runs."""

    kind: str  # "signal" | "trade" | "fill"
    symbol: str
    ts: int  # signal bar / trade exit / fill bar
    strategy: str
    issue: str  # "only in the full run" | "only in the cut run" | "differs"
    field: str = ""  # the first differing field when issue == "differs"
    full: str = ""
    cut: str = ""


class CutResult(msgspec.Struct, kw_only=True):
    ts: int  # the cut: bars with ts <= this are kept
    time: str  # the same, ISO 8601 UTC
    bars: int  # bars kept, all symbols
    values_checked: int  # indicator cells compared
    signals_checked: int
    trades_checked: int
    fills_checked: int
    ok: bool
    indicator_diffs: list[IndicatorDiff]  # the first `max_diffs`
    decision_diffs: list[DecisionDiff]  # the first `max_diffs`, in time order
    n_indicator_diffs: int  # columns that differ
    n_decision_diffs: int
    seconds: float


class LookaheadReport(msgspec.Struct, kw_only=True):
    ok: bool
    symbols: list[str]
    strategies: list[str]
    bars: int
    signals: int  # signals of the full run
    trades: int  # trades the full run closed
    signal_bars: int  # distinct signal bars (candidate cuts)
    cuts_checked: int
    indicator_mode: str  # "exact" or "window=W"
    biased_indicators: list[str]  # columns that differed on some cut
    biased_strategies: list[str]  # strategies whose signals or trades differed on some cut
    failed_cuts: int
    values_checked: int
    signals_checked: int
    trades_checked: int
    fills_checked: int
    full_run_seconds: float  # indicators + backtest over all the data
    seconds: float
    cuts: list[CutResult]
    models: dict[str, str] = {}  # the models that judged the signals (name -> version), if any


class LengthStat(msgspec.Struct, kw_only=True):
    length: int  # bars of history, the evaluated bar included
    max_rel: float | None  # None = no evaluation bar; inf = NaN on one side (not ready)
    median_rel: float | None
    evaluated: int


class IndicatorHistory(msgspec.Struct, kw_only=True):
    column: str
    history_needed: int | None  # None: still above tolerance at the longest history tested
    stats: list[LengthStat]
    note: str = ""


class RecursiveReport(msgspec.Struct, kw_only=True):
    ok: bool  # warmup_ok is True
    symbols: list[str]
    bars: int
    tolerance: float
    lengths: list[int]  # tested
    skipped_lengths: list[int]  # too long for the data (a length L needs 2 L bars)
    longest_history: int  # the longest history compared (bars)
    starts: int  # evaluation frames per symbol (at most `sample`)
    indicators: list[IndicatorHistory]
    enough_length: int | None  # smallest tested L from which every indicator is within tolerance
    history_needed: int | None  # max over indicators (None: some indicator did not settle)
    slowest: str  # the indicator that needs the most history
    warmup_bars: int
    warmup_ok: bool | None  # None: the data is too short to tell
    seconds: float


# ------------------------------------------------------------------------------------ inputs


def _inputs(cfg: Config, data: Mapping[str, Any]) -> dict[str, tuple[Any, bt.SymbolData | None]]:
    """{symbol: (raw bars DataFrame, prepared SymbolData or None)}; empty symbols dropped."""
    import pandas as pd

    out: dict[str, tuple[Any, bt.SymbolData | None]] = {}
    for sym, item in data.items():
        if isinstance(item, bt.SymbolData):
            raw = pd.DataFrame({c: item.cols[c] for c in BAR_COLUMNS if c in item.cols})
            sd: bt.SymbolData | None = item
        else:
            raw = item.drop(columns=["symbol"], errors="ignore").reset_index(drop=True)
            sd = None
        if len(raw):
            out[str(sym)] = (raw, sd)
        else:
            log.info("%s: no bars, left out", sym)
    if not out:
        raise ValueError("no bars to check")
    return out


def _iso(ts: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sample(items: Sequence[int], k: int | None) -> list[int]:
    """`k` of `items` spread evenly, first and last included (all when k is None or >= len)."""
    if k is None or k <= 0 or k >= len(items):
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(np.int64))
    return [items[i] for i in idx.tolist()]


@contextlib.contextmanager
def _engine_logs_muted() -> Iterator[None]:
    """The engine's warnings (risk halts...) at ERROR while the cut runs repeat them."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    saved = {name: logging.getLogger(name).level for name in _ENGINE_LOGGERS}
    try:
        for name in _ENGINE_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


# ------------------------------------------------------------------------------------ comparisons


def _same_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise 'identical': floats bit for bit except NaN == NaN (any payload)."""
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        a = a.astype(np.float64, copy=False)
        b = b.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore"):
            same = (a == b) & (np.signbit(a) == np.signbit(b))
        return same | (np.isnan(a) & np.isnan(b))
    return np.asarray(a == b, dtype=bool)


def _num(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _compare_columns(
    symbol: str,
    ref: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    ts: np.ndarray,
    offset: int,
) -> tuple[list[IndicatorDiff], int]:
    """Diffs of every column of `got` against the first len(got) rows of `ref` (+ missing ones).

    `ts` holds the timestamps of those rows; `offset` is the symbol row of their first."""
    diffs: list[IndicatorDiff] = []
    n = int(ts.shape[0])
    checked = 0

    def whole_column(column: str) -> IndicatorDiff:
        """A column that cannot be compared row by row (missing, or of another length)."""
        ts0 = int(ts[0]) if n else 0
        return IndicatorDiff(
            symbol=symbol, column=column, row=offset, ts=ts0, full=None, cut=None, rows=n, max_abs=None
        )

    for name in dict.fromkeys([*ref, *got]):
        if name not in got or name not in ref:
            where = "the cut run" if name not in got else "the reference"
            diffs.append(whole_column(f"{name} (missing in {where})"))
            continue
        a, b = np.asarray(ref[name])[:n], np.asarray(got[name])
        if b.shape[0] != n:
            diffs.append(whole_column(f"{name} (length {b.shape[0]} != {n})"))
            continue
        checked += n
        same = _same_values(a, b)
        if bool(same.all()):
            continue
        bad = np.flatnonzero(~same)
        i = int(bad[0])
        max_abs: float | None = None
        if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
            with np.errstate(invalid="ignore"):
                d = np.abs(a[bad].astype(np.float64) - b[bad].astype(np.float64))
            max_abs = None if bool(np.isnan(d).any()) else float(d.max())
        diffs.append(
            IndicatorDiff(
                symbol=symbol,
                column=name,
                row=offset + i,
                ts=int(ts[i]),
                full=_num(a[i]),
                cut=_num(b[i]),
                rows=int(bad.size),
                max_abs=max_abs,
            )
        )
    return diffs, checked


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    if isinstance(a, msgspec.Struct) and type(a) is type(b):
        return all(_eq(getattr(a, f), getattr(b, f)) for f in a.__struct_fields__)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _fields(obj: Any) -> dict[str, Any]:
    """Flat {field: value} of a signal record, trade or fill (signal values as values.<name>)."""
    if isinstance(obj, bt.SignalRecord):
        out = {f: getattr(obj.signal, f) for f in obj.signal.__struct_fields__ if f != "values"}
        out.update({f"values.{k}": v for k, v in obj.signal.values.items()})
        out.update(
            approved=obj.approved,
            decision=obj.reason,
            detail=obj.detail,
            client_order_id=obj.client_order_id,
            quantity=obj.quantity,
        )
        out.update({f"scores.{k}": v for k, v in (obj.scores or {}).items()})
        out.update({f"models.{k}": v for k, v in (obj.models or {}).items()})
        return out
    return {f: getattr(obj, f) for f in obj.__struct_fields__}


_MISSING = object()


def _show(x: Any) -> str:
    if x is _MISSING:
        return "(absent)"
    if hasattr(x, "value") and not isinstance(x, (int, float)):
        return str(x.value)
    return repr(x)


def _record_text(obj: Any) -> str:
    if isinstance(obj, bt.SignalRecord):
        s = obj.signal
        how = f"approved qty {obj.quantity:g}" if obj.approved else f"refused {obj.reason}"
        price = f" @ {s.limit_price:g}" if s.limit_price is not None else ""
        return f"{s.side.value} {s.order_type.value}{price}, stop {s.stop_loss:g}, target {s.take_profit:g}: {how}"
    if hasattr(obj, "exit_reason"):
        return (
            f"{obj.side} {obj.quantity:g} @ {obj.entry_price:g} -> {obj.exit_price:g} "
            f"({obj.exit_reason}), pnl {obj.pnl:.2f}"
        )
    return f"{obj.side.value} {obj.quantity:g} @ {obj.price:g} fee {obj.fee:g} ({obj.client_order_id})"


def _diff_records(kind: str, full: Sequence[Any], cut: Sequence[Any]) -> list[DecisionDiff]:
    """Differences between two record lists, aligned by a key; in time order."""

    def key(r: Any) -> tuple:
        if kind == "signal":
            return (r.signal.symbol, r.signal.ts, r.signal.strategy)
        if kind == "trade":
            return (r.symbol, r.entry_order_id, r.entry_ts)
        return (r.fill_id,)

    def meta(r: Any) -> tuple[str, int, str]:
        if kind == "signal":
            return r.signal.symbol, r.signal.ts, r.signal.strategy
        if kind == "trade":
            return r.symbol, r.exit_ts, r.strategy
        return r.symbol, r.ts, ""

    diffs: list[DecisionDiff] = []
    full_by = {key(r): r for r in full}
    cut_by = {key(r): r for r in cut}
    for k, a in full_by.items():
        sym, ts, strat = meta(a)
        b = cut_by.get(k)
        if b is None:
            diffs.append(
                DecisionDiff(
                    kind=kind,
                    symbol=sym,
                    ts=ts,
                    strategy=strat,
                    issue="only in the full run",
                    full=_record_text(a),
                )
            )
            continue
        fa, fb = _fields(a), _fields(b)
        if _eq(fa, fb):
            continue
        for name in dict.fromkeys([*fa, *fb]):
            va, vb = fa.get(name, _MISSING), fb.get(name, _MISSING)
            if va is _MISSING or vb is _MISSING or not _eq(va, vb):
                diffs.append(
                    DecisionDiff(
                        kind=kind,
                        symbol=sym,
                        ts=ts,
                        strategy=strat,
                        issue="differs",
                        field=name,
                        full=_show(va),
                        cut=_show(vb),
                    )
                )
                break
    for k, b in cut_by.items():
        if k not in full_by:
            sym, ts, strat = meta(b)
            diffs.append(
                DecisionDiff(
                    kind=kind,
                    symbol=sym,
                    ts=ts,
                    strategy=strat,
                    issue="only in the cut run",
                    cut=_record_text(b),
                )
            )
    if not diffs and not _eq([_fields(r) for r in full], [_fields(r) for r in cut]):
        # the same records by key, yet not the same lists: another order, or a duplicate key
        diffs.append(DecisionDiff(kind=kind, symbol="", ts=0, strategy="", issue="differs", field="order"))
    return diffs


# ------------------------------------------------------------------------------------ look-ahead


def lookahead_check(
    cfg: Config,
    data: Mapping[str, Any],
    *,
    strategies: Sequence[str] | None = None,
    max_cuts: int | None = None,
    indicator_window: int | None = None,
    max_diffs: int = 5,
    progress: Progress | None = None,
    gate: Any = None,
) -> LookaheadReport:
    """Cut the data at signal bars and check that nothing at or before the cut changes.

    `data`: {symbol: SymbolData} (prepared with `backtest.prepare`) or {symbol: bars DataFrame}
    (as `backtest.load_bars` gives). `strategies`: names, as `Backtest` takes (default: the
    enabled ones). `max_cuts`: check that many signal bars, spread evenly from the first to the
    last (None: every signal bar). `indicator_window`: see the module docstring (None: exact,
    every indicator recomputed on the whole prefix). `max_diffs`: differences kept per cut and
    kind. `progress(done, total)` is called after each cut. `gate`: the models that judge the
    signals (scalper.ml.gate.ModelGate, as `Backtest(gate=)` takes): their features must not
    see past the cut either, so the check covers what the backtest with the models decides.
    """
    if indicator_window is not None and indicator_window < 1:
        raise ValueError(f"indicator_window: expected >= 1 bars or None, got {indicator_window}")
    t0 = time.perf_counter()
    engine = bt.Backtest(cfg, strategies, gate=gate)  # first: an unknown strategy name fails fast
    names = [s.name for s in engine.strategies]
    frames = _inputs(cfg, data)
    full_data: dict[str, bt.SymbolData] = {}
    for sym, (raw, sd) in frames.items():
        full_data[sym] = sd if sd is not None else bt.prepare(sym, raw, cfg)
    full = engine.run(full_data)
    full_seconds = time.perf_counter() - t0
    signal_bars = sorted({r.signal.ts for r in full.signals})
    cuts = _sample(signal_bars, max_cuts)
    log.info(
        "lookahead: full run %d signals at %d bars, %d trades (%.2f s); checking %d cuts",
        len(full.signals),
        len(signal_bars),
        len(full.trades),
        full_seconds,
        len(cuts),
    )
    results: list[CutResult] = []
    with _engine_logs_muted():
        for n, t in enumerate(cuts, 1):
            results.append(
                _check_cut(cfg, strategies, frames, full_data, full, t, indicator_window, max_diffs, gate)
            )
            if not results[-1].ok:
                log.info("lookahead: cut %s differs", results[-1].time)
            if progress is not None:
                progress(n, len(cuts))
    biased_ind: dict[str, None] = {}
    biased_strat: dict[str, None] = {}
    for r in results:
        for d in r.indicator_diffs:
            biased_ind[d.column] = None
        for d in r.decision_diffs:
            if d.strategy:
                biased_strat[d.strategy] = None
    return LookaheadReport(
        ok=all(r.ok for r in results),
        symbols=list(frames),
        strategies=names,
        bars=sum(len(sd) for sd in full_data.values()),
        signals=len(full.signals),
        trades=len(full.trades),
        signal_bars=len(signal_bars),
        cuts_checked=len(results),
        indicator_mode="exact" if indicator_window is None else f"window={indicator_window}",
        biased_indicators=list(biased_ind),
        biased_strategies=list(biased_strat),
        failed_cuts=sum(1 for r in results if not r.ok),
        values_checked=sum(r.values_checked for r in results),
        signals_checked=sum(r.signals_checked for r in results),
        trades_checked=sum(r.trades_checked for r in results),
        fills_checked=sum(r.fills_checked for r in results),
        full_run_seconds=round(full_seconds, 4),
        seconds=round(time.perf_counter() - t0, 4),
        cuts=results,
        models=dict(gate.models) if gate is not None else {},
    )


def _check_cut(
    cfg: Config,
    strategies: Sequence[str] | None,
    frames: Mapping[str, tuple[Any, bt.SymbolData | None]],
    full_data: Mapping[str, bt.SymbolData],
    full: bt.BacktestResult,
    t: int,
    window: int | None,
    max_diffs: int,
    gate: Any = None,
) -> CutResult:
    t0 = time.perf_counter()
    cut_data: dict[str, bt.SymbolData] = {}
    ind_diffs: list[IndicatorDiff] = []
    values = 0
    for sym, (raw, _) in frames.items():
        sd = full_data[sym]
        m = int(np.searchsorted(sd.ts, t, side="right"))
        if m == 0:
            continue
        if window is None or m <= window:
            part = bt.prepare(sym, raw.iloc[:m], cfg)
            diffs, checked = _compare_columns(sym, sd.cols, part.cols, sd.ts[:m], 0)
            cut_data[sym] = part
        else:
            s = m - window
            near = bt.prepare(sym, raw.iloc[s:m], cfg)
            ahead = bt.prepare(sym, raw.iloc[s : min(len(raw), m + window)], cfg)
            diffs, checked = _compare_columns(sym, ahead.cols, near.cols, sd.ts[s:m], s)
            cut_data[sym] = bt.SymbolData(sym, {k: v[:m] for k, v in sd.cols.items()})
        ind_diffs.extend(diffs)
        values += checked
    part_run = bt.Backtest(cfg, strategies, gate=gate).run(cut_data)
    sig_full = [r for r in full.signals if r.signal.ts <= t]
    trades_full = [x for x in full.trades if x.exit_ts <= t]
    trades_cut = [x for x in part_run.trades if x.exit_ts <= t]
    fills_full = [f for f in full.fills if f.ts <= t]
    fills_cut = [f for f in part_run.fills if f.ts <= t]
    dec = (
        _diff_records("signal", sig_full, part_run.signals)
        + _diff_records("trade", trades_full, trades_cut)
        + _diff_records("fill", fills_full, fills_cut)
    )
    dec.sort(key=lambda d: d.ts)
    ok = not ind_diffs and not dec
    return CutResult(
        ts=int(t),
        time=_iso(int(t)),
        bars=sum(len(sd) for sd in cut_data.values()),
        values_checked=values,
        signals_checked=len(sig_full),
        trades_checked=len(trades_full),
        fills_checked=len(fills_full),
        ok=ok,
        indicator_diffs=ind_diffs[:max_diffs],
        decision_diffs=dec[:max_diffs],
        n_indicator_diffs=len(ind_diffs),
        n_decision_diffs=len(dec),
        seconds=round(time.perf_counter() - t0, 4),
    )


# ------------------------------------------------------------------------------------ recursive


def _rel_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| / max(|a|, |b|); 0 where equal (NaN == NaN), inf where only one is NaN."""
    na, nb = np.isnan(a), np.isnan(b)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.maximum(np.abs(a), np.abs(b))
        rel = np.where(a == b, 0.0, np.abs(a - b) / den)
    rel[na & nb] = 0.0
    rel[na ^ nb] = np.inf
    return rel


def _session_starts(ts: np.ndarray, anchor: str) -> np.ndarray:
    """Start (ns) of each bar's VWAP session."""
    from scalper.indicators import session_bounds

    day = 86_400 * 1_000_000_000
    if anchor == "D":
        return ts - ts % day
    return np.fromiter((session_bounds(int(x), anchor)[0] for x in ts), dtype=np.int64, count=ts.shape[0])


def recursive_check(
    cfg: Config,
    bars: Mapping[str, Any],
    *,
    lengths: Sequence[int] = (200, 400, 800, 1600, 3200),
    sample: int = 200,
    tolerance: float = 1e-4,
    progress: Progress | None = None,
) -> RecursiveReport:
    """How much start-up history each indicator needs (see the module docstring).

    `bars`: {symbol: bars DataFrame} or {symbol: SymbolData} (only its bar columns are used).
    `lengths`: the history lengths (bars) reported. `sample`: frames (evaluation starts) per
    symbol. `tolerance`: the relative difference counted as 'the same'. `progress(done,
    total)` after each frame.

    A value with L bars of history is compared with the same bar's value computed from the
    start of the data only where that start is at least L bars further back (frame start
    s >= L), so the reference itself is settled (its seed error is the square of the
    window's): a length L needs 2 L bars of data and is skipped when no symbol has them.
    """
    from scalper import indicators

    t0 = time.perf_counter()
    if not tolerance >= 0:
        raise ValueError(f"tolerance: expected >= 0, got {tolerance}")
    wanted = sorted({int(x) for x in lengths})
    if not wanted or wanted[0] < 1:
        raise ValueError(f"lengths: expected positive bar counts, got {list(lengths)}")
    frames = _inputs(cfg, bars)
    lo, hi = wanted[0], wanted[-1]
    plan = []
    for sym, (raw, _) in frames.items():
        n = len(raw)
        if n < 2 * lo:
            log.info("recursive: %s has %d bars, fewer than 2 x %d", sym, n, lo)
            continue
        starts = np.unique(np.round(np.linspace(lo, n - lo, max(1, sample))).astype(np.int64))
        plan.append((raw, starts))
    if not plan:
        raise ValueError(
            f"recursive check: too little data for history lengths {wanted} "
            f"(a length L needs 2 L bars; the longest symbol has {max(len(r) for r, _ in frames.values())})"
        )
    curve: dict[str, np.ndarray] = {}  # column -> max rel diff at history k (index k - 1)
    at_len: dict[str, dict[int, list[float]]] = {}
    total = sum(int(st.size) for _, st in plan)
    done = 0
    kmax = 0
    for raw, starts in plan:
        n = len(raw)
        full = indicators.compute_batch(raw, cfg.indicators)
        ts = raw["timestamp"].to_numpy().astype(np.int64)
        sess = _session_starts(ts, cfg.indicators.vwap_anchor) if "session_vwap" in full.columns else None
        ref_cols = {c: full[c].to_numpy(dtype=np.float64) for c in full.columns}
        for s in starts.tolist():
            size = min(n - s, hi)
            valid = min(s, size)  # k <= s: the reference has >= k more bars of history
            kmax = max(kmax, valid)
            win = indicators.compute_batch(raw.iloc[s : s + size], cfg.indicators)
            for c, ref in ref_cols.items():
                rel = _rel_diff(win[c].to_numpy(dtype=np.float64)[:valid], ref[s : s + valid])
                if c == "session_vwap" and sess is not None:
                    rel[sess[s : s + valid] < ts[s]] = np.nan  # the frame lacks the start of the session
                cur = curve.setdefault(c, np.full(hi, np.nan))
                cur[:valid] = np.fmax(cur[:valid], rel)
                per_len = at_len.setdefault(c, {})
                for L in wanted:
                    if valid >= L and not math.isnan(rel[L - 1]):
                        per_len.setdefault(L, []).append(float(rel[L - 1]))
            done += 1
            if progress is not None:
                progress(done, total)
    tested = [L for L in wanted if any(at_len[c].get(L) for c in at_len)]
    skipped = [L for L in wanted if L not in tested]
    results: list[IndicatorHistory] = []
    for c, cur in curve.items():
        stats = []
        for L in tested:
            vals = np.asarray(at_len[c].get(L, []), dtype=np.float64)
            stats.append(
                LengthStat(
                    length=L,
                    max_rel=float(vals.max()) if vals.size else None,
                    median_rel=float(np.median(vals)) if vals.size else None,
                    evaluated=int(vals.size),
                )
            )
        note = ""
        if c == "session_vwap":
            note = (
                f"session-anchored ({cfg.indicators.vwap_anchor}): compared only where the frame holds its "
                "whole session (the live warm start loads back to the session start)"
            )
        results.append(
            IndicatorHistory(column=c, history_needed=_needed(cur[:kmax], tolerance), stats=stats, note=note)
        )
    enough = None
    for i, L in enumerate(tested):
        if all(st.max_rel is None or st.max_rel <= tolerance for r in results for st in r.stats[i:]):
            enough = L
            break
    needs = [r.history_needed for r in results]
    history_needed = None if any(x is None for x in needs) else max(x for x in needs if x is not None)
    slowest = max(results, key=lambda r: math.inf if r.history_needed is None else r.history_needed)
    warmup = int(cfg.candles.warmup_bars)
    warmup_ok = _warmup_ok([cur[:kmax] for cur in curve.values()], warmup, tolerance, history_needed)
    return RecursiveReport(
        ok=warmup_ok is True,
        symbols=list(frames),
        bars=sum(len(raw) for raw, _ in frames.values()),
        tolerance=tolerance,
        lengths=tested,
        skipped_lengths=skipped,
        longest_history=kmax,
        starts=max(int(st.size) for _, st in plan),
        indicators=results,
        enough_length=enough,
        history_needed=history_needed,
        slowest=slowest.column,
        warmup_bars=warmup,
        warmup_ok=warmup_ok,
        seconds=round(time.perf_counter() - t0, 4),
    )


@contextlib.contextmanager
def _all_nan_ok() -> Iterator[None]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice encountered"
        yield


def _needed(curve: np.ndarray, tol: float) -> int | None:
    """Smallest k (1-based) such that curve[k-1:] <= tol wherever it was evaluated; None when
    the last evaluated history length is still above tol."""
    bad = np.flatnonzero(~np.isnan(curve) & (curve > tol))
    if bad.size == 0:
        return 1
    k = int(bad[-1]) + 2
    evaluated = np.flatnonzero(~np.isnan(curve))
    return k if evaluated.size and k <= int(evaluated[-1]) + 1 else None


def _warmup_ok(curves: Sequence[np.ndarray], warmup: int, tol: float, needed: int | None) -> bool | None:
    """False if some indicator is off by more than tol with `warmup` bars or more of history;
    True if none is and the data reached `warmup` (or everything settled earlier); else None."""
    reached = False
    for cur in curves:
        tail = cur[warmup - 1 :]
        tail = tail[~np.isnan(tail)]
        if bool((tail > tol).any()):
            return False
        reached = reached or tail.size > 0
    if reached:
        return True
    return True if needed is not None else None


# ------------------------------------------------------------------------------------ text


def _time(ts: int) -> str:
    return _iso(ts)[:16].replace("T", " ")


def _val(x: float | None) -> str:
    return "n/a" if x is None else repr(x)  # shortest round-trip: two different bits never print alike


def format_lookahead(report: LookaheadReport, max_failed: int = 5) -> str:
    """What `scalper check lookahead` prints."""
    r = report
    mode = (
        "all indicators recomputed on the prefix"
        if r.indicator_mode == "exact"
        else f"indicators checked on the {r.indicator_mode.split('=')[1]} bars before the cut"
    )
    lines = [
        f"look-ahead check: {', '.join(r.symbols)} ({r.bars:,} bars), strategies {', '.join(r.strategies)}"
        + (f"; models {', '.join(f'{k} {v}' for k, v in r.models.items())}" if r.models else ""),
        f"  full run: {r.signals:,} signals at {r.signal_bars:,} bars, {r.trades:,} trades "
        f"({r.full_run_seconds:.2f} s with the indicators)",
        f"  cuts: {r.cuts_checked:,} of {r.signal_bars:,} signal bars, each re-run on bars <= the cut, "
        f"{mode} ({r.seconds:.1f} s in all)",
        f"  compared: {r.values_checked:,} indicator values, {r.signals_checked:,} signals, "
        f"{r.trades_checked:,} trades, {r.fills_checked:,} fills",
    ]
    if r.cuts_checked == 0:
        lines.append("  result: nothing to check (the full run has no signals)")
        return "\n".join(lines)
    if r.ok:
        lines.append(f"  result: OK - no look-ahead bias found in {r.cuts_checked:,} cuts")
        return "\n".join(lines)
    lines.append(f"  result: LOOK-AHEAD BIAS - {r.failed_cuts:,} of {r.cuts_checked:,} cuts differ")
    rows: dict[tuple[str, str], list] = {}
    for c in r.cuts:
        for d in c.indicator_diffs:
            rows.setdefault(("indicator", d.column), [0, c.ts])[0] += 1
        for kind, name in dict.fromkeys((d.kind, d.strategy or "-") for d in c.decision_diffs):
            rows.setdefault((kind, name), [0, c.ts])[0] += 1
    lines.append(f"  {'source':<28} {'kind':<10} {'cuts':>5}  first cut (UTC)")
    for (kind, name), (count, first) in rows.items():
        lines.append(f"  {name:<28} {kind:<10} {count:>5}  {_time(first)}")
    lines.append("  first differences (full run vs cut run):")
    failed = [c for c in r.cuts if not c.ok]
    for c in failed[:max_failed]:
        lines.append(f"    cut {_time(c.ts)} ({c.bars:,} bars):")
        for d in c.indicator_diffs:
            what = f"{d.rows:,} bars differ" + (
                f", max |diff| {d.max_abs:.3g}" if d.max_abs is not None else ""
            )
            lines.append(
                f"      indicator {d.symbol} {d.column} at {_time(d.ts)}: {_val(d.full)} vs {_val(d.cut)} ({what})"
            )
        if c.n_indicator_diffs > len(c.indicator_diffs):
            lines.append(f"      ... {c.n_indicator_diffs - len(c.indicator_diffs)} more columns")
        for d in c.decision_diffs:
            who = f"{d.kind} {d.symbol} {d.strategy} {_time(d.ts)}".replace("  ", " ")
            if d.issue == "differs":
                lines.append(f"      {who}: {d.field} {d.full} vs {d.cut}")
            else:
                lines.append(f"      {who}: {d.issue}: {d.full or d.cut}")
        if c.n_decision_diffs > len(c.decision_diffs):
            lines.append(
                f"      ... {c.n_decision_diffs - len(c.decision_diffs)} more signal/trade/fill differences"
            )
    if len(failed) > max_failed:
        lines.append(f"    ... {len(failed) - max_failed} more cuts differ (all of them in the JSON report)")
    return "\n".join(lines)


def _rel(x: float | None) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "not ready"
    return "0" if x == 0 else f"{x:.1e}"


def format_recursive(report: RecursiveReport) -> str:
    """What `scalper check recursive` prints."""
    r = report
    lines = [
        f"recursive check (start-up history): {', '.join(r.symbols)} ({r.bars:,} bars), "
        f"{r.starts} frames per symbol, tolerance {r.tolerance:g} relative ({r.seconds:.1f} s)",
        f"  max / median relative difference, value from only L bars of history vs from all of them "
        f"(histories up to {r.longest_history:,} bars compared); needs = bars of history to stay within",
    ]
    head = f"  {'indicator':<18} {'needs':>6}" + "".join(f"  {'L=' + str(L):>17}" for L in r.lengths)
    lines.append(head)
    for ind in r.indicators:
        needs = f">{r.longest_history}" if ind.history_needed is None else str(ind.history_needed)
        cells = "".join(f"  {_rel(s.max_rel) + ' / ' + _rel(s.median_rel):>17}" for s in ind.stats)
        lines.append(f"  {ind.column:<18} {needs:>6}{cells}")
    for ind in r.indicators:
        if ind.note:
            lines.append(f"  note {ind.column}: {ind.note}")
    if r.skipped_lengths:
        lines.append(
            f"  not tested (a length L needs 2 L bars of data): L = {', '.join(map(str, r.skipped_lengths))}"
        )
    enough = f"L = {r.enough_length}" if r.enough_length is not None else "none of the tested lengths"
    slow = (
        f"{r.history_needed} bars" if r.history_needed is not None else f"more than {r.longest_history} bars"
    )
    lines.append(
        f"  every indicator within {r.tolerance:g} from {enough}; the slowest, {r.slowest}, needs {slow}"
    )
    verdict = {True: "enough", False: "NOT ENOUGH", None: "cannot tell (too little data)"}[r.warmup_ok]
    lines.append(f"  candles.warmup_bars = {r.warmup_bars}: {verdict}")
    return "\n".join(lines)
