"""The in-process backtest: complete run directory, ledger rebuild, jumping == stepping, no look-ahead."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from scalper import backtest as bt
from scalper import cli
from scalper.config import Config, default_document
from scalper.execution.orders import tick_against
from scalper.ledger import Ledger
from scalper.report import fingerprint

ROOT = Path(__file__).resolve().parents[1]


def cfg_with(**risk) -> Config:
    doc = default_document()
    doc["risk"].update(risk)
    return msgspec.convert(doc, Config)


@pytest.fixture(scope="module")
def es_data():
    cfg = Config()
    bars = bt.load_bars(cfg)
    return cfg, {s: bt.prepare(s, b, cfg) for s, b in bars.items()}


@pytest.fixture(scope="module")
def synthetic_data():
    doc = default_document()
    doc["symbols"] = ["AAA", "BBB"]
    doc["feed"]["synthetic"]["minutes"] = 3 * 1440
    # loose limits so that many trades happen (the rules under test are the engine's)
    doc["risk"].update(max_drawdown_pct=90.0, daily_loss_limit_pct=90.0, cooldown_bars=0)
    cfg = msgspec.convert(doc, Config)
    bars = bt.load_bars(cfg, synthetic=True)
    return cfg, {s: bt.prepare(s, b, cfg) for s, b in bars.items()}


def test_backtest_command_writes_the_complete_run_directory(tmp_path, capsys, rules_only_config):
    out = tmp_path / "run"
    assert cli.main(["backtest", "--config", rules_only_config, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    files = {p.name for p in out.iterdir()}
    assert files >= {
        "summary.json",
        "trades.csv",
        "trades.parquet",
        "orders.parquet",
        "signals.parquet",
        "equity.parquet",
        "ledger.sqlite",
        "config.json",
    }
    summary = json.loads((out / "summary.json").read_text())
    trades = pd.read_parquet(out / "trades.parquet")
    signals = pd.read_parquet(out / "signals.parquet")
    equity = pd.read_parquet(out / "equity.parquet")
    assert summary["overall"]["trades"] == len(trades) > 0
    assert summary["overall"]["net_pnl"] == pytest.approx(trades["pnl"].sum())
    assert summary["signals"] == len(signals)
    assert summary["signals_approved"] == int(signals["approved"].sum())
    assert signals["explanation"].str.len().gt(10).all()  # the human sentence of each signal
    assert set(signals["reason"]) <= {
        "ema_cross_up",
        "ema_cross_down",
        "oversold_below_band",
        "overbought_above_band",
        "range_break_up",
        "range_break_down",
    }
    refused = signals[~signals["approved"]]
    assert (refused["decision"] != "approved").all() and (refused["decision"] != "").all()
    assert summary["overall"]["final_equity"] == pytest.approx(equity["equity"].iloc[-1])
    assert set(summary["by_strategy"]) >= {"momentum", "mean_reversion", "breakout"}
    assert len(summary["trade_fingerprint"]) == 64
    assert f"trades {len(trades):,}" in printed
    for col in (
        "entry_ts",
        "exit_ts",
        "side",
        "quantity",
        "entry_price",
        "exit_price",
        "fees",
        "pnl",
        "r_multiple",
        "strategy",
        "exit_reason",
    ):
        assert col in trades.columns
    assert set(trades["exit_reason"]) <= {"stop_loss", "take_profit", "exit"}


def test_the_run_can_be_rebuilt_from_its_ledger_alone(es_data, tmp_path):
    cfg, data = es_data
    engine = bt.Backtest(cfg)
    result = engine.run(data)
    path = tmp_path / "ledger.sqlite"
    bt.write_ledger(engine, result, str(path))
    with Ledger(path) as ledger:
        mult = {s: cfg.instrument(s).multiplier for s in data}
        state = ledger.state(multipliers=mult)
        assert len(ledger.fills()) == len(result.fills)
        assert {o.client_order_id: o.status for o in ledger.orders()} == {
            o.client_order_id: o.status for o in engine.orders.orders
        }
        assert len(ledger.order_events()) == len(engine.orders.events)
    assert state.cash == pytest.approx(engine.portfolio.cash, abs=1e-6)
    for sym, pos in engine.portfolio.positions.items():
        rebuilt = state.positions.get(sym)
        qty = rebuilt.quantity if rebuilt else 0.0
        assert qty == pytest.approx(pos.quantity)
    assert sorted(state.open_orders) == sorted(o.client_order_id for o in engine.orders.open_orders())


def test_jumping_to_the_next_possible_fill_gives_the_same_trades_as_visiting_every_bar(synthetic_data):
    cfg, data = synthetic_data
    fast = bt.Backtest(cfg).run(data)
    slow = bt.Backtest(cfg, jump=False).run(data)
    assert len(fast.trades) > 20
    assert fast.trades == slow.trades
    assert fast.fills == slow.fills
    assert [(r.signal, r.approved, r.reason) for r in fast.signals] == [
        (r.signal, r.approved, r.reason) for r in slow.signals
    ]


def expiry_to_market_config(symbols=("AAA", "BBB"), minutes=360) -> Config:
    """Limit entries that expire become market orders, and partial fills (participation cap):
    the limit entries fill in part, expire, and their market replacements fill over many bars."""
    doc = default_document()
    doc["symbols"] = list(symbols)
    doc["feed"]["synthetic"]["minutes"] = minutes
    doc["risk"].update(max_drawdown_pct=90.0, daily_loss_limit_pct=90.0)
    doc["execution"].update(limit_expiry_action="market", max_volume_participation=0.02)
    return msgspec.convert(doc, Config)


def test_an_expired_limit_turned_market_fills_from_the_next_bar_when_jumping_too():
    """The market order replacing an expired limit entry fills at the open of the bar after the
    expiry and on every later bar the participation cap allows, jumping or stepping. (Jumping
    used to search for the next fill only up to the next signal, not up to the expiry that adds
    an order, and so skipped the replacement's first bars until some symbol's next signal.)"""
    cfg = expiry_to_market_config()
    data = {s: bt.prepare(s, b, cfg) for s, b in bt.load_bars(cfg, synthetic=True).items()}
    fast_engine, slow_engine = bt.Backtest(cfg), bt.Backtest(cfg, jump=False)
    fast, slow = fast_engine.run(data), slow_engine.run(data)
    cap = cfg.execution.max_volume_participation
    checked = 0
    for order in fast.orders:
        if not order.client_order_id.endswith("-mkt"):
            continue
        sd, lot = data[order.symbol], cfg.instrument(order.symbol).lot_size
        got = [f.ts for f in fast.fills if f.client_order_id == order.client_order_id]
        # the bars from its creation (the expiry's close) on in which the cap allows a lot
        tradable = [
            t
            for t, v in zip(sd.ts.tolist(), sd.cols["volume"].tolist(), strict=True)
            if t >= order.created_ts and np.floor(cap * v / lot + 1e-9) >= 1
        ]
        assert got == tradable[: len(got)], order.client_order_id
        checked += len(got) > 0
    assert checked >= 2
    assert fast.fills == slow.fills
    assert fast.orders == slow.orders
    assert fast_engine.orders.events == slow_engine.orders.events
    assert fast.trades == slow.trades


def test_a_backtest_is_deterministic(synthetic_data):
    cfg, data = synthetic_data
    a, b = bt.Backtest(cfg).run(data), bt.Backtest(cfg).run(data)
    assert fingerprint(a.trades) == fingerprint(b.trades)
    np.testing.assert_array_equal(a.equity, b.equity)


def test_each_engine_prices_every_symbol_by_its_own_configs_instrument(synthetic_data):
    """The broker, risk manager, order manager and trade book look a symbol's instrument up once
    (config.InstrumentTable) and keep it: engines built from different configs, run one after
    the other over the same data, each charge, size and value every symbol by their own config
    (BBB: its own entry in one config, the "default" in the other)."""
    cfg, data = synthetic_data
    doc = msgspec.to_builtins(cfg)
    doc["instruments"]["BBB"] = {"lot_size": 2.0, "multiplier": 3.0, "fee_per_unit": 0.5}
    own = msgspec.convert(doc, Config)
    ex = cfg.execution

    def bps_fee(f) -> float:
        bps = ex.taker_fee_bps if f.liquidity == "taker" else ex.maker_fee_bps
        return f.price * f.quantity * bps / 1e4

    runs = [(c, bt.Backtest(c).run(data)) for c in (cfg, own, cfg)]
    for c, res in runs:
        bbb = [f for f in res.fills if f.symbol == "BBB"]
        assert bbb and any(f.symbol == "AAA" for f in res.fills)
        for f in res.fills:
            per_unit = c is own and f.symbol == "BBB"
            assert f.fee == pytest.approx(f.quantity * 0.5 if per_unit else bps_fee(f), rel=1e-12, abs=1e-12)
        if c is own:
            assert all(f.quantity % 2.0 == 0 for f in bbb)  # sized in lots of 2
            for t in (t for t in res.trades if t.symbol == "BBB"):
                sign = 1.0 if t.side == "long" else -1.0
                gross = sign * (t.exit_price - t.entry_price) * t.quantity * 3.0
                assert t.pnl == pytest.approx(gross - t.fees, rel=1e-9, abs=1e-6)
    assert runs[0][1].fills == runs[2][1].fills
    assert runs[0][1].fills != runs[1][1].fills


def _cut(data: dict[str, bt.SymbolData], t_end: int, cfg: Config) -> dict[str, bt.SymbolData]:
    """The data as it was known at the close of bar t_end: bars <= t_end, indicators recomputed."""
    out = {}
    for sym, sd in data.items():
        keep = sd.ts <= t_end
        bars = pd.DataFrame(
            {c: sd.cols[c][keep] for c in ("timestamp", "open", "high", "low", "close", "volume")}
        )
        out[sym] = bt.prepare(sym, bars, cfg)
    return out


def test_cutting_the_data_at_a_signal_leaves_every_earlier_decision_unchanged(synthetic_data):
    cfg, data = synthetic_data
    full = bt.Backtest(cfg).run(data)
    approved = [r.signal.ts for r in full.signals if r.approved]
    rng = np.random.default_rng(0)
    cuts = sorted(set(rng.choice(approved, size=min(6, len(approved)), replace=False).tolist()))
    for t_end in cuts:
        part = bt.Backtest(cfg).run(_cut(data, t_end, cfg))
        before = [(r.signal, r.approved, r.reason, r.quantity) for r in full.signals if r.signal.ts <= t_end]
        assert [(r.signal, r.approved, r.reason, r.quantity) for r in part.signals] == before, t_end
        closed_before = [t for t in full.trades if t.exit_ts <= t_end]
        assert [t for t in part.trades if t.exit_ts <= t_end] == closed_before, t_end


def test_backtest_command_on_synthetic_symbols_writes_a_run_directory_per_symbol_stats(
    tmp_path, rules_only_config
):
    out = tmp_path / "syn"
    args = ["backtest", "--config", rules_only_config, "--synthetic", "--symbols", "AAA", "BBB"]
    assert cli.main([*args, "--strategies", "momentum", "breakout", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["symbols"] == ["AAA", "BBB"]
    assert set(summary["by_symbol"]) == {"AAA", "BBB"}
    assert set(summary["by_strategy"]) <= {"momentum", "breakout"}
    signals = pd.read_parquet(out / "signals.parquet")
    assert set(signals["symbol"]) == {"AAA", "BBB"} and set(signals["strategy"]) <= {"momentum", "breakout"}
    with Ledger(out / "ledger.sqlite") as ledger:
        assert len(ledger.fills()) == summary["fills"]


def test_an_unknown_strategy_or_empty_window_is_a_clear_error(tmp_path, capsys, rules_only_config):
    args = ["backtest", "--config", rules_only_config, "--out", str(tmp_path / "x")]
    assert cli.main([*args, "--strategies", "moonshot"]) == 3
    assert "moonshot" in capsys.readouterr().err
    assert cli.main([*args, "--from", "2030-01-01"]) == 3
    assert "no bars" in capsys.readouterr().err


def test_tick_mode_backtest_on_the_bundled_ticks_keeps_entries_and_jumping_exact():
    doc = default_document()
    doc["execution"]["fill_mode"] = "tick"
    cfg = msgspec.convert(doc, Config)
    ticks: dict = {}
    bars = bt.load_bars(cfg, ticks_out=ticks)
    data = {s: bt.prepare(s, b, cfg, ticks.get(s)) for s, b in bars.items()}
    tick_run = bt.Backtest(cfg).run(data)
    assert tick_run.trades == bt.Backtest(cfg, jump=False).run(data).trades
    bar_cfg = Config()
    bar_run = bt.Backtest(bar_cfg).run({s: bt.prepare(s, b, bar_cfg) for s, b in bars.items()})
    # the first trade is entered identically (market fills at the next trade = the next bar's open)
    assert (tick_run.trades[0].entry_ts, tick_run.trades[0].entry_price) == (
        bar_run.trades[0].entry_ts,
        bar_run.trades[0].entry_price,
    )
    # every tick-mode stop fill is a real trade price of its bar, moved by the slippage and then
    # to the next tick against the taker
    sd = data["ES"]
    bps = cfg.execution.slippage_bps / 1e4
    tick = cfg.instrument("ES").tick_size
    stops = [f for f in tick_run.fills if f.client_order_id.endswith("-sl")]
    assert stops
    for f in stops:
        i = int(np.searchsorted(sd.ts, f.ts))
        sign = -1.0 if f.side.value == "sell" else 1.0
        slipped = [tick_against(p * (1 + sign * bps), tick, f.side) for p in sd.bar_ticks(i)]
        assert f.price in slipped, f


def test_signal_records_write_their_detail_when_read_and_travel_written(es_data):
    import pickle

    cfg, data = es_data
    result = bt.Backtest(cfg).run(data)
    rec = next(r for r in result.signals if r.approved)
    assert not isinstance(rec._detail, str)  # not written yet
    copy = pickle.loads(pickle.dumps(rec))  # a Ray result travels pickled
    assert isinstance(copy._detail, str) and copy.detail == rec.detail and copy == rec
    assert rec.detail.startswith(f"{rec.quantity:,.10g} @ ")
    refused = next(r for r in result.signals if r.reason == "position_exists")
    assert "already has" in refused.detail


def test_the_backtest_command_with_ml_enabled_judges_every_signal_with_the_registry_models(
    tmp_path, model_registry
):
    """config.json turns the models on: `scalper backtest` then decides as Backtest(gate=the
    registry's models) and records each signal's regime, P(win), multiplier and versions."""
    from conftest import shipped_config

    from scalper.config import load, with_overrides
    from scalper.live_gate import configured_gate

    config = shipped_config(tmp_path, registry=str(model_registry))
    out = tmp_path / "run"
    args = ["backtest", "--config", config, "--synthetic", "--symbols", "AAA", "BBB", "--out", str(out)]
    assert cli.main([*args, "--no-verify"]) == 0
    signals = pd.read_parquet(out / "signals.parquet")
    assert len(signals) > 0
    assert signals["regime"].isin(["trending", "ranging", "volatile"]).all()
    assert signals["p_win"].between(0.0, 1.0).all() and signals["size_multiplier"].notna().all()
    assert (signals["models"].map(json.loads) == {n: "v0001" for n in ("validator", "regime", "sizer")}).all()
    cfg = with_overrides(load(config), {"symbols": ["AAA", "BBB"]})
    bars = bt.load_bars(cfg, synthetic=True, symbols=["AAA", "BBB"])
    data = {s: bt.prepare(s, b, cfg) for s, b in bars.items()}
    expected = bt.Backtest(cfg, gate=configured_gate(cfg)).run(data)
    assert list(signals["decision"]) == [r.reason for r in expected.signals]
    assert {"approved"} < set(signals["decision"])  # some judged out by the models, some taken


def test_ml_enabled_without_models_is_a_clear_error_before_anything_starts(tmp_path, capsys):
    from conftest import shipped_config

    config = shipped_config(tmp_path, registry=str(tmp_path / "no-models"))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        cli.main(["backtest", "--config", config, "--synthetic", "--out", str(out)])
    assert exc.value.code == 3
    err = capsys.readouterr().err
    assert "ml.enabled" in err and "scalper train all --bootstrap" in err and "validator: no model" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--config", config, "--in-process", "--run-id", "x"])
    assert exc.value.code == 3 and "scalper train all --bootstrap" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "no-models").exists()
