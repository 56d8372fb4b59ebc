"""Many backtests as Ray tasks give exactly the in-process results; bad grids start nothing."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from scalper import backtest as bt
from scalper import cli
from scalper.config import Config, default_document

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.ray
def test_parallel_jobs_on_ray_equal_the_same_jobs_run_in_process(ray_cluster, tmp_path):
    from actors.backtests import run_jobs

    doc = default_document()
    doc["feed"]["synthetic"]["minutes"] = 2 * 1440
    cfg = msgspec.convert(doc, Config)
    jobs = bt.make_jobs(
        ["AAA", "BBB"],
        per_symbol=True,
        grid=[{"strategies.momentum.stop_atr": 1.0}, {"strategies.momentum.stop_atr": 2.0}],
        synthetic=True,
    )
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
