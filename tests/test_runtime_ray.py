"""Paper trading through Ray actors gives exactly the in-process run's trades."""

from __future__ import annotations

import msgspec
import pytest

from scalper.config import Config, default_document
from scalper.report import fingerprint


def in_process(cfg: Config) -> tuple[list, list]:
    from scalper.feeds import make_feed
    from scalper.pipeline import MarketDataPipeline, trade_minutes
    from scalper.trading import TradingSession

    pipe, session = MarketDataPipeline(cfg), TradingSession(cfg)
    for event in make_feed(cfg):
        closed = pipe.on_event(event)
        if closed:
            trade_minutes(session, closed)
    return session.trades, session.records


def test_shards_split_the_symbols_round_robin():
    from actors.runtime import shard_symbols

    assert shard_symbols(["A", "B", "C", "D", "E"], 2) == [["A", "C", "E"], ["B", "D"]]
    assert shard_symbols(["A"], 4) == [["A"]]


@pytest.mark.ray
def test_paper_run_on_ray_actors_trades_like_the_in_process_run(ray_cluster):
    from actors.runtime import run_paper_on_ray

    doc = default_document()
    doc["symbols"] = ["AAA", "BBB", "CCC"]
    doc["feed"]["kind"] = "synthetic"
    doc["feed"]["synthetic"].update(minutes=12 * 60, ticks_per_minute=20.0)
    doc["risk"].update(max_drawdown_pct=50.0, daily_loss_limit_pct=20.0)
    cfg = msgspec.convert(doc, Config)
    trades, records = in_process(cfg)
    result = run_paper_on_ray(cfg, shards=2)
    assert result["shards"] == [["AAA", "CCC"], ["BBB"]]
    assert len(trades) > 5
    assert fingerprint(result["trades"]) == fingerprint(trades)
    assert [(r.signal.symbol, r.signal.ts, r.approved, r.reason) for r in result["signals"]] == [
        (r.signal.symbol, r.signal.ts, r.approved, r.reason) for r in records
    ]
    assert sum(s["ticks_in"] for s in result["shard_stats"]) > 0
