"""The report of a combined `scalper backtest --parallel / --grid` result.

Such a directory holds no bars and no signals (each job ran in its own Ray task and sent back
its summary and trades), so its page compares the jobs instead of charting candles: the
jobs' figures (return against max drawdown, one point per job: where a grid's good
settings stand out), each job's equity from its closed trades, the jobs table, statistics per
strategy and symbol over all trades, and the trade table. Like `html_report`, the page is one
self-contained file (plotly.js inlined) and `equity.png` is drawn with matplotlib's Agg backend.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalper.html_report import (
    ReportFiles,
    epoch_ms,
    html_page,
    html_table,
    key_figures,
    note,
    plot_div,
    save_figure,
    strategy_and_symbol_tables,
    trade_table,
    trades_from_frame,
    write_page,
)
from scalper.run_dir import RunDirError, read_config

log = logging.getLogger(__name__)

__all__ = ["MAX_EQUITY_JOBS", "JobsRun", "is_combined", "read_jobs", "write_jobs_report"]

MAX_EQUITY_JOBS = 30  # equity curves drawn (the jobs with the most trades); the tables hold all
MINUTES_PER_DAY = 1440


def is_combined(path: str | Path) -> bool:
    """True for the directory of a --parallel/--grid backtest (its summary has `by_job`)."""
    summary = Path(path) / "summary.json"
    if not summary.is_file():
        return False
    try:
        return "by_job" in json.loads(summary.read_text())
    except json.JSONDecodeError:
        return False


@dataclass
class JobsRun:
    """A combined result: its summary, one row per job, and every trade with its job."""

    path: Path
    summary: dict[str, Any]
    jobs: pd.DataFrame
    trades: pd.DataFrame  # TRADE_COLUMNS + `job`
    starting_equity: float

    @property
    def days(self) -> float:
        """The longest job's span in days (its bars / 1440; trades per day use it)."""
        bars = self.jobs["bars"].max() if len(self.jobs) else 0
        return max(float(bars) / MINUTES_PER_DAY, 1e-9)


def read_jobs(path: str | Path) -> JobsRun:
    """Load a combined result (RunDirError when `path` is not one)."""
    p = Path(path)
    if not is_combined(p):
        raise RunDirError(f"{p}: not a combined --parallel/--grid result (no summary.json with by_job)")
    summary = json.loads((p / "summary.json").read_text())
    trades_path = p / "trades.parquet"
    if not trades_path.is_file():
        raise RunDirError(f"{p}: no trades.parquet (the jobs' trades)")
    cfg = read_config(p)  # the configuration the jobs started from
    return JobsRun(
        path=p,
        summary=summary,
        jobs=pd.DataFrame(summary["by_job"]),
        trades=pd.read_parquet(trades_path),
        starting_equity=cfg.risk.starting_equity,
    )


