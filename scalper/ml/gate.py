"""The model gate: which candidate signals to take, and how big, according to the three models.

In process, the same code the backtest calls (`Backtest(cfg, gate=ModelGate(...))`) and the
Serve deployments wrap, so a backtest decides as the live path does. For each signal, in
this order:

1. regime     the regime model predicts the regime of the signal's bar from the market
              features (past window only); a strategy not allowed in it by
              ml.regime_strategies is refused: "regime_disallows_strategy";
2. validator  P(win) below the threshold (the validator's card, else ml.validator_threshold):
              "validator_below_threshold";
3. sizer      the risk multiplier (scalper/ml/sizing.py); 0 = no edge: "sizer_zero".

Each model is optional (None = that step is skipped; the sizer needs the validator, whose
probability is one of its inputs). Accepted signals carry the multiplier for the
RiskManager. Every decision carries the scores and the models' name:version, to be recorded
with the signal.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from scalper.config import Config
from scalper.ml.features import bar_features, feature_names, market_feature_names, signal_features
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

    # ------------------------------------------------------------------ features

    def signal_frame(self, signals: Sequence[Signal], data: Mapping[str, Any]) -> pd.DataFrame:
        """Feature rows of `signals` (aligned, columns feature_names(cfg)); `data`: symbol ->
        its bars and indicators (a SymbolData, or a mapping of numpy columns)."""
        cfg = self.cfg
        if not signals:
            return pd.DataFrame(columns=feature_names(cfg))
        atr_col = f"atr_{cfg.indicators.atr_length}"
        parts: list[pd.DataFrame] = []
        positions: list[np.ndarray] = []
        by_symbol: dict[str, list[int]] = {}
        for k, s in enumerate(signals):
            by_symbol.setdefault(s.symbol, []).append(k)
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
            market = bar_features(cols, cfg)
            limit = np.array(
                [np.nan if signals[k].limit_price is None else signals[k].limit_price for k in ks],
                dtype=np.float64,
            )
            close = np.asarray(cols["close"], dtype=np.float64)[rows]
            parts.append(
                signal_features(
                    market,
                    rows,
                    strategy=[signals[k].strategy for k in ks],
                    side=np.array([signals[k].side.sign for k in ks], dtype=np.float64),
                    entry=np.where(np.isfinite(limit), limit, close),
                    limit_price=limit,
                    stop_loss=np.array([signals[k].stop_loss for k in ks], dtype=np.float64),
                    take_profit=np.array([signals[k].take_profit for k in ks], dtype=np.float64),
                    close=close,
                    atr=np.asarray(cols[atr_col], dtype=np.float64)[rows],
                    cfg=cfg,
                )
            )
            positions.append(np.asarray(ks))
        frame = pd.concat(parts, ignore_index=True)
        order = np.argsort(np.concatenate(positions), kind="stable")
        return frame.iloc[order].reset_index(drop=True)

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
        probs = self.regime.predict(features[market_feature_names(self.cfg)]) if self.regime else None
        p = self.validator.predict(features) if self.validator else None
        mult = np.ones(n)
        mu = None
        if self.sizer is not None and p is not None:
            sf = sizer_frame(features, p, probs)
            mu = self.sizer.predict(sf[list(SIZER_FEATURES)])
            mult = kelly_multiplier(mu, float(self.sizer.card.extra["mean_r2"]), self.cfg)
        out = []
        for k, s in enumerate(signals):
            scores: dict[str, float] = {}
            regime = None
            if probs is not None:
                regime = REGIMES[int(np.argmax(probs[k]))]
                scores.update({f"p_{name}": float(probs[k][j]) for j, name in enumerate(REGIMES)})
            if p is not None:
                scores["p_validator"] = float(p[k])
            if mu is not None:
                scores["expected_r"] = float(mu[k])
            scores["size_multiplier"] = float(mult[k])
            if regime is not None and not allowed(self.cfg, regime, s.strategy):
                out.append(
                    GateDecision(
                        False,
                        REGIME_DISALLOWS,
                        0.0,
                        scores,
                        regime,
                        f"{s.strategy} not allowed when {regime}",
                    )
                )
            elif p is not None and p[k] < self.threshold:
                out.append(
                    GateDecision(
                        False,
                        BELOW_THRESHOLD,
                        0.0,
                        scores,
                        regime,
                        f"P(win) {p[k]:.3f} < {self.threshold:.3f}",
                    )
                )
            elif mult[k] <= 0.0:
                out.append(GateDecision(False, SIZER_ZERO, 0.0, scores, regime, "expected R <= 0"))
            else:
                out.append(GateDecision(True, ACCEPTED, float(mult[k]), scores, regime))
        return out


def _check(model: LoadedModel, want: list[str]) -> None:
    from scalper.ml.dataset import describe_diff
    from scalper.ml.registry import ModelSchemaError

    if list(model.card.features) != want:
        raise ModelSchemaError(
            f"model {model.tag}: its feature list differs from this config's: {describe_diff(want, model.card.features)}"
        )
