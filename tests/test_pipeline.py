"""`scalper run` (feed -> candles -> streaming indicators) and the file commands agree with each other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from scalper import cli, pipeline
from scalper.config import Config, default_document
from scalper.feeds import make_feed
from scalper.indicators import compute_batch, indicator_columns
from scalper.store import BarStore
from scalper.types import BAR_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data/samples/es_ticks_2013-09.parquet"


def config(tmp_path: Path, **sections) -> Config:
    doc = default_document()
    doc["feed"]["replay"]["path"] = str(SAMPLE)
    doc["store"]["runs_dir"] = str(tmp_path / "runs")
    for key, value in sections.items():
        doc[key] = value if not isinstance(value, dict) else {**doc[key], **value}
    return msgspec.convert(doc, Config)


@pytest.fixture(scope="module")
def es_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    cfg = config(tmp)
    summary = pipeline.run(cfg, run_id="es", progress=False)
    return tmp, cfg, summary


@pytest.fixture(scope="module")
def es_file_bars(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "bars.parquet"
    assert (
        cli.main(
            ["--config", str(ROOT / "config.json"), "candles", "--input", str(SAMPLE), "--out", str(out)]
        )
        == 0
    )
    return pd.read_parquet(out)


def test_run_replays_the_bundled_ticks_into_a_complete_run_directory(es_run):
    tmp, _, summary = es_run
    run_dir = tmp / "runs" / "es"
    assert {p.name for p in run_dir.iterdir()} >= {
        "summary.json",
        "bars_with_indicators.parquet",
        "bars",
        "config.json",
    }
    assert json.loads((run_dir / "summary.json").read_text()) == summary
    assert summary["ticks_in"] == 500_000
    assert summary["bars_out"] == summary["symbols"]["ES"]["bars"] == 2264
    assert summary["symbols"]["ES"]["indicators_ready"] is True
    printed = pipeline.format_summary(summary)
    assert "ticks in 500,000, bars out 2,264" in printed


def test_bars_through_the_feed_equal_the_whole_file_conversion(es_run, es_file_bars):
    tmp, _, _ = es_run
    fed = pd.read_parquet(tmp / "runs/es/bars_with_indicators.parquet")
    cols = ["symbol", *BAR_COLUMNS]
    pd.testing.assert_frame_equal(fed[cols], es_file_bars[cols])


def test_streaming_indicators_in_the_run_equal_pandas_ta_batch(es_run):
    tmp, cfg, _ = es_run
    fed = pd.read_parquet(tmp / "runs/es/bars_with_indicators.parquet")
    bars = fed[list(BAR_COLUMNS)].copy()
    bars["timestamp"] = bars["timestamp"].astype("int64")
    batch = compute_batch(bars, cfg.indicators)
    for name in indicator_columns(cfg.indicators):
        np.testing.assert_allclose(fed[name], batch[name], rtol=1e-12, equal_nan=True, err_msg=name)


def test_run_bars_are_in_the_bar_store(es_run):
    tmp, _, _ = es_run
    stored = BarStore(str(tmp / "runs/es/bars")).read("ES")
    fed = pd.read_parquet(tmp / "runs/es/bars_with_indicators.parquet")
    assert len(stored) == len(fed)
    np.testing.assert_array_equal(stored["timestamp"].to_numpy(), fed["timestamp"].astype("int64").to_numpy())
    np.testing.assert_array_equal(stored["close"].to_numpy(), fed["close"].to_numpy())


def test_run_on_the_synthetic_market_makes_bars_for_every_symbol(tmp_path):
    cfg = config(
        tmp_path,
        symbols=["AAA", "BBB", "CCC"],
        feed={"kind": "synthetic", "synthetic": {**default_document()["feed"]["synthetic"], "minutes": 90}},
    )
    summary = pipeline.run(cfg, run_id="syn", progress=False)
    for sym in ("AAA", "BBB", "CCC"):
        assert summary["symbols"][sym]["bars"] >= 85
    assert sum(summary["rejected"].values()) == 0


def test_indicators_command_batch_and_streaming_give_the_same_numbers(es_file_bars, tmp_path):
    src = tmp_path / "bars.parquet"
    es_file_bars.to_parquet(src)
    for flag in ([], ["--streaming"]):
        out = tmp_path / f"ind{len(flag)}.parquet"
        assert (
            cli.main(
                [
                    "--config",
                    str(ROOT / "config.json"),
                    "indicators",
                    "--input",
                    str(src),
                    "--out",
                    str(out),
                    *flag,
                ]
            )
            == 0
        )
    batch, stream = pd.read_parquet(tmp_path / "ind0.parquet"), pd.read_parquet(tmp_path / "ind1.parquet")
    assert list(batch.columns) == ["symbol", *BAR_COLUMNS, *indicator_columns(Config().indicators)]
    pd.testing.assert_frame_equal(batch[["symbol", *BAR_COLUMNS]], es_file_bars[["symbol", *BAR_COLUMNS]])
    pd.testing.assert_frame_equal(batch, stream, rtol=1e-12)


def test_candles_command_reads_csv_with_its_own_column_names(tmp_path, es_file_bars):
    raw = pd.read_parquet(SAMPLE)
    csv = tmp_path / "ticks.csv"
    raw.head(20_000).rename(columns={"timestamp": "time", "price": "px", "volume": "qty"}).assign(
        time=lambda d: d["time"].astype("int64") // 1_000_000
    ).to_csv(csv, index=False)
    out = tmp_path / "bars.csv"
    args = ["--config", str(ROOT / "config.json"), "candles", "--input", str(csv), "--out", str(out)]
    assert (
        cli.main(
            [*args, "--timestamp-col", "time", "--price-col", "px", "--size-col", "qty", "--symbol", "ESU3"]
        )
        == 0
    )
    got = pd.read_csv(out)
    assert set(got["symbol"]) == {"ESU3"}
    # the same minutes as the parquet conversion, except the last one (cut mid-minute by head())
    n = len(got) - 1
    np.testing.assert_array_equal(
        got[["open", "high", "low", "close", "volume"]].to_numpy()[:n],
        es_file_bars[["open", "high", "low", "close", "volume"]].to_numpy()[:n],
    )


def test_a_missing_column_is_a_clear_error_and_exit_code_3(tmp_path, capsys):
    out = tmp_path / "bars.parquet"
    args = [
        "--config",
        str(ROOT / "config.json"),
        "candles",
        "--input",
        str(SAMPLE),
        "--out",
        str(out),
        "--price-col",
        "px",
    ]
    assert cli.main(args) == 3
    err = capsys.readouterr().err
    assert "no column 'px'" in err and "timestamp, price, volume" in err
    assert not out.exists()


def test_help_does_not_import_the_heavy_libraries():
    code = (
        "import sys; from scalper import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('pandas', 'pandas_ta', 'numba', 'ray', 'pyarrow') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_the_make_run_command_lines_parse():
    body = (ROOT / "Makefile").read_text().split("\nrun:")[1].split("\n\n")[0].split("\n")[1:]
    recipes = [line.strip() for line in body if line.startswith("\t")]
    assert recipes and all(r.startswith("$(BIN)/scalper ") for r in recipes)
    parsed = [cli.build_parser().parse_args(r.split()[1:]) for r in recipes]
    assert parsed[-1].func is cli.cmd_run and parsed[-1].mode == "paper"


def test_run_with_a_missing_data_file_says_so_and_writes_nothing(tmp_path, capsys):
    doc = default_document()
    doc["feed"]["replay"]["path"] = str(tmp_path / "nope.parquet")
    doc["store"]["runs_dir"] = str(tmp_path / "runs")
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(doc))
    assert cli.main(["run", "--config", str(path), "--run-id", "x", "-q"]) == 3
    assert "nope.parquet" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_warm_start_from_the_store_continues_like_uninterrupted_history(es_run, tmp_path):
    tmp, cfg, _ = es_run
    full = pd.read_parquet(tmp / "runs/es/bars_with_indicators.parquet")
    full["timestamp"] = full["timestamp"].astype("int64")
    k = 1800  # the process "restarts" after this many bars
    store = BarStore(str(tmp_path / "store"))
    store.append("ES", full.loc[: k - 1, list(BAR_COLUMNS)])
    ticks = pd.read_parquet(SAMPLE)
    restart = pd.Timestamp(int(full["timestamp"].iloc[k]), unit="ns", tz="UTC")
    later = tmp_path / "later.parquet"
    ticks[ticks["timestamp"] >= restart].to_parquet(later)

    doc = msgspec.to_builtins(cfg)
    doc["feed"]["replay"]["path"] = str(later)
    cfg2 = msgspec.convert(doc, Config)
    pipe = pipeline.MarketDataPipeline(cfg2)
    loaded = pipe.warm_start(store)
    assert loaded["ES"] >= cfg.candles.warmup_bars
    for event in make_feed(cfg2):
        pipe.on_event(event)
    resumed = pd.DataFrame(pipe.rows["ES"]).rename(columns={"ts": "timestamp"})
    expected = full.iloc[k:].reset_index(drop=True)
    assert len(resumed) == len(expected)
    for col in BAR_COLUMNS:
        np.testing.assert_array_equal(resumed[col].to_numpy(), expected[col].to_numpy(), err_msg=col)
    for name in indicator_columns(cfg.indicators):
        # EMA-200 seeded by warmup_bars of history stays within 0.01% (docs/BENCHMARKS.md)
        np.testing.assert_allclose(resumed[name], expected[name], rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(resumed["ema_9"], expected["ema_9"], rtol=1e-12)
    np.testing.assert_allclose(resumed["session_vwap"], expected["session_vwap"], rtol=1e-12)


def test_multi_symbol_feed_gives_each_symbol_the_bars_of_its_own_ticks(tmp_path):
    from scalper.candles import CandleManager
    from scalper.feeds import synthetic_ticks

    syn = {**default_document()["feed"]["synthetic"], "minutes": 120, "ticks_per_minute": 20.0}
    cfg = config(tmp_path, symbols=["AAA", "BBB", "CCC"], feed={"kind": "synthetic", "synthetic": syn})
    pipe = pipeline.MarketDataPipeline(cfg)
    for event in make_feed(cfg):
        pipe.on_event(event)
    for sym in cfg.symbols:
        cols = synthetic_ticks(cfg.feed.synthetic, sym)
        alone = CandleManager(sym, cfg.candles)
        expected = alone.on_batch(cols["ts"], cols["price"], cols["size"]) + alone.flush()
        got = [msgspec.convert(row, dict) for row in pipe.rows[sym]]
        assert [
            (r["ts"], r["open"], r["high"], r["low"], r["close"], r["volume"], r["trades"]) for r in got
        ] == [(b.ts, b.open, b.high, b.low, b.close, b.volume, b.trades) for b in expected], sym


def test_candles_command_can_append_the_bars_to_the_bar_store(tmp_path, es_file_bars):
    out, store_dir = tmp_path / "bars.parquet", tmp_path / "store"
    args = ["candles", "--config", str(ROOT / "config.json"), "--input", str(SAMPLE), "--out", str(out)]
    assert cli.main([*args, "--store", str(store_dir)]) == 0
    stored = BarStore(str(store_dir)).read("ES")
    np.testing.assert_array_equal(
        stored["timestamp"].to_numpy(), es_file_bars["timestamp"].astype("int64").to_numpy()
    )
    for col in ("open", "high", "low", "close", "volume", "trades", "vwap"):
        np.testing.assert_array_equal(stored[col].to_numpy(), es_file_bars[col].to_numpy(), err_msg=col)


def test_the_paper_run_trades_exactly_like_the_backtest_on_the_same_data(es_run):
    from scalper import backtest as bt
    from scalper.report import fingerprint

    tmp, cfg, summary = es_run
    bars = bt.load_bars(cfg)
    result = bt.Backtest(cfg).run({s: bt.prepare(s, b, cfg) for s, b in bars.items()})
    trading = summary["trading"]
    assert trading["overall"]["trades"] == len(result.trades) > 0
    assert trading["trade_fingerprint"] == fingerprint(result.trades)
    run_dir = tmp / "runs" / "es"
    assert {"trades.csv", "signals.parquet", "orders.parquet", "equity.parquet", "ledger.sqlite"} <= {
        p.name for p in run_dir.iterdir()
    }


@pytest.mark.parametrize("with_ids", [False, True])
def test_a_batch_of_events_at_once_gives_what_the_events_one_by_one_give(with_ids):
    """A candle shard takes the feed's events a send at a time (`on_batch_events`: each
    symbol's ticks in one vectorised call, each tick against its own heartbeat's clock):
    same bars, indicators, rejections and counters as `on_event` on each event — on a messy
    stream (late, out of order, skewed, non-finite, spiking and duplicate ticks, an unknown
    symbol) cut into sends the way the feed cuts them, and at random."""
    from scalper.candles import closed_boundary
    from scalper.event_batch import EventBatchBuilder
    from scalper.types import Heartbeat, TickBatch

    doc = default_document()
    doc["symbols"] = ["AAA", "BBB", "CCC"]
    doc["feed"]["kind"] = "synthetic"
    doc["feed"]["synthetic"].update(minutes=40, ticks_per_minute=120.0)
    doc["candles"]["dedupe_by_trade_id"] = True
    cfg = msgspec.convert(doc, Config)
    rng = np.random.default_rng(3)
    MIN = 60_000_000_000
    events, serial = [], 0
    for e in make_feed(cfg):
        if type(e) is TickBatch:
            ts, price = e.ts.copy(), e.price.copy()
            u = rng.random(len(ts))
            ts[u < 0.03] -= 2 * MIN  # late
            ts[(u >= 0.03) & (u < 0.05)] += 10 * MIN  # beyond the clock skew
            ts[(u >= 0.05) & (u < 0.08)] -= 3_000_000_000  # out of order
            ts[(u >= 0.12) & (u < 0.14)] -= 299_950_000_000  # at the skew limit of its own clock
            price[(u >= 0.08) & (u < 0.1)] = np.nan
            price[(u >= 0.1) & (u < 0.12)] *= 1.3  # spikes
            ids = None
            if with_ids:
                ids = np.array([f"{e.symbol}-{serial + i}" for i in range(len(ts))], dtype=object)
                serial += len(ts)
                if rng.random() < 0.1 and len(ts) > 1:
                    ids[-1] = ids[0]  # a duplicate trade
            events.append(TickBatch(e.symbol, ts, price, e.size, ids))
            if rng.random() < 0.01:
                events.append(TickBatch("ZZZ", e.ts, e.price, e.size, ids))  # not configured
        else:
            events.append(e)

    one = pipeline.MarketDataPipeline(cfg)
    for e in events:
        one.on_event(e)

    class Counting(pipeline.MarketDataPipeline):
        one_by_one = 0

        def on_event(self, event):
            Counting.one_by_one += 1
            return super().on_event(event)

    for cut in ("feed", "random"):
        Counting.one_by_one = 0
        many = Counting(cfg)
        builder, boundary, delay = EventBatchBuilder(), -(2**62), cfg.candles.boundary_delay_ms * 1_000_000
        for e in events:
            builder.add(e)
            if type(e) is Heartbeat:
                b = closed_boundary(e.ts, delay)
                send = b > boundary or rng.random() < 0.05 if cut == "feed" else rng.random() < 0.1
                boundary = max(boundary, b)
                if send:
                    many.on_batch_events(builder.build())
            elif cut == "random" and rng.random() < 0.02:
                many.on_batch_events(builder.build())  # a send that ends with ticks
        many.on_batch_events(builder.build())
        same = msgspec.json.encode  # (NaN-aware: NaN is null either side)
        assert same(many.rows) == same(one.rows), cut
        assert many.rejected() == one.rejected() and sum(one.rejected().values()) > 100
        assert (many.ticks_in, many.unknown_symbol_ticks) == (one.ticks_in, one.unknown_symbol_ticks)
        assert one.unknown_symbol_ticks > 0
        key = lambda s: (s.bar.ts, s.bar.symbol)  # noqa: E731
        assert same(sorted(many.drain_snapshots(), key=key)) == same(sorted(one.snapshots, key=key))
        if cut == "feed":  # the feed's sends go through the vectorised path
            assert Counting.one_by_one < len(events) // 10
