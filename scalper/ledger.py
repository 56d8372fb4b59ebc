"""Ledger: the SQLite database that is the source of truth of one trading run.

Everything the trading service decides is written here BEFORE it is acted on: an order row
before it is sent, a status transition before the service reacts to it, a fill before the
position moves. A restarted service calls `Ledger.state()` and gets back every order (with the
open ones), the positions rebuilt from the fills, and the cash; it then reconciles that with
the broker before it trades again.

Durability
    The database runs in WAL mode. Every write method commits before it returns, so what a
    write method returned survives a crash of the PROCESS (kill -9, `os._exit`, a dead Ray
    actor). With `synchronous="NORMAL"` (the default) an OS crash or a power cut may lose the
    last few commits but never corrupts the file; `synchronous="FULL"` fsyncs every commit
    (use it for live trading with real money; it costs ~one disk flush per write).
    `with ledger.batch(): ...` groups many writes into ONE transaction (the fast backtest):
    either all of it is committed at the end of the block or none of it.

Schema (version `SCHEMA_VERSION`; `MIGRATIONS[i]` takes a ledger from version i to i + 1, the
first one creates it). Enums are stored as their text values, timestamps as int64 event-time
nanoseconds, booleans as 0/1. Tables are STRICT (SQLite >= 3.37): a value of the wrong type is
refused rather than silently stored.

    meta          key/value of the ledger itself: schema_version
    runs          key/value metadata of the run: run id, config JSON, started, finished...
    orders        one row per client_order_id, every `Order` field; `seq` = insertion order
    order_events  append-only status transitions: seq, ts, client_order_id, from/to status, reason
    fills         one row per fill_id, every `Fill` field; `seq` = the order fills were recorded in
    positions     one row per symbol, every `Position` field (what the service last recorded)
    equity        the equity curve: seq, ts, cash, equity
    risk_state    one row: a msgspec Struct as JSON, tagged with its type name and a version

`seq` columns give the order rows were first recorded in (fills are replayed in that order); an
explicit column rather than SQLite's rowid, which VACUUM may renumber in tables whose primary key
is text.

Positions and cash are rebuilt from the `fills` table alone (`rebuild_positions`,
`rebuild_cash`), with average-cost accounting (`apply_fill`: the same function the live code can
use, so that the live and the rebuilt positions agree by construction); the `positions` table is
what the service last recorded, for reports and for checking the two agree.

Secrets: the ledger never stores secrets. `set_meta("config", ...)` takes JSON that the CALLER
has already redacted (API keys, passwords, tokens). As a safety net `set_meta` refuses a value
that still carries a non-empty string under a key that names a secret (api_key, secret,
password, passphrase, private_key, token...).

Concurrency: one `Ledger` object may be shared by threads (a lock serialises its calls); one
process should write a given ledger file at a time. Other processes may read it while it is
being written (WAL readers do not block the writer).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

# one position accounting for trading and for rebuilding from the ledger
from scalper.execution.portfolio import position_after as apply_fill
from scalper.types import (
    Fill,
    Order,
    OrderRole,
    OrderStatus,
    OrderType,
    Position,
    Side,
    TimeInForce,
)

log = logging.getLogger(__name__)

_S = TypeVar("_S", bound=msgspec.Struct)


class LedgerError(Exception):
    """The ledger cannot be opened, or a write would make it inconsistent."""


class OrderEvent(msgspec.Struct, frozen=True):
    """One status transition of one order, as appended to `order_events`."""

    seq: int
    ts: int
    client_order_id: str
    from_status: OrderStatus | None
    to_status: OrderStatus
    reason: str = ""


class LedgerState(msgspec.Struct):
    """Everything a restarted trading service needs, rebuilt from the ledger alone.

    `positions` and `cash` are recomputed from the fills (see `Ledger.rebuild_positions`);
    `orders` are the order rows, `open_orders` the ones whose status is not final.
    `last_ts` is the latest event time found in orders, transitions, fills and equity (None
    for an empty ledger): the restarted service must not go back before it.
    """

    orders: dict[str, Order]
    positions: dict[str, Position]
    starting_cash: float
    cash: float
    realized_pnl: float
    fees: float
    last_ts: int | None = None

    @property
    def open_orders(self) -> dict[str, Order]:
        return {oid: o for oid, o in self.orders.items() if not o.status.is_final}


# ---------------------------------------------------------------------------- schema

# MIGRATIONS[i] takes a ledger from schema version i to i + 1 (the first one creates it).
# Never edit a step once released: append a new one (and bump the Structs' readers/writers).
MIGRATIONS: Final[list[list[str]]] = [
    [
        """CREATE TABLE meta (
            key TEXT PRIMARY KEY NOT NULL,
            value ANY
        ) STRICT""",
        """CREATE TABLE runs (
            key TEXT PRIMARY KEY NOT NULL,
            value ANY
        ) STRICT""",
        """CREATE TABLE orders (
            client_order_id TEXT PRIMARY KEY NOT NULL,
            seq INTEGER NOT NULL UNIQUE,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            order_type TEXT NOT NULL,
            quantity REAL NOT NULL,
            role TEXT NOT NULL,
            limit_price REAL,
            stop_price REAL,
            tif TEXT NOT NULL,
            expire_ts INTEGER,
            post_only INTEGER NOT NULL,
            status TEXT NOT NULL,
            filled_qty REAL NOT NULL,
            avg_fill_price REAL NOT NULL,
            created_ts INTEGER NOT NULL,
            updated_ts INTEGER NOT NULL,
            parent_id TEXT,
            oco_id TEXT,
            strategy TEXT NOT NULL,
            reason TEXT NOT NULL
        ) STRICT""",
        """CREATE TABLE order_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts INTEGER NOT NULL,
            client_order_id TEXT NOT NULL REFERENCES orders (client_order_id),
            from_status TEXT,
            to_status TEXT NOT NULL,
            reason TEXT NOT NULL
        ) STRICT""",
        "CREATE INDEX order_events_by_order ON order_events (client_order_id, seq)",
        """CREATE TABLE fills (
            fill_id TEXT PRIMARY KEY NOT NULL,
            seq INTEGER NOT NULL UNIQUE,
            client_order_id TEXT NOT NULL REFERENCES orders (client_order_id),
            symbol TEXT NOT NULL,
            side TEXT NOT NULL,
            quantity REAL NOT NULL CHECK (quantity > 0),
            price REAL NOT NULL,
            fee REAL NOT NULL,
            liquidity TEXT NOT NULL,
            ts INTEGER NOT NULL
        ) STRICT""",
        "CREATE INDEX fills_by_symbol ON fills (symbol, seq)",
        "CREATE INDEX fills_by_order ON fills (client_order_id, seq)",
        """CREATE TABLE positions (
            symbol TEXT PRIMARY KEY NOT NULL,
            quantity REAL NOT NULL,
            avg_price REAL NOT NULL,
            realized_pnl REAL NOT NULL,
            opened_ts INTEGER,
            strategy TEXT NOT NULL
        ) STRICT""",
        """CREATE TABLE equity (
            seq INTEGER PRIMARY KEY,
            ts INTEGER NOT NULL,
            cash REAL NOT NULL,
            equity REAL NOT NULL
        ) STRICT""",
        """CREATE TABLE risk_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            type TEXT NOT NULL,
            version INTEGER NOT NULL,
            state TEXT NOT NULL
        ) STRICT""",
    ],
]
SCHEMA_VERSION: Final = len(MIGRATIONS)

# Column order of the row tables (the reader and writer below rely on it; a test checks that
# every Struct field has a column, so a new field cannot be silently dropped).
ORDER_COLUMNS: Final = (
    "client_order_id",
    "symbol",
    "side",
    "order_type",
    "quantity",
    "role",
    "limit_price",
    "stop_price",
    "tif",
    "expire_ts",
    "post_only",
    "status",
    "filled_qty",
    "avg_fill_price",
    "created_ts",
    "updated_ts",
    "parent_id",
    "oco_id",
    "strategy",
    "reason",
)
FILL_COLUMNS: Final = (
    "fill_id",
    "client_order_id",
    "symbol",
    "side",
    "quantity",
    "price",
    "fee",
    "liquidity",
    "ts",
)
POSITION_COLUMNS: Final = ("symbol", "quantity", "avg_price", "realized_pnl", "opened_ts", "strategy")

_ORDER_COLS = ", ".join(ORDER_COLUMNS)
_FILL_COLS = ", ".join(FILL_COLUMNS)
_POSITION_COLS = ", ".join(POSITION_COLUMNS)

_SQL_UPSERT_ORDER = (
    f"INSERT INTO orders (seq, {_ORDER_COLS}) "
    f"VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM orders), {', '.join('?' * len(ORDER_COLUMNS))}) "
    "ON CONFLICT (client_order_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ORDER_COLUMNS[1:])
)
_SQL_INSERT_FILL = (
    f"INSERT INTO fills (seq, {_FILL_COLS}) "
    f"VALUES ((SELECT COALESCE(MAX(seq), 0) + 1 FROM fills), {', '.join('?' * len(FILL_COLUMNS))}) "
    "ON CONFLICT (fill_id) DO NOTHING"
)
# The order row's fill summary is derived from its fills (idempotent, whatever the call order).
_SQL_ORDER_FILL_SUMMARY = (
    "UPDATE orders SET (filled_qty, avg_fill_price) = "
    "(SELECT SUM(quantity), SUM(quantity * price) / SUM(quantity) FROM fills WHERE client_order_id = ?) "
    "WHERE client_order_id = ?"
)
_SQL_TRANSITION = (
    "UPDATE orders SET status = ?, updated_ts = ?, reason = CASE WHEN ? THEN ? ELSE reason END "
    "WHERE client_order_id = ? AND status IN (?, ?)"
)
_SQL_INSERT_EVENT = (
    "INSERT INTO order_events (ts, client_order_id, from_status, to_status, reason) VALUES (?, ?, ?, ?, ?)"
)
_SQL_UPSERT_POSITION = (
    f"INSERT INTO positions ({_POSITION_COLS}) VALUES ({', '.join('?' * len(POSITION_COLUMNS))}) "
    "ON CONFLICT (symbol) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in POSITION_COLUMNS[1:])
)
_SQL_INSERT_EQUITY = "INSERT INTO equity (ts, cash, equity) VALUES (?, ?, ?)"

# the transition's reason is copied into Order.reason ("why REJECTED / CANCELED / EXPIRED")
_REASON_STATUSES: Final = frozenset({OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})

# set_meta's safety net: a key that names a secret must not carry a non-empty, unredacted string
_SECRET_KEY_SUFFIXES: Final = (
    "secret",
    "secretkey",
    "secret_key",
    "password",
    "passwd",
    "passphrase",
    "apikey",
    "api_key",
    "privatekey",
    "private_key",
    "token",
)
_REDACTED = re.compile(r"^\s*(\**|<?redacted>?|\[redacted\])\s*$", re.IGNORECASE)

MetaValue = str | int | float | None


# ---------------------------------------------------------------------------- position maths


# ---------------------------------------------------------------------------- helpers


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (sqlite3 binds only exact-ish int/float/str/bytes)."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value


def _order_row(o: Order) -> tuple[Any, ...]:
    return tuple(getattr(o, c) for c in ORDER_COLUMNS)


def _order_from_row(r: Sequence[Any]) -> Order:
    return Order(
        client_order_id=r[0],
        symbol=r[1],
        side=Side(r[2]),
        order_type=OrderType(r[3]),
        quantity=r[4],
        role=OrderRole(r[5]),
        limit_price=r[6],
        stop_price=r[7],
        tif=TimeInForce(r[8]),
        expire_ts=r[9],
        post_only=bool(r[10]),
        status=OrderStatus(r[11]),
        filled_qty=r[12],
        avg_fill_price=r[13],
        created_ts=r[14],
        updated_ts=r[15],
        parent_id=r[16],
        oco_id=r[17],
        strategy=r[18],
        reason=r[19],
    )


def _fill_from_row(r: Sequence[Any]) -> Fill:
    return Fill(
        fill_id=r[0],
        client_order_id=r[1],
        symbol=r[2],
        side=Side(r[3]),
        quantity=r[4],
        price=r[5],
        fee=r[6],
        liquidity=r[7],
        ts=r[8],
    )


def _position_from_row(r: Sequence[Any]) -> Position:
    return Position(
        symbol=r[0], quantity=r[1], avg_price=r[2], realized_pnl=r[3], opened_ts=r[4], strategy=r[5]
    )


def _non_finite_path(value: Any, path: str = "") -> str | None:
    """Where a non-finite float hides in a to_builtins() tree (JSON cannot hold NaN/inf)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "<root>")
    if isinstance(value, dict):
        for k, v in value.items():
            found = _non_finite_path(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _non_finite_path(v, f"{path}[{i}]")
            if found:
                return found
    return None


def _is_secret_key(key: str) -> bool:
    k = key.lower().replace("-", "_")
    return k.endswith(_SECRET_KEY_SUFFIXES)


def _secret_path(value: Any, path: str) -> str | None:
    """The path of a non-empty, unredacted string stored under a secret-looking key."""
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}"
            if _is_secret_key(str(k)) and isinstance(v, str) and not _REDACTED.match(v):
                return sub
            found = _secret_path(v, sub)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _secret_path(v, f"{path}[{i}]")
            if found:
                return found
    return None


