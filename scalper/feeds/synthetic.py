"""A seeded, regime-switching synthetic market: ticks (as a Feed or whole series) and 1-minute bars.

Deterministic: the same `SyntheticFeed` parameters and symbol give bit-identical output on
every run and machine (numpy PCG64 streams keyed by seed, symbol and block index; nothing
depends on Python's randomised `hash`). Each symbol has its own sub-seed derived from
`seed` and the symbol's name, so symbols are independent and adding one changes no other.
The feed, `synthetic_ticks` and `synthetic_bars` share one latent minute-by-minute path,
so the ticks of a minute bridge exactly between the closes that `synthetic_bars` reports.

The model, per symbol, per minute m (log price x, 1-minute volatility s1 = annual_vol /
sqrt(525,600), i.e. a 24/7 year):

* Regime r_m is a Markov chain over trending_up, trending_down, ranging, volatile: each
  minute it leaves its regime with probability 1/mean_regime_minutes (durations are
  geometric with that mean) for one of the other three, chosen uniformly. The first
  regime is uniform.
* Activity a_m = 1 + volume_seasonality * cos(2 pi * (UTC time of day) / 24 h): a U over
  the UTC day, 1 + A at 00:00, 1 - A at 12:00, mean 1.
* Volatility s_m = s1 * sqrt(a_m) (x volatile_multiplier in the volatile regime), so the
  average variance over a day is still annual_vol's.
* Trending up/down: x_m = x_{m-1} +/- mu + s_m * z with mu = trend_drift_annual / 525,600.
  Volatile: the same without drift. Ranging: x = anchor + d, where on entering the regime
  the anchor is the current price and d = 0; d_m = (1 - kappa) d_{m-1} + s_m * z is an
  AR(1) pulled back to the anchor (kappa = mean_reversion_per_minute) and the anchor
  itself drifts slowly, as a random walk with 0.1 * s_m per minute.
* Trades arrive as a Poisson process with rate ticks_per_minute * a_m (x
  volatile_volume_multiplier in the volatile regime), piecewise constant per minute. Trade
  sizes are Gamma(shape 0.5) with mean mean_trade_size (a long right tail).
* Within a minute the log price follows a Brownian bridge from the previous close to this
  minute's close with volatility s_m; each trade prints the bridge at its arrival time.
  Prices are exp(x) rounded to tick_size, and never below one tick.

`synthetic_bars` draws 1-minute bars DIRECTLY from the same latent path (no ticks): open =
previous close, close = this close, high/low = the exact distribution of a Brownian
bridge's maximum/minimum, trades ~ Poisson(rate), volume = sum of that many trade sizes
(Gamma), vwap ~ the bridge's time average (clipped into [low, high]). A minute without a
trade is a flat bar (volume 0, trades 0, prices = the previous bar's close). Its OHLC are
those of the continuous path, so they can exceed the extremes of the sampled ticks.

Parameters (`scalper.config.SyntheticFeed`, defaults in brackets):

    seed [7]                  int; the master seed.
    start ["2024-01-02T00:00:00Z"]  ISO time of the first minute (no zone = UTC).
    minutes [1440]            length of the series (feed and synthetic_ticks), in minutes.
    start_price [100.0]       centre of the start prices, in price units.
    start_price_spread [1.0]  each symbol starts at start_price * 2**u, u uniform in
                              [-spread, spread] from its sub-seed (0 = all at start_price).
    tick_size [0.01]          price grid; every price is a positive multiple of it.
    ticks_per_minute [60.0]   mean trade rate at average activity, trades per minute.
    annual_vol [0.6]          annualised volatility of log price (24/7 year of 525,600 min).
    mean_regime_minutes [120] mean regime duration, minutes.
    trend_drift_annual [60.0] annualised log drift of the trending regimes (+ up, - down);
                              per minute it is /525,600 (60 -> ~0.14 s1 per minute).
    volatile_multiplier [3.0] volatility multiplier of the volatile regime (>= 1).
    volatile_volume_multiplier [2.0]  trade-rate multiplier of the volatile regime (>= 1).
    mean_reversion_per_minute [0.05]  kappa, the fraction of the distance to the anchor
                              closed per minute in the ranging regime (0..1).
    volume_seasonality [0.5]  A, amplitude of the U-shaped daily activity curve (0..1).
    mean_trade_size [1.0]     mean size of one trade, in units of the instrument.
    batch_ms [100]            feed only: event-time length of a batch / heartbeat period.
    speed [0.0]               feed only: 0 = as fast as possible, k = k x real time.
    max_quiet_s [120.0]       feed only: heartbeats continue this long without trades,
                              then the feed jumps to the next trade (see feeds/base.py).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scalper.config import SyntheticFeed
from scalper.feeds.base import Chunk, Feed
from scalper.types import BAR_COLUMNS, NS_PER_MINUTE

log = logging.getLogger(__name__)

REGIMES: tuple[str, ...] = ("trending_up", "trending_down", "ranging", "volatile")
TRENDING_UP, TRENDING_DOWN, RANGING, VOLATILE = range(4)

MINUTES_PER_YEAR = 525_600  # 365 days of 24 h: the synthetic market never closes
LATENT_BLOCK_MINUTES = 1440  # the latent path is drawn one UTC-day-long block at a time
TICK_CHUNK_MINUTES = 15  # ticks are drawn 15 minutes at a time (divides the latent block)
ANCHOR_VOL = 0.1  # ranging anchor's random walk, as a fraction of the 1-minute volatility
SIZE_SHAPE = 0.5  # Gamma shape of trade sizes (coefficient of variation 1/sqrt(shape))
_DAY_NS = 1440 * NS_PER_MINUTE

# Independent random streams per symbol (part of the seed key; never renumber).
_STREAM_START, _STREAM_LATENT, _STREAM_TICKS, _STREAM_BARS = range(4)


def _start_ns(cfg: SyntheticFeed) -> int:
    t = pd.Timestamp(cfg.start)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return int(t.as_unit("ns").value)


def _symbol_key(symbol: str) -> int:
    return int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=8).digest(), "little")


def _rng(seed: int, key: int, *index: int) -> np.random.Generator:
    ss = np.random.SeedSequence([abs(seed), int(seed < 0)], spawn_key=(key, *index))
    return np.random.Generator(np.random.PCG64(ss))


def _decimals(tick: float) -> int:
    """Decimal places of the tick size, so rounded prices print cleanly (0.25 -> 2)."""
    text = np.format_float_positional(tick, trim="-")
    return len(text.split(".")[1]) if "." in text else 0


def _to_price(x: np.ndarray, tick: float, decimals: int) -> np.ndarray:
    """exp(log price) rounded to the tick grid, at least one tick."""
    n = np.maximum(np.rint(np.exp(x) / tick), 1.0)
    return np.round(n * tick, decimals)


def _ar1(u: np.ndarray, phi: float, d0: float) -> np.ndarray:
    """d_t = phi * d_{t-1} + u_t with d_{-1} = d0, vectorised (exact up to rounding)."""
    if phi <= 0.0:
        return u.copy()
    if phi >= 1.0:
        return d0 + np.cumsum(u)
    # Within a piece of length L, phi**-j stays below e**230: no overflow, no underflow.
    step = max(1, int(230.0 / -math.log(phi)))
    out = np.empty_like(u)
    for s in range(0, len(u), step):
        seg = u[s : s + step]
        p = phi ** np.arange(len(seg), dtype=np.float64)
        out[s : s + len(seg)] = p * np.cumsum(seg / p) + (p * phi) * d0
        d0 = float(out[s + len(seg) - 1])
    return out


@dataclass(slots=True)
class _Latent:
    """One block of the latent minute path of one symbol."""

    t0: np.ndarray  # int64 ns, minute start
    regime: np.ndarray  # int8
    open: np.ndarray  # log price at the minute start (= previous close)
    close: np.ndarray  # log price at the minute end
    sigma: np.ndarray  # volatility of log price over the minute
    rate: np.ndarray  # expected trades in the minute


class _Model:
    """The deterministic market of one symbol: latent blocks, tick chunks and bar blocks."""

    def __init__(self, cfg: SyntheticFeed, symbol: str):
        self.cfg = cfg
        self.symbol = symbol
        self.key = _symbol_key(symbol)
        self.start_ns = _start_ns(cfg)
        self.decimals = _decimals(cfg.tick_size)
        self.sigma1 = cfg.annual_vol / math.sqrt(MINUTES_PER_YEAR)
        self.mu = cfg.trend_drift_annual / MINUTES_PER_YEAR
        self.p_switch = min(1.0, 1.0 / cfg.mean_regime_minutes)
        rng = _rng(cfg.seed, self.key, _STREAM_START)
        u = rng.uniform(-1.0, 1.0)
        self.first_regime = int(rng.integers(0, 4))
        self.start_price = cfg.start_price * 2.0 ** (cfg.start_price_spread * u)
        # A latent block is exactly one day long, so the intraday activity curve (a U over the
        # UTC day) is the same array for every block.
        n = LATENT_BLOCK_MINUTES
        self._minute_offsets = np.arange(n, dtype=np.int64) * NS_PER_MINUTE
        day_phase = ((self.start_ns + self._minute_offsets + NS_PER_MINUTE // 2) % _DAY_NS) / _DAY_NS
        activity = np.maximum(1.0 + cfg.volume_seasonality * np.cos(2.0 * np.pi * day_phase), 0.0)
        self._sigma_by_minute = self.sigma1 * np.sqrt(activity)
        self._rate_by_minute = cfg.ticks_per_minute * activity
        self._block: _Latent | None = None
        self._block_index = -1
        self._state = (math.log(self.start_price), self.first_regime, 0.0, False)

    # -- latent path -----------------------------------------------------------------------

    def latent(self, b: int) -> _Latent:
        """Latent block b (blocks are drawn in order and only the latest is kept)."""
        if b < self._block_index:
            self._block_index = -1
            self._state = (math.log(self.start_price), self.first_regime, 0.0, False)
        while self._block_index < b:
            self._block_index += 1
            self._block, self._state = self._draw_latent(self._block_index, self._state)
        assert self._block is not None
        return self._block

    def _draw_latent(self, b: int, state: tuple[float, int, float, bool]) -> tuple[_Latent, tuple]:
        cfg = self.cfg
        n = LATENT_BLOCK_MINUTES
        x_prev, r_prev, d_prev, ranging_prev = state
        rng = _rng(cfg.seed, self.key, _STREAM_LATENT, b)
        # One uniform per minute decides both whether the regime switches (u < p) and, given
        # that it does, to which of the other three (u / p is again uniform on [0, 1)).
        u = rng.random(n)
        z, z_anchor = rng.standard_normal((2, n))
        p = self.p_switch
        steps = np.where(u < p, 1 + np.minimum((u * (3.0 / p)).astype(np.int64), 2), 0)
        if b == 0:
            steps[0] = 0  # minute 0 is in the first regime
        regime = ((r_prev + np.cumsum(steps)) % 4).astype(np.int8)

        t0 = self._minute_offsets + (self.start_ns + b * n * NS_PER_MINUTE)
        volatile = regime == VOLATILE
        sigma = self._sigma_by_minute * np.where(volatile, cfg.volatile_multiplier, 1.0)
        rate = self._rate_by_minute * np.where(volatile, cfg.volatile_volume_multiplier, 1.0)
        drift = np.where(regime == TRENDING_UP, self.mu, np.where(regime == TRENDING_DOWN, -self.mu, 0.0))
        inc = drift + sigma * z

        d_end = 0.0
        ranging = regime == RANGING
        if ranging.any():
            edges = np.diff(np.concatenate(([0], ranging.view(np.int8), [0])))
            run_starts = np.flatnonzero(edges == 1)
            run_ends = np.flatnonzero(edges == -1)
            phi = 1.0 - cfg.mean_reversion_per_minute
            for a, e in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
                d0 = d_prev if (a == 0 and ranging_prev) else 0.0
                d = _ar1(sigma[a:e] * z[a:e], phi, d0)
                d_before = np.concatenate(([d0], d[:-1]))
                inc[a:e] = ANCHOR_VOL * sigma[a:e] * z_anchor[a:e] + (d - d_before)
                if e == n:
                    d_end = float(d[-1])
        close = x_prev + np.cumsum(inc)
        open_ = np.concatenate(([x_prev], close[:-1]))
        block = _Latent(t0, regime, open_, close, sigma, rate)
        return block, (float(close[-1]), int(regime[-1]), d_end, bool(ranging[-1]))

    # -- ticks -----------------------------------------------------------------------------

    def tick_chunk(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ticks (ts, price, size) of the minutes [c*15, (c+1)*15) of the series."""
        cfg = self.cfg
        m0 = c * TICK_CHUNK_MINUTES
        b, i0 = divmod(m0, LATENT_BLOCK_MINUTES)
        lat = self.latent(b)
        sl = slice(i0, i0 + TICK_CHUNK_MINUTES)
        rate, t0 = lat.rate[sl], lat.t0[sl]
        o, cl, sig = lat.open[sl], lat.close[sl], lat.sigma[sl]
        m = len(rate)
        rng = _rng(cfg.seed, self.key, _STREAM_TICKS, c)
        z_end = rng.standard_normal(m)
        cum = np.cumsum(rate)
        total = float(cum[-1])
        if total <= 0.0:
            return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64)
        # A unit-rate Poisson process in "intensity time", mapped back through the cumulative
        # rate: an exact non-homogeneous Poisson process, already sorted.
        guess = int(total + 6.0 * math.sqrt(total) + 16)
        arrivals = np.cumsum(rng.exponential(size=guess))
        while arrivals[-1] < total:
            more = np.cumsum(rng.exponential(size=guess)) + arrivals[-1]
            arrivals = np.concatenate((arrivals, more))
        arrivals = arrivals[: np.searchsorted(arrivals, total)]
        n = len(arrivals)
        z = rng.standard_normal(n)
        size = rng.gamma(SIZE_SHAPE, cfg.mean_trade_size / SIZE_SHAPE, n)
        if n == 0:
            return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64)
        mi = np.minimum(np.searchsorted(cum, arrivals, side="right"), m - 1)
        f = np.clip((arrivals - (cum[mi] - rate[mi])) / rate[mi], 0.0, 1.0 - 1e-12)
        ts = t0[mi] + (f * NS_PER_MINUTE).astype(np.int64)
        # Brownian bridge per minute, sampled at the arrival fractions f.
        new = np.empty(n, dtype=bool)
        new[0] = True
        np.not_equal(mi[1:], mi[:-1], out=new[1:])
        prev_f = np.empty(n)
        prev_f[0] = 0.0
        prev_f[1:] = f[:-1]
        prev_f[new] = 0.0
        dw = np.sqrt(f - prev_f) * z
        w = np.cumsum(dw)
        starts = np.flatnonzero(new)
        seg = np.cumsum(new) - 1
        w -= (w - dw)[starts][seg]
        ends = np.concatenate((starts[1:], [n])) - 1
        w1 = w[ends] + np.sqrt(1.0 - f[ends]) * z_end[mi[ends]]
        bridge = w - f * w1[seg]
        x = o[mi] + f * (cl[mi] - o[mi]) + sig[mi] * bridge
        return ts, _to_price(x, cfg.tick_size, self.decimals), size

    # -- bars ------------------------------------------------------------------------------

    def bar_block(self, b: int) -> dict[str, np.ndarray]:
        """Raw 1-minute bars of latent block b (flat minutes are fixed up by the caller)."""
        cfg = self.cfg
        lat = self.latent(b)
        n = len(lat.rate)
        rng = _rng(cfg.seed, self.key, _STREAM_BARS, b)
        trades = rng.poisson(lat.rate)
        volume = rng.gamma(trades * SIZE_SHAPE, cfg.mean_trade_size / SIZE_SHAPE)
        volume[trades == 0] = 0.0
        e_hi = rng.exponential(size=n)
        e_lo = rng.exponential(size=n)
        z = rng.standard_normal(n)
        o, c, s2 = lat.open, lat.close, lat.sigma**2
        mid = 0.5 * (o + c)
        dd = (c - o) ** 2
        hi = mid + 0.5 * np.sqrt(dd + 2.0 * s2 * e_hi)
        lo = mid - 0.5 * np.sqrt(dd + 2.0 * s2 * e_lo)
        vw = mid + lat.sigma * math.sqrt(1.0 / 12.0) * z
        return {
            "timestamp": lat.t0,
            "open": o,
            "high": hi,
            "low": lo,
            "close": c,
            "vwap": vw,
            "volume": volume,
            "trades": trades.astype(np.int64),
            "regime": lat.regime,
        }


