"""What each model learns, from which columns, with which XGBoost parameters; the in-process
fit (the walk-forward's folds) and the choices made on validation data.

The same `ModelSpec` drives Ray Train (training/xgb.py: the workers run `xgboost.train` with
`params(...)` on their shards) and the in-process fit here, so a walk-forward fold and a
registered model are the same kind of model.

* validator  binary:logistic on the signal features, label = triple-barrier win
* regime     multi:softprob (3 classes) on the market features, label = forward regime
* sizer      reg:squarederror on SIZER_FEATURES, label = realised R (see scalper/ml/sizing.py)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from scalper.config import Config
from scalper.ml.features import feature_names, market_feature_names
from scalper.ml.regime import REGIMES
from scalper.ml.sizing import SIZER_FEATURES


class ModelSpec(NamedTuple):
    name: str
    kind: str  # "binary" | "multiclass" | "regression"
    features: list[str]
    label: str
    known_ts: str  # column: event time at which the row's label is known (for purging)


def spec(cfg: Config, name: str) -> ModelSpec:
    if name == "validator":
        return ModelSpec(name, "binary", feature_names(cfg), "label", "exit_ts")
    if name == "regime":
        return ModelSpec(name, "multiclass", market_feature_names(cfg), "regime", "label_ts")
    if name == "sizer":
        return ModelSpec(name, "regression", list(SIZER_FEATURES), "r_multiple", "exit_ts")
    raise ValueError(f"model name: expected one of validator, regime, sizer, got {name!r}")


def params(cfg: Config, kind: str) -> dict[str, Any]:
    """XGBoost parameters of a model kind (hist trees, deterministic, one thread per worker)."""
    ml = cfg.ml
    p: dict[str, Any] = {
        "tree_method": "hist",
        "max_depth": ml.max_depth,
        "eta": ml.learning_rate,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 5.0,
        "seed": 0,
        "nthread": 1,
    }
    if kind == "binary":
        p.update(objective="binary:logistic", eval_metric="logloss")
    elif kind == "multiclass":
        p.update(objective="multi:softprob", num_class=len(REGIMES), eval_metric="mlogloss")
    elif kind == "regression":
        p.update(objective="reg:squarederror", eval_metric="rmse")
    else:
        raise ValueError(f"model kind: expected binary, multiclass or regression, got {kind!r}")
    return p


def trainable(frame: pd.DataFrame, s: ModelSpec) -> pd.DataFrame:
    """Rows with a known, finite label, in time order."""
    y = pd.to_numeric(frame[s.label], errors="coerce")
    return frame[np.isfinite(y.to_numpy(dtype=np.float64))].sort_values("ts", kind="stable")


def time_split(frame: pd.DataFrame, fraction: float, known_ts: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation): validation = the latest `fraction` of the rows by signal time;
    train = the earlier rows whose label was known before the validation starts (purged)."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction: expected in (0, 1), got {fraction!r}")
    frame = frame.sort_values("ts", kind="stable")
    if len(frame) < 2:
        raise ValueError(f"time_split: need at least 2 labelled rows, got {len(frame)}")
    cut = frame["ts"].iloc[min(len(frame) - 1, int(len(frame) * (1 - fraction)))]
    valid = frame[frame["ts"] >= cut]
    train = frame[(frame["ts"] < cut) & (frame[known_ts] <= cut)]
    return train, valid


def matrix(frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    return frame[list(features)].to_numpy(dtype=np.float32)


def fit(cfg: Config, s: ModelSpec, frame: pd.DataFrame, rounds: int | None = None) -> Any:
    """In-process xgboost.train of model `s` on `frame` (rows with a label)."""
    import xgboost as xgb

    x = matrix(frame, s.features)
    y = frame[s.label].to_numpy(dtype=np.float32)
    dtrain = xgb.DMatrix(x, label=y, feature_names=list(s.features))
    return xgb.train(params(cfg, s.kind), dtrain, num_boost_round=rounds or cfg.ml.num_boost_round)


def predict(booster: Any, frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    import xgboost as xgb

    return booster.predict(xgb.DMatrix(matrix(frame, features), feature_names=list(features)))


def choose_threshold(p: np.ndarray, r: np.ndarray, min_trades: int = 20) -> dict[str, float]:
    """The validator threshold that maximises the total realised R of the accepted signals on
    validation data (expectancy x trades, not accuracy), among thresholds keeping at least
    `min_trades` (or a fifth of the rows when there are fewer than 5 x min_trades).

    Candidates: 0 (take everything) and the probabilities themselves at 2% quantile steps.
    """
    p = np.asarray(p, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(r)
    p, r = p[ok], r[ok]
    if p.size == 0:
        return {
            "threshold": 0.0,
            "total_r": 0.0,
            "expectancy_r": 0.0,
            "trades": 0,
            "baseline_expectancy_r": 0.0,
        }
    need = min(min_trades, max(1, p.size // 5))
    candidates = np.unique(np.concatenate([[0.0], np.quantile(p, np.linspace(0, 0.98, 50))]))
    best = (float(r.sum()), 0.0)
    for t in candidates:
        take = p >= t
        if take.sum() < need:
            continue
        total = float(r[take].sum())
        if total > best[0]:
            best = (total, float(t))
    take = p >= best[1]
    return {
        "threshold": best[1],
        "total_r": best[0],
        "expectancy_r": float(r[take].mean()),
        "trades": int(take.sum()),
        "baseline_expectancy_r": float(r.mean()),
    }


def binary_metrics(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """AUC, Brier score, log loss and a calibration table (mean predicted vs observed per bin)."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    out: dict[str, Any] = {"rows": int(y.size), "base_rate": float(y.mean()) if y.size else None}
    if y.size == 0:
        return out
    two = np.unique(y).size == 2
    out["auc"] = float(roc_auc_score(y, p)) if two else None
    out["brier"] = float(brier_score_loss(y, p))
    out["brier_baseline"] = float(brier_score_loss(y, np.full(y.size, y.mean())))
    out["log_loss"] = float(log_loss(y, p, labels=[0, 1]))
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out["calibration"] = [
        {
            "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
            "n": int((which == b).sum()),
            "predicted": float(p[which == b].mean()),
            "observed": float(y[which == b].mean()),
        }
        for b in range(bins)
        if (which == b).any()
    ]
    return out


