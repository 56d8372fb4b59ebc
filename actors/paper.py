"""`scalper run --mode paper` on Ray: start or join a cluster, run the actors, write the run.

The run directory is the backtest's (trades, orders, signals, equity, ledger.sqlite,
summary.json) plus the market data of the candle shards (bars/, bars_with_indicators) and
the actors' recovery state (state/).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ray

from actors.backtests import ensure_ray
from actors.runtime import run_paper_on_ray
from scalper.config import Config
from scalper.pipeline import check_paper_config, start_run_dir, write_summary, write_trading

log = logging.getLogger(__name__)


def cluster_info() -> dict[str, Any]:
    """Where to watch the run: the dashboard URL and this node's Prometheus metrics endpoint."""
    import ray._private.worker as worker

    info: dict[str, Any] = {"dashboard": None, "metrics": None}
    try:
        url = worker.get_dashboard_url()
        if url:
            info["dashboard"] = url if "://" in url else f"http://{url}"
    except Exception:  # no dashboard (include_dashboard=False or not installed)
        pass
    node = getattr(worker, "_global_node", None)
    port = getattr(node, "metrics_export_port", None) if node is not None else None
    if port:
        info["metrics"] = f"http://{node.node_ip_address}:{port}/metrics"
    return info


def run_paper(
    cfg: Config,
    config_path: str | None = None,
    run_id: str | None = None,
    progress: bool = True,
    shards: int | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    stop_after_s: float | None = None,
    stop_after_minutes: int | None = None,
) -> dict[str, Any]:
    """The main job: paper trading through the Ray actors; returns the run's summary.

    `stop_after_s` (wall seconds) / `stop_after_minutes` (minutes traded) end the run as
    Ctrl-C does: the feed stops, working orders are canceled, the run directory is written."""
    from scalper.feeds import make_feed

    make_feed(cfg)  # a bad data file or feed fails here, before anything starts
    check_paper_config(cfg)
    t0 = time.perf_counter()
    ensure_ray(cfg)
    info = {**cluster_info(), "ray_start_seconds": round(time.perf_counter() - t0, 2)}
    run_id, run_dir = start_run_dir(cfg, run_id)
    info["run_dir"] = str(run_dir)
    if on_start is not None:
        on_start(info)
    mode = "live" if cfg.execution.broker == "ccxt" else ("dry-run" if cfg.feed.kind == "ccxt" else "paper")
    stop = _StopAfter(stop_after_s)
    with _Progress(progress, mode) as show:
        res = run_paper_on_ray(
            cfg, run_dir, shards, on_progress=stop.watching(show), max_minutes=stop_after_minutes
        )
    if res["feed"].get("stopped_by_minutes"):
        stop.reason = "minutes"
    elapsed = res["seconds"]
    trading = write_trading(res["execution"], res["risk_state"], run_dir, cfg, elapsed)
    feed = res["feed"]
    extra = {
        "runtime": {
            "ray": ray.__version__,
            "shards": res["shards"],
            "actor_calls": feed["actor_calls"],
            "minutes_traded": feed["minutes"],
            "shard_restarts": sum(p.get("restarts", 0) for p in res["parts"]),
            "shard_replays": feed["shard_replays"],
            "trading_service_restarts": res["service_restarts"],
            "interrupted": res["interrupted"],
            "orders_canceled_at_end": res["canceled_at_end"],
            "stopped_by": stop.reason,
            **info,
        }
    }
    return write_summary(
        run_dir,
        cfg,
        res["parts"],
        trading,
        run_id=run_id,
        config_path=config_path,
        first_event_ns=feed["first_event_ns"],
        elapsed=elapsed,
        extra=extra,
    )


class _StopAfter:
    """Ends a run after a wall-clock duration, from the driver's progress callback: the feed
    actor's `stop`, as Ctrl-C does. (A number of minutes is the feed's own `max_minutes`:
    exact, where a callback polling every 0.25 s overshot by a varying few.)"""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.t0 = time.monotonic()
        self.reason: str | None = None

    def watching(
        self, show: Callable[[dict[str, Any]], None] | None
    ) -> Callable[[dict[str, Any]], None] | None:
        if self.seconds is None:
            return show

        def on_progress(p: dict[str, Any]) -> None:
            if show is not None:
                show(p)
            if self.reason is None and time.monotonic() - self.t0 >= self.seconds:
                self.reason = "duration"
                from actors.runtime import FEED, NAMESPACE

                log.warning("stopping the feed (%s reached), then closing the run", self.reason)
                ray.get_actor(FEED, namespace=NAMESPACE).stop.remote()

        return on_progress


class _Progress:
    """One live status line: event time, bars, signals, orders, open positions, P&L."""

    def __init__(self, enabled: bool, mode: str = "paper"):
        self.enabled = enabled
        self.mode = mode
        self._live = None

    def __enter__(self) -> Callable[[dict[str, Any]], None] | None:
        if not self.enabled:
            return None
        from rich.live import Live

        self._live = Live("starting the actors...", transient=True, refresh_per_second=4)
        self._live.start()
        return self._show

    def _show(self, p: dict[str, Any]) -> None:
        import datetime as dt

        clock = p.get("clock_ns")
        when = dt.datetime.fromtimestamp(clock / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M") if clock else "-"
        self._live.update(
            f"[bold]{self.mode}[/bold] {when} UTC | ticks {p['ticks']:,} | bars {p['bars']:,} | "
            f"signals {p['signals']:,} | orders {p['orders']:,} | fills {p['fills']:,} | "
            f"open positions {p['open_positions']} | closed trades {p['trades']:,} | "
            f"realised P&L {p['net_pnl']:,.2f}"
        )

    def __exit__(self, *exc) -> bool:
        if self._live is not None:
            self._live.stop()
        return False
