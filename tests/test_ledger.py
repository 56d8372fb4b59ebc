"""Ledger: WAL, schema versions, round trips, transitions, fill idempotency, rebuild, crash safety."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import msgspec
import numpy as np
import pytest

from scalper import ledger as ledger_mod
from scalper.ledger import (
    FILL_COLUMNS,
    ORDER_COLUMNS,
    POSITION_COLUMNS,
    SCHEMA_VERSION,
    Ledger,
    LedgerError,
    LedgerState,
    OrderEvent,
    apply_fill,
)
from scalper.types import (
    NS_PER_MINUTE,
    Fill,
    Order,
    OrderRole,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
)

T0 = 1_700_000_040 * 1_000_000_000 // NS_PER_MINUTE * NS_PER_MINUTE
REPO = Path(__file__).resolve().parents[1]


def t(i: int) -> int:
    return T0 + i * NS_PER_MINUTE


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


@pytest.fixture
def led(path: Path):
    ledger = Ledger(path)
    yield ledger
    ledger.close()


_RAW: list[sqlite3.Connection] = []


def raw(path: Path) -> sqlite3.Connection:
    """An independent connection to the file, as another process would open it."""
    conn = sqlite3.connect(path, isolation_level=None)
    _RAW.append(conn)
    return conn


@pytest.fixture(autouse=True)
def _close_raw_connections():
    yield
    while _RAW:
        _RAW.pop().close()


def full_order(cid: str = "o-1", **kw) -> Order:
    """An order with every field set away from its default."""
    fields = dict(
        client_order_id=cid,
        symbol="ES",
        side=Side.SELL,
        order_type=OrderType.LIMIT,
        quantity=3.0,
        role=OrderRole.TAKE_PROFIT,
        limit_price=4012.25,
        stop_price=3990.5,
        tif=TimeInForce.GTD,
        expire_ts=t(30),
        post_only=True,
        status=OrderStatus.ACCEPTED,
        filled_qty=0.0,
        avg_fill_price=0.0,
        created_ts=t(1),
        updated_ts=t(2),
        parent_id="o-0",
        oco_id="oco-7",
        strategy="mean_reversion",
        reason="band touch",
    )
    fields.update(kw)
    return Order(**fields)


def market(cid: str, symbol: str, side: Side, qty: float, ts: int, strategy: str = "momentum") -> Order:
    return Order(cid, symbol, side, OrderType.MARKET, qty, created_ts=ts, updated_ts=ts, strategy=strategy)


# ---------------------------------------------------------------------------- opening


def test_opens_in_wal_mode_with_foreign_keys_and_normal_sync(led: Ledger, path: Path):
    conn = led._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    # WAL is a property of the file: another connection sees it too
    assert raw(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_synchronous_full_is_a_constructor_flag(path: Path):
    with Ledger(path, synchronous="FULL") as led:
        assert led._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    with pytest.raises(LedgerError, match="synchronous"):
        Ledger(path, synchronous="OFF")


def test_new_ledger_records_schema_version_1_in_meta(led: Ledger, path: Path):
    assert SCHEMA_VERSION == 1
    assert led.schema_version == 1
    assert raw(path).execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (1,)


def test_ledger_with_newer_schema_version_is_refused_with_a_clear_error(path: Path):
    Ledger(path).close()
    raw(path).execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'")
    with pytest.raises(
        LedgerError, match=r"ledger\.sqlite has schema version 2, this scalper understands up to 1"
    ):
        Ledger(path)


def test_older_ledger_is_migrated_step_by_step(path: Path, monkeypatch: pytest.MonkeyPatch):
    with Ledger(path) as led:
        led.record_equity(t(0), 1.0, 1.0)
    steps = [*ledger_mod.MIGRATIONS, ["ALTER TABLE equity ADD COLUMN note TEXT NOT NULL DEFAULT ''"]]
    monkeypatch.setattr(ledger_mod, "MIGRATIONS", steps)
    monkeypatch.setattr(ledger_mod, "SCHEMA_VERSION", 2)
    with Ledger(path) as led:
        assert led.schema_version == 2
        assert led.equity_curve() == [(t(0), 1.0, 1.0)]  # data kept
    cols = [r[1] for r in raw(path).execute("PRAGMA table_info(equity)")]
    assert cols[-1] == "note"


def test_sqlite_file_that_is_not_a_ledger_is_refused(path: Path):
    raw(path).execute("CREATE TABLE something (x)")
    with pytest.raises(LedgerError, match="not a scalper ledger"):
        Ledger(path)


def test_file_that_is_not_sqlite_is_refused(path: Path):
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="not a usable SQLite database"):
        Ledger(path)


def test_every_struct_field_has_a_column():
    def columns(table: str) -> set[str]:
        with Ledger(":memory:") as led:
            return {r[1] for r in led._conn.execute(f"PRAGMA table_info({table})")}

    for struct, table, listed in (
        (Order, "orders", ORDER_COLUMNS),
        (Fill, "fills", FILL_COLUMNS),
        (Position, "positions", POSITION_COLUMNS),
    ):
        assert set(listed) == set(struct.__struct_fields__), struct
        assert set(struct.__struct_fields__) <= columns(table), table


def test_closed_ledger_refuses_calls_and_close_is_idempotent(path: Path):
    led = Ledger(path)
    led.close()
    led.close()
    assert led.closed
    with pytest.raises(LedgerError, match="closed"):
        led.orders()


# ---------------------------------------------------------------------------- round trips


def test_order_round_trips_with_every_field(led: Ledger):
    o = full_order()
    led.record_order(o)
    assert led.order("o-1") == o
    assert led.orders() == [o]
    assert led.order("missing") is None


def test_record_order_upserts_by_client_order_id_and_keeps_first_record_order(led: Ledger):
    a, b = full_order("a"), full_order("b", parent_id=None, oco_id=None, limit_price=None, expire_ts=None)
    led.record_order(a)
    led.record_order(b)
    a2 = msgspec.structs.replace(a, status=OrderStatus.CANCELED, reason="oco", updated_ts=t(9))
    led.record_order(a2)
    assert led.orders() == [a2, b]


def test_fill_position_equity_and_meta_round_trip(led: Ledger):
    led.record_order(market("o-1", "BTC/USDT", Side.BUY, 0.5, t(0)))
    f = Fill("f-1", "o-1", "BTC/USDT", Side.BUY, 0.5, 30_000.125, 0.0375, "taker", t(1))
    assert led.record_fill(f) is True
    assert led.fills() == [f]
    assert led.fills("BTC/USDT") == [f]
    assert led.fills("ES") == []
    assert led.has_fill("f-1") and not led.has_fill("f-2")

    p1 = Position("BTC/USDT", -0.25, 30_060.0, 40.0, t(3), "breakout")
    p2 = Position("ES")  # flat: opened_ts None
    led.record_position(p1)
    led.record_position(p2)
    assert led.positions() == [p1, p2]
    p1b = msgspec.structs.replace(p1, quantity=0.0, opened_ts=None)
    led.record_position(p1b)
    assert led.positions() == [p1b, p2]

    led.record_equity(t(1), 100_000.0, 100_000.0)
    led.record_equity(t(2), 99_990.5, 100_012.25)
    assert led.equity_curve() == [(t(1), 100_000.0, 100_000.0), (t(2), 99_990.5, 100_012.25)]

    led.set_meta("run_id", "20240102-abc")
    led.set_meta("started", t(0))
    led.set_meta("starting_cash", 100_000.0)
    led.set_meta("config", '{"risk": {"max_open_positions": 10}}')
    led.set_meta("run_id", "20240102-abd")  # overwrite
    assert led.get_meta("run_id") == "20240102-abd"
    assert led.get_meta("finished") is None
    assert led.meta() == {
        "config": '{"risk": {"max_open_positions": 10}}',
        "run_id": "20240102-abd",
        "started": t(0),
        "starting_cash": 100_000.0,
    }


def test_numpy_scalars_are_stored_as_plain_numbers(led: Ledger):
    led.record_equity(np.int64(t(5)), np.float64(1.5), np.float32(2.5))
    led.record_order(market("o-1", "ES", Side.BUY, np.float64(2.0), np.int64(t(0))))
    assert led.equity_curve() == [(t(5), 1.5, 2.5)]
    assert type(led.equity_curve()[0][0]) is int
    assert led.order("o-1").created_ts == t(0)


class Cooldown(msgspec.Struct):
    symbol: str
    until_ts: int


class RiskState(msgspec.Struct):
    halted: bool
    day_start_equity: float
    peak_equity: float
    losses_in_a_row: dict[str, int]
    cooldowns: list[Cooldown]
    side: Side | None = None


def test_risk_state_persists_across_reopen(path: Path):
    state = RiskState(
        True, 100_000.0, 101_234.5, {"ES": 2, "BTC/USDT": 0}, [Cooldown("ES", t(40))], Side.SELL
    )
    with Ledger(path) as led:
        assert led.load_risk_state(RiskState) is None
        led.save_risk_state(msgspec.structs.replace(state, halted=False))
        led.save_risk_state(state)  # replaces: one row
    with Ledger(path) as led:
        assert led.load_risk_state(RiskState) == state
    assert raw(path).execute("SELECT COUNT(*), type, version FROM risk_state").fetchone() == (
        1,
        "RiskState",
        1,
    )


def test_risk_state_of_another_type_or_version_is_refused(led: Ledger):
    led.save_risk_state(Cooldown("ES", 1), version=3)
    assert led.load_risk_state(Cooldown, version=3) == Cooldown("ES", 1)
    with pytest.raises(LedgerError, match="Cooldown version 3, not Cooldown version 1"):
        led.load_risk_state(Cooldown)
    with pytest.raises(LedgerError, match="not RiskState"):
        led.load_risk_state(RiskState, version=3)


def test_risk_state_with_non_finite_floats_is_refused(led: Ledger):
    with pytest.raises(LedgerError, match="non-finite float at peak_equity"):
        led.save_risk_state(RiskState(False, 1.0, math.inf, {}, []))
    assert led.load_risk_state(RiskState) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("api_key", "abcd1234"),
        ("config", '{"execution": {"ccxt": {"apiKey": "abcd", "secret": "s3cr3t"}}}'),
        ("config", '{"exchanges": [{"name": "binance", "password": "hunter2"}]}'),
        ("config", '{"ray": {"auth_token": "tok"}}'),
    ],
)
def test_set_meta_refuses_unredacted_secrets(led: Ledger, key: str, value: str):
    with pytest.raises(LedgerError, match="secret"):
        led.set_meta(key, value)
    assert led.meta() == {}


def test_set_meta_accepts_redacted_config(led: Ledger):
    cfg = '{"ccxt": {"apiKey": "***", "secret": "<redacted>", "password": ""}, "max_tokens": 5, "token_kind": "x"}'
    led.set_meta("config", cfg)
    assert led.get_meta("config") == cfg


# ---------------------------------------------------------------------------- transitions


def test_transitions_are_appended_in_order_and_update_the_order_row(led: Ledger):
    led.record_order(market("o-1", "ES", Side.BUY, 2.0, t(0)))
    led.record_order(market("o-2", "ES", Side.SELL, 1.0, t(0)))
    led.record_transition(t(0), "o-1", None, OrderStatus.NEW, "created")
    led.record_transition(t(0), "o-1", OrderStatus.NEW, OrderStatus.ACCEPTED, "")
    led.record_transition(t(1), "o-2", OrderStatus.NEW, OrderStatus.REJECTED, "min_notional")
    led.record_transition(t(1), "o-1", OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, "fill f-1")
    led.record_transition(t(2), "o-1", OrderStatus.PARTIALLY_FILLED, OrderStatus.PARTIALLY_FILLED, "fill f-2")
    led.record_transition(t(3), "o-1", OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELED, "ioc remainder")

    events = led.order_events()
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert [(e.client_order_id, e.from_status, e.to_status) for e in events] == [
        ("o-1", None, OrderStatus.NEW),
        ("o-1", OrderStatus.NEW, OrderStatus.ACCEPTED),
        ("o-2", OrderStatus.NEW, OrderStatus.REJECTED),
        ("o-1", OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED),
        ("o-1", OrderStatus.PARTIALLY_FILLED, OrderStatus.PARTIALLY_FILLED),
        ("o-1", OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELED),
    ]
    assert led.order_events("o-2") == [
        OrderEvent(events[2].seq, t(1), "o-2", OrderStatus.NEW, OrderStatus.REJECTED, "min_notional")
    ]
    o1, o2 = led.order("o-1"), led.order("o-2")
    assert (o1.status, o1.updated_ts, o1.reason) == (OrderStatus.CANCELED, t(3), "ioc remainder")
    assert (o2.status, o2.updated_ts, o2.reason) == (OrderStatus.REJECTED, t(1), "min_notional")


def test_transition_after_the_order_row_was_already_updated_is_accepted(led: Ledger):
    o = market("o-1", "ES", Side.BUY, 1.0, t(0))
    led.record_order(o)
    led.record_order(msgspec.structs.replace(o, status=OrderStatus.ACCEPTED))  # service saved the order first
    led.record_transition(t(1), "o-1", OrderStatus.NEW, OrderStatus.ACCEPTED)
    assert led.order("o-1").status == OrderStatus.ACCEPTED
    assert len(led.order_events("o-1")) == 1


def test_transition_from_the_wrong_status_is_refused_and_nothing_is_written(led: Ledger):
    led.record_order(market("o-1", "ES", Side.BUY, 1.0, t(0)))
    with pytest.raises(LedgerError, match="is 'new' in the ledger, not 'accepted'"):
        led.record_transition(t(1), "o-1", OrderStatus.ACCEPTED, OrderStatus.FILLED)
    assert led.order_events() == []
    assert led.order("o-1").status == OrderStatus.NEW


def test_transition_of_an_unknown_order_is_refused(led: Ledger):
    with pytest.raises(LedgerError, match="unknown order 'ghost'"):
        led.record_transition(t(1), "ghost", OrderStatus.NEW, OrderStatus.ACCEPTED)
    assert led.order_events() == []


# ---------------------------------------------------------------------------- fills


def test_recording_the_same_fill_twice_is_a_no_op_that_returns_false(led: Ledger):
    led.record_order(market("o-1", "ES", Side.BUY, 3.0, t(0)))
    f = Fill("f-1", "o-1", "ES", Side.BUY, 1.0, 4000.0, 1.25, "taker", t(1))
    assert led.record_fill(f) is True
    assert led.record_fill(f) is False
    with led.batch():
        assert led.record_fill(f) is False
    assert led.fills() == [f]
    assert led.rebuild_positions()["ES"].quantity == 1.0  # counted once


def test_a_different_fill_under_an_existing_fill_id_is_refused(led: Ledger):
    led.record_order(market("o-1", "ES", Side.BUY, 3.0, t(0)))
    led.record_fill(Fill("f-1", "o-1", "ES", Side.BUY, 1.0, 4000.0, 1.25, "taker", t(1)))
    with pytest.raises(LedgerError, match="different contents"):
        led.record_fill(Fill("f-1", "o-1", "ES", Side.BUY, 2.0, 4000.0, 1.25, "taker", t(1)))


def test_fills_set_the_orders_filled_quantity_and_average_price(led: Ledger):
    led.record_order(market("o-1", "ES", Side.BUY, 3.0, t(0)))
    led.record_fill(Fill("f-1", "o-1", "ES", Side.BUY, 1.0, 4000.0, 0.0, "taker", t(1)))
    led.record_fill(Fill("f-2", "o-1", "ES", Side.BUY, 2.0, 4003.0, 0.0, "taker", t(2)))
    o = led.order("o-1")
    assert (o.filled_qty, o.avg_fill_price) == (3.0, 4002.0)


def test_fill_of_an_unrecorded_order_is_refused(led: Ledger):
    with pytest.raises(LedgerError, match="FOREIGN KEY"):
        led.record_fill(Fill("f-1", "nobody", "ES", Side.BUY, 1.0, 4000.0, 0.0, "taker", t(1)))
    assert led.fills() == []


@pytest.mark.parametrize(
    ("qty", "price", "fee"), [(0.0, 1.0, 0.0), (-1.0, 1.0, 0.0), (1.0, math.nan, 0.0), (1.0, 1.0, math.inf)]
)
def test_fill_with_a_non_positive_or_non_finite_number_is_refused(led: Ledger, qty, price, fee):
    led.record_order(market("o-1", "ES", Side.BUY, 3.0, t(0)))
    with pytest.raises(LedgerError, match="fill 'f-1'"):
        led.record_fill(Fill("f-1", "o-1", "ES", Side.BUY, qty, price, fee, "taker", t(1)))


# ---------------------------------------------------------------------------- position maths


def fill(side: Side, qty: float, price: float, ts: int = 0, sym: str = "X", fee: float = 0.0) -> Fill:
    return Fill(f"f{ts}", "o", sym, side, qty, price, fee, "taker", ts)


@pytest.mark.parametrize(
    ("start", "f", "mult", "expected"),
    [
        # open long / open short
        (Position("X"), fill(Side.BUY, 2, 100, 1), 1, Position("X", 2, 100, 0, 1)),
        (Position("X"), fill(Side.SELL, 2, 100, 1), 1, Position("X", -2, 100, 0, 1)),
        # add: the average moves, nothing realized
        (Position("X", 2, 100, 0, 1), fill(Side.BUY, 2, 110, 2), 1, Position("X", 4, 105, 0, 1)),
        (Position("X", -1, 100, 0, 1), fill(Side.SELL, 3, 96, 2), 1, Position("X", -4, 97, 0, 1)),
        # reduce: realized on the closed part only, average unchanged
        (Position("X", 4, 105, 0, 1), fill(Side.SELL, 1, 115, 3), 1, Position("X", 3, 105, 10, 1)),
        (Position("X", -4, 97, 0, 1), fill(Side.BUY, 1, 90, 3), 50, Position("X", -3, 97, 350, 1)),
        # close
        (Position("X", 3, 105, 10, 1), fill(Side.SELL, 3, 100, 4), 1, Position("X", 0, 0, -5, None)),
        (Position("X", -2, 4000, 0, 1), fill(Side.BUY, 2, 3990.5, 4), 50, Position("X", 0, 0, 950, None)),
        # flip: close at the fill price, the remainder opens at the fill price
        (Position("X", 2, 100, 0, 1), fill(Side.SELL, 5, 110, 5), 1, Position("X", -3, 110, 20, 5)),
        (Position("X", -1, 100, 7, 1), fill(Side.BUY, 3, 104, 5), 50, Position("X", 2, 104, 7 - 200, 5)),
    ],
)
def test_apply_fill_long_short_add_reduce_close_flip(start, f, mult, expected):
    assert apply_fill(start, f, mult) == expected


def test_apply_fill_treats_float_dust_as_flat_and_does_not_modify_its_argument():
    p = Position("X")
    for q in (0.1, 0.2):
        p = apply_fill(p, fill(Side.BUY, q, 10.0))
    before = msgspec.structs.replace(p)
    closed = apply_fill(p, fill(Side.SELL, 0.3, 10.0, 9))
    assert p == before
    assert closed.quantity == 0.0 and closed.opened_ts is None


# ---------------------------------------------------------------------------- rebuild

STARTING_CASH = 100_000.0
MULTIPLIERS = {"ES": 50.0, "BTC/USDT": 1.0}


def simulate_run(led: Ledger) -> None:
    """A hand-written run: orders, transitions and fills as the trading service would record them."""
    led.set_meta("run_id", "test-run")
    led.set_meta("starting_cash", STARTING_CASH)

    def order(cid, sym, side, qty, ts, strategy="momentum", **kw):
        o = Order(
            cid,
            sym,
            side,
            kw.pop("order_type", OrderType.MARKET),
            qty,
            created_ts=ts,
            updated_ts=ts,
            strategy=strategy,
            **kw,
        )
        led.record_order(o)
        led.record_transition(ts, cid, None, OrderStatus.NEW, "created")
        led.record_transition(ts, cid, OrderStatus.NEW, OrderStatus.ACCEPTED)

    def filled(fid, cid, sym, side, qty, price, fee, ts, final=True):
        prev = led.order(cid).status
        assert led.record_fill(Fill(fid, cid, sym, side, qty, price, fee, "taker", ts))
        to = OrderStatus.FILLED if final else OrderStatus.PARTIALLY_FILLED
        led.record_transition(ts, cid, prev, to, f"fill {fid}")

    # ES, multiplier 50
    order("es-1", "ES", Side.BUY, 2, t(1))
    filled("es-1-f", "es-1", "ES", Side.BUY, 2, 4000.0, 2.0, t(2))  # long 2 @ 4000
    order("es-2", "ES", Side.BUY, 1, t(3))
    filled("es-2-f", "es-2", "ES", Side.BUY, 1, 4006.0, 1.0, t(4))  # add: long 3 @ 4002
    order("es-3", "ES", Side.SELL, 1, t(5), role=OrderRole.TAKE_PROFIT)
    filled("es-3-f", "es-3", "ES", Side.SELL, 1, 4010.0, 1.0, t(6))  # reduce: +8 x 1 x 50
    order("es-4", "ES", Side.SELL, 5, t(7), strategy="breakout")
    filled("es-4-f", "es-4", "ES", Side.SELL, 5, 3990.0, 5.0, t(8))  # flip: -12 x 2 x 50, short 3 @ 3990
    order("es-5", "ES", Side.BUY, 3, t(9), role=OrderRole.STOP_LOSS)
    filled("es-5-f", "es-5", "ES", Side.BUY, 3, 3980.0, 3.0, t(10))  # close: +10 x 3 x 50

    # BTC: one order filled in two parts (short), then a partial cover
    order("btc-1", "BTC/USDT", Side.SELL, 0.5, t(11), strategy="mean_reversion")
    filled("btc-1-a", "btc-1", "BTC/USDT", Side.SELL, 0.2, 30_000.0, 0.6, t(12), final=False)
    filled("btc-1-b", "btc-1", "BTC/USDT", Side.SELL, 0.3, 30_100.0, 0.9, t(13))
    order("btc-2", "BTC/USDT", Side.BUY, 0.25, t(14))
    filled("btc-2-f", "btc-2", "BTC/USDT", Side.BUY, 0.25, 29_900.0, 0.75, t(15))

    # orders that never filled: one rejected, one canceled, one still working
    order("es-6", "ES", Side.BUY, 1, t(16))
    led.record_transition(t(16), "es-6", OrderStatus.ACCEPTED, OrderStatus.REJECTED, "max_open_positions")
    order("btc-3", "BTC/USDT", Side.SELL, 0.1, t(17), order_type=OrderType.LIMIT, limit_price=30_500.0)
    led.record_transition(t(18), "btc-3", OrderStatus.ACCEPTED, OrderStatus.CANCELED, "expired bracket")
    order("btc-4", "BTC/USDT", Side.BUY, 0.25, t(19), order_type=OrderType.LIMIT, limit_price=29_000.0)
    led.record_equity(t(19), 100_725.75, 100_725.75 + 0.25 * (30_060.0 - 29_950.0))


# Computed by hand, independently of the ledger's position code:
ES_REALIZED = (4010 - 4002) * 1 * 50 + (3990 - 4002) * 2 * 50 + (3990 - 3980) * 3 * 50  # 400 - 1200 + 1500
BTC_AVG = (0.2 * 30_000 + 0.3 * 30_100) / 0.5  # 30_060
BTC_REALIZED = (BTC_AVG - 29_900) * 0.25  # short covered below the average
FEES = 2 + 1 + 1 + 5 + 3 + 0.6 + 0.9 + 0.75
EXPECTED_POSITIONS = {
    "ES": Position("ES", 0.0, 0.0, ES_REALIZED, None, ""),  # flat: no opened_ts, no strategy
    "BTC/USDT": Position("BTC/USDT", -0.25, BTC_AVG, BTC_REALIZED, t(12), "mean_reversion"),
}
EXPECTED_CASH = STARTING_CASH + ES_REALIZED + BTC_REALIZED - FEES


def assert_positions_equal(got: dict[str, Position], expected: dict[str, Position]) -> None:
    assert got.keys() == expected.keys()
    for sym, e in expected.items():
        g = got[sym]
        assert (g.symbol, g.opened_ts, g.strategy) == (e.symbol, e.opened_ts, e.strategy), sym
        assert g.quantity == pytest.approx(e.quantity, abs=1e-12), sym
        assert g.avg_price == pytest.approx(e.avg_price, rel=1e-12), sym
        assert g.realized_pnl == pytest.approx(e.realized_pnl, rel=1e-12, abs=1e-9), sym


def test_rebuild_from_fills_alone_with_multiplier_and_fees(led: Ledger):
    simulate_run(led)
    assert ES_REALIZED == 700
    assert_positions_equal(led.rebuild_positions(MULTIPLIERS), EXPECTED_POSITIONS)
    assert led.rebuild_cash(STARTING_CASH, MULTIPLIERS) == pytest.approx(EXPECTED_CASH, rel=1e-12)
    assert math.isclose(EXPECTED_CASH, 100_725.75)  # 100_000 + 700 + 40 - 14.25
    # without the multiplier ES P&L is counted per point: the argument matters
    assert led.rebuild_positions()["ES"].realized_pnl == pytest.approx(ES_REALIZED / 50)


def test_run_state_is_rebuilt_from_the_reopened_ledger_alone(path: Path):
    with Ledger(path) as led:
        simulate_run(led)
        expected_orders = led.orders()
    with Ledger(path) as led:
        state = led.state(multipliers=MULTIPLIERS)  # starting cash from the run metadata
        assert led.state(STARTING_CASH, MULTIPLIERS) == state
        assert led.equity_curve()[-1][1] == pytest.approx(state.cash)
        assert led.open_orders() == [state.orders["btc-4"]]

    assert isinstance(state, LedgerState)
    assert list(state.orders.values()) == expected_orders
    assert list(state.open_orders) == ["btc-4"]
    assert_positions_equal(state.positions, EXPECTED_POSITIONS)
    assert state.cash == pytest.approx(EXPECTED_CASH, rel=1e-12)
    assert state.fees == pytest.approx(FEES)
    assert state.realized_pnl == pytest.approx(ES_REALIZED + BTC_REALIZED)
    assert state.last_ts == t(19)

    o = state.orders["btc-1"]
    assert (o.status, o.filled_qty, o.avg_fill_price) == (
        OrderStatus.FILLED,
        pytest.approx(0.5),
        pytest.approx(BTC_AVG),
    )
    assert state.orders["es-6"].reason == "max_open_positions"
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=LedgerState) == state  # crosses Ray


def test_state_needs_a_starting_cash(led: Ledger):
    with pytest.raises(LedgerError, match="starting_cash"):
        led.state()
    empty = led.state(1_000.0)
    assert (empty.orders, empty.positions, empty.cash, empty.last_ts) == ({}, {}, 1_000.0, None)


# ---------------------------------------------------------------------------- batches


def test_batch_commits_everything_at_the_end_and_nothing_before(led: Ledger, path: Path):
    reader = raw(path)
    with led.batch():
        led.record_order(market("o-1", "ES", Side.BUY, 1.0, t(0)))
        for i in range(100):
            led.record_equity(t(i), 1.0, 1.0)
        assert len(led.equity_curve()) == 100  # the writer reads its own batch
        assert reader.execute("SELECT COUNT(*) FROM equity").fetchone() == (0,)  # others do not, yet
    assert reader.execute("SELECT COUNT(*) FROM equity").fetchone() == (100,)
    assert reader.execute("SELECT COUNT(*) FROM orders").fetchone() == (1,)


def test_batch_that_raises_writes_nothing(led: Ledger):
    led.record_equity(t(0), 1.0, 1.0)
    with pytest.raises(RuntimeError, match="boom"), led.batch():
        led.record_order(market("o-1", "ES", Side.BUY, 1.0, t(0)))
        led.record_equity(t(1), 2.0, 2.0)
        raise RuntimeError("boom")
    assert led.orders() == []
    assert led.equity_curve() == [(t(0), 1.0, 1.0)]
    led.record_equity(t(2), 3.0, 3.0)  # the ledger is usable afterwards
    assert len(led.equity_curve()) == 2


def test_batch_with_a_failed_write_is_rolled_back_even_if_the_error_was_caught(led: Ledger):
    with pytest.raises(LedgerError, match="whole batch was rolled back"), led.batch():
        led.record_equity(t(1), 2.0, 2.0)
        with pytest.raises(LedgerError):
            led.record_transition(t(1), "ghost", OrderStatus.NEW, OrderStatus.ACCEPTED)
    assert led.equity_curve() == []


def test_nested_batches_commit_once_at_the_outermost_end(led: Ledger, path: Path):
    reader = raw(path)
    with led.batch():
        with led.batch():
            led.record_equity(t(1), 1.0, 1.0)
        assert reader.execute("SELECT COUNT(*) FROM equity").fetchone() == (0,)
        led.record_equity(t(2), 1.0, 1.0)
    assert reader.execute("SELECT COUNT(*) FROM equity").fetchone() == (2,)
    with pytest.raises(LedgerError, match="close"), led.batch():
        led.close()


def test_each_single_write_is_committed_before_it_returns(led: Ledger, path: Path):
    reader = raw(path)
    led.record_order(market("o-1", "ES", Side.BUY, 1.0, t(0)))
    assert reader.execute("SELECT status FROM orders").fetchone() == ("new",)
    led.record_transition(t(1), "o-1", OrderStatus.NEW, OrderStatus.ACCEPTED)
    assert reader.execute("SELECT status FROM orders").fetchone() == ("accepted",)
    assert reader.execute("SELECT COUNT(*) FROM order_events").fetchone() == (1,)


def test_threads_can_share_one_ledger(led: Ledger):
    def work(k: int) -> None:
        for i in range(200):
            if i % 50 == 0:
                with led.batch():
                    led.record_equity(t(i), float(k), 0.0)
            else:
                led.record_equity(t(i), float(k), 0.0)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(led.equity_curve()) == 800


# ---------------------------------------------------------------------------- crash safety

CRASH_CHILD = textwrap.dedent(
    """
    import os, sys
    from scalper.ledger import Ledger
    from scalper.types import Order, Fill, Side, OrderType, OrderStatus

    led = Ledger(sys.argv[1])
    with led.batch():
        for i in range(1000):
            led.record_equity(i, 1.0, 1.0)
    led.record_order(Order("o-1", "ES", Side.BUY, OrderType.MARKET, 1.0))
    led.record_transition(1, "o-1", OrderStatus.NEW, OrderStatus.ACCEPTED)
    led._conn.execute("PRAGMA cache_size=20")  # small page cache: the open batch spills into the WAL
    with led.batch():
        led.record_fill(Fill("f-1", "o-1", "ES", Side.BUY, 1.0, 4000.0, 1.0, "taker", 2))
        led.record_transition(2, "o-1", OrderStatus.ACCEPTED, OrderStatus.FILLED)
        for i in range(1000, 60_000):
            led.record_equity(i, 2.0, 2.0)
        os._exit(3)  # dies mid-batch: no commit, no close, no atexit
    """
)


def test_process_killed_mid_batch_leaves_exactly_the_last_committed_state(path: Path):
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_CHILD, str(path)], cwd=REPO, capture_output=True, timeout=120
    )
    assert proc.returncode == 3, proc.stderr.decode()
    wal = Path(f"{path}-wal")
    assert wal.exists() and wal.stat().st_size > 100_000  # the half batch did reach the WAL file

    with Ledger(path) as led:
        assert led._conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        curve = led.equity_curve()
        assert len(curve) == 1000 and {c[1] for c in curve} == {1.0}
        assert led.fills() == []
        o = led.order("o-1")
        assert (o.status, o.filled_qty) == (OrderStatus.ACCEPTED, 0.0)
        assert [e.to_status for e in led.order_events()] == [OrderStatus.ACCEPTED]
        led.record_equity(5, 3.0, 3.0)  # and it takes writes again
    assert raw(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


KILL_CHILD = textwrap.dedent(
    """
    import sys
    from scalper.ledger import Ledger

    led = Ledger(sys.argv[1])
    k = 0
    while True:
        with led.batch():
            for i in range(500):
                led.record_equity(k, float(k), float(i))
        k += 1
        print(k, flush=True)
    """
)


def test_sigkill_at_an_arbitrary_moment_keeps_whole_batches_only(path: Path):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_CHILD, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        for line in proc.stdout:
            if int(line) >= 20:
                break
        proc.kill()  # SIGKILL, somewhere inside a batch or a commit
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    with Ledger(path) as led:
        assert led._conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = led._conn.execute("SELECT ts, COUNT(*) FROM equity GROUP BY ts").fetchall()
    assert len(rows) >= 20
    assert all(n == 500 for _, n in rows)  # no half batch
    assert [ts for ts, _ in rows] == list(range(len(rows)))  # no gap


def test_ledger_file_is_self_contained_after_close(path: Path):
    with Ledger(path) as led:
        led.record_equity(t(0), 1.0, 1.0)
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    assert os.path.getsize(path) > 0


def test_apply_fill_records_the_strategy_that_opened_or_flipped_the_position():
    long = apply_fill(Position("X"), fill(Side.BUY, 2, 100, 1), strategy="momentum")
    assert long.strategy == "momentum"
    assert apply_fill(long, fill(Side.SELL, 1, 101, 2), strategy="exit").strategy == "momentum"  # reduce
    assert apply_fill(long, fill(Side.BUY, 1, 101, 2), strategy="other").strategy == "momentum"  # add
    flipped = apply_fill(long, fill(Side.SELL, 5, 101, 3), strategy="breakout")
    assert (flipped.quantity, flipped.strategy, flipped.opened_ts) == (-3, "breakout", 3)
    assert apply_fill(flipped, fill(Side.BUY, 3, 100, 4)).strategy == ""  # flat


def test_record_equity_many_appends_a_whole_curve_atomically(led: Ledger):
    ts = np.arange(5, dtype=np.int64) * NS_PER_MINUTE + T0
    cash = np.full(5, 100.0)
    equity = np.linspace(100.0, 104.0, 5)
    assert led.record_equity_many(zip(ts, cash, equity, strict=True)) == 5
    assert led.equity_curve() == [(t(i), 100.0, 100.0 + i) for i in range(5)]
    with pytest.raises(LedgerError, match="equity points"):
        led.record_equity_many([(t(9), 1.0, 1.0), (t(10), 1.0, math.nan)])  # NaN is stored as NULL: refused
    assert len(led.equity_curve()) == 5


def test_a_write_blocked_by_another_writer_fails_with_a_ledger_error_after_the_timeout(path: Path):
    with Ledger(path, busy_timeout_s=0.2) as led:
        other = raw(path)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(LedgerError, match="cannot start a write transaction"):
            led.record_equity(t(0), 1.0, 1.0)
        assert led.equity_curve() == []  # reads still work (WAL)
        other.execute("ROLLBACK")
        led.record_equity(t(0), 1.0, 1.0)
        assert len(led.equity_curve()) == 1