def multiclass_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, log loss, the majority-class accuracy to beat, per-class recall."""
    from sklearn.metrics import log_loss

    y = np.asarray(y, dtype=np.int64)
    if y.size == 0:
        return {"rows": 0}
    pred = probs.argmax(axis=1)
    counts = np.bincount(y, minlength=len(REGIMES))
    return {
        "rows": int(y.size),
        "accuracy": float((pred == y).mean()),
        "majority_accuracy": float(counts.max() / y.size),
        "log_loss": float(log_loss(y, probs, labels=list(range(len(REGIMES))))),
        "recall": {
            REGIMES[k]: float((pred[y == k] == k).mean()) if (y == k).any() else None
            for k in range(len(REGIMES))
        },
        "class_share": {REGIMES[k]: float(counts[k] / y.size) for k in range(len(REGIMES))},
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if y.size == 0:
        return {"rows": 0}
    corr = float(np.corrcoef(y, pred)[0, 1]) if y.size > 2 and np.std(pred) > 0 else None
    return {
        "rows": int(y.size),
        "rmse": float(np.sqrt(np.mean((y - pred) ** 2))),
        "rmse_mean_baseline": float(np.std(y)),
        "corr": corr,
    }


def sizer_frame(
    signals: pd.DataFrame, p_validator: np.ndarray, regime_probs: np.ndarray | None
) -> pd.DataFrame:
    """SIZER_FEATURES (+ the label and time columns) for signal rows, given the validator's and
    the regime model's predictions on them (uniform regime probabilities without a regime model)."""
    probs = (
        np.full((len(signals), len(REGIMES)), 1.0 / len(REGIMES))
        if regime_probs is None
        else np.asarray(regime_probs, dtype=np.float64)
    )
    cols: dict[str, np.ndarray] = {"p_validator": np.asarray(p_validator, dtype=np.float64)}
    for k, name in enumerate(REGIMES):
        cols[f"p_{name}"] = probs[:, k]
    for c in ("rv_60", "atr_pct", "payoff", "stop_atr"):
        cols[c] = signals[c].to_numpy(dtype=np.float64)
    for c in ("ts", "r_multiple", "exit_ts"):
        if c in signals:
            cols[c] = signals[c].to_numpy()
    return pd.DataFrame(cols, index=signals.index)  # one construction: this runs every bar close
