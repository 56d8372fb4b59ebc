"""The schema of config.json and its loader.

Every section is a msgspec Struct that forbids unknown fields, so a typo is an error, not a
silently ignored setting. `validate()` walks the whole document and returns ONE line per
problem (`candles.warmup_bars: expected an integer >= 200, got 50`), so a user fixes all of
them in one pass; `load()` raises `ConfigError` with those lines and starts nothing.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import math
import re
import typing
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

PosInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PosFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
Symbol = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:/\-]+$")]
# What the regime model predicts, and the strategies (the fields of StrategiesConfig but allow_short).
Regime = Literal["trending", "ranging", "volatile"]
StrategyName = Literal["momentum", "mean_reversion", "breakout"]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every config section: unknown keys are errors."""


class ReplayColumns(_Section):
    """Column names in the user's file (ticks or bars)."""

    # Ticks: trade time; bars: the bar's OPEN time.
    timestamp: str = "timestamp"
    price: str = "price"
    size: str = "volume"
    # Optional columns: used when the file has a column of this name (a name you change here
    # must exist); null = never. Without a symbol column the file holds replay.default_symbol.
    symbol: str | None = "symbol"
    trade_id: str | None = "trade_id"
    # bar files
    open: str = "open"
    high: str = "high"
    low: str = "low"
    close: str = "close"
    volume: str = "volume"
    # Optional bar columns, as above; when absent: trades -1, vwap NaN (unknown).
    trades: str | None = "trades"
    vwap: str | None = "vwap"


class ReplayFeed(_Section):
    """Ticks or 1-minute bars from Parquet or CSV (chosen by the file suffix); see scalper/feeds/replay.py."""

    # Relative paths are looked up in the current directory, then in the project root.
    path: str = "data/samples/es_ticks_2013-09.parquet"
    kind: Literal["ticks", "bars"] = "ticks"
    columns: ReplayColumns = msgspec.field(default_factory=ReplayColumns)
    # Unit of a numeric timestamp column; string/datetime columns are parsed as UTC.
    timestamp_unit: Literal["s", "ms", "us", "ns"] = "ms"
    # Symbol for files without a symbol column (columns.symbol = null).
    default_symbol: Symbol = "ES"
    # 0 = as fast as possible; k = k x real time.
    speed: NonNegFloat = 0.0
    # Event-time length of one tick batch (and heartbeat period). Bar files deliver bars once
    # a minute: 60000 avoids 599 empty heartbeats per minute.
    batch_ms: PosInt = 100
    # Heartbeats go on this long (event time) after the last data; a longer silence (weekend,
    # session break, end of file) is jumped to the next data without heartbeats or pacing.
    max_quiet_s: PosFloat = 120.0


class SyntheticFeed(_Section):
    """A seeded, regime-switching market; see scalper/feeds/synthetic.py for the model."""

    seed: int = 7
    # First minute, ISO 8601 (no zone = UTC).
    start: str = "2024-01-02T00:00:00Z"
    # Length of the series the feed plays, in minutes.
    minutes: PosInt = 1440
    # Each symbol starts at start_price * 2**u, u uniform in [-start_price_spread, +spread],
    # drawn from the symbol's own sub-seed (0 = every symbol at start_price).
    start_price: PosFloat = 100.0
    start_price_spread: NonNegFloat = 1.0
    tick_size: PosFloat = 0.01
    # Mean trade rate at average activity (Poisson arrivals).
    ticks_per_minute: PosFloat = 60.0
    # Annualised volatility of log price over a 24/7 year (525,600 minutes).
    annual_vol: PosFloat = 0.6
    # Regimes (trending up/down, ranging, volatile) switch as a Markov chain with this mean duration.
    mean_regime_minutes: PosFloat = 120.0
    # Annualised log drift of the trending regimes; 60 = 0.011% a minute, ~0.14 x the 1-minute
    # volatility at annual_vol 0.6, i.e. a trend of ~1.5 sigma over a mean regime.
    trend_drift_annual: float = 60.0
    # Volatility and trade-rate multipliers of the volatile regime.
    volatile_multiplier: Annotated[float, msgspec.Meta(ge=1)] = 3.0
    volatile_volume_multiplier: Annotated[float, msgspec.Meta(ge=1)] = 2.0
    # Ranging regime: fraction of the distance to the (slowly moving) anchor closed per minute.
    mean_reversion_per_minute: Fraction = 0.05
    # Amplitude of the U-shaped activity over the UTC day: 1 + A at 00:00, 1 - A at 12:00.
    volume_seasonality: Fraction = 0.5
    # Mean trade size (Gamma distributed, shape 0.5).
    mean_trade_size: PosFloat = 1.0
    batch_ms: PosInt = 100
    # 0 = as fast as possible; k = k x real time.
    speed: NonNegFloat = 0.0
    # As replay.max_quiet_s.
    max_quiet_s: PosFloat = 120.0

    def __post_init__(self) -> None:
        try:  # the generator reads it with pandas; ISO 8601 is what both understand alike
            datetime.fromisoformat(self.start)
        except ValueError:
            raise ValueError(
                f"start: expected an ISO 8601 date or time (e.g. 2024-01-02T00:00:00Z), got {self.start!r}"
            ) from None


