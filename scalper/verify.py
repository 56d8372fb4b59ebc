"""`scalper verify`: recheck a run from its stored bars, independently of the code that traded.

From the run directory alone (bars, config.json, signals, ledger.sqlite, trades, equity):

* indicators: recomputed from the stored bars with the pandas_ta batch (`compute_batch`) and
  compared with the values the run stored (a live run stores its streaming values);
* signals: each strategy's entry conditions are re-derived HERE from config.json's thresholds
  and DESIGN.md's rules (pandas, not the strategies' numpy `rule`), so a bug in a strategy shows
  up as a disagreement: every logged signal must satisfy its conditions at its bar (a crossing
  must not have held one bar earlier), its stop/target/limit must sit where the rules put them
  (ATR multiples of the recomputed ATR), and every bar where the conditions hold must have a
  logged signal (refused ones count: the log holds every candidate);
* fills (from the ledger): inside their bar's range (widened by the configured slippage on the
  taker's adverse side), after the signal's bar, at the fill model's price (bar mode), with
  the configured fee; bracket legs at the signal's stop and target, active from the bar after
  the entry (order prices on the instrument's tick grid: the nearest tick; a slipped taker
  fill at the next tick against the taker);
* positions and P&L: the fills replayed with average-cost accounting must give the ledger's
  positions and cash, each trade of trades.parquet, the final equity and the summary's net P&L;
* the other copies: trades.csv must be trades.parquet row for row, orders.parquet the ledger's
  orders field for field.

Live fills (`execution.broker` "ccxt", not a dry run) carry the exchange's times and prices: a
fill's bar is the stored minute that contains its time (a paper fill sits exactly on its bar's
open time), its price must lie in that bar's range, a bracket leg must fill after its entry (an
exchange-side leg may fill in the entry's minute), and the paper fill model's price and fee are
not applied (the exchange set them).

Comparisons of floats use a relative tolerance (`REL_TOL`): a condition decided by less than
that (the streaming and batch indicators agree to ~1e-16, not bit for bit, on SMA columns) is
"borderline" and counted in `VerifyReport.borderline`, not as a mismatch.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from functools import cached_property
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from scalper.config import Config
from scalper.run_dir import RunFiles, read_run
from scalper.types import NS_PER_MINUTE, Fill, Order, OrderRole, OrderType, Side

log = logging.getLogger(__name__)

__all__ = ["CHECKS", "REL_TOL", "Mismatch", "VerifyReport", "verify_run"]

REL_TOL = 1e-9

# check name -> what it compares (the mismatch table's legend)
CHECKS: dict[str, str] = {
    "indicator": "stored indicator vs pandas_ta batch recomputed from the stored bars",
    "signal_bar": "a logged signal at a bar that is not in the stored bars",
    "strategy": "a logged signal of a strategy that is unknown or disabled in config.json",
    "condition": "an entry condition that does not hold at the signal's bar",
    "crossing": "a crossing that already held one bar earlier",
    "missing_signal": "the conditions hold at a bar but no signal was logged",
    "duplicate_signal": "the same signal logged twice",
    "stop": "stop-loss not at the configured ATR multiple",
    "target": "take-profit not at the configured ATR multiple / band",
    "limit_price": "limit entry price not at the band",
    "order_type": "entry order type not the strategy's",
    "order": "an entry order without an approved signal, or an approved signal without its order",
    "bracket": "a bracket leg not at the signal's stop / target",
    "fill_bar": "a fill at a minute without a stored bar (paper: at a bar's open time; live: inside its minute)",
    "fill_range": "a fill price outside its bar's range (plus the configured slippage)",
    "fill_time": "a fill in or before the bar that decided it",
    "fill_price": "a fill price not what the fill model gives",
    "fee": "a fee not the configured one",
    "position": "a position that disagrees with the fills",
    "cash": "the ledger's cash disagrees with the fills",
    "trade": "a trade that disagrees with its fills",
    "equity": "final equity disagrees with the fills and the last closes",
    "summary": "summary.json's net P&L disagrees with the trades",
    "trades_csv": "trades.csv disagrees with trades.parquet (a row missing, added or changed)",
    "orders_file": "orders.parquet disagrees with the ledger's orders (an order missing, added or changed)",
}


class Mismatch(msgspec.Struct, frozen=True):
    """One disagreement: which check, where (symbol, bar open time), what was expected and found."""

    check: str
    symbol: str
    ts: int | None  # bar open time, ns (None when not tied to one bar)
    subject: str  # strategy + side, order id, fill id, indicator column...
    expected: str
    found: str
    detail: str = ""

    @property
    def time(self) -> str:
        return (
            "" if self.ts is None else pd.Timestamp(self.ts, unit="ns", tz="UTC").strftime("%Y-%m-%d %H:%M")
        )


class VerifyReport(msgspec.Struct):
    """What `verify_run` checked and every disagreement it found (`ok` when there is none)."""

    run_dir: str
    ok: bool
    symbols: list[str]
    bars: int
    strategies: list[str]
    signals_logged: int
    signals_expected: int
    fills: int
    trades: int
    checked: dict[str, int]  # check name -> items checked
    borderline: int  # conditions decided within REL_TOL (not counted as mismatches)
    mismatches: list[Mismatch]
    notes: list[str]

    def counts(self) -> dict[str, int]:
        """Mismatches per check."""
        out: dict[str, int] = defaultdict(int)
        for m in self.mismatches:
            out[m.check] += 1
        return dict(out)


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NaN"
    return f"{x:.10g}"


def _on_tick(price: float, tick: float, rounding: str = ROUND_HALF_UP) -> float:
    """`price` on the tick grid, in decimals: the nearest tick as ccxt's price_to_precision
    rounds (the decimal of the float's repr, half up: 94.79499999999999 -> 94.79 at tick
    0.01, not 94.80), or ROUND_CEILING / ROUND_FLOOR (a slipped buy / sell fill), where float
    noise below 1e-9 of a tick does not move a price that is on the grid."""
    if not math.isfinite(price):
        return price
    step = Decimal(repr(tick))
    ticks = Decimal(repr(price)) / step
    if rounding != ROUND_HALF_UP:
        ticks = ticks.quantize(Decimal("1e-9"), ROUND_HALF_UP)
    return float(ticks.to_integral_value(rounding) * step)


def _close(a: float, b: float, rel: float = REL_TOL) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


# ------------------------------------------------------------------------------ entry rules


@dataclass
class Condition:
    """`lhs op rhs` over every bar; `holds` is strict for < and >, and False where NaN."""

    name: str
    lhs: np.ndarray
    op: str  # ">", "<", ">=", "<="
    rhs: np.ndarray
    crossing: bool = False  # the "did not hold one bar earlier" half of a cross
    exact: bool = False  # both sides are stored prices (no arithmetic): no tolerance

    @cached_property
    def holds(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return {
                ">": self.lhs > self.rhs,
                "<": self.lhs < self.rhs,
                ">=": self.lhs >= self.rhs,
                "<=": self.lhs <= self.rhs,
            }[self.op]

    @cached_property
    def near(self) -> np.ndarray:
        """Decided by less than REL_TOL of the values' size: not trusted either way."""
        if self.exact:
            return np.zeros(self.lhs.shape[0], dtype=bool)
        with np.errstate(invalid="ignore"):
            scale = np.maximum(1.0, np.maximum(np.abs(self.lhs), np.abs(self.rhs)))
            return np.abs(self.lhs - self.rhs) <= REL_TOL * scale


