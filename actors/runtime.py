"""Paper trading on Ray: every component an actor, named in the `scalper` namespace.

    feed ──event batches (per ~100 ms, and at each minute boundary)──> candles-shard-N
         <─closed bars + indicators (Snapshots)──────────────────────   (MarketDataPipeline)
    then, per closed minute, pipelined (the feed never waits for the answers):
         trading-service.on_minute(bars) ─> MinuteReport ─┐
         strategy-<name>.on_snapshots(snaps) ─> candidates ┴> risk-manager.decide ─> decisions
         trading-service.submit(decisions)  (orders; bar close -> order latency measured here)

The actors only host the domain objects of `scalper.trading` (ExecutionService,
StrategyRunner, RiskDesk) and `scalper.pipeline` (MarketDataPipeline); the in-process
`TradingSession` composes the same objects, so a Ray run gives the backtest's trades.

Order: Ray retries the calls a restarted actor had pending in no guaranteed order, so each
per-minute call names the minute before it. The risk manager and the trading service apply
calls strictly in that order (a call that comes early waits for its predecessor; a call
already applied returns its saved answer); a strategy actor that is out of sequence refills
its windows from the feed.

Recovery (every actor but the feed restarts, and Ray retries the call it died in):
- a candle shard persists its closed bars to the run's bar store (every ~2 s in the background, and at the end)
  with the boundary they cover; after a restart it reloads them (CandleManagers and
  indicators) and asks the feed to resend the events it kept since that boundary, so bars
  after the restart are neither duplicated nor missing;
- a strategy actor refills its windows with the feed's recent bars;
- the risk manager journals its state (HALTED included) and decisions after each minute
  (SQLite); a retried minute returns the journaled answer;
- the trading service journals every call before acting on it (write-ahead, SQLite) and
  rebuilds by replaying the journal: its orders, fills and positions come back exactly and
  no order is sent twice (a retried call that was already journaled is not applied again).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import ray

from scalper.backtest import MIN
from scalper.candles import closed_boundary
from scalper.config import Config
from scalper.event_batch import EventBatch, EventBatchBuilder
from scalper.live_gate import FEATURE_HISTORY, LiveGate
from scalper.pipeline import MarketDataPipeline, by_minute, market_part
from scalper.risk import RiskState
from scalper.trading import Candidate, Decision, ExecutionService, MinuteReport, RiskDesk, StrategyRunner
from scalper.types import Bar, FeedEvent, Heartbeat, Snapshot, TickBatch

log = logging.getLogger(__name__)

NAMESPACE = "scalper"
FEED = "feed"
RISK = "risk-manager"
SERVICE = "trading-service"
# minutes the feed may run ahead of the trading service before it waits
MAX_MINUTES_IN_FLIGHT = 64
# a feed batch goes to the shards at least this often (wall clock) even within a minute
BATCH_S = 0.1
# a shard writes its new bars to the bar store at most this often (and at the end), in the
# background; after a restart the feed resends the events since the last write
PERSIST_S = 2.0

_RESTART = {"max_restarts": -1, "max_task_retries": -1}


def shard_name(i: int) -> str:
    return f"candles-shard-{i}"


def strategy_name(name: str) -> str:
    return f"strategy-{name.replace('_', '-')}"


def shard_symbols(symbols: Sequence[str], shards: int) -> list[list[str]]:
    """Round-robin symbols over `shards` groups (empty groups dropped)."""
    groups: list[list[str]] = [[] for _ in range(max(1, shards))]
    for i, sym in enumerate(symbols):
        groups[i % len(groups)].append(sym)
    return [g for g in groups if g]


def shard_count(cfg: Config) -> int:
    """`ray.candle_shards`, or with "auto" one shard per CPU of the cluster (at most one per symbol)."""
    n = cfg.ray.candle_shards
    if n == "auto":
        n = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return max(1, min(int(n), len(cfg.symbols)))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _was_restarted() -> bool:
    import warnings

    with warnings.catch_warnings():  # Ray 2.60 warns about its own actor_id use in here
        warnings.simplefilter("ignore", DeprecationWarning)
        return ray.get_runtime_context().was_current_actor_reconstructed


# Calls wait this long for their predecessor before failing loudly (a lost call is a bug).
ORDER_TIMEOUT_S = 300.0
# calls a sequenced actor may hold at once: every minute in flight, twice (service) + spare
SEQUENCED_CONCURRENCY = 2 * MAX_MINUTES_IN_FLIGHT + 8


class InOrder:
    """Applies a threaded actor's calls in the caller's order, whatever order Ray delivers
    them in, and each at most once: call `key` runs only once `after` was the last applied;
    a key already applied returns its saved answer (the newest `keep` are kept)."""

    def __init__(self, last: Any = None, keep: int = SEQUENCED_CONCURRENCY):
        self.last = last
        self.keep = keep
        self._done: dict[Any, Any] = {}
        self.lock = threading.Condition()  # held while a call is applied

    def remember(self, key: Any, answer: Any) -> None:
        self._done[key] = answer
        self.last = key
        while len(self._done) > self.keep:
            del self._done[next(iter(self._done))]

    def run(self, key: Any, after: Any, apply: Callable[[], Any]) -> Any:
        with self.lock:
            ready = self.lock.wait_for(lambda: key in self._done or self.last == after, ORDER_TIMEOUT_S)
            if key in self._done:
                return self._done[key]
            if not ready:
                raise RuntimeError(
                    f"call {key!r} waited {ORDER_TIMEOUT_S:.0f} s for {after!r} (last applied {self.last!r})"
                )
            answer = apply()
            self.remember(key, answer)
            self.lock.notify_all()
            return answer

    def now(self, key: Any, apply: Callable[[], Any]) -> Any:
        """A call with no predecessor (the end of a run): applied after whatever came before."""
        return self.run(key, self.last, apply)


# ------------------------------------------------------------------------------ candles


class ShardOutput(msgspec.Struct):
    snapshots: list[Snapshot]
    persisted_through: int | None = None  # every bar before this boundary is in the store
    need_replay: bool = False  # restarted: resend the kept events (nothing was processed)


# Messages that carry a minute's snapshots cross as msgpack bytes: msgspec encodes them ~6x
# faster than Ray's pickling of the structs, and the feed encodes a minute once for all
# the strategies.
_encode = msgspec.msgpack.encode


def _decode_output(raw: bytes) -> ShardOutput:
    return msgspec.msgpack.decode(raw, type=ShardOutput)


def _decode_snapshots(raw: bytes) -> list[Snapshot]:
    return msgspec.msgpack.decode(raw, type=list[Snapshot])


@ray.remote(num_cpus=0, **_RESTART)
class CandleShard:
    """The CandleManagers and streaming indicators of a group of symbols."""

    def __init__(
        self, cfg: Config, symbols: list[str], name: str, run_dir: str, persist_s: float = PERSIST_S
    ):
        from actors.metrics import ShardMetrics
        from scalper.store import BarStore

        self.name = name
        self.cfg = cfg
        self.pipe = MarketDataPipeline(msgspec.structs.replace(cfg, symbols=symbols))
        self.store = BarStore(str(Path(run_dir) / "bars"))
        self._state_path = Path(run_dir) / "state" / f"{name}.json"
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        self.persisted = {s: 0 for s in symbols}
        self.persisted_through: int | None = None
        self._last_persist = time.monotonic()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-store")
        self._writing: Future | None = None
        self._rejected_seen: dict[str, int] = {}
        self.metrics = ShardMetrics(name)
        self.restarts = 0
        self.restored_bars = 0
        self.persist_s = persist_s
        self._restored: list[Snapshot] | None = None
        if _was_restarted():
            self._restored = self._restore()

    def _restore(self) -> list[Snapshot]:
        """Bars of the run so far from the store: CandleManagers and indicators pick up there."""
        snaps: list[Snapshot] = []
        if self._state_path.exists():
            self.persisted_through = msgspec.json.decode(self._state_path.read_bytes())["persisted_through"]
            snaps = self.pipe.restore(self.store, self.persisted_through)
        self.persisted = {sym: len(rows) for sym, rows in self.pipe.rows.items()}
        self.restarts += 1
        self.restored_bars = len(snaps)
        log.warning(
            "%s restarted: %d bars reloaded from the store (through %s)",
            self.name,
            len(snaps),
            self.persisted_through,
        )
        return snaps

    def on_events(
        self, batches: list[EventBatch], delivered_through: int | None, sent: float, replay: bool = False
    ) -> bytes:
        """Feed events in; the bars they closed out (those after `delivered_through`), as an
        encoded ShardOutput."""
        out: list[Snapshot] = []
        ticks = sum(b.ticks() for b in batches)
        if self._restored is not None:
            if not replay:
                return _encode(ShardOutput([], self.persisted_through, need_replay=True))
            # bars stored before the crash but never delivered, then only ticks after the store
            out = [s for s in self._restored if delivered_through is None or s.bar.ts > delivered_through]
            self._restored = None
            events: Iterator[FeedEvent] = (e for b in batches for e in b.events())
            if self.persisted_through is not None:
                events = (_ticks_from(e, self.persisted_through) for e in events)
            for event in events:
                self.pipe.on_event(event)
        else:
            for batch in batches:
                self.pipe.on_batch_events(batch)
        snaps = self.pipe.drain_snapshots()
        if delivered_through is not None:
            snaps = [s for s in snaps if s.bar.ts > delivered_through]
        out += snaps
        self._count(ticks, len(snaps), sent)
        if time.monotonic() - self._last_persist >= self.persist_s:
            self.persist()
        return _encode(ShardOutput(out, self.persisted_through))

    def _count(self, ticks: int, bars: int, sent: float) -> None:
        m = self.metrics
        if ticks:
            m.ticks_in.inc(ticks)
        if bars:
            m.bars.inc(bars)
        for reason, n in self.pipe.rejected().items():
            new = n - self._rejected_seen.get(reason, 0)
            if new > 0:
                m.rejected.inc(new, tags={"reason": reason})
                self._rejected_seen[reason] = n
        m.lag.set(max(0.0, time.time() - sent))

    def persist(self, wait: bool = False) -> int | None:
        """Write the new bars to the bar store, then the boundary they cover (atomically), on
        the shard's writer thread, off the call path (`wait`: here, and wait for it). Returns
        the boundary stored so far: the feed may forget the events before it."""
        if self._writing is not None:
            if not (wait or self._writing.done()):
                return self.persisted_through  # the previous write is still going
            self._writing.result()  # (a failed write raises here)
            self._writing = None
        new: dict[str, list[dict]] = {}
        for sym, rows in self.pipe.rows.items():
            k = self.persisted[sym]
            if k < len(rows):
                new[sym] = rows[k:]
                self.persisted[sym] = len(rows)
        boundary = self.pipe.closed_through
        self._last_persist = time.monotonic()
        if wait:
            self._write(new, boundary)
        else:
            self._writing = self._writer.submit(self._write, new, boundary)
        return self.persisted_through

    def _write(self, new: dict[str, list[dict]], boundary: int | None) -> None:
        import pandas as pd

        for sym, rows in new.items():
            df = pd.DataFrame(rows).rename(columns={"ts": "timestamp"}).drop(columns=["symbol"])
            self.store.append(sym, df)
        if boundary is not None:
            _atomic_write(self._state_path, msgspec.json.encode({"persisted_through": boundary}))
            self.persisted_through = boundary

    def finish(self) -> dict[str, Any]:
        """Store what is left; the shard's part of the run directory."""
        self.persist(wait=True)
        part = market_part(self.pipe, self.cfg)
        part["restarts"] = self.restarts
        part["restored_bars"] = self.restored_bars
        return part

    def ping(self) -> str:
        return self.name


