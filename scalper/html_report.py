"""`scalper report`: a run directory as a page people can open, a PNG and a terminal summary.

`write_report(run_dir)` writes `report.html` and `equity.png` into the run directory:

* report.html is ONE self-contained file: plotly.js is inlined (no CDN, works offline, ~4.6 MB
  of it), the figures' arrays are plotly's base64 typed arrays and the time axis is epoch
  milliseconds (a `date` axis), which keeps a long run's page small. Per symbol: candlesticks
  with the EMAs, session VWAP and Bollinger bands, volume with its SMA, RSI and ATR panes, and
  markers for signals (accepted and refused, reason on hover), entries, exits, stops and
  targets. A symbol with more than `max_candles` bars shows its LAST `max_candles` bars (a
  note on the page says so; the tables cover the whole run). Then equity and drawdown, the
  statistics per strategy and symbol (and per regime when signals carry a `regime` column),
  model scores against outcomes when signals carry a score column, and the trade table.
* equity.png: equity and drawdown with matplotlib's Agg backend (files only, no display).
* `summary_table(run)`: the compact rich table `scalper report` prints.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from scalper.report import Trade, trade_stats
from scalper.run_dir import RunFiles, read_run

log = logging.getLogger(__name__)

__all__ = [
    "MARKER_TRACES",
    "ReportFiles",
    "build_html",
    "chart_id",
    "epoch_ms",
    "equity_png",
    "html_page",
    "html_table",
    "key_figures",
    "note",
    "plot_div",
    "save_figure",
    "strategy_and_symbol_tables",
    "summary_table",
    "trade_table",
    "trades_from_frame",
    "write_page",
    "write_report",
]

MAX_CANDLES = 3000  # per symbol on the page
MAX_EQUITY_POINTS = 5000
MAX_TRADE_ROWS = 2000
SCORE_COLUMNS = ("p_validator", "confidence", "score", "p_win", "model_score")
# the marker traces of every symbol chart, by name (always present, possibly empty)
MARKER_TRACES = ("signals accepted", "signals refused", "entries", "exits", "stops", "targets")
_NS_PER_MS = 1_000_000


class ReportFiles(msgspec.Struct, frozen=True):
    html: str
    png: str
    candles: dict[str, int]  # symbol -> candles drawn
    notes: list[str]


def chart_id(symbol: str) -> str:
    """The id of a symbol's chart div (symbols such as BTC/USDT are not valid ids as they are)."""
    return "chart-" + re.sub(r"[^A-Za-z0-9_-]", "_", symbol)


def epoch_ms(ns: Any) -> np.ndarray:
    """int64 ns -> float64 epoch ms (plotly draws numbers on a `date` axis as epoch ms)."""
    return np.asarray(ns, dtype=np.int64) / _NS_PER_MS


def _hover(*lines: str) -> str:
    return "<br>".join(html.escape(str(x), quote=False) for x in lines if x)


def trades_from_frame(frame: pd.DataFrame) -> list[Trade]:
    """A trades table (trades.parquet) as Trade structs (extra columns, e.g. `job`, ignored)."""
    fields = [f.name for f in msgspec.structs.fields(Trade)]
    rows = frame[[c for c in fields if c in frame.columns]].to_dict("records")
    return [msgspec.convert(r, Trade, strict=False) for r in rows]


def _trades(run: RunFiles) -> list[Trade]:
    return trades_from_frame(run.trades)


def with_model_columns(signals: pd.DataFrame) -> pd.DataFrame:
    """Signals with the model gate's `model_scores` (JSON per row) spread into columns, and a
    `regime` column (the most probable of the `p_<regime>` scores) when the run has none (or
    an empty one)."""
    if "model_scores" not in signals.columns or not signals["model_scores"].notna().any():
        return signals
    scores = pd.DataFrame(
        [json.loads(x) if isinstance(x, str) and x else {} for x in signals["model_scores"]],
        index=signals.index,
    )
    out = signals.join(scores[[c for c in scores.columns if c not in signals.columns]])
    regimes = [c for c in scores.columns if c.startswith("p_") and c != "p_validator"]
    if ("regime" not in out.columns or not out["regime"].notna().any()) and regimes:
        probs = scores[regimes]
        known = probs.notna().any(axis=1)
        out["regime"] = np.where(known, probs.fillna(-1.0).idxmax(axis=1).str.removeprefix("p_"), None)
    return out


