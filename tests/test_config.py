"""config.json schema: every bad field gets one clear line, and nothing starts on a bad config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scalper import cli
from scalper.config import Config, ConfigError, default_document, load, parse, validate

ROOT = Path(__file__).resolve().parents[1]


def doc_with(**changes) -> dict:
    """The default document with dotted-path changes applied."""
    doc = default_document()
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = doc
        for key in parents:
            node = node[key]
        node[leaf] = value
    return doc


def test_shipped_config_json_is_valid():
    cfg = load(ROOT / "config.json")
    assert isinstance(cfg, Config)
    assert cfg.symbols


def test_defaults_are_valid():
    assert validate(default_document()) == []


def test_too_small_warmup_names_the_field_the_bound_and_the_value():
    assert validate(doc_with(candles__warmup_bars=50)) == [
        "candles.warmup_bars: expected an integer >= 200, got 50"
    ]


def test_unknown_keys_are_errors_with_a_suggestion():
    doc = doc_with(candles__wamup_bars=300)
    assert validate(doc) == ["candles.wamup_bars: unknown field (did you mean 'warmup_bars'?)"]
    doc = default_document()
    doc["risky"] = {}
    assert validate(doc) == ["risky: unknown field (did you mean 'risk'?)"]


def test_wrong_type_says_what_was_expected_and_what_was_given():
    assert validate(doc_with(risk__starting_equity="lots")) == [
        'risk.starting_equity: expected a number, got "lots"'
    ]
    assert validate(doc_with(candles__dedupe_by_trade_id="yes")) == [
        'candles.dedupe_by_trade_id: expected a boolean, got "yes"'
    ]


def test_a_choice_lists_the_allowed_values():
    assert validate(doc_with(candles__empty_minutes="fill")) == [
        'candles.empty_minutes: expected one of "skip", "flat", got "fill"'
    ]


def test_list_items_are_located_by_index():
    assert validate(doc_with(symbols=["ES", ""])) == ['symbols[1]: expected a string of length >= 1, got ""']


def test_cross_field_rules_name_the_field():
    assert validate(doc_with(candles__warmup_bars=400, candles__ring_size=300)) == [
        "candles.ring_size: expected an integer >= warmup_bars (400), got 300"
    ]
    assert validate(doc_with(symbols=["ES", "ES"])) == [
        "symbols: expected distinct symbols, got ['ES', 'ES']"
    ]


def test_every_problem_is_reported_at_once():
    doc = doc_with(candles__warmup_bars=50, indicators__rsi_length=0, feed__kind="carrier-pigeon")
    doc["strategies"]["momentum"]["fast"] = 3
    problems = validate(doc)
    assert len(problems) == 4
    assert {p.split(":")[0] for p in problems} == {
        "candles.warmup_bars",
        "indicators.rsi_length",
        "feed.kind",
        "strategies.momentum.fast",
    }


def test_infinite_and_nan_numbers_are_refused_where_they_would_pass_the_bounds():
    # JSON's Infinity passes ">= 0" and then fails mid-run ("fill price must be > 0, got inf")
    assert validate(doc_with(execution__slippage_bps=float("inf"))) == [
        "execution.slippage_bps: expected a finite number, got inf"
    ]
    assert validate(doc_with(risk__max_position_pct=float("nan"))) == [
        "risk.max_position_pct: expected a finite number, got nan"
    ]
    raw = json.dumps(doc_with(risk__starting_equity=1.0)).replace(
        '"starting_equity": 1.0', '"starting_equity": Infinity'
    )
    with pytest.raises(ConfigError, match=r"risk\.starting_equity: expected a finite number"):
        parse(raw)


def test_synthetic_start_must_be_an_iso_date():
    assert validate(doc_with(feed__synthetic__start="yesterday")) == [
        "feed.synthetic.start: expected an ISO 8601 date or time (e.g. 2024-01-02T00:00:00Z), got 'yesterday'"
    ]
    assert validate(doc_with(feed__synthetic__start="2024-03-01")) == []


def test_an_instrument_problem_names_the_instrument_and_not_the_whole_table():
    doc = default_document()
    doc["instruments"]["BTCUSDT"] = {"multiplier": -1}
    assert validate(doc) == ["instruments.BTCUSDT.multiplier: expected a number > 0.0, got -1"]


def test_model_settings_report_every_problem_at_once():
    doc = doc_with(ml__validator_threshold=1.5, ml__registry="")
    doc["ml"]["regime_strategies"] = {"trending": ["momentm"], "trendy": ["breakout"]}
    assert validate(doc) == [
        'ml.registry: expected a string of length >= 1, got ""',
        "ml.validator_threshold: expected a number <= 1.0, got 1.5",
        'ml.regime_strategies.trending[0]: expected one of "momentum", "mean_reversion", "breakout", got "momentm"',
        'ml.regime_strategies: expected one of "trending", "ranging", "volatile", got "trendy"',
    ]


def test_regime_strategy_names_are_the_configured_strategies():
    import typing

    from scalper.config import StrategiesConfig, StrategyName

    assert set(typing.get_args(StrategyName)) == set(StrategiesConfig.__struct_fields__) - {"allow_short"}


def test_invalid_json_and_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse("{", "x.json")
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match=r"\(top level\): expected an object"):
        parse("[1, 2]")


def test_config_check_prints_ok_and_exits_0(capsys):
    assert cli.main(["config", "check", str(ROOT / "config.json")]) == 0
    assert capsys.readouterr().out.strip() == "OK"


def test_config_check_prints_one_line_per_problem_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc_with(candles__warmup_bars=50, candles__boundary_delay_ms=-1)))
    assert cli.main(["config", "check", str(path)]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [
        "candles.boundary_delay_ms: expected an integer >= 0, got -1",
        "candles.warmup_bars: expected an integer >= 200, got 50",
    ]


def test_commands_start_nothing_on_a_bad_config(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc_with(candles__warmup_bars=50)))
    out = tmp_path / "bars.parquet"
    ticks = ROOT / "data/samples/es_ticks_2013-09.parquet"
    with pytest.raises(SystemExit) as exc:
        cli.main(["--config", str(path), "candles", "--input", str(ticks), "--out", str(out)])
    assert exc.value.code == 2
    assert not out.exists()
    assert "candles.warmup_bars: expected an integer >= 200, got 50" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["--config", str(path), "run", "--run-id", "x"])
    assert exc.value.code == 2


def test_config_flag_works_before_or_after_the_subcommand(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc_with(candles__warmup_bars=50)))
    assert cli.main(["config", "check", "--config", str(path)]) == 2
    assert cli.main(["--config", str(path), "config", "check"]) == 2
    assert cli.main(["config", "check", "--config", str(ROOT / "config.json")]) == 0


def test_a_strategy_needing_an_indicator_that_is_not_computed_is_refused():
    assert validate(doc_with(strategies__momentum__trend_ema=55)) == [
        "strategies.momentum.trend_ema: expected one of indicators.ema_lengths [9, 21, 50, 200], got 55"
    ]


def test_overrides_are_validated_like_a_config_file():
    from scalper.config import Config, with_overrides

    cfg = with_overrides(Config(), {"risk.risk_per_trade_pct": 0.25, "strategies.momentum.stop_atr": 2.0})
    assert cfg.risk.risk_per_trade_pct == 0.25 and cfg.strategies.momentum.stop_atr == 2.0
    with pytest.raises(ConfigError) as exc:
        with_overrides(Config(), {"risk.risk_per_trad_pct": 1, "candles.warmup_bars": 10})
    assert exc.value.problems == [
        "risk.risk_per_trad_pct: unknown setting",
        "candles.warmup_bars: expected an integer >= 200, got 10",
    ]


def test_a_grid_is_the_cartesian_product_of_its_axes():
    from scalper.config import parse_grid

    assert parse_grid(["a.b=1,2", "c=x,true"]) == [
        {"a.b": 1, "c": "x"},
        {"a.b": 1, "c": True},
        {"a.b": 2, "c": "x"},
        {"a.b": 2, "c": True},
    ]
    with pytest.raises(ConfigError):
        parse_grid(["nope"])
