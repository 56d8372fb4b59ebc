"""The local test exchange itself: it must behave like an exchange when a client goes away, or
the live tests built on it fail for reasons of the test rig (a thread pushing trades dies)."""

from __future__ import annotations

import aiohttp
from exchange import LocalExchange


class _ClosingClient:
    """A websocket whose transport is closing: `closed` not yet set, but every send fails."""

    closed = False

    async def send_json(self, data: dict) -> None:
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    async def close(self) -> None:
        self.closed = True


class _ListeningClient:
    closed = False

    def __init__(self) -> None:
        self.got: list[dict] = []

    async def send_json(self, data: dict) -> None:
        self.got.append(data)

    async def close(self) -> None:
        self.closed = True


def test_a_client_closing_under_a_trade_push_is_dropped_and_the_others_still_get_the_trade():
    closing, listening = _ClosingClient(), _ListeningClient()
    with LocalExchange() as ex:
        ex._subs[closing] = {"btcusdt@aggTrade"}
        ex._subs[listening] = {"btcusdt@aggTrade", "btcusdt@trade"}
        ex.add_trade("BTCUSDT", 100.0, 1.0)  # raised ClientConnectionResetError before
        ex.add_trade("BTCUSDT", 101.0, 2.0)
        assert closing not in ex._subs
        assert [(m["e"], m["s"]) for m in listening.got] == [
            ("aggTrade", "BTCUSDT"),
            ("trade", "BTCUSDT"),
        ] * 2
