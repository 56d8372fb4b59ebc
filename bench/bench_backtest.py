"""Backtest speed: one symbol-year of synthetic 1-minute bars, and the bundled ES ticks.

    .venv/bin/python bench/bench_backtest.py [--bars 525600] [--repeat 3]

(a) One symbol-year: `synthetic_bars(cfg.feed.synthetic, "SYN", 525_600)`, the full backtest
    (the three strategies, the RiskManager, the OrderManager and the PaperBroker fill model,
    no ML), timed in parts:
      * indicators: `backtest.prepare` (pandas_ta batch, native engine). Its FIRST call in this
        process is reported apart (it imports pandas_ta and loads / JIT-compiles numba code;
        the line says whether numba's on-disk cache files existed beforehand); the figure used
        below is the best of `--repeat` warm calls;
      * engine: `Backtest(cfg).run(data)` alone, best of `--repeat` (a new Backtest each time);
      * total "with indicators": prepare + run in one timed call, best of `--repeat`.
    Three configs: the defaults (`Config()` = config.json without the models, as the target
    says "no ML": the 10% drawdown halt stops new entries early in the year), loose risk limits (max_drawdown_pct = daily_loss_limit_pct = 90) and 100 (a
    halt only at zero equity, so the strategies trade all year: the engine's full load).
    Targets: engine >= 500,000 bars/s on one core; one symbol-year <= 1.5 s with indicators.
(b) The bundled ES ticks (data/samples): `load_bars(Config())` (read + ticks -> candles),
    prepare, run, with the defaults.
(c) One portfolio of `--portfolio-symbols` symbols (default 10) sharing the `--bars` between
    them (each its own synthetic seed), no risk halt and one open position allowed per symbol:
    the engine when several symbols trade at once (their orders, fill searches and marks).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import warnings
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scalper import backtest as bt
from scalper.config import Config, default_document
from scalper.feeds.synthetic import synthetic_bars

from common import best_of, machine_info

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "SYN"


def versions() -> str:
    import importlib.metadata as md

    import numpy
    import pandas

    try:
        pta = md.version("pandas_ta")
    except md.PackageNotFoundError:
        pta = "?"
    return f"numpy {numpy.__version__}, pandas {pandas.__version__}, pandas_ta {pta}"


def numba_cache_files() -> int:
    """numba's on-disk cache index files (*.nbi) under the installed pandas_ta."""
    import importlib.util

    spec = importlib.util.find_spec("pandas_ta")
    if spec is None or spec.origin is None:
        return 0
    return sum(1 for _ in Path(spec.origin).parent.rglob("*.nbi"))


def loose_config(pct: float = 90.0) -> Config:
    doc = default_document()
    doc["risk"]["max_drawdown_pct"] = pct
    doc["risk"]["daily_loss_limit_pct"] = pct
    return msgspec.convert(doc, Config)


def refused_text(result: bt.BacktestResult) -> str:
    counts: dict[str, int] = {}
    for rec in result.signals:
        if not rec.approved:
            counts[rec.reason] = counts.get(rec.reason, 0) + 1
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) or "none"


def portfolio(n_symbols: int, bars_each: int) -> tuple[Config, dict]:
    """(c): n symbols in one Backtest, each with its own seed, no halt, n open positions."""
    doc = default_document()
    doc["symbols"] = [f"S{i:02d}" for i in range(n_symbols)]
    doc["risk"].update(max_drawdown_pct=100.0, daily_loss_limit_pct=100.0, max_open_positions=n_symbols)
    cfg = msgspec.convert(doc, Config)
    data = {}
    for i, sym in enumerate(cfg.symbols):
        market = msgspec.structs.replace(cfg.feed.synthetic, seed=cfg.feed.synthetic.seed + i)
        data[sym] = bt.prepare(sym, synthetic_bars(market, sym, bars_each), cfg)
    return cfg, data


def run_once(cfg: Config, data: dict) -> bt.BacktestResult:
    return bt.Backtest(cfg).run(data)


def halted_text(engine: bt.Backtest) -> str:
    st = engine.risk.state
    if not st.halted:
        return "no"
    when = dt.datetime.fromtimestamp(st.halted_ts / 1e9, dt.UTC).strftime("%Y-%m-%d")
    return f"{st.halt_reason} on {when}"


