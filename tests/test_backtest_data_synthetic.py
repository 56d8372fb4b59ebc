"""`scalper backtest` without --data follows feed.kind: with "synthetic" it backtests the
configured symbols on the bars the CandleManager makes of the synthetic ticks, the bars (and
so the trades) of `scalper run` on the same config; --synthetic keeps drawing bars directly."""

from __future__ import annotations

import json

import msgspec
import pandas as pd
import pytest

from scalper import backtest as bt
from scalper import cli, pipeline
from scalper.config import Config, default_document


@pytest.fixture
def synthetic_config(tmp_path) -> tuple[Config, str]:
    doc = default_document()
    doc["feed"]["kind"] = "synthetic"
    doc["symbols"] = ["AAA", "BBB"]
    doc["feed"]["synthetic"]["minutes"] = 600
    doc["ml"]["enabled"] = False
    doc["risk"].update(cooldown_bars=0)
    doc["store"]["runs_dir"] = str(tmp_path / "runs")
    path = tmp_path / "synthetic.json"
    path.write_text(json.dumps(doc))
    return msgspec.convert(doc, Config), str(path)


def test_backtest_follows_feed_kind_synthetic_and_trades_as_scalper_run(tmp_path, capsys, synthetic_config):
    cfg, path = synthetic_config
    out = tmp_path / "bt"
    assert cli.main(["backtest", "--config", path, "--out", str(out), "--no-verify"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["symbols"] == ["AAA", "BBB"]  # the config's symbols, not the bundled ES file
    run = pipeline.run(cfg, config_path=path, run_id="paper", progress=False)
    trading = run["trading"]
    assert summary["overall"]["trades"] == trading["overall"]["trades"] > 0
    assert summary["trade_fingerprint"] == trading["trade_fingerprint"]
    bars_bt = pd.read_parquet(out / "bars_with_indicators.parquet")
    bars_run = pd.read_parquet(tmp_path / "runs" / "paper" / "bars_with_indicators.parquet")
    cols = ["symbol", "timestamp", "open", "high", "low", "close", "volume", "trades"]
    pd.testing.assert_frame_equal(
        bars_bt[cols].sort_values(["symbol", "timestamp"]).reset_index(drop=True),
        bars_run[cols].sort_values(["symbol", "timestamp"]).reset_index(drop=True),
    )


def test_synthetic_flag_still_draws_the_bars_directly(synthetic_config):
    cfg, _ = synthetic_config
    drawn = bt.load_bars(cfg, synthetic=True)
    built = bt.load_bars(cfg, synthetic_ticks=True)
    assert list(drawn) == list(built) == ["AAA", "BBB"]
    # the same market, not the same bars: drawn OHLC are the continuous path's, built are the ticks'
    assert not drawn["AAA"][["high", "low"]].equals(built["AAA"][["high", "low"]])
