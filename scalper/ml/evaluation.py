"""Walk-forward evaluation: out of sample only, never shuffled, purged by the label horizon.

Folds roll over the data's time span: fold k trains on the `walk_forward_train_days` before
its test window and tests on the next `walk_forward_test_days`; the windows then move on by
one test window. A training row is used only when its label was KNOWN before the test
window starts (its `exit_ts` / `label_ts`), so no label overlaps the test period (purging).

In each fold, on the training window only:
* regime model   fitted on the regime rows;
* validator      fitted on the earlier (1 - validation_fraction) of the signals (purged), its
                 threshold chosen on the later part for expectancy (models.choose_threshold);
* sizer          fitted on that later part, from the validator's out-of-sample probabilities.

On the test window: AUC, Brier score and calibration of the validator, accuracy of the regime
model, and the effect on the backtest - the same engine over the test window's bars
(indicators computed on the whole history, which is causal) four times: baseline (no model),
+ validator, + validator + regime switching, + validator + regime + sizing; net P&L, Sharpe,
max drawdown and trades of each. `write_report` saves the JSON and an HTML page of plots.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalper.config import Config
from scalper.ml import models as mdl
from scalper.ml.features import feature_names, market_feature_names
from scalper.ml.registry import LoadedModel, ModelCard
from scalper.ml.sizing import SIZER_FEATURES
from scalper.types import NS_PER_MINUTE

log = logging.getLogger(__name__)

NS_PER_DAY = 1440 * NS_PER_MINUTE
VARIANTS = ("baseline", "validator", "validator+regime", "validator+regime+sizer")


def folds(start_ts: int, end_ts: int, train_days: float, test_days: float) -> list[tuple[int, int, int]]:
    """(train_start, test_start, test_end) of each fold over [start_ts, end_ts]; full test
    windows only, in time order."""
    train, test = int(train_days * NS_PER_DAY), int(test_days * NS_PER_DAY)
    out = []
    test_start = start_ts + train
    while test_start + test <= end_ts + NS_PER_MINUTE:
        out.append((test_start - train, test_start, test_start + test))
        test_start += test
    return out


def fold_windows(cfg: Config, regime: pd.DataFrame) -> list[tuple[int, int, int]]:
    """The walk-forward's folds over the regime rows' span; ValueError when the data is shorter
    than one fold (checked by `train --evaluate` before anything trains)."""
    ml = cfg.ml
    if len(regime) == 0:
        raise ValueError("walk-forward: the dataset has no regime rows")
    start, end = int(regime["ts"].min()), int(regime["ts"].max())
    windows = folds(start, end, ml.walk_forward_train_days, ml.walk_forward_test_days)
    if not windows:
        days = (end - start) / NS_PER_DAY
        raise ValueError(
            f"walk-forward: the data spans {days:.2f} days, less than one fold "
            f"(ml.walk_forward_train_days {ml.walk_forward_train_days} + test_days {ml.walk_forward_test_days})"
        )
    return windows


def _in_memory(
    name: str, kind: str, features: list[str], booster: Any, fold: int, **extra: Any
) -> LoadedModel:
    card = ModelCard(name=name, version=f"fold{fold}", kind=kind, features=list(features), extra=dict(extra))
    booster.feature_names = list(features)
    return LoadedModel(card, booster)


def fit_fold_models(
    cfg: Config, signals: pd.DataFrame, regime: pd.DataFrame, fold: int = 0
) -> tuple[dict[str, LoadedModel], dict[str, Any]]:
    """The three models of one training window (see the module docstring) and what was chosen."""
    vs, rs, ss = mdl.spec(cfg, "validator"), mdl.spec(cfg, "regime"), mdl.spec(cfg, "sizer")
    info: dict[str, Any] = {}
    out: dict[str, LoadedModel] = {}
    reg_rows = mdl.trainable(regime, rs)
    if len(reg_rows) >= 50 and reg_rows["regime"].nunique() == 3:
        out["regime"] = _in_memory("regime", "multiclass", rs.features, mdl.fit(cfg, rs, reg_rows), fold)
    sig = mdl.trainable(signals, vs)
    train, valid = mdl.time_split(sig, cfg.ml.validation_fraction, vs.known_ts)
    info["validator_train_rows"], info["validator_valid_rows"] = len(train), len(valid)
    if len(train) < 30 or train["label"].nunique() < 2:
        raise ValueError(f"fold {fold}: too few labelled signals to train the validator ({len(train)} rows)")
    validator = mdl.fit(cfg, vs, train)
    p_valid = mdl.predict(validator, valid, vs.features)
    chosen = mdl.choose_threshold(p_valid, valid["r_multiple"].to_numpy())
    info["threshold"] = chosen
    out["validator"] = _in_memory(
        "validator", "binary", vs.features, validator, fold, threshold=chosen["threshold"]
    )
    probs = out["regime"].predict(valid[market_feature_names(cfg)]) if "regime" in out else None
    sf = mdl.sizer_frame(valid, p_valid, probs)
    sf = sf[np.isfinite(sf["r_multiple"])]
    if len(sf) >= 20:
        r2 = float(np.mean(sf["r_multiple"].to_numpy() ** 2))
        sizer = mdl.fit(cfg, ss, sf)
        out["sizer"] = _in_memory("sizer", "regression", list(SIZER_FEATURES), sizer, fold, mean_r2=r2)
        info["sizer_rows"], info["sizer_mean_r2"] = len(sf), r2
    return out, info


def _slice(data: Mapping[str, Any], lo: int, hi: int) -> dict[str, Any]:
    from scalper.backtest import SymbolData

    out = {}
    for s, sd in data.items():
        a, b = np.searchsorted(sd.ts, [lo, hi])
        if b > a:
            out[s] = SymbolData(s, {k: v[a:b] for k, v in sd.cols.items()})
    return out


def _backtest(cfg: Config, data: Mapping[str, Any], gate: Any) -> dict[str, Any]:
    from scalper.backtest import Backtest, summarize

    result = Backtest(cfg, gate=gate).run(data)
    o = summarize(result)["overall"]
    refused: dict[str, int] = {}
    for rec in result.signals:
        if not rec.approved:
            refused[rec.reason] = refused.get(rec.reason, 0) + 1
    return {
        "net_pnl": o["net_pnl"],
        "return_pct": o["return_pct"],
        "sharpe": o["sharpe"],
        "max_drawdown_pct": o["max_drawdown_pct"],
        "trades": o["trades"],
        "win_rate": o["win_rate"],
        "signals": len(result.signals),
        "refused": dict(sorted(refused.items())),
    }


def walk_forward(
    cfg: Config,
    signals: pd.DataFrame,
    regime: pd.DataFrame,
    data: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The walk-forward report (a JSON-able dict). `data`: symbol -> prepared SymbolData for
    the backtest effect (None = model metrics only)."""
    from scalper.ml.gate import ModelGate

    ml = cfg.ml
    windows = fold_windows(cfg, regime)
    vs, rs = mdl.spec(cfg, "validator"), mdl.spec(cfg, "regime")
    report_folds = []
    pooled_y, pooled_p, pooled_reg_y, pooled_reg_p = [], [], [], []
    for k, (train_start, test_start, test_end) in enumerate(windows):
        tr_sig = signals[
            (signals["ts"] >= train_start) & (signals["ts"] < test_start) & (signals["exit_ts"] <= test_start)
        ]
        tr_reg = regime[
            (regime["ts"] >= train_start) & (regime["ts"] < test_start) & (regime["label_ts"] <= test_start)
        ]
        te_sig = mdl.trainable(signals[(signals["ts"] >= test_start) & (signals["ts"] < test_end)], vs)
        te_reg = mdl.trainable(regime[(regime["ts"] >= test_start) & (regime["ts"] < test_end)], rs)
        fold: dict[str, Any] = {
            "fold": k,
            "train": [_iso(train_start), _iso(test_start)],
            "test": [_iso(test_start), _iso(test_end)],
            "train_signals": len(tr_sig),
            "test_signals": len(te_sig),
        }
        try:
            fitted, info = fit_fold_models(cfg, tr_sig, tr_reg, k)
        except ValueError as exc:
            fold["skipped"] = str(exc)
            report_folds.append(fold)
            log.warning("walk-forward fold %d skipped: %s", k, exc)
            continue
        fold["chosen"] = info
        p = fitted["validator"].predict(te_sig[feature_names(cfg)]) if len(te_sig) else np.array([])
        fold["validator"] = mdl.binary_metrics(te_sig["label"].to_numpy(), p)
        take = p >= fitted["validator"].card.extra["threshold"]
        r = te_sig["r_multiple"].to_numpy()
        fold["validator"]["expectancy_r_all"] = float(r.mean()) if r.size else None
        fold["validator"]["expectancy_r_accepted"] = float(r[take].mean()) if take.any() else None
        fold["validator"]["accepted_share"] = float(take.mean()) if take.size else None
        pooled_y.append(te_sig["label"].to_numpy())
        pooled_p.append(p)
        if "regime" in fitted and len(te_reg):
            probs = fitted["regime"].predict(te_reg[market_feature_names(cfg)])
            fold["regime"] = mdl.multiclass_metrics(te_reg["regime"].to_numpy(), probs)
            pooled_reg_y.append(te_reg["regime"].to_numpy())
            pooled_reg_p.append(probs)
        if data is not None:
            test_data = _slice(data, test_start, test_end)
            gates = {
                "baseline": None,
                "validator": ModelGate(cfg, validator=fitted["validator"]),
                "validator+regime": ModelGate(
                    cfg, validator=fitted["validator"], regime=fitted.get("regime")
                ),
                "validator+regime+sizer": ModelGate(
                    cfg, validator=fitted["validator"], regime=fitted.get("regime"), sizer=fitted.get("sizer")
                ),
            }
            fold["backtest"] = {name: _backtest(cfg, test_data, gate) for name, gate in gates.items()}
        report_folds.append(fold)
        if progress is not None:
            auc = fold["validator"].get("auc")
            progress(f"fold {k + 1}/{len(windows)}: AUC {auc if auc is None else round(auc, 3)}")
    return {
        "folds": report_folds,
        "pooled": _pooled(pooled_y, pooled_p, pooled_reg_y, pooled_reg_p),
        "backtest_totals": _totals([f for f in report_folds if "backtest" in f]),
        "settings": {
            "train_days": ml.walk_forward_train_days,
            "test_days": ml.walk_forward_test_days,
            "label_horizon_bars": ml.label_horizon_bars,
            "validation_fraction": ml.validation_fraction,
            "num_boost_round": ml.num_boost_round,
        },
    }