@dataclass
class Rule:
    """One strategy side's entry: its conditions and the prices it must quote, per bar."""

    strategy: str
    side: str  # "buy" | "sell"
    order_type: str  # "market" | "limit"
    conditions: list[Condition]
    stop: np.ndarray
    target: np.ndarray
    ref: np.ndarray  # the entry price the bracket is measured from (close, or the limit)
    atr: np.ndarray
    limit: np.ndarray | None = None


def _const(x: float, n: int) -> np.ndarray:
    return np.full(n, float(x))


def entry_rules(cfg: Config, bars: pd.DataFrame, ind: pd.DataFrame, strategies: list[str]) -> list[Rule]:
    """The entry rules of `strategies` as DESIGN.md states them, with config.json's numbers.

    Written independently of scalper/strategies (pandas shifts and rolling windows), so that
    the two implementations check each other.
    """
    s = cfg.strategies
    icfg = cfg.indicators
    n = len(bars)
    close = bars["close"].to_numpy(dtype=np.float64)
    atr = ind[f"atr_{icfg.atr_length}"].to_numpy(dtype=np.float64)
    rsi_name = f"rsi_{icfg.rsi_length}"
    rsi = ind[rsi_name].to_numpy(dtype=np.float64)
    zero = np.zeros(n)
    atr_ok = Condition(f"atr_{icfg.atr_length} > 0", atr, ">", zero)
    sides = ["buy", "sell"] if s.allow_short else ["buy"]
    rules: list[Rule] = []
    if "momentum" in strategies:
        m = s.momentum
        fast_n, slow_n, trend_n = f"ema_{m.fast_ema}", f"ema_{m.slow_ema}", f"ema_{m.trend_ema}"
        fast, slow, trend = (ind[c] for c in (fast_n, slow_n, trend_n))
        f_now, s_now, t_now = (x.to_numpy(dtype=np.float64) for x in (fast, slow, trend))
        f_prev, s_prev = fast.shift(1).to_numpy(dtype=np.float64), slow.shift(1).to_numpy(dtype=np.float64)
        for side in sides:
            if side == "buy":
                lo, hi, cmp, prev_cmp, trend_cmp = m.rsi_long_min, m.rsi_long_max, ">", "<=", ">"
            else:
                lo, hi, cmp, prev_cmp, trend_cmp = 100 - m.rsi_long_max, 100 - m.rsi_long_min, "<", ">=", "<"
            sgn = 1.0 if side == "buy" else -1.0
            rules.append(
                Rule(
                    "momentum",
                    side,
                    "market",
                    [
                        Condition(f"{fast_n} {cmp} {slow_n}", f_now, cmp, s_now),
                        Condition(
                            f"{fast_n} {prev_cmp} {slow_n} one bar earlier", f_prev, prev_cmp, s_prev, True
                        ),
                        Condition(f"close {trend_cmp} {trend_n}", close, trend_cmp, t_now),
                        Condition(f"{rsi_name} > {lo:g}", rsi, ">", _const(lo, n)),
                        Condition(f"{rsi_name} < {hi:g}", rsi, "<", _const(hi, n)),
                        atr_ok,
                    ],
                    stop=close - sgn * m.stop_atr * atr,
                    target=close + sgn * m.target_atr * atr,
                    ref=close,
                    atr=atr,
                )
            )
    if "mean_reversion" in strategies:
        r = s.mean_reversion
        lower, mid, upper, vwap = (
            ind[c].to_numpy(dtype=np.float64) for c in ("bb_lower", "bb_mid", "bb_upper", "session_vwap")
        )
        target_name, target = ("session_vwap", vwap) if r.target == "vwap" else ("bb_mid", mid)
        for side in sides:
            buy = side == "buy"
            band, band_name, cmp, rsi_cmp = (
                (lower, "bb_lower", "<", "<") if buy else (upper, "bb_upper", ">", ">")
            )
            bound = r.rsi_oversold if buy else r.rsi_overbought
            rules.append(
                Rule(
                    "mean_reversion",
                    side,
                    "limit",
                    [
                        Condition(f"close {cmp} {band_name}", close, cmp, band),
                        Condition(f"close {cmp} session_vwap", close, cmp, vwap),
                        Condition(f"{rsi_name} {rsi_cmp} {bound:g}", rsi, rsi_cmp, _const(bound, n)),
                        Condition(
                            f"target {target_name} {'>' if buy else '<'} {band_name}",
                            target,
                            ">" if buy else "<",
                            band,
                        ),
                        atr_ok,
                    ],
                    stop=band - (1.0 if buy else -1.0) * r.stop_atr * atr,
                    target=target,
                    ref=band,
                    atr=atr,
                    limit=band,
                )
            )
    if "breakout" in strategies:
        b = s.breakout
        nb = int(b.lookback_bars)
        prior_high = bars["high"].rolling(nb, min_periods=nb).max().shift(1).to_numpy(dtype=np.float64)
        prior_low = bars["low"].rolling(nb, min_periods=nb).min().shift(1).to_numpy(dtype=np.float64)
        vol = bars["volume"].to_numpy(dtype=np.float64)
        vsma_name = f"volume_sma_{icfg.volume_sma_length}"
        vsma = ind[vsma_name].to_numpy(dtype=np.float64)
        for side in sides:
            buy = side == "buy"
            sgn = 1.0 if buy else -1.0
            rules.append(
                Rule(
                    "breakout",
                    side,
                    "market",
                    [
                        Condition(f"close > previous {nb}-bar high", close, ">", prior_high, exact=True)
                        if buy
                        else Condition(f"close < previous {nb}-bar low", close, "<", prior_low, exact=True),
                        Condition(
                            f"volume > {b.volume_multiple:g} x {vsma_name}",
                            vol,
                            ">",
                            b.volume_multiple * vsma,
                        ),
                        atr_ok,
                    ],
                    stop=close - sgn * b.stop_atr * atr,
                    target=close + sgn * b.target_atr * atr,
                    ref=close,
                    atr=atr,
                )
            )
    return rules


