"""End to end in one process: what `scalper run` (make run) does over the bundled ES ticks.

    .venv/bin/python bench/bench_pipeline.py

Replay feed (100 ms intervals + heartbeats) -> CandleManager -> streaming indicators ->
TradingSession (strategies, risk, orders, paper fills), with the run directory (bars,
trades, signals, orders, equity, ledger) written to a temporary folder. Best of 3 runs,
after one warm-up run.
"""

from __future__ import annotations

import tempfile

import msgspec

from scalper import pipeline
from scalper.config import Config, default_document

from common import best_of, machine_info


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        doc = default_document()
        doc["store"]["runs_dir"] = tmp
        cfg = msgspec.convert(doc, Config)
        summary = pipeline.run(cfg, run_id="warm", progress=False)
        runs = iter(range(100))
        seconds = best_of(lambda: pipeline.run(cfg, run_id=f"r{next(runs)}", progress=False), 3)
    ticks = summary["ticks_in"]
    print(f"### `scalper run` pipeline, in process, {machine_info()}\n")
    print("| what | ticks | bars | wall time | ticks/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| replay of the bundled ES ticks -> candles -> indicators -> paper trading -> run dir | {ticks:,} | "
        f"{summary['bars_out']:,} | {seconds:.2f} s | {ticks / seconds:,.0f} |"
    )


if __name__ == "__main__":
    main()
