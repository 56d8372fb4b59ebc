"""The `scalper` command. Heavy imports (pandas, pandas_ta, numba, ray) happen inside the
subcommand that needs them, so `scalper --help` stays fast."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

EXIT_BAD_CONFIG = 2
EXIT_BAD_INPUT = 3

DESCRIPTION = """\
scalper: intraday (1-minute) scalping on Ray.

Ticks become 1-minute candles, candles become indicators. Every command reads
config.json (or --config PATH), validates it first and starts nothing if it is wrong.
"""

EPILOG = """\
examples:
  scalper config check                     validate config.json (exit 2 and one line per problem)
  scalper run                              paper-trade the bundled E-mini ticks on Ray (make run)
  scalper backtest --out runs/bt1          backtest the strategies on the bundled ticks
  scalper backtest --synthetic --symbols A B --parallel
  scalper check lookahead                  re-run cut at signal bars: nothing earlier may change
  scalper check recursive                  how much history each indicator needs
  scalper verify runs/ID                   recheck every signal, stop, fill and P&L of a run
  scalper collect --synthetic --out datasets/d1   signals + features + triple-barrier labels
  scalper train all --dataset datasets/d1 --evaluate   validator, regime, sizer (Ray Train)
  scalper report runs/ID                   report.html (charts, trades, stats) of a run
  scalper serve [--http]                   the three models on Ray Serve; prints how to call them
  scalper candles --input ticks.csv --out bars.parquet
  scalper indicators --input bars.parquet --out ind.parquet --streaming
