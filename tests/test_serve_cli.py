"""`scalper serve`: its help, and --reload refusing a registry version with another schema."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from scalper import cli


def test_serve_help_says_how_models_are_served(capsys):
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--reload" in out and "127.0.0.1" in out and "registry" in out


def test_serve_reload_refuses_a_latest_version_with_another_feature_list(tmp_path, capsys):
    from scalper.ml.registry import ModelCard, Registry

    class Booster:  # what Registry.save needs of an xgboost Booster
        def save_model(self, path: str) -> None:
            Path(path).write_text("{}")

    reg = Registry(tmp_path / "models")
    reg.save(Booster(), ModelCard(name="validator", kind="binary", features=["a", "b"]))
    cfg_path = tmp_path / "config.json"
    from scalper.config import default_document

    cfg_path.write_bytes(msgspec.json.encode(default_document()))
    code = cli.main(["serve", "--config", str(cfg_path), "--registry", str(reg.root), "--reload"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert "validator" in err and "feature list differs" in err