def _indicators(run: RunFiles, symbol: str) -> pd.DataFrame:
    """What the run stored, else the batch recomputed from the bars."""
    stored = run.stored_indicators.get(symbol)
    if stored is not None and len(stored.columns):
        return stored.reset_index(drop=True)
    from scalper.indicators import compute_batch

    return compute_batch(run.bars[symbol], run.config.indicators).reset_index(drop=True)


# ------------------------------------------------------------------------------ symbol chart


def symbol_figure(run: RunFiles, symbol: str, max_candles: int = MAX_CANDLES):
    """Candles + overlays + markers, volume, RSI, ATR of one symbol (its last `max_candles` bars)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    icfg = run.config.indicators
    bars = run.bars[symbol]
    ind = _indicators(run, symbol)
    start = max(0, len(bars) - max_candles)
    bars, ind = bars.iloc[start:].reset_index(drop=True), ind.iloc[start:].reset_index(drop=True)
    ts = bars["timestamp"].to_numpy(dtype=np.int64)
    lo_ts, hi_ts = (int(ts[0]), int(ts[-1])) if len(ts) else (0, -1)
    x = epoch_ms(ts)
    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.025,
        row_heights=[0.55, 0.15, 0.15, 0.15],
        subplot_titles=("", "volume", f"RSI {icfg.rsi_length}", f"ATR {icfg.atr_length}"),
    )
    fig.add_trace(
        go.Candlestick(
            x=x,
            open=bars["open"].to_numpy(),
            high=bars["high"].to_numpy(),
            low=bars["low"].to_numpy(),
            close=bars["close"].to_numpy(),
            name="candles",
        ),
        row=1,
        col=1,
    )

    def line(col: str, name: str, row: int, **style: Any) -> None:
        if col in ind.columns:
            fig.add_trace(
                go.Scatter(x=x, y=ind[col].to_numpy(dtype=np.float64), mode="lines", name=name, line=style),
                row=row,
                col=1,
            )

    for n in icfg.ema_lengths:
        line(f"ema_{n}", f"EMA {n}", 1, width=1)
    line("session_vwap", "VWAP", 1, width=1.5, dash="dot", color="#7f3fbf")
    for col in ("bb_upper", "bb_mid", "bb_lower"):
        line(col, col.replace("bb_", "BB "), 1, width=1, dash="dash", color="#999999")
    _markers(fig, run, symbol, bars, lo_ts, hi_ts)
    fig.add_trace(
        go.Bar(x=x, y=bars["volume"].to_numpy(), name="volume", marker_color="#8fa8c8"), row=2, col=1
    )
    line(f"volume_sma_{icfg.volume_sma_length}", f"volume SMA {icfg.volume_sma_length}", 2, width=1)
    line(f"rsi_{icfg.rsi_length}", f"RSI {icfg.rsi_length}", 3, width=1, color="#d62728")
    mr = run.config.strategies.mean_reversion
    for level in (mr.rsi_oversold, mr.rsi_overbought):
        fig.add_hline(y=level, row=3, col=1, line_dash="dot", line_color="#bbbbbb", line_width=1)
    line(f"atr_{icfg.atr_length}", f"ATR {icfg.atr_length}", 4, width=1, color="#2ca02c")
    fig.update_xaxes(type="date", rangeslider_visible=False)
    fig.update_layout(
        height=900,
        margin={"l": 50, "r": 20, "t": 90, "b": 30},
        hovermode="closest",
        legend={"orientation": "h", "y": 1.01, "yanchor": "bottom", "x": 0},
        template="plotly_white",
    )
    return fig, len(bars)


def _markers(fig, run: RunFiles, symbol: str, bars: pd.DataFrame, lo_ts: int, hi_ts: int) -> None:
    """Signals (accepted/refused), entries, exits, stop and target levels inside the window."""
    import plotly.graph_objects as go

    close_at = dict(zip(bars["timestamp"].tolist(), bars["close"].tolist(), strict=True))
    sig = run.signals
    sig = sig[(sig["symbol"] == symbol) & (sig["ts"] >= lo_ts) & (sig["ts"] <= hi_ts)] if len(sig) else sig
    for approved, name, color in (
        (True, "signals accepted", "#1f77b4"),
        (False, "signals refused", "#aaaaaa"),
    ):
        part = sig[sig["approved"].astype(bool) == approved] if len(sig) else sig
        buy = (part["side"] == "buy").to_numpy() if len(part) else np.zeros(0, bool)
        text = [
            _hover(
                f"{r.strategy} {r.side} ({r.reason})",
                getattr(r, "explanation", ""),
                f"decision: {r.decision}" + (f" - {r.detail}" if getattr(r, "detail", "") else ""),
            )
            for r in part.itertuples(index=False)
        ]
        fig.add_trace(
            go.Scatter(
                x=epoch_ms(part["ts"].to_numpy()) if len(part) else [],
                y=[close_at.get(int(t), math.nan) for t in part["ts"]] if len(part) else [],
                mode="markers",
                name=name,
                marker={
                    "symbol": np.where(buy, "triangle-up", "triangle-down").tolist()
                    if approved
                    else "x-thin-open",
                    "size": 11 if approved else 8,
                    "color": color,
                    "line": {"width": 1.5, "color": color},
                },
                hovertext=text,
                hoverinfo="text",
            ),
            row=1,
            col=1,
        )
    tr = run.trades
    tr = tr[(tr["symbol"] == symbol)] if len(tr) else tr
    ent = tr[(tr["entry_ts"] >= lo_ts) & (tr["entry_ts"] <= hi_ts)] if len(tr) else tr
    ext = tr[(tr["exit_ts"] >= lo_ts) & (tr["exit_ts"] <= hi_ts)] if len(tr) else tr
    fig.add_trace(
        go.Scatter(
            x=epoch_ms(ent["entry_ts"].to_numpy()) if len(ent) else [],
            y=ent["entry_price"].to_numpy() if len(ent) else [],
            mode="markers",
            name="entries",
            marker={"symbol": "circle", "size": 8, "color": "#2ca02c", "line": {"width": 1, "color": "#000"}},
            hovertext=[
                _hover(f"entry {r.side} {r.quantity:g} @ {r.entry_price:.6g}", r.strategy)
                for r in ent.itertuples(index=False)
            ],
            hoverinfo="text",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=epoch_ms(ext["exit_ts"].to_numpy()) if len(ext) else [],
            y=ext["exit_price"].to_numpy() if len(ext) else [],
            mode="markers",
            name="exits",
            marker={"symbol": "square", "size": 8, "color": "#ff7f0e", "line": {"width": 1, "color": "#000"}},
            hovertext=[
                _hover(f"exit ({r.exit_reason}) @ {r.exit_price:.6g}", f"P&L {r.pnl:,.2f}")
                for r in ext.itertuples(index=False)
            ],
            hoverinfo="text",
        ),
        row=1,
        col=1,
    )
    # stop and target levels, drawn from the entry to the exit of each trade in the window
    levels = {}
    if len(run.signals):
        ok = run.signals[run.signals["approved"].astype(bool)]
        levels = {
            str(r.client_order_id): (float(r.stop_loss), float(r.take_profit))
            for r in ok.itertuples(index=False)
        }
    held = tr[(tr["exit_ts"] >= lo_ts) & (tr["entry_ts"] <= hi_ts)] if len(tr) else tr
    for k, (name, color) in enumerate((("stops", "#d62728"), ("targets", "#2ca02c"))):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for r in held.itertuples(index=False):
            oid = str(r.entry_order_id)  # an `E-mkt` entry replaced the expired limit E
            level = levels.get(oid) or levels.get(oid.removesuffix("-mkt"))
            if level is None:
                continue
            a, b = max(int(r.entry_ts), lo_ts), min(int(r.exit_ts), hi_ts)
            xs += [a / _NS_PER_MS, b / _NS_PER_MS, None]
            ys += [level[k], level[k], None]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=name,
                line={"color": color, "width": 2, "dash": "dot"},
                hoverinfo="y+name",
                connectgaps=False,
            ),
            row=1,
            col=1,
        )


# ------------------------------------------------------------------------------ equity


def _equity_series(
    run: RunFiles, max_points: int = MAX_EQUITY_POINTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(ts ns, equity, drawdown %, stride): bucketed to <= max_points (last equity, worst drawdown)."""
    ts = run.equity["ts"].to_numpy(dtype=np.int64)
    eq = run.equity["equity"].to_numpy(dtype=np.float64)
    if eq.size == 0:
        return ts, eq, eq, 1
    peak = np.maximum.accumulate(np.maximum(eq, float(run.config.risk.starting_equity)))
    dd = (eq / peak - 1.0) * 100.0
    stride = max(1, math.ceil(eq.size / max_points))
    if stride == 1:
        return ts, eq, dd, 1
    ends = np.minimum(np.arange(stride - 1, eq.size + stride - 1, stride), eq.size - 1)
    worst = np.minimum.reduceat(dd, np.arange(0, eq.size, stride))
    return ts[ends], eq[ends], worst, stride


