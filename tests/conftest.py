"""Shared fixtures. Ray: ONE local cluster per test session, started only by tests that ask."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster (2 CPUs, no dashboard, auth off) shared by every Ray test."""
    os.environ["RAY_AUTH_MODE"] = "disabled"
    # Ray Train polls its workers' health every 2 s by default: most of a tiny training run
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture
def ex():
    """The local Binance-protocol exchange (tests/exchange) on 127.0.0.1: 10,000 USDT and one
    BTCUSDT trade."""
    from exchange import LocalExchange

    with LocalExchange(balances={"USDT": 10_000.0}) as server:
        server.add_trade("BTCUSDT", 100.0, 1.0)
        yield server


@pytest.fixture
def keys(monkeypatch):
    """The local exchange's API keys in this process's environment (where the live code reads them)."""
    from exchange.live import ENV

    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def clock():
    """The local exchange's clock, moved by the test (tests/exchange/live.py)."""
    from exchange.live import Clock

    return Clock()


@pytest.fixture
def market(clock):
    """The local exchange on the test's clock: 10,000 USDT, the last BTCUSDT trade at 100.
    (tests/test_live_gate.py has its own `market`: the fitted models.)"""
    from exchange import LocalExchange

    with LocalExchange(balances={"USDT": 10_000.0}, clock=clock) as server:
        server.add_trade("BTCUSDT", 100.0, 1.0)
        yield server


# ------------------------------------------------------------------ models and the shipped config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def fitted_models():
    """The three models fitted on a small synthetic market (AAA, BBB, 2 days), with that
    market's config and prepared bars: (cfg, data, models)."""
    from scalper.backtest import load_bars, prepare
    from scalper.config import Config, with_overrides
    from scalper.ml import evaluation as ev
    from scalper.ml.dataset import collect

    cfg = with_overrides(
        Config(),
        {
            "symbols": ["AAA", "BBB"],
            "feed.synthetic.minutes": 2 * 1440,
            "ml.num_boost_round": 20,
            "risk.max_drawdown_pct": 50.0,
            "risk.daily_loss_limit_pct": 20.0,
        },
    )
    bars = load_bars(cfg, synthetic=True, symbols=cfg.symbols)
    signals, regime = collect(cfg, bars)
    models, _ = ev.fit_fold_models(cfg, signals, regime)
    data = {s: prepare(s, b, cfg) for s, b in bars.items()}
    return cfg, data, models


@pytest.fixture(scope="session")
def model_registry(fitted_models, tmp_path_factory) -> Path:
    """A registry holding the fitted models (version v0001 of each)."""
    from scalper.ml.registry import Registry

    registry = Registry(tmp_path_factory.mktemp("registry") / "models")
    for m in fitted_models[2].values():
        registry.save(m.booster, m.card)
    return registry.root


def shipped_config(tmp_path: Path, **ml: object) -> str:
    """config.json as shipped with some `ml` keys replaced, written under tmp_path: the CLI
    tests run the user's config without reading or writing the checkout's `models/`."""
    doc = json.loads((ROOT / "config.json").read_text())
    doc["ml"].update(ml)
    path = tmp_path / "shipped-config.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.fixture
def rules_only_config(tmp_path) -> str:
    """The shipped config without the models (for CLI tests about something else)."""
    return shipped_config(tmp_path, enabled=False)


def grid_of_four_jobs(days: int = 2):
    """(config, jobs): AAA and BBB, each with momentum stops at 1 and 2 ATR, over `days` of the
    synthetic market (the --parallel --grid batch the parallel-backtest tests share)."""
    import msgspec

    from scalper import backtest as bt
    from scalper.config import Config, default_document

    doc = default_document()
    doc["feed"]["synthetic"]["minutes"] = days * 1440
    jobs = bt.make_jobs(
        ["AAA", "BBB"],
        per_symbol=True,
        grid=[{"strategies.momentum.stop_atr": 1.0}, {"strategies.momentum.stop_atr": 2.0}],
        synthetic=True,
    )
    return msgspec.convert(doc, Config), jobs