def _ticks_from(event: FeedEvent, ts: int) -> FeedEvent:
    """The event without its ticks before `ts` (already in stored bars)."""
    if type(event) is not TickBatch or not len(event) or event.ts[0] >= ts:
        return event
    keep = event.ts >= ts
    tid = event.trade_id[keep] if event.trade_id is not None else None
    return TickBatch(event.symbol, event.ts[keep], event.price[keep], event.size[keep], tid)


# ------------------------------------------------------------------------------ strategies


@ray.remote(num_cpus=0, **_RESTART)
class StrategyActor:
    """One strategy over every symbol's recent bars."""

    def __init__(self, cfg: Config, strategy: str):
        from actors.metrics import StrategyMetrics

        self.strategy = strategy
        self.runner = StrategyRunner(cfg, [strategy])
        self.metrics = StrategyMetrics(strategy)
        self._refill = _was_restarted()

    def on_snapshots(self, payload: bytes, previous: int | None = None) -> list[Candidate]:
        """One closed minute (encoded snapshots); `previous`: the minute dispatched before it."""
        snaps = _decode_snapshots(payload)
        if not snaps:
            return []
        if self._refill or not self.runner.follows(previous):  # restarted, or minutes resent out of order
            feed = ray.get_actor(FEED, namespace=NAMESPACE)
            self.runner.remember(ray.get(feed.recent.remote(snaps[0].bar.ts)))
            if self._refill:
                log.warning("%s restarted: windows refilled from the feed", strategy_name(self.strategy))
            self._refill = False
        out = self.runner.on_snapshots(snaps)
        if out:
            self.metrics.signals.inc(len(out))
        return out