# ------------------------------------------------------------------------------ the checker


class _Checker:
    def __init__(self, run: RunFiles):
        self.run = run
        self.cfg = run.config
        self.mismatches: list[Mismatch] = []
        self.checked: dict[str, int] = defaultdict(int)
        self.notes: list[str] = []
        self.borderline = 0
        self.ind: dict[str, pd.DataFrame] = {}
        self.ts_index: dict[str, np.ndarray] = {}
        self.signals_expected = 0
        # a live run's fills carry the exchange's times and prices (see the module docstring)
        self.live = self.cfg.execution.broker == "ccxt" and not self.cfg.feed.ccxt.dry_run

    def add(
        self,
        check: str,
        symbol: str,
        ts: int | None,
        subject: str,
        expected: str,
        found: str,
        detail: str = "",
    ) -> None:
        self.mismatches.append(Mismatch(check, symbol, ts, subject, expected, found, detail))

    def bar_index(self, symbol: str, ts: int) -> int | None:
        idx = self.ts_index.get(symbol)
        if idx is None:
            return None
        i = int(np.searchsorted(idx, ts))
        return i if i < idx.shape[0] and idx[i] == ts else None

    def fill_bar(self, symbol: str, ts: int) -> int | None:
        """The stored bar a fill at `ts` belongs to: a paper fill is stamped with its bar's open
        time (exactly); a live fill with the exchange's time, inside its bar's minute."""
        if not self.live:
            return self.bar_index(symbol, ts)
        idx = self.ts_index.get(symbol)
        if idx is None:
            return None
        i = int(np.searchsorted(idx, ts, side="right")) - 1
        return i if i >= 0 and ts < int(idx[i]) + NS_PER_MINUTE else None

    # -------------------------------------------------------------- indicators

    def indicators(self) -> None:
        from scalper.indicators import compute_batch

        for sym, bars in self.run.bars.items():
            self.ts_index[sym] = bars["timestamp"].to_numpy(dtype=np.int64)
            ind = compute_batch(bars, self.cfg.indicators).reset_index(drop=True)
            self.ind[sym] = ind
            stored = self.run.stored_indicators.get(sym)
            if stored is None:
                continue
            for col in ind.columns:
                if col not in stored.columns:
                    continue
                self.checked["indicator"] += 1
                a = ind[col].to_numpy(dtype=np.float64)
                b = stored[col].to_numpy(dtype=np.float64)
                both_nan = np.isnan(a) & np.isnan(b)
                with np.errstate(invalid="ignore"):
                    ok = both_nan | (
                        np.abs(a - b) <= REL_TOL * np.maximum(1.0, np.maximum(np.abs(a), np.abs(b)))
                    )
                bad = np.flatnonzero(~ok)
                if bad.size:
                    i = int(bad[0])
                    self.add(
                        "indicator",
                        sym,
                        int(self.ts_index[sym][i]),
                        col,
                        _fmt(float(a[i])),
                        _fmt(float(b[i])),
                        f"{bad.size} of {a.size} bars differ (first shown)",
                    )

    # -------------------------------------------------------------- signals

    def strategies(self) -> list[str]:
        from scalper.strategies import STRATEGIES

        listed = self.run.trading_summary.get("strategies")
        if listed:
            return [s for s in listed if s in STRATEGIES]
        names = [n for n in STRATEGIES if getattr(self.cfg.strategies, n).enabled]
        self.notes.append(
            "strategies checked: those enabled in config.json (" + ", ".join(names) + "); the run "
            "directory does not say whether --strategies narrowed them"
        )
        return names

    def signals(self, strategies: list[str]) -> None:
        from scalper.strategies import STRATEGIES

        sig = self.run.signals
        logged: dict[tuple[str, str, str], set[int]] = defaultdict(set)
        seen: set[tuple[str, int, str, str]] = set()
        rules_by_sym = {
            sym: {(r.strategy, r.side): r for r in entry_rules(self.cfg, bars, self.ind[sym], strategies)}
            for sym, bars in self.run.bars.items()
        }
        for row in sig.itertuples(index=False):
            sym, ts, strat, side = str(row.symbol), int(row.ts), str(row.strategy), str(row.side)
            subject = f"{strat} {side}"
            self.checked["signal"] += 1
            key = (sym, ts, strat, side)
            if key in seen:
                self.add("duplicate_signal", sym, ts, subject, "one signal", "logged twice")
                continue
            seen.add(key)
            if strat not in STRATEGIES or strat not in strategies:
                why = "unknown strategy" if strat not in STRATEGIES else "not enabled in config.json"
                self.add("strategy", sym, ts, subject, ", ".join(strategies), strat, why)
                continue
            i = self.bar_index(sym, ts)
            if i is None:
                self.add("signal_bar", sym, ts, subject, "a stored bar at the signal time", "no bar")
                continue
            logged[(sym, strat, side)].add(i)
            rule = rules_by_sym[sym].get((strat, side))
            if rule is None:  # a short while config.json disallows shorts
                self.add(
                    "condition", sym, ts, subject, "no short signals", side, "strategies.allow_short is false"
                )
                continue
            self._check_signal(row, rule, i, sym, ts, subject)
        # signals that should have fired
        for sym, rules in rules_by_sym.items():
            for (strat, side), rule in rules.items():
                holds = np.ones(len(self.run.bars[sym]), dtype=bool)
                near = np.zeros_like(holds)
                for c in rule.conditions:
                    h = c.holds
                    nr = c.near
                    near |= nr & ~np.isnan(c.lhs - c.rhs)
                    holds &= h | nr
                firm = holds & ~near
                self.borderline += int((holds & near).sum())
                expected = np.flatnonzero(firm)
                self.signals_expected += expected.size
                have = logged.get((sym, strat, side), set())
                self.checked["missing_signal"] += expected.size
                for i in expected.tolist():
                    if i not in have:
                        vals = ", ".join(
                            f"{c.name} ({_fmt(float(c.lhs[i]))} vs {_fmt(float(c.rhs[i]))})"
                            for c in rule.conditions
                        )
                        self.add(
                            "missing_signal",
                            sym,
                            int(self.ts_index[sym][i]),
                            f"{strat} {side}",
                            "a logged signal",
                            "none",
                            vals,
                        )

    def _check_signal(self, row, rule: Rule, i: int, sym: str, ts: int, subject: str) -> None:
        for c in rule.conditions:
            self.checked["condition"] += 1
            if bool(c.holds[i]):
                continue
            if bool(c.near[i]):
                self.borderline += 1
                continue
            self.add(
                "crossing" if c.crossing else "condition",
                sym,
                ts,
                subject,
                c.name,
                f"{_fmt(float(c.lhs[i]))} {c.op} {_fmt(float(c.rhs[i]))} is false",
            )
        if str(row.order_type) != rule.order_type:
            self.add("order_type", sym, ts, subject, rule.order_type, str(row.order_type))
        for check, want, got in (
            ("stop", rule.stop[i], row.stop_loss),
            ("target", rule.target[i], row.take_profit),
            *((("limit_price", rule.limit[i], row.limit_price),) if rule.limit is not None else ()),
        ):
            self.checked[check] += 1
            got_f = float("nan") if got is None else float(got)
            if not _close(float(want), got_f):
                self.add(
                    check,
                    sym,
                    ts,
                    subject,
                    _fmt(float(want)),
                    _fmt(got_f),
                    self._multiple_hint(check, rule, i, got_f),
                )

    def _multiple_hint(self, check: str, rule: Rule, i: int, got: float) -> str:
        """The ATR multiple the logged price implies, when it is a market entry's ATR bracket."""
        if check == "limit_price" or (check == "target" and rule.strategy == "mean_reversion"):
            return ""
        atr, ref = float(rule.atr[i]), float(rule.ref[i])
        if not (atr > 0 and math.isfinite(got)):
            return ""
        section = getattr(self.cfg.strategies, rule.strategy)
        cfg_mult = section.stop_atr if check == "stop" else section.target_atr
        return f"{abs(got - ref) / atr:.4g} x ATR from the entry; config says {cfg_mult:g}"

    # -------------------------------------------------------------- orders and fills

    def fills(self, orders: dict[str, Order], fills: list[Fill]) -> None:
        ex = self.cfg.execution
        tick_mode = ex.fill_mode == "tick"
        sig = self.run.signals
        approved = sig[sig["approved"].astype(bool)] if len(sig) else sig
        signal_of: dict[str, object] = {str(r.client_order_id): r for r in approved.itertuples(index=False)}
        # approved signals <-> entry orders
        for coid, row in signal_of.items():
            self.checked["order"] += 1
            o = orders.get(coid)
            if o is None:
                self.add("order", str(row.symbol), int(row.ts), coid, "an entry order", "none in the ledger")
                continue
            tick = self.cfg.instrument(o.symbol).tick_size
            if o.symbol != row.symbol or o.side.value != row.side or o.strategy != row.strategy:
                self.add(
                    "order",
                    o.symbol,
                    int(row.ts),
                    coid,
                    f"{row.symbol} {row.side} {row.strategy}",
                    f"{o.symbol} {o.side.value} {o.strategy}",
                )
            if o.order_type == OrderType.LIMIT and not _close(
                o.limit_price or math.nan, _on_tick(float(row.limit_price), tick)
            ):
                self.add(
                    "limit_price",
                    o.symbol,
                    int(row.ts),
                    coid,
                    _fmt(_on_tick(float(row.limit_price), tick)),
                    _fmt(o.limit_price),
                    "entry order",
                )
            for suffix, want, got_of in (
                ("sl", _on_tick(float(row.stop_loss), tick), lambda leg: leg.stop_price),
                ("tp", _on_tick(float(row.take_profit), tick), lambda leg: leg.limit_price),
            ):
                leg = orders.get(f"{coid}-{suffix}")
                if leg is None:
                    continue
                self.checked["bracket"] += 1
                got = got_of(leg)
                if not _close(want, math.nan if got is None else float(got)):
                    self.add(
                        "bracket",
                        o.symbol,
                        int(row.ts),
                        leg.client_order_id,
                        _fmt(want),
                        _fmt(got),
                        "the signal's price on the tick grid",
                    )
        for o in orders.values():
            if o.role == OrderRole.ENTRY and o.parent_id is None and o.client_order_id not in signal_of:
                self.add("order", o.symbol, None, o.client_order_id, "an approved signal", "none logged")
        first_entry_fill: dict[str, int] = {}  # entry root -> its first fill's time
        for f in fills:
            o = orders.get(f.client_order_id)
            if o is not None and o.role == OrderRole.ENTRY:
                root = (
                    o.parent_id
                    if o.parent_id in orders and orders[o.parent_id].role == OrderRole.ENTRY
                    else o.client_order_id
                )
                first_entry_fill[root] = min(first_entry_fill.get(root, f.ts), f.ts)
        filled_before: dict[str, float] = defaultdict(float)  # order id -> quantity filled so far
        for f in fills:
            self.checked["fill"] += 1
            o = orders.get(f.client_order_id)
            prior = filled_before[f.client_order_id]
            filled_before[f.client_order_id] += f.quantity
            if o is None:
                self.add("order", f.symbol, f.ts, f.fill_id, "its order in the ledger", "none")
                continue
            i = self.fill_bar(f.symbol, f.ts)
            if i is None:
                want = (
                    "a stored bar whose minute holds the fill time"
                    if self.live
                    else "a stored bar at the fill time"
                )
                self.add("fill_bar", f.symbol, f.ts, f.fill_id, want, "no bar")
                continue
            bar_ts = int(self.ts_index[f.symbol][i])  # = f.ts for a paper fill
            bars = self.run.bars[f.symbol]
            op, hi, lo = (float(bars[c].iat[i]) for c in ("open", "high", "low"))
            inst = self.cfg.instrument(f.symbol)
            buy = f.side == Side.BUY
            taker = f.liquidity == "taker"
            # a taker's slipped price then moves to the next tick against it
            slip = (
                (ex.slippage_bps / 1e4 * max(abs(hi), abs(lo)) + (ex.slippage_ticks + 1) * inst.tick_size)
                if taker
                else 0.0
            )
            tol = REL_TOL * max(1.0, abs(f.price))
            low_ok = lo - (0.0 if buy else slip) - tol
            high_ok = hi + (slip if buy else 0.0) + tol
            if not (low_ok <= f.price <= high_ok):
                self.add(
                    "fill_range",
                    f.symbol,
                    f.ts,
                    f.fill_id,
                    f"{_fmt(lo)} .. {_fmt(hi)}" + (f" (+/- slippage {_fmt(slip)})" if slip else ""),
                    _fmt(f.price),
                    f"{o.order_type.value} {f.side.value}",
                )
            # timing: never in or before the deciding bar
            if f.ts < o.created_ts:
                self.add(
                    "fill_time",
                    f.symbol,
                    f.ts,
                    f.fill_id,
                    f"at or after {pd.Timestamp(o.created_ts, unit='ns', tz='UTC')}",
                    "before its order existed",
                )
            root = o.parent_id if o.role != OrderRole.ENTRY else (o.parent_id or o.client_order_id)
            row = signal_of.get(root or "")
            if o.role == OrderRole.ENTRY and row is not None and bar_ts <= int(row.ts):
                self.add(
                    "fill_time",
                    f.symbol,
                    f.ts,
                    f.fill_id,
                    "after the signal's bar",
                    "in or before it",
                    f"signal bar {pd.Timestamp(int(row.ts), unit='ns', tz='UTC')}",
                )
            if o.role in (OrderRole.STOP_LOSS, OrderRole.TAKE_PROFIT) and root in first_entry_fill:
                entry_ts = first_entry_fill[root]
                if (
                    self.live and f.ts < entry_ts
                ):  # a leg resting on the exchange can fill in the entry's minute
                    self.add("fill_time", f.symbol, f.ts, f.fill_id, "after the entry fill", "before it")
                elif not self.live and f.ts <= entry_ts:
                    self.add(
                        "fill_time",
                        f.symbol,
                        f.ts,
                        f.fill_id,
                        "a bar after the entry fill",
                        "in the entry's bar",
                    )
            if self.live:
                continue  # the exchange set the price and the fee: no fill model applies
            # the fill model's price (bar mode)
            if not tick_mode:
                self._check_price(f, o, op, hi, lo, prior, inst.tick_size)
            # fee
            self.checked["fee"] += 1
            if o.order_type in (OrderType.MARKET, OrderType.STOP) and not taker:
                self.add("fee", f.symbol, f.ts, f.fill_id, "taker (a market/stop order)", f.liquidity)
            if inst.fee_per_unit is not None:
                want = f.quantity * inst.fee_per_unit
            else:
                bps = ex.taker_fee_bps if taker else ex.maker_fee_bps
                want = f.price * f.quantity * inst.multiplier * bps / 1e4
            if not _close(want, f.fee, 1e-9):
                self.add(
                    "fee",
                    f.symbol,
                    f.ts,
                    f.fill_id,
                    _fmt(want),
                    _fmt(f.fee),
                    f"{f.liquidity} fee on {_fmt(f.quantity)} @ {_fmt(f.price)}",
                )

    def _slip(self, price: float, buy: bool, tick: float) -> float:
        ex = self.cfg.execution
        sgn = 1.0 if buy else -1.0
        slipped = price * (1.0 + sgn * ex.slippage_bps / 1e4) + sgn * ex.slippage_ticks * tick
        return _on_tick(slipped, tick, ROUND_CEILING if buy else ROUND_FLOOR)

    def _check_price(
        self, f: Fill, o: Order, op: float, hi: float, lo: float, prior: float, tick: float
    ) -> None:
        """The fill model's price (bar mode); `prior` = the order's quantity filled before `f`."""
        buy = f.side == Side.BUY
        self.checked["fill_price"] += 1
        # a market order, or the rest of a stop that has already partly filled: at slip(open)
        if o.order_type == OrderType.MARKET or (o.order_type == OrderType.STOP and prior > 0):
            want = self._slip(op, buy, tick)
            if not _close(want, f.price):
                self.add(
                    "fill_price",
                    f.symbol,
                    f.ts,
                    f.fill_id,
                    f"open {_fmt(op)} + slippage = {_fmt(want)}",
                    _fmt(f.price),
                    f"{o.order_type.value} order" + (" (rest of a triggered stop)" if prior > 0 else ""),
                )
            ts = self.ts_index[f.symbol]
            first = int(np.searchsorted(ts, o.created_ts))
            if (
                o.order_type == OrderType.MARKET
                and prior == 0
                and self.cfg.execution.max_volume_participation == 0  # a cap can leave a bar unfilled
                and first < ts.shape[0]
                and int(ts[first]) != f.ts
            ):
                self.add(
                    "fill_time",
                    f.symbol,
                    f.ts,
                    f.fill_id,
                    f"the next bar {pd.Timestamp(int(ts[first]), unit='ns', tz='UTC')}",
                    "a later bar",
                    "market order",
                )
        elif o.order_type == OrderType.LIMIT and o.limit_price is not None:
            lim = o.limit_price
            through = lo < lim if buy else hi > lim
            better = (
                f.price <= lim + REL_TOL * max(1.0, lim) if buy else f.price >= lim - REL_TOL * max(1.0, lim)
            )
            if not (through and better):
                self.add(
                    "fill_price",
                    f.symbol,
                    f.ts,
                    f.fill_id,
                    f"limit {_fmt(lim)} traded through, fill at it or better",
                    f"{_fmt(f.price)} (bar {_fmt(lo)} .. {_fmt(hi)})",
                    "limit order",
                )
        elif o.order_type == OrderType.STOP and o.stop_price is not None:
            stop = o.stop_price
            triggered = hi >= stop if buy else lo <= stop
            want = self._slip(max(stop, op) if buy else min(stop, op), buy, tick)
            if not triggered or not _close(want, f.price):
                self.add(
                    "fill_price",
                    f.symbol,
                    f.ts,
                    f.fill_id,
                    f"stop {_fmt(stop)} triggered, fill {_fmt(want)}",
                    f"{_fmt(f.price)} (bar {_fmt(lo)} .. {_fmt(hi)})",
                    "stop order",
                )

    # -------------------------------------------------------------- positions and P&L

    def pnl(self, orders: dict[str, Order], fills: list[Fill], ledger) -> None:
        start = float(ledger.get_meta("starting_cash") or self.cfg.risk.starting_equity)
        pos: dict[str, list[float]] = {}  # symbol -> [qty, avg, realized]
        cash = start
        cash_after: list[tuple[int, float]] = []
        realized_of: dict[str, float] = {}
        for f in fills:
            mult = self.cfg.instrument(f.symbol).multiplier
            q, avg, real = pos.get(f.symbol, [0.0, 0.0, 0.0])
            d = f.quantity * (1.0 if f.side == Side.BUY else -1.0)
            gain = 0.0
            if q == 0 or (q > 0) == (d > 0):
                avg = (avg * abs(q) + f.price * abs(d)) / (abs(q) + abs(d))
                q += d
            else:
                closed = min(abs(q), abs(d))
                gain = closed * (f.price - avg) * (1.0 if q > 0 else -1.0) * mult
                real += gain
                nq = q + d
                if abs(nq) <= 1e-9 * max(abs(q), abs(d)):
                    q, avg = 0.0, 0.0
                elif abs(d) > abs(q):
                    q, avg = nq, f.price
                else:
                    q = nq
            pos[f.symbol] = [q, avg, real]
            realized_of[f.fill_id] = gain
            cash += gain - f.fee
            cash_after.append((f.ts, cash))
        self.cash_after = cash_after
        # the ledger's recorded positions
        for p in ledger.positions():
            self.checked["position"] += 1
            q, avg, real = pos.get(p.symbol, [0.0, 0.0, 0.0])
            for name, want, got in (
                ("quantity", q, p.quantity),
                ("avg_price", avg, p.avg_price),
                ("realized_pnl", real, p.realized_pnl),
            ):
                if not _close(want, got, 1e-7):
                    self.add(
                        "position",
                        p.symbol,
                        None,
                        name,
                        _fmt(want),
                        _fmt(got),
                        "replayed fills vs ledger positions",
                    )
        # the ledger's cash after each fill's bar
        eq = ledger.equity_curve()
        if eq and cash_after:
            fts = np.array([t for t, _ in cash_after], dtype=np.int64)
            last_per_ts: dict[int, float] = {}
            for ts, c, _e in eq:
                last_per_ts[int(ts)] = float(c)
            for ts, c in last_per_ts.items():
                k = int(np.searchsorted(fts, ts, side="left")) - 1  # the fills before this close
                self.checked["cash"] += 1
                want = cash_after[k][1] if k >= 0 else start
                if not _close(want, c, 1e-7):
                    self.add(
                        "cash",
                        "",
                        ts - NS_PER_MINUTE,
                        "ledger equity table",
                        _fmt(want),
                        _fmt(c),
                        "cash after the fills up to this bar",
                    )
        self._trades(orders, fills)
        # final equity: cash + open positions at their last close
        if len(self.run.equity):
            unreal = 0.0
            for sym, (q, avg, _r) in pos.items():
                if q and sym in self.run.bars and len(self.run.bars[sym]):
                    unreal += (
                        q
                        * (float(self.run.bars[sym]["close"].iat[-1]) - avg)
                        * self.cfg.instrument(sym).multiplier
                    )
            want = cash + unreal
            got = float(self.run.equity["equity"].iat[-1])
            self.checked["equity"] += 1
            if not _close(want, got, 1e-7):
                self.add(
                    "equity",
                    "",
                    int(self.run.equity["ts"].iat[-1]) - NS_PER_MINUTE,
                    "equity.parquet (last)",
                    _fmt(want),
                    _fmt(got),
                    "cash + open positions at the last close",
                )
        overall = self.run.trading_summary.get("overall") or {}
        if "net_pnl" in overall and len(self.run.trades):
            self.checked["summary"] += 1
            total = float(self.run.trades["pnl"].sum())
            if not _close(total, float(overall["net_pnl"]), 1e-7):
                self.add(
                    "summary",
                    "",
                    None,
                    "overall.net_pnl",
                    _fmt(total),
                    _fmt(float(overall["net_pnl"])),
                    "sum of trades.parquet pnl",
                )

    def _trades(self, orders: dict[str, Order], fills: list[Fill]) -> None:
        by_root: dict[str, dict[str, list[Fill]]] = defaultdict(lambda: {"entry": [], "exit": []})
        for f in fills:
            o = orders.get(f.client_order_id)
            if o is None:
                continue
            if o.role == OrderRole.ENTRY:
                root = o.parent_id if o.parent_id in orders else o.client_order_id
                by_root[root]["entry"].append(f)
            elif o.parent_id is not None:
                by_root[o.parent_id]["exit"].append(f)
        trades = self.run.trades
        seen = set()
        for t in trades.itertuples(index=False):
            root = str(t.entry_order_id)
            entry = orders.get(root)
            if entry is not None and entry.role == OrderRole.ENTRY and entry.parent_id in orders:
                root = entry.parent_id  # an `E-mkt` that replaced its expired limit entry E
            seen.add(root)
            self.checked["trade"] += 1
            legs = by_root.get(root)
            if not legs or not legs["entry"] or not legs["exit"]:
                self.add(
                    "trade",
                    str(t.symbol),
                    int(t.entry_ts),
                    root,
                    "entry and exit fills in the ledger",
                    "none",
                )
                continue
            ent, ext = legs["entry"], legs["exit"]
            qty = sum(f.quantity for f in ent)
            entry_px = sum(f.quantity * f.price for f in ent) / qty
            exit_qty = sum(f.quantity for f in ext)
            exit_px = sum(f.quantity * f.price for f in ext) / exit_qty
            fees = sum(f.fee for f in ent) + sum(f.fee for f in ext)
            sgn = 1.0 if ent[0].side == Side.BUY else -1.0
            pnl = sgn * (exit_px - entry_px) * exit_qty * self.cfg.instrument(str(t.symbol)).multiplier - fees
            for name, want, got in (
                ("quantity", qty, float(t.quantity)),
                ("entry_price", entry_px, float(t.entry_price)),
                ("exit_price", exit_px, float(t.exit_price)),
                ("fees", fees, float(t.fees)),
                ("pnl", pnl, float(t.pnl)),
                ("entry_ts", float(ent[0].ts), float(t.entry_ts)),
                ("exit_ts", float(ext[-1].ts), float(t.exit_ts)),
            ):
                if not _close(want, got, 1e-7):
                    self.add(
                        "trade",
                        str(t.symbol),
                        int(t.entry_ts),
                        f"{root} {name}",
                        _fmt(want),
                        _fmt(got),
                        "from its fills",
                    )
            entry_order = orders.get(root)
            for name, want_s, got_s in (
                ("symbol", ent[0].symbol, str(t.symbol)),
                ("side", "long" if sgn > 0 else "short", str(t.side)),
                (
                    "strategy",
                    entry_order.strategy if entry_order is not None else str(t.strategy),
                    str(t.strategy),
                ),
            ):
                if want_s != got_s:
                    self.add(
                        "trade",
                        ent[0].symbol,
                        int(t.entry_ts),
                        f"{root} {name}",
                        want_s,
                        got_s,
                        "from its entry",
                    )
        for root, legs in by_root.items():
            q_in = sum(f.quantity for f in legs["entry"])
            q_out = sum(f.quantity for f in legs["exit"])
            if root not in seen and legs["entry"] and q_in > 0 and abs(q_in - q_out) <= 1e-9 * q_in:
                f = legs["entry"][0]
                self.add(
                    "trade",
                    f.symbol,
                    f.ts,
                    root,
                    "a closed trade in trades.parquet",
                    "none",
                    "its fills close it",
                )

    # -------------------------------------------------------------- the other copies

    def trades_csv(self) -> None:
        """trades.csv must hold trades.parquet's rows (checked against the ledger above), each
        field equal: rows matched by entry order id (and occurrence), in file order."""
        csv = self.run.trades_csv
        if csv is None:
            self.notes.append("no trades.csv: not compared with trades.parquet")
            return
        pq = self.run.trades
        missing = [c for c in pq.columns if c not in csv.columns]
        if missing:
            self.add(
                "trades_csv",
                "",
                None,
                "columns",
                ", ".join(map(str, pq.columns)),
                "missing " + ", ".join(missing),
            )
            return
        csv_rows = _keyed(csv)
        for key, prow in _keyed(pq).items():
            self.checked["trades_csv"] += 1
            crow = csv_rows.pop(key, None)
            sym, ts = str(prow["symbol"]), _int_or_none(prow.get("entry_ts"))
            if crow is None:
                self.add("trades_csv", sym, ts, key[0], "its row (as in trades.parquet)", "none")
                continue
            for col in pq.columns:
                if not _same(prow[col], crow[col]):
                    self.add(
                        "trades_csv",
                        sym,
                        ts,
                        f"{key[0]} {col}",
                        _show(prow[col]),
                        _show(crow[col]),
                        "trades.parquet vs trades.csv",
                    )
        for key, crow in csv_rows.items():
            self.add(
                "trades_csv",
                str(crow.get("symbol", "")),
                _int_or_none(crow.get("entry_ts")),
                key[0],
                "no such trade (trades.parquet has none)",
                "a row",
            )

    def orders_file(self, orders: dict[str, Order]) -> None:
        """orders.parquet must hold the ledger's orders, each field equal (the ledger is the
        record the fills and positions were checked against)."""
        table = self.run.orders
        if table is None:
            self.notes.append("no orders.parquet: not compared with the ledger's orders")
            return
        if "client_order_id" not in table.columns:
            self.add(
                "orders_file", "", None, "columns", "client_order_id, ...", ", ".join(map(str, table.columns))
            )
            return
        rows = {str(r["client_order_id"]): r for r in table.to_dict("records")}
        for coid, o in orders.items():
            self.checked["orders_file"] += 1
            row = rows.pop(coid, None)
            if row is None:
                self.add("orders_file", o.symbol, None, coid, "its row (as in the ledger)", "none")
                continue
            for col, want in msgspec.to_builtins(o).items():
                got = row.get(col, "(no column)")
                if not _same(want, got):
                    self.add(
                        "orders_file",
                        o.symbol,
                        None,
                        f"{coid} {col}",
                        _show(want),
                        _show(got),
                        "ledger vs orders.parquet",
                    )
        for coid, row in rows.items():
            self.add(
                "orders_file",
                str(row.get("symbol", "")),
                None,
                coid,
                "no such order (the ledger has none)",
                "a row",
            )


