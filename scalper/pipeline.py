"""The in-process market-data pipeline: feed -> per-symbol CandleManager -> streaming indicators.

This is what `scalper run` does until the Ray runtime exists, and the same event loop the
candle shard actors will run: ticks are held until the heartbeat that closes their interval,
handed to their symbol's CandleManager with that heartbeat as the feed clock, then the
heartbeat itself closes quiet symbols' minutes. Every closed bar updates that symbol's
streaming indicators. Bars go to a BarStore and, with their indicators, to the run directory.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from scalper.candles import CandleManager, closed_boundary
from scalper.config import Config
from scalper.types import Bar, BarBatch, Heartbeat, Snapshot, TickBatch

if TYPE_CHECKING:
    from scalper.event_batch import EventBatch
    from scalper.store import BarStore
    from scalper.trading import TradingSession

log = logging.getLogger(__name__)


class MarketDataPipeline:
    """Routes feed events to per-symbol CandleManagers and StreamingIndicators (no Ray)."""

    def __init__(self, cfg: Config, started_ns: int | None = None):
        from scalper.indicators import StreamingIndicators

        self.cfg = cfg
        self.managers = {s: CandleManager(s, cfg.candles, started_ns) for s in cfg.symbols}
        self.indicators = {s: StreamingIndicators(cfg.indicators) for s in cfg.symbols}
        self.rows: dict[str, list[dict[str, Any]]] = {s: [] for s in cfg.symbols}
        self.ticks_in = 0
        self.bars_in = 0
        self.unknown_symbol_ticks = 0
        self.last_heartbeat: int | None = None
        # bars closed since the last drain_snapshots(), with their indicators (for strategies)
        self.snapshots: list[Snapshot] = []
        self._pending: list[TickBatch] = []
        # a heartbeat only matters when it carries ticks or ends a minute (+ boundary delay)
        self._delay = cfg.candles.boundary_delay_ms * 1_000_000
        self._boundary = -(2**62)

    def warm_start(self, store: BarStore) -> dict[str, int]:
        """Seed every symbol's CandleManager and indicators from the bar store.

        Loads the last `candles.warmup_bars` bars, and further back to the start of the
        current VWAP session if that is earlier (a session VWAP needs its whole session).
        Returns {symbol: bars loaded}.
        """
        from scalper.indicators import session_bounds

        loaded = {}
        for sym, manager in self.managers.items():
            bars = store.tail(sym, self.cfg.candles.warmup_bars)
            if len(bars):
                last = int(bars["timestamp"].iloc[-1])
                session_start, _ = session_bounds(last, self.cfg.indicators.vwap_anchor)
                if int(bars["timestamp"].iloc[0]) > session_start:
                    bars = store.read(sym, start_ns=session_start)  # a superset of the tail
                manager.warm(bars)
                self.indicators[sym].warm(bars)
            loaded[sym] = len(bars)
            log.info("%s: warm start from %d stored bars", sym, len(bars))
        return loaded

    def restore(self, store: BarStore, before_ns: int) -> list[Snapshot]:
        """Continue a run after a restart from ALL its stored bars before `before_ns` (unlike
        `warm_start`'s tail, so the indicators are exactly an uninterrupted run's): candles
        warmed, indicators and rows rebuilt. Returns those bars with their indicators."""
        from scalper.indicators import StreamingIndicators

        snaps: list[Snapshot] = []
        for sym, manager in self.managers.items():
            df = store.read(sym)
            df = df[df["timestamp"] < before_ns]
            manager.warm(df)
            ind = self.indicators[sym] = StreamingIndicators(self.cfg.indicators)
            rows = self.rows[sym] = []
            cols = ["timestamp", "open", "high", "low", "close", "volume", "trades", "vwap"]
            for ts, o, h, lo, c, v, n, w in df[cols].itertuples(index=False, name=None):
                bar = Bar(sym, int(ts), o, h, lo, c, v, int(n), w)
                ind.update_bar(bar)
                values = ind.values()
                rows.append({**msgspec.structs.asdict(bar), **values})
                snaps.append(Snapshot(bar, values, {}))
        self._boundary = before_ns
        return snaps

    @property
    def closed_through(self) -> int | None:
        """Every bar that opened before this boundary has closed (None before the first)."""
        return self._boundary if self._boundary > 0 else None

    def on_event(self, event: TickBatch | BarBatch | Heartbeat) -> list[Bar]:
        """Feed one event; returns the bars it closed (across symbols, in close order)."""
        kind = type(event)
        if kind is Heartbeat:
            ts = event.ts
            self.last_heartbeat = ts
            boundary = closed_boundary(ts, self._delay)
            new_minute = boundary > self._boundary
            if not self._pending and not new_minute:
                return []  # most heartbeats: nothing arrived, no minute ended
            closed: list[Bar] = []
            for batch in self._pending:
                manager = self.managers.get(batch.symbol)
                if manager is None:
                    self.unknown_symbol_ticks += len(batch)
                    continue
                closed += manager.on_ticks(batch, clock_ns=ts)
            self._pending.clear()
            if new_minute:  # otherwise every manager has already closed up to this boundary
                self._boundary = boundary
                for manager in self.managers.values():
                    closed += manager.on_heartbeat(ts)
        elif kind is TickBatch:
            self.ticks_in += len(event)
            self._pending.append(event)
            return []
        else:
            closed = []
            self.bars_in += len(event)
            manager = self.managers.get(event.symbol)
            if manager is None:
                self.unknown_symbol_ticks += len(event)
                return []
            closed += manager.on_bars(event)
        self._emit(closed)
        return closed

    def on_batch_events(self, batch: EventBatch) -> None:
        """Feed a run of events at once (a candle shard's share of a feed send): the same
        bars, counters and snapshots as `on_event` on each event, each symbol's ticks in one
        vectorised CandleManager call (every tick checked against its own heartbeat's clock).

        Exact when no minute ends before the last heartbeat and no tick follows it (how the
        feed sends: at each minute boundary, and after a heartbeat); otherwise event by event.
        Only the order of the snapshots across symbols may differ."""
        import numpy as np

        after, beat, n_groups = batch.after, batch.beat, len(batch.symbols)
        if batch.others or self._pending or not len(beat) or int(after[-1]) != n_groups:
            for event in batch.events():
                self.on_event(event)
            return
        bounds = closed_boundary(beat, self._delay)
        if len(beat) > 1 and int(bounds[:-1].max()) > self._boundary:
            for event in batch.events():
                self.on_event(event)
            return
        last = int(beat[-1])
        self.last_heartbeat = last
        closed: list[Bar] = []
        if n_groups:
            rows = batch.lengths
            self.ticks_in += int(rows.sum())
            # each tick's clock: the first heartbeat after its group
            clock = np.repeat(beat[np.searchsorted(after, np.arange(n_groups), side="right")], rows)
            names = list(dict.fromkeys(batch.symbols))
            code = {s: i for i, s in enumerate(names)}
            row_code = np.repeat(np.fromiter((code[s] for s in batch.symbols), np.int64, n_groups), rows)
            order = np.argsort(row_code, kind="stable")
            cuts = np.searchsorted(row_code[order], np.arange(len(names) + 1)).tolist()
            tid = batch.trade_id
            for i, sym in enumerate(names):
                idx = order[cuts[i] : cuts[i + 1]]
                manager = self.managers.get(sym)
                if manager is None:
                    self.unknown_symbol_ticks += len(idx)
                    continue
                closed += manager.on_batch(
                    batch.ts[idx],
                    batch.price[idx],
                    batch.size[idx],
                    None if tid is None else tid[idx],
                    clock[idx],
                )
        if int(bounds[-1]) > self._boundary:
            self._boundary = int(bounds[-1])
            for manager in self.managers.values():
                closed += manager.on_heartbeat(last)
        self._emit(closed)

    def _emit(self, closed: list[Bar]) -> None:
        """Closed bars -> streaming indicators, rows and snapshots."""
        for bar in closed:
            ind = self.indicators[bar.symbol]
            ind.update_bar(bar)
            values = ind.values()
            row = msgspec.structs.asdict(bar)
            row.update(values)
            self.rows[bar.symbol].append(row)
            self.snapshots.append(Snapshot(bar, values, {}))

    def drain_snapshots(self) -> list[Snapshot]:
        """The bars closed since the last call, each with its indicator values."""
        out, self.snapshots = self.snapshots, []
        return out

    def rejected(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for manager in self.managers.values():
            for reason, n in manager.rejected.items():
                total[reason.value] += n
        return total


def start_run_dir(cfg: Config, run_id: str | None) -> tuple[str, Path]:
    """runs/<run-id>/ with the run's config.json (run id: a UTC timestamp unless given)."""
    run_id = run_id or dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(cfg.store.runs_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_bytes(msgspec.json.format(msgspec.json.encode(cfg), indent=2))
    return run_id, run_dir


def check_paper_config(cfg: Config) -> None:
    """What a paper run cannot do yet, refused before anything starts."""
    if cfg.execution.fill_mode == "tick":
        raise NotImplementedError(
            'execution.fill_mode = "tick" is not wired into `scalper run` yet; use "bar" here '
            "(scalper backtest supports tick mode)"
        )


def run(
    cfg: Config, config_path: str | None = None, run_id: str | None = None, progress: bool = True
) -> dict:
    """Replay the configured feed through the pipeline in THIS process (no Ray); write
    runs/<id>/ and return the summary. `actors.runtime.run_paper` is the same on Ray actors."""
    from scalper.feeds import make_feed
    from scalper.store import BarStore
    from scalper.trading import TradingSession

    feed = make_feed(cfg)  # a bad file or feed fails here, before anything is written
    check_paper_config(cfg)
    run_id, run_dir = start_run_dir(cfg, run_id)
    pipe = MarketDataPipeline(cfg)
    from scalper.live_gate import configured_gate

    session = TradingSession(cfg, gate=configured_gate(cfg))
    t0 = time.perf_counter()
    first_event_ns: int | None = None
    bar_count = 0
    total = len(feed) if hasattr(feed, "__len__") else None
    interrupted = False
    with _progress(progress, total) as advance:
        on_event = pipe.on_event
        try:
            for event in feed:
                if first_event_ns is None and type(event) is Heartbeat:
                    first_event_ns = event.ts
                closed = on_event(event)
                if type(event) is not Heartbeat:
                    advance(len(event), bar_count, len(session.trades))
                elif closed:
                    bar_count += len(closed)
                    trade_minutes(session, pipe.drain_snapshots())
        except KeyboardInterrupt:  # as on Ray: the minutes already closed are kept and written
            interrupted = True
            log.warning("Ctrl-C: the feed stops here; writing the run (Ctrl-C again to abort)")
    elapsed = time.perf_counter() - t0
    market = market_part(pipe, cfg, BarStore(str(run_dir / "bars")))
    trading = write_trading(session.execution, session.risk.state, run_dir, cfg, elapsed)
    return write_summary(
        run_dir,
        cfg,
        [market],
        trading,
        run_id=run_id,
        config_path=config_path,
        first_event_ns=first_event_ns,
        elapsed=elapsed,
        extra={"interrupted": interrupted},
    )


def market_part(pipe: MarketDataPipeline, cfg: Config, store: BarStore | None = None) -> dict[str, Any]:
    """A pipeline's figures and its bars with indicators (bars not yet stored go to `store`)."""
    import pandas as pd

    symbols: dict[str, Any] = {}
    frames = []
    for sym, rows in pipe.rows.items():
        df = pd.DataFrame(rows)
        info: dict[str, Any] = {"bars": len(df), **pipe.managers[sym].stats()}
        if len(df):
            if store is not None:
                store.append(sym, df.rename(columns={"ts": "timestamp"}).drop(columns=["symbol"]))
            last = df.iloc[-1]
            info["first_bar"] = _iso(int(df["ts"].iloc[0]))
            info["last_bar"] = _iso(int(last["ts"]))
            info["last_close"] = float(last["close"])
            ind = pipe.indicators[sym]
            info["indicators_ready"] = ind.all_ready
            # every indicator has a value AND has seen warmup_bars of history (EMA-200 settled)
            info["warmed_up"] = ind.all_ready and ind.bars_seen >= cfg.candles.warmup_bars
            info["last_indicators"] = {k: (None if v != v else round(v, 6)) for k, v in ind.values().items()}
            frames.append(df)
        symbols[sym] = info
    return {
        "symbols": symbols,
        "frames": frames,
        "ticks_in": pipe.ticks_in,
        "bars_in": pipe.bars_in,
        "rejected": dict(pipe.rejected()),
        "unknown_symbol_ticks": pipe.unknown_symbol_ticks,
        "last_heartbeat": pipe.last_heartbeat,
    }


def write_summary(
    run_dir: Path,
    cfg: Config,
    parts: list[dict[str, Any]],
    trading: dict[str, Any],
    *,
    run_id: str,
    config_path: str | None,
    first_event_ns: int | None,
    elapsed: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """bars_with_indicators.parquet and summary.json from the market parts (one per candle
    shard, or the one in-process pipeline) and the trading summary; returns the summary."""
    import pandas as pd

    from scalper.execution.live import run_mode

    frames = [f for part in parts for f in part["frames"]]
    if frames:
        out = pd.concat(frames, ignore_index=True).rename(columns={"ts": "timestamp"})
        out["timestamp"] = pd.to_datetime(out["timestamp"], unit="ns", utc=True)
        out.to_parquet(run_dir / "bars_with_indicators.parquet", index=False)
    rejected: Counter[str] = Counter()
    for part in parts:
        rejected.update(part["rejected"])
    symbols = {sym: info for part in parts for sym, info in part["symbols"].items()}
    ticks_in = sum(part["ticks_in"] for part in parts)
    last = max((p["last_heartbeat"] for p in parts if p["last_heartbeat"] is not None), default=None)
    summary = {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "mode": run_mode(cfg),  # paper, dry-run, sandbox or live
        **(extra or {}),
        "trading": trading,
        "feed": cfg.feed.kind,
        "config": config_path,
        "ticks_in": ticks_in,
        "bars_in": sum(part["bars_in"] for part in parts),
        "bars_out": sum(info["bars"] for info in symbols.values()),
        "warmup_bars": cfg.candles.warmup_bars,
        "rejected": dict(rejected),
        "unknown_symbol_ticks": sum(part["unknown_symbol_ticks"] for part in parts),
        "event_time_start": _iso(first_event_ns) if first_event_ns else None,
        "event_time_end": _iso(last) if last else None,
        "wall_seconds": round(elapsed, 3),
        "ticks_per_second": round(ticks_in / elapsed) if elapsed > 0 else None,
        "symbols": {sym: symbols[sym] for sym in cfg.symbols if sym in symbols},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def by_minute(snaps: list[Snapshot]) -> list[list[Snapshot]]:
    """Closed bars (any symbols, any minutes) grouped by minute, in time order."""
    groups: dict[int, list[Snapshot]] = {}
    for snap in snaps:
        groups.setdefault(snap.bar.ts, []).append(snap)
    return [groups[t] for t in sorted(groups)]


def trade_minutes(session: TradingSession, snaps: list[Snapshot]) -> None:
    """Hand closed bars (with their indicators) to the trading session one minute at a time."""
    for minute in by_minute(snaps):
        session.on_snapshots(minute)


def write_trading(execution: Any, risk_state: Any, run_dir: Path, cfg: Config, seconds: float) -> dict:
    """trades, orders, signals, equity, summary.json and ledger.sqlite of a paper run from its
    ExecutionService and the RiskManager's state (what the actors hold at the end)."""
    from scalper import backtest as bt

    result = execution.result(seconds)
    config_json = msgspec.json.format(msgspec.json.encode(cfg), indent=2)
    # the ledger first: it is what --resume and verify rebuild from, so a failure writing the
    # other files must not lose it
    bt.write_ledger(execution, result, str(run_dir / "ledger.sqlite"), config_json.decode(), risk_state)
    return bt.write_run(result, str(run_dir), config_json)


def format_summary(summary: dict) -> str:
    """The lines `scalper run` prints at the end (every figure is also in summary.json)."""
    from scalper.report import pnl_line

    lines = [
        f"run {summary['run_id']}: {summary['feed']} feed, {summary['event_time_start']} .. {summary['event_time_end']}",
        f"  ticks in {summary['ticks_in']:,}, bars out {summary['bars_out']:,}, "
        f"rejected {sum(summary['rejected'].values()):,}, "
        f"{summary['wall_seconds']:.2f} s wall ({summary['ticks_per_second'] or 0:,} ticks/s)",
    ]
    for sym, info in summary["symbols"].items():
        lines.append(
            f"  {sym}: {info['bars']:,} bars"
            + (
                f", last close {info['last_close']}, indicators ready: {info['indicators_ready']}, "
                f"warmed up ({summary['warmup_bars']} bars): {info['warmed_up']}"
                if info["bars"]
                else ""
            )
        )
        for name, value in (info.get("last_indicators") or {}).items():
            lines.append(f"      {name:>14} = {value}")
    rt = summary.get("runtime")
    if rt:
        lines.append(
            f"  ray {rt['ray']}: {len(rt['shards'])} candle shard(s), {rt['minutes_traded']:,} minutes traded, "
            f"{rt['actor_calls']:,} actor calls, restarts: shards {rt['shard_restarts']}, "
            f"trading service {rt['trading_service_restarts']}"
            + (", interrupted (Ctrl-C)" if rt["interrupted"] else "")
        )
    t = summary.get("trading")
    if t:
        o = t["overall"]
        refused = ", ".join(f"{k} {v:,}" for k, v in t["signals_refused"].items()) or "none"
        lines.append(
            f"  {summary.get('mode', 'paper')} trading: signals {t['signals']:,} (approved {t['signals_approved']:,}; refused {refused}), "
            f"{pnl_line(t)}, max drawdown {o['max_drawdown_pct']:.2f}%, trade fingerprint {t['trade_fingerprint'][:16]}"
        )
    if summary.get("interrupted"):
        lines.append("  interrupted (Ctrl-C): the minutes closed before it were traded and written")
    state = ", state/" if rt else ""  # the actors' recovery state (Ray runs only)
    lines.append(
        f"  files: {summary['run_dir']}/ (summary.json, trades.csv, signals.parquet, orders.parquet, "
        f"equity.parquet, ledger.sqlite, bars_with_indicators.parquet, bars/{state}, config.json)"
    )
    return "\n".join(lines)


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat().replace("+00:00", "Z")


class _progress:
    """A rich progress bar over rows consumed (silent when disabled or not a terminal)."""

    def __init__(self, enabled: bool, total: int | None):
        self.enabled = enabled
        self.total = total
        self._bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda n, bars, trades=0: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows, {task.fields[bars]} bars, {task.fields[trades]} trades"),
            TimeElapsedColumn(),
            transient=True,
        )
        self._bar.start()
        task = self._bar.add_task("replay", total=self.total, bars=0, trades=0)
        last = [0.0]

        def advance(n: int, bars: int, trades: int = 0) -> None:
            self._bar.advance(task, n)
            now = time.monotonic()
            if now - last[0] > 0.2:
                self._bar.update(task, bars=bars, trades=trades)
                last[0] = now

        return advance

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False