"""


def _load_config(path: str):
    from scalper.config import ConfigError, load

    try:
        return load(path)
    except ConfigError as exc:
        print(f"invalid config {exc.source}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_CONFIG) from None


def cmd_config_check(args: argparse.Namespace) -> int:
    from scalper.config import ConfigError, load

    path = args.path or args.config
    try:
        load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return EXIT_BAD_CONFIG
    print("OK")
    return 0


def _convert(args: argparse.Namespace, convert_name: str, **kwargs) -> int:
    """Shared body of the file commands: config first, then one clear error or a summary."""
    from scalper import tables

    cfg = _load_config(args.config)
    try:
        result = getattr(tables, convert_name)(
            cfg, args.input, args.out, columns=_column_overrides(args), **kwargs
        )
    except tables.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(result.describe())
    return 0


def cmd_candles(args: argparse.Namespace) -> int:
    store = None
    if args.store is not None:
        store = args.store or _load_config(args.config).store.bars_uri
    return _convert(args, "ticks_to_bars_file", symbol=args.symbol, store_uri=store)


def cmd_indicators(args: argparse.Namespace) -> int:
    return _convert(args, "bars_to_indicators_file", streaming=args.streaming)


def _model_gate(cfg: Any) -> Any:
    """The registry's models when ml.enabled (None otherwise); missing or mismatched models are
    a clear error before anything starts (SystemExit EXIT_BAD_INPUT)."""
    from scalper.live_gate import configured_gate
    from scalper.ml.registry import ModelNotFoundError, ModelSchemaError

    try:
        return configured_gate(cfg)
    except (ModelNotFoundError, ModelSchemaError, ValueError) as exc:
        from scalper.ml.bootstrap import registry_status

        # missing models: every one, as the bootstrap names them; else the error itself (a file
        # that cannot be loaded or another feature list, said in one line by the registry)
        missing = isinstance(exc, ModelNotFoundError)
        problems = (registry_status(cfg.ml.registry, cfg).problems if missing else []) or [str(exc)]
        print(
            f"error: ml.enabled is true but the models in {cfg.ml.registry}/ cannot be used "
            f"({'; '.join(problems)}): train them with `scalper train all --bootstrap` (make run "
            f"does), or set ml.enabled to false for rules only",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_BAD_INPUT) from None


def cmd_run(args: argparse.Namespace) -> int:
    import msgspec

    cfg = _load_config(args.config)
    _model_gate(cfg)  # checked here; each runtime loads them where it judges (Serve, in process)
    if args.mode == "live":
        from actors.live import run_live

        return run_live(cfg, args)
    live_only = [f for f, on in (("--sandbox", args.sandbox), ("--dry-run", args.dry_run)) if on]
    live_only += [f for f, v in (("--exchange", args.exchange), ("--resume", args.resume)) if v]
    if live_only:
        print(f"error: {', '.join(live_only)}: only with --mode live (this is a paper run)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.in_process and (args.duration is not None or args.minutes is not None):
        print("error: --duration / --minutes need the Ray runtime (not --in-process)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.address:
        cfg = msgspec.structs.replace(cfg, ray=msgspec.structs.replace(cfg.ray, address=args.address))
    if args.speed is not None:
        feed = cfg.feed
        cfg = msgspec.structs.replace(
            cfg,
            feed=msgspec.structs.replace(
                feed,
                replay=msgspec.structs.replace(feed.replay, speed=args.speed),
                synthetic=msgspec.structs.replace(feed.synthetic, speed=args.speed),
            ),
        )
    from scalper import pipeline
    from scalper.feeds import FeedError

    try:
        if args.in_process:
            summary = pipeline.run(cfg, config_path=args.config, run_id=args.run_id, progress=not args.quiet)
        else:
            from actors.paper import run_paper

            def started(info: dict) -> None:
                print(f"ray cluster up in {info['ray_start_seconds']} s; run directory {info['run_dir']}")
                print(f"dashboard: {info['dashboard'] or 'off (ray.include_dashboard = false)'}")
                if info["metrics"]:
                    print(f"metrics (Prometheus): {info['metrics']}")
                sys.stdout.flush()

            summary = run_paper(
                cfg,
                config_path=args.config,
                run_id=args.run_id,
                progress=not args.quiet,
                shards=args.shards,
                on_start=started,
                stop_after_s=args.duration,
                stop_after_minutes=args.minutes,
            )
    except (FeedError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(pipeline.format_summary(summary))
    from scalper.cli_report import after_run

    return after_run(summary["run_dir"], verify=not args.no_verify)


def cmd_backtest(args: argparse.Namespace) -> int:
    import datetime as dt

    from scalper import backtest as bt
    from scalper.feeds import FeedError

    cfg = _load_config(args.config)
    gate = _model_gate(cfg)  # before any data is read: missing models are a clear error
    out = args.out or str(
        Path(cfg.store.runs_dir) / (dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S") + "-backtest")
    )
    if args.parallel or args.grid:
        return _backtest_many(cfg, args, out)
    ticks: dict = {}
    warmup: dict[str, int] = {}
    try:
        bars = _bars_from_flags(cfg, args, warmup, ticks)
    except (FeedError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    empty = [s for s, b in bars.items() if len(b) == 0]
    if not bars or len(empty) == len(bars):
        print("error: no bars to backtest (check --data, --symbols and --from/--to)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        engine = bt.Backtest(cfg, args.strategies, gate=gate)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    data = {s: bt.prepare(s, b, cfg, ticks.get(s)) for s, b in bars.items() if len(b)}
    try:
        result = bt.run_from(engine, data, bt.start_ns(args.start))
    except ValueError as exc:  # e.g. tick-mode fills without tick data
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from scalper.run_dir import write_backtest

    summary = write_backtest(out, engine, result, data)
    print(bt.format_summary(summary, out))
    if args.start:
        print(_warmup_line(cfg, result.warmup_bars))
    from scalper.cli_report import after_run

    return after_run(out, verify=not args.no_verify)


def _backtest_many(cfg, args: argparse.Namespace, out: str) -> int:
    """--parallel / --grid: one Ray task per symbol and/or parameter set, one combined result."""
    from scalper import backtest as bt
    from scalper.config import ConfigError, parse_grid, with_overrides
    from scalper.feeds import FeedError

    try:
        grid = parse_grid(args.grid or [])
        for overrides in grid:
            with_overrides(cfg, overrides)  # every parameter set is valid before anything starts
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    source = _source_options(cfg, args)
    symbols = args.symbols
    if args.synthetic or source["synthetic_ticks"]:
        symbols = symbols or ([args.symbol] if args.symbol else cfg.symbols)
    else:
        try:  # read here too: a bad file is one clear error before any task starts
            symbols = list(bt.load_bars(cfg, args.data, False, symbols, args.start, args.end, **source))
        except (FeedError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    jobs = bt.make_jobs(
        symbols,
        per_symbol=args.parallel,
        grid=grid,
        data=args.data,
        synthetic=args.synthetic,
        start=args.start,
        end=args.end,
        strategies=args.strategies,
        symbol=args.symbol,
        synthetic_ticks=source["synthetic_ticks"],
    )
    from actors.backtests import run_jobs

    results, wall = run_jobs(cfg, jobs, progress=not args.quiet)
    summary = bt.write_combined(results, out, wall, cfg)
    print(
        f"{summary['jobs']} backtests, {summary['bars']:,} bars in {wall:.1f} s "
        f"({summary['bars_per_second'] or 0:,} bars/s), {summary['trades']:,} trades, "
        f"net P&L {summary['net_pnl']:,.2f}"
    )
    for row in summary["by_job"][:20]:
        print(
            f"  {row['job']:>14}: {row['trades']:>6,} trades, net {row['net_pnl']:>12,.2f}, "
            f"return {row['return_pct']:>7.2f}%, max dd {row['max_drawdown_pct']:.2f}% {row['overrides'] or ''}"
        )
    if len(summary["by_job"]) > 20:
        print(f"  ... {len(summary['by_job']) - 20} more in {out}/jobs.csv")
    print(
        f"  fingerprint {summary['fingerprint'][:16]}; files: {out}/ (summary.json, jobs.csv, "
        "trades.csv, trades.parquet, config.json)"
    )
    from scalper.cli_report import after_jobs

    return after_jobs(out)


def _check_data(args: argparse.Namespace):
    """(cfg, {symbol: bars}) for the `check` subcommands; bars None after printing an error."""
    from scalper.feeds import FeedError

    cfg = _load_config(args.config)
    warmup: dict[str, int] = {}
    try:
        bars = _bars_from_flags(cfg, args, warmup)
    except (FeedError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return cfg, None
    if args.start:  # the bars before --from the backtest loads as warm-up are checked too
        print(_warmup_line(cfg, warmup))
    bars = {s: b for s, b in bars.items() if len(b)}
    if not bars:
        print("error: no bars to check (check --data, --symbols and --from/--to)", file=sys.stderr)
        return cfg, None
    return cfg, bars


def _check_progress(label: str):
    """A one-line progress counter on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        print(f"\r{label} {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)

    return show


def _write_report(path: str, report) -> None:
    import msgspec

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2) + b"\n")
    print(f"  report: {out}")


