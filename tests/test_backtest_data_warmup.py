"""--from with warm-up (freqtrade's startup candles): up to candles.warmup_bars bars before
--from feed the indicators and rules, nothing is traded on them, and the run from --from
decides what the run over all the data decides from --from on."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import pandas as pd
import pytest

from scalper import backtest as bt
from scalper import cli
from scalper.config import Config, default_document


def _iso(ts: int) -> str:
    return pd.Timestamp(ts, unit="ns", tz="UTC").isoformat()


def _es_config(warmup: int = 1200) -> Config:
    doc = default_document()
    doc["ml"]["enabled"] = False
    doc["candles"]["warmup_bars"] = warmup
    return msgspec.convert(doc, Config)


@pytest.fixture(scope="module")
def es_full():
    cfg = _es_config()
    bars = bt.load_bars(cfg)
    result = bt.Backtest(cfg).run({s: bt.prepare(s, b, cfg) for s, b in bars.items()})
    return cfg, bars["ES"], result


def _run_from(cfg: Config, t: int, warmup: int) -> tuple[bt.BacktestResult, dict[str, int]]:
    got: dict[str, int] = {}
    bars = bt.load_bars(cfg, start=_iso(t), warmup=warmup, warmup_out=got)
    data = {s: bt.prepare(s, b, cfg) for s, b in bars.items()}
    return bt.run_from(bt.Backtest(cfg), data, t), got


def test_from_loads_up_to_warmup_bars_before_it_when_the_data_has_them():
    cfg = _es_config()
    ts = bt.load_bars(cfg)["ES"]["timestamp"].to_numpy()
    for k, warmup, expect in ((1500, 1200, 1200), (1500, 200, 200), (300, 1200, 300)):
        got: dict[str, int] = {}
        bars = bt.load_bars(cfg, start=_iso(int(ts[k])), warmup=warmup, warmup_out=got)
        assert got == {"ES": expect}
        assert bars["ES"]["timestamp"].iloc[0] == ts[k - expect]
        assert bars["ES"]["timestamp"].iloc[expect] == ts[k]
    got = {}
    assert len(bt.load_bars(cfg, start="2030-01-01", warmup=1200, warmup_out=got)["ES"]) == 0
    assert got == {"ES": 0}  # nothing to trade: no history loaded either


def test_a_run_from_t_with_all_the_history_takes_exactly_the_full_runs_signals_from_t_on(es_full):
    cfg, es, full = es_full
    t = int(es["timestamp"].iloc[1000])  # 1,000 bars before t <= warmup_bars: the whole history
    part, warm = _run_from(cfg, t, cfg.candles.warmup_bars)
    assert warm == {"ES": 1000}
    traded = [r.signal for r in part.signals if r.reason != "warmup"]
    assert traded == [r.signal for r in full.signals if r.signal.ts >= t] != []
    # the rules' signals on the warm-up bars are recorded refused, never ordered
    held = [r for r in part.signals if r.reason == "warmup"]
    assert [r.signal for r in held] == [r.signal for r in full.signals if r.signal.ts < t] != []
    assert all(not r.approved and r.client_order_id is None for r in held)
    assert all(f.ts >= t for f in part.fills) and all(o.created_ts >= t for o in part.orders)
    # the equity curve and the bar count start at t
    assert part.equity_ts[0] == t + bt.MIN and part.bars == len(es) - 1000
    assert part.warmup_bars == {"ES": 1000}
    summary = bt.summarize(part)
    assert summary["warmup_bars"] == {"ES": 1000} and summary["bars"] == len(es) - 1000


def test_a_run_from_t_with_warmup_bars_of_history_signals_at_the_full_runs_bars(es_full):
    """With more data before t than the warm-up, the indicators start later than the full run's
    (EMA-200 and RSI carry their start for ever, ever less): the same signals at the same bars,
    their trigger values equal to ~1e-9."""
    cfg, es, full = es_full
    t = int(es["timestamp"].iloc[1500])
    for warmup in (1200, 200):
        part, warm = _run_from(cfg, t, warmup)
        assert warm == {"ES": warmup}
        traded = [r.signal for r in part.signals if r.reason != "warmup"]
        expected = [r.signal for r in full.signals if r.signal.ts >= t]

        def key(s):
            return (s.ts, s.symbol, s.strategy, s.side, s.order_type, s.reason)

        assert [key(s) for s in traded] == [key(s) for s in expected] != []
        for a, b in zip(traded, expected, strict=True):
            assert a.stop_loss == pytest.approx(b.stop_loss, rel=1e-9)
            assert a.take_profit == pytest.approx(b.take_profit, rel=1e-9)


def test_from_a_flat_moment_the_decisions_are_the_full_runs_decisions():
    """Where the full run holds no position and no working order at t, the run from t makes the
    same risk decision on every signal from t on and fills at the same times and prices (the
    quantities differ: the full run's equity at t is not the starting equity)."""
    doc = default_document()
    doc["symbols"] = ["AAA"]
    doc["ml"]["enabled"] = False
    doc["feed"]["synthetic"]["minutes"] = 2 * 1440
    doc["risk"].update(max_drawdown_pct=90.0, daily_loss_limit_pct=90.0, cooldown_bars=0)
    cfg = msgspec.convert(doc, Config)
    strategies = ["momentum"]  # market entries: an approved signal is a position from the next bar
    bars = bt.load_bars(cfg, synthetic=True)
    full = bt.Backtest(cfg, strategies).run({s: bt.prepare(s, b, cfg) for s, b in bars.items()})
    ts = bars["AAA"]["timestamp"].to_numpy()

    def flat(t: int) -> bool:
        """No position and no working order across bar t (every earlier order ended before it)."""
        return all(o.updated_ts < t or o.created_ts > t for o in full.orders) and not any(
            x.entry_ts <= t < x.exit_ts for x in full.trades
        )

    second_half = ts[len(ts) // 2]
    t = next(int(r.signal.ts) for r in full.signals if r.signal.ts >= second_half and flat(r.signal.ts))
    got: dict[str, int] = {}
    part_bars = bt.load_bars(cfg, synthetic=True, start=_iso(t), warmup=5000, warmup_out=got)  # all before t
    part = bt.run_from(
        bt.Backtest(cfg, strategies), {s: bt.prepare(s, b, cfg) for s, b in part_bars.items()}, t
    )
    assert got["AAA"] == int(np.searchsorted(ts, t))

    def decision(r):
        return (r.signal, r.approved, r.reason)

    after = [decision(r) for r in full.signals if r.signal.ts >= t]
    assert [decision(r) for r in part.signals if r.reason != "warmup"] == after != []
    assert [(f.ts, f.price, f.side) for f in part.fills] == [
        (f.ts, f.price, f.side) for f in full.fills if f.ts >= t
    ]
    assert [(x.entry_ts, x.exit_ts, x.exit_reason) for x in part.trades] == [
        (x.entry_ts, x.exit_ts, x.exit_reason) for x in full.trades if x.entry_ts >= t
    ]


def test_backtest_from_records_its_warmup_and_still_verifies(tmp_path, capsys, es_full):
    cfg, es, _ = es_full
    config = tmp_path / "rules.json"
    config.write_bytes(msgspec.json.encode(cfg))
    t = int(es["timestamp"].iloc[1500])
    out = tmp_path / "run"
    args = ["backtest", "--config", str(config), "--from", _iso(t), "--out", str(out)]
    assert cli.main(args) == 0  # 0: `scalper verify` agrees with the run (warm-up signals included)
    printed = capsys.readouterr().out
    assert "warm-up before --from: ES 1,200 bars" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["warmup_bars"] == {"ES": 1200} and summary["bars"] == len(es) - 1500
    equity = pd.read_parquet(out / "equity.parquet")
    assert equity["time"].iloc[0] == pd.Timestamp(t + bt.MIN, unit="ns", tz="UTC")
    signals = pd.read_parquet(out / "signals.parquet")
    assert (signals.loc[signals["ts"] < t, "decision"] == "warmup").all()
    assert signals.loc[signals["ts"] < t, "client_order_id"].isna().all()
    # the --parallel/--grid path (one job, in process here) takes the same warm-up and trades
    job = bt.BacktestJob(name="ES", symbols=["ES"], start=_iso(t))
    done = bt.run_job(cfg, job)
    assert done.summary["warmup_bars"] == {"ES": 1200}
    assert done.summary["trade_fingerprint"] == summary["trade_fingerprint"]


def test_the_checks_get_the_backtests_warmup_before_from(tmp_path, capsys, es_full):
    cfg, es, _ = es_full
    config = tmp_path / "rules.json"
    config.write_bytes(msgspec.json.encode(cfg))
    t = int(es["timestamp"].iloc[1500])
    args = cli.build_parser().parse_args(["check", "recursive", "--config", str(config), "--from", _iso(t)])
    _, bars = cli._check_data(args)
    assert "warm-up before --from: ES 1,200 bars" in capsys.readouterr().out
    assert bars["ES"]["timestamp"].iloc[0] == es["timestamp"].iloc[300]
