"""Many backtests as Ray tasks give exactly the in-process results; bad grids start nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalper import backtest as bt
from scalper import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.ray
def test_parallel_jobs_on_ray_equal_the_same_jobs_run_in_process(ray_cluster, tmp_path):
    from conftest import grid_of_four_jobs

    from actors.backtests import run_jobs

    cfg, jobs = grid_of_four_jobs()
    assert [j.name for j in jobs] == ["AAA#0", "BBB#0", "AAA#1", "BBB#1"]
    results, _ = run_jobs(cfg, jobs, progress=False)
    assert [r.job for r in results] == jobs
    for r in results:
        local = bt.run_job(cfg, r.job)
        assert r.trades == local.trades
        assert r.summary["trade_fingerprint"] == local.summary["trade_fingerprint"]
    # the grid changed the momentum stops, so the parameter sets differ
    assert results[0].summary["trade_fingerprint"] != results[2].summary["trade_fingerprint"]
    summary = bt.write_combined(results, str(tmp_path / "out"), wall_seconds=1.0)
    assert summary["jobs"] == 4 and summary["trades"] == sum(len(r.trades) for r in results)
    assert (tmp_path / "out" / "jobs.csv").exists()


def test_a_bad_grid_value_is_refused_before_anything_starts(tmp_path, capsys, rules_only_config):
    out = tmp_path / "out"
    args = ["backtest", "--config", rules_only_config, "--synthetic", "--out", str(out)]
    assert cli.main([*args, "--grid", "risk.risk_per_trade_pct=0.5,50"]) == 2
    assert "risk.risk_per_trade_pct: expected a number <= 10.0, got 50" in capsys.readouterr().err
    assert cli.main([*args, "--grid", "risk.nope=1"]) == 2
    assert not out.exists()


@pytest.mark.ray
def test_a_parallel_backtest_ends_with_the_jobs_report_and_prints_its_path(
    ray_cluster, tmp_path, capsys, rules_only_config
):
    out = tmp_path / "out"
    args = ["backtest", "--config", rules_only_config, "--synthetic", "--symbols", "AAA", "BBB"]
    assert cli.main([*args, "--parallel", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed
    assert {"report.html", "equity.png", "config.json", "jobs.csv"} <= {p.name for p in out.iterdir()}