def _keyed(trades: pd.DataFrame) -> dict[tuple[str, int], dict]:
    """Trade rows by (entry order id, k-th row of that id), in file order."""
    out: dict[tuple[str, int], dict] = {}
    seen: dict[str, int] = defaultdict(int)
    for row in trades.to_dict("records"):
        coid = "" if _missing(row.get("entry_order_id")) else str(row.get("entry_order_id"))
        out[(coid, seen[coid])] = row
        seen[coid] += 1
    return out


def _missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NaT


def _same(a: object, b: object) -> bool:
    """Two copies of one field equal: None/NaN/"" alike, numbers to REL_TOL, timestamps as
    instants, anything else as text (an enum's value, a bool)."""
    a_none, b_none = _missing(a) or a == "", _missing(b) or b == ""
    if a_none or b_none:
        return a_none and b_none
    if isinstance(a, bool) or isinstance(b, bool):
        return str(a).lower() == str(b).lower()
    if isinstance(a, (int, float, np.integer, np.floating)) and isinstance(
        b, (int, float, np.integer, np.floating)
    ):
        return float(a) == float(b) or _close(float(a), float(b))
    if isinstance(a, pd.Timestamp) or isinstance(b, pd.Timestamp):
        try:
            return pd.Timestamp(a) == pd.Timestamp(b)
        except (TypeError, ValueError):
            return False
    return str(a) == str(b)


