"""Shared fixtures. Ray: ONE local cluster per test session, started only by tests that ask."""

from __future__ import annotations

import os

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