# ------------------------------------------------------------------------------ risk


class _Journal:
    """Write-ahead journal of an actor's calls (SQLite, WAL): the trading service, the risk manager."""

    def __init__(self, path: Path):
        # used by the thread applying a call, one at a time (InOrder serialises them)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS calls (seq INTEGER PRIMARY KEY, kind TEXT, minute INTEGER, payload BLOB)"
        )

    def append(self, kind: str, minute: int, payload: bytes) -> None:
        self.db.execute("INSERT INTO calls (kind, minute, payload) VALUES (?, ?, ?)", (kind, minute, payload))

    def entries(self, newest: int | None = None) -> list[tuple[str, int, bytes]]:
        """The journaled calls in order (only the `newest` ones if given)."""
        if newest is None:
            return self.db.execute("SELECT kind, minute, payload FROM calls ORDER BY seq").fetchall()
        rows = self.db.execute(
            "SELECT kind, minute, payload FROM calls ORDER BY seq DESC LIMIT ?", (newest,)
        ).fetchall()
        return rows[::-1]


class _RiskJournal(msgspec.Struct):
    state: RiskState
    decisions: list[Decision]


@ray.remote(num_cpus=0, max_concurrency=SEQUENCED_CONCURRENCY, **_RESTART)
class RiskActor:
    """The central RiskManager: limits, halts, sizing. Its state survives a restart."""

    def __init__(self, cfg: Config, run_dir: str):
        from actors.metrics import RiskMetrics

        (Path(run_dir) / "state").mkdir(parents=True, exist_ok=True)
        self.journal = _Journal(Path(run_dir) / "state" / "risk-manager.sqlite")
        self.order = InOrder()
        state = None
        for _, minute, payload in self.journal.entries(newest=MAX_MINUTES_IN_FLIGHT + 2):
            entry = msgspec.msgpack.decode(payload, type=_RiskJournal)
            self.order.remember(minute, entry.decisions)
            state = entry.state
        if state is None and cfg.feed.kind == "ccxt" and cfg.feed.ccxt.resume_ledger:
            # a resumed live run: daily loss, halt and cooldowns carry over from the earlier run
            from scalper.ledger import Ledger

            state = Ledger(cfg.feed.ccxt.resume_ledger).load_risk_state(RiskState)
        gate = None
        if cfg.ml.enabled:  # the model app on Serve (PaperRuntime deployed it)
            from serve.client import served_gate

            gate = LiveGate(cfg, lambda: served_gate(cfg))
            gate.warm()
        self.desk = RiskDesk(cfg, state, gate=gate)
        self._refill = self.desk.gate is not None and _was_restarted()
        self.metrics = RiskMetrics()

    def decide(
        self, report: MinuteReport, previous: int | None, payload: bytes, *candidates: list[Candidate]
    ) -> list[Decision]:
        """One minute's decisions, after minute `previous`'s (`payload`: its encoded snapshots)."""
        return self.order.run(report.ts, previous, lambda: self._decide(report, payload, candidates))

    def _decide(
        self, report: MinuteReport, payload: bytes, candidates: Sequence[list[Candidate]]
    ) -> list[Decision]:
        snaps: list[Snapshot] = []
        if self.desk.gate is not None:  # the models read recent bars: keep every minute's
            if self._refill:  # restarted: the model gate's windows come back from the feed
                feed = ray.get_actor(FEED, namespace=NAMESPACE)
                self.desk.gate.remember(ray.get(feed.recent.remote(report.ts)))
                self._refill = False
            snaps = _decode_snapshots(payload)
        out = self.desk.decide(report, [c for group in candidates for c in group], snaps)
        self.journal.append(
            "decide", report.ts, msgspec.msgpack.encode(_RiskJournal(self.desk.risk.state, out))
        )
        for d in out:
            self.metrics.decisions.inc(tags={"decision": d.reason if not d.approved else "approved"})
        self.metrics.halted.set(1.0 if self.desk.risk.state.halted else 0.0)
        return out

    def state(self) -> RiskState:
        with self.order.lock:
            return self.desk.risk.state


