"""`scalper run --mode live`: the paper runtime on a live exchange feed, orders on the exchange.

Order of things, each a gate before the next:
1. the flags go into the config (`feed.kind = "ccxt"`, `execution.broker = "ccxt"` unless
   `--dry-run`, which keeps the paper broker on live data);
2. a banner says what will happen; real money (neither `--sandbox` nor `--dry-run`) needs the
   confirmation sentence typed at the prompt or in SCALPER_LIVE_CONFIRM;
3. start-up reconciliation against the exchange: the trading service starts flat with no
   orders, so the exchange must agree with an empty ledger (no position, no unknown open
   order, or those canceled with `unknown_orders = "cancel"`); otherwise the report is printed
   and the run refuses with exit code EXIT_REFUSED;
4. the same actors as a paper run (`actors.paper.run_paper`) until Ctrl-C (or the feed ends).

Keys come from SCALPER_<EXCHANGE>_API_KEY / _SECRET in the environment of the processes
that place orders: this driver (reconciliation) and the trading-service actor, which
inherits it when this command starts the Ray cluster (a joined cluster needs them in its env).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import msgspec

from scalper.config import Config

log = logging.getLogger(__name__)

EXIT_REFUSED = 4  # confirmation missing, keys missing, or the exchange disagrees with the books
CONFIRM_ENV = "SCALPER_LIVE_CONFIRM"


def live_config(cfg: Config, args: argparse.Namespace) -> Config:
    """The run's config with the command line's live flags applied."""
    ccfg = cfg.feed.ccxt
    dry_run = bool(getattr(args, "dry_run", False)) or ccfg.dry_run
    ccfg = msgspec.structs.replace(
        ccfg,
        exchange=getattr(args, "exchange", None) or ccfg.exchange,
        sandbox=bool(getattr(args, "sandbox", False)) or ccfg.sandbox,
        dry_run=dry_run,
    )
    feed = msgspec.structs.replace(cfg.feed, kind="ccxt", ccxt=ccfg)
    execution = msgspec.structs.replace(cfg.execution, broker="paper" if dry_run else "ccxt")
    out = msgspec.structs.replace(cfg, feed=feed, execution=execution)
    if getattr(args, "address", None):
        out = msgspec.structs.replace(out, ray=msgspec.structs.replace(out.ray, address=args.address))
    return out


def banner(cfg: Config) -> str:
    """What this run will do, in capitals where it matters."""
    ccfg = cfg.feed.ccxt
    if ccfg.dry_run:
        mode = "DRY RUN: live market data, orders on the PAPER broker (nothing is sent)"
    elif ccfg.sandbox:
        mode = "SANDBOX: orders go to the exchange's TEST network (fake money)"
    else:
        mode = "REAL MONEY: orders go to the exchange with your account's funds"
    line = "=" * 78
    return "\n".join(
        [
            line,
            f"  LIVE TRADING on {ccfg.exchange}: {', '.join(cfg.symbols)}",
            f"  {mode}",
            f"  risk: {cfg.risk.risk_per_trade_pct}% per trade, starting equity {cfg.risk.starting_equity:,.2f}",
            "  Ctrl-C stops the feed and cancels working orders; open positions STAY open.",
            line,
        ]
    )


def _confirmation() -> str | None:
    """The typed answer (a terminal) or SCALPER_LIVE_CONFIRM (unattended)."""
    from_env = os.environ.get(CONFIRM_ENV)
    if from_env is not None:
        return from_env
    if sys.stdin is not None and sys.stdin.isatty():
        from scalper.execution.ccxt import LIVE_CONFIRMATION

        return input(f"type {LIVE_CONFIRMATION!r} to continue: ")
    return None


def reconcile_at_start(cfg: Config) -> str:
    """Reconcile the exchange with the flat, order-less state the trading service starts in;
    the report's text, or ReconcileError (nothing changed) when they disagree."""
    from scalper.execution.ccxt import CcxtBroker
    from scalper.ledger import Ledger
    from scalper.reconcile import reconcile

    ccfg = cfg.feed.ccxt
    if ccfg.unknown_orders == "adopt":
        # the trading service does not load a ledger yet: an adopted order would be followed by nobody
        log.warning(
            'feed.ccxt.unknown_orders = "adopt" is not supported by `scalper run` yet: refusing instead'
        )
        cfg = msgspec.structs.replace(
            cfg,
            feed=msgspec.structs.replace(
                cfg.feed, ccxt=msgspec.structs.replace(ccfg, unknown_orders="refuse")
            ),
        )
    broker = CcxtBroker(cfg)
    try:
        broker.connect()
        with tempfile.TemporaryDirectory() as tmp, Ledger(Path(tmp) / "start.sqlite") as ledger:
            now_ts = int(broker.exchange.milliseconds()) * 1_000_000
            return reconcile(ledger, broker, cfg, now_ts=now_ts).text()
    finally:
        broker.close()


def run_live(cfg: Config, args: argparse.Namespace) -> int:
    """The `scalper run --mode live` command; its exit code."""
    from scalper import pipeline
    from scalper.execution.ccxt import BrokerError, LiveTradingRefused, require_live_confirmation
    from scalper.execution.live import is_live
    from scalper.feeds import FeedError
    from scalper.reconcile import ReconcileError

    cfg = live_config(cfg, args)
    print(banner(cfg), flush=True)
    ccfg = cfg.feed.ccxt
    try:
        if not (ccfg.sandbox or ccfg.dry_run):
            require_live_confirmation(ccfg, _confirmation())
        if is_live(cfg):
            print(reconcile_at_start(cfg), flush=True)
    except LiveTradingRefused as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except ReconcileError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except BrokerError as e:  # keys missing, authentication refused, exchange unreachable
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED

    from actors.paper import run_paper

    def started(info: dict) -> None:
        print(f"ray cluster up in {info['ray_start_seconds']} s; run directory {info['run_dir']}")
        print(f"dashboard: {info['dashboard'] or 'off (ray.include_dashboard = false)'}", flush=True)

    try:
        summary = run_paper(
            cfg,
            config_path=getattr(args, "config", None),
            run_id=getattr(args, "run_id", None),
            progress=not getattr(args, "quiet", False),
            shards=getattr(args, "shards", None),
            on_start=started,
        )
    except (FeedError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(pipeline.format_summary(summary))
    return 0
