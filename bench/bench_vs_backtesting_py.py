"""scalper's backtest vs backtesting.py, side by side: the same EMA-crossover rule on the same bars.

    .venv/bin/python -m pip install backtesting      # (the optional `bench` extra)
    .venv/bin/python bench/bench_vs_backtesting_py.py [--sizes 100000,525600] [--repeat 3]

The rule is scalper's momentum strategy (config.json's numbers): at bar t's close, long when
EMA9 crossed above EMA21 at this bar (EMA9 > EMA21 now, <= on the previous bar), close >
EMA50 and 50 < RSI14 < 70; short mirrored (crossed below, close < EMA50, 30 < RSI < 50).
Market entry at bar t+1's open; stop-loss close -/+ 1.5 x ATR14 and take-profit close +/-
2 x ATR14 (a bracket), each put on the instrument's tick grid (the nearest tick, as scalper's
RiskManager places them: `scalper.execution.orders.round_to_tick`); a signal whose rounded
stop or target is not strictly on its side of the close is not traded (scalper refuses it as
invalid_signal; backtesting.py would raise on such a bracket); one position at a time;
1 unit; no fees, no slippage, no spread.

* scalper: `prepare` (pandas_ta batch indicators) + `Backtest(cfg, ["momentum"]).run`, with a
  config that makes the RiskManager's size always 1 (a margin_per_unit that fits exactly one
  unit under max_position_pct), risk halts and the loss cooldown out of the way, zero costs.
* backtesting.py: `Backtest(df, EmaCross, cash=1e9, commission=0, spread=0, margin=1,
  trade_on_close=False, hedging=False, exclusive_orders=False, finalize_trades=False).run()`.
  The strategy reads the indicator columns scalper computed, passed in as precomputed arrays
  (`self.I(lambda: array)`), so both engines see bit-identical numbers; its `next()` applies
  the rule, rounds the stop and target with scalper's own `round_to_tick` and the dataset's
  tick size (passed in as `tick`), and calls `self.buy/sell(size=1, sl=..., tp=...)` when
  flat, so both engines use the same stop and target prices. Its progress bar is off
  (TQDM_DISABLE=1). Timed: the Backtest constructor + run() (indicators are precomputed, so
  compare it with scalper's engine-only figure as well).

Data: synthetic 1-minute bars (`synthetic_bars(cfg.feed.synthetic, "SYN", n)`) for each
size, and the bundled ES ticks made into bars (`load_bars(Config())`). Each is run long-only
and long+short. Then the closed-trade lists are compared (entry time, exit time, entry price,
exit price, exit reason, side): how many agree exactly, and every disagreement is put in one
of the kinds explained at the end of the output (the first few of each kind are printed side
by side). Trades still open at the end of the data are not compared (neither engine closes
them: finalize_trades=False).

Control: backtesting.py once more with the SAME strategy except that it enters without a
bracket and attaches SL/TP (`trade.sl`, `trade.tp`, its public API) in the next() of the
entry bar, so they are live from the bar after the entry, as in scalper. If the explanation of
the differences is right, this control agrees with scalper trade for trade except where
backtesting.py takes profit on a bar that only touched the (tick-grid) target, which scalper's
fill model does not count as a fill (kind F), and the knock-ons of those exits (kind C).
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's per-run progress bar

import argparse
import importlib.metadata as md
import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scalper import backtest as sbt
from scalper.config import Config, default_document
from scalper.execution.orders import round_to_tick
from scalper.feeds.synthetic import synthetic_bars

from common import best_of, machine_info

try:
    import backtesting as btp
    from backtesting import Backtest as BtpBacktest
    from backtesting import Strategy as BtpStrategy
except ImportError as exc:  # pragma: no cover - the message is the point
    sys.exit(
        f"backtesting.py is not installed ({exc}); install it with "
        "`.venv/bin/python -m pip install backtesting` (or the `bench` extra)"
    )

SYMBOL = "SYN"
SHOW = 3  # disagreements printed per kind


# ------------------------------------------------------------------------------- configs


def scalper_config(allow_short: bool, symbol: str, tick_size: float) -> Config:
    """Momentum only, 1 unit per trade, zero costs, risk limits out of the way."""
    doc = default_document()
    doc["symbols"] = [symbol]
    doc["strategies"]["allow_short"] = allow_short
    doc["execution"].update(
        slippage_bps=0.0,
        slippage_ticks=0,
        maker_fee_bps=0.0,
        taker_fee_bps=0.0,
        max_volume_participation=0.0,
    )
    # Size = floor(risk budget / stop distance) is large, then max_position caps it at
    # floor(equity x 1.5% / margin_per_unit) = floor(1.5e7 / 1e7) = 1 unit. One unit's P&L
    # is a few price units, so equity (1e9) never moves enough to change that.
    doc["risk"].update(
        starting_equity=1e9,
        risk_per_trade_pct=1.0,
        max_position_pct=1.5,
        max_gross_exposure_pct=100.0,
        max_open_positions=1,
        max_orders_per_minute=1000,
        daily_loss_limit_pct=90.0,
        max_drawdown_pct=90.0,
        cooldown_bars=0,  # no cooldown after consecutive losses
        one_position_per_symbol=True,
        size_multiplier_cap=1.0,
    )
    unit = {
        "tick_size": tick_size,
        "lot_size": 1.0,
        "min_quantity": 1.0,
        "min_notional": 0.0,
        "multiplier": 1.0,
        "margin_per_unit": 1e7,
    }
    doc["instruments"] = {"default": dict(unit), symbol: dict(unit)}
    return msgspec.convert(doc, Config)


class EmaCross(BtpStrategy):
    """scalper's momentum rule, on scalper's indicator columns (passed in as `cols`)."""

    cols = None  # {name: np.ndarray}, set through Backtest.run(cols=...)
    allow_short = False
    tick = 0.0  # the instrument's tick size, set through Backtest.run(tick=...)
    # Control variant: enter without a bracket and attach SL/TP (Trade.sl / Trade.tp) in the
    # next() of the entry bar, i.e. at its close, so they are live from the bar after the
    # entry: scalper's convention, reached through backtesting.py's public API (no patch).
    bracket_next_bar = False
    _pending = None
    fast_col, slow_col, trend_col, rsi_col, atr_col = "ema_9", "ema_21", "ema_50", "rsi_14", "atr_14"
    rsi_lo, rsi_hi = 50.0, 70.0
    stop_atr, target_atr = 1.5, 2.0

    def init(self):
        assert self.tick > 0.0, "EmaCross needs the tick size: Backtest.run(..., tick=...)"
        c = self.cols
        self.fast = self.I(lambda: c[self.fast_col], name=self.fast_col)
        self.slow = self.I(lambda: c[self.slow_col], name=self.slow_col)
        self.trend = self.I(lambda: c[self.trend_col], name=self.trend_col)
        self.rsi = self.I(lambda: c[self.rsi_col], name=self.rsi_col)
        self.atr = self.I(lambda: c[self.atr_col], name=self.atr_col)

    def next(self):
        if self.position:
            if self._pending is not None:
                trade = self.trades[-1]
                trade.sl, trade.tp = self._pending
                self._pending = None
            return  # one position at a time (scalper: one_position_per_symbol)
        self._pending = None
        fast, slow = self.fast, self.slow
        close = self.data.Close[-1]
        atr = self.atr[-1]
        rsi = self.rsi[-1]
        if not atr > 0.0:
            return
        if (
            fast[-1] > slow[-1]
            and fast[-2] <= slow[-2]
            and close > self.trend[-1]
            and self.rsi_lo < rsi < self.rsi_hi
        ):
            # the same float expressions as scalper.strategies.base.market_arrays (sign +1.0)
            self.enter(+1, close - 1.0 * (self.stop_atr * atr), close + 1.0 * (self.target_atr * atr))
        elif (
            self.allow_short
            and fast[-1] < slow[-1]
            and fast[-2] >= slow[-2]
            and close < self.trend[-1]
            and 100.0 - self.rsi_hi < rsi < 100.0 - self.rsi_lo
        ):
            self.enter(-1, close - (-1.0) * (self.stop_atr * atr), close + (-1.0) * (self.target_atr * atr))

    def enter(self, side: int, sl: float, tp: float) -> None:
        # on the tick grid, as scalper's RiskManager places them (its judge(): round_to_tick)
        sl, tp = round_to_tick(sl, self.tick), round_to_tick(tp, self.tick)
        close = self.data.Close[-1]
        # scalper refuses a signal whose stop/target is not strictly beyond the reference
        # price (the close) on its side (invalid_signal); backtesting.py would raise on it
        if not ((sl < close < tp) if side > 0 else (tp < close < sl)):
            return
        order = self.buy if side > 0 else self.sell
        if self.bracket_next_bar:
            order(size=1)
            self._pending = (sl, tp)
        else:
            order(size=1, sl=sl, tp=tp)


# ------------------------------------------------------------------------------- trades


@dataclass(frozen=True)
class T:
    side: str
    entry_ts: int
    exit_ts: int
    entry_price: float
    exit_price: float
    reason: str
    sl: float = float("nan")
    tp: float = float("nan")

    def key(self) -> tuple:
        return (self.side, self.entry_ts, self.exit_ts, self.entry_price, self.exit_price, self.reason)


def scalper_trades(result: sbt.BacktestResult, bt_engine: sbt.Backtest) -> list[T]:
    out = []
    for t in result.trades:
        sl, tp = bt_engine.orders.bracket_prices.get(t.entry_order_id, (float("nan"), float("nan")))
        out.append(
            T(
                t.side,
                int(t.entry_ts),
                int(t.exit_ts),
                float(t.entry_price),
                float(t.exit_price),
                t.exit_reason,
                sl,
                tp,
            )
        )
    return out


def btp_trades(stats: pd.Series) -> list[T]:
    tr = stats["_trades"]
    out = []
    for row in tr.itertuples(index=False):
        long = row.Size > 0
        exit_price, sl, tp = float(row.ExitPrice), float(row.SL), float(row.TP)
        # a stop fills at min(stop, open) (long) <= SL; a target at max(target, open) >= TP
        if long:
            reason = "stop_loss" if exit_price <= sl else ("take_profit" if exit_price >= tp else "other")
        else:
            reason = "stop_loss" if exit_price >= sl else ("take_profit" if exit_price <= tp else "other")
        out.append(
            T(
                "long" if long else "short",
                int(pd.Timestamp(row.EntryTime).value),
                int(pd.Timestamp(row.ExitTime).value),
                float(row.EntryPrice),
                exit_price,
                reason,
                sl,
                tp,
            )
        )
    return out


# ------------------------------------------------------------------------------- comparison

KINDS = {
    "A": "backtesting.py exits in the ENTRY bar (its SL/TP are live in the bar the market entry fills; "
    "scalper's bracket is active from the next bar)",
    "F": "same entry, backtesting.py exits at its take-profit on a bar that only TOUCHED it (high == TP "
    "for a long, low == TP for a short) while scalper, which fills a limit only when a bar trades "
    "through it, holds on",
    "B": "same entry, exits differ for another reason (see the bar printed)",
    "C": "entry only in one list: the other engine was still in a position then (a knock-on of an earlier "
    "exit difference; with one position at a time the signal is skipped)",
    "D": "entry only in one list, the other engine was flat: the signal bar precedes backtesting.py's "
    "first next() call (its warm-up skip) or the rules disagree",
    "E": "entry only in one list: the other engine's trade with that entry is still open at the end of the data",
}


EXPLAIN = """How the two engines fill (backtesting.py 0.6.6 read from its `_Broker._process_orders`):