def _run_check(args: argparse.Namespace, run, fmt, label: str) -> int:
    """Shared body of the `check` commands: data, the check, its report; exit 0 ok / 1 bias."""
    cfg, bars = _check_data(args)
    if bars is None:
        return EXIT_BAD_INPUT
    try:
        report = run(cfg, bars, _check_progress(label))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(fmt(report))
    if args.json:
        _write_report(args.json, report)
    return 0 if report.ok else 1


def cmd_check_lookahead(args: argparse.Namespace) -> int:
    from scalper import checks

    def run(cfg, bars, progress):
        return checks.lookahead_check(
            cfg,
            bars,
            strategies=args.strategies,
            max_cuts=args.max_cuts or None,
            indicator_window=args.indicator_window,
            progress=progress,
            gate=_model_gate(cfg),  # ml.enabled: the models' decisions are checked too
        )

    return _run_check(args, run, checks.format_lookahead, "look-ahead check: cut")


def cmd_check_recursive(args: argparse.Namespace) -> int:
    from scalper import checks

    def run(cfg, bars, progress):
        return checks.recursive_check(
            cfg, bars, lengths=args.lengths, sample=args.sample, tolerance=args.tolerance, progress=progress
        )

    return _run_check(args, run, checks.format_recursive, "recursive check: frame")


