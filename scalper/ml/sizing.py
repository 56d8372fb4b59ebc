"""The sizer: how much of the risk budget a signal deserves, as a multiplier in [0, cap].

The sizer model is an XGBoost regressor of the realised R multiple (net of fees and slippage)
on SIZER_FEATURES: the validator's probability (out of sample: the sizer is trained on rows
the validator never saw), the predicted regime probabilities, the volatility and the
bracket's payoff ratio. Its prediction mu = E[R | features] is turned into a fraction of
equity to risk by fractional Kelly for a continuous payoff:

    f*  = mu / E[R^2]                     (maximises E[log(1 + f R)] to second order)
    m   = clip(kelly_fraction * f* / r0, 0, cap)

where E[R^2] is the mean squared R of the sizer's training rows (stored on its model card),
r0 = risk.risk_per_trade_pct / 100 (the budget a multiplier of 1 risks), kelly_fraction =
ml.sizer_kelly_fraction and cap = min(ml.sizer_cap, risk.size_multiplier_cap). A signal with
mu <= 0 gets 0: no edge, no trade (the gate refuses it with "sizer_zero").
"""

from __future__ import annotations

import numpy as np

from scalper.config import Config

SIZER_FEATURES: tuple[str, ...] = (
    "p_validator",
    "p_trending",
    "p_ranging",
    "p_volatile",
    "rv_60",
    "atr_pct",
    "payoff",
    "stop_atr",
)


def cap(cfg: Config) -> float:
    return float(min(cfg.ml.sizer_cap, cfg.risk.size_multiplier_cap))


def kelly_multiplier(mu: np.ndarray, r2: float, cfg: Config) -> np.ndarray:
    """Risk multipliers from predicted expected R `mu` (see the module docstring)."""
    if not r2 > 0:
        raise ValueError(f"kelly_multiplier: E[R^2] must be > 0, got {r2!r}")
    r0 = cfg.risk.risk_per_trade_pct / 100.0
    f = np.asarray(mu, dtype=np.float64) / r2
    m = cfg.ml.sizer_kelly_fraction * f / r0
    return np.clip(np.nan_to_num(m, nan=0.0), 0.0, cap(cfg))