def _pooled(ys: list, ps: list, rys: list, rps: list) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ys:
        out["validator"] = mdl.binary_metrics(np.concatenate(ys), np.concatenate(ps))
    if rys:
        out["regime"] = mdl.multiclass_metrics(np.concatenate(rys), np.concatenate(rps))
    return out


def _totals(folds_: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for v in VARIANTS:
        rows = [f["backtest"][v] for f in folds_ if v in f["backtest"]]
        if not rows:
            continue
        sharpes = [r["sharpe"] for r in rows if r["sharpe"] is not None and math.isfinite(r["sharpe"])]
        dds = [r["max_drawdown_pct"] for r in rows if r["max_drawdown_pct"] is not None]
        out[v] = {
            "net_pnl": float(sum(r["net_pnl"] for r in rows)),
            "trades": int(sum(r["trades"] for r in rows)),
            "mean_sharpe": float(np.mean(sharpes)) if sharpes else None,
            "worst_max_drawdown_pct": float(max(dds)) if dds else None,
            "folds": len(rows),
        }
    return out


def _iso(ts: int) -> str:
    return pd.Timestamp(ts, unit="ns", tz="UTC").isoformat()


def write_report(report: Mapping[str, Any], out_dir: str | Path, title: str = "walk-forward") -> list[Path]:
    """walk_forward.json and walk_forward.html (plotly: calibration, per-fold AUC and Brier,
    per-fold net P&L of each backtest variant) in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js = out / "walk_forward.json"
    js.write_text(json.dumps(report, indent=2, default=str) + "\n")
    html = out / "walk_forward.html"
    html.write_text(_plots(report, title))
    return [js, html]


def _plots(report: Mapping[str, Any], title: str) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=(
            "validator calibration (pooled out of sample)",
            "validator AUC and Brier per fold",
            "backtest net P&L per fold",
            "regime accuracy per fold (vs majority class)",
        ),
    )
    cal = report.get("pooled", {}).get("validator", {}).get("calibration", [])
    if cal:
        fig.add_trace(
            go.Scatter(
                x=[c["predicted"] for c in cal],
                y=[c["observed"] for c in cal],
                mode="lines+markers",
                name="observed",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot"}), row=1, col=1
        )
    done = [f for f in report.get("folds", []) if "validator" in f]
    xs = [f"fold {f['fold']}" for f in done]
    fig.add_trace(go.Bar(x=xs, y=[f["validator"].get("auc") for f in done], name="AUC"), row=1, col=2)
    fig.add_trace(go.Bar(x=xs, y=[f["validator"].get("brier") for f in done], name="Brier"), row=1, col=2)
    bt = [f for f in done if "backtest" in f]
    for v in VARIANTS:
        fig.add_trace(
            go.Bar(x=[f"fold {f['fold']}" for f in bt], y=[f["backtest"][v]["net_pnl"] for f in bt], name=v),
            row=2,
            col=1,
        )
    rg = [f for f in done if "regime" in f]
    fig.add_trace(
        go.Bar(
            x=[f"fold {f['fold']}" for f in rg],
            y=[f["regime"]["accuracy"] for f in rg],
            name="regime accuracy",
        ),
        row=2,
        col=2,
    )
    fig.add_trace(
        go.Bar(
            x=[f"fold {f['fold']}" for f in rg],
            y=[f["regime"]["majority_accuracy"] for f in rg],
            name="majority class",
        ),
        row=2,
        col=2,
    )
    fig.update_layout(title=title, height=800, barmode="group")
    return fig.to_html(include_plotlyjs=True, full_html=True)
