"""The user's data files: a bad one is one clear error when it is read (file, column, line,
reason; exit 3; nothing started), and a file without a symbol column says what it is traded as."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from scalper import cli

T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000  # ms, on a minute


def good_bars(n: int = 300) -> pd.DataFrame:
    """ccxt/freqtrade-style 1-minute bars: timestamp (ms), open, high, low, close, volume."""
    rng = np.random.default_rng(1)
    close = 100 + np.cumsum(rng.normal(0, 0.1, n))
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame(
        {
            "timestamp": T0 + 60_000 * np.arange(n),
            "open": open_,
            "high": np.maximum(open_, close) + 0.05,
            "low": np.minimum(open_, close) - 0.05,
            "close": close,
            "volume": rng.uniform(1, 10, n),
        }
    )


def _nan_close(d):
    d.loc[5, "close"] = np.nan  # line 7 of the file (header on line 1)
    return d


def _off_minute(d):
    d["timestamp"] += 30_000
    return d


def _duplicate(d):
    return pd.concat([d.iloc[:10], d.iloc[[4]], d.iloc[10:]])


def _high_below_low(d):
    d.loc[7, "high"] = d.loc[7, "low"] - 1
    return d


def _negative_volume(d):
    d.loc[8, "volume"] = -1.0
    return d


def _zero_close(d):
    d.loc[9, ["close", "low"]] = 0.0
    return d


def _five_minutes(d):
    d["timestamp"] = T0 + 300_000 * np.arange(len(d))
    return d


def _not_a_number(d):
    d["close"] = d["close"].astype(object)
    d.loc[3, "close"] = "abc"
    return d


BAD_BARS = {
    "nan_close": (_nan_close, ["'close'", "line 7", "not a price"]),
    "off_minute": (_off_minute, ["'timestamp'", "line 2", "not on a minute boundary"]),
    "duplicate": (_duplicate, ["two bars of", "line 6", "line 12"]),
    "high_below_low": (_high_below_low, ["line 9", "is below low"]),
    "negative_volume": (_negative_volume, ["'volume'", "line 10", "negative volume"]),
    "zero_close": (_zero_close, ["line 11", "not a price (<= 0)"]),
    "five_minutes": (_five_minutes, ["5-minute bars", "scalper needs 1-minute bars"]),
    "not_a_number": (_not_a_number, ["'close'", "line 5", "'abc'", "not numbers"]),
}


@pytest.mark.parametrize("case", sorted(BAD_BARS))
def test_a_bad_bar_file_is_one_error_naming_file_column_and_line_before_anything_runs(
    case, tmp_path, capsys, rules_only_config
):
    change, says = BAD_BARS[case]
    bars = change(good_bars())
    path = tmp_path / f"{case}.csv"
    bars.to_csv(path, index=False)
    out = tmp_path / "run"
    args = ["backtest", "--config", rules_only_config, "--data", str(path), "--symbol", "BTCUSDT"]
    assert cli.main([*args, "--out", str(out)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}:"), err
    for part in says:
        assert part in err[0], (part, err[0])
    assert not out.exists()  # nothing started, nothing half-written


def test_the_same_file_without_the_defect_backtests(tmp_path, capsys, rules_only_config):
    path = tmp_path / "BTC_USDT-1m.csv"
    good_bars().to_csv(path, index=False)
    out = tmp_path / "run"
    args = ["backtest", "--config", rules_only_config, "--data", str(path), "--symbol", "BTCUSDT"]
    assert cli.main([*args, "--out", str(out), "--no-verify"]) == 0
    assert json.loads((out / "summary.json").read_text())["symbols"] == ["BTCUSDT"]
    assert "backtest BTCUSDT" in capsys.readouterr().out


def _bad_ticks(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,price,volume\n1378072800100,1630.25,3\n1378072800200,abc,1\n")
    return path


def test_a_ticks_file_with_a_non_number_is_one_error_in_every_command(tmp_path, capsys, rules_only_config):
    path = _bad_ticks(tmp_path)
    commands = [
        ["candles", "--input", str(path), "--out", str(tmp_path / "bars.parquet")],
        ["backtest", "--data", str(path), "--out", str(tmp_path / "run")],
        ["check", "lookahead", "--data", str(path)],
    ]
    for command in commands:
        assert cli.main([*command, "--config", rules_only_config]) == cli.EXIT_BAD_INPUT, command
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"error: {path}: column 'price' (replay.columns.price) has 1 value(s) that are not numbers, "
            "the first 'abc' at line 3"
        ], command
    assert not (tmp_path / "run").exists() and not (tmp_path / "bars.parquet").exists()


@pytest.mark.parametrize("content", ["", "timestamp,price,volume\n"])
def test_an_empty_file_is_named(tmp_path, capsys, rules_only_config, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    for command in (["backtest", "--data", str(path)], ["candles", "--input", str(path), "--out", "x.csv"]):
        assert cli.main([*command, "--config", rules_only_config]) == cli.EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {path}: the file is empty"), err


def test_a_file_without_a_symbol_column_says_what_it_is_traded_as(
    tmp_path, capsys, caplog, rules_only_config
):
    path = tmp_path / "BTC_USDT-1m.csv"
    good_bars().to_csv(path, index=False)
    base = ["backtest", "--config", rules_only_config, "--data", str(path), "--no-verify"]
    with caplog.at_level(logging.WARNING, logger="scalper.backtest"):
        assert cli.main([*base, "--out", str(tmp_path / "es")]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "no symbol column ('symbol')" in m
        and "traded as ES" in m
        and "instruments.ES (multiplier 50" in m
        and "--symbol NAME" in m
        for m in warned
    ), warned
    capsys.readouterr()
    # --symbols cannot name it; the refusal says why and what to use instead
    assert cli.main([*base, "--symbols", "BTCUSDT", "--out", str(tmp_path / "x")]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no column 'symbol' (replay.columns.symbol)" in err and "--symbol NAME" in err
    assert "is null" not in err
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scalper.backtest"):
        assert cli.main([*base, "--symbol", "BTCUSDT", "--out", str(tmp_path / "btc")]) == 0
    assert not [r for r in caplog.records if "no symbol column" in r.getMessage()]
    summary = json.loads((tmp_path / "btc" / "summary.json").read_text())
    assert summary["symbols"] == ["BTCUSDT"]


def test_symbol_keeps_one_symbol_of_a_file_with_a_symbol_column(tmp_path, capsys, rules_only_config):
    a, b = good_bars().assign(symbol="AAA"), good_bars().assign(symbol="BBB")
    path = tmp_path / "two.csv"
    pd.concat([a, b]).sort_values("timestamp", kind="stable").to_csv(path, index=False)
    out = tmp_path / "run"
    args = ["backtest", "--config", rules_only_config, "--data", str(path), "--symbol", "BBB"]
    assert cli.main([*args, "--out", str(out), "--no-verify"]) == 0
    assert json.loads((out / "summary.json").read_text())["symbols"] == ["BBB"]


def test_collect_reads_a_file_without_a_symbol_column_under_the_symbol_given(
    tmp_path, capsys, rules_only_config
):
    path = tmp_path / "BTC_USDT-1m.csv"
    good_bars().to_csv(path, index=False)
    out = tmp_path / "ds"
    args = ["collect", "--config", rules_only_config, "--data", str(path), "--symbol", "BTCUSDT"]
    assert cli.main([*args, "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["symbols"] == ["BTCUSDT"]