def equity_figure(run: RunFiles):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ts, eq, dd, _ = _equity_series(run)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.04)
    fig.add_trace(go.Scatter(x=epoch_ms(ts), y=eq, mode="lines", name="equity"), row=1, col=1)
    fig.add_trace(
        go.Scatter(
            x=epoch_ms(ts), y=dd, mode="lines", name="drawdown %", fill="tozeroy", line={"color": "#d62728"}
        ),
        row=2,
        col=1,
    )
    fig.update_xaxes(type="date")
    fig.update_layout(height=450, margin={"l": 60, "r": 20, "t": 20, "b": 30}, template="plotly_white")
    return fig


def equity_png(run: RunFiles, out: str | Path) -> Path:
    """equity.png: equity and drawdown (matplotlib, Agg canvas: no display needed)."""
    from matplotlib.figure import Figure

    ts, eq, dd, _ = _equity_series(run)
    times = pd.to_datetime(ts, unit="ns", utc=True).tz_localize(None) if ts.size else []
    fig = Figure(figsize=(10, 5), dpi=100)
    ax1, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax1.plot(times, eq, color="#1f77b4", linewidth=1)
    ax1.axhline(float(run.config.risk.starting_equity), color="#999999", linewidth=0.8, linestyle="--")
    ax1.set_ylabel("equity")
    ax1.set_title(f"{run.path.name}: equity and drawdown")
    ax1.grid(alpha=0.3)
    ax2.fill_between(times, dd, 0, color="#d62728", alpha=0.4, linewidth=0)
    ax2.set_ylabel("drawdown %")
    ax2.grid(alpha=0.3)
    return save_figure(fig, out)


