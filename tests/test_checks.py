"""The user-runnable bias checks: look-ahead (cut the data at signal bars, nothing before the
cut may change) and recursive (how much start-up history each indicator needs)."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import numpy as np
import pytest

from scalper import backtest as bt
from scalper import checks, indicators
from scalper import strategies as strategies_pkg
from scalper.config import Config, default_document
from scalper.strategies import Momentum, SignalArrays
from scalper.strategies.base import market_arrays, side_from


@pytest.fixture(scope="module")
def es():
    cfg = Config()
    return cfg, bt.load_bars(cfg)


@pytest.fixture(scope="module")
def synthetic():
    doc = default_document()
    doc["symbols"] = ["AAA", "BBB"]
    doc["feed"]["synthetic"]["minutes"] = 2 * 1440
    doc["risk"].update(max_drawdown_pct=90.0, daily_loss_limit_pct=90.0, cooldown_bars=0)
    cfg = msgspec.convert(doc, Config)
    return cfg, bt.load_bars(cfg, synthetic=True)


class PeekNextClose(Momentum):
    """A deliberately leaky strategy: buys when the NEXT bar closes higher (np.roll by -1)."""

    name = "peek_next_close"

    def __init__(self, cfg: Config):
        self.name = "momentum"  # borrow the momentum config section
        super().__init__(cfg)
        del self.name

    def rule(self, cols: Mapping[str, np.ndarray]) -> SignalArrays:
        close = np.asarray(cols["close"], dtype=np.float64)
        atr = np.asarray(cols[self.atr_col], dtype=np.float64)
        nxt = np.roll(close, -1)  # row i sees close[i + 1]: look-ahead
        long = (nxt - close > 0.5 * atr) & (atr > 0)
        short = (close - nxt > 0.5 * atr) & (atr > 0)
        return market_arrays(side_from(long, short), close, atr, self.stop_atr, self.target_atr)


@pytest.fixture
def leaky_strategy(monkeypatch):
    monkeypatch.setitem(strategies_pkg.STRATEGIES, PeekNextClose.name, PeekNextClose)
    return PeekNextClose.name


@pytest.fixture
def leaky_indicator(monkeypatch):
    """compute_batch plus a centered 21-bar mean of the close (reads 10 bars ahead)."""
    original = indicators.compute_batch

    def compute_batch(bars, cfg):
        out = original(bars, cfg)
        close = bars["close"].astype("float64").reset_index(drop=True)
        out["close_centered_21"] = close.rolling(21, center=True, min_periods=1).mean().to_numpy()
        return out

    # backtest.prepare imports compute_batch from scalper.indicators at call time
    monkeypatch.setattr(indicators, "compute_batch", compute_batch)
    return "close_centered_21"


# ------------------------------------------------------------------------------------ look-ahead


def test_lookahead_check_finds_no_bias_in_the_strategies_on_the_bundled_es_data(es):
    cfg, bars = es
    seen = []
    report = checks.lookahead_check(cfg, bars, max_cuts=12, progress=lambda i, n: seen.append((i, n)))
    assert report.ok, checks.format_lookahead(report)
    assert report.cuts_checked == 12 and seen[-1] == (12, 12)
    assert report.signal_bars > 12 and report.failed_cuts == 0
    assert report.signals_checked > 0 and report.trades_checked > 0 and report.fills_checked > 0
    assert report.values_checked > 0
    assert set(report.strategies) == {"momentum", "mean_reversion", "breakout"}
    # the sample is spread over the signal bars, first to last, and is the same every time
    assert report.cuts[0].ts < report.cuts[-1].ts
    assert [c.ts for c in report.cuts] == sorted({c.ts for c in report.cuts})
    text = checks.format_lookahead(report)
    assert "OK - no look-ahead bias found in 12 cuts" in text


def test_lookahead_check_passes_on_prepared_synthetic_data_in_both_indicator_modes(synthetic):
    cfg, bars = synthetic
    data = {s: bt.prepare(s, b, cfg) for s, b in bars.items()}
    exact = checks.lookahead_check(cfg, data, max_cuts=6)
    assert exact.ok, checks.format_lookahead(exact)
    assert exact.symbols == ["AAA", "BBB"] and exact.indicator_mode == "exact"
    windowed = checks.lookahead_check(cfg, data, max_cuts=6, indicator_window=300)
    assert windowed.ok, checks.format_lookahead(windowed)
    assert windowed.indicator_mode == "window=300"
    assert windowed.values_checked < exact.values_checked  # only the window before each cut
    assert [c.ts for c in windowed.cuts] == [c.ts for c in exact.cuts]


def test_a_strategy_that_reads_the_next_bars_close_is_caught_and_named(es, leaky_strategy):
    cfg, bars = es
    report = checks.lookahead_check(cfg, bars, strategies=["momentum", leaky_strategy], max_cuts=8)
    assert not report.ok
    assert report.biased_strategies == [leaky_strategy]
    assert report.biased_indicators == []  # the indicators are causal; only the strategy peeks
    failed = [c for c in report.cuts if not c.ok]
    assert failed
    first = failed[0].decision_diffs[0]
    assert first.kind == "signal" and first.strategy == leaky_strategy
    assert first.ts == failed[0].ts  # the signal at the cut bar is the one that peeked
    text = checks.format_lookahead(report)
    assert "LOOK-AHEAD BIAS" in text and leaky_strategy in text


def test_an_indicator_with_a_centered_window_is_caught_as_an_indicator_difference(es, leaky_indicator):
    cfg, bars = es
    ts = bars["ES"]["timestamp"].to_numpy()
    report = checks.lookahead_check(cfg, bars, max_cuts=4)
    assert not report.ok and report.failed_cuts >= 3
    assert report.biased_indicators == [leaky_indicator]
    for cut in report.cuts:
        after = int((ts > cut.ts).sum())  # a cut at the end of the data cannot show a leak
        assert cut.ok == (after == 0)
        if after:
            (diff,) = cut.indicator_diffs
            assert diff.column == leaky_indicator and diff.symbol == "ES"
            assert diff.rows == min(10, after)  # the last bars before the cut read bars after it
            assert diff.ts == ts[diff.row] and diff.full != diff.cut
    assert f"indicator ES {leaky_indicator}" in checks.format_lookahead(report)


def test_the_windowed_indicator_check_catches_the_centered_window_too(synthetic, leaky_indicator):
    cfg, bars = synthetic
    report = checks.lookahead_check(cfg, bars, max_cuts=3, indicator_window=200)
    assert not report.ok
    assert report.biased_indicators == [leaky_indicator]


def test_a_flat_bar_after_the_cut_does_not_change_the_atr_before_it(synthetic):
    cfg, bars = synthetic
    frame = bars["AAA"].copy()
    assert not (frame["high"] == frame["low"]).any()
    last = len(frame) - 1
    frame.loc[last, ["open", "high", "low"]] = frame.loc[last, "close"]
    report = checks.lookahead_check(cfg, {"AAA": frame}, max_cuts=2)
    assert report.ok, checks.format_lookahead(report)


def test_lookahead_report_round_trips_through_json(synthetic, leaky_indicator):
    cfg, bars = synthetic
    report = checks.lookahead_check(cfg, {"AAA": bars["AAA"]}, max_cuts=2)
    again = msgspec.json.decode(msgspec.json.encode(report), type=checks.LookaheadReport)
    assert again.ok is False and again.biased_indicators == [leaky_indicator]
    assert again.cuts[0].indicator_diffs[0].column == leaky_indicator


# ------------------------------------------------------------------------------------ recursive


def test_recursive_check_shows_ema_200_needs_far_more_history_than_an_sma_20(es):
    cfg, bars = es
    report = checks.recursive_check(cfg, bars, sample=30)
    needs = {r.column: r.history_needed for r in report.indicators}
    assert needs["bb_mid"] == needs["volume_sma_20"] == 20  # an SMA needs exactly its window
    assert needs["ema_200"] > 200 and report.slowest == "ema_200"
    assert needs["ema_200"] > needs["ema_50"] > needs["ema_21"]
    # 2,264 bars: lengths up to 1,132 can be compared against a settled reference
    assert report.lengths == [200, 400, 800] and report.skipped_lengths == [1600, 3200]
    ema = next(r for r in report.indicators if r.column == "ema_200")
    assert ema.stats[0].max_rel > 1e-4 > ema.stats[-1].max_rel
    assert report.warmup_bars == 1200 and report.warmup_ok is True and report.ok
    assert report.history_needed is not None and report.history_needed <= 1200
    text = checks.format_recursive(report)
    assert "candles.warmup_bars = 1200: enough" in text and "ema_200" in text
    again = msgspec.json.decode(msgspec.json.encode(report), type=checks.RecursiveReport)
    assert again.history_needed == report.history_needed


def test_recursive_check_says_when_the_configured_warmup_is_too_short(synthetic):
    cfg, bars = synthetic
    doc = msgspec.to_builtins(cfg)
    doc["candles"]["warmup_bars"] = 200
    short = msgspec.convert(doc, Config)
    report = checks.recursive_check(short, bars, lengths=(200, 400, 800), sample=15)
    assert report.warmup_ok is False and not report.ok
    assert "NOT ENOUGH" in checks.format_recursive(report)
    # the session VWAP is exact once the frame holds its whole session
    vwap = next(r for r in report.indicators if r.column == "session_vwap")
    assert vwap.history_needed == 1 and vwap.note


def test_check_commands_exit_0_when_no_bias_is_found(capsys, rules_only_config):
    from scalper import cli

    assert cli.main(["check", "lookahead", "--config", rules_only_config, "--max-cuts", "3"]) == 0
    assert "no look-ahead bias found" in capsys.readouterr().out
    assert cli.main(["check", "recursive", "--config", rules_only_config, "--sample", "40"]) == 0
    assert "candles.warmup_bars = 1200: enough" in capsys.readouterr().out


def test_check_lookahead_exits_1_and_writes_the_report_when_a_strategy_peeks(
    leaky_strategy, tmp_path, capsys, rules_only_config
):
    from scalper import cli

    report = tmp_path / "report.json"
    args = ["check", "lookahead", "--config", rules_only_config, "--max-cuts", "3", "--json", str(report)]
    assert cli.main([*args, "--strategies", "momentum", leaky_strategy]) == 1
    assert "LOOK-AHEAD BIAS" in capsys.readouterr().out
    assert msgspec.json.decode(report.read_bytes())["ok"] is False


class _LastCloseGate:
    """A deliberately leaky model gate: each signal's score is the LAST close of the data it is
    given (a feature computed over the whole series)."""

    def __init__(self):
        self.models = {"validator": "leaky"}

    def evaluate(self, signals, data):
        from scalper.ml.gate import GateDecision

        last = {s: float(sd.cols["close"][-1]) for s, sd in data.items()}
        return [GateDecision(True, "accepted", scores={"p_win": last[s.symbol]}) for s in signals]


def test_lookahead_check_with_the_models_compares_their_scores_and_finds_no_bias(fitted_models):
    from scalper.ml.gate import ModelGate

    cfg, data, models = fitted_models
    gate = ModelGate(cfg, validator=models["validator"], regime=models["regime"], sizer=models["sizer"])
    report = checks.lookahead_check(cfg, data, max_cuts=12, gate=gate)
    assert report.ok, checks.format_lookahead(report)
    assert report.models == gate.models and report.signals_checked > 0
    assert "models validator" in checks.format_lookahead(report)


def test_check_lookahead_with_the_shipped_config_checks_the_registrys_models(
    tmp_path, capsys, model_registry
):
    from conftest import shipped_config

    from scalper import cli

    config = shipped_config(tmp_path, registry=str(model_registry))
    assert cli.main(["check", "lookahead", "--config", config, "--max-cuts", "3"]) == 0
    out = capsys.readouterr().out
    assert "models validator v0001, regime v0001, sizer v0001" in out and "no look-ahead bias" in out


def test_a_model_gate_whose_score_sees_past_the_cut_is_caught_on_the_score(synthetic):
    cfg, bars = synthetic
    report = checks.lookahead_check(cfg, bars, max_cuts=6, gate=_LastCloseGate())
    assert not report.ok
    diffs = [d for c in report.cuts for d in c.decision_diffs]
    assert diffs and {d.field for d in diffs if d.issue == "differs"} >= {"scores.p_win"}