@functools.cache
def ccxt_pro_exchanges() -> frozenset[str]:
    """The exchange ids of the installed ccxt.pro (one module each in ccxt/pro/, as
    `ccxt.pro.exchanges` lists them), read without importing ccxt: that takes ~1 s and every
    command loads a config. Empty when ccxt is not installed (nothing to check against)."""
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    pro = Path(next(iter(spec.submodule_search_locations))) / "pro"
    return frozenset(f.stem for f in pro.glob("*.py") if not f.stem.startswith("_"))


class CcxtConfig(_Section):
    """A live exchange through ccxt: its feed, its broker and start-up reconciliation.

    See scalper/feeds/ccxt.py, scalper/execution/ccxt.py, scalper/reconcile.py, docs/LIVE.md.
    API keys are NEVER here: they come from SCALPER_<EXCHANGE>_API_KEY / _SECRET (env vars).
    """

    # ccxt exchange id (ccxt.exchanges), e.g. "binance".
    exchange: str = "binance"
    # Use the venue's test network (ccxt set_sandbox_mode): fake money, real protocol.
    sandbox: bool = False
    # Read live data but trade on the paper broker (no order reaches the exchange).
    dry_run: bool = False
    # Our symbol -> the ccxt unified symbol ("BTCUSDT" -> "BTC/USDT"). A symbol missing here
    # is looked up by the exchange's own market id (Binance "BTCUSDT" is its id).
    markets: dict[str, str] = msgspec.field(default_factory=dict)
    # Event-time length of one tick batch (and the heartbeat period).
    batch_ms: PosInt = 100
    # A heartbeat for time t goes out once the clock reads t + this: trades reach us this
    # late at most (network latency, exchange clock offset); later ones count as late ticks.
    watermark_lag_ms: NonNegInt = 500
    # "websocket": ccxt.pro watch_trades; "poll": REST fetch_trades every poll_interval_s.
    transport: Literal["websocket", "poll"] = "websocket"
    # After this many consecutive websocket failures a symbol falls back to REST polling (0 = never).
    poll_fallback_after: NonNegInt = 5
    poll_interval_s: PosFloat = 1.0
    # Reconnect and rate-limit backoff: initial delay, doubled per failure up to the maximum.
    backoff_initial_s: PosFloat = 0.5
    backoff_max_s: PosFloat = 30.0
    # Heartbeats wait at most this long for a disconnected symbol (so that the trades backfilled
    # on reconnect still land in open minutes); after that the feed moves on without it.
    max_stall_s: PosFloat = 120.0
    # Most trades fetched to fill one gap (pages of 1000); a longer gap is left as a gap.
    backfill_max_trades: PosInt = 100_000
    # HTTP timeout of one REST call, and how many times an order call is retried (a retry first
    # looks the order up by its client order id: an order is never sent twice).
    timeout_ms: PosInt = 10_000
    order_retries: NonNegInt = 3
    # Start-up: an open order on the exchange that the ledger does not know is "adopt"ed (it
    # enters the ledger), "cancel"ed, or makes the start "refuse" (nothing is changed).
    unknown_orders: Literal["adopt", "cancel", "refuse"] = "refuse"
    # Start-up: the ledger's and the exchange's position agree within max(the market's amount
    # step, this % of the position) - spot fees paid in the base asset shrink the holding.
    position_tolerance_pct: Annotated[float, msgspec.Meta(ge=0, le=5)] = 0.25
    # Tests and private gateways: dotted keys into ccxt's `urls["api"]`, e.g.
    # {"public": "http://127.0.0.1:8000/api/v3", "private": "...", "ws.spot": "ws://..."}.
    urls: dict[str, str] = msgspec.field(default_factory=dict)
    # Who holds a position's stop-loss / take-profit: "exchange" = one OCO order list resting
    # on the exchange once the entry is done (Binance spot; it survives the bot being down),
    # "service" = the TradingService sends a market exit when a bar reaches a leg, "auto" =
    # "exchange" where the venue supports it, "service" elsewhere. See docs/LIVE.md.
    brackets: Literal["auto", "exchange", "service"] = "auto"
    # Simulation only (a local exchange whose clock runs fast; `urls` must be set): the feed's
    # clock reads clock_origin_ms + (wall - clock_origin_ms) x clock_speed. 1 = the wall clock.
    clock_speed: PosFloat = 1.0
    clock_origin_ms: NonNegInt = 0
    # Set by `scalper run --resume RUN_ID`: the reconciled ledger the trading service starts
    # from (orders, fills, positions of the earlier run). Empty = start flat.
    resume_ledger: str = ""

    def __post_init__(self) -> None:
        known = ccxt_pro_exchanges()
        if known and self.exchange not in known:
            close = difflib.get_close_matches(self.exchange, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"exchange: expected a ccxt.pro exchange id, got {self.exchange!r}{hint}")
        if self.clock_speed != 1.0 and not self.urls:
            raise ValueError(
                f"clock_speed: expected 1 on a real exchange (set urls for a simulated one), got {self.clock_speed}"
            )


