"""Feeds: the synthetic market's model and determinism, file replay, event semantics and pacing."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from scalper.config import Config, ReplayColumns, ReplayFeed, SyntheticFeed
from scalper.feeds import (
    REGIMES,
    FeedError,
    FileReplayFeed,
    SyntheticMarketFeed,
    make_feed,
    read_bars,
    read_ticks,
    synthetic_bars,
    synthetic_regimes,
    synthetic_ticks,
)
from scalper.types import BAR_COLUMNS, BarBatch, Heartbeat, TickBatch
from scalper.types import NS_PER_MINUTE as MIN
from scalper.types import NS_PER_SECOND as SEC

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data/samples/es_ticks_2013-09.parquet"
T0 = 1_700_000_040 * SEC - (1_700_000_040 * SEC) % MIN  # a minute boundary


def syn(**kw) -> SyntheticFeed:
    return msgspec.structs.replace(SyntheticFeed(), **kw)


def replay_cfg(path, **kw) -> ReplayFeed:
    columns = kw.pop("columns", {})
    return msgspec.convert({"path": str(path), "columns": columns, **kw}, ReplayFeed)


def check_stream(events, batch_ns: int, symbols: list[str]) -> dict:
    """Assert the Feed contract on a list of events; return per-symbol ticks and heartbeats."""
    hbs = [e.ts for e in events if isinstance(e, Heartbeat)]
    assert hbs == sorted(set(hbs)), "heartbeats strictly increase"
    assert all(h % batch_ns == 0 for h in hbs)
    prev_hb = None
    pending: list[TickBatch] = []  # batches of the interval the next heartbeat closes
    ts = {s: [] for s in symbols}
    for e in events:
        if isinstance(e, Heartbeat):
            for b in pending:  # every tick lies in the interval this heartbeat closes
                assert b.ts.min() >= e.ts - batch_ns and b.ts.max() < e.ts
            if prev_hb is not None and pending:
                assert e.ts - batch_ns >= prev_hb
            names = [b.symbol for b in pending]
            assert len(set(names)) == len(names), "one batch per symbol per interval"
            assert names == sorted(names, key=symbols.index), "batches in the feed's symbol order"
            prev_hb, pending = e.ts, []
            continue
        assert isinstance(e, TickBatch)
        assert len(e) > 0
        assert np.all(np.diff(e.ts) >= 0)
        pending.append(e)
        ts[e.symbol].append(e)
    assert not pending
    assert isinstance(events[-1], Heartbeat)
    out = {}
    for s, batches in ts.items():
        out[s] = {
            "ts": np.concatenate([b.ts for b in batches]) if batches else np.empty(0, np.int64),
            "price": np.concatenate([b.price for b in batches]) if batches else np.empty(0),
            "size": np.concatenate([b.size for b in batches]) if batches else np.empty(0),
        }
    return {"ticks": out, "heartbeats": hbs}


class FakeClock:
    """A monotonic clock that only moves when slept (or advanced by hand)."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def write_ticks(path: Path, ts_ns, price, size, symbol=None, names=("timestamp", "price", "volume")):
    cols = {
        names[0]: pa.array(np.asarray(ts_ns, dtype=np.int64), pa.timestamp("ns", tz="UTC")),
        names[1]: pa.array(np.asarray(price, dtype=np.float64)),
        names[2]: pa.array(np.asarray(size, dtype=np.float64)),
    }
    if symbol is not None:
        cols["symbol"] = pa.array(list(symbol))
    table = pa.table(cols)
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


# -- synthetic market ------------------------------------------------------------------------