def _overrides_text(value: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else str(value or "")


def job_table(run: JobsRun) -> pd.DataFrame:
    """The jobs' figures as the page shows them (win rate in %, overrides as text)."""
    if not len(run.jobs):
        return pd.DataFrame(columns=["job"])
    df = run.jobs.drop(columns=[c for c in ("trade_fingerprint", "symbols") if c in run.jobs.columns])
    df["overrides"] = df["overrides"].map(_overrides_text)
    df["win_rate"] = df["win_rate"].map(lambda v: None if v is None or pd.isna(v) else v * 100)
    df = df.rename(
        columns={"win_rate": "win rate %", "return_pct": "return %", "max_drawdown_pct": "max dd %"}
    )
    df["fingerprint"] = run.jobs["trade_fingerprint"].str[:16]
    return df


def equity_by_job(run: JobsRun) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{job: (exit ts ns, equity after each closed trade)}, starting equity at the first entry;
    the MAX_EQUITY_JOBS jobs with the most trades."""
    if not len(run.trades):
        return {}
    counts = run.trades.groupby("job").size().sort_values(ascending=False, kind="stable")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for job in counts.index[:MAX_EQUITY_JOBS]:
        t = run.trades[run.trades["job"] == job].sort_values("exit_ts", kind="stable")
        ts = np.concatenate([t["entry_ts"].to_numpy(np.int64)[:1], t["exit_ts"].to_numpy(np.int64)])
        eq = run.starting_equity + np.concatenate([[0.0], np.cumsum(t["pnl"].to_numpy(np.float64))])
        out[str(job)] = (ts, eq)
    return out


def jobs_figures(run: JobsRun):
    """(return vs max drawdown scatter, equity-per-job lines) as plotly figures."""
    import plotly.graph_objects as go

    jobs = run.jobs
    scatter = go.Figure(
        go.Scatter(
            x=jobs["max_drawdown_pct"] if len(jobs) else [],
            y=jobs["return_pct"] if len(jobs) else [],
            mode="markers",
            name="jobs",
            marker={
                "size": 9,
                "color": jobs["trades"] if len(jobs) else [],
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": "trades"},
            },
            text=[
                "<br>".join(
                    html.escape(x, quote=False)
                    for x in (str(r["job"]), _overrides_text(r["overrides"]), f"{r['trades']:,} trades")
                    if x
                )
                for _, r in jobs.iterrows()
            ],
            hoverinfo="text+x+y",
        )
    )
    scatter.update_layout(
        height=420,
        xaxis_title="max drawdown %",
        yaxis_title="return %",
        margin={"l": 60, "r": 20, "t": 20, "b": 50},
        template="plotly_white",
    )
    lines = go.Figure()
    for job, (ts, eq) in equity_by_job(run).items():
        lines.add_trace(go.Scatter(x=epoch_ms(ts), y=eq, mode="lines", name=job, line={"shape": "hv"}))
    lines.update_xaxes(type="date")
    lines.update_layout(
        height=450,
        yaxis_title="equity (closed trades)",
        margin={"l": 60, "r": 20, "t": 20, "b": 30},
        template="plotly_white",
    )
    return scatter, lines


def build_jobs_html(run: JobsRun) -> tuple[str, list[str]]:
    """The page and the notes shown on it."""
    s = run.summary
    notes: list[str] = []
    figs = {
        "jobs": s.get("jobs"),
        "bars": s.get("bars"),
        "trades": s.get("trades"),
        "net P&L": s.get("net_pnl"),
        "wall s": s.get("wall_seconds"),
        "fingerprint": (s.get("fingerprint") or "")[:16],
    }
    scatter, lines = jobs_figures(run)
    parts = [
        key_figures(figs),
        '<p class="note">A combined result: each job ran on its own (its own portfolio) and sent back '
        "its figures and trades; no bars are stored, so there are no candle charts. Rerun one job "
        "alone (`scalper backtest --symbols ...`) for its charts and `scalper verify`.</p>",
        "<h2>Return against max drawdown, per job</h2>",
        plot_div(scatter, "jobs-scatter", 420),
        "<h2>Equity per job (closed trades)</h2>",
    ]
    if len(run.trades) and run.trades["job"].nunique() > MAX_EQUITY_JOBS:
        msg = f"equity: the {MAX_EQUITY_JOBS} jobs with the most trades of {len(run.jobs):,}"
        parts.append(note(msg, notes))
    parts.append(plot_div(lines, "jobs-equity", 450))
    parts.append(
        f'<h2>Jobs ({len(run.jobs):,})</h2><div class="scroll">{html_table(job_table(run), "jobs")}</div>'
    )
    parts.append(strategy_and_symbol_tables(trades_from_frame(run.trades), run.days, " (all jobs)"))
    times = {c: pd.to_datetime(run.trades[c], unit="ns", utc=True) for c in ("entry_ts", "exit_ts")}
    tt = run.trades.drop(columns=["entry_ts", "exit_ts"]).assign(
        entry_time=times["entry_ts"], exit_time=times["exit_ts"]
    )
    parts.append(trade_table(tt, notes))
    return html_page(f"scalper backtests {run.path.name}", parts), notes


def jobs_png(run: JobsRun, out: str | Path) -> Path:
    """equity.png: each drawn job's equity from its closed trades (matplotlib, Agg canvas)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5), dpi=100)
    ax = fig.subplots()
    curves = equity_by_job(run)
    for job, (ts, eq) in curves.items():
        times = pd.to_datetime(ts, unit="ns", utc=True).tz_localize(None)
        ax.step(times, eq, where="post", linewidth=1, label=job)
    ax.axhline(run.starting_equity, color="#999999", linewidth=0.8, linestyle="--")
    ax.set_ylabel("equity (closed trades)")
    ax.set_title(f"{run.path.name}: equity per job")
    ax.grid(alpha=0.3)
    if 0 < len(curves) <= 12:
        ax.legend(fontsize=8)
    return save_figure(fig, out)


def write_jobs_report(path: str | Path) -> ReportFiles:
    """report.html and equity.png in a combined result's directory."""
    run = read_jobs(path)
    page, notes = build_jobs_html(run)
    out = run.path / "report.html"
    write_page(out, page)
    png = jobs_png(run, run.path / "equity.png")
    log.info("wrote %s and %s", out, png)
    return ReportFiles(str(out), str(png), {}, notes)
