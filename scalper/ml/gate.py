"""The model gate: which candidate signals to take, and how big, according to the three models.

In process, the same code the backtest calls (`Backtest(cfg, gate=ModelGate(...))`) and the
Serve deployments wrap, so a backtest decides as the live path does. For each signal, in
this order:

1. regime     the regime model predicts the regime of the signal's bar from the market
              features (past window only); a strategy not allowed in it by
              ml.regime_strategies is refused: "regime_disallows_strategy";
2. validator  P(win) below the threshold (the validator's card, else ml.validator_threshold):
              "validator_below_threshold";
3. sizer      the risk multiplier (scalper/ml/sizing.py); 0 = no edge: "sizer_zero". Asked
              only about the signals 1 and 2 let through (a refused signal records
              size_multiplier 0 and no expected_r).

Each model is optional (None = that step is skipped; the sizer needs the validator, whose
probability is one of its inputs). Accepted signals carry the multiplier for the
RiskManager. Every decision carries the scores and the models' name:version, to be recorded
with the signal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from scalper.config import Config
from scalper.ml.features import (
    LOOKBACK,
    bar_features,
    feature_names,
    market_feature_names,
    signal_features,
)
from scalper.ml.models import sizer_frame
from scalper.ml.regime import REGIMES, allowed
from scalper.ml.registry import LoadedModel, Registry
from scalper.ml.sizing import SIZER_FEATURES, kelly_multiplier
from scalper.types import Signal

log = logging.getLogger(__name__)

ACCEPTED = "accepted"
REGIME_DISALLOWS = "regime_disallows_strategy"
BELOW_THRESHOLD = "validator_below_threshold"
SIZER_ZERO = "sizer_zero"

# histories at most this long in all are stacked into one feature pass (signal_frame)
STACK_MAX_ROWS = 65_536


class GateDecision(msgspec.Struct, frozen=True):
    accepted: bool
    reason: str  # "accepted" or a refusal code (module docstring)
    size_multiplier: float = 1.0
    scores: dict[str, float] = msgspec.field(default_factory=dict)
    regime: str | None = None
    detail: str = ""


class ModelGate:
    """Regime -> validator -> sizer over a batch of signals (see the module docstring)."""

    def __init__(
        self,
        cfg: Config,
        validator: LoadedModel | None = None,
        regime: LoadedModel | None = None,
        sizer: LoadedModel | None = None,
        threshold: float | None = None,
    ):
        if sizer is not None and validator is None:
            raise ValueError("ModelGate: the sizer needs the validator (its probability is a sizer input)")
        self.cfg = cfg
        self.validator, self.regime, self.sizer = validator, regime, sizer
        if validator is not None:
            _check(validator, feature_names(cfg))
        if regime is not None:
            _check(regime, market_feature_names(cfg))
        if sizer is not None:
            _check(sizer, list(SIZER_FEATURES))
            r2 = sizer.card.extra.get("mean_r2")
            if not (isinstance(r2, (int, float)) and r2 > 0):
                raise ValueError(f"sizer {sizer.tag}: its card lacks extra.mean_r2 > 0 (got {r2!r})")
        card_t = validator.card.extra.get("threshold") if validator is not None else None
        self.threshold = float(
            threshold
            if threshold is not None
            else card_t
            if card_t is not None
            else cfg.ml.validator_threshold
        )

    @classmethod
    def from_registry(
        cls, cfg: Config, root: str | None = None, use: Sequence[str] = ("validator", "regime", "sizer")
    ) -> ModelGate:
        """The `latest` version of each model in `use` (schema checked on load)."""
        reg = Registry(root or cfg.ml.registry)
        wanted = set(use)
        unknown = wanted - {"validator", "regime", "sizer"}
        if unknown:
            raise ValueError(f"ModelGate: unknown models {sorted(unknown)}")
        return cls(
            cfg,
            validator=reg.load("validator", features=feature_names(cfg)) if "validator" in wanted else None,
            regime=reg.load("regime", features=market_feature_names(cfg)) if "regime" in wanted else None,
            sizer=reg.load("sizer", features=list(SIZER_FEATURES)) if "sizer" in wanted else None,
        )

    @property
    def models(self) -> dict[str, str]:
        return {
            m.card.name: m.card.version for m in (self.validator, self.regime, self.sizer) if m is not None
        }

    def warm(self) -> None:
        """One prediction of a row of zeros per model, answers dropped: a served model's handle
        and route are made here, before the first bar close that needs them."""
        for m in (self.regime, self.validator, self.sizer):
            if m is not None:
                m.predict(np.zeros((1, len(m.card.features)), dtype=np.float32))

    # ------------------------------------------------------------------ features

    def signal_frame(self, signals: Sequence[Signal], data: Mapping[str, Any]) -> pd.DataFrame:
        """Feature rows of `signals` (aligned, columns feature_names(cfg)); `data`: symbol ->
        its bars and indicators (a SymbolData, or a mapping of numpy columns).

        Short histories (the live windows) of several symbols are laid end to end, LOOKBACK
        NaN rows apart, and computed in one pass: a trailing window that reaches into the gap
        is NaN, as it is at the start of a symbol's own history, so every row is what it is
        alone (pandas' rolling sums carry ~1e-16 of the previous symbol's rounding)."""
        cfg = self.cfg
        if not signals:
            return pd.DataFrame(columns=feature_names(cfg))
        by_symbol: dict[str, list[int]] = {}
        for k, s in enumerate(signals):
            by_symbol.setdefault(s.symbol, []).append(k)
        blocks: list[tuple[Mapping[str, Any], np.ndarray, list[int]]] = []
        for symbol, ks in by_symbol.items():
            if symbol not in data:
                raise KeyError(f"ModelGate: no bars for symbol {symbol!r} of a signal")
            cols = getattr(data[symbol], "cols", data[symbol])
            ts = np.asarray(cols["timestamp"], dtype=np.int64)
            sig_ts = np.array([signals[k].ts for k in ks], dtype=np.int64)
            rows = np.searchsorted(ts, sig_ts)
            bad = (rows >= ts.shape[0]) | (ts[np.minimum(rows, ts.shape[0] - 1)] != sig_ts)
            if bad.any():
                raise ValueError(f"ModelGate: a {symbol} signal at ts={int(sig_ts[bad][0])} has no bar")
            blocks.append((cols, rows, ks))
        if len(blocks) > 1 and sum(len(b[0]["timestamp"]) for b in blocks) <= STACK_MAX_ROWS:
            blocks = [_stacked(blocks)]
        parts = [self._features(cols, rows, [signals[k] for k in ks]) for cols, rows, ks in blocks]
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        order = np.argsort(np.concatenate([np.asarray(b[2]) for b in blocks]), kind="stable")
        return frame.iloc[order].reset_index(drop=True)

    def _features(self, cols: Mapping[str, Any], rows: np.ndarray, signals: Sequence[Signal]) -> pd.DataFrame:
        """Feature rows of `signals` at `rows` of one block of bars."""
        cfg = self.cfg
        market = bar_features(cols, cfg)
        limit = np.array(
            [np.nan if s.limit_price is None else s.limit_price for s in signals], dtype=np.float64
        )
        close = np.asarray(cols["close"], dtype=np.float64)[rows]
        return signal_features(
            market,
            rows,
            strategy=[s.strategy for s in signals],
            side=np.array([s.side.sign for s in signals], dtype=np.float64),
            entry=np.where(np.isfinite(limit), limit, close),
            limit_price=limit,
            stop_loss=np.array([s.stop_loss for s in signals], dtype=np.float64),
            take_profit=np.array([s.take_profit for s in signals], dtype=np.float64),
            close=close,
            atr=np.asarray(cols[f"atr_{cfg.indicators.atr_length}"], dtype=np.float64)[rows],
            cfg=cfg,
        )

    # ------------------------------------------------------------------ decisions

    def evaluate(self, signals: Sequence[Signal], data: Mapping[str, Any]) -> list[GateDecision]:
        """One decision per signal, in order (see the module docstring)."""
        if not signals:
            return []
        return self.decide(signals, self.signal_frame(signals, data))

    def decide(self, signals: Sequence[Signal], features: pd.DataFrame) -> list[GateDecision]:
        """Decisions for signals whose feature rows are already computed (aligned)."""
        n = len(signals)
        if len(features) != n:
            raise ValueError(f"ModelGate.decide: {n} signals but {len(features)} feature rows")
        # regime and validator requested together (served models: one round trip, not two)
        regime_answer = _ask(self.regime, features[market_feature_names(self.cfg)]) if self.regime else None
        validator_answer = _ask(self.validator, features) if self.validator else None
        probs = regime_answer() if regime_answer else None
        p = validator_answer() if validator_answer else None
        regimes = [REGIMES[int(np.argmax(row))] for row in probs] if probs is not None else [None] * n
        refusals: list[tuple[str, str] | None] = []
        for k, s in enumerate(signals):
            regime = regimes[k]
            if regime is not None and not allowed(self.cfg, regime, s.strategy):
                refusals.append((REGIME_DISALLOWS, f"{s.strategy} not allowed when {regime}"))
            elif p is not None and p[k] < self.threshold:
                refusals.append((BELOW_THRESHOLD, f"P(win) {p[k]:.3f} < {self.threshold:.3f}"))
            else:
                refusals.append(None)
        # the sizer is asked only about the signals the regime and the validator let through
        # (a bar close whose signals are all refused costs no third model call)
        sized = np.array([k for k in range(n) if refusals[k] is None], dtype=np.int64)
        mult = np.zeros(n)
        mult[sized] = 1.0
        mu = np.full(n, np.nan)
        if self.sizer is not None and p is not None and sized.size:
            sf = sizer_frame(features.iloc[sized], p[sized], probs[sized] if probs is not None else None)
            mu[sized] = self.sizer.predict(sf[list(SIZER_FEATURES)])
            mult[sized] = kelly_multiplier(mu[sized], float(self.sizer.card.extra["mean_r2"]), self.cfg)
        out = []
        for k in range(n):
            scores: dict[str, float] = {}
            if probs is not None:
                scores.update({f"p_{name}": float(probs[k][j]) for j, name in enumerate(REGIMES)})
            if p is not None:
                scores["p_validator"] = float(p[k])
            if not np.isnan(mu[k]):
                scores["expected_r"] = float(mu[k])
            scores["size_multiplier"] = float(mult[k])  # the one applied: 0 when refused
            if refusals[k] is not None:
                reason, detail = refusals[k]
                out.append(GateDecision(False, reason, 0.0, scores, regimes[k], detail))
            elif mult[k] <= 0.0:
                out.append(GateDecision(False, SIZER_ZERO, 0.0, scores, regimes[k], "expected R <= 0"))
            else:
                out.append(GateDecision(True, ACCEPTED, float(mult[k]), scores, regimes[k]))
        return out


def _ask(model: Any, features: pd.DataFrame) -> Callable[[], np.ndarray]:
    """Start a prediction and return what waits for it: a served model's request goes out now
    (`ask`), an in-process model predicts when waited on."""
    if hasattr(model, "ask"):
        return model.ask(features)
    return lambda: model.predict(features)


def _stacked(
    blocks: Sequence[tuple[Mapping[str, Any], np.ndarray, list[int]]],
) -> tuple[dict[str, np.ndarray], np.ndarray, list[int]]:
    """Several symbols' columns end to end, LOOKBACK gap rows before each (NaN; 0 in integer
    columns), with the signal rows moved to match (see ModelGate.signal_frame)."""
    names = [n for n in blocks[0][0] if all(n in b[0] for b in blocks)]
    cols: dict[str, np.ndarray] = {}
    for name in names:
        parts = []
        for b in blocks:
            a = np.asarray(b[0][name])
            if a.dtype.kind not in "iuf":
                break
            parts += [np.zeros(LOOKBACK, a.dtype) if a.dtype.kind in "iu" else np.full(LOOKBACK, np.nan), a]
        else:
            cols[name] = np.concatenate(parts)
    rows, ks, start = [], [], 0
    for b in blocks:
        start += LOOKBACK
        rows.append(b[1] + start)
        ks += b[2]
        start += len(b[0]["timestamp"])
    return cols, np.concatenate(rows), ks


def _check(model: LoadedModel, want: list[str]) -> None:
    from scalper.ml.dataset import describe_diff
    from scalper.ml.registry import ModelSchemaError

    if list(model.card.features) != want:
        raise ModelSchemaError(
            f"model {model.tag}: its feature list differs from this config's: {describe_diff(want, model.card.features)}"
        )
