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
