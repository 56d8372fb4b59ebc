"""CcxtBroker: the paper broker's role on a real exchange, through ccxt (sync REST).

What the TradingService needs from a live venue, with the rules that keep real money safe:

* Orders carry the OrderManager's deterministic client order id (`newClientOrderId` on
  Binance; ccxt's unified `clientOrderId` param). An order call that gets no answer (timeout,
  connection reset, 429/418) is retried only after looking the order up BY THAT ID: if the
  exchange has it, that is the answer, and no second order is sent. A rejection that arrives
  on a retry ("duplicate order") is checked the same way. After `order_retries` the call
  raises `BrokerUnavailable`: the order's fate is unknown and the service must reconcile.
* Before sending, the quantity is truncated and the price rounded to the market's precision
  (`amount_to_precision`, `price_to_precision` from the loaded markets), and an order below
  the market's minimum amount or minimum notional is refused locally with a reason
  (`ExchangeOrder.status == REJECTED`, `reason` like "below_min_notional: ...").
* ccxt's rate limiter is on (`enableRateLimit`); a 429/418 (ccxt `RateLimitExceeded` /
  `DDoSProtection`) or a network error backs off exponentially (`backoff_initial_s` doubling
  up to `backoff_max_s`) before the next attempt.
* Brackets (`feed.ccxt.brackets`): on Binance spot the two legs of a position's bracket can
  rest on the exchange as ONE OCO order list (`submit_oco`: orderList/oco, a LIMIT_MAKER
  target and a STOP_LOSS market stop sharing the quantity, each leg under its own client
  id): then `bracket_owner == "exchange"`. Elsewhere, or with `brackets = "service"`,
  `bracket_owner == "service"`: the TradingService keeps the legs and sends a market EXIT
  when a bar reaches one. ccxt's unified `stopLoss`/`takeProfit` params are not used: they
  are separate orders that would each lock the whole position on spot.
* Keys come from the environment only: SCALPER_<EXCHANGE>_API_KEY and SCALPER_<EXCHANGE>_SECRET
  (plus _PASSWORD for venues that need a passphrase). They are never logged, printed or
  written anywhere; the broker's repr does not show them.
* Positions: on a spot market the position is the account's holding of the base asset
  (free + locked). Use a dedicated (sub)account: coins held for other reasons look like a
  position, and reconciliation refuses to start on a position the ledger does not know.

Exchange fills arrive as cumulative order totals (filled quantity, average price, fee).
`new_fills(order, report)` turns the difference between what the OrderManager already
applied and what the exchange reports into ONE Fill with a deterministic id
(`<client id>-c<cumulative filled>`), so polling twice never applies a fill twice.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from scalper.config import CcxtConfig, Config
from scalper.types import Fill, Order, OrderStatus, OrderType, Side, TimeInForce

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
# Binance's limit for a client order id; other venues are at least as permissive for these ids.
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:/\-]{1,36}$")
LIVE_CONFIRMATION = "I understand this trades real money"

_STATUS = {
    "open": OrderStatus.ACCEPTED,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


class BrokerError(RuntimeError):
    """The exchange cannot be used: missing keys, unknown symbol, authentication refused..."""


class BrokerUnavailable(BrokerError):
    """No answer after every retry: the state of the order on the exchange is UNKNOWN.

    Stop sending orders and reconcile (scalper.reconcile) before trading again.
    """


class LiveTradingRefused(BrokerError):
    """The confirmation guard before real money was not satisfied."""


class ExchangeOrder(msgspec.Struct, frozen=True):
    """One order as the exchange reports it (cumulative totals), in our symbols and enums."""

    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    quantity: float
    status: OrderStatus
    filled_qty: float = 0.0
    avg_price: float = 0.0
    fee: float = 0.0  # in the quote currency, for the whole filled quantity
    price: float | None = None
    exchange_order_id: str | None = None
    ts: int = 0  # event time (ns) of the exchange's last update
    reason: str = ""  # why REJECTED (refused locally or by the exchange)

    @property
    def is_open(self) -> bool:
        return self.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED)


class Balance(msgspec.Struct, frozen=True):
    asset: str
    free: float
    used: float
    total: float


class ScaledClock:
    """Seconds since the epoch that run `speed` times faster than the wall clock from
    `origin_ms` on: a simulated exchange's minutes pass in seconds (tests). speed 1 = wall."""

    def __init__(self, speed: float = 1.0, origin_ms: int = 0):
        self.speed = float(speed)
        self.origin = origin_ms / 1000

    def __call__(self) -> float:
        now = time.time()
        return now if self.speed == 1.0 else self.origin + (now - self.origin) * self.speed


