"""Technical indicators: a batch path wrapping pandas_ta and a streaming path that matches it.

Indicators (names from `indicator_columns(cfg)`, in this order): `ema_{n}` for each EMA length,
`rsi_{n}`, `session_vwap` (session-anchored; `vwap` is the bar's own column), `bb_lower`,
`bb_mid`, `bb_upper`, `volume_sma_{n}`, `atr_{n}`.

`compute_batch(bars, cfg)` runs pandas_ta 0.4.71b0 and always names the engine (`talib=False`
for "native", `talib=True` for "talib", which then requires the `talib` module). pandas_ta is
imported on first use only: importing this module does not import pandas_ta, numba or pandas.

`StreamingIndicators(cfg)` updates every indicator in O(1) per bar, except that the Bollinger
mid and the volume SMA re-sum their n-slot ring buffers each bar (built-in `sum`, in C,
compensated: O(n) = O(20), no drift), and it replays the native pandas_ta math operation by
operation, so its numbers equal `compute_batch` on every bar, warm-up included: bit for bit for
EMA, RSI, VWAP, ATR and the Bollinger variance; to a few ulps (~4e-16 relative) for the SMA-based
columns. What pandas_ta 0.4.71b0 computes natively (`talib=False`) on pandas 3.1 (bar i counts
from 0; "n/a" = pandas_ta returns None):

* EMA(n): `presma=True`: value at bar n-1 = mean of the first n closes (numpy pairwise sum / n),
  NaN before; then `ewm(span=n, adjust=False)`: alpha = 1 / (1 + (n - 1) / 2),
  `w = ((1-alpha) * w + alpha * x) / ((1-alpha) + alpha)`, skipped when x == w (pandas' guard
  for constant series). n/a below n rows.
* RSI(n): `diff(1)` split into gains/losses, each smoothed by RMA = `ewm(alpha=1/n, adjust=False)`
  with NO SMA seed (TA-Lib seeds with the mean of n gains), so on a long frame pandas_ta fills
  bars 1.. (a value from one diff) but is n/a below n+1 rows. `rsi = 100 * g / (g + |l|)`; 0/0
  (no move yet) is NaN.
* VWAP: typical price ((h + l) + c) / 3 times volume, cumulated per `index.to_period(anchor)`
  group (pandas groupby cumsum, Kahan-compensated) and divided; NaN while the session's volume
  is 0. "D" = UTC day, "W" = weeks Monday..Sunday (W-SUN), "M" = calendar month. n/a on one row
  (it cannot tell an ordered index); this module computes that row itself.
* Bollinger(n, k): mid = SMA(n) (numba `np.convolve`, i.e. a BLAS dot product: not reproducible
  bit for bit in Python); std = sqrt(`rolling(n).var(ddof=1)`) - sample std, ddof=1 whatever the
  docstring says (TA-Lib: ddof=0) - pandas' Welford/Kahan online variance with its recompute of
  the window on catastrophic cancellation; bands = mid -/+ k * std. n/a below n rows.
* Volume SMA(n): the same numba SMA.
* ATR(n): true range TR_0 = h_0 - l_0 (no previous close), TR_i = max(|h-l|, |h-pc|, |pc-l|);
  value at bar n-1 = mean of TR_0..TR_{n-1} (TA-Lib: at bar n, mean of TR_1..TR_n); then RMA as
  above. n/a below n+1 rows. pandas_ta adds float epsilon (2.2e-16) to EVERY bar's h-l when ANY
  bar of the frame has h == l (`non_zero_range`) - a bar after i would change bar i. The stream
  always adds it, and `compute_batch` hands pandas_ta one flat bar after the end (then drops
  it) so that the batch does too on every frame: causal, and equal to the stream.

Causality: for RSI and ATR, a long frame has values at bars where a frame ending there is n/a.
`compute_batch` blanks those warm-up rows (RSI before bar n, ATR's bar n-1), so every row is
what pandas_ta gives on the bars up to it, which is what a live system sees: first RSI and first
ATR at bar n. With fewer rows than a window, the column is all NaN (never an error).

Readiness: an indicator is ready when its current value is not NaN (so it flips exactly at the
batch's first non-NaN value; a session VWAP that starts on a zero-volume bar is not ready until
volume trades). The EMA-200 is "ready" at bar 200 but depends on its seed for far longer: how
much history to load first is `candles.warmup_bars` (see bench/ema_warmup.py).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import logging
import math
import sys
import warnings
from typing import TYPE_CHECKING

from scalper.config import IndicatorsConfig
from scalper.types import Bar

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "StreamingIndicators",
    "TalibUnavailableError",
    "compute_batch",
    "compute_streaming",
    "indicator_columns",
    "session_bounds",
]

_NAN = math.nan
_EPS = sys.float_info.epsilon
_NS_PER_DAY = 86_400 * 1_000_000_000
_EPOCH = _dt.date(1970, 1, 1)


class TalibUnavailableError(ImportError):
    """`engine = "talib"` was configured but the TA-Lib Python package is not importable."""


def indicator_columns(cfg: IndicatorsConfig) -> list[str]:
    """Output column names, in order."""
    return [
        *(f"ema_{n}" for n in cfg.ema_lengths),
        f"rsi_{cfg.rsi_length}",
        "session_vwap",
        "bb_lower",
        "bb_mid",
        "bb_upper",
        f"volume_sma_{cfg.volume_sma_length}",
        f"atr_{cfg.atr_length}",
    ]


def _use_talib(cfg: IndicatorsConfig) -> bool:
    """The `talib=` flag to pass to pandas_ta; raises if TA-Lib is configured but missing."""
    if cfg.engine == "native":
        return False
    if cfg.engine == "talib":
        try:
            import talib  # noqa: F401
        except ImportError as e:
            raise TalibUnavailableError(
                "indicators.engine is 'talib' but the TA-Lib Python module `talib` cannot be "
                f"imported ({e}). Install it with `pip install ta-lib` (the PyPI wheel bundles the C "
                "library) or set indicators.engine to 'native'."
            ) from e
        return True
    raise ValueError(f"indicators.engine: expected 'native' or 'talib', got {cfg.engine!r}")


# --------------------------------------------------------------------------------------------
# Batch path
# --------------------------------------------------------------------------------------------

_REQUIRED = ("timestamp", "open", "high", "low", "close", "volume")


def compute_batch(bars: pd.DataFrame, cfg: IndicatorsConfig) -> pd.DataFrame:
    """All indicators over a bar table, one float64 column each, same index as `bars`.

    `bars` has columns timestamp (int64 ns since the epoch, UTC, bar OPEN time, non-decreasing),
    open, high, low, close, volume; other columns are ignored.
    """
    import numpy as np
    import pandas as pd

    missing = [c for c in _REQUIRED if c not in bars.columns]
    if missing:
        raise ValueError(f"compute_batch: bars lack column(s) {missing}; got {list(bars.columns)}")
    talib_flag = _use_talib(cfg)
    names = indicator_columns(cfg)
    n = len(bars)
    if n == 0:
        return pd.DataFrame({c: np.empty(0, dtype=np.float64) for c in names}, index=bars.index)

    ts = bars["timestamp"].to_numpy()
    if ts.dtype.kind == "M":  # tolerate a datetime column: use its ns since the epoch
        ts = ts.astype("datetime64[ns]").view(np.int64)
    ts = ts.astype(np.int64, copy=False)
    if n > 1 and bool((np.diff(ts) < 0).any()):
        raise ValueError("compute_batch: bars must be sorted by timestamp (non-decreasing)")
    index = pd.DatetimeIndex(ts.view("datetime64[ns]"))  # tz-naive UTC, for VWAP's to_period

    def col(name: str) -> pd.Series:
        return pd.Series(bars[name].to_numpy(dtype=np.float64), index=index, name=name)

    high, low, close, volume = col("high"), col("low"), col("close"), col("volume")
    out: dict[str, np.ndarray] = {}

    def put(name: str, s: pd.Series | None) -> None:
        if s is None:  # pandas_ta: fewer rows than the window
            out[name] = np.full(n, np.nan)
        else:
            out[name] = s.to_numpy(dtype=np.float64, copy=True)

    with warnings.catch_warnings():
        # pandas_ta 0.4.71b0 on pandas 3 emits Pandas4Warning (a DeprecationWarning) and
        # FutureWarning noise, and flips global filters (UserWarning) inside vwap: keep it local.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        import pandas_ta as ta

        for length in cfg.ema_lengths:
            put(f"ema_{length}", ta.ema(close, length=length, talib=talib_flag, presma=True))
        put(
            f"rsi_{cfg.rsi_length}",
            ta.rsi(close, length=cfg.rsi_length, mamode="rma", talib=talib_flag),
        )
        # pandas_ta.vwap has no engine flag (its hlc3 would use TA-Lib's TYPPRICE, the same
        # arithmetic); it prints to stdout when the index is not ordered: capture that.
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            vw = ta.vwap(high, low, close, volume, anchor=cfg.vwap_anchor)
        if stdout.getvalue():
            log.debug("pandas_ta.vwap: %s", stdout.getvalue().strip())
        if vw is None and n == 1:
            # pandas_ta refuses a single row (it cannot tell an ordered index); the value is the
            # bar's own typical price, which is also what the stream gives.
            tp = (high.to_numpy() + low.to_numpy() + close.to_numpy()) / 3.0
            with np.errstate(invalid="ignore", divide="ignore"):
                vw = pd.Series(tp * volume.to_numpy() / volume.to_numpy(), index=index)
        put("session_vwap", vw)
        bb = ta.bbands(
            close,
            length=cfg.bbands_length,
            lower_std=cfg.bbands_std,
            upper_std=cfg.bbands_std,
            ddof=1,
            mamode="sma",
            talib=talib_flag,
        )
        if bb is None:
            put("bb_lower", None)
            put("bb_mid", None)
            put("bb_upper", None)
        else:  # columns BBL, BBM, BBU, BBB, BBP
            put("bb_lower", bb.iloc[:, 0])
            put("bb_mid", bb.iloc[:, 1])
            put("bb_upper", bb.iloc[:, 2])
        put(
            f"volume_sma_{cfg.volume_sma_length}",
            ta.sma(volume, length=cfg.volume_sma_length, talib=talib_flag),
        )
        # pandas_ta's true range adds float epsilon to EVERY h-l when ANY bar of the frame is
        # flat: a flat bar after bar i would change ATR at bar i (look-ahead, found by
        # `scalper check lookahead`). One flat bar appended after the end makes the rule hold
        # on every frame (the stream always adds it); ATR is causal, so that extra row only
        # changes itself, and it is dropped.
        if n:
            extra_index = index.append(pd.DatetimeIndex([index[-1] + pd.Timedelta(minutes=1)]))
            last = float(close.iloc[-1])

            def flat_tail(s: pd.Series) -> pd.Series:
                return pd.Series(np.append(s.to_numpy(), last), index=extra_index, name=s.name)

            atr = ta.atr(
                flat_tail(high),
                flat_tail(low),
                flat_tail(close),
                length=cfg.atr_length,
                mamode="rma",
                talib=talib_flag,
            )
            put(f"atr_{cfg.atr_length}", None if atr is None or n < cfg.atr_length + 1 else atr.iloc[:-1])
        else:
            put(f"atr_{cfg.atr_length}", None)
    # Causality: pandas_ta returns None for RSI and ATR on fewer than length + 1 rows, yet on a
    # longer frame it fills rows 1.. (RSI) and row length - 1 (ATR). A live system at bar i only
    # has bars[:i + 1], so those rows are blanked: every row is what pandas_ta gives on the
    # bars up to it, and the full-history batch equals what the stream sees bar by bar.
    out[f"rsi_{cfg.rsi_length}"][: cfg.rsi_length] = np.nan
    out[f"atr_{cfg.atr_length}"][: cfg.atr_length] = np.nan
    return pd.DataFrame({c: out[c] for c in names}, index=bars.index)


# --------------------------------------------------------------------------------------------
# Streaming path
# --------------------------------------------------------------------------------------------


def _np_pairwise_sum(a: list[float]) -> float:
    """Sum of `a` in numpy's order (pairwise_sum of a contiguous float64 array), bit for bit.

    pandas' `Series.mean()` is `values.sum() / count`; pandas_ta seeds EMA and ATR with it.
    """
    n = len(a)
    if n < 8:
        res = 0.0
        for v in a:
            res += v
        return res
    if n <= 128:
        r = a[:8]
        i = 8
        stop = n - n % 8
        while i < stop:
            for j in range(8):
                r[j] += a[i + j]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            res += a[i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _np_pairwise_sum(a[:n2]) + _np_pairwise_sum(a[n2:])


def _ewm_weights(com: float) -> tuple[float, float, float]:
    """(old weight, new weight, their sum) of pandas' adjust=False ewm step for `com`."""
    alpha = 1.0 / (1.0 + com)
    old = 1.0 - alpha
    new = (1.0 - old) if com == 1 else alpha  # pandas' irregular-interval branch when com == 1
    return old, new, old + new


