"""Domain messages as msgspec Structs: small, typed and cheap to pickle across Ray.

Time is always event time: integer nanoseconds since the Unix epoch, UTC. Nothing in the
domain reads the wall clock, so a replay, a backtest and a live run see the same times.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec
import numpy as np

NS_PER_SECOND = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_SECOND

# Columns of a bar table (Parquet, DataFrame, CLI output), in this order.
BAR_COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume", "trades", "vwap")


class Tick(msgspec.Struct, frozen=True, array_like=True):
    """One trade. `trade_id` is the venue's id when it has one (used to drop duplicates)."""

    symbol: str
    ts: int
    price: float
    size: float
    trade_id: str | None = None


class TickBatch(msgspec.Struct, frozen=True):
    """Many trades of ONE symbol as columns; the unit that crosses an actor boundary.

    `ts` is int64 ns, `price`/`size` float64, `trade_id` an optional array of ids
    (strings or ints). Arrays are not copied.
    """

    symbol: str
    ts: np.ndarray
    price: np.ndarray
    size: np.ndarray
    trade_id: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])


class Heartbeat(msgspec.Struct, frozen=True):
    """The feed's clock: every tick with ts < `ts` has been delivered.

    Lets quiet symbols close their bars without waiting for their next trade.
    """

    ts: int


class BarBatch(msgspec.Struct, frozen=True):
    """Already-closed 1-minute bars of ONE symbol as columns (a bar file replayed as a feed).

    Columns are numpy arrays: `ts` (int64 ns, bar OPEN time), open/high/low/close/volume
    (float64), `trades` (int64; -1 when the source has no trade count), vwap (float64; NaN
    when unknown).
    """

    symbol: str
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trades: np.ndarray
    vwap: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])


FeedEvent = TickBatch | BarBatch | Heartbeat


class Bar(msgspec.Struct, frozen=True, array_like=True):
    """A closed 1-minute OHLCV bar, stamped with its OPEN time (`ts`).

    `vwap` is the bar's own volume-weighted price; a flat bar for an empty minute has
    volume 0, trades 0 and all prices (and vwap) equal to the previous close.
    """

    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int
    vwap: float


class RejectReason(StrEnum):
    """Why a tick was not used. Counted per symbol, never raised."""

    NON_FINITE = "non_finite"  # NaN or inf in price, size or timestamp
    NON_POSITIVE_PRICE = "non_positive_price"
    NEGATIVE_SIZE = "negative_size"
    CLOCK_SKEW = "clock_skew"  # timestamp too far from the feed clock
    SPIKE = "spike"  # return beyond k sigma of recent returns
    DUPLICATE = "duplicate"  # trade id already seen
    LATE = "late"  # its minute was already closed
    WRONG_SYMBOL = "wrong_symbol"


class Snapshot(msgspec.Struct, frozen=True):
    """What a strategy sees at a bar close: the bar, indicator values and their readiness."""

    bar: Bar
    indicators: dict[str, float]
    ready: dict[str, bool]
    regime: str | None = None

    @property
    def all_ready(self) -> bool:
        return all(self.ready.values())


# ---------------------------------------------------------------------------- trading


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"  # stop-market: the protective stop-loss leg of a bracket


class TimeInForce(StrEnum):
    GTC = "gtc"  # good till canceled
    IOC = "ioc"  # immediate or cancel: fills on the first bar it can, the rest is canceled
    GTD = "gtd"  # good till date: expires at `Order.expire_ts` (a number of bars after creation)


class OrderStatus(StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED)


class OrderRole(StrEnum):
    ENTRY = "entry"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    EXIT = "exit"  # a closing order not part of a bracket (flatten, kill switch)


class Signal(msgspec.Struct, frozen=True):
    """A strategy's decision at the CLOSE of bar `ts` (the bar's open time): enter `side`.

    Nothing after that bar was visible when it was made. Prices are absolute.
    """

    symbol: str
    ts: int
    strategy: str
    side: Side  # BUY = go long, SELL = go short
    order_type: OrderType  # MARKET or LIMIT
    stop_loss: float
    take_profit: float
    limit_price: float | None = None
    expiry_bars: int | None = None  # a limit entry not filled within this many bars expires
    reason: str = ""
    values: dict[str, float] = msgspec.field(default_factory=dict)  # what triggered it
    confidence: float | None = None  # set by the ML validator later

    @property
    def decided_ts(self) -> int:
        """Event time of the decision: the close of bar `ts`."""
        return self.ts + NS_PER_MINUTE


class OrderIntent(msgspec.Struct, frozen=True):
    """A signal the RiskManager approved and sized: what the trading service must place."""

    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType
    stop_loss: float
    take_profit: float
    limit_price: float | None = None
    tif: TimeInForce = TimeInForce.GTC
    expiry_bars: int | None = None
    post_only: bool = False
    strategy: str = ""
    signal_ts: int = 0
    reason: str = ""


class Order(msgspec.Struct, gc=False):
    """One order and its state; transitions only through scalper.execution.orders.

    `gc=False` (as Fill): its fields are strings, numbers and enum members, so it can never be
    part of a reference cycle; untracked, the tens of thousands a backtest keeps cost the
    cyclic garbage collector nothing."""

    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: float
    role: OrderRole = OrderRole.ENTRY
    limit_price: float | None = None
    stop_price: float | None = None
    tif: TimeInForce = TimeInForce.GTC
    expire_ts: int | None = None  # GTD / limit expiry: event time at which it expires
    post_only: bool = False
    status: OrderStatus = OrderStatus.NEW
    filled_qty: float = 0.0
    avg_fill_price: float = 0.0
    created_ts: int = 0  # event time of creation (the decision's bar close)
    updated_ts: int = 0
    parent_id: str | None = None  # bracket legs point at their entry order
    oco_id: str | None = None  # legs of one one-cancels-other group share it
    strategy: str = ""
    reason: str = ""  # why REJECTED / CANCELED / EXPIRED

    @property
    def remaining(self) -> float:
        return self.quantity - self.filled_qty


class Fill(msgspec.Struct, frozen=True, gc=False):
    fill_id: str
    client_order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float
    liquidity: str  # "maker" | "taker"
    ts: int


class Position(msgspec.Struct):
    """Net position of one symbol. `quantity` is signed: > 0 long, < 0 short."""

    symbol: str
    quantity: float = 0.0
    avg_price: float = 0.0
    realized_pnl: float = 0.0
    opened_ts: int | None = None
    strategy: str = ""


class RiskDecision(msgspec.Struct, frozen=True):
    """The RiskManager's answer to a signal: approved with an intent, or refused with a code."""

    approved: bool
    reason: str  # "approved" or a machine-readable refusal code, e.g. "halted", "max_open_positions"
    detail: str = ""
    intent: OrderIntent | None = None
