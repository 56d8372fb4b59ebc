"""`scalper collect` / `scalper train` argument handling and exit codes (no Ray)."""

from __future__ import annotations

import argparse
import json

import pytest

from scalper.cli_ml import register


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scalper")
    parser.add_argument("--config", default="config.json")
    common = argparse.ArgumentParser(add_help=False)
    sub = parser.add_subparsers(dest="command")
    register(sub, common)
    args = parser.parse_args(argv)
    return args.func(args)


def test_collect_synthetic_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    assert run(["collect", "--synthetic", "--symbols", "AAA", "--minutes", "600", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["symbols"] == ["AAA"] and manifest["signals"] > 0
    assert manifest["source"]["synthetic_minutes"] == 600
    assert "signals" in capsys.readouterr().out


def test_collect_a_missing_file_exits_3(tmp_path, capsys):
    assert run(["collect", "--data", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "ds")]) == 3
    assert "error" in capsys.readouterr().err


def test_train_without_a_dataset_exits_3(tmp_path, capsys):
    assert run(["train", "validator", "--dataset", str(tmp_path / "none")]) == 3
    assert "scalper collect" in capsys.readouterr().err


def test_train_with_zero_workers_is_a_config_error(tmp_path, capsys):
    assert run(["train", "all", "--dataset", str(tmp_path), "--workers", "0"]) == 2
    assert "train_workers" in capsys.readouterr().err


def test_bad_config_exits_2(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text('{"ml": {"label_horizon_bars": 0}}')
    with pytest.raises(SystemExit) as exc:
        run(["--config", str(bad), "collect", "--synthetic", "--out", str(tmp_path / "ds")])
    assert exc.value.code == 2