# ------------------------------------------------------------------------------ orders


@ray.remote(num_cpus=0, max_concurrency=SEQUENCED_CONCURRENCY, **_RESTART)
class TradingService:
    """Orders, brackets, the paper broker, the portfolio: the only actor that places orders."""

    def __init__(self, cfg: Config, run_dir: str):
        from actors.metrics import ServiceMetrics
        from scalper.execution.live import make_execution

        self.cfg = cfg
        self.execution = make_execution(cfg)
        self.metrics = ServiceMetrics()
        (Path(run_dir) / "state").mkdir(parents=True, exist_ok=True)
        self.journal = _Journal(Path(run_dir) / "state" / "trading-service.sqlite")
        self.order = InOrder(last=("submit", None))  # per minute: on_minute, then submit
        self.replayed = 0
        self.restarts = 0
        self.latencies: list[float] = []  # bar close -> orders submitted, seconds, per minute
        self.latency_minutes: list[int] = []  # ... and the minute of each
        if _was_restarted():
            self._rebuild()

    def _rebuild(self) -> None:
        """Replay the journal: the same calls in the same order give the same state."""
        for kind, minute, payload in self.journal.entries():
            self.order.remember((kind, minute), self._apply(kind, payload))
            self.replayed += 1
        self.restarts += 1
        log.warning("trading-service restarted: %d journaled calls replayed", self.replayed)

    def _apply(self, kind: str, payload: bytes) -> Any:
        ex = self.execution
        if kind == "minute":
            return ex.on_minute(msgspec.msgpack.decode(payload, type=list[Bar]))
        if kind == "submit":
            return ex.submit(msgspec.msgpack.decode(payload, type=list[Decision]))
        if kind == "cancel_all":
            return ex.orders.cancel_all(msgspec.msgpack.decode(payload, type=int), "shutdown")
        raise ValueError(f"unknown journal entry {kind!r}")

    def _call(self, kind: str, minute: int, value: Any) -> Any:
        """Journal the call (before acting on it), then apply it as a replay would."""
        payload = msgspec.msgpack.encode(value)
        self.journal.append(kind, minute, payload)
        events_before = len(self.execution.orders.events)
        fills_before = len(self.execution.fills)
        out = self._apply(kind, payload)
        self._observe(events_before, fills_before)
        return out

    def _observe(self, events_before: int, fills_before: int) -> None:
        ex, m = self.execution, self.metrics
        for ev in ex.orders.events[events_before:]:
            m.orders.inc(tags={"state": str(ev.to_status)})
        if len(ex.fills) > fills_before:
            m.fills.inc(len(ex.fills) - fills_before)
        m.open_positions.set(sum(1 for p in ex.portfolio.positions.values() if p.quantity))

    def on_minute(self, bars: list[Bar], previous: int | None) -> MinuteReport:
        """Fills, expiries and marks of one closed minute, after minute `previous`'s orders."""
        t = bars[0].ts
        report = self.order.run(("minute", t), ("submit", previous), lambda: self._call("minute", t, bars))
        self.metrics.equity.set(report.equity)
        return report

    def submit(self, decisions: list[Decision], minute: int, closed_at: float) -> int:
        """Orders of one minute's decisions; `closed_at`: wall time the feed saw the bar close."""
        records = self.order.run(
            ("submit", minute), ("minute", minute), lambda: self._call("submit", minute, decisions)
        )
        latency = max(0.0, time.time() - closed_at)
        self.metrics.latency.observe(latency)
        self.latencies.append(latency)
        self.latency_minutes.append(minute)
        return len(records)

    def cancel_all(self, ts: int) -> int:
        """Cancel every working order (the end of a run, or Ctrl-C)."""
        return len(self.order.now(("cancel_all", ts), lambda: self._call("cancel_all", ts, ts)))

    def progress(self) -> dict[str, Any]:
        with self.order.lock:
            return self._progress()

    def _progress(self) -> dict[str, Any]:
        ex = self.execution
        pnl = sum(t.pnl for t in ex.trades)
        return {
            "signals": len(ex.records),
            "orders": len(ex.orders.orders),
            "fills": len(ex.fills),
            "trades": len(ex.trades),
            "open_positions": sum(1 for p in ex.portfolio.positions.values() if p.quantity),
            "net_pnl": pnl,
            "restarts": self.restarts,
        }

    def result(self) -> ExecutionService:
        return self.execution

    def latency_samples(self) -> tuple[list[float], list[int]]:
        """Bar close -> orders submitted (seconds) per traded minute, and those minutes."""
        return self.latencies, self.latency_minutes