def save_figure(fig, out: str | Path) -> Path:
    """A matplotlib Figure with dates on its x axis, laid out and written to `out`."""
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(out)
    fig.savefig(path)
    return path


# ------------------------------------------------------------------------------ tables


_STATS_COLUMNS = ["", "trades", "net P&L", "fees", "win rate %", "profit factor", "expectancy", "avg R"]


def _stats_rows(groups: dict[str, list[Trade]], days: float) -> pd.DataFrame:
    """One row of trade figures per group (the columns are there even with no group)."""
    rows = []
    for name, trades in groups.items():
        st = trade_stats(trades, days)
        rows.append(
            {
                "": name,
                "trades": st["trades"],
                "net P&L": st["net_pnl"],
                "fees": st["fees"],
                "win rate %": None if st["win_rate"] is None else st["win_rate"] * 100,
                "profit factor": st["profit_factor"],
                "expectancy": st["expectancy"],
                "avg R": st["avg_r_multiple"],
            }
        )
    return pd.DataFrame(rows, columns=_STATS_COLUMNS)


def html_table(df: pd.DataFrame, table_id: str) -> str:
    return df.to_html(
        index=False,
        escape=True,
        na_rep="",
        float_format=lambda v: f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.2f}",
        table_id=table_id,
        classes="tbl",
        border=0,
    )