class FeedConfig(_Section):
    kind: Literal["replay", "synthetic", "ccxt"] = "replay"
    replay: ReplayFeed = msgspec.field(default_factory=ReplayFeed)
    synthetic: SyntheticFeed = msgspec.field(default_factory=SyntheticFeed)
    ccxt: CcxtConfig = msgspec.field(default_factory=CcxtConfig)


class BadTickConfig(_Section):
    """Rules that reject a tick (with a counted reason) instead of corrupting a bar."""

    # With a feed clock (live receive time, replay interval end): reject ticks further than
    # this from it, either side. Without a clock (a file processed in one go) the rule is off.
    max_clock_skew_s: PosFloat = 300.0
    # Spike: reject a price whose move from the last accepted price exceeds
    #   max(spike_sigma * sigma_1m * sqrt(max(1, minutes since that price)), spike_min_return)
    # where sigma_1m is the std of the last `spike_window_bars` 1-minute close-to-close returns.
    spike_sigma: PosFloat = 10.0
    spike_window_bars: Annotated[int, msgspec.Meta(ge=5)] = 60
    spike_min_return: NonNegFloat = 0.002
    # Until `spike_window_bars // 2` bars exist only moves beyond this are spikes.
    spike_cold_return: PosFloat = 0.10
    # A real jump is not a spike forever: after this many consecutive suspects that agree with
    # each other, the newest is accepted and becomes the reference.
    spike_confirm_ticks: Annotated[int, msgspec.Meta(ge=2)] = 5


class CandlesConfig(_Section):
    # A minute closes once event time passes its end by this much (late ticks inside it still count).
    boundary_delay_ms: NonNegInt = 250
    # Minutes without a trade: "skip" emits nothing, "flat" emits a zero-volume bar at the last close
    # (never before the first trade). Gaps longer than flat_max_gap_minutes are session breaks: skipped.
    empty_minutes: Literal["skip", "flat"] = "skip"
    flat_max_gap_minutes: PosInt = 60
    # A manager that starts listening mid-minute (live) sees only part of that minute: "drop" or "emit"
    # it. Data processed from a file or replay has no start clock, so its first bar is complete.
    first_partial_bar: Literal["drop", "emit"] = "drop"
    # Bars of history needed before indicators are trusted (EMA-200 seed; see docs/BENCHMARKS.md).
    warmup_bars: Annotated[int, msgspec.Meta(ge=200)] = 1200
    # Bars kept in memory per symbol (>= warmup_bars).
    ring_size: Annotated[int, msgspec.Meta(ge=200)] = 2000
    dedupe_by_trade_id: bool = True
    # How many recent trade ids are remembered for duplicate detection.
    dedupe_window: PosInt = 100_000
    bad_ticks: BadTickConfig = msgspec.field(default_factory=BadTickConfig)

    def __post_init__(self) -> None:
        if self.ring_size < self.warmup_bars:
            raise ValueError(
                f"ring_size: expected an integer >= warmup_bars ({self.warmup_bars}), got {self.ring_size}"
            )


