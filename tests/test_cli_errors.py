"""The command line turns file-system problems into one line naming the path (no traceback)."""

from __future__ import annotations

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