# ------------------------------------------------------------------------------ feed


@ray.remote(num_cpus=0, max_concurrency=4)
class FeedActor:
    """The market data source and the conductor of each closed minute (see the module doc)."""

    def __init__(
        self,
        cfg: Config,
        groups: list[list[str]],
        shards: list,
        strategies: list,
        risk,
        service,
        lookback: int,
    ):
        self.cfg = cfg
        self.groups = groups
        self.shards = shards
        self.strategies = strategies
        self.risk = risk
        self.service = service
        self._stop = threading.Event()
        self._owner = {sym: i for i, g in enumerate(groups) for sym in g}
        self._recent: dict[str, deque] = {
            s: deque(maxlen=lookback + MAX_MINUTES_IN_FLIGHT + 2) for s in cfg.symbols
        }
        self._lock = threading.Lock()
        self._previous: int | None = None  # the last minute dispatched to the strategies
        self.stats: dict[str, Any] = {
            "ticks": 0,
            "bars": 0,
            "minutes": 0,
            "actor_calls": 0,
            "shard_replays": 0,
            "first_event_ns": None,
            "clock_ns": None,
        }

    def stop(self) -> None:
        self._stop.set()

    def progress(self) -> dict[str, Any]:
        return dict(self.stats)

    def recent(self, before_ts: int) -> list[Snapshot]:
        """The newest bars (with indicators) the feed dispatched before minute `before_ts`."""
        with self._lock:
            return [s for q in self._recent.values() for s in q if s.bar.ts < before_ts]

    def run(self, max_minutes: int | None = None) -> dict[str, Any]:
        """Play the feed to its end (or `stop`). `max_minutes`: stop once that many minutes
        were traded — decided here, between two minutes, so the same data and limit always
        trade the same minutes (all the minutes one event closes are traded together)."""
        from scalper.feeds import make_feed

        self._max_minutes = max_minutes

        feed = make_feed(self.cfg)
        n = len(self.shards)
        pending = [EventBatchBuilder() for _ in range(n)]
        dirty = [False] * n
        self._kept: list[list[tuple[int, EventBatch]]] = [[] for _ in range(n)]  # (boundary, batch)
        self._delivered: list[int | None] = [None] * n
        self._out: tuple[list, float] | None = None  # the shard calls of the last send, not yet read
        self._inflight: deque = deque()
        delay = self.cfg.candles.boundary_delay_ms * 1_000_000
        boundary = -(2**62)
        last_send = time.monotonic()
        st = self.stats
        owner = self._owner
        for event in feed:
            if self._stop.is_set():
                log.warning("feed stopped")
                break
            if type(event) is Heartbeat:
                if st["first_event_ns"] is None:
                    st["first_event_ns"] = event.ts
                st["clock_ns"] = event.ts
                b = closed_boundary(event.ts, delay)
                crossed = b > boundary
                for i, buf in enumerate(pending):
                    # a shard needs a heartbeat only as the clock of its ticks or to close a minute
                    if dirty[i] or crossed:
                        buf.add(event)
                        dirty[i] = False
                if crossed:
                    boundary = b
                if crossed or (time.monotonic() - last_send >= BATCH_S and any(pending)):
                    self._send(pending, boundary, wait=crossed)
                    last_send = time.monotonic()
            else:
                i = owner.get(event.symbol, 0)
                pending[i].add(event)
                dirty[i] = True
                if type(event) is TickBatch:
                    st["ticks"] += len(event)
        self._send(pending, boundary, wait=True)
        ray.get(list(self._inflight))
        return dict(st)

    def _send(self, pending: list[EventBatchBuilder], boundary: int, wait: bool) -> None:
        """Ship the buffered events to their shards. One call per shard is in flight: the
        previous send's answers are read (and their minutes traded) first; with `wait` (a
        minute just closed) this send's answers are read at once too."""
        self._collect()
        now = time.time()
        calls = []
        for i, buf in enumerate(pending):
            if buf:
                batch = buf.build()
                self._kept[i].append((boundary, batch))
                calls.append((i, self.shards[i].on_events.remote([batch], self._delivered[i], now)))
        if calls:
            self.stats["actor_calls"] += len(calls)
            self._out = (calls, now)
            if wait:
                self._collect()

    def _collect(self) -> None:
        """Read the answers of the shard calls in flight; trade the minutes they closed."""
        if self._out is None:
            return
        calls, sent = self._out
        self._out = None
        snaps: list[Snapshot] = []
        kept, delivered = self._kept, self._delivered
        for (i, _), raw in zip(calls, ray.get([c[1] for c in calls]), strict=True):
            out = _decode_output(raw)
            if out.need_replay:  # the shard restarted: resend what it has not stored
                self.stats["shard_replays"] += 1
                resend = [batch for _, batch in kept[i]]
                out = _decode_output(
                    ray.get(self.shards[i].on_events.remote(resend, delivered[i], sent, True))
                )
                self.stats["actor_calls"] += 1
            if out.persisted_through is not None:  # events before the stored boundary are safe
                kept[i] = [(b, batch) for b, batch in kept[i] if b >= out.persisted_through]
            if out.snapshots:
                delivered[i] = max(s.bar.ts for s in out.snapshots)
            snaps += out.snapshots
        if snaps:
            self._trade(snaps, sent)

    def _trade(self, snaps: list[Snapshot], closed_at: float) -> None:
        rank = {s: k for k, s in enumerate(self.cfg.symbols)}
        for minute in by_minute(snaps):
            minute.sort(key=lambda s: rank.get(s.bar.symbol, len(rank)))
            t = minute[0].bar.ts
            with self._lock:
                for s in minute:
                    self._recent[s.bar.symbol].append(s)
            previous, self._previous = self._previous, t
            report = self.service.on_minute.remote([s.bar for s in minute], previous)
            payload = ray.put(_encode(minute))  # once for every strategy
            candidates = [st.on_snapshots.remote(payload, previous) for st in self.strategies]
            decisions = self.risk.decide.remote(report, previous, payload, *candidates)
            self._inflight.append(self.service.submit.remote(decisions, t, closed_at))
            self.stats["actor_calls"] += 3 + len(candidates)
            self.stats["minutes"] += 1
            self.stats["bars"] += len(minute)
            while len(self._inflight) > MAX_MINUTES_IN_FLIGHT:
                ray.get(self._inflight.popleft())
        if (
            self._max_minutes is not None
            and self.stats["minutes"] >= self._max_minutes
            and not self._stop.is_set()
        ):
            log.warning("feed stopped after %d minutes traded (--minutes)", self.stats["minutes"])
            self.stats["stopped_by_minutes"] = True
            self._stop.set()