def _show(x: object) -> str:
    if _missing(x):
        return "none"
    return _fmt(float(x)) if isinstance(x, (float, np.floating)) else str(x)


def _int_or_none(x: object) -> int | None:
    try:
        return None if _missing(x) else int(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def verify_run(path: str | Path) -> VerifyReport:
    """Recheck the run directory at `path` (see the module docstring). Raises RunDirError when
    it is not a run directory or stored no bars."""
    from scalper.ledger import Ledger

    run = read_run(path, need_bars=True)
    chk = _Checker(run)
    chk.indicators()
    strategies = chk.strategies()
    chk.signals(strategies)
    chk.trades_csv()
    fills: list[Fill] = []
    if run.ledger_path is None:
        chk.notes.append("no ledger.sqlite: fills, positions and P&L not checked")
    else:
        ledger = Ledger(run.ledger_path)
        try:
            orders = {o.client_order_id: o for o in ledger.orders()}
            fills = ledger.fills()
            chk.fills(orders, fills)
            chk.pnl(orders, fills, ledger)
            chk.orders_file(orders)
        finally:
            ledger.close()
    if chk.live:
        chk.notes.append(
            "live fills: the exchange's times, prices and fees; each checked against the bar whose "
            "minute holds it, not against the paper fill model"
        )
    elif run.config.execution.fill_mode == "tick":
        chk.notes.append("fill_mode tick: fill prices checked against the bar's range only")
    return VerifyReport(
        run_dir=str(run.path),
        ok=not chk.mismatches,
        symbols=list(run.bars),
        bars=sum(len(b) for b in run.bars.values()),
        strategies=strategies,
        signals_logged=len(run.signals),
        signals_expected=chk.signals_expected,
        fills=len(fills),
        trades=len(run.trades),
        checked=dict(chk.checked),
        borderline=chk.borderline,
        mismatches=chk.mismatches,
        notes=chk.notes,
    )


def report_json(report: VerifyReport) -> bytes:
    """The report as indented JSON (for `scalper verify --json`)."""
    return msgspec.json.format(msgspec.json.encode(report), indent=2)
