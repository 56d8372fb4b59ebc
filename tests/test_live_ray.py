"""`scalper run --mode live` end to end on Ray against the local Binance exchange (127.0.0.1).

Real orders: the feed actor watches the exchange's trade stream, the candle shard builds the
bars, the breakout strategy signals, the risk manager sizes, the trading-service actor sends
the orders through ccxt, and the exchange records them. The exchange runs a fast clock
(`feed.ccxt.clock_speed` = 120: an event minute every half second of wall time) and a test thread plays a
price path on it: quiet minutes, a breakout on heavy volume, then the move to the target.
Each run stops by itself (`--minutes`) and writes its run directory.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from exchange import LocalExchange
from exchange.live import ENV, posted

from scalper.config import Config, with_overrides
from scalper.execution.ccxt import ScaledClock
from scalper.ledger import Ledger
from scalper.types import OrderStatus

# The trading-service actor reads the keys from ITS environment: Ray workers inherit the
# environment the session's cluster started with, so the local exchange's test keys are set
# when this module is collected, before any test starts the cluster (they only ever reach
# 127.0.0.1).
os.environ.update(ENV)

SPEED = 120.0  # event seconds per wall second: a minute every 0.5 s


def quiet(level: float, i: int) -> tuple[float, float]:
    return level + 0.05 * ((i % 3) - 1), 0.1


class Tape(threading.Thread):
    """Trades on the exchange every 50 ms (6 s of its clock), minute k = 0 being the first
    whole minute after the run's feed subscribed: with `breakout`, quiet at 100 for three
    minutes and a breakout to 101 on 10x volume in minute 3 (the entry, at about 101, its stop
    and target about one ATR(2) below and two above); then quiet at 101 until `rise(k)` says
    so, and up to 104 within a minute (through the target), where it stays. The rise waits
    for what the test needs (an OCO resting on the exchange) as a market would not: then a
    slow, loaded machine cannot make the test race the trading service."""

    def __init__(self, ex: LocalExchange, breakout: bool, rise: Callable[[int], bool]):
        super().__init__(daemon=True)
        self.ex, self.breakout, self.rise = ex, breakout, rise
        self.done = threading.Event()

    def price(self, k: int, frac: float, i: int, rising_since: float | None) -> tuple[float, float]:
        if self.breakout and k < 3:
            return quiet(100.0, i)
        if self.breakout and k == 3:
            return round(100.0 + frac, 2), 1.0
        if rising_since is None:
            return quiet(101.0, i)
        return round(101.0 + 3.0 * min(1.0, (self.ex.clock() - rising_since) / 60), 2), 0.1

    def run(self) -> None:
        while not self.ex.subscribers() and not self.done.is_set():
            time.sleep(0.02)
        m0 = (self.ex.clock() // 60 + 1) * 60
        i, rising_since = 0, None
        while not self.done.is_set():
            u = (self.ex.clock() - m0) / 60
            if u >= 0:
                k = int(u)
                if rising_since is None and k > (3 if self.breakout else 0) and self.rise(k):
                    rising_since = self.ex.clock()
                self.ex.add_trade("BTCUSDT", *self.price(k, u - k, i, rising_since))
                i += 1
            time.sleep(0.05)


def ray_live_cfg(ex: LocalExchange, tmp_path: Path, origin_ms: int, brackets: str) -> Config:
    return with_overrides(
        Config(),
        {
            "symbols": ["BTCUSDT"],
            "feed.kind": "ccxt",
            "feed.ccxt.urls": ex.ccxt_urls(),
            "feed.ccxt.clock_speed": SPEED,
            "feed.ccxt.clock_origin_ms": origin_ms,
            "feed.ccxt.batch_ms": 6000,  # 50 ms of wall time
            "feed.ccxt.watermark_lag_ms": 30000,  # 0.25 s of wall time: trades may reach the feed that late
            "feed.ccxt.brackets": brackets,
            "feed.ccxt.backoff_initial_s": 0.05,
            "feed.ccxt.backoff_max_s": 0.2,
            "execution.broker": "ccxt",
            "strategies.allow_short": False,  # spot
            "strategies.momentum.enabled": False,
            "strategies.mean_reversion.enabled": False,
            "strategies.breakout.lookback_bars": 2,
            "strategies.breakout.volume_multiple": 1.2,
            "indicators.volume_sma_length": 2,
            "indicators.atr_length": 2,
            "risk.starting_equity": 10_000.0,
            "risk.risk_per_trade_pct": 1.0,
            "risk.max_position_pct": 20.0,
            "instruments.default.lot_size": 0.001,
            "ray.candle_shards": 1,
            "store.runs_dir": str(tmp_path / "runs"),
        },
    )


def live_run(cfg: Config, tmp_path: Path, *flags: str) -> int:
    from scalper.cli import main

    path = tmp_path / "config.json"
    path.write_bytes(msgspec.json.encode(cfg))
    return main(["run", "--mode", "live", "--sandbox", "--config", str(path), "-q", *flags])


@pytest.fixture
def fast_exchange():
    """The local exchange on the fast clock: 10,000 USDT, the last trade at 100."""
    origin_ms = int(time.time() * 1000)
    with LocalExchange(balances={"USDT": 10_000.0}, clock=ScaledClock(SPEED, origin_ms)) as ex:
        ex.add_trade("BTCUSDT", 100.0, 0.1)
        yield ex, origin_ms


def ledger_of(run_dir: Path) -> tuple[list, list]:
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        return ledger.orders(), ledger.fills()


@pytest.mark.ray
def test_live_run_on_ray_sends_real_orders_to_the_exchange_and_stops_after_its_minutes(
    ray_cluster, fast_exchange, tmp_path, capsys
):
    ex, origin_ms = fast_exchange
    tape = Tape(ex, breakout=True, rise=lambda k: bool(ex.order_lists))  # once the OCO rests
    tape.start()
    try:
        code = live_run(
            ray_live_cfg(ex, tmp_path, origin_ms, "exchange"), tmp_path, "--minutes", "10", "--run-id", "r1"
        )
    finally:
        tape.done.set()
    out = capsys.readouterr().out
    # a sandbox run says so, and ends as a paper run does: verify's verdict, then the report
    assert "  sandbox trading: signals 1 (approved 1" in out
    assert "  verified: " in out and f"  report: {tmp_path / 'runs' / 'r1' / 'report.html'}" in out
    assert code == 0  # (verify agrees with the run's exchange fills)
    # the exchange: the breakout's market buy, then its bracket as one OCO, whose target filled
    assert max(Counter(o.client_order_id for o in ex.orders.values()).values()) == 1
    sent = posted(ex)
    assert max(sent.values()) == 1  # no client order id sent twice
    entries = [c for c in sent if not c.endswith(("-sl", "-tp"))]
    assert len(entries) == 1 and entries[0].startswith("sc-")
    [entry] = entries
    assert set(sent) == {entry, f"{entry}-sl", f"{entry}-tp"}
    assert ex.order_by_client_id(entry).status == "FILLED" and ex.order_by_client_id(entry).type == "MARKET"
    assert ex.order_by_client_id(f"{entry}-tp").status == "FILLED"
    assert ex.order_by_client_id(f"{entry}-sl").status == "EXPIRED"

    run_dir = tmp_path / "runs" / "r1"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mode"] == "sandbox"
    assert summary["runtime"]["stopped_by"] == "minutes" and summary["runtime"]["minutes_traded"] >= 10
    assert summary["trading"]["overall"]["trades"] == 1 and summary["trading"]["signals_approved"] == 1
    orders, fills = ledger_of(run_dir)
    by_id = {o.client_order_id: o for o in orders}
    assert by_id[entry].status == OrderStatus.FILLED and by_id[f"{entry}-tp"].status == OrderStatus.FILLED
    # every fill the ledger has is an execution the exchange made, and the other way round
    assert {f.client_order_id for f in fills} == {c for c in sent if ex.order_by_client_id(c).executed > 0}
    bought = sum(f.quantity for f in fills if f.client_order_id == entry)
    assert bought == pytest.approx(float(ex.order_by_client_id(entry).executed))
    assert (run_dir / "orders.parquet").exists() and (run_dir / "trades.csv").exists()
    assert json.loads((run_dir / "config.json").read_text())["execution"]["broker"] == "ccxt"


@pytest.mark.ray
def test_a_resumed_live_run_on_ray_closes_the_position_left_open_without_sending_an_order_twice(
    ray_cluster, fast_exchange, tmp_path
):
    ex, origin_ms = fast_exchange
    cfg = ray_live_cfg(ex, tmp_path, origin_ms, "service")
    tape = Tape(ex, breakout=True, rise=lambda k: False)  # run 1: the entry, then between stop and target
    tape.start()
    try:
        # (--no-verify: the test above has verify's verdict on a live run)
        assert live_run(cfg, tmp_path, "--minutes", "5", "--run-id", "run1", "--no-verify") == 0
    finally:
        tape.done.set()
    first = posted(ex)
    [entry] = first
    assert ex.order_by_client_id(entry).status == "FILLED"
    assert float(ex.balance("BTC")[0]) > 0  # the position stays open on the exchange
    orders, _ = ledger_of(tmp_path / "runs" / "run1")
    legs = {o.client_order_id: o.status for o in orders if o.parent_id == entry}
    assert legs == {f"{entry}-sl": OrderStatus.ACCEPTED, f"{entry}-tp": OrderStatus.ACCEPTED}  # kept

    tape = Tape(ex, breakout=False, rise=lambda k: k >= 2)  # run 2: up through the target
    tape.start()
    try:
        code = live_run(
            cfg, tmp_path, "--resume", "run1", "--minutes", "4", "--run-id", "run2", "--no-verify"
        )
    finally:
        tape.done.set()
    assert code == 0
    sent = posted(ex)
    assert max(sent.values()) == 1 and set(sent) == {entry, f"{entry}-tp"}  # the target's market sell
    assert max(Counter(o.client_order_id for o in ex.orders.values()).values()) == 1
    assert ex.order_by_client_id(f"{entry}-tp").type == "MARKET"
    assert float(ex.balance("BTC")[0]) < 1e-5  # flat: all but what is below the lot step (1e-5) sold

    run_dir = tmp_path / "runs" / "run2"
    assert (run_dir / "state" / "start-ledger.sqlite").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["trading"]["overall"]["trades"] == 1  # run 1's entry, run 2's exit
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        assert ledger.rebuild_positions()["BTCUSDT"].quantity == pytest.approx(0.0)
        assert ledger.order(f"{entry}-tp").status == OrderStatus.FILLED
        assert ledger.order(f"{entry}-sl").status == OrderStatus.CANCELED
