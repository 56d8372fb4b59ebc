"""`scalper report`: a self-contained offline page with the expected traces, a PNG, a summary."""

from __future__ import annotations

import argparse
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from scalper import backtest as bt
from scalper.cli_report import DEFAULT_MAX_CANDLES, register
from scalper.config import Config, default_document
from scalper.html_report import (
    MARKER_TRACES,
    MAX_CANDLES,
    _trades,
    calibration,
    chart_id,
    regime_stats,
    symbol_figure,
    with_model_columns,
    write_report,
)
from scalper.run_dir import read_run, write_backtest


def make_run(out: Path) -> Path:
    """A one-day synthetic backtest of two symbols written as a run directory with its bars."""
    doc = default_document()
    doc["symbols"] = ["AAA", "BBB"]
    doc["feed"]["synthetic"]["minutes"] = 1440
    cfg = msgspec.convert(doc, Config)
    data = {s: bt.prepare(s, b, cfg) for s, b in bt.load_bars(cfg, synthetic=True).items()}
    engine = bt.Backtest(cfg)
    result = engine.run(data)
    write_backtest(out, engine, result, data)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("report") / "run")


@pytest.fixture(scope="module")
def report(run_dir):
    return write_report(run_dir)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(page: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def test_the_page_loads_nothing_from_the_network(report):
    page = Path(report.html).read_text()
    found = tags(page)
    scripts = [a for t, a in found if t == "script"]
    assert scripts and all("src" not in a for a in scripts)  # plotly.js is inlined, no CDN
    assert not [a for t, a in found if t in ("link", "img", "iframe") and ("href" in a or "src" in a)]
    assert page.count("Plotly.newPlot(") == 3  # two symbols and the equity curve, drawn from inline data


def test_the_page_has_one_chart_per_symbol_the_equity_curve_and_the_tables(report):
    page = Path(report.html).read_text()
    ids = {a.get("id") for _, a in tags(page)}
    assert {chart_id("AAA"), chart_id("BBB"), "equity", "by-strategy", "by-symbol", "trades"} <= ids
    assert report.candles == {"AAA": 1440, "BBB": 1440}
    assert report.notes == []


def test_the_symbol_chart_holds_candles_overlays_panes_and_every_marker(run_dir):
    run = read_run(run_dir)
    fig, n = symbol_figure(run, "AAA")
    names = [t.name for t in fig.data]
    for name in (
        "candles",
        "EMA 9",
        "EMA 21",
        "EMA 50",
        "EMA 200",
        "VWAP",
        "BB upper",
        "BB mid",
        "BB lower",
        "volume",
        "volume SMA 20",
        "RSI 14",
        "ATR 14",
        *MARKER_TRACES,
    ):
        assert names.count(name) == 1, name
    by = {t.name: t for t in fig.data}
    assert n == len(by["candles"].open) == len(run.bars["AAA"])
    sig = run.signals[run.signals["symbol"] == "AAA"]
    trades = run.trades[run.trades["symbol"] == "AAA"]
    assert len(by["signals accepted"].x) == int(sig["approved"].sum()) > 0
    assert len(by["signals refused"].x) == int((~sig["approved"]).sum()) > 0
    assert len(by["entries"].x) == len(by["exits"].x) == len(trades) > 0
    # one segment (two points and a gap) per trade for its stop and its target
    assert len(by["stops"].x) == len(by["targets"].x) == 3 * len(trades)
    # the refusal reason is on hover
    refused = sig[~sig["approved"]].iloc[0]
    assert refused["decision"] in by["signals refused"].hovertext[0]
    # the panes: volume in row 2, RSI in row 3, ATR in row 4 (their own y axes)
    assert (by["volume"].yaxis, by["RSI 14"].yaxis, by["ATR 14"].yaxis) == ("y2", "y3", "y4")


def test_a_long_run_shows_the_last_window_of_candles_and_says_so(run_dir):
    run = read_run(run_dir)
    fig, n = symbol_figure(run, "BBB", max_candles=300)
    by = {t.name: t for t in fig.data}
    assert n == len(by["candles"].open) == 300
    last = run.bars["BBB"]["timestamp"].to_numpy()[-300:]
    np.testing.assert_array_equal(np.asarray(by["candles"].x), last / 1e6)  # epoch ms on a date axis
    sig = run.signals[(run.signals["symbol"] == "BBB") & (run.signals["ts"] >= last[0])]
    assert len(by["signals accepted"].x) + len(by["signals refused"].x) == len(sig)


def test_write_report_with_a_window_notes_it_on_the_page(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    files = write_report(copy, max_candles=200)
    assert files.candles == {"AAA": 200, "BBB": 200}
    page = Path(files.html).read_text()
    assert "showing the last 200 of 1,440 bars" in page
    assert DEFAULT_MAX_CANDLES == MAX_CANDLES


def test_equity_png_is_an_image_with_content(report):
    from matplotlib.image import imread

    img = imread(report.png)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert float(np.asarray(img)[..., :3].std()) > 0.01


def test_regime_stats_and_calibration_appear_once_signals_carry_them(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    sig = pd.read_parquet(copy / "signals.parquet")
    sig["regime"] = np.where(np.arange(len(sig)) % 2 == 0, "trending", "ranging")
    sig["confidence"] = 0.55
    sig.to_parquet(copy / "signals.parquet", index=False)
    files = write_report(copy)
    page = Path(files.html).read_text()
    ids = {a.get("id") for _, a in tags(page)}
    assert {"by-regime", "calibration", "calibration-table"} <= ids
    run = read_run(copy)
    col, table = calibration(run, _trades(run))
    trades = pd.read_parquet(copy / "trades.parquet")
    assert col == "confidence" and len(table) == 1  # every score in one bin
    assert int(table["trades"].iat[0]) == len(trades)
    assert float(table["win_rate"].iat[0]) == pytest.approx(float((trades["pnl"] > 0).mean()))


def test_a_run_with_regimes_but_no_trades_gets_a_regime_table(run_dir, tmp_path):
    # every signal refused by the models: regimes on the signals, no trade to group
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    sig = pd.read_parquet(copy / "signals.parquet")
    sig["regime"] = "ranging"
    sig["approved"] = False
    sig.to_parquet(copy / "signals.parquet", index=False)
    pd.read_parquet(copy / "trades.parquet").iloc[:0].to_parquet(copy / "trades.parquet", index=False)
    table = regime_stats(read_run(copy), [])
    assert table[""].tolist() == ["ranging"]
    assert int(table["signals"].iat[0]) == len(sig) and int(table["approved"].iat[0]) == 0
    assert pd.isna(table["trades"].iat[0])
    page = Path(write_report(copy).html).read_text()
    assert "by-regime" in {a.get("id") for _, a in tags(page)}


def test_the_model_gates_scores_give_the_regime_table_and_the_calibration(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    sig = pd.read_parquet(copy / "signals.parquet")
    sig["model_scores"] = [
        json.dumps({"p_trending": 0.7, "p_ranging": 0.2, "p_volatile": 0.1, "p_validator": 0.62})
        if k % 3
        else json.dumps({"p_trending": 0.1, "p_ranging": 0.3, "p_volatile": 0.6, "p_validator": 0.31})
        for k in range(len(sig))
    ]
    sig.to_parquet(copy / "signals.parquet", index=False)
    expanded = with_model_columns(sig)
    assert expanded["regime"].tolist() == ["volatile" if k % 3 == 0 else "trending" for k in range(len(sig))]
    page = Path(write_report(copy).html).read_text()
    ids = {a.get("id") for _, a in tags(page)}
    assert {"by-regime", "calibration", "calibration-table"} <= ids
    assert "Model p_validator against outcomes" in page


def test_a_run_without_bars_still_gets_a_report_with_a_note(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "bars")
    (copy / "bars_with_indicators.parquet").unlink()
    files = write_report(copy)
    assert files.candles == {}
    assert any("no bars" in n for n in files.notes)
    assert Path(files.html).exists()


def test_report_command_prints_the_summary_and_the_path(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    parser = argparse.ArgumentParser(prog="scalper")
    register(parser.add_subparsers(dest="command"), argparse.ArgumentParser(add_help=False))
    args = parser.parse_args(["report", str(copy)])
    assert args.func(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(copy / "report.html")
    assert any("momentum" in line for line in out)  # the per-strategy summary table
    args = parser.parse_args(["report", str(tmp_path / "missing")])
    assert args.func(args) == 3
