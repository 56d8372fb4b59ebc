"""The signal/regime dataset of many symbols, one Ray task per symbol.

The work is `scalper.ml.dataset.collect_symbol` (domain code, no ray); a task loads its
symbol's bars itself (`scalper.backtest.load_bars`), so only the result crosses the wire.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import pandas as pd
import ray

from scalper.config import Config

log = logging.getLogger(__name__)


def _collect_one(
    cfg: Config, data: str | None, synthetic: bool, symbol: str, start: str | None, end: str | None
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    from scalper.backtest import load_bars, start_ns
    from scalper.ml.dataset import collect_symbol, empty_signals

    warmup: dict[str, int] = {}  # with --from, the history before it (as `backtest --from`)
    bars = load_bars(
        cfg,
        data,
        synthetic,
        [symbol],
        start,
        end,
        warmup=cfg.candles.warmup_bars if start else 0,
        warmup_out=warmup,
    ).get(symbol)
    if bars is None or len(bars) == 0:
        return empty_signals(cfg), pd.DataFrame(), 0
    signals, regime = collect_symbol(cfg, symbol, bars, start_ns(start))
    return signals, regime, len(bars) - warmup.get(symbol, 0)


_collect_task = ray.remote(num_cpus=1)(_collect_one)


def collect_parallel(
    cfg: Config,
    symbols: Sequence[str],
    data: str | None = None,
    synthetic: bool = False,
    start: str | None = None,
    end: str | None = None,
    on_done: Callable[[str, int, int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, int, float]:
    """(signals, regime, bars, wall seconds) over `symbols`, one Ray task each."""
    from actors.backtests import ensure_ray
    from scalper.ml.dataset import concat

    ensure_ray(cfg)
    t0 = time.perf_counter()
    cfg_ref = ray.put(cfg)
    refs = {_collect_task.remote(cfg_ref, data, synthetic, s, start, end): s for s in symbols}
    sig, reg, bars = [], [], 0
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            s, r, n = ray.get(ref)
            sig.append(s)
            reg.append(r)
            bars += n
            if on_done is not None:
                on_done(refs[ref], n, len(s))
    signals, regime = concat(cfg, sig, [r for r in reg if len(r)])
    return signals, regime, bars, time.perf_counter() - t0