def test_synthetic_is_deterministic_within_and_across_processes():
    cfg = syn(minutes=120)
    a, b = synthetic_ticks(cfg, "BTC/USDT"), synthetic_ticks(cfg, "BTC/USDT")
    for k in ("ts", "price", "size"):
        assert np.array_equal(a[k], b[k])
    digest = hashlib.sha256(b"".join(a[k].tobytes() for k in ("ts", "price", "size"))).hexdigest()
    code = (
        "import hashlib, msgspec; from scalper.config import SyntheticFeed;"
        "from scalper.feeds import synthetic_ticks;"
        "a = synthetic_ticks(msgspec.structs.replace(SyntheticFeed(), minutes=120), 'BTC/USDT');"
        "print(hashlib.sha256(b''.join(a[k].tobytes() for k in ('ts', 'price', 'size'))).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == digest
    bars1, bars2 = synthetic_bars(cfg, "ETH"), synthetic_bars(cfg, "ETH")
    pd.testing.assert_frame_equal(bars1, bars2)


def test_different_seeds_and_symbols_give_different_markets():
    a = synthetic_ticks(syn(minutes=30, seed=1), "X")
    b = synthetic_ticks(syn(minutes=30, seed=2), "X")
    c = synthetic_ticks(syn(minutes=30, seed=1), "Y")
    assert not np.array_equal(a["price"][:100], b["price"][:100])
    assert not np.array_equal(a["ts"][:100], c["ts"][:100])
    starts = {s: synthetic_bars(syn(), s, 1)["open"].iloc[0] for s in ("A", "B", "C", "D")}
    assert len(set(starts.values())) == 4, "each symbol starts at its own price"
    assert all(50.0 <= p <= 200.0 for p in starts.values())
    same = synthetic_bars(syn(start_price_spread=0.0, start_price=123.45), "A", 1)["open"].iloc[0]
    assert abs(same - 123.45) < 0.3


def test_every_regime_occurs_with_the_configured_mean_duration():
    reg = synthetic_regimes(syn(mean_regime_minutes=60.0), "SPY", minutes=200_000)
    assert list(reg["regime"].cat.categories) == list(REGIMES)
    shares = reg["regime"].value_counts(normalize=True)
    assert set(shares.index) == set(REGIMES)
    assert all(0.2 < shares[r] < 0.3 for r in REGIMES)
    codes = reg["regime_code"].to_numpy()
    runs = 1 + np.count_nonzero(codes[1:] != codes[:-1])
    assert len(codes) / runs == pytest.approx(60.0, rel=0.08)
    assert np.all(np.diff(reg["timestamp"].to_numpy()) == MIN)


def test_regimes_shape_the_price_path():
    cfg = syn(mean_regime_minutes=240.0)
    bars = synthetic_bars(cfg, "SPY", 200_000, with_regime=True)
    ret = np.log(bars["close"]).diff()
    by = ret.groupby(bars["regime"], observed=True)
    assert by.mean()["trending_up"] > 0 > by.mean()["trending_down"]
    std = by.std()
    assert std["volatile"] > 2 * std["trending_up"]
    # Ranging pulls back: consecutive 5-minute moves are negatively correlated there.
    r5 = np.log(bars["close"]).diff(5)
    ranging = bars["regime"] == "ranging"
    rho = np.corrcoef(r5[ranging].iloc[5:-5], r5.shift(-5)[ranging].iloc[5:-5])[0, 1]
    assert rho < -0.1


@pytest.mark.parametrize("tick", [0.01, 0.25, 5.0])
def test_prices_are_on_the_tick_grid(tick):
    cfg = syn(minutes=60, tick_size=tick, start_price=1000.0)
    t = synthetic_ticks(cfg, "X")
    steps = t["price"] / tick
    assert np.allclose(steps, np.round(steps), rtol=0, atol=1e-9)
    bars = synthetic_bars(cfg, "X", 5000)
    for col in ("open", "high", "low", "close"):
        steps = bars[col].to_numpy() / tick
        assert np.allclose(steps, np.round(steps), rtol=0, atol=1e-9)


def test_prices_stay_positive_even_near_zero():
    cfg = syn(minutes=600, start_price=0.03, start_price_spread=0.0, tick_size=0.01, annual_vol=20.0)
    t = synthetic_ticks(cfg, "PENNY")
    assert t["price"].min() >= 0.01
    bars = synthetic_bars(cfg, "PENNY", 20_000)
    assert bars["low"].min() >= 0.01
    assert np.all(t["size"] > 0)


def test_arrivals_are_poisson_at_the_configured_rate():
    cfg = syn(minutes=1440, ticks_per_minute=120.0, volume_seasonality=0.0, volatile_volume_multiplier=1.0)
    ts = synthetic_ticks(cfg, "X")["ts"]
    gaps = np.diff(ts) / SEC
    assert gaps.mean() == pytest.approx(0.5, rel=0.02)  # 1 / (120 per minute) = 0.5 s
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)  # exponential: CV 1
    per_minute = np.bincount((ts - ts[0]) // MIN)
    assert per_minute.var() / per_minute.mean() == pytest.approx(1.0, abs=0.15)  # Poisson counts
    sizes = synthetic_ticks(syn(minutes=600, mean_trade_size=2.5), "X")["size"]
    assert sizes.mean() == pytest.approx(2.5, rel=0.03)


def test_volume_is_u_shaped_over_the_utc_day():
    cfg = syn(volume_seasonality=0.5, volatile_volume_multiplier=1.0)
    bars = synthetic_bars(cfg, "X", 60 * 1440)
    hour = (bars["timestamp"] // (60 * MIN)) % 24
    vol = bars.groupby(hour)["volume"].mean()
    midday = vol[[11, 12]].mean()
    open_ = vol[[23, 0]].mean()
    assert midday / open_ == pytest.approx(0.5 / 1.5, rel=0.1)
    flat = synthetic_bars(syn(volume_seasonality=0.0, volatile_volume_multiplier=1.0), "X", 30 * 1440)
    v = flat.groupby((flat["timestamp"] // (60 * MIN)) % 24)["volume"].mean()
    assert v.max() / v.min() < 1.1


def test_synthetic_bars_are_internally_consistent():
    bars = synthetic_bars(syn(), "X", 100_000)
    assert list(bars.columns) == ["timestamp", "open", "high", "low", "close", "volume", "trades", "vwap"]
    assert bars["timestamp"].dtype == np.int64
    assert np.all(np.diff(bars["timestamp"].to_numpy()) == MIN)
    assert bars["timestamp"].iloc[0] == pd.Timestamp("2024-01-02T00:00:00Z").value
    lo, hi = bars["low"], bars["high"]
    for col in ("open", "close", "vwap"):
        assert (lo <= bars[col]).all() and (bars[col] <= hi).all()
    assert (bars["volume"] >= 0).all() and (bars["trades"] >= 0).all()
    assert ((bars["trades"] == 0) == (bars["volume"] == 0)).all()
    prefix = synthetic_bars(syn(), "X", 2000)
    pd.testing.assert_frame_equal(prefix, bars.iloc[:2000])


def test_flat_minutes_are_flat_bars_at_the_previous_close():
    bars = synthetic_bars(syn(ticks_per_minute=0.5, volume_seasonality=0.0), "X", 5000)
    flat = bars["trades"] == 0
    assert flat.sum() > 1000
    prev_close = bars["close"].shift(1)
    f = bars[flat & prev_close.notna()]
    assert (f["open"] == prev_close[f.index]).all()
    assert (f[["open", "high", "low", "close", "vwap"]].nunique(axis=1) == 1).all()


def test_ticks_bridge_between_the_bar_closes_of_the_same_path():
    cfg = syn(minutes=600, ticks_per_minute=300.0)
    t = synthetic_ticks(cfg, "X")
    bars = synthetic_bars(cfg, "X")
    minute = (t["ts"] - bars["timestamp"].iloc[0]) // MIN
    last = pd.Series(t["price"]).groupby(minute).last()
    close = bars["close"].iloc[last.index]
    assert np.median(np.abs(np.log(last.to_numpy() / close.to_numpy()))) < 2e-4
    assert np.array_equal(
        synthetic_regimes(cfg, "X")["regime_code"], synthetic_regimes(cfg, "X", 600)["regime_code"]
    )


def test_synthetic_feed_delivers_synthetic_ticks_per_symbol_with_heartbeats():
    cfg = syn(minutes=45, ticks_per_minute=30.0, batch_ms=250)
    symbols = ["AAA", "BBB", "CCC"]
    events = list(SyntheticMarketFeed(cfg, symbols))
    got = check_stream(events, 250 * 10**6, symbols)
    for s in symbols:
        want = synthetic_ticks(cfg, s)
        for k in ("ts", "price", "size"):
            assert np.array_equal(got["ticks"][s][k], want[k])
    hbs = np.array(got["heartbeats"])
    assert np.all(np.diff(hbs) == 250 * 10**6), "quiet intervals still get their heartbeat"
    last_tick = max(got["ticks"][s]["ts"][-1] for s in symbols)
    assert hbs[-1] >= last_tick + 60 * SEC, "the stream ends late enough for the last minute to close"


def test_interval_not_dividing_the_chunk_length_still_delivers_each_tick_once():
    cfg = syn(minutes=40, ticks_per_minute=20.0, batch_ms=7000)
    events = list(SyntheticMarketFeed(cfg, ["A", "B"]))
    got = check_stream(events, 7000 * 10**6, ["A", "B"])
    for s in ("A", "B"):
        assert np.array_equal(got["ticks"][s]["ts"], synthetic_ticks(cfg, s)["ts"])


# -- replay ---------------------------------------------------------------------------------


def test_replay_of_the_bundled_parquet_yields_all_500000_ticks_in_order():
    feed = make_feed(Config())
    assert feed.symbols == ["ES"]
    batches = []
    prev_hb = 0
    for e in feed:
        if isinstance(e, TickBatch):
            batches.append(e)
            assert e.ts[-1] < (e.ts[0] // (100 * 10**6) + 1) * 100 * 10**6
        else:
            assert e.ts > prev_hb
            prev_hb = e.ts
    ts = np.concatenate([b.ts for b in batches])
    assert len(ts) == 500_000
    table = pq.read_table(SAMPLE)
    assert np.array_equal(ts, table["timestamp"].cast(pa.int64()).to_numpy() * 1_000_000)
    assert np.array_equal(np.concatenate([b.price for b in batches]), table["price"].to_numpy())
    assert np.array_equal(np.concatenate([b.size for b in batches]), table["volume"].to_numpy().astype(float))
    assert ts[0] == pd.Timestamp("2013-09-01T22:00:00.083Z").value
    assert all(
        b.symbol == "ES" and b.ts.dtype == np.int64 and b.price.dtype == np.float64 for b in batches[:10]
    )


def test_read_ticks_returns_the_whole_file_per_symbol():
    out = read_ticks(SAMPLE)
    assert list(out) == ["ES"] and len(out["ES"]) == 500_000
    assert np.all(np.diff(out["ES"].ts) >= 0)


def test_csv_and_parquet_replays_give_identical_events(tmp_path):
    table = pq.read_table(SAMPLE).slice(0, 20_000)
    pq.write_table(table, tmp_path / "t.parquet")
    pacsv.write_csv(table, tmp_path / "t.csv")
    a = list(FileReplayFeed(replay_cfg(tmp_path / "t.parquet")))
    b = list(FileReplayFeed(replay_cfg(tmp_path / "t.csv")))
    assert len(a) == len(b) > 20_000 / 50
    for x, y in zip(a, b, strict=True):
        assert type(x) is type(y)
        if isinstance(x, Heartbeat):
            assert x == y
        else:
            assert x.symbol == y.symbol
            for k in ("ts", "price", "size"):
                assert np.array_equal(getattr(x, k), getattr(y, k))


def test_configurable_column_names_symbols_and_timestamp_units(tmp_path):
    n = 600
    ts_s = 1_700_000_000 + np.arange(n) * 0.25  # float seconds
    sym = np.where(np.arange(n) % 3 == 0, "ETH", np.where(np.arange(n) % 3 == 1, "BTC", "SOL"))
    table = pa.table(
        {
            "t": ts_s,
            "px": np.linspace(100, 101, n),
            "qty": np.ones(n),
            "ticker": sym,
            "id": [f"id{i}" for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "x.parquet")
    pacsv.write_csv(table, tmp_path / "x.csv")
    columns = {"timestamp": "t", "price": "px", "size": "qty", "symbol": "ticker", "trade_id": "id"}
    for name in ("x.parquet", "x.csv"):
        cfg = replay_cfg(tmp_path / name, columns=columns, timestamp_unit="s", batch_ms=1000)
        feed = FileReplayFeed(cfg, ["BTC", "ETH"])
        assert feed.symbols == ["BTC", "ETH"]
        events = list(feed)
        got = check_stream(events, 10**9, ["BTC", "ETH"])
        exact_ns = 1_700_000_000 * SEC + np.arange(n) * 250_000_000  # float seconds -> exact ns
        assert np.array_equal(got["ticks"]["ETH"]["ts"], exact_ns[sym == "ETH"])
        assert len(got["ticks"]["BTC"]["ts"]) == 200
        first = [e for e in events[:3] if isinstance(e, TickBatch)]
        assert [b.symbol for b in first] == ["BTC", "ETH"]  # same interval: the feed's symbol order
        assert [b.trade_id.tolist() for b in first] == [["id1"], ["id0", "id3"]]
    everything = read_ticks(
        tmp_path / "x.parquet", msgspec.convert(columns, ReplayColumns), timestamp_unit="s"
    )
    assert sorted(everything) == ["BTC", "ETH", "SOL"] and all(len(b) == 200 for b in everything.values())


def test_iso_string_timestamps_are_parsed_as_utc(tmp_path):
    path = tmp_path / "iso.csv"
    path.write_text(
        "when,price,volume\n"
        "2024-03-01T10:00:00.5+01:00,10.0,1\n"
        "2024-03-01 09:00:01Z,10.5,2\n"
        "2024-03-01T09:00:02.250,11.0,3\n"
    )
    out = read_ticks(path, ReplayColumns(timestamp="when"))["ES"]
    base = pd.Timestamp("2024-03-01T09:00:00Z").value
    assert out.ts.tolist() == [base + SEC // 2, base + SEC, base + 2 * SEC + SEC // 4]


def test_missing_column_error_names_the_column_the_file_and_its_columns(tmp_path):
    with pytest.raises(FeedError) as err:
        FileReplayFeed(replay_cfg(SAMPLE, columns={"size": "qty"}))
    msg = str(err.value)
    assert "'qty'" in msg and "replay.columns.size" in msg and "es_ticks_2013-09.parquet" in msg
    assert "timestamp, price, volume" in msg
    csv = write_ticks(tmp_path / "a.csv", [T0], [1.0], [1.0])
    with pytest.raises(FeedError, match=r"no column 'sym'.*a\.csv|a\.csv.*no column 'sym'"):
        read_ticks(csv, ReplayColumns(symbol="sym"))


def test_missing_symbol_error_names_the_symbols(tmp_path):
    path = write_ticks(tmp_path / "s.parquet", [T0, T0 + 1], [1.0, 2.0], [1, 1], symbol=["AAA", "BBB"])
    cfg = replay_cfg(path, columns={"symbol": "symbol"})
    with pytest.raises(FeedError, match=r"\['ZZZ', 'YYY'\] are not in the file.*AAA, BBB"):
        FileReplayFeed(cfg, ["AAA", "ZZZ", "YYY"])
    with pytest.raises(FeedError, match=r"\['NQ'\].*no symbol column.*'ES'"):
        make_feed(msgspec.convert({"symbols": ["ES", "NQ"]}, Config))


def test_empty_files_give_clear_errors(tmp_path):
    (tmp_path / "zero.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_text("timestamp,price,volume\n")
    pq.write_table(
        pa.table({"timestamp": pa.array([], pa.timestamp("ms")), "price": [], "volume": []}),
        tmp_path / "none.parquet",
    )
    for name in ("zero.csv", "header.csv", "none.parquet"):
        with pytest.raises(FeedError, match=rf"{name}: the file is empty"):
            FileReplayFeed(replay_cfg(tmp_path / name))


def test_missing_file_and_unknown_suffix_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FeedError, match=r"data file not found: nowhere/ticks\.parquet"):
        read_ticks("nowhere/ticks.parquet")
    # run from the project root: the one place looked in is named once
    from scalper.feeds.replay import PROJECT_ROOT

    monkeypatch.chdir(PROJECT_ROOT)
    with pytest.raises(FeedError) as err:
        read_ticks("my_bars.parquet")
    assert (
        str(err.value)
        == f"data file not found: my_bars.parquet (there is no {PROJECT_ROOT / 'my_bars.parquet'})"
    )
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(FeedError, match=r"unknown file type.*\.parquet.*\.csv"):
        read_ticks(tmp_path / "t.json")


def test_unsorted_file_is_sorted_stably_with_a_warning(tmp_path, caplog):
    ts = [T0 + 2 * SEC, T0, T0 + SEC, T0]
    path = write_ticks(tmp_path / "u.parquet", ts, [1.0, 2.0, 3.0, 4.0], [1, 1, 1, 1])
    with caplog.at_level(logging.WARNING, logger="scalper.feeds.replay"):
        out = read_ticks(path)["ES"]
    assert "not in time order" in caplog.text
    assert out.ts.tolist() == [T0, T0, T0 + SEC, T0 + 2 * SEC]
    assert out.price.tolist() == [2.0, 4.0, 3.0, 1.0]


def test_bar_file_replay_yields_bar_batches_at_their_close(tmp_path):
    a = synthetic_bars(syn(), "AAA", 300).assign(symbol="AAA")
    # BBB misses every third minute (missing EVERY other minute would make it 2-minute bars)
    b = synthetic_bars(syn(), "BBB", 300).assign(symbol="BBB").iloc[np.arange(300) % 3 != 1]
    frame = pd.concat([a, b]).sort_values("timestamp", kind="stable")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame.to_parquet(tmp_path / "bars.parquet", index=False)
    cols = {"symbol": "symbol", "trades": "trades", "vwap": "vwap"}
    cfg = replay_cfg(tmp_path / "bars.parquet", kind="bars", columns=cols, batch_ms=60_000)
    events = list(FileReplayFeed(cfg, ["AAA", "BBB"]))
    batches = [e for e in events if isinstance(e, BarBatch)]
    assert {e.symbol for e in batches} == {"AAA", "BBB"} and not any(isinstance(e, TickBatch) for e in events)
    assert sum(len(e) for e in batches) == 500
    hb = None
    for e in reversed(events):  # each batch's bars close before the heartbeat that follows it
        if isinstance(e, Heartbeat):
            hb = e.ts
        else:
            assert np.all(e.ts + MIN < hb) and np.all(e.ts + MIN >= hb - 60 * SEC)
    got = np.concatenate([e.close for e in batches if e.symbol == "AAA"])
    assert np.array_equal(got, a["close"].to_numpy())
    assert np.concatenate([e.trades for e in batches if e.symbol == "AAA"]).tolist() == a["trades"].tolist()
    df = read_bars(tmp_path / "bars.parquet", msgspec.convert(cols, ReplayColumns))
    assert list(df.columns) == ["symbol", *BAR_COLUMNS]
    assert len(df) == 500 and df["timestamp"].is_monotonic_increasing
    used = read_bars(tmp_path / "bars.parquet", ReplayColumns(), symbols=["BBB"])
    assert (used["trades"] >= 0).all() and used["vwap"].notna().all()  # default names, present: used
    bare = read_bars(tmp_path / "bars.parquet", ReplayColumns(trades=None, vwap=None), symbols=["BBB"])
    assert (bare["trades"] == -1).all() and bare["vwap"].isna().all() and len(bare) == 200


# -- heartbeats, gaps, pacing -----------------------------------------------------------------


def test_long_gap_is_jumped_without_a_heartbeat_per_interval(tmp_path):
    weekend = 3 * 24 * 3600 * SEC
    ts = [T0 + 10 * SEC, T0 + 10 * SEC + 150 * 10**6, T0 + weekend + 5 * SEC]
    path = write_ticks(tmp_path / "gap.parquet", ts, [1.0, 1.1, 1.2], [1, 1, 1])
    events = list(FileReplayFeed(replay_cfg(path, max_quiet_s=120.0)))
    got = check_stream(events, 100 * 10**6, ["ES"])
    hbs = np.array(got["heartbeats"])
    assert len(hbs) < 2 * 1200 + 10, "not one heartbeat per 100 ms across the weekend"
    # heartbeats continue for max_quiet_s after the last tick, then jump to the next tick
    before = hbs[hbs < T0 + weekend]
    assert before[-1] == T0 + 10 * SEC + 200 * 10**6 + 120 * SEC
    assert np.all(np.diff(before) == 100 * 10**6)
    after = hbs[hbs > T0 + weekend]
    assert after[0] == T0 + weekend + 5 * SEC + 100 * 10**6
    assert np.all(np.diff(after) == 100 * 10**6) and after[-1] == after[0] + 120 * SEC


def test_speed_k_sleeps_batch_over_k_per_interval_and_skips_gaps(tmp_path):
    # intervals 0, 0 and 3, then a 10-minute gap
    ts = [T0, T0 + 50 * 10**6, T0 + 300 * 10**6, T0 + 10 * 60 * SEC]
    path = write_ticks(tmp_path / "p.parquet", ts, [1.0] * 4, [1] * 4)
    clock = FakeClock()
    feed = FileReplayFeed(replay_cfg(path, speed=10.0, max_quiet_s=1.0), sleep=clock.sleep, clock=clock)
    events = list(feed)
    hbs = [e.ts for e in events if isinstance(e, Heartbeat)]
    assert len(clock.sleeps) == len(hbs), "one sleep per interval"
    assert clock.sleeps == pytest.approx([0.01] * len(hbs))
    assert clock.now - 1000.0 == pytest.approx(len(hbs) * 0.01), "the 10-minute gap cost no wall time"


def test_pacing_subtracts_the_consumers_own_time(tmp_path):
    ts = T0 + np.arange(20) * 100 * 10**6
    path = write_ticks(tmp_path / "p.parquet", ts, np.ones(20), np.ones(20))
    clock = FakeClock()
    feed = FileReplayFeed(replay_cfg(path, speed=2.0, max_quiet_s=0.1), sleep=clock.sleep, clock=clock)
    for e in feed:
        if isinstance(e, TickBatch):
            clock.now += 0.02  # the consumer works 20 ms per batch
    assert clock.sleeps[0] == pytest.approx(0.05)
    assert clock.sleeps[1:] == pytest.approx([0.03] * (len(clock.sleeps) - 1))
    fast = FileReplayFeed(replay_cfg(path, speed=0.0), sleep=clock.sleep, clock=clock)
    before = len(clock.sleeps)
    list(fast)
    assert len(clock.sleeps) == before, "speed 0 never sleeps"


def test_synthetic_feed_paces_with_the_injected_sleep():
    clock = FakeClock()
    cfg = syn(minutes=1, speed=100.0, batch_ms=1000, max_quiet_s=1.0)
    events = list(SyntheticMarketFeed(cfg, ["X"], sleep=clock.sleep, clock=clock))
    n = sum(isinstance(e, Heartbeat) for e in events)
    assert clock.sleeps == pytest.approx([0.01] * n)


def test_make_feed_picks_the_feed_kind_and_builds_the_ccxt_feed_without_connecting():
    from scalper.feeds.ccxt import CcxtTradeFeed

    cfg = msgspec.convert({"symbols": ["A", "B"], "feed": {"kind": "synthetic"}}, Config)
    feed = make_feed(cfg)
    assert isinstance(feed, SyntheticMarketFeed) and feed.symbols == ["A", "B"]
    assert isinstance(make_feed(Config()), FileReplayFeed)
    assert isinstance(make_feed(msgspec.convert({"feed": {"kind": "ccxt"}}, Config)), CcxtTradeFeed)


def test_numeric_timestamps_use_the_configured_unit_and_rows_without_one_are_dropped(tmp_path, caplog):
    path = tmp_path / "ms.csv"
    path.write_text("timestamp,price,volume\n1700000000000,1.0,1\n,2.0,1\n1700000000100,3.0,1\n")
    with caplog.at_level(logging.WARNING, logger="scalper.feeds.replay"):
        out = read_ticks(path, timestamp_unit="ms")["ES"]
    assert "dropped 1 rows without a timestamp" in caplog.text
    assert out.ts.tolist() == [1_700_000_000 * SEC, 1_700_000_000 * SEC + 100 * 10**6]
    assert out.price.tolist() == [1.0, 3.0]
    as_us = read_ticks(path, timestamp_unit="us")["ES"]
    assert as_us.ts.tolist() == [1_700_000_000_000 * 1000, (1_700_000_000_000 + 100) * 1000]


def test_rows_held_back_at_a_chunk_edge_are_delivered_even_without_a_final_chunk():
    from scalper.feeds.base import Chunk, Feed

    class Toy(Feed):
        def _chunks(self):
            ts = np.array([T0 + 100, T0 + SEC + 10, T0 + 2 * SEC + 5], dtype=np.int64)
            cols = {"ts": ts, "price": np.ones(3), "size": np.ones(3), "trade_id": None}
            # promises nothing before T0 + 2.5 s follows; the 1-s interval [2 s, 3 s) is incomplete
            yield Chunk(np.zeros(3, np.int32), ts, cols, T0 + 2 * SEC + SEC // 2)

    events = list(Toy(["X"], batch_ms=1000, max_quiet_s=1.0))
    got = check_stream(events, SEC, ["X"])
    assert got["ticks"]["X"]["ts"].tolist() == [T0 + 100, T0 + SEC + 10, T0 + 2 * SEC + 5]
    assert got["heartbeats"] == [T0 + SEC, T0 + 2 * SEC, T0 + 3 * SEC, T0 + 4 * SEC]