# ---------------------------------------------------------------------------- the ledger


class Ledger:
    """The SQLite ledger of one run. See the module docstring for the schema and guarantees.

    `path` is the database file (created if missing; its directory must exist) or ":memory:".
    `synchronous` is "NORMAL" (default: survives process crashes) or "FULL" (also survives
    power loss, one fsync per commit). `busy_timeout_s` is how long a write waits for another
    connection's lock before failing.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", busy_timeout_s: float = 10.0):
        sync = synchronous.upper()
        if sync not in ("NORMAL", "FULL"):
            raise LedgerError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        if sqlite3.sqlite_version_info < (3, 37, 0):
            raise LedgerError(
                f"the ledger needs SQLite >= 3.37 (STRICT tables); this is {sqlite3.sqlite_version}"
            )
        self.path = Path(path) if str(path) != ":memory:" else None
        self._name = str(path)
        self._lock = threading.RLock()
        self._depth = 0  # batch nesting
        self._poisoned = False  # a write inside the current batch failed: roll it back
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self._name, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
            )
        except sqlite3.Error as e:
            raise LedgerError(f"cannot open ledger {self._name}: {e}") from e
        try:
            self._configure(sync)
            self._migrate()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise
        log.info("ledger %s open (schema version %d, synchronous=%s)", self._name, SCHEMA_VERSION, sync)

    # -------------------------------------------------------------- open, migrate, close

    def _configure(self, sync: str) -> None:
        conn = self._c
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"{self._name} is not a usable SQLite database: {e}") from e
        if self.path is not None and mode.lower() != "wal":
            raise LedgerError(
                f"{self._name}: cannot switch to WAL mode (got {mode!r}); is it on a network drive?"
            )
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("PRAGMA foreign_keys=ON")
        if conn.execute("PRAGMA foreign_keys").fetchone()[0] != 1:
            raise LedgerError("this SQLite build cannot enforce foreign keys")

    def _migrate(self) -> None:
        conn = self._c
        self._begin(conn)  # one opener migrates at a time; the version is re-read inside
        try:
            version = self._stored_version()
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"{self._name} has schema version {version}, this scalper understands up to "
                    f"{SCHEMA_VERSION}: use a newer scalper to read it"
                )
            for v in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[v]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (v + 1,),
                )
                log.info("ledger %s: migrated schema %d -> %d", self._name, v, v + 1)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _stored_version(self) -> int:
        conn = self._c
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            if tables - {"sqlite_sequence"}:
                raise LedgerError(
                    f"{self._name} is a SQLite database but not a scalper ledger (no meta table)"
                )
            return 0
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or not isinstance(row[0], int):
            raise LedgerError(f"{self._name}: meta.schema_version is missing or not an integer")
        return row[0]

    @property
    def schema_version(self) -> int:
        with self._lock:
            row = self._c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            return int(row[0])

    @property
    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(f"ledger {self._name} is closed")
        return self._conn

    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        """Close the database (idempotent). Refused inside a batch: end the batch first."""
        with self._lock:
            if self._conn is None:
                return
            if self._depth:
                raise LedgerError("close() inside ledger.batch(): the batch would be lost")
            self._conn.close()
            self._conn = None
            log.info("ledger %s closed", self._name)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self._name!r}{', closed' if self._conn is None else ''})"

    # -------------------------------------------------------------- transactions

    @contextlib.contextmanager
    def batch(self) -> Iterator[Ledger]:
        """Group writes into one transaction, committed when the block ends.

        All or nothing: if the block raises, or any write inside it failed (even one whose
        exception the block caught), nothing of the batch is committed. Batches nest (the
        outermost one commits). The batch holds the ledger's lock: other threads wait.
        """
        with self._lock:
            conn = self._c
            if self._depth == 0:
                self._begin(conn)
                self._poisoned = False
            self._depth += 1
            ok = False
            try:
                yield self
                ok = True
            finally:
                self._depth -= 1
                if not ok:
                    self._poisoned = True
                if self._depth == 0:
                    self._end_batch(conn, ok)

    def _begin(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:  # "database is locked": another writer kept it too long
            raise LedgerError(f"ledger {self._name}: cannot start a write transaction: {e}") from e

    def _end_batch(self, conn: sqlite3.Connection, ok: bool) -> None:
        if self._poisoned:
            conn.execute("ROLLBACK")
            self._poisoned = False
            log.warning("ledger %s: batch rolled back", self._name)
            if ok:  # the block swallowed a failed write: do not pretend the batch was saved
                raise LedgerError("a write inside ledger.batch() failed: the whole batch was rolled back")
            return
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise LedgerError(f"ledger {self._name}: commit failed, batch rolled back: {e}") from e

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write method's transaction: its own (committed on return) or the open batch's."""
        with self._lock:
            conn = self._c
            if self._depth:
                try:
                    yield conn
                except BaseException:
                    self._poisoned = True
                    raise
                return
            self._begin(conn)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise LedgerError(f"ledger {self._name}: commit failed: {e}") from e

    def _exec(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return conn.execute(sql, params)
        except (sqlite3.ProgrammingError, sqlite3.IntegrityError) as e:
            # numpy scalars are refused (np.float32) or bound as BLOBs (np.int64, which the STRICT
            # tables refuse): convert them to Python numbers and retry once
            plain = tuple(_plain(p) for p in params)
            if any(a is not b for a, b in zip(plain, params, strict=True)):
                return self._exec(conn, sql, plain)
            if isinstance(e, sqlite3.IntegrityError):
                raise LedgerError(f"ledger {self._name}: refused write ({e}): {params!r}") from e
            raise
        except sqlite3.OperationalError as e:
            raise LedgerError(f"ledger {self._name}: write failed ({e})") from e

    # -------------------------------------------------------------- writes (commit before return)

    def record_order(self, order: Order) -> None:
        """Insert or update (by client_order_id) the order row with every field of `order`."""
        with self._tx() as conn:
            self._exec(conn, _SQL_UPSERT_ORDER, _order_row(order))

    def record_transition(
        self,
        ts: int,
        client_order_id: str,
        from_status: OrderStatus | None,
        to_status: OrderStatus,
        reason: str = "",
    ) -> None:
        """Append a status transition AND set the order row's status/updated_ts, atomically.

        The order must exist and its stored status must be `from_status` (or already
        `to_status`, when the caller recorded the updated order first); anything else means a
        transition was lost or is out of order and raises LedgerError. `from_status=None`
        records the creation of an order already stored with `to_status`. For CANCELED,
        REJECTED and EXPIRED a non-empty `reason` is also copied into the order's `reason`.
        """
        to_status = OrderStatus(to_status)
        from_status = None if from_status is None else OrderStatus(from_status)
        set_reason = bool(reason) and to_status in _REASON_STATUSES
        with self._tx() as conn:
            cur = self._exec(
                conn,
                _SQL_TRANSITION,
                (to_status, ts, set_reason, reason, client_order_id, from_status, to_status),
            )
            if cur.rowcount != 1:
                row = conn.execute(
                    "SELECT status FROM orders WHERE client_order_id = ?", (client_order_id,)
                ).fetchone()
                if row is None:
                    raise LedgerError(
                        f"transition of unknown order {client_order_id!r}: record_order() it first"
                    )
                raise LedgerError(
                    f"order {client_order_id!r} is {row[0]!r} in the ledger, not {from_status and from_status.value!r}: "
                    f"transition {from_status and from_status.value} -> {to_status.value} refused"
                )
            self._exec(conn, _SQL_INSERT_EVENT, (ts, client_order_id, from_status, to_status, reason))

    def record_fill(self, fill: Fill) -> bool:
        """Record a fill; False (and nothing written) if this fill_id is already recorded.

        The order must already be recorded. The order row's filled_qty and avg_fill_price are
        set from ALL its recorded fills in the same transaction. Re-recording a fill_id with
        different contents raises LedgerError (two fills share an id: something is wrong).
        """
        if not (fill.quantity > 0 and math.isfinite(fill.quantity)):
            raise LedgerError(
                f"fill {fill.fill_id!r}: quantity must be finite and > 0, not {fill.quantity!r}"
            )
        if not (math.isfinite(fill.price) and math.isfinite(fill.fee)):
            raise LedgerError(
                f"fill {fill.fill_id!r}: price and fee must be finite ({fill.price!r}, {fill.fee!r})"
            )
        with self._tx() as conn:
            cur = self._exec(conn, _SQL_INSERT_FILL, tuple(getattr(fill, c) for c in FILL_COLUMNS))
            if cur.rowcount == 0:
                row = conn.execute(
                    f"SELECT {_FILL_COLS} FROM fills WHERE fill_id = ?", (fill.fill_id,)
                ).fetchone()
                if _fill_from_row(row) != fill:
                    raise LedgerError(
                        f"fill {fill.fill_id!r} is already recorded with different contents: "
                        f"{_fill_from_row(row)!r} vs {fill!r}"
                    )
                return False
            self._exec(conn, _SQL_ORDER_FILL_SUMMARY, (fill.client_order_id, fill.client_order_id))
            return True

    def record_position(self, position: Position) -> None:
        """Insert or update (by symbol) the service's view of one position."""
        with self._tx() as conn:
            self._exec(conn, _SQL_UPSERT_POSITION, tuple(getattr(position, c) for c in POSITION_COLUMNS))

    def record_equity(self, ts: int, cash: float, equity: float) -> None:
        """Append one point of the equity curve."""
        with self._tx() as conn:
            self._exec(conn, _SQL_INSERT_EQUITY, (ts, cash, equity))

    def record_equity_many(self, points: Iterable[tuple[int, float, float]]) -> int:
        """Append many (ts, cash, equity) points in one statement (a backtest's whole curve);
        returns how many. Numpy scalars are converted; all or nothing."""
        rows = [(int(ts), float(cash), float(equity)) for ts, cash, equity in points]
        with self._tx() as conn:
            try:
                conn.executemany(_SQL_INSERT_EQUITY, rows)
            except sqlite3.Error as e:
                raise LedgerError(f"ledger {self._name}: refused equity points ({e})") from e
        return len(rows)

    def save_risk_state(self, state: msgspec.Struct, *, version: int = 1) -> None:
        """Replace the stored risk state with `state` (any msgspec Struct) as JSON.

        It is tagged with the Struct's class name and `version` (bump it when the Struct's
        fields change meaning); `load_risk_state` checks both. Non-finite floats are refused
        (JSON cannot hold them).
        """
        if not isinstance(state, msgspec.Struct):
            raise LedgerError(f"save_risk_state takes a msgspec Struct, not {type(state).__name__}")
        builtins = msgspec.to_builtins(state)
        bad = _non_finite_path(builtins)
        if bad:
            raise LedgerError(
                f"risk state {type(state).__name__}: non-finite float at {bad} cannot be stored"
            )
        blob = msgspec.json.encode(builtins).decode()
        with self._tx() as conn:
            self._exec(
                conn,
                "INSERT INTO risk_state (id, type, version, state) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET type = excluded.type, version = excluded.version, "
                "state = excluded.state",
                (type(state).__name__, version, blob),
            )

    def set_meta(self, key: str, value: MetaValue) -> None:
        """Set one run metadata value (run_id, config, started, finished, starting_cash...).

        The CALLER MUST REDACT secrets before: the ledger is copied around with the run
        directory. A value that still carries a non-empty string under a secret-looking key
        (in a JSON object, or as the key itself) is refused with LedgerError.
        """
        if isinstance(value, str):
            if _is_secret_key(key) and not _REDACTED.match(value):
                raise LedgerError(f"refusing to store meta {key!r}: it looks like a secret; redact it first")
            if value.lstrip().startswith(("{", "[")):
                try:
                    parsed = json.loads(value)
                except ValueError:
                    parsed = None
                where = _secret_path(parsed, key)
                if where:
                    raise LedgerError(
                        f"refusing to store meta {key!r}: {where} looks like an unredacted secret; "
                        "redact the config before set_meta()"
                    )
        elif value is not None and not isinstance(value, (int, float)):
            raise LedgerError(
                f"meta {key!r}: value must be str, int, float or None, not {type(value).__name__}"
            )
        with self._tx() as conn:
            self._exec(
                conn,
                "INSERT INTO runs (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -------------------------------------------------------------- reads

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._c.execute(sql, params).fetchall()

    def orders(self) -> list[Order]:
        """Every order, in the order they were first recorded."""
        return [_order_from_row(r) for r in self._query(f"SELECT {_ORDER_COLS} FROM orders ORDER BY seq")]

    def order(self, client_order_id: str) -> Order | None:
        rows = self._query(f"SELECT {_ORDER_COLS} FROM orders WHERE client_order_id = ?", (client_order_id,))
        return _order_from_row(rows[0]) if rows else None

    def open_orders(self) -> list[Order]:
        """Orders whose status is not final (NEW, ACCEPTED, PARTIALLY_FILLED), in record order."""
        final = [s.value for s in OrderStatus if s.is_final]
        rows = self._query(
            f"SELECT {_ORDER_COLS} FROM orders WHERE status NOT IN ({', '.join('?' * len(final))}) ORDER BY seq",
            final,
        )
        return [_order_from_row(r) for r in rows]

    def order_events(self, client_order_id: str | None = None) -> list[OrderEvent]:
        """Transitions in the order they were appended (of one order, or all)."""
        sql = "SELECT seq, ts, client_order_id, from_status, to_status, reason FROM order_events"
        rows = (
            self._query(sql + " ORDER BY seq")
            if client_order_id is None
            else self._query(sql + " WHERE client_order_id = ? ORDER BY seq", (client_order_id,))
        )
        return [
            OrderEvent(
                seq=r[0],
                ts=r[1],
                client_order_id=r[2],
                from_status=None if r[3] is None else OrderStatus(r[3]),
                to_status=OrderStatus(r[4]),
                reason=r[5],
            )
            for r in rows
        ]

    def fills(self, symbol: str | None = None) -> list[Fill]:
        """Fills in the order they were recorded (of one symbol, or all)."""
        sql = f"SELECT {_FILL_COLS} FROM fills"
        rows = (
            self._query(sql + " ORDER BY seq")
            if symbol is None
            else self._query(sql + " WHERE symbol = ? ORDER BY seq", (symbol,))
        )
        return [_fill_from_row(r) for r in rows]

    def has_fill(self, fill_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM fills WHERE fill_id = ?", (fill_id,)))

    def positions(self) -> list[Position]:
        """The positions as last recorded by `record_position` (by symbol)."""
        rows = self._query(f"SELECT {_POSITION_COLS} FROM positions ORDER BY symbol")
        return [_position_from_row(r) for r in rows]

    def equity_curve(self) -> list[tuple[int, float, float]]:
        """(ts, cash, equity) points in the order they were recorded."""
        return [(r[0], r[1], r[2]) for r in self._query("SELECT ts, cash, equity FROM equity ORDER BY seq")]

    def load_risk_state(self, type: type[_S], *, version: int = 1) -> _S | None:
        """The stored risk state decoded as `type`, or None when none was saved.

        Raises LedgerError when the stored state was saved from another Struct class or with
        another version (a restart must not silently reinterpret it).
        """
        rows = self._query("SELECT type, version, state FROM risk_state WHERE id = 1")
        if not rows:
            return None
        name, stored_version, blob = rows[0]
        if name != type.__name__ or stored_version != version:
            raise LedgerError(
                f"stored risk state is {name} version {stored_version}, not {type.__name__} version {version}"
            )
        try:
            return msgspec.json.decode(blob, type=type)
        except msgspec.ValidationError as e:
            raise LedgerError(f"stored risk state does not decode as {type.__name__}: {e}") from e

    def get_meta(self, key: str, default: MetaValue = None) -> MetaValue:
        rows = self._query("SELECT value FROM runs WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def meta(self) -> dict[str, MetaValue]:
        """All run metadata."""
        return dict(self._query("SELECT key, value FROM runs ORDER BY key"))

    # -------------------------------------------------------------- rebuild

    def _replay_fills(self, multipliers: Mapping[str, float] | None) -> tuple[dict[str, Position], float]:
        mult = multipliers or {}
        positions: dict[str, Position] = {}
        fees = 0.0
        with self._lock:
            cur = self._c.execute(
                f"SELECT {', '.join('f.' + c for c in FILL_COLUMNS)}, o.strategy "
                "FROM fills AS f LEFT JOIN orders AS o USING (client_order_id) ORDER BY f.seq"
            )
            for row in cur:
                fill = _fill_from_row(row)
                pos = positions.get(fill.symbol) or Position(symbol=fill.symbol)
                positions[fill.symbol] = apply_fill(pos, fill, mult.get(fill.symbol, 1.0), row[-1] or "")
                fees += fill.fee
        return positions, fees

    def rebuild_positions(self, multipliers: Mapping[str, float] | None = None) -> dict[str, Position]:
        """Every traded symbol's position recomputed from the fills table alone, in fill order.

        `multipliers[symbol]` is the P&L per 1.0 of price per unit (1.0 for a symbol not in
        it). Flat positions are included (they carry the realized P&L). Fees are not in
        `realized_pnl`; see `rebuild_cash`. `strategy` is the strategy of the order whose fill
        opened the position.
        """
        return self._replay_fills(multipliers)[0]

    def rebuild_cash(self, starting_cash: float, multipliers: Mapping[str, float] | None = None) -> float:
        """starting_cash + realized P&L of every fill - every fee (a margin-account balance:
        open positions' notional is not deducted; equity = this + unrealized P&L)."""
        positions, fees = self._replay_fills(multipliers)
        return starting_cash + sum(p.realized_pnl for p in positions.values()) - fees

    def state(
        self, starting_cash: float | None = None, multipliers: Mapping[str, float] | None = None
    ) -> LedgerState:
        """Everything a restarted trading service needs, from the ledger alone.

        `starting_cash` defaults to the run metadata "starting_cash" (set it with set_meta at
        the start of the run).
        """
        with self._lock:  # one consistent view even if another thread writes
            if starting_cash is None:
                stored = self.get_meta("starting_cash")
                if not isinstance(stored, (int, float)):
                    raise LedgerError(
                        "state(): pass starting_cash or set_meta('starting_cash', ...) at run start"
                    )
                starting_cash = float(stored)
            positions, fees = self._replay_fills(multipliers)
            realized = sum(p.realized_pnl for p in positions.values())
            orders = {o.client_order_id: o for o in self.orders()}
            last = self._query(
                "SELECT MAX(t) FROM (SELECT MAX(updated_ts) AS t FROM orders UNION ALL "
                "SELECT MAX(created_ts) FROM orders UNION ALL SELECT MAX(ts) FROM order_events "
                "UNION ALL SELECT MAX(ts) FROM fills UNION ALL SELECT MAX(ts) FROM equity)"
            )[0][0]
        return LedgerState(
            orders=orders,
            positions=positions,
            starting_cash=starting_cash,
            cash=starting_cash + realized - fees,
            realized_pnl=realized,
            fees=fees,
            last_ts=last,
        )