def regime_stats(run: RunFiles, trades: list[Trade]) -> pd.DataFrame | None:
    """Signals, approvals and the trades' figures per regime (when signals carry `regime`)."""
    sig = run.signals
    if "regime" not in sig.columns or not len(sig):
        return None
    regime_of = {
        str(r.client_order_id): str(r.regime) for r in sig.itertuples(index=False) if bool(r.approved)
    }
    sig = sig[sig["regime"].notna()]
    groups: dict[str, list[Trade]] = {}
    for t in trades:
        groups.setdefault(regime_of.get(t.entry_order_id.removesuffix("-mkt"), "unknown"), []).append(t)
    stats = _stats_rows(groups, _days(run))
    counts = (
        sig.groupby("regime").agg(signals=("approved", "size"), approved=("approved", "sum")).reset_index()
    )
    counts = counts.rename(columns={"regime": ""})
    counts[""] = counts[""].astype(str)
    return counts.merge(stats, on="", how="outer")


def calibration(run: RunFiles, trades: list[Trade], bins: int = 10) -> tuple[str, pd.DataFrame] | None:
    """(score column, table of score bins: trades, mean score, win rate) once signals carry a score."""
    sig = run.signals
    col = next((c for c in SCORE_COLUMNS if c in sig.columns and sig[c].notna().any()), None)
    if col is None:
        return None
    win = {t.entry_order_id.removesuffix("-mkt"): t.pnl > 0 for t in trades}
    rows = [
        (float(getattr(r, col)), win[str(r.client_order_id)])
        for r in sig.itertuples(index=False)
        if str(r.client_order_id) in win and getattr(r, col) == getattr(r, col)
    ]
    if not rows:
        return None
    df = pd.DataFrame(rows, columns=["score", "win"])
    edges = np.linspace(0.0, 1.0, bins + 1)
    df["bin"] = pd.cut(df["score"].clip(0, 1), edges, include_lowest=True)
    out = (
        df.groupby("bin", observed=True)
        .agg(trades=("win", "size"), mean_score=("score", "mean"), win_rate=("win", "mean"))
        .reset_index()
    )
    out["bin"] = out["bin"].astype(str)
    return col, out


def calibration_figure(col: str, table: pd.DataFrame):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot", "color": "#999"})
    )
    fig.add_trace(
        go.Scatter(
            x=table["mean_score"].to_numpy(),
            y=table["win_rate"].to_numpy(),
            mode="lines+markers",
            name="observed",
            text=[f"{n} trades" for n in table["trades"]],
        )
    )
    fig.update_layout(
        height=380,
        xaxis_title=f"model {col}",
        yaxis_title="win rate",
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 20, "b": 50},
    )
    return fig


def _days(run: RunFiles) -> float:
    return float(run.trading_summary.get("days") or 0.0) or max(
        (int(run.equity["ts"].iat[-1]) - int(run.equity["ts"].iat[0])) / 86_400e9
        if len(run.equity) > 1
        else 0.0,
        1e-9,
    )


