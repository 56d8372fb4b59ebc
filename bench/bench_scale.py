"""Scale of the Ray paper runtime (issue 4, item 7): the synthetic market with many symbols.

    RAY_AUTH_MODE=disabled .venv/bin/python bench/bench_scale.py [--symbols 10 100 500]
        [--minutes N] [--realtime-minutes 3] [--realtime-symbols 100 500] [--shards N]
        [--profile] [--quick]

For each symbol count (S000, S001, ...; `feed.kind = "synthetic"`, config.json otherwise, without
the models: bench/bench_serve.py measures the path with them) the
script starts an embedded local cluster (`ray.init(address="local", num_cpus=2,
include_dashboard=False)`), runs `actors.runtime.run_paper_on_ray` over a temporary run
directory at max speed (feed speed 0), then in real time (speed 1.0, a few minutes of event
time), and shuts the cluster down. It prints:

- start-up: `ray.init` wall time; "actors ready" = from creating the runtime to the first
  minute traded (max-speed run: it includes drawing the first 15 minutes of synthetic ticks);
- ingest: ticks delivered / `result["seconds"]` (end to end, actor start-up included) and the
  sustained rate after the first traded minute (from the feed's progress, polled every 0.2 s);
- bar close -> orders submitted latency p50 / p99 / max (`result["latencies"]`, one sample per
  traded minute; at max speed it includes the queue of minutes in flight, so the real-time
  run is the meaningful one, with few samples: 1 per minute);
- real time: whether the runtime kept up: the feed's event clock vs the wall clock (lag =
  wall time since the first event - event time since the first event, sampled with the
  progress) and whether the bar-close latency grows over the run;
- memory: the sum of the RSS of every Ray process (all child processes of this script:
  gcs_server, raylet, dashboard/agents, every `ray::` worker), peak (sampled every 0.5 s) and
  at the end of the feed run; PSS (shared pages split between processes) as well, since RSS
  counts shared pages once per process;
- CPU: the share of one core each actor process used over the feed run after start-up (the
  busiest actor is the bottleneck candidate); `--profile` also samples the feed and one
  candle shard with py-spy for 10 s in the max-speed run and splits their time by category;
- the load average (1/5/15 min, os.getloadavg()) at the end of every run, next to its figures:
  on a shared machine the figures measured under load are pessimistic.

At 100 symbols a paced run (`--paced-minutes 60 --paced-speed 20`: 60 event minutes, one every
3 s) gives the bar close -> orders p99 over 60 samples instead of a few; the per-minute work is
a live minute's, only the ticks of each minute arrive 20x denser. The p99 target is judged on
it when it ran.

`--quick`: 10 symbols, 20 event minutes at max speed and 1 in real time (~2 minutes idle,
longer under load). A full run (defaults) takes ~10 minutes; `--realtime-minutes 10` lengthens
the real-time runs. The feed ends 2 s of event time after its last tick (`max_quiet_s = 2`).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from common import machine_info

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3

# Targets of issue 4, item 7.
TARGET_REALTIME_SYMBOLS = 500
TARGET_MEMORY_BYTES = 8 * GIB
TARGET_P99_SYMBOLS = 100
TARGET_P99_S = 0.100
TARGET_INGEST = 100_000

# Real time "kept up": the feed's event clock at most this far behind the wall clock, and the
# bar-close latency at the end at most this much above the first minutes' median.
MAX_LAG_S = 1.0
LATENCY_GROWTH_S = 0.25


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


# ------------------------------------------------------------------------------ sampling


class RayProcesses:
    """Samples the Ray processes (every child of this script) in a thread: memory and CPU.

    `peak_rss` / `peak_pss` in bytes; `latest` is the newest sample (time, rss, pss,
    {pid: (label, cpu seconds)}); the caller keeps the samples it needs (start, end)."""

    def __init__(self, period: float = 0.5, pss_every: int = 4):
        self.period = period
        self.pss_every = pss_every
        self.peak_rss = 0
        self.peak_pss = 0
        self.labels: dict[int, str] = {}
        self.latest: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._pss = 0
        self._n = 0

    @staticmethod
    def _label(cmd0: str, name: str) -> str:
        if cmd0.startswith("ray::"):  # an actor's process title is ray::Class.method while it runs
            return cmd0[5:].split(".", 1)[0].strip() or "IDLE"
        return name

    def sample(self) -> dict[str, Any]:
        me = psutil.Process(os.getpid())
        rss = pss = 0
        cpu: dict[int, tuple[str, float]] = {}
        with_pss = self._n % self.pss_every == 0
        self._n += 1
        for p in me.children(recursive=True):
            try:
                with p.oneshot():
                    name = p.name()
                    if name.startswith("py-spy"):
                        continue
                    cmd = p.cmdline()
                    label = self._label(cmd[0] if cmd else "", name)
                    if label != "IDLE" or p.pid not in self.labels:
                        self.labels[p.pid] = label
                    mem = p.memory_full_info() if with_pss else p.memory_info()
                    rss += mem.rss
                    if with_pss:
                        pss += mem.pss
                    t = p.cpu_times()
                    cpu[p.pid] = (self.labels[p.pid], t.user + t.system)
            except psutil.Error:
                continue
        if with_pss:
            self._pss = pss
            self.peak_pss = max(self.peak_pss, pss)
        self.peak_rss = max(self.peak_rss, rss)
        s = {"t": time.perf_counter(), "rss": rss, "pss": self._pss, "cpu": cpu}
        self.latest = s
        return s

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.period)

    def __enter__(self) -> RayProcesses:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def cpu_shares(start: dict[str, Any] | None, end: dict[str, Any] | None) -> dict[str, list[float]]:
    """Per actor class: the share of one core each of its processes used between two samples."""
    out: dict[str, list[float]] = {}
    if not start or not end or end["t"] <= start["t"]:
        return out
    dt = end["t"] - start["t"]
    for pid, (label, c1) in end["cpu"].items():
        # the actors' processes and Ray's two daemons (the dashboard/agent processes are idle)
        if (
            pid in start["cpu"]
            and label != "IDLE"
            and (label[:1].isupper() or label in ("raylet", "gcs_server"))
        ):
            out.setdefault(label, []).append((c1 - start["cpu"][pid][1]) / dt)
    return {k: sorted(v, reverse=True) for k, v in out.items()}


def fmt_cpu(shares: dict[str, list[float]], top: int = 6) -> str:
    items = sorted(shares.items(), key=lambda kv: -max(kv[1]))[:top]
    return ", ".join(f"{k} {'/'.join(f'{x:.0%}' for x in v)}" for k, v in items) or "-"


# ------------------------------------------------------------------------------ profile

CATEGORIES = (
    ("waiting (ray.get / idle)", None),
    ("Ray (de)serialisation of call arguments and results", ("serialization.py", "cloudpickle")),
    ("bar store writes (CandleShard.persist)", ("CandleShard.persist", "scalper/store.py")),
    ("synthetic feed (drawing ticks, batching)", ("scalper/feeds/",)),
    ("domain (candles, indicators, strategies, risk, orders)", ("scalper/",)),
)
IDLE_LEAVES = ("Condition.wait", "Worker.main_loop", "Worker.get_objects", "wait (threading.py", "select")


def categorize(stack: str) -> str:
    frames = stack.split(";")
    leaf = frames[-1] if frames else ""
    if not leaf or any(x in leaf for x in IDLE_LEAVES):
        return CATEGORIES[0][0]
    for name, marks in CATEGORIES[1:]:
        if any(m in f for f in frames for m in marks):
            return name
    return "other (Ray core, Python)"


def profile(pids: dict[str, int], seconds: float = 10.0, rate: int = 20) -> dict[str, Counter] | None:
    """py-spy record of the given processes (label -> pid), samples split by category."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return None
    with tempfile.TemporaryDirectory() as d:
        procs = {
            label: subprocess.Popen(
                [
                    exe,
                    "record",
                    "-d",
                    str(int(seconds)),
                    "-r",
                    str(rate),
                    "-f",
                    "raw",
                    "-o",
                    f"{d}/{label}.txt",
                    "-p",
                    str(pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for label, pid in pids.items()
        }
        out: dict[str, Counter] = {}
        for label, proc in procs.items():
            try:
                proc.wait(timeout=seconds + 20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            path = Path(d) / f"{label}.txt"
            if not path.exists():
                continue
            c: Counter = Counter()
            for line in path.read_text().splitlines():
                stack, _, n = line.rpartition(" ")
                if n.isdigit():
                    c[categorize(stack)] += int(n)
            out[label] = c
    return out


def fmt_profile(prof: dict[str, Counter]) -> list[str]:
    lines = []
    for label, c in prof.items():
        total = sum(c.values()) or 1
        parts = ", ".join(f"{k} {v / total:.0%}" for k, v in c.most_common())
        lines.append(f"{label}: {parts}")
    return lines


# ------------------------------------------------------------------------------ one run


def make_cfg(symbols: int, minutes: int, speed: float):
    from scalper.config import load as load_config
    from scalper.config import with_overrides

    return with_overrides(
        load_config(ROOT / "config.json"),
        {
            # the runtime alone: config.json turns the models on, bench_serve.py measures them
            "ml.enabled": False,
            "symbols": [f"S{i:03d}" for i in range(symbols)],
            "feed.kind": "synthetic",
            "feed.synthetic.minutes": minutes,
            "feed.synthetic.speed": speed,
            # the feed ends max_quiet_s of event time after its last tick (so the last bar can
            # close): 120 s by default, i.e. 2 idle minutes at the end of a real-time run
            "feed.synthetic.max_quiet_s": 2.0,
        },
    )


def one_run(
    symbols: int, minutes: int, speed: float, shards: int | None, want_profile: bool
) -> dict[str, Any]:
    from actors.runtime import run_paper_on_ray

    cfg = make_cfg(symbols, minutes, speed)
    samples: list[tuple[float, int, int, int | None, int | None]] = []  # t, ticks, minutes, clock, first
    st: dict[str, Any] = {"ready": None, "start": None, "end": None, "profile": None}
    prof_thread: threading.Thread | None = None

    with RayProcesses() as mon, tempfile.TemporaryDirectory(prefix="bench-scale-") as run_dir:

        def on_progress(p: dict[str, Any]) -> None:
            nonlocal prof_thread
            now = time.perf_counter()
            samples.append((now, p["ticks"], p["minutes"], p.get("clock_ns"), p.get("first_event_ns")))
            st["end"] = mon.latest
            if st["ready"] is None and p["minutes"] >= 1:
                st["ready"] = (now, p["ticks"])
                st["start"] = mon.sample()
                if want_profile and prof_thread is None:
                    pids = {}
                    for pid, label in mon.labels.items():
                        if label in ("FeedActor", "CandleShard") and label not in pids:
                            pids[label] = pid
                    prof_thread = threading.Thread(
                        target=lambda: st.__setitem__("profile", profile(pids)), daemon=True
                    )
                    prof_thread.start()

        t0 = time.perf_counter()
        res = run_paper_on_ray(cfg, Path(run_dir), shards=shards, on_progress=on_progress, poll_s=0.2)
        t_done = time.perf_counter()
        if prof_thread is not None:
            prof_thread.join()
    feed = res["feed"]
    lat = np.asarray(res["latencies"], dtype=float)
    out: dict[str, Any] = {
        "symbols": symbols,
        "minutes": minutes,
        "speed": speed,
        "shards": len(res["shards"]),
        "ticks": feed["ticks"],
        "minutes_traded": feed["minutes"],
        "bars": feed["bars"],
        "actor_calls": feed["actor_calls"],
        "seconds": res["seconds"],
        "orders": len(res["execution"].orders.orders),
        "fills": len(res["execution"].fills),
        "latencies": lat,
        "peak_rss": mon.peak_rss,
        "peak_pss": mon.peak_pss,
        "end_rss": (st["end"] or mon.latest)["rss"],
        "cpu": cpu_shares(st["start"], st["end"]),
        "profile": st["profile"],
        "load": load(),
        "wall": t_done - t0,
    }
    if st["ready"] is not None:
        t_ready, ticks_ready = st["ready"]
        out["ready_s"] = t_ready - t0
        t_last, ticks_last = samples[-1][0], samples[-1][1]
        # the last progress poll before the feed ended, and the feed's own final count
        out["sustained"] = (ticks_last - ticks_ready) / (t_last - t_ready) if t_last > t_ready else None
    else:
        out["ready_s"] = None
        out["sustained"] = None
    # real time: how far the event clock is behind the wall clock (0 = on time)
    anchors = [(t - (clock - first) / 1e9) for t, _, _, clock, first in samples if clock and first]
    if anchors:
        a0 = min(anchors)
        out["lag_max"] = max(anchors) - a0
        out["lag_end"] = anchors[-1] - a0
        out["feed_wall"] = samples[-1][0] - a0
    else:
        out["lag_max"] = out["lag_end"] = out["feed_wall"] = None
    return out


def pct(lat: np.ndarray) -> tuple[float, float, float] | None:
    if not len(lat):
        return None
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), float(lat.max())


def fmt_lat(lat: np.ndarray) -> str:
    p = pct(lat)
    if p is None:
        return "no minute traded"
    return f"{p[0] * 1e3:,.0f} / {p[1] * 1e3:,.0f} / {p[2] * 1e3:,.0f} ms (n={len(lat)})"


def kept_up(r: dict[str, Any]) -> tuple[bool, str]:
    """Real time kept: event clock never more than MAX_LAG_S behind, latency not growing."""
    lat = r["latencies"]
    why = []
    if r["lag_max"] is None:
        return False, "no progress sample"
    if r["lag_max"] > MAX_LAG_S:
        why.append(f"event clock up to {r['lag_max']:.1f} s behind the wall clock")
    if len(lat) >= 2:
        head = float(np.median(lat[: max(1, len(lat) // 2)]))
        if lat[-1] > head + LATENCY_GROWTH_S:
            why.append(f"latency grew from {head * 1e3:.0f} ms to {lat[-1] * 1e3:.0f} ms")
    if r["minutes_traded"] < r["minutes"]:
        why.append(f"{r['minutes_traded']} of {r['minutes']} minutes traded")
    return (not why), "; ".join(why)


def auto_minutes(symbols: int) -> int:
    """Event minutes at max speed: ~150k ticks (60 ticks/min/symbol, x~1.5 at 00:00 UTC) per run."""
    return max(5, min(150, math.ceil(1500 / symbols)))


# ------------------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, nargs="+", default=[10, 100, 500])
    ap.add_argument(
        "--minutes",
        type=int,
        default=None,
        help="event minutes of the max-speed runs (default: ~150k ticks, 5..150 minutes)",
    )
    ap.add_argument(
        "--realtime-minutes", type=int, default=3, help="event minutes of the real-time runs (0 = none)"
    )
    ap.add_argument(
        "--realtime-symbols",
        type=int,
        nargs="*",
        default=None,
        help="symbol counts that get a real-time run (default: those with a target, 100 and 500, "
        "or every count given with --symbols when neither is in it)",
    )
    ap.add_argument(
        "--shards", type=int, default=None, help='candle shards (default: ray.candle_shards, "auto" = CPUs)'
    )
    ap.add_argument(
        "--profile", action="store_true", help="py-spy the feed and a shard for 10 s at max speed"
    )
    ap.add_argument(
        "--paced-minutes",
        type=int,
        default=60,
        help="event minutes of the paced latency run at 100 symbols (0 = none): enough samples for a p99",
    )
    ap.add_argument(
        "--paced-speed",
        type=float,
        default=20.0,
        help="its feed speed (x real time; 20 = a minute every 3 s)",
    )
    ap.add_argument("--quick", action="store_true", help="10 symbols, 20 + 1 event minutes")
    args = ap.parse_args()
    if args.quick:
        args.symbols = [10]
        args.minutes = args.minutes or 20
        args.realtime_minutes = min(args.realtime_minutes, 1)
        args.realtime_symbols = [10]
        args.paced_minutes = 0
    if args.realtime_symbols is None:
        targeted = [n for n in args.symbols if n in (TARGET_P99_SYMBOLS, TARGET_REALTIME_SYMBOLS)]
        args.realtime_symbols = targeted or list(args.symbols)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # every actor warns about ray's deprecated was_current_actor_reconstructed otherwise
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    import ray

    command = "RAY_AUTH_MODE=disabled .venv/bin/python bench/bench_scale.py " + " ".join(sys.argv[1:])
    print(f"load average before: {load()}", flush=True)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for n in args.symbols:
        row: dict[str, Any] = {"symbols": n}
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
        try:
            row["init_s"] = time.perf_counter() - t0
            row["init_load"] = load()
            mins = args.minutes or auto_minutes(n)
            print(
                f"[{time.perf_counter() - started:5.0f} s] {n} symbols: max speed, {mins} event minutes ...",
                flush=True,
            )
            row["max"] = one_run(n, mins, 0.0, args.shards, args.profile)
            if args.realtime_minutes > 0 and n in args.realtime_symbols:
                print(
                    f"[{time.perf_counter() - started:5.0f} s] {n} symbols: real time, "
                    f"{args.realtime_minutes} event minutes ...",
                    flush=True,
                )
                row["rt"] = one_run(n, args.realtime_minutes, 1.0, args.shards, False)
            if args.paced_minutes > 0 and n == TARGET_P99_SYMBOLS:
                print(
                    f"[{time.perf_counter() - started:5.0f} s] {n} symbols: paced, {args.paced_speed:g}x real "
                    f"time, {args.paced_minutes} event minutes ...",
                    flush=True,
                )
                row["paced"] = one_run(n, args.paced_minutes, args.paced_speed, args.shards, False)
                row["paced_speed"] = args.paced_speed
        finally:
            ray.shutdown()
        rows.append(row)
    total = time.perf_counter() - started
    report(rows, args, command, total)


def report(rows: list[dict[str, Any]], args, command: str, total: float) -> None:
    print(f"\n### Scale: Ray paper runtime on the synthetic market, {machine_info()}\n")
    print(f"`{command.strip()}` (total {total:.0f} s; load average = 1/5/15 min at the end of each run)\n")
    print("Start-up and max speed (feed speed 0):\n")
    print(
        "| symbols | shards | ray.init | actors ready (1st minute traded) | event min | ticks | wall "
        "| ingest ticks/s (end to end / sustained) | bar close -> orders p50 / p99 / max | orders | "
        "Ray memory peak RSS (PSS) / at end RSS | busiest actors (CPU of one core) | load avg |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- |")
    for row in rows:
        r = row["max"]
        ready = f"{r['ready_s']:.1f} s" if r["ready_s"] is not None else "never"
        sustained = f"{r['sustained']:,.0f}" if r["sustained"] else "-"
        print(
            f"| {r['symbols']} | {r['shards']} | {row['init_s']:.1f} s (load {row['init_load']}) | {ready} "
            f"| {r['minutes_traded']}/{r['minutes']} | {r['ticks']:,} | {r['seconds']:.1f} s "
            f"| {r['ticks'] / r['seconds']:,.0f} / {sustained} | {fmt_lat(r['latencies'])} | {r['orders']:,} "
            f"| {r['peak_rss'] / GIB:.2f} ({r['peak_pss'] / GIB:.2f}) / {r['end_rss'] / GIB:.2f} GiB "
            f"| {fmt_cpu(r['cpu'], 4)} | {r['load']} |"
        )
    rt_rows = [row for row in rows if "rt" in row]
    if rt_rows:
        print("\nReal time (feed speed 1.0):\n")
        print(
            "| symbols | shards | event min | ticks | feed wall (from 1st event) | event clock lag max / end "
            "| bar close -> orders p50 / p99 / max | per minute | kept up | orders "
            "| Ray memory peak RSS (PSS) / at end RSS | busiest actors (CPU of one core) | load avg |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | --- | --- |")
        for row in rt_rows:
            r = row["rt"]
            ok, why = kept_up(r)
            per_min = " ".join(f"{x * 1e3:.0f}" for x in r["latencies"][:12]) + (
                " ..." if len(r["latencies"]) > 12 else ""
            )
            lag = f"{r['lag_max']:.2f} / {r['lag_end']:.2f} s" if r["lag_max"] is not None else "-"
            fw = f"{r['feed_wall']:.1f} s" if r["feed_wall"] is not None else "-"
            print(
                f"| {r['symbols']} | {r['shards']} | {r['minutes_traded']}/{r['minutes']} | {r['ticks']:,} | {fw} "
                f"| {lag} | {fmt_lat(r['latencies'])} | {per_min} ms | {'yes' if ok else 'NO: ' + why} | {r['orders']:,} "
                f"| {r['peak_rss'] / GIB:.2f} ({r['peak_pss'] / GIB:.2f}) / {r['end_rss'] / GIB:.2f} GiB "
                f"| {fmt_cpu(r['cpu'], 4)} | {r['load']} |"
            )
    for row in rows:
        if "paced" in row:
            r = row["paced"]
            print(
                f"\nPaced latency run: {r['symbols']} symbols, {r['shards']} shards, feed at "
                f"{row['paced_speed']:g}x real time (a minute every {60 / row['paced_speed']:.0f} s: far more "
                f"than a minute's work, so no queue builds; each minute's ticks arrive {row['paced_speed']:g}x "
                f"denser than live), {r['minutes_traded']}/{r['minutes']} minutes: bar close -> orders "
                f"{fmt_lat(r['latencies'])}, {r['orders']:,} orders, load {r['load']}"
            )
    profiled = [row for row in rows if row["max"].get("profile")]
    if profiled:
        print("\npy-spy, 10 s of the max-speed run after the first minute (share of samples):\n")
        for row in profiled:
            for line in fmt_profile(row["max"]["profile"]):
                print(f"- {row['symbols']} symbols, {line}")
    print("\nTargets (issue 4):\n")
    for line in targets(rows):
        print(f"- {line}")
    print(
        "\nNotes: one latency sample per traded minute (bar close = the feed shipping the batch that "
        "closes the minute; orders submitted = trading-service.submit returned), so a real-time run "
        "of a few minutes gives only a few samples and its p99 is about its max. At max speed the "
        "feed runs up to 64 minutes ahead of the trading service, so latency there measures the "
        "queue. Memory: RSS counts shared pages (Ray's object store, shared libraries) once per "
        "process; PSS splits them. The bench process itself is not counted. The machine has 2 "
        "cores shared with other jobs: figures taken with a load average above 2 are pessimistic."
    )


def targets(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    by_n = {row["symbols"]: row for row in rows}
    # 1. 500 symbols in real time within 8 GB
    row = by_n.get(TARGET_REALTIME_SYMBOLS)
    if row is None or "rt" not in row:
        out.append(f"{TARGET_REALTIME_SYMBOLS} symbols in real time within 8 GB: not measured in this run")
    else:
        r = row["rt"]
        ok, why = kept_up(r)
        peak = max(r["peak_rss"], row["max"]["peak_rss"])
        mem_ok = peak <= TARGET_MEMORY_BYTES
        met = ok and mem_ok
        out.append(
            f"{TARGET_REALTIME_SYMBOLS} symbols in real time within 8 GB: **{'met' if met else 'NOT met'}** "
            f"(kept up: {'yes' if ok else 'no, ' + why}; peak Ray RSS {peak / GIB:.2f} GiB "
            f"{'<=' if mem_ok else '>'} 8 GiB; {r['minutes']} event minutes only, load {r['load']})"
        )
    # 2. p99 bar close -> order <= 100 ms at 100 symbols
    row = by_n.get(TARGET_P99_SYMBOLS)
    if row is None:
        out.append(
            f"p99 bar close -> order <= 100 ms at {TARGET_P99_SYMBOLS} symbols: not measured in this run"
        )
    else:
        r = row.get("paced") or row.get("rt") or row["max"]
        kind = (
            f"paced at {row['paced_speed']:g}x real time"
            if "paced" in row
            else "real time"
            if "rt" in row
            else "max speed (no real-time run)"
        )
        p = pct(r["latencies"])
        if p is None:
            out.append(f"p99 bar close -> order <= 100 ms at {TARGET_P99_SYMBOLS} symbols: no minute traded")
        else:
            met = p[1] <= TARGET_P99_S
            why = (
                ""
                if met
                else (
                    "; the latency includes the shard call that closes the minute and the "
                    "on_minute -> strategies -> risk -> submit chain, each a Ray call (~1 ms+ each when idle, "
                    "far more when the 2 cores are busy)"
                )
            )
            out.append(
                f"p99 bar close -> order <= 100 ms at {TARGET_P99_SYMBOLS} symbols ({kind}): "
                f"**{'met' if met else 'NOT met'}**: p99 {p[1] * 1e3:.0f} ms over {len(r['latencies'])} minutes "
                f"(p50 {p[0] * 1e3:.0f} ms, load {r['load']}){why}"
            )
    # 3. ingest >= 100,000 ticks/s
    best = max(rows, key=lambda row: row["max"]["sustained"] or 0)
    r = best["max"]
    s = r["sustained"] or 0
    met = s >= TARGET_INGEST
    why = ""
    if not met and r["cpu"]:
        busiest = max(r["cpu"].items(), key=lambda kv: max(kv[1]))
        why = (
            f"; busiest actor {busiest[0]} at {max(busiest[1]):.0%} of a core "
            f"(all Ray processes {sum(sum(v) for v in r['cpu'].values()):.0%} of the 2 cores' 200%)"
        )
        for label, c in (r.get("profile") or {}).items():
            busy = [(k, v) for k, v in c.most_common() if not k.startswith("waiting")]
            if busy:
                total = sum(c.values()) or 1
                why += (
                    f"; {label} (py-spy): {c[CATEGORIES[0][0]] / total:.0%} waiting, busiest in "
                    f"{busy[0][0]} ({busy[0][1] / total:.0%})"
                )
    out.append(
        f"ingest >= 100,000 ticks/s: **{'met' if met else 'NOT met'}**: best sustained "
        f"{s:,.0f} ticks/s at {r['symbols']} symbols, {r['shards']} shard(s) "
        f"(end to end {r['ticks'] / r['seconds']:,.0f}, load {r['load']}){why}"
    )
    return out


if __name__ == "__main__":
    main()