def _span_com(span: int) -> float:
    return float((span - 1) / 2)


def _alpha_com(alpha: float) -> float:
    return float((1 - alpha) / alpha)


def session_bounds(ts: int, anchor: str) -> tuple[int, int]:
    """[start, end) in ns of the `to_period(anchor)` period holding `ts` (ns since epoch, UTC)."""
    day = ts // _NS_PER_DAY
    if anchor == "D":
        return day * _NS_PER_DAY, (day + 1) * _NS_PER_DAY
    if anchor == "W":  # W-SUN: Monday 00:00 .. Sunday 24:00; 1970-01-01 was a Thursday
        start = day - (day + 3) % 7
        return start * _NS_PER_DAY, (start + 7) * _NS_PER_DAY
    if anchor == "M":
        d = _EPOCH + _dt.timedelta(days=day)
        first = _dt.date(d.year, d.month, 1)
        nxt = _dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
        return (first - _EPOCH).days * _NS_PER_DAY, (nxt - _EPOCH).days * _NS_PER_DAY
    raise ValueError(f"vwap_anchor: expected 'D', 'W' or 'M', got {anchor!r}")


class StreamingIndicators:
    """Incremental indicators for ONE symbol: O(1) per closed bar, same numbers as compute_batch.

    Call `update(ts, open, high, low, close, volume)` (or `update_bar(bar)`) once per closed bar,
    in time order, with finite values. `values()` gives {name: value} (NaN while not ready),
    `ready()` {name: bool}; `all_ready` says whether every indicator has a value.

    Cost: Bollinger mid and volume SMA sum their n-slot ring buffers each bar (built-in `sum`, in
    C, compensated); the Bollinger variance is pandas' O(1) add/remove Welford update, which
    re-sums the window only in the rare case pandas does (catastrophic cancellation). About 5 us
    per bar for the default set (bench/bench_indicators.py). Native engine only: TA-Lib's numbers
    differ, so `engine="talib"` raises rather than silently disagreeing with the batch.
    """

    __slots__ = (
        "_atr",
        "_atr_d",
        "_atr_len",
        "_atr_new",
        "_atr_old",
        "_bb_buf",
        "_bb_k",
        "_bb_len",
        "_bb_lower",
        "_bb_mid",
        "_bb_upper",
        "_bb_w",
        "_cfg",
        "_cv",
        "_cv_c",
        "_cwp",
        "_cwp_c",
        "_ema",
        "_ema_coef",
        "_ema_head",
        "_ema_lens",
        "_ema_max",
        "_n",
        "_names",
        "_pos_bb",
        "_pos_vol",
        "_prev_c",
        "_rsi",
        "_rsi_d",
        "_rsi_dn",
        "_rsi_len",
        "_rsi_new",
        "_rsi_old",
        "_rsi_up",
        "_rv_ca",
        "_rv_cr",
        "_rv_mean",
        "_rv_nobs",
        "_rv_ss",
        "_sess_end",
        "_sess_start",
        "_tr_head",
        "_vol_buf",
        "_vol_len",
        "_vol_sma",
        "_vol_w",
        "_vwap",
        "_vwap_anchor",
    )

    def __init__(self, cfg: IndicatorsConfig | None = None):
        cfg = cfg if cfg is not None else IndicatorsConfig()
        if cfg.engine != "native":
            raise NotImplementedError(
                f"StreamingIndicators reproduces pandas_ta's native engine only; indicators.engine "
                f"is {cfg.engine!r}. TA-Lib's numbers differ (RSI warm-up, Bollinger ddof=0, first "
                "ATR value): use engine 'native' for a live path that matches the batch."
            )
        self._cfg = cfg
        self._names = tuple(indicator_columns(cfg))
        self._ema_lens = tuple(int(n) for n in cfg.ema_lengths)
        self._ema_max = max(self._ema_lens)
        # (old weight, new weight, old + new) of each EMA, in config order.
        self._ema_coef = tuple(_ewm_weights(_span_com(n)) for n in self._ema_lens)
        self._rsi_len = int(cfg.rsi_length)
        self._rsi_old, self._rsi_new, self._rsi_d = _ewm_weights(_alpha_com(1.0 / cfg.rsi_length))
        self._atr_len = int(cfg.atr_length)
        self._atr_old, self._atr_new, self._atr_d = _ewm_weights(_alpha_com(1.0 / cfg.atr_length))
        self._bb_len = int(cfg.bbands_length)
        self._bb_w = 1.0 / self._bb_len
        self._bb_k = float(cfg.bbands_std)
        self._vol_len = int(cfg.volume_sma_length)
        self._vol_w = 1.0 / self._vol_len
        self._vwap_anchor = cfg.vwap_anchor
        session_bounds(0, cfg.vwap_anchor)  # validate the anchor now
        self.reset()

    def reset(self) -> None:
        """Forget every bar: back to the state of a new instance."""
        self._n = 0
        self._ema = [_NAN] * len(self._ema_lens)
        self._ema_head = []
        self._prev_c = _NAN
        self._rsi_up = _NAN
        self._rsi_dn = _NAN
        self._rsi = _NAN
        self._sess_start = 1
        self._sess_end = 0  # empty: the first bar opens a session
        self._cwp = self._cwp_c = self._cv = self._cv_c = 0.0
        self._vwap = _NAN
        self._bb_buf = [0.0] * self._bb_len
        self._pos_bb = 0
        self._rv_nobs = self._rv_mean = self._rv_ss = self._rv_ca = self._rv_cr = 0.0
        self._bb_lower = self._bb_mid = self._bb_upper = _NAN
        self._vol_buf = [0.0] * self._vol_len
        self._pos_vol = 0
        self._vol_sma = _NAN
        self._tr_head = []
        self._atr = _NAN

    @property
    def bars_seen(self) -> int:
        return self._n

    def update_bar(self, bar: Bar) -> None:
        """`update` from a `scalper.types.Bar`."""
        self.update(bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume)

    def update(self, ts: int, open: float, high: float, low: float, close: float, volume: float) -> None:
        """Add one closed bar (`ts` = its open time, ns since the epoch, UTC)."""
        n = self._n + 1
        self._n = n
        c = close

        # --- EMAs: pandas ewm(span=n, adjust=False) step; NaN stays NaN until seeded.
        ema = self._ema
        for i, (old, new, d) in enumerate(self._ema_coef):
            w = ema[i]
            if w != c:
                ema[i] = (old * w + new * c) / d
        if n <= self._ema_max:  # warm-up: seed each EMA with the mean of its first n closes
            head = self._ema_head
            head.append(c)
            for i, length in enumerate(self._ema_lens):
                if length == n:
                    ema[i] = _np_pairwise_sum(head) / length

        # --- RSI (gains/losses smoothed by RMA from bar 1, published from bar n) and true range.
        pc = self._prev_c
        self._prev_c = c
        hl = abs((high - low) + _EPS)
        if n > 1:
            diff = c - pc
            up = diff if diff > 0.0 else 0.0
            dn = diff if diff < 0.0 else 0.0
            g = self._rsi_up
            if g == g:
                if g != up:
                    g = (self._rsi_old * g + self._rsi_new * up) / self._rsi_d
                    self._rsi_up = g
                l_ = self._rsi_dn
                if l_ != dn:
                    l_ = (self._rsi_old * l_ + self._rsi_new * dn) / self._rsi_d
                    self._rsi_dn = l_
            else:
                self._rsi_up = g = up
                self._rsi_dn = l_ = dn
            if n > self._rsi_len:  # published from bar rsi_length on (see compute_batch)
                den = g + abs(l_)
                self._rsi = (100.0 * g) / den if den != 0.0 else _NAN
            a = abs(high - pc)
            b = abs(pc - low)
            tr = hl
            if a > tr:
                tr = a
            if b > tr:
                tr = b
        else:
            tr = hl

        # --- ATR: mean of the first n true ranges, then RMA.
        atr = self._atr
        if atr == atr:
            if atr != tr:
                self._atr = (self._atr_old * atr + self._atr_new * tr) / self._atr_d
        else:
            trs = self._tr_head
            trs.append(tr)
            if n == self._atr_len:
                self._atr = _np_pairwise_sum(trs) / n
                self._tr_head = []

        # --- VWAP: Kahan-compensated session sums of typical price x volume and of volume.
        if ts >= self._sess_end or ts < self._sess_start:
            self._sess_start, self._sess_end = session_bounds(ts, self._vwap_anchor)
            self._cwp = self._cwp_c = self._cv = self._cv_c = 0.0
        s = self._cwp
        y = ((high + low) + c) / 3.0 * volume - self._cwp_c
        t = s + y
        self._cwp_c = (t - s) - y
        self._cwp = cwp = t
        s = self._cv
        y = volume - self._cv_c
        t = s + y
        self._cv_c = (t - s) - y
        self._cv = t
        self._vwap = cwp / t if t != 0.0 else _NAN

        # --- Bollinger: ring buffer; pandas' rolling var (Welford + Kahan, remove then add).
        buf = self._bb_buf
        length = self._bb_len
        pos = self._pos_bb
        old_v = buf[pos]
        buf[pos] = c
        pos += 1
        self._pos_bb = 0 if pos == length else pos
        nobs = self._rv_nobs
        mean = self._rv_mean
        ss = self._rv_ss
        unstable = False
        if n > length:  # remove the value leaving the window (nobs >= 2 here)
            prev_m2 = ss
            nobs -= 1.0
            comp = self._rv_cr
            prev_mean = mean - comp
            y = old_v - comp
            t = y - mean
            self._rv_cr = (t + mean) - y
            mean = mean - t / nobs
            ss = ss - (old_v - prev_mean) * (old_v - mean)
            if prev_m2 * _INV_COND_TOL > ss:
                unstable = True
        prev_m2 = ss
        nobs += 1.0
        comp = self._rv_ca
        prev_mean = mean - comp
        y = c - comp
        t = y - mean
        self._rv_ca = (t + mean) - y
        mean = mean + t / nobs
        ss = ss + (c - prev_mean) * (c - mean)
        if unstable or prev_m2 * _INV_COND_TOL > ss:
            nobs, mean, ss = self._recompute_var()
        self._rv_nobs = nobs
        self._rv_mean = mean
        self._rv_ss = ss
        if n >= length:
            mid = sum(buf) * self._bb_w
            var = ss / (nobs - 1.0)
            if var >= 0.0:
                dev = self._bb_k * math.sqrt(var)
                self._bb_lower = mid - dev
                self._bb_upper = mid + dev
            else:
                self._bb_lower = self._bb_upper = _NAN
            self._bb_mid = mid

        # --- Volume SMA.
        vbuf = self._vol_buf
        pos = self._pos_vol
        vbuf[pos] = volume
        pos += 1
        self._pos_vol = 0 if pos == self._vol_len else pos
        if n >= self._vol_len:
            self._vol_sma = sum(vbuf) * self._vol_w

    def _recompute_var(self) -> tuple[float, float, float]:
        """pandas' recompute of the whole window after a numerically unstable update."""
        buf = self._bb_buf
        pos = self._pos_bb
        window = buf[pos:] + buf[:pos] if self._n >= self._bb_len else buf[:pos]
        nobs = mean = ss = comp = 0.0
        for v in window:
            nobs += 1.0
            prev_mean = mean - comp
            y = v - comp
            t = y - mean
            comp = (t + mean) - y
            mean = mean + t / nobs
            ss = ss + (v - prev_mean) * (v - mean)
        self._rv_ca = comp
        self._rv_cr = 0.0
        return nobs, mean, ss

    def warm(self, bars: pd.DataFrame) -> None:
        """Replay a bar table (columns timestamp, open, high, low, close, volume) through update."""
        import numpy as np

        upd = self.update
        cols = [bars[c].to_numpy() for c in _REQUIRED]
        if cols[0].dtype.kind == "M":
            cols[0] = cols[0].astype("datetime64[ns]").view(np.int64)
        ts = cols[0].astype(np.int64, copy=False).tolist()
        rest = [c.astype(np.float64, copy=False).tolist() for c in cols[1:]]
        for row in zip(ts, *rest, strict=True):
            upd(*row)

    def values(self) -> dict[str, float]:
        """{indicator name: current value}; NaN where not ready."""
        vals = [
            *self._ema,
            self._rsi,
            self._vwap,
            self._bb_lower,
            self._bb_mid,
            self._bb_upper,
            self._vol_sma,
            self._atr if self._n > self._atr_len else _NAN,
        ]
        return dict(zip(self._names, vals, strict=False))  # same length by construction

    def ready(self) -> dict[str, bool]:
        """{indicator name: has a value (not NaN)}."""
        return {k: v == v for k, v in self.values().items()}

    @property
    def all_ready(self) -> bool:
        for v in self._ema:
            if v != v:
                return False
        for v in (self._rsi, self._vwap, self._bb_lower, self._bb_mid, self._bb_upper):
            if v != v:
                return False
        return self._vol_sma == self._vol_sma and self._n > self._atr_len and self._atr == self._atr


# pandas' roll_var: an update is ill-conditioned when <= 3 significant digits may remain.
_INV_COND_TOL = _EPS * 1e3


def compute_streaming(bars: pd.DataFrame, cfg: IndicatorsConfig) -> pd.DataFrame:
    """The live path over a whole bar table: one `StreamingIndicators.update` per row.

    Same output shape as `compute_batch` (one float64 column per indicator, the input's
    index), and the same numbers; used by `scalper indicators --streaming` and the tests.
    """
    import numpy as np
    import pandas as pd

    s = StreamingIndicators(cfg)
    names = indicator_columns(cfg)
    out = np.full((len(bars), len(names)), _NAN)
    cols = [bars[c].to_numpy() for c in _REQUIRED]
    if cols[0].dtype.kind == "M":
        cols[0] = cols[0].astype("datetime64[ns]").view(np.int64)
    ts = cols[0].astype(np.int64, copy=False).tolist()
    rest = [c.astype(np.float64, copy=False).tolist() for c in cols[1:]]
    upd, values = s.update, s.values
    for i, row in enumerate(zip(ts, *rest, strict=True)):
        upd(*row)
        out[i] = list(values().values())
    return pd.DataFrame(out, index=bars.index, columns=names)