def _add_data_flags(p: argparse.ArgumentParser, symbol: bool = False) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--data",
        metavar="PATH",
        help="ticks or 1-minute bars, CSV or Parquet (default: feed.kind: the replay file, or the "
        "synthetic market's ticks made into bars as `scalper run` does)",
    )
    src.add_argument(
        "--synthetic",
        action="store_true",
        help="the seeded synthetic market (feed.synthetic), its 1-minute bars drawn directly (fast)",
    )
    p.add_argument("--symbols", nargs="+", metavar="S", help="symbols (default: all in the data / config)")
    if symbol:
        p.add_argument(
            "--symbol",
            metavar="NAME",
            help="the symbol of a file without a symbol column (default: feed.replay.default_symbol), "
            "or the one symbol to keep",
        )
    p.add_argument(
        "--from",
        dest="start",
        metavar="DATE",
        help="first bar traded, UTC (e.g. 2013-09-02); up to candles.warmup_bars bars before it are "
        "loaded as history for the indicators and rules",
    )
    p.add_argument("--to", dest="end", metavar="DATE", help="end (exclusive), UTC")


def _bars_from_flags(
    cfg: Any, args: argparse.Namespace, warmup_out: dict[str, int], ticks_out: dict | None = None
) -> dict[str, Any]:
    """`backtest.load_bars` from the data flags (`_add_data_flags`): the bars `backtest`,
    `check` and `collect` all read from the same flags, warm-up before --from included."""
    from scalper import backtest as bt

    return bt.load_bars(
        cfg,
        args.data,
        args.synthetic,
        args.symbols,
        args.start,
        args.end,
        ticks_out=ticks_out,
        warmup_out=warmup_out,
        **_source_options(cfg, args),
    )


