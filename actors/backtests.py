"""Many backtests in parallel as Ray tasks (symbols x parameter sets), with a progress bar.

The work itself is `scalper.backtest.run_job`; this module only schedules it. On a cluster
every node needs the data path (or use --synthetic / the bar store on s3://).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import ray

from scalper.backtest import BacktestJob, JobResult, run_job
from scalper.config import Config

log = logging.getLogger(__name__)


@ray.remote(num_cpus=1)
def _backtest_task(cfg: Config, job: BacktestJob) -> JobResult:
    return run_job(cfg, job)


def ensure_ray(cfg: Config) -> str:
    """Attach to the configured cluster, or to the one running this process as a Ray job
    (RAY_ADDRESS is set there), or start an embedded local one (no-op if connected). Returns
    the cluster's GCS address (what `ray status --address` and the dashboard take)."""
    if ray.is_initialized():
        return ray.get_runtime_context().gcs_address
    if cfg.ray.address:
        ray.init(address=cfg.ray.address, logging_level=logging.WARNING)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)  # inside `ray job submit`: the job's cluster
    else:
        ray.init(
            address="local",
            num_cpus=cfg.ray.num_cpus,
            include_dashboard=cfg.ray.include_dashboard,
            logging_level=logging.WARNING,
        )
    return ray.get_runtime_context().gcs_address


def run_jobs(
    cfg: Config, jobs: Sequence[BacktestJob], progress: bool = True
) -> tuple[list[JobResult], float]:
    """Run every job as a Ray task; returns (results in job order, wall seconds)."""
    ensure_ray(cfg)
    t0 = time.perf_counter()
    cfg_ref = ray.put(cfg)
    refs = [_backtest_task.remote(cfg_ref, job) for job in jobs]
    order = {ref: i for i, ref in enumerate(refs)}
    results: list[JobResult | None] = [None] * len(refs)
    pending = list(refs)
    bar = _Progress(progress, len(refs))
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                result = ray.get(ref)
                results[order[ref]] = result
                bar.advance(result)
    finally:
        bar.stop()
    return [r for r in results if r is not None], time.perf_counter() - t0


class _Progress:
    def __init__(self, enabled: bool, total: int):
        self._bar = None
        if not enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("backtests"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("backtests", total=total, last="")

    def advance(self, result: JobResult) -> None:
        if self._bar is not None:
            trades = result.summary["overall"]["trades"]
            self._bar.update(self._task, advance=1, last=f"{result.job.name}: {trades} trades")

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
