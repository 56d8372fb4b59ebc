"""Which execution service a run uses: the paper broker, or a live exchange (see docs/LIVE.md)."""

from __future__ import annotations

from scalper.config import Config
from scalper.trading import ExecutionService


def make_execution(cfg: Config) -> ExecutionService:
    """The TradingService's domain object for this config (paper until live is wired)."""
    return ExecutionService(cfg)