def _source_options(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """load_bars' options from the data flags and the config: the file's symbol, the warm-up
    before --from, and feed.kind "synthetic" without --data / --synthetic (the bars `scalper
    run` makes from the synthetic ticks)."""
    return {
        "symbol": getattr(args, "symbol", None),
        "warmup": cfg.candles.warmup_bars if args.start else 0,
        "synthetic_ticks": not args.data and not args.synthetic and cfg.feed.kind == "synthetic",
    }


def _warmup_line(cfg: Any, warmup: dict[str, int], unused: str = "nothing traded") -> str:
    """What was loaded before --from, per symbol (fewer than candles.warmup_bars: the data has
    no more)."""
    want = cfg.candles.warmup_bars
    per = ", ".join(f"{s} {n:,}" for s, n in warmup.items()) or "none"
    short = [s for s, n in warmup.items() if n < want]
    note = f"; {', '.join(short)}: the data has no more" if short else ""
    return (
        f"  warm-up before --from: {per} bars (candles.warmup_bars = {want:,}; indicators and rules "
        f"only, {unused}{note})"
    )


def _column_overrides(args: argparse.Namespace) -> dict[str, str]:
    names = ("timestamp", "price", "size", "symbol", "open", "high", "low", "close", "volume")
    return {n: getattr(args, f"{n}_col") for n in names if getattr(args, f"{n}_col", None)}


def _add_column_flags(p: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    for name in names:
        p.add_argument(f"--{name}-col", metavar="NAME", help=f"name of the {name} column in the input")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scalper",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default="config.json", help="configuration file (default: config.json)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    # --config and -v also work after the subcommand (`scalper run --config x.json`)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help="configuration file (default: config.json)"
    )
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("config", help="configuration tools", parents=[common])
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    pc = csub.add_parser(
        "check",
        parents=[common],
        help="validate a config file: prints OK, or one line per problem and exits 2",
    )
    pc.add_argument("path", nargs="?", help="file to check (default: --config)")
    pc.set_defaults(func=cmd_config_check)

    p = sub.add_parser(
        "run",
        parents=[common],
        help="paper-trade over the configured feed (default: the bundled E-mini ticks) into runs/<id>/",
        description="Replay the configured feed (default: the bundled E-mini S&P 500 ticks) in event time "
        "through the per-symbol CandleManagers and streaming indicators, and paper-trade every closed "
        "minute with the strategies, the RiskManager, the orders and the paper broker (the same "
        "classes and trades as `scalper backtest`); write the trades, signals, orders, equity, "
        "ledger.sqlite, bars with indicators and summary.json to runs/<run-id>/. Every component "
        "is a Ray actor (namespace `scalper`: feed, candles-shard-N, strategy-*, risk-manager, "
        "trading-service) on an embedded local cluster, or the one given by --address / RAY_ADDRESS "
        "/ ray.address. Ctrl-C stops the feed, cancels working orders and still writes the run.",
    )
    p.add_argument("--mode", default="paper", choices=["paper", "live"], help="default: paper")
    p.add_argument("--address", help="join this Ray cluster (e.g. auto, ray://host:10001)")
    p.add_argument("--shards", type=int, help="candle shard actors (default: ray.candle_shards)")
    p.add_argument(
        "--speed", type=float, help="replay speed: 0 = as fast as possible, k = k x real time (feed.*.speed)"
    )
    p.add_argument("--in-process", action="store_true", help="no Ray: the same classes in this process")
    p.add_argument("--exchange", help="live: the ccxt exchange id (default: feed.ccxt.exchange)")
    p.add_argument("--sandbox", action="store_true", help="live: the exchange's test network")
    p.add_argument(
        "--dry-run", action="store_true", help="live: real market data, orders on the paper broker"
    )
    p.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="live: continue the books of runs/RUN_ID (its ledger, reconciled with the exchange first): "
        "its open positions, their stops and targets, its fills and trades",
    )
    p.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="Ray runs: stop after this much wall time, as Ctrl-C does (feed stopped, working orders "
        "canceled, run written)",
    )
    p.add_argument(
        "--minutes",
        type=int,
        metavar="N",
        help="Ray runs: stop once N minutes have been traded, as Ctrl-C does",
    )
    p.add_argument("--no-verify", action="store_true", help="skip `scalper verify` at the end (report only)")
    p.add_argument("--run-id", help="name of the run directory (default: a timestamp)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "backtest",
        parents=[common],
        help="backtest the strategies with risk, orders and paper fills; writes a run directory",
        description="Run the strategies, the RiskManager, the order logic and the paper fill model over "
        "history in one process, in event time (the same classes as a live run). Data: --data FILE "
        "(ticks -> candles, or 1-minute bars), --synthetic, or the configured replay file. Writes "
        "trades, orders, signals (accepted and refused, with the reason), the equity curve, "
        "ledger.sqlite and summary.json to --out.",
    )
    _add_data_flags(p, symbol=True)
    p.add_argument("--strategies", nargs="+", metavar="NAME", help="momentum, mean_reversion, breakout")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<time>-backtest)")
    p.add_argument(
        "--parallel",
        action="store_true",
        help="one backtest per symbol, run as Ray tasks, one combined result",
    )
    p.add_argument(
        "--grid",
        nargs="+",
        metavar="KEY=V1,V2",
        help="parameter grid over config settings, e.g. strategies.momentum.stop_atr=1,1.5,2 (Ray tasks)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-verify", action="store_true", help="skip `scalper verify` at the end (report only)")
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser(
        "check",
        parents=[common],
        help="bias checks: look-ahead, and the start-up history indicators need (recursive)",
        description="Bias checks on your data (cf. freqtrade's lookahead-analysis and recursive-analysis). "
        "Each prints its report and exits 0 when no bias is found, 1 when one is.",
    )
    ksub = p.add_subparsers(dest="check_command", metavar="CHECK")
    pk = ksub.add_parser(
        "lookahead",
        parents=[common],
        help="cut the data at signal bars: nothing decided at or before the cut may change",
        description="Run the backtest once, then again on the data cut at signal bars (bars up to the cut "
        "only, indicators recomputed), and compare everything at or before the cut: every indicator "
        "value (bit for bit), every signal with its risk decision and quantity, every closed trade and "
        "fill. Any difference means something used data from after the cut; the report names the "
        "indicator column or strategy and shows the first differences.",
    )
    _add_data_flags(pk, symbol=True)
    pk.add_argument("--json", metavar="OUT", help="also write the full report as JSON")
    pk.add_argument("--strategies", nargs="+", metavar="NAME", help="momentum, mean_reversion, breakout")
    pk.add_argument(
        "--max-cuts",
        type=int,
        default=50,
        metavar="N",
        help="signal bars to cut at, spread evenly over the run (default 50; 0 = every signal bar)",
    )
    pk.add_argument(
        "--indicator-window",
        type=int,
        metavar="BARS",
        help="for long data: check the indicators on the BARS bars before each cut only (default: "
        "recompute them on the whole prefix)",
    )
    pk.set_defaults(func=cmd_check_lookahead)
    pk = ksub.add_parser(
        "recursive",
        parents=[common],
        help="how much start-up history each indicator needs; is candles.warmup_bars enough",
        description="Compute every indicator from only the last L bars of history and compare with the "
        "value from all of it: max and median relative difference per indicator and L, the history "
        "each indicator needs to stay within --tolerance, and whether candles.warmup_bars is enough "
        "(exit 1 when it is not, or when the data is too short to tell).",
    )
    _add_data_flags(pk, symbol=True)
    pk.add_argument("--json", metavar="OUT", help="also write the full report as JSON")
    pk.add_argument(
        "--lengths",
        nargs="+",
        type=int,
        default=[200, 400, 800, 1600, 3200],
        metavar="L",
        help="history lengths to report, in bars (default: 200 400 800 1600 3200; L needs 2 L bars of data)",
    )
    pk.add_argument(
        "--sample", type=int, default=200, metavar="N", help="evaluation frames per symbol (default 200)"
    )
    pk.add_argument(
        "--tolerance", type=float, default=1e-4, help="relative difference counted as equal (default 1e-4)"
    )
    pk.set_defaults(func=cmd_check_recursive)

    p = sub.add_parser(
        "candles",
        parents=[common],
        help="turn a file of ticks (CSV or Parquet) into 1-minute bars",
        description="Aggregate ticks into 1-minute OHLCV bars (timestamp = minute open, UTC) with the "
        "candles.* rules of the config. Output columns: symbol, timestamp, open, high, low, "
        "close, volume, trades, vwap. Rejected ticks are counted and reported.",
    )
    p.add_argument("--input", required=True, help="ticks file (.csv or .parquet)")
    p.add_argument("--out", required=True, help="bars file to write (.parquet or .csv)")
    p.add_argument("--symbol", help="symbol of a file without a symbol column, or the one symbol to keep")
    p.add_argument(
        "--store",
        nargs="?",
        const="",
        metavar="URI",
        help="also append the bars to the bar store (default URI: store.bars_uri of the config)",
    )
    _add_column_flags(p, ("timestamp", "price", "size", "symbol"))
    p.set_defaults(func=cmd_candles)

    p = sub.add_parser(
        "indicators",
        parents=[common],
        help="add indicator columns to a file of 1-minute bars",
        description="Compute EMA, RSI, VWAP, Bollinger bands, volume SMA and ATR (indicators.* in the "
        "config) for each symbol of a bars file. --streaming uses the O(1) per-bar path the "
        "live system runs; without it pandas_ta computes the batch. Both give the same numbers.",
    )
    p.add_argument("--input", required=True, help="bars file (.csv or .parquet)")
    p.add_argument("--out", required=True, help="file to write (.parquet or .csv)")
    p.add_argument("--streaming", action="store_true", help="use the streaming (live) path")
    _add_column_flags(p, ("timestamp", "symbol", "open", "high", "low", "close", "volume"))
    p.set_defaults(func=cmd_indicators)
    from scalper.cli_ml import register as register_ml
    from scalper.cli_report import register as register_report
    from scalper.cli_serve import register as register_serve

    register_ml(sub, common)
    register_report(sub, common)
    register_serve(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        if args.command in ("config", "check"):
            parser.parse_args([args.command, "--help"])
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a path that cannot be read or written: say which, no traceback
        logging.getLogger(__name__).debug("file system error", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
