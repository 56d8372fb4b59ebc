"""Ctrl-C during an in-process `scalper run` keeps what was traded and writes the run."""

from __future__ import annotations

import json

import msgspec

from scalper import feeds, pipeline
from scalper.config import Config, default_document
from scalper.verify import verify_run


def interrupted_after(events: int, tmp_path, monkeypatch) -> Config:
    """The rules-only config writing runs under tmp_path, with a feed that raises Ctrl-C
    (KeyboardInterrupt) when it reaches its event number `events`."""
    doc = default_document()
    doc["ml"]["enabled"] = False
    doc["store"]["runs_dir"] = str(tmp_path)
    real = feeds.make_feed

    def cut_feed(cfg, **kw):
        def cut():
            for k, event in enumerate(real(cfg, **kw)):
                if k == events:
                    raise KeyboardInterrupt
                yield event

        return cut()

    monkeypatch.setattr(feeds, "make_feed", cut_feed)
    return msgspec.convert(doc, Config)


def test_ctrl_c_in_process_writes_the_run_of_the_minutes_closed_before_it(tmp_path, monkeypatch):
    cfg = interrupted_after(300_000, tmp_path, monkeypatch)  # about two thirds of the bundled replay
    summary = pipeline.run(cfg, run_id="cut", progress=False)
    run_dir = tmp_path / "cut"
    assert summary["interrupted"] is True
    assert json.loads((run_dir / "summary.json").read_text())["interrupted"] is True
    assert 0 < summary["bars_out"] < 2264 and summary["trading"]["signals"] > 0
    for name in ("trades.csv", "signals.parquet", "orders.parquet", "equity.parquet", "ledger.sqlite"):
        assert (run_dir / name).exists(), name
    assert verify_run(str(run_dir)).ok
    assert "interrupted (Ctrl-C)" in pipeline.format_summary(summary)
    assert "state/" not in pipeline.format_summary(summary)  # no actors, no recovery state


def test_a_run_stopped_before_its_first_minute_skips_verify_with_a_line_and_still_reports(
    tmp_path, monkeypatch, capsys
):
    from scalper.cli_report import after_run

    cfg = interrupted_after(20, tmp_path, monkeypatch)
    summary = pipeline.run(cfg, run_id="early", progress=False)
    assert summary["bars_out"] == 0
    assert after_run(summary["run_dir"]) == 0  # was a RunDirError traceback from verify
    out = capsys.readouterr().out
    assert "verify: skipped: the run closed no minute" in out and "report:" in out