# ------------------------------------------------------------------------------ the page

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:16px;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
.figs{display:flex;flex-wrap:wrap;gap:6px 24px;margin:8px 0}
.figs div{background:#f6f8fa;padding:6px 10px;border-radius:4px}
.note{color:#8a6d3b;background:#fcf8e3;padding:6px 10px;border-radius:4px}
table.tbl{border-collapse:collapse;font-size:12px;margin:8px 0}
table.tbl th,table.tbl td{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}
table.tbl th{background:#f6f8fa;position:sticky;top:0}
.scroll{max-height:520px;overflow:auto}
"""


def plot_div(fig, div_id: str, height: int) -> str:
    import plotly.io as pio

    return pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        default_height=f"{height}px",
        config={"displaylogo": False, "responsive": True},
    )


def build_html(run: RunFiles, max_candles: int = MAX_CANDLES) -> tuple[str, dict[str, int], list[str]]:
    """The page, the candles drawn per symbol, and the notes shown on it."""
    run = dataclasses.replace(run, signals=with_model_columns(run.signals))
    summ = run.trading_summary
    overall = summ.get("overall") or {}
    trades = _trades(run)
    notes: list[str] = []
    parts: list[str] = []
    figs = {
        "trades": overall.get("trades", len(trades)),
        "net P&L": overall.get("net_pnl"),
        "return %": overall.get("return_pct"),
        "max drawdown %": overall.get("max_drawdown_pct"),
        "win rate %": None if overall.get("win_rate") is None else overall["win_rate"] * 100,
        "profit factor": overall.get("profit_factor"),
        "Sharpe": overall.get("sharpe"),
        "signals": summ.get("signals", len(run.signals)),
        "approved": summ.get("signals_approved"),
        "fingerprint": (summ.get("trade_fingerprint") or "")[:16],
    }
    parts.append(key_figures(figs))
    candles: dict[str, int] = {}
    if not run.bars:
        notes.append("this run directory stores no bars: no candlestick charts (tables and equity only)")
    for sym in run.bars:
        fig, n = symbol_figure(run, sym, max_candles)
        candles[sym] = n
        parts.append(f'<h2>{html.escape(sym)}</h2><section class="symbol" data-symbol="{html.escape(sym)}">')
        if n < len(run.bars[sym]):
            msg = (
                f"{sym}: showing the last {n:,} of {len(run.bars[sym]):,} bars "
                f"(markers outside this window are left out; the tables below cover the whole run)"
            )
            parts.append(note(msg, notes))
        parts.append(plot_div(fig, chart_id(sym), 900) + "</section>")
    _, _, _, stride = _equity_series(run)
    parts.append("<h2>Equity and drawdown</h2>")
    if stride > 1:
        msg = f"equity: one point per {stride} minutes (last equity, worst drawdown of each bucket)"
        parts.append(note(msg, notes))
    parts.append(plot_div(equity_figure(run), "equity", 450))
    days = _days(run)
    parts.append(strategy_and_symbol_tables(trades, days))
    reg = regime_stats(run, trades)
    if reg is not None:
        parts.append("<h2>By regime</h2>" + html_table(reg, "by-regime"))
    cal = calibration(run, trades)
    if cal is not None:
        col, table = cal
        parts.append(f"<h2>Model {html.escape(col)} against outcomes</h2>")
        parts.append(
            plot_div(calibration_figure(col, table), "calibration", 380)
            + html_table(table, "calibration-table")
        )
    if len(run.signals):
        refused = run.signals[~run.signals["approved"].astype(bool)]
        if len(refused):
            counts = refused.groupby(["strategy", "decision"]).size().reset_index(name="signals")
            parts.append("<h2>Refused signals</h2>" + html_table(counts, "refused"))
    tt = run.trades.drop(columns=[c for c in ("entry_ts", "exit_ts") if c in run.trades.columns])
    parts.append(trade_table(tt, notes))
    meta = json.dumps({"symbols": list(run.bars), "candles": candles})
    return html_page(f"scalper run {run.path.name}", parts, meta), candles, notes


def trade_table(trades: pd.DataFrame, notes: list[str]) -> str:
    """The trade table section: the last MAX_TRADE_ROWS trades (a note says so when cut),
    entry/exit times to the minute."""
    parts = [f"<h2>Trades ({len(trades):,})</h2>"]
    tt = trades
    if len(tt) > MAX_TRADE_ROWS:
        msg = f"trade table: the last {MAX_TRADE_ROWS:,} of {len(tt):,} trades (all are in trades.csv)"
        parts.append(note(msg, notes))
        tt = tt.iloc[-MAX_TRADE_ROWS:]
    tt = tt.copy()
    for col in ("entry_time", "exit_time"):
        if col in tt.columns:
            tt[col] = pd.to_datetime(tt[col], utc=True).dt.strftime("%Y-%m-%d %H:%M")
    parts.append(f'<div class="scroll">{html_table(tt, "trades")}</div>')
    return "".join(parts)


def key_figures(figs: dict[str, Any]) -> str:
    """The row of headline figures at the top of a page."""

    def text(v: Any) -> str:
        if isinstance(v, str):
            return v
        if v is None:
            return "n/a"
        if isinstance(v, int | np.integer):
            return f"{v:,}"
        return f"{v:,.2f}" if abs(v) >= 1000 else f"{v:,.4g}"

    cells = "".join(f"<div><b>{html.escape(k)}</b> {html.escape(text(v))}</div>" for k, v in figs.items())
    return f'<div class="figs">{cells}</div>'


def note(msg: str, notes: list[str]) -> str:
    """A note shown on the page (and kept in `notes`, which the command prints)."""
    notes.append(msg)
    return f'<p class="note">{html.escape(msg)}</p>'


def strategy_and_symbol_tables(trades: list[Trade], days: float, scope: str = "") -> str:
    """The trade figures per strategy (with an `all` row) and per symbol."""
    by_strat: dict[str, list[Trade]] = {"all": trades}
    by_sym: dict[str, list[Trade]] = {}
    for t in trades:
        by_strat.setdefault(t.strategy, []).append(t)
        by_sym.setdefault(t.symbol, []).append(t)
    out = f"<h2>By strategy{scope}</h2>" + html_table(_stats_rows(by_strat, days), "by-strategy")
    if by_sym:
        out += f"<h2>By symbol{scope}</h2>" + html_table(_stats_rows(by_sym, days), "by-symbol")
    return out


def write_page(out: Path, text: str) -> None:
    """Write a page whole or not at all (a reader never sees half a report)."""
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)


def html_page(title: str, parts: Sequence[str], meta: str | None = None) -> str:
    """A whole self-contained page: the style, plotly.js inlined, a title and the sections
    (`meta`: JSON the page carries in body[data-report] for tools and tests)."""
    from plotly.offline import get_plotlyjs

    data = f" data-report='{html.escape(meta)}'" if meta is not None else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head>"
        f"<body{data}><h1>{html.escape(title)}</h1>" + "\n".join(parts) + "</body></html>\n"
    )


def write_report(run_dir: str | Path, max_candles: int = MAX_CANDLES) -> ReportFiles:
    """report.html and equity.png in the run directory (RunDirError if it is not one)."""
    run = read_run(run_dir)
    page, candles, notes = build_html(run, max_candles)
    out = run.path / "report.html"
    write_page(out, page)
    png = equity_png(run, run.path / "equity.png")
    log.info("wrote %s (%.1f MB) and %s", out, out.stat().st_size / 1e6, png)
    return ReportFiles(str(out), str(png), candles, notes)


def summary_table(run: RunFiles, title: str | None = None):
    """The compact terminal summary: overall and per-strategy figures (a rich Table)."""
    from rich.table import Table

    trades = _trades(run)
    days = _days(run)
    table = Table(title=title or f"run {run.path.name}", title_justify="left")
    for name in ("", "trades", "net P&L", "win rate %", "profit factor", "avg R"):
        table.add_column(name, justify="left" if not name else "right")
    groups: dict[str, list[Trade]] = {"all": trades}
    for t in trades:
        groups.setdefault(t.strategy, []).append(t)
    df = _stats_rows(groups, days)

    def num(v: Any, fmt: str) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    for r in df.itertuples(index=False):
        table.add_row(
            str(r[0]),
            f"{r.trades:,}",
            num(r[2], ",.2f"),
            num(r[4], ".1f"),
            num(r[5], ".2f"),
            num(r[7], ".2f"),
        )
    overall = run.trading_summary.get("overall") or {}
    caption: Sequence[str] = [
        f"return {num(overall.get('return_pct'), '.2f')}%",
        f"max drawdown {num(overall.get('max_drawdown_pct'), '.2f')}%",
        f"Sharpe {num(overall.get('sharpe'), '.2f')}",
        f"signals {len(run.signals):,}",
    ]
    table.caption = ", ".join(caption)
    return table
