"""The model gate on the live path: each minute's candidates judged from the recent bars.

The backtest computes every signal's features from the whole series (`ModelGate.evaluate`
over SymbolData). Live, the features of a signal come from its symbol's last
`FEATURE_HISTORY` bars + indicators: every market feature reads a bounded trailing window
(returns, volatility and efficiency ratio over at most 60 bars), so the values are the
backtest's, and so are the decisions (tests/test_live_gate.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from scalper.config import Config
from scalper.ml.features import LOOKBACK
from scalper.types import Snapshot
from scalper.windows import BAR_FIELDS, BarWindows

if TYPE_CHECKING:
    from scalper.ml.gate import GateDecision, ModelGate
    from scalper.trading import Candidate

log = logging.getLogger(__name__)

# rows kept per symbol: twice the longest trailing window a market feature reads
FEATURE_HISTORY = 2 * LOOKBACK


class ModelsUnavailable(RuntimeError):
    """The models could not answer (served models down or too slow)."""


# the reason recorded for each signal of a minute whose models could not answer ("closed")
UNAVAILABLE = "validator_unavailable"


def configured_gate(cfg: Config) -> ModelGate | None:
    """The three models of the registry when `ml.enabled` (schema checked on load), else None:
    what the backtest, an in-process run and the Ray risk manager judge signals with."""
    if not cfg.ml.enabled:
        return None
    from scalper.ml.gate import ModelGate

    return ModelGate.from_registry(cfg)


class LiveGate:
    """A ModelGate fed one minute at a time (the risk manager's side of the models)."""

    def __init__(
        self, cfg: Config, gate: ModelGate | Callable[[], ModelGate], history: int = FEATURE_HISTORY
    ):
        """`gate`: the ModelGate, or a function that makes it (called at the first signals, and
        again after a failure: served models may not be up yet)."""
        from scalper.indicators import indicator_columns

        self._make = gate if callable(gate) else None  # (a ModelGate is not callable)
        self.gate: ModelGate | None = None if self._make is not None else gate
        self.on_failure = cfg.serve.on_failure
        self.failures = 0  # minutes whose models could not answer
        self.windows = BarWindows([*BAR_FIELDS, *indicator_columns(cfg.indicators)], history)

    @property
    def models(self) -> dict[str, str]:
        return self.gate.models if self.gate is not None else {}

    def warm(self) -> bool:
        """Make the gate and ask each model once, so the first signals do not pay for it.
        False (logged) when the models cannot answer yet: the first signals try again."""
        try:
            if self.gate is None:
                self.gate = self._make()
            self.gate.warm()
            return True
        except Exception as exc:  # e.g. the model app still starting: not an error yet
            log.warning(
                "models not warmed (%s: %s); the first signals will ask again", type(exc).__name__, exc
            )
            return False

    def remember(self, snaps: Sequence[Snapshot]) -> None:
        """Every closed bar, each minute (features need the bars without signals too)."""
        for snap in snaps:
            self.windows.append(snap)

    def evaluate(self, candidates: Sequence[Candidate]) -> list[GateDecision | None]:
        """One decision per candidate, in order. When the models cannot answer: with
        `serve.on_failure = "closed"` every candidate is refused (UNAVAILABLE), with
        "rules_only" None each (the risk manager alone decides, at size 1)."""
        from scalper.ml.gate import GateDecision

        signals = [c.signal for c in candidates]
        try:
            if self.gate is None:
                self.gate = self._make()
            data = {sym: self.windows.recent(sym) for sym in dict.fromkeys(s.symbol for s in signals)}
            return list(self.gate.evaluate(signals, data))
        except ModelsUnavailable as exc:
            self.failures += 1
            log.warning("models unavailable (%s): %s %d signal(s)", exc, self.on_failure, len(signals))
            if self.on_failure == "rules_only":
                return [None] * len(signals)
            return [GateDecision(False, UNAVAILABLE, 0.0, {}, None, str(exc)) for _ in signals]