- Market entry: both fill an order decided at bar t's close at bar t+1's open
  (`trade_on_close=False`; with True backtesting.py would fill at bar t's close and date the
  entry on bar t, which scalper never does).
- When the bracket becomes active — THE difference: backtesting.py re-processes the new SL/TP
  orders in the same bar the market entry filled (its issue #119), so a trade can exit in its
  entry bar; scalper stamps the legs with the entry bar's close, active from the next bar
  (README: "stop-loss and take-profit are active from the bar after the entry"). Kind A. When
  the entry bar closed beyond the stop, scalper then fills at the next bar's open (a gap
  through the stop), i.e. at a different price; when the entry bar only poked through and
  came back, scalper keeps the trade and may exit much later, possibly at the other leg.
- Knock-on: after a kind-A or kind-F exit backtesting.py is flat and can take the next
  signal while scalper still holds the position (refused: position_exists); kind C.
- Both legs touched in one bar: backtesting.py checks the SL first (SL orders sit at the head
  of its order queue), so the stop wins whatever the open; scalper lets the leg the bar's
  OPEN already reaches win, else the stop. They differ only for a bar that opens beyond the
  target and also trades through the stop: never after the entry bar on the synthetic bars
  (open = previous close, inside the bracket); possible on real gaps.
- Stop and target prices: scalper's RiskManager puts both on the instrument's tick grid
  (nearest tick, `round_to_tick`); this strategy rounds them with the same function and
  tick size before handing them to backtesting.py, so both engines use the same prices. A
  signal whose rounded stop or target is not strictly beyond the close on its side is
  skipped in both (scalper: invalid_signal; backtesting.py would raise ValueError).
