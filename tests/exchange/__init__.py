"""A local Binance-spot-compatible exchange for the ccxt feed, broker and reconciliation tests."""

from exchange.server import API_KEY, SECRET, LocalExchange, MarketSpec

__all__ = ["API_KEY", "SECRET", "LocalExchange", "MarketSpec"]
