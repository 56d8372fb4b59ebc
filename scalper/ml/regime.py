"""Market regimes: trending / ranging / volatile over the NEXT window, predicted from the past one.

Label of bar t (known only after bar t+W, W = ml.regime_window_bars), from the forward window
t+1 .. t+W of the symbol's closes:

* "volatile"  its realised volatility (std of 1-bar log returns) is above the
              ml.regime_vol_quantile quantile of the symbol's forward volatilities;
* "trending"  otherwise, when its efficiency ratio |close[t+W] - close[t]| / path length is at
              least ml.regime_trend_er (price went somewhere, not back and forth);
* "ranging"   otherwise.

The quantile is taken over the labelled bars given (one symbol's whole history in the dataset):
labels are a training target, so they may use the whole span. In the walk-forward this means
the threshold has seen the test folds too (stated in docs/ML.md, section 5); the FEATURES of bar t are the market
features of `scalper.ml.features` (rows <= t only). The regime model predicts the label from
those features; `ml.regime_strategies` maps the predicted regime to the strategies allowed.
"""

from __future__ import annotations

import numpy as np

from scalper.config import Config
from scalper.ml.features import efficiency_ratio, realised_vol

REGIMES: tuple[str, ...] = ("trending", "ranging", "volatile")
TRENDING, RANGING, VOLATILE = range(3)


def forward(x: np.ndarray, window: int) -> np.ndarray:
    """x moved `window` rows EARLIER (row t holds x[t + window]); the last rows are NaN.
    Only for labels: a feature must never call this."""
    out = np.full(x.shape[0], np.nan)
    if window < x.shape[0]:
        out[: x.shape[0] - window] = x[window:]
    return out


def regime_labels(close: np.ndarray, cfg: Config) -> np.ndarray:
    """Regime code of every bar (0 trending, 1 ranging, 2 volatile; -1 where the forward
    window runs past the data), from the forward window (see the module docstring)."""
    ml = cfg.ml
    w = ml.regime_window_bars
    close = np.asarray(close, dtype=np.float64)
    # the trailing measures at t+W cover exactly the window t+1..t+W (returns from t)
    er = forward(efficiency_ratio(close, w), w)
    rv = forward(realised_vol(close, w), w)
    known = np.isfinite(er) & np.isfinite(rv)
    codes = np.full(close.shape[0], -1, dtype=np.int8)
    if not known.any():
        return codes
    cut = float(np.quantile(rv[known], ml.regime_vol_quantile))
    codes[known] = np.where(
        rv[known] > cut, VOLATILE, np.where(er[known] >= ml.regime_trend_er, TRENDING, RANGING)
    )
    return codes


def allowed(cfg: Config, regime: str, strategy: str) -> bool:
    """May `strategy` act in `regime`? (ml.regime_strategies; a regime not listed allows all)."""
    names = cfg.ml.regime_strategies.get(regime)
    return True if names is None else strategy in names