- Take-profit (a limit): backtesting.py fills on a touch (high >= TP for a long's sell
  limit, low <= TP for a short's buy limit), scalper only when the bar trades through
  (high > TP; low < TP), its fill model (README, scalper/execution/paper.py: "a touch is not
  a fill"). With the target on the tick grid and bars on the same grid, a bar whose high (or
  low) is exactly the target is common: backtesting.py takes profit there, scalper holds on
  and exits later, at either leg. Kind F, in the main comparison and in the control alike
  (last column of the conventions table).
- Stop-loss: both trigger on a touch (low <= SL for a long) and fill at min(SL, open): a gap
  through the stop fills at the open. Same.
- exclusive_orders: False here; with True each new order would close the open trade. Both
  skip signals while in a position (backtesting.py's next() returns when `self.position`;
  scalper's RiskManager refuses position_exists), so the setting would change nothing.
- A new entry on the exit bar: allowed by both (backtesting.py calls next() after the bar's
  orders are processed; scalper applies bar t's fills before deciding bar t's signals).
- Warm-up: backtesting.py calls next() only from bar 1 + (latest first-non-NaN index of the
  indicators) — bar 50 here (EMA50); scalper's rule can first fire at bar 49. Kind D if so.
- End of data: neither closes a trade still open (finalize_trades=False); not compared.
- Sizes: 1 unit in both, no commission/spread/slippage, so entry prices are the bar's open
  bit for bit and P&L = exit - entry per unit."""


def in_position(trades: list[T], ts: int, open_from: int | None) -> bool:
    """Whether a trade of `trades` holds a position at bar open `ts` (entry <= ts <= exit)."""
    starts = np.fromiter((t.entry_ts for t in trades), np.int64, len(trades))
    i = int(np.searchsorted(starts, ts, side="right")) - 1
    if i >= 0 and trades[i].entry_ts <= ts <= trades[i].exit_ts:
        return True
    return open_from is not None and ts >= open_from


def touched_tp(t: T, ts: int, cols: dict) -> bool:
    """Whether the bar at `ts` reached `t`'s take-profit exactly and not beyond it (a long's
    high == TP, a short's low == TP): backtesting.py fills a limit there, scalper does not."""
    i = int(np.searchsorted(cols["timestamp"], ts))
    return bool(cols["high"][i] == t.tp if t.side == "long" else cols["low"][i] == t.tp)


def compare(s_tr: list[T], b_tr: list[T], s_open: int | None, b_open: int | None, cols: dict):
    """Counts and classified disagreements. `s_open`/`b_open`: entry ts of a trade still open at the end."""
    s_by = {t.entry_ts: t for t in s_tr}
    b_by = {t.entry_ts: t for t in b_tr}
    exact = sum(1 for ts, t in s_by.items() if ts in b_by and b_by[ts].key() == t.key())
    same_entry = sum(1 for ts in s_by if ts in b_by)
    kinds: dict[str, list[tuple[T | None, T | None]]] = {k: [] for k in KINDS}
    for ts in sorted(set(s_by) | set(b_by)):
        s, b = s_by.get(ts), b_by.get(ts)
        if s is not None and b is not None:
            if s.key() == b.key():
                continue
            if b.exit_ts == b.entry_ts and s.exit_ts != s.entry_ts:
                kinds["A"].append((s, b))
            elif (
                b.reason == "take_profit"
                and b.tp == s.tp
                and b.exit_ts < s.exit_ts
                and touched_tp(b, b.exit_ts, cols)
            ):
                kinds["F"].append((s, b))
            else:
                kinds["B"].append((s, b))
            continue
        other_tr, other_open = (b_tr, b_open) if s is not None else (s_tr, s_open)
        if other_open is not None and ts == other_open:
            kinds["E"].append((s, b))
        elif in_position(other_tr, ts, other_open):
            kinds["C"].append((s, b))
        else:
            kinds["D"].append((s, b))
    return exact, same_entry, kinds


def conventions(s_tr: list[T], b_tr: list[T], cols: dict, kinds: dict) -> dict[str, tuple[int, ...]]:
    """(cases among the trades that agree exactly, among all of scalper's trades, among scalper's
    kind-A trades, among scalper's trades without a counterpart (kind C), among scalper's kind-F
    trades) for the fill conventions that could make the engines differ."""
    kind_a = {s.entry_ts for s, _ in kinds["A"]}
    kind_c = {s.entry_ts for s, _ in kinds["C"] if s is not None}
    kind_f = {s.entry_ts for s, _ in kinds["F"]}
    ts, o, h, lo = cols["timestamp"], cols["open"], cols["high"], cols["low"]
    b_keys = {t.key() for t in b_tr}
    out: dict[str, list[int]] = {k: [0, 0, 0, 0, 0] for k in ("both", "gap", "reentry", "touch")}
    prev_exit_i = None
    for t in s_tr:
        agree = t.key() in b_keys
        i = int(np.searchsorted(ts, t.exit_ts))
        e = int(np.searchsorted(ts, t.entry_ts))
        long = t.side == "long"
        sl_hit = lo[i] <= t.sl if long else h[i] >= t.sl
        tp_hit = h[i] > t.tp if long else lo[i] < t.tp
        flags = {
            "both": sl_hit and tp_hit,
            "gap": t.exit_price == o[i],
            "reentry": prev_exit_i is not None and e == prev_exit_i + 1,
            # a bar from the entry bar up to the one before scalper's exit bar reached the target
            # exactly (and no further: scalper holds on): a fill for backtesting.py (kind A in
            # the entry bar, kind F after it, unless it was in another trade then: kind C)
            "touch": bool(np.any((h[e:i] == t.tp) if long else (lo[e:i] == t.tp))),
        }
        for k, v in flags.items():
            if v:
                out[k][1] += 1
                out[k][0] += agree
                out[k][2] += t.entry_ts in kind_a
                out[k][3] += t.entry_ts in kind_c
                out[k][4] += t.entry_ts in kind_f
        prev_exit_i = i
    return {k: tuple(v) for k, v in out.items()}


def rule_check(res: sbt.BacktestResult, b_tr: list[T], cols: dict) -> tuple[int, int]:
    """backtesting.py entries whose signal bar (the bar before the entry) is one where scalper's
    momentum rule fired with the same side, out of all backtesting.py entries."""
    fired = {(s.signal.ts, "long" if s.signal.side.value == "buy" else "short") for s in res.signals}
    ts = cols["timestamp"]
    ok = 0
    for t in b_tr:
        e = int(np.searchsorted(ts, t.entry_ts))
        ok += e > 0 and (int(ts[e - 1]), t.side) in fired
    return ok, len(b_tr)


def fmt_ts(ts: int) -> str:
    return pd.Timestamp(ts, unit="ns").strftime("%Y-%m-%d %H:%M")


def fmt_trade(t: T | None) -> str:
    if t is None:
        return "-"
    return (
        f"{t.side} {fmt_ts(t.entry_ts)} @ {t.entry_price:.4f} -> {fmt_ts(t.exit_ts)} @ {t.exit_price:.4f} "
        f"{t.reason}"
    )


def bar_text(cols: dict, ts: int) -> str:
    i = int(np.searchsorted(cols["timestamp"], ts))
    return (
        f"bar {fmt_ts(ts)}: O {cols['open'][i]:g} H {cols['high'][i]:g} L {cols['low'][i]:g} "
        f"C {cols['close'][i]:g}"
    )


# ------------------------------------------------------------------------------- one dataset


@dataclass
class Outcome:
    label: str
    bars: int
    short: bool
    t_prep: float
    t_engine: float
    t_scalper: float
    t_btp: float
    n_s: int
    n_b: int
    exact: int
    same_entry: int
    kinds: dict
    cols: dict
    s_signals: int
    b_start: int
    pnl_s: float
    pnl_b: float
    conv: dict
    rule: tuple[int, int]
    n_c: int
    c_exact: int
    c_kinds: dict
    pnl_c: float


def btp_frame(cols: dict) -> pd.DataFrame:
    idx = pd.DatetimeIndex(pd.to_datetime(cols["timestamp"], unit="ns"), name="time")
    return pd.DataFrame(
        {
            "Open": cols["open"],
            "High": cols["high"],
            "Low": cols["low"],
            "Close": cols["close"],
            "Volume": cols["volume"],
        },
        index=idx,
    )


def run_btp(
    frame: pd.DataFrame, cols: dict, allow_short: bool, tick: float, bracket_next_bar: bool = False
) -> pd.Series:
    bt = BtpBacktest(
        frame,
        EmaCross,
        cash=1e9,
        commission=0.0,
        spread=0.0,
        margin=1.0,
        trade_on_close=False,
        hedging=False,
        exclusive_orders=False,
        finalize_trades=False,
    )
    return bt.run(cols=cols, allow_short=allow_short, bracket_next_bar=bracket_next_bar, tick=tick)


def one(label: str, symbol: str, bars: pd.DataFrame, tick: float, allow_short: bool, repeat: int) -> Outcome:
    cfg = scalper_config(allow_short, symbol, tick)
    sd = sbt.prepare(symbol, bars, cfg)
    engine = sbt.Backtest(cfg, ["momentum"])
    res = engine.run({symbol: sd})
    t_prep = best_of(lambda: sbt.prepare(symbol, bars, cfg), repeat)
    t_engine = best_of(lambda: sbt.Backtest(cfg, ["momentum"]).run({symbol: sd}), repeat)
    t_scalper = best_of(
        lambda: sbt.Backtest(cfg, ["momentum"]).run({symbol: sbt.prepare(symbol, bars, cfg)}), repeat
    )
    qty = {t.quantity for t in res.trades}
    assert qty <= {1.0}, f"scalper traded quantities {qty}, expected 1"
    assert all(t.fees == 0.0 for t in res.trades), "scalper charged fees; the comparison assumes none"

    cols = sd.cols
    frame = btp_frame(cols)
    stats = run_btp(frame, cols, allow_short, tick)
    t_btp = best_of(lambda: run_btp(frame, cols, allow_short, tick), repeat)
    b_start = 1 + max(
        int(np.isnan(cols[c]).argmin()) for c in ("ema_9", "ema_21", "ema_50", "rsi_14", "atr_14")
    )

    s_tr, b_tr = scalper_trades(res, engine), btp_trades(stats)
    b_open = open_entry(stats, frame)
    s_open = None
    if res.open_positions:
        entry_fills = [f for f in res.fills if not f.client_order_id.endswith(("-sl", "-tp"))]
        s_open = int(entry_fills[-1].ts) if entry_fills else None
    exact, same_entry, kinds = compare(s_tr, b_tr, s_open, b_open, cols)
    # control: backtesting.py with the bracket attached at the entry bar's close
    ctrl = run_btp(frame, cols, allow_short, tick, bracket_next_bar=True)
    c_tr = btp_trades(ctrl)
    c_exact, _, c_kinds = compare(s_tr, c_tr, s_open, open_entry(ctrl, frame), cols)
    return Outcome(
        label,
        len(bars),
        allow_short,
        t_prep,
        t_engine,
        t_scalper,
        t_btp,
        len(s_tr),
        len(b_tr),
        exact,
        same_entry,
        kinds,
        cols,
        len(res.signals),
        b_start,
        sum(t.pnl for t in res.trades),
        float(stats["_trades"]["PnL"].sum()),
        conventions(s_tr, b_tr, cols, kinds),
        rule_check(res, b_tr, cols),
        len(c_tr),
        c_exact,
        c_kinds,
        float(ctrl["_trades"]["PnL"].sum()),
    )


def open_entry(stats: pd.Series, frame: pd.DataFrame) -> int | None:
    """Entry time of backtesting.py's trade still open at the end (None if flat)."""
    broker = getattr(stats["_strategy"], "_broker", None)
    trades = broker.trades if broker is not None else []
    return int(frame.index[trades[0].entry_bar].value) if trades else None


# ------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,525600", help="synthetic bar counts, comma separated")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings (default 3)")
    args = ap.parse_args()
    logging.getLogger("scalper").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")  # pandas_ta's Pandas4Warnings; backtesting.py's notes

    base = Config()
    datasets = []
    for n in [int(x) for x in args.sizes.split(",") if x.strip()]:
        datasets.append(
            (f"synthetic {n:,} bars", SYMBOL, synthetic_bars(base.feed.synthetic, SYMBOL, n), 0.01)
        )
    es = sbt.load_bars(base)
    (es_sym,) = list(es)
    datasets.append(
        (f"ES sample ({len(es[es_sym]):,} bars)", es_sym, es[es_sym], base.instrument(es_sym).tick_size)
    )

    t0 = time.perf_counter()
    sbt.prepare(SYMBOL, datasets[0][2], base)  # pandas_ta import and numba load, outside the timings
    t_first = time.perf_counter() - t0

    outcomes = []
    for label, sym, bars, tick in datasets:
        for short in (False, True):
            outcomes.append(one(label, sym, bars, tick, short, args.repeat))

    print(
        f"### scalper vs backtesting.py {btp.__version__}, {machine_info()}, numpy {np.__version__}, "
        f"pandas {pd.__version__}, pandas_ta {md.version('pandas_ta')}\n"
    )
    print(
        f"`.venv/bin/python bench/bench_vs_backtesting_py.py --sizes {args.sizes} --repeat {args.repeat}`\n"
    )
    print(
        "Same bars, same indicator arrays, the momentum rule, 1 unit, no costs. Best of "
        f"{args.repeat}. scalper = `prepare` (indicators) + `Backtest.run`; backtesting.py = "
        "`Backtest(...)` + `.run()` on scalper's precomputed indicators (so it does NOT pay for "
        f"indicators; compare with scalper's engine column too). The first `prepare` in the process "
        f"({t_first:.2f} s: pandas_ta import, numba load) is excluded.\n"
    )
    print(
        "| data | sides | scalper prepare | scalper engine | scalper total | backtesting.py | "
        "backtesting.py / scalper total | backtesting.py bars/s | scalper total bars/s |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for o in outcomes:
        print(
            f"| {o.label} | {'long+short' if o.short else 'long only'} | {o.t_prep:.3f} s | {o.t_engine:.3f} s | "
            f"{o.t_scalper:.3f} s | {o.t_btp:.3f} s | {o.t_btp / o.t_scalper:.1f}x | "
            f"{o.bars / o.t_btp:,.0f} | {o.bars / o.t_scalper:,.0f} |"
        )
    print()
    print("#### Trade lists\n")
    print(
        "| data | sides | scalper trades | backtesting.py trades | same entry bar | agree exactly | "
        + " | ".join(f"kind {k}" for k in KINDS)
        + " | net P&L scalper | net P&L backtesting.py |"
    )
    print(
        "| --- | --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in KINDS) + " | ---: | ---: |"
    )
    for o in outcomes:
        print(
            f"| {o.label} | {'long+short' if o.short else 'long only'} | {o.n_s:,} | {o.n_b:,} | {o.same_entry:,} "
            f"| {o.exact:,} ({100 * o.exact / max(o.n_s, 1):.1f}% of scalper's) | "
            + " | ".join(f"{len(o.kinds[k]):,}" for k in KINDS)
            + f" | {o.pnl_s:,.2f} | {o.pnl_b:,.2f} |"
        )
    print()
    print(
        "Conventions that could split the lists, counted over scalper's closed trades as "
        '"agreeing exactly / all (kind A, kind C, kind F)": agreeing + A + C + F = all means every '
        "such case outside kinds A, C and F was treated alike by the two engines. Last column: a "
        "bar from the entry bar to the one before scalper's exit bar reached the take-profit "
        "exactly and no further (high == TP for a long, low == TP for a short), a fill for "
        "backtesting.py, not for scalper; 0 agreeing is expected there.\n"
    )
    print(
        "| data | sides | rule check: backtesting.py entries on a bar where scalper's rule fired | "
        "backtesting.py's first next() bar | exit bar touched both SL and TP | exit filled at the open "
        "(gap through the level) | new entry decided at the previous exit bar's close | a bar before the exit bar "
        "touched TP exactly |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for o in outcomes:
        c = o.conv
        print(
            f"| {o.label} | {'long+short' if o.short else 'long only'} | {o.rule[0]:,} / {o.rule[1]:,} | "
            f"{o.b_start} | "
            + " | ".join(
                f"{c[k][0]:,} / {c[k][1]:,} (A {c[k][2]:,}, C {c[k][3]:,}, F {c[k][4]:,})"
                for k in ("both", "gap", "reentry", "touch")
            )
            + " |"
        )
    print()
    print(
        "Control: backtesting.py again, but entering without a bracket and attaching SL/TP "
        "(`trade.sl`, `trade.tp`) in the next() of the entry bar, i.e. live from the bar after "
        "the entry as in scalper (strategy code only; backtesting.py itself is not patched):\n"
    )
    print(
        "| data | sides | scalper trades | backtesting.py (control) trades | agree exactly | "
        + " | ".join(f"kind {k}" for k in KINDS)
        + " | net P&L scalper | net P&L backtesting.py (control) |"
    )
    print("| --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in KINDS) + " | ---: | ---: |")
    for o in outcomes:
        print(
            f"| {o.label} | {'long+short' if o.short else 'long only'} | {o.n_s:,} | {o.n_c:,} | "
            f"{o.c_exact:,} ({100 * o.c_exact / max(o.n_s, 1):.2f}%) | "
            + " | ".join(f"{len(o.c_kinds[k]):,}" for k in KINDS)
            + f" | {o.pnl_s:,.4f} | {o.pnl_c:,.4f} |"
        )
    for o in outcomes:
        left = [(k, pairs) for k, pairs in o.c_kinds.items() if pairs]
        for k, pairs in left:
            for s, b in pairs[:SHOW]:
                print(
                    f"- control, {o.label}, {'long+short' if o.short else 'long only'}, kind {k}: "
                    f"scalper `{fmt_trade(s)}` | backtesting.py `{fmt_trade(b)}`"
                )
                if s is not None and b is not None:
                    first = min(s.exit_ts, b.exit_ts)
                    print(f"  - SL {s.sl:.4f}, TP {s.tp:.4f}; {bar_text(o.cols, first)}")
    print()
    print(EXPLAIN)
    print()
    print("Kinds of disagreement (a pair counts once, under the first kind that applies):\n")
    for k, text in KINDS.items():
        print(f"- **{k}**: {text}")
    print()
    for o in outcomes:
        shown = [(k, pairs) for k, pairs in o.kinds.items() if pairs]
        if not shown:
            continue
        print(f"#### First disagreements: {o.label}, {'long+short' if o.short else 'long only'}\n")
        for k, pairs in shown:
            for s, b in pairs[:SHOW]:
                print(f"- kind {k}: scalper `{fmt_trade(s)}` | backtesting.py `{fmt_trade(b)}`")
                ref = s if s is not None else b
                if k in ("A", "F", "B") and s is not None and b is not None:
                    print(
                        f"  - SL {ref.sl:.4f}, TP {ref.tp:.4f}; entry {bar_text(o.cols, ref.entry_ts)}; "
                        f"backtesting.py's exit {bar_text(o.cols, b.exit_ts)}; "
                        f"scalper's exit {bar_text(o.cols, s.exit_ts)}"
                    )
        print()


if __name__ == "__main__":
    main()
