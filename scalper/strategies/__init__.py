"""Entry strategies: one vectorised rule each, shared by the backtest and the live path.

`build_strategies(cfg)` gives the enabled strategies (or the named ones).
"""

from __future__ import annotations

from collections.abc import Sequence

from scalper.config import Config
from scalper.strategies.base import SignalArrays, Strategy, as_columns
from scalper.strategies.breakout import Breakout
from scalper.strategies.mean_reversion import MeanReversion
from scalper.strategies.momentum import Momentum

__all__ = [
    "STRATEGIES",
    "Breakout",
    "MeanReversion",
    "Momentum",
    "SignalArrays",
    "Strategy",
    "as_columns",
    "build_strategies",
]

# name -> class, in the order strategies are built and run
STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (Momentum, MeanReversion, Breakout)}


def build_strategies(cfg: Config, names: Sequence[str] | None = None) -> list[Strategy]:
    """The strategies enabled in `cfg.strategies` (or exactly `names`, enabled or not)."""
    if names is None:
        return [cls(cfg) for name, cls in STRATEGIES.items() if getattr(cfg.strategies, name).enabled]
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ValueError(
            f"unknown strategy {', '.join(map(repr, unknown))}; valid names: {', '.join(STRATEGIES)}"
        )
    return [STRATEGIES[n](cfg) for n in names]