class IndicatorsConfig(_Section):
    # pandas_ta switches silently to TA-Lib when it is installed; we always say which engine.
    engine: Literal["native", "talib"] = "native"
    ema_lengths: list[Annotated[int, msgspec.Meta(ge=2)]] = msgspec.field(
        default_factory=lambda: [9, 21, 50, 200]
    )
    rsi_length: Annotated[int, msgspec.Meta(ge=2)] = 14
    bbands_length: Annotated[int, msgspec.Meta(ge=2)] = 20
    bbands_std: PosFloat = 2.0
    volume_sma_length: Annotated[int, msgspec.Meta(ge=2)] = 20
    atr_length: Annotated[int, msgspec.Meta(ge=2)] = 14
    # Session anchor of VWAP, a pandas period alias: "D" (daily, UTC), "W", "M".
    vwap_anchor: Literal["D", "W", "M"] = "D"

    def __post_init__(self) -> None:
        if not self.ema_lengths:
            raise ValueError("ema_lengths: expected at least one length, got []")
        if len(set(self.ema_lengths)) != len(self.ema_lengths):
            raise ValueError(f"ema_lengths: expected distinct lengths, got {self.ema_lengths}")


class MomentumConfig(_Section):
    """EMA fast/slow cross at this bar, close on the trend side of the trend EMA, RSI in a band."""

    enabled: bool = True
    fast_ema: PosInt = 9
    slow_ema: PosInt = 21
    trend_ema: PosInt = 50
    # longs need RSI in (rsi_long_min, rsi_long_max); shorts the mirror (100-max, 100-min)
    rsi_long_min: Annotated[float, msgspec.Meta(ge=0, le=100)] = 50.0
    rsi_long_max: Annotated[float, msgspec.Meta(ge=0, le=100)] = 70.0
    stop_atr: PosFloat = 1.5
    target_atr: PosFloat = 2.0

    def __post_init__(self) -> None:
        if not self.fast_ema < self.slow_ema:
            raise ValueError(f"fast_ema: expected less than slow_ema ({self.slow_ema}), got {self.fast_ema}")
        if not self.rsi_long_min < self.rsi_long_max:
            raise ValueError(
                f"rsi_long_min: expected less than rsi_long_max ({self.rsi_long_max}), got {self.rsi_long_min}"
            )


class MeanReversionConfig(_Section):
    """Close outside a Bollinger band, on the far side of VWAP, RSI extreme: limit at the band."""

    enabled: bool = True
    rsi_oversold: Annotated[float, msgspec.Meta(ge=0, le=100)] = 30.0
    rsi_overbought: Annotated[float, msgspec.Meta(ge=0, le=100)] = 70.0
    # the limit entry expires if not filled within this many bars
    limit_expiry_bars: PosInt = 3
    # target: the middle band or the session VWAP
    target: Literal["middle", "vwap"] = "middle"
    stop_atr: PosFloat = 1.5

    def __post_init__(self) -> None:
        if not self.rsi_oversold < self.rsi_overbought:
            raise ValueError(
                f"rsi_oversold: expected less than rsi_overbought ({self.rsi_overbought}), got {self.rsi_oversold}"
            )


class BreakoutConfig(_Section):
    """Close beyond the highest high / lowest low of the previous N bars, volume > k x its SMA."""

    enabled: bool = True
    lookback_bars: Annotated[int, msgspec.Meta(ge=2)] = 20
    volume_multiple: PosFloat = 1.5
    stop_atr: PosFloat = 1.0
    target_atr: PosFloat = 2.0


class StrategiesConfig(_Section):
    allow_short: bool = True
    momentum: MomentumConfig = msgspec.field(default_factory=MomentumConfig)
    mean_reversion: MeanReversionConfig = msgspec.field(default_factory=MeanReversionConfig)
    breakout: BreakoutConfig = msgspec.field(default_factory=BreakoutConfig)


class InstrumentConfig(_Section):
    """Trading rules of one instrument (prices in quote currency or index points)."""

    tick_size: PosFloat = 0.01
    # quantities are rounded DOWN to a multiple of this (1 = whole contracts/shares)
    lot_size: PosFloat = 1.0
    min_quantity: NonNegFloat = 0.0
    # orders below this notional (price x quantity x multiplier) are refused
    min_notional: NonNegFloat = 0.0
    # P&L per 1.0 of price per unit (ES futures: 50 USD per index point)
    multiplier: PosFloat = 1.0
    # Leveraged instruments: the capital one unit ties up (futures initial margin). The risk
    # caps (max_position_pct, max_gross_exposure_pct) then count margin, not notional.
    # null = unleveraged: a unit ties up its full notional (price x multiplier).
    margin_per_unit: PosFloat | None = None
    # A fixed fee per unit and side (futures: commission + exchange fees per contract); it
    # replaces execution.maker_fee_bps / taker_fee_bps for this instrument. null = use the bps.
    fee_per_unit: NonNegFloat | None = None


