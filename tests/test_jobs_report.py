"""The report of a combined --parallel/--grid backtest: the jobs compared on one offline page."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import grid_of_four_jobs

from scalper import backtest as bt
from scalper import cli
from scalper.config import Config
from scalper.jobs_report import equity_by_job, is_combined, read_jobs, write_jobs_report


class _Tables(HTMLParser):
    """Ids of the page's elements and the number of body rows of each table."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.rows: dict[str, int] = {}
        self._table: str | None = None
        self._in_body = False
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "table":
            self._table = a.get("id")
            self.rows[self._table] = 0
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.rows[self._table] += 1
        if tag in ("script", "link", "img") and str(a.get("src") or a.get("href") or "").startswith("http"):
            self.external.append(str(a))

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False


@pytest.fixture(scope="module")
def combined(tmp_path_factory) -> tuple[Path, list[bt.JobResult], Config]:
    cfg, jobs = grid_of_four_jobs()
    results = [bt.run_job(cfg, job) for job in jobs]  # what the Ray tasks return, in process
    out = tmp_path_factory.mktemp("jobs") / "out"
    bt.write_combined(results, str(out), wall_seconds=1.0, cfg=cfg)
    return out, results, cfg


def test_the_jobs_report_holds_every_job_and_trade_on_an_offline_page(combined):
    out, results, _ = combined
    files = write_jobs_report(out)
    page = Path(files.html).read_text()
    parsed = _Tables()
    parsed.feed(page)
    assert {"jobs-scatter", "jobs-equity", "jobs", "by-strategy", "by-symbol", "trades"} <= parsed.ids
    assert parsed.rows["jobs"] == len(results) == 4
    n_trades = sum(len(r.trades) for r in results)
    assert n_trades > 0 and parsed.rows["trades"] == n_trades
    assert parsed.external == []  # plotly.js is inlined: no script, style or image from the network
    assert Path(files.png).stat().st_size > 10_000
    assert "strategies.momentum.stop_atr=2.0" in page  # each job's overrides are named


def test_each_jobs_equity_starts_at_the_starting_equity_and_ends_with_its_net_pnl(combined):
    out, results, cfg = combined
    curves = equity_by_job(read_jobs(out))
    assert set(curves) == {r.job.name for r in results if r.trades}
    for r in results:
        ts, eq = curves[r.job.name]
        assert eq[0] == cfg.risk.starting_equity
        assert eq[-1] == pytest.approx(cfg.risk.starting_equity + sum(t.pnl for t in r.trades))
        assert len(eq) == len(r.trades) + 1 and np.all(np.diff(ts) >= 0)


def test_report_command_on_a_combined_result_writes_the_jobs_page_and_verify_says_why_not(combined, capsys):
    out, _, _ = combined
    assert is_combined(out) and json.loads((out / "config.json").read_text())["risk"]
    assert cli.main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out / "report.html")
    assert cli.main(["verify", str(out)]) == 3
    assert "combined --parallel/--grid result" in capsys.readouterr().err


def test_a_combined_result_without_trades_still_gets_a_report(combined, tmp_path):
    out, _, _ = combined
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("summary.json", "config.json"):
        (empty / name).write_bytes((out / name).read_bytes())
    pd.read_parquet(out / "trades.parquet").iloc[:0].to_parquet(empty / "trades.parquet", index=False)
    files = write_jobs_report(empty)
    assert Path(files.html).exists() and Path(files.png).exists()
