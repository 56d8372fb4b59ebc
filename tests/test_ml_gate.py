"""The model gate in the backtest, the sizer formula, and the walk-forward evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scalper.backtest import Backtest, load_bars, prepare, summarize
from scalper.config import Config, with_overrides
from scalper.ml import evaluation as ev
from scalper.ml.dataset import collect
from scalper.ml.gate import BELOW_THRESHOLD, REGIME_DISALLOWS, ModelGate
from scalper.ml.sizing import kelly_multiplier

DAY = ev.NS_PER_DAY


@pytest.fixture(scope="module")
def cfg():
    return with_overrides(
        Config(),
        {
            "feed.synthetic.minutes": 4 * 1440,
            "ml.walk_forward_train_days": 2.5,
            "ml.walk_forward_test_days": 1.0,
            "ml.num_boost_round": 30,
        },
    )


@pytest.fixture(scope="module")
def market(cfg):
    bars = load_bars(cfg, synthetic=True, symbols=["AAA", "BBB"])
    signals, regime = collect(cfg, bars)
    data = {s: prepare(s, b, cfg) for s, b in bars.items()}
    return signals, regime, data


@pytest.fixture(scope="module")
def fitted(cfg, market):
    signals, regime, _ = market
    models, _ = ev.fit_fold_models(cfg, signals, regime)
    return models


def test_a_gate_refusing_everything_records_each_refusal_with_its_scores(cfg, market, fitted):
    _, _, data = market
    gate = ModelGate(cfg, validator=fitted["validator"], threshold=1.01)
    result = Backtest(cfg, gate=gate).run(data)
    assert result.signals and not result.trades
    assert {r.reason for r in result.signals} == {BELOW_THRESHOLD}
    assert all(0.0 <= r.scores["p_validator"] <= 1.0 for r in result.signals)
    assert all(r.models == {"validator": "fold0"} for r in result.signals)


def test_a_gate_accepting_everything_at_size_one_changes_no_trade(cfg, market, fitted):
    _, _, data = market
    plain = summarize(Backtest(cfg).run(data))
    gated = summarize(
        Backtest(cfg, gate=ModelGate(cfg, validator=fitted["validator"], threshold=0.0)).run(data)
    )
    assert gated["trade_fingerprint"] == plain["trade_fingerprint"]


def test_regime_switching_refuses_strategies_not_allowed_in_the_predicted_regime(cfg, market, fitted):
    _, _, data = market
    none_allowed = with_overrides(
        cfg, {"ml.regime_strategies": {"trending": [], "ranging": [], "volatile": []}}
    )
    gate = ModelGate(none_allowed, regime=fitted["regime"])
    result = Backtest(none_allowed, gate=gate).run(data)
    assert {r.reason for r in result.signals} == {REGIME_DISALLOWS}
    assert all(r.detail.endswith(("trending", "ranging", "volatile")) for r in result.signals)


def test_the_sizer_multiplier_scales_the_risk_and_stays_within_its_cap(cfg, market, fitted):
    _, _, data = market
    gate = ModelGate(cfg, validator=fitted["validator"], sizer=fitted["sizer"], threshold=0.0)
    result = Backtest(cfg, gate=gate).run(data)
    mults = [r.scores["size_multiplier"] for r in result.signals]
    assert all(0.0 <= m <= 2.0 for m in mults)
    assert all(r.reason == "sizer_zero" for r in result.signals if r.scores["size_multiplier"] == 0.0)


def test_kelly_multiplier_is_zero_without_edge_and_capped():
    cfg = Config()  # risk 0.5 %, kelly fraction 0.05, cap 2
    m = kelly_multiplier(np.array([-0.2, 0.0, 0.05, 10.0, np.nan]), 1.0, cfg)
    np.testing.assert_allclose(m, [0.0, 0.0, 0.05 * 0.05 / 0.005, 2.0, 0.0])
    with pytest.raises(ValueError, match="E\\[R\\^2\\]"):
        kelly_multiplier(np.array([0.1]), 0.0, cfg)


def test_folds_roll_by_the_test_window_without_overlap():
    f = ev.folds(0, 10 * DAY, 4, 2)
    assert f == [(0, 4 * DAY, 6 * DAY), (2 * DAY, 6 * DAY, 8 * DAY), (4 * DAY, 8 * DAY, 10 * DAY)]


def test_walk_forward_reports_out_of_sample_metrics_and_the_backtest_effect(cfg, market, tmp_path):
    signals, regime, data = market
    report = ev.walk_forward(cfg, signals, regime, data)
    fold = report["folds"][0]
    assert 0.0 <= fold["validator"]["auc"] <= 1.0 and fold["validator"]["brier"] > 0
    assert set(fold["backtest"]) == set(ev.VARIANTS)
    # the baseline variant is the plain backtest of the test window
    lo, hi = (int(np.datetime64(t[:19], "ns").astype(np.int64)) for t in fold["test"])
    plain = summarize(Backtest(cfg).run(ev._slice(data, lo, hi)))["overall"]
    assert fold["backtest"]["baseline"]["trades"] == plain["trades"]
    assert fold["backtest"]["baseline"]["net_pnl"] == pytest.approx(plain["net_pnl"])
    files = ev.write_report(report, tmp_path)
    assert json.loads(files[0].read_text())["folds"][0]["fold"] == 0
    assert "plotly" in files[1].read_text()[:5000].lower()


def test_fold_training_rows_have_labels_known_before_the_test_window(cfg, market, monkeypatch):
    signals, regime, _ = market
    seen = []
    real = ev.fit_fold_models

    def spy(cfg_, sig, reg, fold=0):
        seen.append((int(sig["exit_ts"].max()), int(reg["label_ts"].max())))
        return real(cfg_, sig, reg, fold)

    monkeypatch.setattr(ev, "fit_fold_models", spy)
    report = ev.walk_forward(cfg, signals, regime, None)
    for (sig_known, reg_known), fold in zip(seen, report["folds"], strict=True):
        test_start = int(np.datetime64(fold["test"][0][:19], "ns").astype(np.int64))
        assert sig_known <= test_start and reg_known <= test_start


def test_features_of_several_symbols_in_one_pass_equal_each_symbol_alone(cfg, market, fitted):
    """Live windows of all candidate symbols are stacked into one feature pass: every row,
    also one whose trailing windows reach before its history (NaN), is what it is alone."""
    from scalper.types import OrderType, Side, Signal

    _, _, data = market
    gate = ModelGate(cfg, validator=fitted["validator"])
    windows, signals = {}, []
    for sym, start in (("AAA", 500), ("BBB", 2_000)):
        cols = {k: np.asarray(v)[start : start + 150] for k, v in data[sym].cols.items()}
        windows[sym] = cols
        for row, strategy in ((3, "momentum"), (40, "breakout"), (100, "mean_reversion"), (149, "momentum")):
            close = float(cols["close"][row])
            limit = close * 0.999 if strategy == "mean_reversion" else None
            signals.append(
                Signal(
                    sym,
                    int(cols["timestamp"][row]),
                    strategy,
                    Side.BUY if row % 2 else Side.SELL,
                    OrderType.LIMIT if limit else OrderType.MARKET,
                    close * 0.99,
                    close * 1.02,
                    limit,
                )
            )
    signals = signals[::2] + signals[1::2]  # interleaved symbols: the answer keeps this order
    stacked = gate.signal_frame(signals, windows)
    alone = [gate.signal_frame([s], {s.symbol: windows[s.symbol]}) for s in signals]
    assert list(stacked.columns) == list(alone[0].columns)
    for k, one in enumerate(alone):
        np.testing.assert_allclose(
            stacked.iloc[k].to_numpy(float), one.iloc[0].to_numpy(float), rtol=1e-12, atol=1e-12
        )
    assert stacked.iloc[0].isna().any() and not stacked.iloc[-1].isna().any()  # row 3: too early for ret_60


class _Recording:
    """A model that records when it is asked and when its answer is waited on."""

    def __init__(self, model, log: list, served: bool = True):
        self.model, self.log, self.card = model, log, model.card
        self.rows: list[int] = []
        if served:
            self.ask = self._ask

    def _ask(self, features):
        self.log.append(("ask", self.card.name))

        def answer():
            self.log.append(("wait", self.card.name))
            return self.predict(features)

        return answer

    def predict(self, features):
        self.rows.append(len(features))
        return self.model.predict(features)


def test_served_regime_and_validator_are_both_asked_before_either_answer_is_awaited(cfg, market, fitted):
    """One round trip for the two (the sizer, which reads both answers, comes after)."""
    _, _, data = market
    log: list = []
    gate = ModelGate(
        cfg,
        validator=_Recording(fitted["validator"], log),
        regime=_Recording(fitted["regime"], log),
        sizer=_Recording(fitted["sizer"], log, served=False),
        threshold=0.0,
    )
    plain = ModelGate(
        cfg, validator=fitted["validator"], regime=fitted["regime"], sizer=fitted["sizer"], threshold=0.0
    )
    sigs = [r.signal for r in Backtest(cfg).run(data).signals[:20]]
    assert gate.evaluate(sigs, data) == plain.evaluate(sigs, data)
    asks = [k for k, (what, _) in enumerate(log) if what == "ask"]
    waits = [k for k, (what, _) in enumerate(log) if what == "wait"]
    assert len(asks) == 2 and len(waits) == 2 and max(asks) < min(waits)


def test_the_sizer_is_asked_only_about_signals_the_regime_and_validator_let_through(cfg, market, fitted):
    _, _, data = market
    sizer = _Recording(fitted["sizer"], [], served=False)
    gate = ModelGate(cfg, validator=fitted["validator"], regime=fitted["regime"], sizer=sizer)
    result = Backtest(cfg, gate=gate).run(data)
    let_through = [r for r in result.signals if r.reason not in (REGIME_DISALLOWS, BELOW_THRESHOLD)]
    refused = [r for r in result.signals if r.reason in (REGIME_DISALLOWS, BELOW_THRESHOLD)]
    assert refused and let_through and sum(sizer.rows) == len(let_through)
    assert all(r.scores["size_multiplier"] == 0.0 and "expected_r" not in r.scores for r in refused)
    assert all("expected_r" in r.scores for r in let_through)
