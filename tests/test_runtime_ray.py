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
        if pipe.on_event(event):
            trade_minutes(session, pipe.drain_snapshots())
    return session.trades, session.records


def synthetic_cfg(minutes: int = 12 * 60) -> Config:
    doc = default_document()
    doc["symbols"] = ["AAA", "BBB", "CCC"]
    doc["feed"]["kind"] = "synthetic"
    doc["feed"]["synthetic"].update(minutes=minutes, ticks_per_minute=20.0)
    doc["risk"].update(max_drawdown_pct=50.0, daily_loss_limit_pct=20.0)
    return msgspec.convert(doc, Config)


def decisions(records) -> list[tuple]:
    return [(r.signal.symbol, r.signal.ts, r.signal.strategy, r.approved, r.reason) for r in records]


def test_shards_split_the_symbols_round_robin():
    from actors.runtime import shard_symbols

    assert shard_symbols(["A", "B", "C", "D", "E"], 2) == [["A", "C", "E"], ["B", "D"]]
    assert shard_symbols(["A"], 4) == [["A"]]


@pytest.mark.ray
def test_paper_run_on_ray_actors_trades_like_the_in_process_run(ray_cluster, tmp_path):
    from actors.runtime import run_paper_on_ray

    cfg = synthetic_cfg()
    trades, records = in_process(cfg)
    result = run_paper_on_ray(cfg, tmp_path, shards=2)
    ex = result["execution"]
    assert result["shards"] == [["AAA", "CCC"], ["BBB"]]
    assert len(trades) > 5
    assert fingerprint(ex.trades) == fingerprint(trades)
    assert decisions(ex.records) == decisions(records)
    assert sum(p["ticks_in"] for p in result["parts"]) > 0