class RiskConfig(_Section):
    starting_equity: PosFloat = 100_000.0
    # loss at the stop, as % of equity, that sizes each trade
    risk_per_trade_pct: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.5
    # caps, as % of equity (notional = price x quantity x multiplier)
    max_position_pct: Annotated[float, msgspec.Meta(gt=0)] = 25.0
    max_gross_exposure_pct: Annotated[float, msgspec.Meta(gt=0)] = 100.0
    max_open_positions: PosInt = 10
    max_orders_per_minute: PosInt = 30
    # breaching either switches to HALTED: no new entries (exits still allowed), kept across restarts
    daily_loss_limit_pct: Annotated[float, msgspec.Meta(gt=0, le=100)] = 3.0
    max_drawdown_pct: Annotated[float, msgspec.Meta(gt=0, le=100)] = 10.0
    # after this many consecutive losing trades on a symbol, no entries there for cooldown_bars
    cooldown_after_losses: PosInt = 3
    cooldown_bars: NonNegInt = 30
    one_position_per_symbol: bool = True
    # the sizing model's multiplier is clipped to [0, this]; 1.0 until the model exists
    size_multiplier_cap: Annotated[float, msgspec.Meta(ge=0)] = 2.0


class ExecutionConfig(_Section):
    broker: Literal["paper", "ccxt"] = "paper"
    # market orders (and stops) fill at the next bar's open moved against you by this much;
    # slippage_ticks adds whole ticks of the instrument on top
    slippage_bps: NonNegFloat = 1.0
    slippage_ticks: NonNegInt = 0
    maker_fee_bps: float = 0.0
    taker_fee_bps: NonNegFloat = 2.0
    # a limit entry not filled by its expiry: "cancel" it, or convert it to a market order
    limit_expiry_action: Literal["cancel", "market"] = "cancel"
    # optional partial fills: at most this fraction of a bar's volume fills per order per bar (0 = off)
    max_volume_participation: Fraction = 0.0
    # "bar": fills from each bar's OHLC (a stop fills at its price, or the open on a gap; when
    # stop and target are both touched in one bar the stop is assumed first). "tick": the
    # bar's trades decide: each order fills at the first trade that reaches it (a stop at that
    # trade's price) and the leg reached first wins. Needs tick data (a ticks file or replay).
    fill_mode: Literal["bar", "tick"] = "bar"


class BacktestConfig(_Section):
    # 1-minute periods per year for Sharpe/Sortino annualisation (525,600 = 24/7 markets)
    periods_per_year: PosInt = 525_600