def clock_of(ccfg: CcxtConfig) -> ScaledClock:
    """The live clock of a run: the wall clock, unless `clock_speed` simulates a fast venue."""
    return ScaledClock(ccfg.clock_speed, ccfg.clock_origin_ms)


def env_names(exchange_id: str) -> tuple[str, str, str]:
    """The environment variables holding the API key, secret and (optional) passphrase."""
    prefix = "SCALPER_" + re.sub(r"[^A-Z0-9]", "_", exchange_id.upper())
    return f"{prefix}_API_KEY", f"{prefix}_SECRET", f"{prefix}_PASSWORD"


def credentials(exchange_id: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """ccxt credentials from the environment; BrokerError naming the missing variable."""
    env = os.environ if env is None else env
    key_var, secret_var, password_var = env_names(exchange_id)
    missing = [name for name in (key_var, secret_var) if not env.get(name)]
    if missing:
        raise BrokerError(
            f"live trading on {exchange_id} needs the environment variable(s) {', '.join(missing)} "
            "(keys are read from the environment only, never from config.json)"
        )
    out = {"apiKey": env[key_var], "secret": env[secret_var]}
    if env.get(password_var):
        out["password"] = env[password_var]
    return out


def require_live_confirmation(ccfg: CcxtConfig, answer: str | None) -> None:
    """The guard before real money: live (not sandbox, not dry-run) trading starts only when
    `answer` is exactly LIVE_CONFIRMATION (typed at the prompt or from SCALPER_LIVE_CONFIRM)."""
    if ccfg.sandbox or ccfg.dry_run:
        return
    if (answer or "").strip() != LIVE_CONFIRMATION:
        raise LiveTradingRefused(
            f"live trading on {ccfg.exchange} with REAL MONEY was not confirmed: type "
            f"{LIVE_CONFIRMATION!r} (or set SCALPER_LIVE_CONFIRM to it), or use --sandbox / --dry-run"
        )


class RedactSecrets(logging.Filter):
    """Replaces the API key and secret in log records (ccxt logs request headers at DEBUG)."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = [x for x in secrets if x]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(x in text for x in self.secrets):
            for x in self.secrets:
                text = text.replace(x, "<redacted>")
            record.msg, record.args = text, ()
        return True


def _redact_logs_of(exchange: Any, keys: Mapping[str, str]) -> None:
    logger = exchange.logger if isinstance(exchange.logger, logging.Logger) else logging.getLogger("ccxt")
    secrets = [str(v) for v in keys.values()]
    for existing in logger.filters:
        if isinstance(existing, RedactSecrets):
            existing.secrets = list(dict.fromkeys(existing.secrets + secrets))
            return
    logger.addFilter(RedactSecrets(secrets))


def make_exchange(ccfg: CcxtConfig, *, pro: bool = False, keys: Mapping[str, str] | None = None) -> Any:
    """A configured ccxt exchange (ccxt.pro's for `pro`): rate limiter on, spot markets only,
    sandbox and URL overrides applied, `keys` (from `credentials`) set when given."""
    import ccxt
    import ccxt.pro

    module = ccxt.pro if pro else ccxt
    cls = getattr(module, ccfg.exchange, None)
    if cls is None:
        raise BrokerError(
            f"feed.ccxt.exchange: {ccfg.exchange!r} is not a ccxt{'.pro' if pro else ''} exchange"
        )
    options: dict[str, Any] = {"defaultType": "spot"}
    if ccfg.exchange.startswith("binance"):
        # only the spot exchangeInfo: no futures/margin/currency endpoints at start-up
        options.update({"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False})
    ex = cls({"enableRateLimit": True, "timeout": ccfg.timeout_ms, "options": options, **(keys or {})})
    if keys:
        _redact_logs_of(ex, keys)
    if ccfg.sandbox:
        ex.set_sandbox_mode(True)
    for dotted, url in ccfg.urls.items():
        node = ex.urls.setdefault("api", {})
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = url
    return ex


def market_symbol(exchange: Any, ccfg: CcxtConfig, symbol: str) -> str:
    """Our symbol ("BTCUSDT") -> the ccxt unified symbol ("BTC/USDT"); markets must be loaded."""
    mapped = ccfg.markets.get(symbol)
    if mapped is not None:
        if mapped not in exchange.markets:
            raise BrokerError(f"feed.ccxt.markets.{symbol}: {mapped!r} is not a market of {exchange.id}")
        return mapped
    if symbol in exchange.markets:
        return symbol
    by_id = exchange.markets_by_id.get(symbol) if exchange.markets_by_id else None
    if by_id:
        spot = [m for m in by_id if m.get("spot")] or by_id
        return spot[0]["symbol"]
    raise BrokerError(
        f"symbols: {symbol!r} is not a market of {exchange.id}; map it in feed.ccxt.markets "
        f'(e.g. {{"{symbol}": "BASE/QUOTE"}})'
    )


class CcxtBroker:
    """Orders, balances and positions on one exchange (see the module docstring)."""

    def __init__(
        self,
        cfg: Config,
        exchange: Any | None = None,
        *,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.cfg = cfg
        self.ccfg = cfg.feed.ccxt
        self._sleep = sleep
        self.exchange = (
            exchange
            if exchange is not None
            else make_exchange(self.ccfg, keys=credentials(self.ccfg.exchange, env))
        )
        if getattr(self.exchange, "apiKey", None):  # an exchange built elsewhere: redact its keys too
            _redact_logs_of(
                self.exchange, {"apiKey": self.exchange.apiKey, "secret": self.exchange.secret or ""}
            )
        self._symbols: dict[str, str] = {}  # ours -> ccxt
        self._ours: dict[str, str] = {}  # ccxt -> ours
        self.bracket_owner: Literal["exchange", "service"] = self._bracket_owner()

    def supports_oco(self) -> bool:
        """Exchange-side brackets need an OCO order list this broker speaks: Binance spot."""
        return self.exchange.id == "binance" and hasattr(self.exchange, "private_post_orderlist_oco")

    def _bracket_owner(self) -> Literal["exchange", "service"]:
        wanted = self.ccfg.brackets
        if wanted == "service":
            return "service"
        if self.supports_oco():
            return "exchange"
        if wanted == "exchange":
            raise BrokerError(
                f'feed.ccxt.brackets = "exchange": {self.exchange.id} has no exchange-side OCO that scalper '
                'supports (Binance spot only); use "service" or "auto"'
            )
        return "service"

    def __repr__(self) -> str:  # never the keys
        return f"CcxtBroker({self.ccfg.exchange}, sandbox={self.ccfg.sandbox})"

    # ----------------------------------------------------------------------- markets

    def connect(self) -> dict[str, str]:
        """Load the markets and map every configured symbol; returns {ours: ccxt symbol}."""
        self._call(self.exchange.load_markets, what="load_markets")
        for symbol in self.cfg.symbols:
            ccxt_symbol = market_symbol(self.exchange, self.ccfg, symbol)
            self._symbols[symbol] = ccxt_symbol
            self._ours[ccxt_symbol] = symbol
        log.info(
            "%s: %d markets loaded, trading %s", self.exchange.id, len(self.exchange.markets), self._symbols
        )
        return dict(self._symbols)

    def _market(self, symbol: str) -> dict[str, Any]:
        if not self._symbols:
            self.connect()
        if symbol not in self._symbols:
            raise BrokerError(f"{symbol!r} is not one of the configured symbols {list(self._symbols)}")
        return self.exchange.market(self._symbols[symbol])

    def amount_step(self, symbol: str) -> float:
        """The smallest quantity increment of `symbol` (for comparing positions)."""
        market = self._market(symbol)
        step = market["precision"].get("amount")
        return float(step) if step else 1e-8

    # ----------------------------------------------------------------------- plumbing

    def _backoff(self, attempt: int) -> float:
        return min(self.ccfg.backoff_max_s, self.ccfg.backoff_initial_s * 2**attempt)

    def _call(self, fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
        """Call ccxt, retrying network errors and 429/418 with backoff (reads and cancels only)."""
        import ccxt

        attempts = self.ccfg.order_retries + 1
        for attempt in range(attempts):
            try:
                return fn(*args, **kwargs)
            except ccxt.OperationFailed as e:  # NetworkError: timeouts, 429/418; -1001 internal errors
                if attempt == attempts - 1:
                    raise BrokerUnavailable(
                        f"{self.exchange.id} {what}: no answer after {attempts} attempts ({e})"
                    ) from e
                delay = self._backoff(attempt)
                log.warning("%s %s: %s; retry in %.2f s", self.exchange.id, what, type(e).__name__, delay)
                self._sleep(delay)
            except ccxt.AuthenticationError as e:
                raise BrokerError(
                    f"{self.exchange.id} {what}: authentication refused ({type(e).__name__})"
                ) from e
        raise AssertionError("unreachable")

    def _report(self, raw: dict[str, Any], fallback: Order | None = None) -> ExchangeOrder:
        """A ccxt order dict -> ExchangeOrder in our symbol, enums and quote-currency fee."""
        ccxt_symbol = raw.get("symbol") or (self._symbols.get(fallback.symbol) if fallback else None)
        symbol = self._ours.get(ccxt_symbol or "", fallback.symbol if fallback else ccxt_symbol or "")
        filled = float(raw.get("filled") or 0.0)
        average = float(raw.get("average") or 0.0)
        if not average and filled and raw.get("cost"):
            average = float(raw["cost"]) / filled
        status = _STATUS.get(raw.get("status") or "", OrderStatus.ACCEPTED)
        if status == OrderStatus.ACCEPTED and filled > 0:
            status = OrderStatus.PARTIALLY_FILLED
        ts_ms = raw.get("lastUpdateTimestamp") or raw.get("lastTradeTimestamp") or raw.get("timestamp") or 0
        otype = (raw.get("type") or (fallback.order_type if fallback else "limit")).lower()
        return ExchangeOrder(
            client_order_id=raw.get("clientOrderId") or (fallback.client_order_id if fallback else ""),
            symbol=symbol,
            side=Side((raw.get("side") or (fallback.side if fallback else "buy")).lower()),
            order_type=OrderType.MARKET if otype == "market" else OrderType.LIMIT,
            quantity=float(raw.get("amount") or (fallback.quantity if fallback else 0.0)),
            status=status,
            filled_qty=filled,
            avg_price=average,
            fee=self._fee_in_quote(raw, ccxt_symbol, average),
            price=float(raw["price"]) if raw.get("price") else None,
            exchange_order_id=str(raw["id"]) if raw.get("id") is not None else None,
            ts=int(ts_ms) * NS_PER_MS,
        )

    def _fee_in_quote(self, raw: dict[str, Any], ccxt_symbol: str | None, average: float) -> float:
        fees = raw.get("fees") or ([raw["fee"]] if raw.get("fee") else [])
        market = self.exchange.markets.get(ccxt_symbol) if ccxt_symbol and self.exchange.markets else None
        total = 0.0
        for fee in fees:
            cost = float(fee.get("cost") or 0.0)
            currency = fee.get("currency")
            if not cost:
                continue
            if market is None or currency in (None, market["quote"]):
                total += cost
            elif currency == market["base"]:
                total += cost * average
            else:
                log.warning("fee of %s %s (not in %s) counted as 0 in P&L", cost, currency, market["quote"])
        return total

    @staticmethod
    def _refused(order: Order, reason: str) -> ExchangeOrder:
        return ExchangeOrder(
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            quantity=order.quantity,
            status=OrderStatus.REJECTED,
            price=order.limit_price,
            reason=reason,
        )

    # ----------------------------------------------------------------------- orders

    def prepare(self, order: Order, ref_price: float | None = None) -> tuple[float, float | None] | str:
        """(amount, price) rounded to the market's precision, or the reason to refuse the order."""
        import ccxt

        if not CLIENT_ID_PATTERN.match(order.client_order_id):
            return f"invalid_client_order_id: {order.client_order_id!r} (1-36 of A-Z a-z 0-9 . _ : / -)"
        if order.order_type not in (OrderType.MARKET, OrderType.LIMIT):
            return (
                f"unsupported_order_type: {order.order_type.value} (stops are managed by the TradingService)"
            )
        market = self._market(order.symbol)
        sym = market["symbol"]
        try:
            amount = float(self.exchange.amount_to_precision(sym, order.remaining))
        except ccxt.InvalidOrder:
            amount = 0.0
        limits = market.get("limits") or {}
        min_amount = (limits.get("amount") or {}).get("min") or 0.0
        if amount <= 0 or amount < min_amount:
            return f"below_min_quantity: {order.remaining} {sym} rounds to {amount}, minimum {min_amount}"
        price: float | None = None
        if order.order_type == OrderType.LIMIT:
            if order.limit_price is None or not math.isfinite(order.limit_price) or order.limit_price <= 0:
                return f"invalid_limit_price: {order.limit_price}"
            price = float(self.exchange.price_to_precision(sym, order.limit_price))
        reference = price if price is not None else ref_price
        min_cost = (limits.get("cost") or {}).get("min") or 0.0
        if reference is not None and min_cost and amount * reference < min_cost:
            return f"below_min_notional: {amount} x {reference} = {amount * reference:.8g} < {min_cost} {market['quote']}"
        return amount, price

    def submit(self, order: Order, ref_price: float | None = None) -> ExchangeOrder:
        """Send `order` (its remaining quantity) once; see the module docstring for the retries.

        `ref_price` (the last price) lets a market order's minimum notional be checked before
        sending.
        """
        prepared = self.prepare(order, ref_price)
        if isinstance(prepared, str):
            log.warning("order %s refused before sending: %s", order.client_order_id, prepared)
            return self._refused(order, prepared)
        amount, price = prepared
        sym = self._symbols[order.symbol]
        params: dict[str, Any] = {"clientOrderId": order.client_order_id}
        if order.order_type == OrderType.LIMIT:
            if order.post_only:
                params["postOnly"] = True
            elif order.tif == TimeInForce.IOC:
                params["timeInForce"] = "IOC"
        try:
            return self._send(order, sym, amount, price, params)
        except BrokerUnavailable as e:
            raise BrokerUnavailable(
                f"order {order.client_order_id}: no answer from {self.exchange.id} and not found by its "
                f"client id; its state is unknown: reconcile before trading ({e})"
            ) from e

    def _send(
        self, order: Order, sym: str, amount: float, price: float | None, params: dict[str, Any]
    ) -> ExchangeOrder:
        def create() -> ExchangeOrder:
            raw = self.exchange.create_order(
                sym, order.order_type.value, order.side.value, amount, price, params
            )
            report = self._report(raw, order)
            log.info(
                "order %s %s %s %s %s: %s (filled %s)",
                order.client_order_id,
                order.side.value,
                amount,
                sym,
                order.order_type.value,
                report.status.value,
                report.filled_qty,
            )
            return report

        return self._once(
            order.client_order_id,
            create,
            lambda: self.order_status(order.client_order_id, order.symbol),
            lambda reason: self._refused(order, reason),
        )

    def _once(
        self,
        client_order_id: str,
        create: Callable[[], Any],
        lookup: Callable[[], Any],
        refuse: Callable[[str], Any],
    ) -> Any:
        """Make one order call at most once: after a lost answer (timeout, reset, 429/418,
        -1001) the order is looked up by its client id before any retry, and found means
        done; a rejection on a retry ("duplicate order") is checked the same way."""
        import ccxt

        attempts = self.ccfg.order_retries + 1
        for attempt in range(attempts):
            if attempt > 0:
                found = lookup()
                if found is not None:
                    log.info(
                        "order %s: found on the exchange after a lost answer, not resent", client_order_id
                    )
                    return found
            try:
                return create()
            except (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadRequest) as e:
                if attempt > 0:  # a "duplicate order" after a lost answer: the first one went through
                    found = lookup()
                    if found is not None:
                        return found
                log.warning("order %s rejected by %s: %s", client_order_id, self.exchange.id, e)
                return refuse(f"exchange_rejected: {type(e).__name__}: {e}")
            except ccxt.OperationFailed as e:
                delay = self._backoff(attempt)
                log.warning(
                    "order %s: %s on attempt %d/%d; looking it up by client id in %.2f s",
                    client_order_id,
                    type(e).__name__,
                    attempt + 1,
                    attempts,
                    delay,
                )
                self._sleep(delay)
            except ccxt.AuthenticationError as e:
                raise BrokerError(f"{self.exchange.id}: authentication refused ({type(e).__name__})") from e
        found = lookup()
        if found is not None:
            return found
        raise BrokerUnavailable(f"{attempts} attempts")

    def submit_oco(self, stop: Order, target: Order, quantity: float) -> dict[str, ExchangeOrder]:
        """A position's two exit legs as ONE OCO order list resting on the exchange (Binance
        spot `orderList/oco`): the target as a LIMIT_MAKER, the stop as a STOP_LOSS (a market
        order once triggered, so a gap cannot jump it), `quantity` shared (locked once).
        Client ids: the legs' own, the list's `oco_id`. Sent at most once (`_once`); returns
        {client id: report} for both legs, both REJECTED with the reason when refused."""
        import ccxt

        market = self._market(stop.symbol)
        sym = market["symbol"]

        def refuse(reason: str) -> dict[str, ExchangeOrder]:
            log.warning("bracket %s/%s refused: %s", stop.client_order_id, target.client_order_id, reason)
            return {o.client_order_id: self._refused(o, reason) for o in (stop, target)}

        if self.bracket_owner != "exchange":
            return refuse(f"unsupported: {self.exchange.id} brackets are managed by the service")
        for leg in (stop, target):
            if not CLIENT_ID_PATTERN.match(leg.client_order_id):
                return refuse(f"invalid_client_order_id: {leg.client_order_id!r}")
        try:
            amount = float(self.exchange.amount_to_precision(sym, quantity))
        except ccxt.InvalidOrder:
            amount = 0.0
        limits = market.get("limits") or {}
        min_amount = (limits.get("amount") or {}).get("min") or 0.0
        if amount <= 0 or amount < min_amount:
            return refuse(f"below_min_quantity: {quantity} {sym} rounds to {amount}, minimum {min_amount}")
        if stop.stop_price is None or target.limit_price is None:
            return refuse("invalid_bracket: a leg has no price")
        stop_px = self.exchange.price_to_precision(sym, stop.stop_price)
        target_px = self.exchange.price_to_precision(sym, target.limit_price)
        min_cost = (limits.get("cost") or {}).get("min") or 0.0
        if min_cost and amount * min(float(stop_px), float(target_px)) < min_cost:
            return refuse(f"below_min_notional: {amount} x {stop_px} < {min_cost} {market['quote']}")
        stop_leg = {"Type": "STOP_LOSS", "StopPrice": stop_px, "ClientOrderId": stop.client_order_id}
        target_leg = {"Type": "LIMIT_MAKER", "Price": target_px, "ClientOrderId": target.client_order_id}
        # a SELL list (closing a long): target above the market, stop below; a BUY list the mirror
        above, below = (target_leg, stop_leg) if stop.side == Side.SELL else (stop_leg, target_leg)
        request: dict[str, Any] = {
            "symbol": market["id"],
            "side": stop.side.value.upper(),
            "quantity": self.exchange.amount_to_precision(sym, amount),
            "listClientOrderId": stop.oco_id or f"{stop.client_order_id}-oco",
            **{f"above{k}": v for k, v in above.items()},
            **{f"below{k}": v for k, v in below.items()},
        }

        def create() -> dict[str, ExchangeOrder]:
            raw = self.exchange.private_post_orderlist_oco(request)
            out = {}
            for item in raw.get("orderReports") or []:
                report = self._report(self.exchange.parse_order(item, market))
                out[report.client_order_id] = report
            for leg in (stop, target):
                if leg.client_order_id not in out:  # a terse answer: ask for the leg
                    out[leg.client_order_id] = self.order_status(
                        leg.client_order_id, leg.symbol
                    ) or self._refused(leg, "missing_from_answer")
            log.info(
                "bracket %s: OCO %s %s %s, stop %s, target %s",
                request["listClientOrderId"],
                request["side"],
                request["quantity"],
                sym,
                stop_px,
                target_px,
            )
            return out

        def lookup() -> dict[str, ExchangeOrder] | None:
            found = self.order_status(stop.client_order_id, stop.symbol)
            if found is None:
                return None
            other = self.order_status(target.client_order_id, target.symbol)
            return {
                stop.client_order_id: found,
                target.client_order_id: other or self._refused(target, "not_found"),
            }

        try:
            return self._once(stop.client_order_id, create, lookup, refuse)
        except BrokerUnavailable as e:
            raise BrokerUnavailable(
                f"bracket {request['listClientOrderId']}: no answer from {self.exchange.id} and not found by "
                f"its legs' client ids; its state is unknown ({e})"
            ) from e

    def order_status(self, client_order_id: str, symbol: str) -> ExchangeOrder | None:
        """The exchange's view of one order by client id, or None when it does not know it."""
        import ccxt

        sym = self._market(symbol)["symbol"]
        try:
            raw = self._call(
                self.exchange.fetch_order, None, sym, {"clientOrderId": client_order_id}, what="fetch_order"
            )
        except ccxt.OrderNotFound:
            return None
        return self._report(raw)

    def cancel(self, client_order_id: str, symbol: str) -> ExchangeOrder | None:
        """Cancel one order by client id: its final report, or None when the exchange does not
        know it. An order that already finished (filled meanwhile) returns its actual state."""
        import ccxt

        sym = self._market(symbol)["symbol"]
        try:
            raw = self._call(
                self.exchange.cancel_order, None, sym, {"clientOrderId": client_order_id}, what="cancel_order"
            )
        except ccxt.OrderNotFound:
            return self.order_status(client_order_id, symbol)
        report = self._report(raw)
        log.info("order %s canceled on %s (%s)", client_order_id, self.exchange.id, report.status.value)
        return report

    def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        """Open orders of one configured symbol, or of all of them."""
        symbols = [symbol] if symbol is not None else list(self.cfg.symbols)
        out: list[ExchangeOrder] = []
        for s in symbols:
            sym = self._market(s)["symbol"]
            for raw in self._call(self.exchange.fetch_open_orders, sym, what="fetch_open_orders"):
                out.append(self._report(raw))
        return out

    def balances(self) -> dict[str, Balance]:
        """Every asset with a non-zero balance."""
        raw = self._call(self.exchange.fetch_balance, what="fetch_balance")
        out = {}
        for asset, total in (raw.get("total") or {}).items():
            if total:
                out[asset] = Balance(
                    asset,
                    float(raw["free"].get(asset) or 0.0),
                    float(raw["used"].get(asset) or 0.0),
                    float(total),
                )
        return out

    def positions(self) -> dict[str, float]:
        """{symbol: signed quantity}: on spot, the base asset held (free + locked)."""
        balances = self.balances()
        out = {}
        for symbol in self.cfg.symbols:
            market = self._market(symbol)
            if not market.get("spot"):
                raise BrokerError(f"{symbol}: only spot markets are supported by CcxtBroker.positions()")
            held = balances.get(market["base"])
            out[symbol] = held.total if held else 0.0
        return out

    def new_fills(self, order: Order, report: ExchangeOrder) -> list[Fill]:
        """The fill the OrderManager has not applied yet: what `report` has filled beyond
        `order.filled_qty`, at the price that makes the averages agree (one Fill, or none)."""
        delta = report.filled_qty - order.filled_qty
        if delta <= 1e-12 * max(1.0, report.quantity):
            return []
        price = (report.avg_price * report.filled_qty - order.avg_fill_price * order.filled_qty) / delta
        fee = report.fee * delta / report.filled_qty if report.filled_qty else 0.0
        taker = order.order_type != OrderType.LIMIT
        return [
            Fill(
                fill_id=f"{order.client_order_id}-c{report.filled_qty:.12g}",
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                quantity=delta,
                price=price,
                fee=fee,
                liquidity="taker" if taker else "maker",
                ts=report.ts,
            )
        ]

    def close(self) -> None:
        """Release the HTTP session."""
        session = getattr(self.exchange, "session", None)
        if session is not None:
            session.close()
