"""Features are causal: cutting the data after bar i leaves every feature of bars <= i unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from scalper.backtest import load_bars, prepare
from scalper.config import Config, with_overrides
from scalper.ml.dataset import collect_symbol
from scalper.ml.features import bar_features, feature_names, market_feature_names


@pytest.fixture(scope="module")
def cfg():
    return with_overrides(Config(), {"feed.synthetic.minutes": 900})


@pytest.fixture(scope="module")
def bars(cfg):
    return load_bars(cfg, synthetic=True, symbols=["AAA"])["AAA"]


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


@pytest.mark.parametrize("cut", [260, 520, 899])
def test_cutting_the_data_after_bar_i_leaves_the_features_up_to_i_unchanged(cfg, bars, cut):
    full = bar_features(prepare("AAA", bars, cfg).cols, cfg)
    part = bar_features(prepare("AAA", bars.iloc[: cut + 1], cfg).cols, cfg)
    changed = [name for name in market_feature_names(cfg) if not same(full[name][: cut + 1], part[name])]
    assert changed == []


def test_a_feature_that_peeks_ahead_would_be_caught(cfg, bars):
    # the comparison above is not vacuous: a centered window differs at the cut
    close = bars["close"].to_numpy()
    import pandas as pd

    full = pd.Series(close).rolling(5, center=True).mean().to_numpy()
    part = pd.Series(close[:300]).rolling(5, center=True).mean().to_numpy()
    assert not same(full[:300], part)


def test_signal_features_do_not_change_when_the_data_is_cut_after_the_signal(cfg, bars):
    full, _ = collect_symbol(cfg, "AAA", bars)
    assert len(full) > 10
    cut_ts = int(full["ts"].iloc[len(full) // 2])
    cut_at = int(np.searchsorted(bars["timestamp"].to_numpy(), cut_ts)) + 1
    part, _ = collect_symbol(cfg, "AAA", bars.iloc[:cut_at])
    names = feature_names(cfg)
    a = full[full["ts"] <= cut_ts].reset_index(drop=True)
    b = part[part["ts"] <= cut_ts].reset_index(drop=True)
    assert len(a) == len(b)
    assert a[["ts", "strategy"]].equals(b[["ts", "strategy"]])
    for name in names:
        assert same(a[name].to_numpy(float), b[name].to_numpy(float)), name


def test_features_are_scale_free_across_price_levels(cfg, bars):
    # the same path at 10x the price gives the same (price-normalised) features
    scaled = bars.copy()
    for c in ("open", "high", "low", "close", "vwap"):
        scaled[c] = scaled[c] * 10
    a = bar_features(prepare("AAA", bars, cfg).cols, cfg)
    b = bar_features(prepare("AAA", scaled, cfg).cols, cfg)
    for name in ("dist_ema_21", "rsi", "atr_pct", "bb_position", "ret_15", "er_60"):
        ok = np.isfinite(a[name])
        np.testing.assert_allclose(a[name][ok], b[name][ok], rtol=1e-6, atol=1e-6, err_msg=name)