# ------------------------------------------------------------------------------ driver


class PaperRuntime:
    """Starts the actors of one paper run and takes them down (the driver side)."""

    def __init__(self, cfg: Config, run_dir: Path, shards: int | None = None, persist_s: float = PERSIST_S):
        self.cfg = cfg
        self.run_dir = run_dir
        n = shards if shards is not None else shard_count(cfg)
        self.groups = shard_symbols(cfg.symbols, n)
        opts = {"namespace": NAMESPACE}
        rd = str(run_dir)
        self.shards = [
            CandleShard.options(name=shard_name(i), **opts).remote(cfg, group, shard_name(i), rd, persist_s)
            for i, group in enumerate(self.groups)
        ]
        names = [s.name for s in StrategyRunner(cfg).strategies]
        self.strategies = {
            name: StrategyActor.options(name=strategy_name(name), **opts).remote(cfg, name) for name in names
        }
        self.own_models = False
        if cfg.ml.enabled:  # the three models on Serve, before the risk manager that calls them
            from serve.models import deploy_models, models_running

            if models_running():  # e.g. `scalper serve` in another terminal: use (and keep) it
                log.info("models: using the running model app")
            else:
                log.info("models on Serve: %s", deploy_models(cfg, quiet=True))
                self.own_models = True
        self.risk = RiskActor.options(name=RISK, **opts).remote(cfg, rd)
        self.service = TradingService.options(name=SERVICE, **opts).remote(cfg, rd)
        lookback = max((s.lookback() for s in StrategyRunner(cfg).strategies), default=1)
        if cfg.ml.enabled:  # the risk manager's model gate refills from the feed's recent bars too
            lookback = max(lookback, FEATURE_HISTORY)
        self.feed = FeedActor.options(name=FEED, **opts).remote(
            cfg, self.groups, self.shards, list(self.strategies.values()), self.risk, self.service, lookback
        )

    def actors(self) -> dict[str, Any]:
        return {
            **{shard_name(i): a for i, a in enumerate(self.shards)},
            **{strategy_name(n): a for n, a in self.strategies.items()},
            RISK: self.risk,
            SERVICE: self.service,
            FEED: self.feed,
        }

    def shutdown(self) -> None:
        for actor in self.actors().values():
            ray.kill(actor, no_restart=True)
        if self.own_models:
            from serve.models import delete_models

            delete_models()