class MlConfig(_Section):
    """Signal dataset, the three models and their evaluation; see docs/ML.md."""

    enabled: bool = False
    # Model registry root: models/<name>/<version>/ plus a `latest` pointer per name.
    registry: Annotated[str, msgspec.Meta(min_length=1)] = "models"
    # Used when the validator in the registry carries no threshold of its own (training
    # chooses one on validation data, for expectancy).
    validator_threshold: Fraction = 0.5
    # Triple barrier: a trade whose bracket hit neither stop nor target within this many bars
    # after the entry bar is closed at that bar's close (a time-out).
    label_horizon_bars: PosInt = 60
    # Regime labels: efficiency ratio and realised volatility over the NEXT regime_window_bars;
    # features over the past window. "volatile" = realised vol above this quantile of the
    # symbol's own, else "trending" when the efficiency ratio is at least regime_trend_er.
    regime_window_bars: Annotated[int, msgspec.Meta(ge=5)] = 30
    regime_vol_quantile: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.75
    regime_trend_er: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.3
    # One regime training row every this many bars (neighbouring rows share most of their window).
    regime_stride_bars: PosInt = 5
    # Strategies allowed to act in each predicted regime (a strategy missing from the list
    # of the regime is refused with "regime_disallows_strategy").
    regime_strategies: dict[Regime, list[StrategyName]] = msgspec.field(
        default_factory=lambda: {
            "trending": ["momentum", "breakout"],
            "ranging": ["mean_reversion"],
            "volatile": ["breakout", "mean_reversion"],
        }
    )
    # Sizer: multiplier = clip(kelly_fraction * E[R] / E[R^2] / risk_per_trade, 0, cap);
    # cap <= risk.size_multiplier_cap.
    sizer_kelly_fraction: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.05
    sizer_cap: NonNegFloat = 2.0
    # Ray Train workers for XGBoost (1-2 on a laptop, more on a cluster) and boosting rounds.
    train_workers: PosInt = 1
    num_boost_round: PosInt = 200
    max_depth: PosInt = 4
    learning_rate: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.05
    # Share of the (time-ordered) data held out, latest last, to choose the validator
    # threshold and to train the sizer on out-of-sample validator probabilities.
    validation_fraction: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 0.25
    # Walk-forward evaluation: rolling train -> test windows in days, purged by the label horizon.
    walk_forward_train_days: PosFloat = 6.0
    walk_forward_test_days: PosFloat = 2.0
    # Where `scalper collect` writes datasets and `train --evaluate` its reports.
    datasets_dir: str = "datasets"
    # `scalper train all --bootstrap` (run by `make run` first; a no-op when the registry has
    # all three models): a dataset from these synthetic symbols (feed.synthetic, this many
    # minutes each) plus, with bootstrap_replay, the configured replay file
    # (feed.replay.path, the bundled real data by default); written to datasets_dir/bootstrap.
    bootstrap_symbols: list[Symbol] = msgspec.field(
        default_factory=lambda: ["SYN1", "SYN2", "SYN3", "SYN4", "SYN5", "SYN6"]
    )
    bootstrap_minutes: PosInt = 43_200
    bootstrap_replay: bool = True


class ServeConfig(_Section):
    """The model app on Ray Serve (used by `scalper run` on Ray when ml.enabled; see docs/ML.md)."""

    # CPUs reserved per replica (0 or a fraction on a laptop) and replicas per model.
    num_cpus_per_replica: NonNegFloat = 0.0
    replicas: PosInt = 1
    # @serve.batch: concurrent requests answered in one model call. A wait of 0 answers what is
    # queued at once: requests that arrive while a batch runs still form the next batch, and a
    # lone bar close's call does not wait for company (bench/bench_serve.py: p50 8-9 ms vs 12).
    max_batch_size: PosInt = 64
    batch_wait_timeout_s: NonNegFloat = 0.0
    # A model call slower than this, or a model app that is down, is a failure: "closed" drops
    # the minute's signals (reason "validator_unavailable"), "rules_only" lets them through
    # unjudged at size 1 (reason kept in the record's detail). The bot keeps running either way.
    timeout_s: PosFloat = 1.0
    on_failure: Literal["closed", "rules_only"] = "closed"
    # Optional JSON API for outside callers (POST /models); binds 127.0.0.1 only.
    http: bool = False
    http_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 8000


class RayConfig(_Section):
    # None = start an embedded local cluster; "auto" or "ray://host:port" = attach.
    address: str | None = None
    num_cpus: PosInt | None = None
    # Shard actors hosting the per-symbol CandleManagers: "auto" (by CPUs) or a count.
    candle_shards: Literal["auto"] | PosInt = "auto"
    include_dashboard: bool = True


class StoreConfig(_Section):
    # Root of the shared Parquet bar store: a local path or a pyarrow filesystem URI
    # (s3://bucket/prefix). `scalper candles --store` appends to it; warm starts read from it.
    # A replay run keeps its own bars in runs/<id>/bars/ instead.
    bars_uri: str = "data/bars"
    # Where `scalper run` makes runs/<run-id>/.
    runs_dir: str = "runs"


