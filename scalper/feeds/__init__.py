"""Market data feeds: every feed is an iterable of FeedEvents (see `base.py` for the semantics).

    from scalper.feeds import make_feed
    for event in make_feed(cfg):      # TickBatch | BarBatch | Heartbeat, in event time
        ...

`cfg.feed.kind` picks the feed: "replay" (a Parquet/CSV tick or bar file, `replay.py`),
"synthetic" (a seeded regime-switching market, `synthetic.py`), "ccxt" (live trades from an exchange, `ccxt.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from scalper.config import Config
from scalper.feeds.base import Feed, FeedError, Pacer
from scalper.feeds.replay import FileReplayFeed, read_bars, read_ticks
from scalper.feeds.synthetic import (
    REGIMES,
    SyntheticMarketFeed,
    synthetic_bars,
    synthetic_regimes,
    synthetic_ticks,
)

__all__ = [
    "REGIMES",
    "Feed",
    "FeedError",
    "FileReplayFeed",
    "Pacer",
    "SyntheticMarketFeed",
    "make_feed",
    "read_bars",
    "read_ticks",
    "synthetic_bars",
    "synthetic_regimes",
    "synthetic_ticks",
]


def make_feed(
    cfg: Config,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Feed:
    """The feed `cfg.feed.kind` names, for `cfg.symbols` (sleep/clock: pacing, injectable)."""
    kind = cfg.feed.kind
    if kind == "replay":
        return FileReplayFeed(cfg.feed.replay, cfg.symbols, sleep=sleep, clock=clock)
    if kind == "synthetic":
        return SyntheticMarketFeed(cfg.feed.synthetic, cfg.symbols, sleep=sleep, clock=clock)
    if kind == "ccxt":
        from scalper.feeds.ccxt import CcxtTradeFeed  # imports ccxt: only for live runs

        return CcxtTradeFeed(cfg.feed.ccxt, cfg.symbols)
    raise FeedError(f'feed.kind: expected one of "replay", "synthetic", "ccxt", got {kind!r}')
