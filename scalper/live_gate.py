"""The model gate on the live path: each minute's candidates judged from the recent bars.

The backtest computes every signal's features from the whole series (`ModelGate.evaluate`
over SymbolData). Live, the features of a signal come from its symbol's last
`FEATURE_HISTORY` bars + indicators: every market feature reads a bounded trailing window
(returns, volatility and efficiency ratio over at most 60 bars), so the values are the
backtest's, and so are the decisions (tests/test_live_gate.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from scalper.config import Config
from scalper.ml.features import ER_WINDOWS, RETURN_HORIZONS, VOL_WINDOWS
from scalper.types import Snapshot
from scalper.windows import BAR_FIELDS, BarWindows

if TYPE_CHECKING:
    from scalper.ml.gate import GateDecision, ModelGate
    from scalper.trading import Candidate

# rows kept per symbol: twice the longest trailing window a market feature reads
FEATURE_HISTORY = 2 * (max(*RETURN_HORIZONS, *VOL_WINDOWS, *ER_WINDOWS) + 1)


def configured_gate(cfg: Config) -> ModelGate | None:
    """The three models of the registry when `ml.enabled` (schema checked on load), else None:
    what the backtest, an in-process run and the Ray risk manager judge signals with."""
    if not cfg.ml.enabled:
        return None
    from scalper.ml.gate import ModelGate

    return ModelGate.from_registry(cfg)


class LiveGate:
    """A ModelGate fed one minute at a time (the risk manager's side of the models)."""

    def __init__(self, cfg: Config, gate: ModelGate, history: int = FEATURE_HISTORY):
        from scalper.indicators import indicator_columns

        self.gate = gate
        self.windows = BarWindows([*BAR_FIELDS, *indicator_columns(cfg.indicators)], history)

    @property
    def models(self) -> dict[str, str]:
        return self.gate.models

    def remember(self, snaps: Sequence[Snapshot]) -> None:
        """Every closed bar, each minute (features need the bars without signals too)."""
        for snap in snaps:
            self.windows.append(snap)

    def evaluate(self, candidates: Sequence[Candidate]) -> list[GateDecision]:
        """One decision per candidate, in order."""
        signals = [c.signal for c in candidates]
        data = {sym: self.windows.recent(sym) for sym in dict.fromkeys(s.symbol for s in signals)}
        return self.gate.evaluate(signals, data)