class Config(_Section):
    symbols: list[Symbol] = msgspec.field(default_factory=lambda: ["ES"])
    feed: FeedConfig = msgspec.field(default_factory=FeedConfig)
    candles: CandlesConfig = msgspec.field(default_factory=CandlesConfig)
    indicators: IndicatorsConfig = msgspec.field(default_factory=IndicatorsConfig)
    strategies: StrategiesConfig = msgspec.field(default_factory=StrategiesConfig)
    risk: RiskConfig = msgspec.field(default_factory=RiskConfig)
    execution: ExecutionConfig = msgspec.field(default_factory=ExecutionConfig)
    instruments: dict[str, InstrumentConfig] = msgspec.field(
        default_factory=lambda: {
            "default": InstrumentConfig(),
            # E-mini S&P 500: 0.25 point ticks, 50 USD a point, ~5,000 USD initial margin (2013),
            # ~2.25 USD per contract and side in commission and exchange fees
            "ES": InstrumentConfig(
                tick_size=0.25,
                lot_size=1.0,
                min_quantity=1.0,
                multiplier=50.0,
                margin_per_unit=5_000.0,
                fee_per_unit=2.25,
            ),
        }
    )
    backtest: BacktestConfig = msgspec.field(default_factory=BacktestConfig)
    ml: MlConfig = msgspec.field(default_factory=MlConfig)
    serve: ServeConfig = msgspec.field(default_factory=ServeConfig)
    ray: RayConfig = msgspec.field(default_factory=RayConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)

    def instrument(self, symbol: str) -> InstrumentConfig:
        """The trading rules of `symbol` (its own entry, else "default")."""
        return self.instruments.get(symbol) or self.instruments.get("default") or InstrumentConfig()

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError("symbols: expected at least one symbol, got []")
        mom = self.strategies.momentum
        for name in ("fast_ema", "slow_ema", "trend_ema"):
            length = getattr(mom, name)
            if length not in self.indicators.ema_lengths:
                raise ValueError(
                    f"strategies.momentum.{name}: expected one of indicators.ema_lengths "
                    f"{self.indicators.ema_lengths}, got {length}"
                )
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols: expected distinct symbols, got {self.symbols}")


class InstrumentTable(dict[str, InstrumentConfig]):
    """`cfg.instrument(symbol)`, looked up once per symbol: `table[symbol]`.

    The order path asks for a symbol's rules several times per order; after the first lookup
    a plain dict hit answers without a Python call. It reads `cfg.instruments` when a symbol
    is first asked for: build it with its owner (a config is not edited while it is used)."""

    __slots__ = ("_cfg",)

    def __init__(self, cfg: Config):
        super().__init__()
        self._cfg = cfg

    def __missing__(self, symbol: str) -> InstrumentConfig:
        inst = self[symbol] = self._cfg.instrument(symbol)
        return inst


class ConfigError(Exception):
    """A config that must not start anything. `problems` holds one line per bad field."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid config {source}:\n" + "\n".join(f"  {p}" for p in problems))


_KIND = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        text = json.dumps(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return json.dumps(value)


def _kind(text: str) -> str:
    return " or ".join(_KIND.get(part.strip(), part.strip()) for part in text.split("|"))


def _humanize(message: str, value: Any) -> tuple[str, str]:
    """msgspec's 'Expected `int` >= 200 - at `$.x`' -> ('.x', 'expected an integer >= 200, got 50')."""
    where = ""
    m = re.search(r" - at `\$(.*)`$", message)
    if m:
        where = m.group(1)
        message = message[: m.start()]
    m = re.match(r"Expected `([^`]+)`(.*?)(?:, got `[^`]*`)?$", message)
    if m:
        reason = f"expected {_kind(m.group(1))}{m.group(2)}"
    elif message.startswith("Invalid enum value "):
        reason = "expected one of the allowed values"
    else:
        reason = message[0].lower() + message[1:] if message else "invalid"
    if "got " not in reason:
        reason += f", got {_describe(_at(value, where))}"
    return where, reason


def _at(value: Any, where: str) -> Any:
    """The part of `value` that msgspec's `$...` suffix points at (the whole value if unsure)."""
    for key, index in re.findall(r"\.([A-Za-z_]\w*)|\[(\d+)\]", where):
        try:
            value = value[int(index)] if index else value[key]
        except (KeyError, IndexError, TypeError):
            return value
    return value


def _allowed(typ: Any) -> list[Any] | None:
    """The literal choices of a field type, to name them in an error."""
    origin = typing.get_origin(typ)
    if origin is Annotated:
        return _allowed(typing.get_args(typ)[0])
    if origin is Literal:
        return list(typing.get_args(typ))
    return None


def _join(path: str, suffix: str) -> str:
    suffix = re.sub(r"^\.", "", suffix)
    if not path:
        return suffix
    if not suffix:
        return path
    return f"{path}{suffix}" if suffix.startswith("[") else f"{path}.{suffix}"


