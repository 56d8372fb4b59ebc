"""The `scalper verify RUN_DIR` and `scalper report RUN_DIR` subcommands.

`register(sub, common)` adds both to the `scalper` parser (`sub` = its subparsers, `common` =
the parent parser carrying --config/-v). Exit codes: verify 0 when everything agrees, 1 when
something does not (a table of the mismatches is printed), 3 for a missing or unusable run
directory; report 0 (prints the path of report.html) or 3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = [
    "EXIT_BAD_RUN_DIR",
    "EXIT_MISMATCH",
    "after_jobs",
    "after_run",
    "cmd_report",
    "cmd_verify",
    "register",
]

EXIT_MISMATCH = 1
EXIT_BAD_RUN_DIR = 3
SHOW_ROWS = 50  # mismatches printed; --json holds them all
# = html_report.MAX_CANDLES (not imported here: `scalper --help` must not import pandas)
DEFAULT_MAX_CANDLES = 3000


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(
        stderr=stderr, highlight=False, soft_wrap=False, width=200 if not sys.stdout.isatty() else None
    )


def verdict_line(report) -> str:
    """One line: what was checked and whether it all agrees."""
    head = "verified" if report.ok else "MISMATCHES"
    return (
        f"{head}: {report.run_dir}: {report.bars:,} bars of {', '.join(report.symbols) or 'no symbol'}, "
        f"{report.signals_logged:,} signals logged / {report.signals_expected:,} expected, "
        f"{report.fills:,} fills, {report.trades:,} trades"
        + ("; everything agrees" if report.ok else f"; {len(report.mismatches):,} disagreement(s)")
    )


def mismatch_table(report, limit: int = SHOW_ROWS):
    """The mismatches as a rich Table (the first `limit` rows) plus a count per check."""
    from rich.table import Table

    table = Table(title="verify: mismatches", title_justify="left", show_lines=False)
    for name in ("check", "symbol", "bar (UTC)", "subject", "expected", "found", "detail"):
        table.add_column(name, overflow="fold")
    for m in report.mismatches[:limit]:
        table.add_row(m.check, m.symbol, m.time, m.subject, m.expected, m.found, m.detail)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts().items()))
    more = len(report.mismatches) - limit
    table.caption = f"per check: {counts}" + (f"; {more:,} more not shown (use --json)" if more > 0 else "")
    return table


def cmd_verify(args: argparse.Namespace) -> int:
    from scalper.run_dir import RunDirError
    from scalper.verify import report_json, verify_run

    try:
        report = verify_run(args.run_dir)
    except RunDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_RUN_DIR
    if args.json:
        Path(args.json).write_bytes(report_json(report) + b"\n")
    out = _console()
    if not report.ok:
        out.print(mismatch_table(report))
    for note in report.notes:
        out.print(f"note: {note}")
    out.print(verdict_line(report))
    return 0 if report.ok else EXIT_MISMATCH


def cmd_report(args: argparse.Namespace) -> int:
    from scalper.html_report import summary_table, write_report
    from scalper.jobs_report import is_combined, write_jobs_report
    from scalper.run_dir import RunDirError, read_run

    run = None
    try:
        if is_combined(args.run_dir):  # --parallel/--grid: the jobs compared, no candles
            files = write_jobs_report(args.run_dir)
        else:
            files = write_report(args.run_dir, max_candles=args.max_candles)
            run = read_run(args.run_dir)
    except RunDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_RUN_DIR
    out = _console()
    if not args.quiet:
        if run is not None:
            out.print(summary_table(run))
        for note in files.notes:
            out.print(f"note: {note}")
        out.print(f"equity curve: {files.png}")
    print(files.html)
    return 0


def after_run(run_dir: str, verify: bool = True) -> int:
    """The end of `scalper run` / `scalper backtest`: write the report and print its path; with
    `verify`, recheck the run and print the verdict (and the mismatches). Returns the exit code
    (0, or EXIT_MISMATCH when verify disagrees). Writes RUN_DIR/verify.json."""
    from scalper.html_report import write_report
    from scalper.verify import report_json, verify_run

    code = 0
    out = _console()
    if verify and not _closed_a_minute(run_dir):  # e.g. stopped before its first minute closed
        out.print("  verify: skipped: the run closed no minute (no bars to recheck)")
        verify = False
    if verify:
        report = verify_run(run_dir)
        (Path(run_dir) / "verify.json").write_bytes(report_json(report) + b"\n")
        if not report.ok:
            out.print(mismatch_table(report))
            code = EXIT_MISMATCH
        out.print(f"  {verdict_line(report)}")
    files = write_report(run_dir)
    out.print(f"  report: {files.html}")
    return code


def _closed_a_minute(run_dir: str) -> bool:
    """Whether the run's summary counts a bar (`scalper run`: bars_out, backtest: bars)."""
    import json

    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    return bool(summary.get("bars_out", summary.get("bars", 1)))


def after_jobs(out_dir: str) -> int:
    """The end of a --parallel/--grid backtest: write the jobs' report and print its path
    (there is nothing for verify to recheck: the jobs stored no bars)."""
    from scalper.jobs_report import write_jobs_report

    files = write_jobs_report(out_dir)
    out = _console()
    for note in files.notes:
        out.print(f"  note: {note}")
    out.print(f"  report: {files.html}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add `verify` and `report` to the `scalper` subcommands."""
    p = sub.add_parser(
        "verify",
        parents=[common],
        help="recheck a run from its stored bars: signals, stops, fills, positions and P&L",
        description="From the run directory alone, recompute the indicators (pandas_ta batch) from the "
        "stored bars, re-derive each strategy's entry conditions from config.json, and check every "
        "logged signal (its conditions at its bar; a crossing not one bar earlier), its stop and "
        "target (ATR multiples), every fill (inside its bar's range, after the signal's bar, at the "
        "fill model's price, with the configured fee; a live fill: inside the bar of the minute that "
        "holds its time), positions and P&L against the fills and the ledger, trades.csv against "
        "trades.parquet and orders.parquet against the ledger; list signals that should have fired "
        "but were not logged. Exit 0 when "
        "everything agrees, 1 with a table of mismatches, 3 when RUN_DIR is not a run directory.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. runs/<id>")
    p.add_argument("--json", metavar="OUT", help="also write the full report (every mismatch) as JSON")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "report",
        parents=[common],
        help="write report.html (self-contained, offline) and equity.png into a run directory",
        description="Write RUN_DIR/report.html - per symbol candlesticks with EMA, VWAP and Bollinger "
        "overlays, volume, RSI and ATR, markers for signals (accepted and refused, reason on hover), "
        "entries, exits, stops and targets; equity and drawdown; statistics per strategy, symbol and "
        "regime; model calibration when signals carry a score; the trade table - with plotly.js "
        "inlined (opens offline), and RUN_DIR/equity.png. Prints a summary and the report's path.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. runs/<id>")
    p.add_argument(
        "--max-candles",
        type=_positive_int,
        default=DEFAULT_MAX_CANDLES,
        metavar="N",
        help=f"candles per symbol on the page: the last N bars (default {DEFAULT_MAX_CANDLES})",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the path of report.html")
    p.set_defaults(func=cmd_report)
