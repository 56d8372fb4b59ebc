"""The command line turns file-system problems into one line naming the path (no traceback)."""

from __future__ import annotations

import pytest

from scalper import cli


def test_an_output_path_that_cannot_be_created_is_one_line_and_exit_3(tmp_path, capsys, rules_only_config):
    a_file = tmp_path / "taken"
    a_file.write_text("not a directory")
    code = cli.main(
        ["backtest", "--config", rules_only_config, "--to", "2013-09-02", "--out", str(a_file / "run")]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert "Not a directory" in err and str(a_file / "run") in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["backtest", "run"])
def test_models_missing_from_the_registry_are_one_line_naming_each_and_one_way_to_train_them(
    command, tmp_path, capsys, monkeypatch
):
    from conftest import shipped_config

    empty = tmp_path / "empty-registry"
    empty.mkdir()
    config = shipped_config(tmp_path, enabled=True, registry=str(empty))
    monkeypatch.chdir(tmp_path)  # store.runs_dir "runs" is relative
    try:
        code = cli.main(["--config", config, command])
    except SystemExit as stop:
        code = stop.code
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for part in (
        "validator: no model",
        "regime: no model",
        "sizer: no model",
        "scalper train all --bootstrap",
    ):
        assert part in err[0], (part, err[0])
    assert not (tmp_path / "runs").exists()  # nothing started, nothing written