def run_paper_on_ray(
    cfg: Config,
    run_dir: Path,
    shards: int | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    poll_s: float = 0.25,
    persist_s: float = PERSIST_S,
    max_minutes: int | None = None,
) -> dict[str, Any]:
    """Run the configured feed through the actors until it ends (or Ctrl-C: the feed stops
    gracefully; or `max_minutes` traded); cancel working orders; return everything the run
    directory needs."""
    t0 = time.perf_counter()
    rt = PaperRuntime(cfg, run_dir, shards, persist_s)
    try:
        # every actor constructed before the first event: start-up is not trading latency
        ray.get([a.__ray_ready__.remote() for a in rt.actors().values()])
        log.info("%d actors ready in %.1f s", len(rt.actors()), time.perf_counter() - t0)
        run_ref = rt.feed.run.remote(max_minutes)
        interrupted = False
        while True:
            try:
                done, _ = ray.wait([run_ref], timeout=poll_s)
                if done:
                    break
                if on_progress is not None:
                    p, s = ray.get([rt.feed.progress.remote(), rt.service.progress.remote()])
                    on_progress({**p, **s})
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                log.warning("Ctrl-C: stopping the feed, then closing the run (Ctrl-C again to abort)")
                rt.feed.stop.remote()
        feed_stats = ray.get(run_ref)
        last = feed_stats.get("clock_ns") or 0
        canceled = ray.get(rt.service.cancel_all.remote(last - last % MIN + MIN))
        parts = ray.get([s.finish.remote() for s in rt.shards])
        execution, risk_state, progress, latencies = ray.get(
            [
                rt.service.result.remote(),
                rt.risk.state.remote(),
                rt.service.progress.remote(),
                rt.service.latency_samples.remote(),
            ]
        )
    finally:
        rt.shutdown()
    return {
        "feed": feed_stats,
        "parts": parts,
        "execution": execution,
        "risk_state": risk_state,
        "shards": rt.groups,
        "interrupted": interrupted,
        "canceled_at_end": canceled,
        "service_restarts": progress["restarts"],
        "latencies": latencies[0],
        "latency_minutes": latencies[1],
        "seconds": time.perf_counter() - t0,
    }