def _collect(value: Any, typ: Any, path: str, problems: list[str]) -> None:
    """Check `value` against `typ`, appending one line per bad field to `problems`."""
    if isinstance(typ, type) and issubclass(typ, msgspec.Struct):
        if not isinstance(value, dict):
            problems.append(f"{path or '(top level)'}: expected an object, got {_describe(value)}")
            return
        fields = {f.encode_name: f for f in msgspec.structs.fields(typ)}
        before = len(problems)
        for key in value:
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{_join(path, str(key))}: unknown field{hint}")
        for name, f in fields.items():
            if name in value:
                _collect(value[name], f.type, _join(path, name), problems)
            elif f.required:
                problems.append(f"{_join(path, name)}: missing required field")
        if len(problems) == before:
            # Fields are fine one by one: now the section's own cross-field checks.
            try:
                msgspec.convert(value, typ)
            except msgspec.ValidationError as exc:
                msg = str(exc)
                m = re.match(r"^([\w.]+): (.*?)(?: - at `\$`)?$", msg)
                if m and m.group(1).split(".")[0] in fields:
                    problems.append(f"{_join(path, m.group(1))}: {m.group(2)}")
                else:
                    where, reason = _humanize(msg, value)
                    problems.append(f"{_join(path, where) or '(top level)'}: {reason}")
        return
    if typing.get_origin(typ) is dict and isinstance(value, dict):
        # one line per bad entry, named by its key (instruments.BTCUSDT.multiplier)
        key_type, value_type = typing.get_args(typ)
        for key, item in value.items():
            if key_type is not str:
                _collect(key, key_type, path, problems)
            _collect(item, value_type, _join(path, str(key)), problems)
        return
    if typing.get_origin(typ) is list and isinstance(value, list):
        (item_type,) = typing.get_args(typ)
        for i, item in enumerate(value):
            _collect(item, item_type, f"{path}[{i}]", problems)
        return
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{path or '(top level)'}: expected a finite number, got {value}")
        return
    try:
        msgspec.convert(value, typ)
    except msgspec.ValidationError as exc:
        where, reason = _humanize(str(exc), value)
        choices = _allowed(typ)
        if choices is not None:
            reason = f"expected one of {', '.join(json.dumps(c) for c in choices)}, got {_describe(value)}"
        problems.append(f"{_join(path, where)}: {reason}")


def validate(document: Any) -> list[str]:
    """All problems of a parsed config document (empty list = valid)."""
    problems: list[str] = []
    _collect(document, Config, "", problems)
    return problems


def parse(raw: bytes | str, source: str = "<config>") -> Config:
    """Parse and validate config JSON text; raise ConfigError listing every problem."""
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            source, [f"(file): not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
        ) from None
    problems = validate(document)
    if problems:
        raise ConfigError(source, problems)
    return msgspec.convert(document, Config)


def load(path: str | Path = "config.json") -> Config:
    """Load config.json (or another file); raise ConfigError naming every bad field."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(str(p), [f"(file): cannot read {p}: {exc.strerror}"]) from None
    return parse(raw, str(p))


def default_document() -> dict[str, Any]:
    """The defaults as a plain JSON-able dict (what config.json ships with)."""
    return msgspec.to_builtins(Config())


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A copy of `cfg` with dotted-path values replaced (`{"risk.risk_per_trade_pct": 0.25}`),
    validated like a config file: raises ConfigError naming every bad path or value."""
    document = msgspec.to_builtins(cfg)
    problems: list[str] = []
    for dotted, value in overrides.items():
        node = document
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node, dict) or key not in node:
                problems.append(f"{dotted}: unknown setting")
                break
            node = node[key]
        else:
            if not isinstance(node, dict) or leaf not in node:
                problems.append(f"{dotted}: unknown setting")
            else:
                node[leaf] = value
    problems += validate(document)
    if problems:
        raise ConfigError("overrides", problems)
    return msgspec.convert(document, Config)


def parse_grid(specs: list[str]) -> list[dict[str, Any]]:
    """`["a.b=1,2", "c=x"]` -> the cartesian product [{a.b: 1, c: "x"}, {a.b: 2, c: "x"}].

    Values are read as JSON when they parse (numbers, true/false, null), else as strings.
    """
    import itertools

    axes: list[tuple[str, list[Any]]] = []
    for spec in specs:
        key, sep, raw = spec.partition("=")
        if not sep or not key or not raw:
            raise ConfigError("--grid", [f"{spec}: expected KEY=VALUE[,VALUE...]"])
        values = []
        for item in raw.split(","):
            try:
                values.append(json.loads(item))
            except json.JSONDecodeError:
                values.append(item)
        axes.append((key.strip(), values))
    combos = itertools.product(*(vals for _, vals in axes))
    return [dict(zip((k for k, _ in axes), combo, strict=True)) for combo in combos]
