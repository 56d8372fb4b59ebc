"""`scalper run --mode live`: the paper runtime on a live exchange feed, orders on the exchange.

Order of things, each a gate before the next:
1. the flags go into the config (`feed.kind = "ccxt"`, `execution.broker = "ccxt"` unless
   `--dry-run`, which keeps the paper broker on live data); `--resume RUN_ID` must name a run
   that ended with its ledger, a live run (not paper, not a dry run) on the same exchange whose
   symbols are all configured: checked here, before anything is contacted or written;
2. a banner says what will happen; real money (neither `--sandbox` nor `--dry-run`) needs the
   confirmation sentence typed at the prompt or in SCALPER_LIVE_CONFIRM;
3. start-up reconciliation against the exchange: a new run starts flat with no orders, so the
   exchange must agree with an empty ledger (no position, no unknown open order, or those
   canceled with `unknown_orders = "cancel"`); `--resume RUN_ID` reconciles a copy of that
   run's ledger instead (missed fills recorded, orders closed on the exchange closed) and the
   trading service starts from it (`feed.ccxt.resume_ledger`). A disagreement prints the
   report and refuses with exit code EXIT_REFUSED.
   A dry run reconciles nothing but loads the exchange's markets first (it answers, it lists
   every symbol), so that a wrong or unreachable exchange is one line here, not a feed that
   fails on Ray;
4. the same actors as a paper run (`actors.paper.run_paper`) until Ctrl-C, `--duration`,
   `--minutes` (or the feed ends).

Keys come from SCALPER_<EXCHANGE>_API_KEY / _SECRET in the environment of the processes
that place orders: this driver (reconciliation) and the trading-service actor, which
inherits it when this command starts the Ray cluster (a joined cluster needs them in its env).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

import msgspec

from scalper.config import Config

log = logging.getLogger(__name__)

EXIT_REFUSED = 4  # confirmation missing, keys missing, or the exchange disagrees with the books
CONFIRM_ENV = "SCALPER_LIVE_CONFIRM"
START_LEDGER = "start-ledger.sqlite"  # in runs/<id>/state/: a resumed run's reconciled ledger


class CannotResume(RuntimeError):
    """`--resume RUN_ID` names no run with a ledger (it never ended, or does not exist)."""


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
            "  Ctrl-C stops the feed and cancels working entries; open positions STAY open",
            f"  (with their stops/targets: brackets = {ccfg.brackets}; `--resume RUN_ID` takes them over).",
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


def reconcile_at_start(
    cfg: Config, resume: str | None = None, run_id: str | None = None
) -> tuple[str, Config]:
    """Reconcile the exchange with the books the trading service will start from: flat and
    order-less for a new run, or (`resume`) a copy of run `resume`'s ledger, which is then
    kept as runs/`run_id`/state/start-ledger.sqlite. Returns the report's text and the config
    the run goes on with; ReconcileError (nothing changed) when they disagree."""
    from scalper.execution.ccxt import CcxtBroker, clock_of
    from scalper.ledger import Ledger
    from scalper.reconcile import reconcile

    ccfg = cfg.feed.ccxt
    if ccfg.unknown_orders == "adopt":
        # an adopted order carries no stop or target: nobody would protect what it buys
        log.warning('feed.ccxt.unknown_orders = "adopt" is not supported by `scalper run`: refusing instead')
        ccfg = msgspec.structs.replace(ccfg, unknown_orders="refuse")
    ccfg = msgspec.structs.replace(ccfg, resume_ledger="")
    cfg = msgspec.structs.replace(cfg, feed=msgspec.structs.replace(cfg.feed, ccxt=ccfg))
    broker = CcxtBroker(cfg)
    try:
        broker.connect()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "start.sqlite"
            if resume:
                _copy_ledger(_resumed_ledger(cfg, resume), path)
            now_ts = int(clock_of(ccfg)() * 1e9)
            with Ledger(path) as ledger:
                if not resume:
                    ledger.set_meta("starting_cash", float(cfg.risk.starting_equity))
                text = reconcile(ledger, broker, cfg, now_ts=now_ts).text()
            if not resume:
                return text, cfg
            kept = Path(cfg.store.runs_dir) / (run_id or _new_run_id()) / "state" / START_LEDGER
            kept.parent.mkdir(parents=True, exist_ok=True)
            _copy_ledger(path, kept)
    finally:
        broker.close()
    ccfg = msgspec.structs.replace(ccfg, resume_ledger=str(kept.resolve()))
    return f"resuming run {resume}\n{text}", msgspec.structs.replace(
        cfg, feed=msgspec.structs.replace(cfg.feed, ccxt=ccfg)
    )


def _new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")


def _resumed_ledger(cfg: Config, run_id: str) -> Path:
    """The ledger of run `run_id`, if its books can be continued by a live run of `cfg`: it
    exists, and it is a live run (real orders: not paper, not a dry run) on the same exchange
    whose symbols are all in `cfg` (the books of a symbol left out would be nobody's).
    CannotResume says why not; nothing is contacted or written."""
    path = Path(cfg.store.runs_dir) / run_id / "ledger.sqlite"
    if not path.exists():
        raise CannotResume(
            f"--resume {run_id}: {path} does not exist (a run writes its ledger when it ends: "
            "Ctrl-C, --duration or --minutes; a crashed run must be reconciled by hand)"
        )
    from scalper.ledger import Ledger, LedgerError

    try:
        with Ledger(path) as ledger:
            stored = ledger.get_meta("config")
        earlier = json.loads(stored) if isinstance(stored, str) else None
    except (LedgerError, json.JSONDecodeError) as e:
        raise CannotResume(f"--resume {run_id}: {path} cannot be read: {e}") from None
    if not isinstance(earlier, dict):
        raise CannotResume(f"--resume {run_id}: {path} holds no configuration: cannot tell it was a live run")
    broker = earlier.get("execution", {}).get("broker")
    ccxt = earlier.get("feed", {}).get("ccxt", {})
    if broker != "ccxt" or ccxt.get("dry_run"):
        mode = "a dry run" if earlier.get("feed", {}).get("kind") == "ccxt" else "a paper run"
        raise CannotResume(
            f"--resume {run_id}: it is {mode}, not a live run: only a live run's books (orders on "
            "the exchange) can be continued"
        )
    if ccxt.get("exchange") != cfg.feed.ccxt.exchange:
        raise CannotResume(
            f"--resume {run_id}: it traded on {ccxt.get('exchange')!r}, this run on {cfg.feed.ccxt.exchange!r}"
        )
    missing = [s for s in earlier.get("symbols", []) if s not in cfg.symbols]
    if missing:
        raise CannotResume(
            f"--resume {run_id}: its symbols {earlier.get('symbols')} are not all in the config's "
            f"{list(cfg.symbols)} (missing {missing}): its books there would be nobody's"
        )
    return path


def check_exchange(cfg: Config) -> None:
    """A dry run's exchange answers and lists every symbol (what the feed will need), checked
    before anything starts; no keys needed. BrokerError (BrokerUnavailable: no answer) if not."""
    from scalper.execution.ccxt import CcxtBroker, make_exchange

    ccfg = msgspec.structs.replace(cfg.feed.ccxt, brackets="service")  # no order is sent
    cfg = msgspec.structs.replace(cfg, feed=msgspec.structs.replace(cfg.feed, ccxt=ccfg))
    broker = CcxtBroker(cfg, make_exchange(ccfg))
    try:
        broker.connect()
    finally:
        broker.close()


def _copy_ledger(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite ledger (its WAL included), never a half-written file."""
    tmp = dst.with_name(dst.name + ".tmp")
    with sqlite3.connect(src) as a, sqlite3.connect(tmp) as b:
        a.backup(b)
    a.close()
    b.close()
    shutil.move(tmp, dst)


def run_live(cfg: Config, args: argparse.Namespace) -> int:
    """The `scalper run --mode live` command; its exit code. Every check that needs no
    exchange (flags, the resumed run) comes first, then the exchange (reconciliation, or a
    dry run's markets); only then do Ray and the run directory start."""
    from scalper import pipeline
    from scalper.cli_report import after_run
    from scalper.execution.ccxt import BrokerError, LiveTradingRefused, require_live_confirmation
    from scalper.execution.live import is_live
    from scalper.feeds import FeedError
    from scalper.reconcile import ReconcileError

    try:
        cfg = live_config(cfg, args)
    except ValueError as e:  # --exchange: an id ccxt.pro does not know (config.py checks it)
        print(
            f"error: --exchange {getattr(args, 'exchange', '')}: {str(e).removeprefix('exchange: ')}",
            file=sys.stderr,
        )
        return 3
    resume = getattr(args, "resume", None)
    run_id = getattr(args, "run_id", None)
    if resume and not is_live(cfg):
        print("error: --resume continues a live run's books; it cannot be a --dry-run", file=sys.stderr)
        return 3
    if resume and run_id == resume:
        print("error: --resume RUN_ID starts a NEW run: give it another --run-id", file=sys.stderr)
        return 3
    if resume:
        try:
            _resumed_ledger(cfg, resume)
        except CannotResume as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_REFUSED
    print(banner(cfg), flush=True)
    ccfg = cfg.feed.ccxt
    try:
        if not (ccfg.sandbox or ccfg.dry_run):
            require_live_confirmation(ccfg, _confirmation())
        if is_live(cfg):
            run_id = run_id or _new_run_id()
            text, cfg = reconcile_at_start(cfg, resume, run_id)
            print(text, flush=True)
        else:
            check_exchange(cfg)
    except (LiveTradingRefused, ReconcileError, CannotResume) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except BrokerError as e:  # keys missing, authentication refused, exchange unreachable, unknown symbol
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
            run_id=run_id,
            progress=not getattr(args, "quiet", False),
            shards=getattr(args, "shards", None),
            on_start=started,
            stop_after_s=getattr(args, "duration", None),
            stop_after_minutes=getattr(args, "minutes", None),
        )
    except (FeedError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    print(pipeline.format_summary(summary))
    return after_run(summary["run_dir"], verify=not getattr(args, "no_verify", False))
