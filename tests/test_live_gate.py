"""The model gate on the live path (bar by bar, features from the recent bars) decides as the
backtest's gate does (features from the whole series): same records, scores and trades."""

from __future__ import annotations

import math

import pytest
from test_trading import replay

from scalper.backtest import Backtest
from scalper.config import Config, with_overrides
from scalper.ml.gate import BELOW_THRESHOLD, REGIME_DISALLOWS, ModelGate
from scalper.report import fingerprint
from scalper.trading import TradingSession


@pytest.fixture(scope="module")
def market(fitted_models):
    """(cfg, data, models): the session's fitted models (conftest)."""
    return fitted_models


def records(recs):
    return [
        (r.signal.symbol, r.signal.ts, r.signal.strategy, r.approved, r.reason, r.quantity, r.models)
        for r in recs
    ]


def test_the_live_gate_decides_every_signal_as_the_backtests_gate(market):
    cfg, data, models = market
    gate = ModelGate(cfg, validator=models["validator"], regime=models["regime"], sizer=models["sizer"])
    backtest = Backtest(cfg, gate=gate).run(data)
    session = TradingSession(cfg, gate=gate)
    replay(session, data)
    assert records(session.records) == records(backtest.signals)
    reasons = {r.reason for r in backtest.signals}
    assert {"approved", REGIME_DISALLOWS} <= reasons or {"approved", BELOW_THRESHOLD} <= reasons, reasons
    for live, bt in zip(session.records, backtest.signals, strict=True):
        assert live.scores.keys() == bt.scores.keys() and live.scores
        for k, v in bt.scores.items():
            assert math.isclose(live.scores[k], v, rel_tol=1e-9, abs_tol=1e-12), (k, live, bt)
    assert fingerprint(session.trades) == fingerprint(backtest.trades) and backtest.trades


@pytest.mark.ray
def test_a_paper_run_on_ray_with_the_models_decides_as_the_in_process_run(market, ray_cluster, tmp_path):
    """ml.enabled: the Ray risk manager judges signals with the registry's models (features
    from the minutes the feed sends it), as the in-process TradingSession does."""
    import msgspec

    from actors.runtime import run_paper_on_ray
    from scalper.feeds import make_feed
    from scalper.live_gate import configured_gate
    from scalper.ml.registry import Registry
    from scalper.pipeline import MarketDataPipeline, trade_minutes

    cfg0, _, models = market
    registry = Registry(tmp_path / "models")
    for m in models.values():
        registry.save(m.booster, m.card)
    cfg = with_overrides(
        cfg0,
        {
            "feed.kind": "synthetic",
            "feed.synthetic.minutes": 600,
            "ml.enabled": True,
            "ml.registry": str(registry.root),
        },
    )
    pipe, session = MarketDataPipeline(cfg), TradingSession(cfg, gate=configured_gate(cfg))
    for event in make_feed(cfg):
        if pipe.on_event(event):
            trade_minutes(session, pipe.drain_snapshots())
    result = run_paper_on_ray(cfg, tmp_path / "run", shards=2)
    ex = result["execution"]
    assert records(ex.records) == records(session.records) and session.records
    assert all(r.models == {n: "v0001" for n in ("validator", "regime", "sizer")} for r in ex.records)
    assert msgspec.json.encode([r.scores for r in ex.records]) == msgspec.json.encode(
        [r.scores for r in session.records]
    )
    assert fingerprint(ex.trades) == fingerprint(session.trades)


@pytest.mark.parametrize("policy", ["closed", "rules_only"])
def test_models_that_cannot_answer_give_the_configured_explicit_decision(policy):
    """serve.on_failure: "closed" refuses the minute's signals with validator_unavailable,
    "rules_only" lets the risk manager decide alone; the gate is retried next time."""
    from scalper.live_gate import UNAVAILABLE, LiveGate, ModelsUnavailable
    from scalper.trading import Candidate
    from scalper.types import OrderType, Side, Signal

    class Down:
        calls = 0

        def __init__(self):
            Down.calls += 1
            raise ModelsUnavailable("validator: replica gone")

    cfg = with_overrides(Config(), {"serve.on_failure": policy})
    gate = LiveGate(cfg, Down)
    sig = Signal("ES", 0, "momentum", Side.BUY, OrderType.MARKET, 99.0, 102.0, reason="ema_cross_up")
    out = gate.evaluate([Candidate(sig, 100.0), Candidate(sig, 100.0)])
    out2 = gate.evaluate([Candidate(sig, 100.0)])
    assert Down.calls == 2 and gate.failures == 2  # made again after a failure
    if policy == "closed":
        assert [(d.accepted, d.reason) for d in out + out2] == [(False, UNAVAILABLE)] * 3
        assert "replica gone" in out[0].detail
    else:
        assert out + out2 == [None, None, None]


def test_the_run_directory_shows_each_signals_regime_score_decision_and_size(market, tmp_path):
    import json

    import pandas as pd

    from scalper.backtest import write_run

    cfg, data, models = market
    gate = ModelGate(cfg, validator=models["validator"], regime=models["regime"], sizer=models["sizer"])
    write_run(Backtest(cfg, gate=gate).run(data), str(tmp_path))
    sig = pd.read_parquet(tmp_path / "signals.parquet")
    assert len(sig) > 10
    assert set(sig["regime"]) <= {"trending", "ranging", "volatile"} and sig["regime"].notna().all()
    assert sig["p_win"].between(0, 1).all() and (sig["size_multiplier"] >= 0).all()
    assert {json.loads(m)["validator"] for m in sig["models"]} == {models["validator"].card.version}
    assert set(sig["decision"]) >= {"approved"}
