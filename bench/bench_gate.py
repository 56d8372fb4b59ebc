"""The model gate of one bar close, in process: what the risk manager computes around its
Serve calls, and the xgboost call each deployment makes.

    .venv/bin/python bench/bench_gate.py [--symbols 6] [--repeat 50]

Models: the three of bench/bench_serve.py (fitted on 2 synthetic symbols x 2 days, ~4 s).
Data: `--symbols` synthetic symbols, each a live window (the last FEATURE_HISTORY bars with
indicators), one momentum signal on each newest bar. Median of `--repeat` calls:

- features: `ModelGate.signal_frame` over all symbols (one stacked pass) and the same
  symbol by symbol (how it was computed before the stacked pass);
- `ModelGate.evaluate`: features + the three models + the decisions, in process;
- each model on the signals' rows: `LoadedModel.predict` (in place, one thread: what the
  registry and the replicas use) and `booster.predict(xgb.DMatrix(x))` with xgboost's default
  threads (how it predicted before). The two answers are compared (equal).

Timings depend on the machine's load (OpenMP threads spin on busy cores): the load average is
printed with them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_serve import fit_registry

from common import machine_info


def median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    import numpy as np
    import xgboost as xgb

    from scalper.backtest import load_bars, prepare
    from scalper.config import with_overrides
    from scalper.live_gate import FEATURE_HISTORY
    from scalper.ml.gate import ModelGate
    from scalper.types import OrderType, Side, Signal

    cfg, reg = fit_registry(Path(tempfile.mkdtemp(prefix="bench-gate-")) / "models")
    syms = [f"S{i}" for i in range(args.symbols)]
    cfg = with_overrides(cfg, {"ml.registry": str(reg.root), "symbols": syms, "feed.synthetic.minutes": 600})
    gate = ModelGate.from_registry(cfg)
    windows, signals = {}, []
    for sym, bars in load_bars(cfg, synthetic=True, symbols=syms).items():
        cols = prepare(sym, bars, cfg).cols
        windows[sym] = {k: np.asarray(v)[-FEATURE_HISTORY:] for k, v in cols.items()}
        ts, close = int(windows[sym]["timestamp"][-1]), float(windows[sym]["close"][-1])
        signals.append(Signal(sym, ts, "momentum", Side.BUY, OrderType.MARKET, close * 0.99, close * 1.02))

    print(f"machine: {machine_info()}; load {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    n = args.symbols
    stacked = median_ms(lambda: gate.signal_frame(signals, windows), args.repeat)
    alone = median_ms(
        lambda: [gate.signal_frame([s], {s.symbol: windows[s.symbol]}) for s in signals], args.repeat
    )
    evaluate = median_ms(lambda: gate.evaluate(signals, windows), args.repeat)
    print(f"{n} symbols, one signal each, median of {args.repeat}:")
    print(f"  features, one stacked pass: {stacked:.2f} ms; symbol by symbol: {alone:.2f} ms")
    print(f"  ModelGate.evaluate (features, three models, decisions): {evaluate:.2f} ms")
    frame = gate.signal_frame(signals, windows)
    from scalper.ml.models import sizer_frame
    from scalper.ml.sizing import SIZER_FEATURES

    rows = {
        "validator": frame,
        "regime": frame,
        "sizer": sizer_frame(frame, np.full(n, 0.5), None)[list(SIZER_FEATURES)],
    }
    for name in ("validator", "regime", "sizer"):
        model = getattr(gate, name)
        x = rows[name][model.card.features].to_numpy(dtype=np.float32)
        default = xgb.Booster(model_file=model.booster.save_raw())  # xgboost's default threads
        default.feature_names = list(model.card.features)
        names = list(model.card.features)
        in_place = median_ms(lambda m=model, x=x: m.predict(x), args.repeat)
        dmatrix = median_ms(
            lambda b=default, x=x, f=names: b.predict(xgb.DMatrix(x, feature_names=f)), args.repeat
        )
        same = np.array_equal(model.predict(x), default.predict(xgb.DMatrix(x, feature_names=names)))
        print(
            f"  {name}: in place, one thread {in_place:.2f} ms; DMatrix, default threads {dmatrix:.2f} ms; "
            f"same answers: {same}"
        )
    print(f"load at the end {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