def measure(cfg: Config, name: str, bars, data: dict, repeat: int) -> dict:
    engine = bt.Backtest(cfg)
    result = engine.run(data)  # warm-up run, and the counts
    row = {
        "name": name,
        "bars": result.bars,
        "signals": len(result.signals),
        "approved": sum(1 for r in result.signals if r.approved),
        "trades": len(result.trades),
        "refused": refused_text(result),
        "halted": halted_text(engine),
    }
    row["engine"] = best_of(lambda: run_once(cfg, data), repeat)
    row["total"] = best_of(lambda: run_once(cfg, {SYMBOL: bt.prepare(SYMBOL, bars, cfg)}), repeat)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bars", type=int, default=525_600, help="synthetic bars (default: one 24/7 year)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    ap.add_argument("--portfolio-symbols", type=int, default=10, help="symbols of (c) (default 10)")
    args = ap.parse_args()
    logging_quiet()

    cfg = Config()
    nbi_before = numba_cache_files()
    t0 = time.perf_counter()
    bars = synthetic_bars(cfg.feed.synthetic, SYMBOL, args.bars)
    t_gen = time.perf_counter() - t0

    t0 = time.perf_counter()
    data = {SYMBOL: bt.prepare(SYMBOL, bars, cfg)}
    t_first = time.perf_counter() - t0
    t_prep = best_of(lambda: bt.prepare(SYMBOL, bars, cfg), args.repeat)

    rows = [
        measure(cfg, "defaults (config.json, no ML)", bars, data, args.repeat),
        measure(
            loose_config(90.0), "loose risk limits (drawdown and daily loss 90%)", bars, data, args.repeat
        ),
        measure(loose_config(100.0), "no risk halt (drawdown and daily loss 100%)", bars, data, args.repeat),
    ]

    # (b) the bundled ES ticks
    es_cfg = Config()
    t0 = time.perf_counter()
    es_bars = bt.load_bars(es_cfg)
    t_load_first = time.perf_counter() - t0
    t_load = best_of(lambda: bt.load_bars(es_cfg), args.repeat)
    (es_sym,) = list(es_bars)
    es_frame = es_bars[es_sym]
    es_data = {es_sym: bt.prepare(es_sym, es_frame, es_cfg)}
    t_es_prep = best_of(lambda: bt.prepare(es_sym, es_frame, es_cfg), args.repeat)
    es_engine = bt.Backtest(es_cfg)
    es_res = es_engine.run(es_data)
    t_es_run = best_of(lambda: run_once(es_cfg, es_data), args.repeat)

    def whole() -> None:
        b = bt.load_bars(es_cfg)
        bt.Backtest(es_cfg).run({s: bt.prepare(s, f, es_cfg) for s, f in b.items()})

    t_es_total = best_of(whole, args.repeat)

    n = len(bars)
    print(f"### Backtest speed, {machine_info()}, {versions()}\n")
    print(f"`.venv/bin/python bench/bench_backtest.py --bars {args.bars} --repeat {args.repeat}`\n")
    print(
        f"One symbol-year: {n:,} synthetic 1-minute bars (`synthetic_bars(cfg.feed.synthetic, "
        f'"{SYMBOL}", {n:,})`, generated in {t_gen:.2f} s, not counted below); the three strategies, '
        f"risk, paper fills, no ML. Best of {args.repeat}.\n"
    )
    cache = (
        f"numba disk cache present ({nbi_before} .nbi files)"
        if nbi_before
        else "numba disk cache EMPTY (cold JIT)"
    )
    print("| step | time | bars/s | target |")
    print("| --- | ---: | ---: | --- |")
    print(
        f"| indicators `prepare`, first call in this process (imports pandas_ta; {cache}) "
        f"| {t_first:.3f} s | {n / t_first:,.0f} | - |"
    )
    print(
        f"| indicators `prepare`, warm (numba compiled, in memory) | {t_prep:.3f} s | {n / t_prep:,.0f} | - |"
    )
    for r in rows:
        print(
            f"| engine `Backtest(cfg).run`, {r['name']} | {r['engine']:.3f} s | {n / r['engine']:,.0f} "
            f"| >= 500,000 bars/s: {'met' if n / r['engine'] >= 500_000 else 'NOT met'} |"
        )
        print(
            f"| total with indicators (prepare + run), {r['name']} | {r['total']:.3f} s | "
            f"{n / r['total']:,.0f} | <= 1.5 s: {'met' if r['total'] <= 1.5 else 'NOT met'} |"
        )
    print()
    print("| config | signals | approved | trades | refused | risk halt at the end |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for r in rows:
        print(
            f"| {r['name']} | {r['signals']:,} | {r['approved']:,} | {r['trades']:,} | {r['refused']} "
            f"| {r['halted']} |"
        )
    print()
    print(
        f"Bundled ES ticks (`{es_cfg.feed.replay.path}`), defaults: {len(es_frame):,} bars, "
        f"{len(es_res.signals):,} signals, {sum(1 for r in es_res.signals if r.approved):,} approved, "
        f"{len(es_res.trades):,} trades (refused: {refused_text(es_res)}; risk halt at the end: "
        f"{halted_text(es_engine)}). Best of {args.repeat}.\n"
    )
    m = len(es_frame)
    print("| step | time | bars/s |")
    print("| --- | ---: | ---: |")
    print(f"| `load_bars(Config())`: read ticks + ticks -> candles, first call | {t_load_first:.3f} s | - |")
    print(f"| `load_bars(Config())`, warm | {t_load:.3f} s | - |")
    print(f"| indicators `prepare`, warm | {t_es_prep:.4f} s | {m / t_es_prep:,.0f} |")
    print(f"| engine `Backtest(cfg).run` | {t_es_run:.4f} s | {m / t_es_run:,.0f} |")
    print(f"| total: load_bars + prepare + run | {t_es_total:.3f} s | {m / t_es_total:,.0f} |")

    # (c) several symbols in one portfolio
    k = args.portfolio_symbols
    p_cfg, p_data = portfolio(k, args.bars // k)
    p_res = run_once(p_cfg, p_data)
    t_p = best_of(lambda: run_once(p_cfg, p_data), args.repeat)
    print(
        f"\nOne portfolio of {k} symbols x {args.bars // k:,} bars ({p_res.bars:,} bars), no risk halt, "
        f"up to {k} open positions: {len(p_res.signals):,} signals, {len(p_res.trades):,} trades. "
        f"Best of {args.repeat}.\n"
    )
    print("| step | time | bars/s | per trade |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| engine `Backtest(cfg).run`, {k} symbols | {t_p:.3f} s | {p_res.bars / t_p:,.0f} "
        f"| {t_p / max(len(p_res.trades), 1) * 1e6:,.0f} µs |"
    )


def logging_quiet() -> None:
    """The engine logs a WARNING when the kill switch trips; pandas_ta warns under pandas 3."""
    import logging

    logging.getLogger("scalper").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pandas_ta")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


if __name__ == "__main__":
    main()