def _n_minutes(cfg: SyntheticFeed, minutes: int | None) -> int:
    n = cfg.minutes if minutes is None else int(minutes)
    if n <= 0:
        raise ValueError(f"minutes: expected an integer >= 1, got {n}")
    return n


def synthetic_ticks(cfg: SyntheticFeed, symbol: str) -> dict[str, np.ndarray]:
    """The whole series of one symbol: {"ts": int64 ns, "price": float64, "size": float64}.

    Identical to the ticks the feed yields for that symbol.
    """
    model = _Model(cfg, symbol)
    end_ns = model.start_ns + cfg.minutes * NS_PER_MINUTE
    parts = [model.tick_chunk(c) for c in range(-(-cfg.minutes // TICK_CHUNK_MINUTES))]
    ts = np.concatenate([p[0] for p in parts])
    keep = int(np.searchsorted(ts, end_ns))
    return {
        "ts": ts[:keep],
        "price": np.concatenate([p[1] for p in parts])[:keep],
        "size": np.concatenate([p[2] for p in parts])[:keep],
    }


def _latent_series(cfg: SyntheticFeed, symbol: str, minutes: int, fn: Callable[[_Model, int], dict]) -> dict:
    model = _Model(cfg, symbol)
    blocks = [fn(model, b) for b in range(-(-minutes // LATENT_BLOCK_MINUTES))]
    return {name: np.concatenate([blk[name] for blk in blocks])[:minutes] for name in blocks[0]}


def synthetic_bars(
    cfg: SyntheticFeed, symbol: str, minutes: int | None = None, *, with_regime: bool = False
) -> pd.DataFrame:
    """1-minute OHLCV bars drawn directly from the latent path (fast: no ticks).

    Columns `BAR_COLUMNS` (timestamp = bar open, int64 ns), plus `regime` (the ground-truth
    regime name, categorical) when `with_regime`. `minutes` defaults to cfg.minutes; a
    shorter series is a prefix of a longer one. OHLC are on the tick grid; vwap, an average,
    is not (it lies in [low, high]).
    """
    n = _n_minutes(cfg, minutes)
    raw = _latent_series(cfg, symbol, n, _Model.bar_block)
    tick, dec = cfg.tick_size, _decimals(cfg.tick_size)
    o, h, lo, c = (_to_price(raw[k], tick, dec) for k in ("open", "high", "low", "close"))
    vwap = np.clip(np.exp(raw["vwap"]), lo, h)
    trades, volume = raw["trades"], raw["volume"]
    flat = trades == 0
    if flat.any():
        # A minute without a trade: a flat bar at the previous bar's close.
        idx = np.where(~flat, np.arange(n), -1)
        last = np.maximum.accumulate(idx)
        prev_last = np.concatenate(([-1], last[:-1]))
        first_open = o[0]
        ref = np.where(prev_last >= 0, c[np.maximum(prev_last, 0)], first_open)
        for col in (o, h, lo, c, vwap):
            col[flat] = ref[flat]
    frame = pd.DataFrame(
        {
            "timestamp": raw["timestamp"],
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": volume,
            "trades": trades,
            "vwap": vwap,
        },
        columns=list(BAR_COLUMNS),
    )
    if with_regime:
        frame["regime"] = pd.Categorical.from_codes(raw["regime"], categories=list(REGIMES))
    return frame


def synthetic_regimes(cfg: SyntheticFeed, symbol: str, minutes: int | None = None) -> pd.DataFrame:
    """Ground-truth regime per minute: columns timestamp (int64 ns, minute start), regime
    (categorical name from REGIMES) and regime_code (int8, index into REGIMES)."""
    n = _n_minutes(cfg, minutes)
    raw = _latent_series(cfg, symbol, n, lambda m, b: {"t0": m.latent(b).t0, "regime": m.latent(b).regime})
    return pd.DataFrame(
        {
            "timestamp": raw["t0"],
            "regime": pd.Categorical.from_codes(raw["regime"], categories=list(REGIMES)),
            "regime_code": raw["regime"],
        }
    )


class SyntheticMarketFeed(Feed):
    """The synthetic market as a Feed of TickBatches and Heartbeats for many symbols."""

    kind = "ticks"

    def __init__(
        self,
        cfg: SyntheticFeed,
        symbols: Sequence[str],
        *,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ):
        kw = {k: v for k, v in (("sleep", sleep), ("clock", clock)) if v is not None}
        super().__init__(symbols, batch_ms=cfg.batch_ms, speed=cfg.speed, max_quiet_s=cfg.max_quiet_s, **kw)
        self.cfg = cfg
        self.start_ns = _start_ns(cfg)
        self.end_ns = self.start_ns + cfg.minutes * NS_PER_MINUTE

    def _chunks(self) -> Iterator[Chunk]:
        models = [_Model(self.cfg, s) for s in self.symbols]
        n_chunks = -(-self.cfg.minutes // TICK_CHUNK_MINUTES)
        codes = np.arange(len(models), dtype=np.int32)
        log.info(
            "synthetic feed: %d symbols, %d minutes from %s, seed %d",
            len(models),
            self.cfg.minutes,
            self.cfg.start,
            self.cfg.seed,
        )
        for c in range(n_chunks):
            parts = [m.tick_chunk(c) for m in models]
            last = c == n_chunks - 1
            if len(parts) == 1:
                ts, price, size = parts[0]
                code = np.zeros(len(ts), dtype=np.int32)
            else:
                ts = np.concatenate([p[0] for p in parts])
                price = np.concatenate([p[1] for p in parts])
                size = np.concatenate([p[2] for p in parts])
                code = np.repeat(codes, [len(p[0]) for p in parts])
            if last:
                keep = ts < self.end_ns
                ts, price, size, code = ts[keep], price[keep], size[keep], code[keep]
            until = None if last else self.start_ns + (c + 1) * TICK_CHUNK_MINUTES * NS_PER_MINUTE
            yield Chunk(code, ts, {"ts": ts, "price": price, "size": size, "trade_id": None}, until)
