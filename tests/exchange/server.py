"""A local exchange on 127.0.0.1 that speaks the Binance spot REST and websocket protocol.

Only what ccxt's `binance` / `ccxt.pro.binance` call for scalper: exchangeInfo, time, klines,
aggTrades, trades, order (POST/GET/DELETE), orderList/oco (POST: a LIMIT_MAKER + STOP_LOSS
pair), openOrders, account, and the `@aggTrade` / `@trade` websocket streams (SUBSCRIBE on `/stream/ws/<n>`). Signed requests are checked
(HMAC-SHA256 of the query or body with the test secret), so the real ccxt client is exercised
end to end. Point it at the server with `LocalExchange.ccxt_urls()` (scalper's
`feed.ccxt.urls`).

Behaviour a test can inject:
* `add_trade(...)`: a trade, pushed to the stream subscribers and kept for REST.
* `pause_stream()` / `drop_connections()`: trades stop reaching the websocket / every
  websocket is closed (the client sees a disconnect).
* `fault(method, path, status=..., delay_s=..., times=...)`: the next `times` matching
  requests answer with `status` (429, 418, 500, or a Binance error body), or are processed
  and answered only after `delay_s` (the client times out while the order IS created).
* `market_liquidity`: a market order fills at most this quantity (the rest EXPIRES); limit
  orders rest until `fill(client_order_id, qty, price)` fills them (partial fills; a fill of
  an OCO leg EXPIRES the other leg, the part-filled leg keeps resting).
* balances: an order the account cannot pay is rejected (-2010 insufficient balance).
* OCO order lists rest until a trade reaches them (`add_trade`): the LIMIT_MAKER leg fills at
  its price, the STOP_LOSS leg triggers and fills as a market order (capped by
  `market_liquidity`, the rest EXPIRES); the other leg then EXPIRES. Canceling one leg cancels
  the list. The quantity is locked once for the list.
* `clock`: seconds since the epoch (default the wall clock); a test may give a fast one
  (`scalper.execution.ccxt.ScaledClock`) so that minutes pass in seconds.

Runs in a background thread with its own event loop on a free port (`start()` / `stop()`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

API_KEY = "test-api-key-0123456789"
SECRET = "test-secret-abcdefghijklmnop"


@dataclass
class MarketSpec:
    base: str
    quote: str
    tick_size: str = "0.01"
    step_size: str = "0.00001"
    min_qty: str = "0.00001"
    min_notional: str = "5"


@dataclass
class Fault:
    method: str
    path: str  # e.g. "/api/v3/order"
    status: int | None = None  # answer with this status instead of the real answer
    body: dict[str, Any] | None = None
    delay_s: float = 0.0  # process the request, then answer this late
    times: int = 1


@dataclass
class ExOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str  # BUY | SELL
    type: str  # MARKET | LIMIT
    orig_qty: Decimal
    price: Decimal
    time_in_force: str
    created_ms: int
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    quote_filled: Decimal = Decimal(0)
    updated_ms: int = 0
    fills: list[dict[str, str]] = field(default_factory=list)
    stop_price: Decimal = Decimal(0)
    list_id: int = -1  # the OCO order list it belongs to
    lock_price: Decimal | None = None  # a BUY leg of a list: the quote locked per unit

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": self.list_id,
            "clientOrderId": self.client_order_id,
            "price": str(self.price),
            "origQty": str(self.orig_qty),
            "executedQty": str(self.executed),
            "cummulativeQuoteQty": str(self.quote_filled),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": f"{self.stop_price:.8f}",
            "icebergQty": "0.00000000",
            "time": self.created_ms,
            "updateTime": self.updated_ms or self.created_ms,
            "isWorking": True,
            "workingTime": self.created_ms,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "NONE",
        }


@dataclass
class OrderList:
    """An OCO pair: both legs share `quantity`, locked once (`locked` left of it)."""

    list_id: int
    list_client_order_id: str
    symbol: str
    side: str
    quantity: Decimal
    legs: list[int]
    lock_asset: str
    locked: Decimal
    status: str = "EXECUTING"


class LocalExchange:
    """A Binance-spot-compatible exchange for tests (see the module docstring)."""

    def __init__(
        self,
        markets: dict[str, MarketSpec] | None = None,
        balances: dict[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.markets = markets or {"BTCUSDT": MarketSpec("BTC", "USDT")}
        self.free: dict[str, Decimal] = {
            k: Decimal(str(v)) for k, v in (balances or {"USDT": 10_000}).items()
        }
        self.locked: dict[str, Decimal] = {}
        self.clock = clock  # seconds since the epoch (a test may drive it)
        self.trades: dict[str, list[dict[str, Any]]] = {s: [] for s in self.markets}
        self.orders: dict[int, ExOrder] = {}
        self.order_lists: dict[int, OrderList] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.faults: list[Fault] = []
        self.market_liquidity: float | None = None  # None = unlimited
        self.taker_fee = Decimal("0.001")
        self.stream_paused = False
        self._ids = itertools.count(1)
        self._trade_ids = {s: itertools.count(1) for s in self.markets}
        self._lock = threading.RLock()
        self._subs: dict[web.WebSocketResponse, set[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ----------------------------------------------------------------------- lifecycle

    def start(self) -> LocalExchange:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="local-exchange", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("local exchange did not start")
        return self

    async def _serve(self) -> None:
        app = web.Application()
        r = app.router
        r.add_get("/api/v3/exchangeInfo", self._h(self._exchange_info))
        r.add_get("/api/v3/time", self._h(lambda q: {"serverTime": self.now_ms()}))
        r.add_get("/api/v3/ping", self._h(lambda q: {}))
        r.add_get("/api/v3/aggTrades", self._h(self._agg_trades))
        r.add_get("/api/v3/trades", self._h(self._recent_trades))
        r.add_get("/api/v3/klines", self._h(self._klines))
        r.add_post("/api/v3/order", self._h(self._new_order, signed=True))
        r.add_post("/api/v3/orderList/oco", self._h(self._new_oco, signed=True))
        r.add_get("/api/v3/order", self._h(self._get_order, signed=True))
        r.add_delete("/api/v3/order", self._h(self._cancel_order, signed=True))
        r.add_get("/api/v3/openOrders", self._h(self._open_orders, signed=True))
        r.add_get("/api/v3/account", self._h(self._account, signed=True))
        r.add_get("/stream/ws/{n}", self._ws)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            for ws in list(self._subs):
                await ws.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> LocalExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ccxt_urls(self) -> dict[str, str]:
        """`feed.ccxt.urls` for this server (the ws path keeps "/stream", as ccxt expects)."""
        api = f"{self.rest_url}/api/v3"
        return {"public": api, "private": api, "ws.spot": f"ws://127.0.0.1:{self.port}/stream/ws"}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ----------------------------------------------------------------------- test controls

    def add_trade(
        self, symbol: str, price: float, qty: float, ts_ms: int | None = None, buyer_maker: bool = False
    ) -> int:
        """Record a trade and push it to the stream subscribers (unless paused); its id."""
        with self._lock:
            tid = next(self._trade_ids[symbol])
            trade = {
                "a": tid,
                "p": str(price),
                "q": str(qty),
                "f": tid,
                "l": tid,
                "T": self.now_ms() if ts_ms is None else int(ts_ms),
                "m": buyer_maker,
                "M": True,
            }
            self.trades[symbol].append(trade)
            self._match(symbol, Decimal(str(price)))
            paused = self.stream_paused
        if not paused and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._push(symbol, trade), self._loop).result(5)
        return tid

    def last_price(self, symbol: str) -> Decimal:
        with self._lock:
            trades = self.trades[symbol]
            if not trades:
                raise RuntimeError(f"no trade yet on {symbol}")
            return Decimal(trades[-1]["p"])

    def pause_stream(self, paused: bool = True) -> None:
        with self._lock:
            self.stream_paused = paused

    def drop_connections(self) -> None:
        """Close every websocket (a disconnect as the client sees it)."""
        if self._loop is None:
            return

        async def close_all() -> None:
            for ws in list(self._subs):
                await ws.close(code=1011, message=b"injected disconnect")
                self._subs.pop(ws, None)

        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(5)

    def subscribers(self) -> int:
        return sum(1 for streams in self._subs.values() if streams)

    def fault(
        self,
        method: str,
        path: str,
        *,
        status: int | None = None,
        body: dict[str, Any] | None = None,
        delay_s: float = 0.0,
        times: int = 1,
    ) -> None:
        with self._lock:
            self.faults.append(Fault(method.upper(), path, status, body, delay_s, times))

    def requests_to(self, method: str, path: str) -> list[dict[str, str]]:
        with self._lock:
            return [q for m, p, q in self.requests if m == method.upper() and p == path]

    def order_by_client_id(self, client_order_id: str) -> ExOrder | None:
        with self._lock:
            return next((o for o in self.orders.values() if o.client_order_id == client_order_id), None)

    def fill(self, client_order_id: str, qty: float, price: float | None = None) -> ExOrder:
        """Fill part (or the rest) of a resting order, as a counterparty trade would."""
        with self._lock:
            order = self.order_by_client_id(client_order_id)
            if order is None or order.status not in ("NEW", "PARTIALLY_FILLED"):
                raise RuntimeError(f"order {client_order_id} is not open")
            self._execute(order, Decimal(str(qty)), Decimal(str(price)) if price else order.price, maker=True)
            lst = self.order_lists.get(order.list_id)
            if lst is not None and lst.status == "EXECUTING":
                self._leg_filled(lst, order)
            return order

    def place_foreign_order(
        self, symbol: str, side: str, qty: float, price: float, client_order_id: str
    ) -> int:
        """An order placed on the account by someone else (another bot, a human)."""
        with self._lock:
            order = self._create(
                symbol, side, "LIMIT", Decimal(str(qty)), Decimal(str(price)), client_order_id, "GTC"
            )
            if isinstance(order, tuple):
                raise RuntimeError(f"foreign order refused: {order}")
            return order.order_id

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        with self._lock:
            return self.free.get(asset, Decimal(0)), self.locked.get(asset, Decimal(0))

    # ----------------------------------------------------------------------- HTTP plumbing

    def _h(self, fn: Callable[[dict[str, str]], Any], signed: bool = False):
        async def handler(request: web.Request) -> web.Response:
            query = dict(request.query)
            raw = request.query_string
            if request.method == "POST":
                body = await request.text()
                query.update(dict(parse_qsl(body)))
                raw = body
            with self._lock:
                self.requests.append((request.method, request.path, query))
                fault = next(
                    (
                        f
                        for f in self.faults
                        if f.method == request.method and f.path == request.path and f.times > 0
                    ),
                    None,
                )
                if fault is not None:
                    fault.times -= 1
            if fault is not None and fault.status is not None:
                body = fault.body or (
                    {"code": -1003, "msg": "Too many requests; injected."}
                    if fault.status in (418, 429)
                    else {"code": -1001, "msg": "Internal error; injected."}
                )
                return web.json_response(body, status=fault.status)
            if signed:
                problem = self._check_signature(request, raw, query)
                if problem:
                    return problem
            with self._lock:
                try:
                    result = fn(query)
                except _BinanceError as e:
                    return web.json_response({"code": e.code, "msg": e.msg}, status=e.status)
            if fault is not None and fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            return web.json_response(result)

        return handler

    def _check_signature(self, request: web.Request, raw: str, query: dict[str, str]) -> web.Response | None:
        if request.headers.get("X-MBX-APIKEY") != API_KEY:
            return web.json_response(
                {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, status=401
            )
        payload, _, signature = raw.rpartition("&signature=")
        expected = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature, expected):
            return web.json_response(
                {"code": -1022, "msg": "Signature for this request is not valid."}, status=400
            )
        if "timestamp" not in query:
            return web.json_response(
                {"code": -1102, "msg": "Mandatory parameter 'timestamp' was not sent."}, status=400
            )
        return None

    # ----------------------------------------------------------------------- websocket

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._subs[ws] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("method") == "SUBSCRIBE":
                    self._subs[ws].update(data.get("params", []))
                    await ws.send_json({"result": None, "id": data.get("id")})
                elif data.get("method") == "UNSUBSCRIBE":
                    self._subs[ws].difference_update(data.get("params", []))
                    await ws.send_json({"result": None, "id": data.get("id")})
        finally:
            self._subs.pop(ws, None)
        return ws

    async def _push(self, symbol: str, trade: dict[str, Any]) -> None:
        """Send `trade` to every client subscribed to its stream. A client whose connection is
        closing under us (a feed going away between runs) is dropped, as an exchange does,
        and the others still get the trade."""
        low = symbol.lower()
        agg = {"e": "aggTrade", "E": self.now_ms(), "s": symbol, **trade}
        raw = {
            "e": "trade",
            "E": self.now_ms(),
            "s": symbol,
            "t": trade["a"],
            "p": trade["p"],
            "q": trade["q"],
            "T": trade["T"],
            "m": trade["m"],
            "M": True,
        }
        for ws, streams in list(self._subs.items()):
            if ws.closed:
                continue
            try:
                if f"{low}@aggTrade" in streams:
                    await ws.send_json(agg)
                if f"{low}@trade" in streams:
                    await ws.send_json(raw)
            except ConnectionResetError:
                self._subs.pop(ws, None)

    # ----------------------------------------------------------------------- market data

    def _symbol(self, q: dict[str, str]) -> str:
        s = q.get("symbol")
        if s not in self.markets:
            raise _BinanceError(-1121, "Invalid symbol.")
        return s

    def _exchange_info(self, q: dict[str, str]) -> dict[str, Any]:
        symbols = []
        for sym, m in self.markets.items():
            symbols.append(
                {
                    "symbol": sym,
                    "status": "TRADING",
                    "baseAsset": m.base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": m.quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                    "icebergAllowed": True,
                    "ocoAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": m.tick_size,
                            "maxPrice": "1000000",
                            "tickSize": m.tick_size,
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": m.min_qty,
                            "maxQty": "9000",
                            "stepSize": m.step_size,
                        },
                        {
                            "filterType": "NOTIONAL",
                            "minNotional": m.min_notional,
                            "applyMinToMarket": True,
                            "maxNotional": "9000000",
                            "applyMaxToMarket": False,
                            "avgPriceMins": 5,
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "NONE",
                    "allowedSelfTradePreventionModes": ["NONE"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _agg_trades(self, q: dict[str, str]) -> list[dict[str, Any]]:
        trades = self.trades[self._symbol(q)]
        limit = min(int(q.get("limit", 500)), 1000)
        if "fromId" in q:
            start = int(q["fromId"])
            out = [t for t in trades if t["a"] >= start]
        elif "startTime" in q or "endTime" in q:
            lo = int(q.get("startTime", 0))
            hi = int(q.get("endTime", 2**62))
            out = [t for t in trades if lo <= t["T"] <= hi]
        else:
            return trades[-limit:]
        return out[:limit]

    def _recent_trades(self, q: dict[str, str]) -> list[dict[str, Any]]:
        trades = self.trades[self._symbol(q)][-min(int(q.get("limit", 500)), 1000) :]
        return [
            {
                "id": t["a"],
                "price": t["p"],
                "qty": t["q"],
                "quoteQty": str(Decimal(t["p"]) * Decimal(t["q"])),
                "time": t["T"],
                "isBuyerMaker": t["m"],
                "isBestMatch": True,
            }
            for t in trades
        ]

    def _klines(self, q: dict[str, str]) -> list[list[Any]]:
        if q.get("interval") != "1m":
            raise _BinanceError(-1120, "Invalid interval.")
        trades = self.trades[self._symbol(q)]
        lo = int(q.get("startTime", 0))
        hi = int(q.get("endTime", 2**62))
        bars: dict[int, list[Any]] = {}
        for t in trades:
            if not lo <= t["T"] <= hi:
                continue
            m = t["T"] // 60_000 * 60_000
            p, v = Decimal(t["p"]), Decimal(t["q"])
            b = bars.get(m)
            if b is None:
                bars[m] = [m, p, p, p, p, v, m + 59_999, p * v, 1]
            else:
                b[2], b[3], b[4] = max(b[2], p), min(b[3], p), p
                b[5] += v
                b[7] += p * v
                b[8] += 1
        limit = min(int(q.get("limit", 500)), 1000)
        return [
            [
                b[0],
                str(b[1]),
                str(b[2]),
                str(b[3]),
                str(b[4]),
                str(b[5]),
                b[6],
                str(b[7]),
                b[8],
                "0",
                "0",
                "0",
            ]
            for _, b in sorted(bars.items())
        ][:limit]

    # ----------------------------------------------------------------------- trading

    def _create(
        self, symbol: str, side: str, otype: str, qty: Decimal, price: Decimal, cid: str, tif: str
    ) -> ExOrder | tuple[int, str]:
        m = self.markets[symbol]
        if any(
            o.client_order_id == cid and o.status in ("NEW", "PARTIALLY_FILLED") for o in self.orders.values()
        ):
            return (-2010, "Duplicate order sent.")
        if qty <= 0 or qty % Decimal(m.step_size) != 0 or qty < Decimal(m.min_qty):
            return (-1013, "Filter failure: LOT_SIZE")
        if otype == "LIMIT" and (price <= 0 or price % Decimal(m.tick_size) != 0):
            return (-1013, "Filter failure: PRICE_FILTER")
        ref = price if otype == "LIMIT" else (self.last_price(symbol) if self.trades[symbol] else Decimal(0))
        if ref * qty < Decimal(m.min_notional):
            return (-1013, "Filter failure: NOTIONAL")
        pay_asset, pay = (m.quote, qty * ref) if side == "BUY" else (m.base, qty)
        if self.free.get(pay_asset, Decimal(0)) < pay:
            return (-2010, "Account has insufficient balance for requested action.")
        now = self.now_ms()
        order = ExOrder(
            next(self._ids),
            cid,
            symbol,
            side,
            otype,
            qty,
            price if otype == "LIMIT" else Decimal(0),
            tif,
            now,
        )
        self.orders[order.order_id] = order
        if otype == "LIMIT":
            self.free[pay_asset] -= pay
            self.locked[pay_asset] = self.locked.get(pay_asset, Decimal(0)) + pay
            last = self.last_price(symbol) if self.trades[symbol] else None
            marketable = last is not None and (last <= price if side == "BUY" else last >= price)
            if marketable:
                self._execute(order, qty, last, maker=False)
        else:
            fill_qty = qty if self.market_liquidity is None else min(qty, Decimal(str(self.market_liquidity)))
            if fill_qty > 0:
                self._execute(order, fill_qty, ref, maker=False)
            if order.executed < qty:
                order.status = "EXPIRED"
        return order

    def _execute(self, order: ExOrder, qty: Decimal, price: Decimal, maker: bool) -> None:
        """Fill `qty` of `order` at `price`: balances move, the order's totals and status too."""
        m = self.markets[order.symbol]
        qty = min(qty, order.orig_qty - order.executed)
        quote = qty * price
        fee_asset = m.base if order.side == "BUY" else m.quote
        fee = (qty if order.side == "BUY" else quote) * self.taker_fee
        resting = order.type != "MARKET"  # what it pays was locked when it was placed
        lst = self.order_lists.get(order.list_id)
        if order.side == "BUY":
            if resting:  # the locked quote at the limit (or list) price pays; the rest returns
                locked = qty * (order.lock_price if order.lock_price is not None else order.price)
                self.locked[m.quote] -= locked
                self.free[m.quote] = self.free.get(m.quote, Decimal(0)) + locked - quote
                if lst is not None:
                    lst.locked -= locked
            else:
                self.free[m.quote] -= quote
            self.free[m.base] = self.free.get(m.base, Decimal(0)) + qty - fee
        else:
            if resting:
                self.locked[m.base] -= qty
                if lst is not None:
                    lst.locked -= qty
            else:
                self.free[m.base] -= qty
            self.free[m.quote] = self.free.get(m.quote, Decimal(0)) + quote - fee
        order.executed += qty
        order.quote_filled += quote
        order.updated_ms = self.now_ms()
        order.status = "FILLED" if order.executed >= order.orig_qty else "PARTIALLY_FILLED"
        order.fills.append(
            {
                "price": str(price),
                "qty": str(qty),
                "commission": str(fee),
                "commissionAsset": fee_asset,
                "tradeId": str(len(order.fills) + 1),
            }
        )

    def _find(self, q: dict[str, str]) -> ExOrder:
        symbol = self._symbol(q)
        if "orderId" in q:
            order = self.orders.get(int(q["orderId"]))
        elif "origClientOrderId" in q:
            order = next(
                (o for o in reversed(self.orders.values()) if o.client_order_id == q["origClientOrderId"]),
                None,
            )
        else:
            raise _BinanceError(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        if order is None or order.symbol != symbol:
            raise _BinanceError(-2013, "Order does not exist.")
        return order

    def _new_order(self, q: dict[str, str]) -> dict[str, Any]:
        symbol = self._symbol(q)
        cid = q.get("newClientOrderId") or f"server-{next(self._ids)}"
        order = self._create(
            symbol,
            q["side"],
            q["type"],
            Decimal(q["quantity"]),
            Decimal(q.get("price", "0")),
            cid,
            q.get("timeInForce", "GTC"),
        )
        if isinstance(order, tuple):
            raise _BinanceError(*order)
        out = order.to_json()
        out["transactTime"] = order.created_ms
        out["fills"] = list(order.fills)
        return out

    def _get_order(self, q: dict[str, str]) -> dict[str, Any]:
        return self._find(q).to_json()

    def _cancel_order(self, q: dict[str, str]) -> dict[str, Any]:
        order = self._find(q)
        if order.status not in ("NEW", "PARTIALLY_FILLED"):
            raise _BinanceError(-2011, "Unknown order sent.")
        if order.list_id >= 0:  # canceling a leg cancels the whole list
            self._end_list(self.order_lists[order.list_id], "CANCELED")
            out = order.to_json()
            out["origClientOrderId"] = order.client_order_id
            return out
        m = self.markets[order.symbol]
        rest = order.orig_qty - order.executed
        asset, amount = (m.quote, rest * order.price) if order.side == "BUY" else (m.base, rest)
        self.locked[asset] -= amount
        self.free[asset] = self.free.get(asset, Decimal(0)) + amount
        order.status = "CANCELED"
        order.updated_ms = self.now_ms()
        out = order.to_json()
        out["origClientOrderId"] = order.client_order_id
        return out

    def _new_oco(self, q: dict[str, str]) -> dict[str, Any]:
        """POST /api/v3/orderList/oco with one LIMIT_MAKER and one STOP_LOSS leg."""
        symbol = self._symbol(q)
        m = self.markets[symbol]
        side = q["side"]
        qty = Decimal(q["quantity"])
        legs = {}
        for pos in ("above", "below"):
            kind = q.get(f"{pos}Type")
            if kind not in ("LIMIT_MAKER", "STOP_LOSS"):
                raise _BinanceError(
                    -1013, f"Unsupported {pos}Type {kind} (this exchange: LIMIT_MAKER, STOP_LOSS)."
                )
            legs[kind] = (
                q.get(f"{pos}ClientOrderId") or f"server-{next(self._ids)}",
                Decimal(q.get(f"{pos}Price" if kind == "LIMIT_MAKER" else f"{pos}StopPrice", "0")),
            )
        if len(legs) != 2:
            raise _BinanceError(-1013, "An OCO needs one LIMIT_MAKER and one STOP_LOSS leg.")
        (maker_id, limit), (stop_id, stop) = legs["LIMIT_MAKER"], legs["STOP_LOSS"]
        for cid in (maker_id, stop_id):
            if any(
                o.client_order_id == cid and o.status in ("NEW", "PARTIALLY_FILLED")
                for o in self.orders.values()
            ):
                raise _BinanceError(-2010, "Duplicate order sent.")
        if qty <= 0 or qty % Decimal(m.step_size) != 0 or qty < Decimal(m.min_qty):
            raise _BinanceError(-1013, "Filter failure: LOT_SIZE")
        for price in (limit, stop):
            if price <= 0 or price % Decimal(m.tick_size) != 0:
                raise _BinanceError(-1013, "Filter failure: PRICE_FILTER")
        if min(limit, stop) * qty < Decimal(m.min_notional):
            raise _BinanceError(-1013, "Filter failure: NOTIONAL")
        last = self.last_price(symbol)
        if not (limit > last > stop if side == "SELL" else limit < last < stop):
            raise _BinanceError(-2010, "The relationship of the prices for the orders is not correct.")
        lock_asset, lock = (m.base, qty) if side == "SELL" else (m.quote, qty * stop)
        if self.free.get(lock_asset, Decimal(0)) < lock:
            raise _BinanceError(-2010, "Account has insufficient balance for requested action.")
        self.free[lock_asset] -= lock
        self.locked[lock_asset] = self.locked.get(lock_asset, Decimal(0)) + lock
        list_id = len(self.order_lists) + 1
        now = self.now_ms()
        made = []
        for kind, (cid, price) in (("STOP_LOSS", (stop_id, stop)), ("LIMIT_MAKER", (maker_id, limit))):
            order = ExOrder(
                next(self._ids),
                cid,
                symbol,
                side,
                kind,
                qty,
                price if kind == "LIMIT_MAKER" else Decimal(0),
                "GTC",
                now,
                stop_price=stop if kind == "STOP_LOSS" else Decimal(0),
                list_id=list_id,
                lock_price=stop if side == "BUY" else None,
            )
            self.orders[order.order_id] = order
            made.append(order)
        self.order_lists[list_id] = OrderList(
            list_id,
            q.get("listClientOrderId") or f"list-{list_id}",
            symbol,
            side,
            qty,
            [o.order_id for o in made],
            lock_asset,
            lock,
        )
        return self._list_json(self.order_lists[list_id], now)

    def _list_json(self, lst: OrderList, now: int) -> dict[str, Any]:
        legs = [self.orders[i] for i in lst.legs]
        return {
            "orderListId": lst.list_id,
            "contingencyType": "OCO",
            "listStatusType": "EXEC_STARTED" if lst.status == "EXECUTING" else "ALL_DONE",
            "listOrderStatus": lst.status,
            "listClientOrderId": lst.list_client_order_id,
            "transactionTime": now,
            "symbol": lst.symbol,
            "orders": [
                {"symbol": o.symbol, "orderId": o.order_id, "clientOrderId": o.client_order_id} for o in legs
            ],
            "orderReports": [{**o.to_json(), "transactTime": now} for o in legs],
        }

    def _end_list(self, lst: OrderList, status: str) -> None:
        """The list is done: its open legs get `status`, the rest of its lock returns."""
        for oid in lst.legs:
            leg = self.orders[oid]
            if leg.status in ("NEW", "PARTIALLY_FILLED"):
                leg.status = status
                leg.updated_ms = self.now_ms()
        if lst.locked:
            self.locked[lst.lock_asset] -= lst.locked
            self.free[lst.lock_asset] = self.free.get(lst.lock_asset, Decimal(0)) + lst.locked
            lst.locked = Decimal(0)
        lst.status = "ALL_DONE"

    def _leg_filled(self, lst: OrderList, leg: ExOrder) -> None:
        """A fill of `leg`, partial or not, EXPIRES the list's other leg (as Binance does); a
        part-filled `leg` keeps resting with its share of the lock, the list ends when it is done."""
        for oid in lst.legs:
            other = self.orders[oid]
            if other is not leg and other.status in ("NEW", "PARTIALLY_FILLED"):
                other.status = "EXPIRED"
                other.updated_ms = self.now_ms()
        if leg.status not in ("NEW", "PARTIALLY_FILLED"):
            self._end_list(lst, "EXPIRED")

    def _match(self, symbol: str, price: Decimal) -> None:
        """A trade at `price` reaches the resting OCO legs: a LIMIT_MAKER fills at its price, a
        STOP_LOSS triggers and fills as a market order (capped by `market_liquidity`)."""
        for lst in [x for x in self.order_lists.values() if x.symbol == symbol and x.status == "EXECUTING"]:
            for oid in lst.legs:
                leg = self.orders[oid]
                if leg.status not in ("NEW", "PARTIALLY_FILLED"):
                    continue
                sell = leg.side == "SELL"
                if leg.type == "LIMIT_MAKER" and (price >= leg.price if sell else price <= leg.price):
                    self._execute(leg, leg.orig_qty - leg.executed, leg.price, maker=True)
                elif leg.type == "STOP_LOSS" and (
                    price <= leg.stop_price if sell else price >= leg.stop_price
                ):
                    rest = leg.orig_qty - leg.executed
                    qty = (
                        rest
                        if self.market_liquidity is None
                        else min(rest, Decimal(str(self.market_liquidity)))
                    )
                    if qty > 0:
                        self._execute(leg, qty, price, maker=False)
                    if leg.executed < leg.orig_qty:
                        leg.status = "EXPIRED"  # a market order's unfilled rest
                else:
                    continue
                self._end_list(lst, "EXPIRED")  # the other leg
                break

    def _open_orders(self, q: dict[str, str]) -> list[dict[str, Any]]:
        symbol = q.get("symbol")
        return [
            o.to_json()
            for o in self.orders.values()
            if o.status in ("NEW", "PARTIALLY_FILLED") and (symbol is None or o.symbol == symbol)
        ]

    def _account(self, q: dict[str, str]) -> dict[str, Any]:
        assets = sorted(set(self.free) | set(self.locked))
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "updateTime": self.now_ms(),
            "accountType": "SPOT",
            "balances": [
                {
                    "asset": a,
                    "free": str(self.free.get(a, Decimal(0))),
                    "locked": str(self.locked.get(a, Decimal(0))),
                }
                for a in assets
            ],
            "permissions": ["SPOT"],
        }


class _BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
