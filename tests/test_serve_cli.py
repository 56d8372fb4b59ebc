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


def _default_config(tmp_path: Path) -> str:
    from scalper.config import default_document

    path = tmp_path / "config.json"
    path.write_bytes(msgspec.json.encode(default_document()))
    return str(path)


def test_serve_with_an_empty_registry_is_refused_before_any_cluster_starts(tmp_path, capsys, monkeypatch):
    import actors.backtests

    def no_cluster(cfg):
        raise AssertionError("a cluster was started for an empty registry")

    monkeypatch.setattr(actors.backtests, "ensure_ray", no_cluster)
    code = cli.main(["serve", "--config", _default_config(tmp_path), "--registry", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert "model 'validator' version 'latest' not found" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("reload", [False, True])
def test_serve_on_a_corrupt_model_file_is_one_line_naming_it(tmp_path, capsys, monkeypatch, reload):
    from test_ml_bootstrap import _corrupt, _real_registry

    import actors.backtests
    from scalper.config import Config

    monkeypatch.setattr(actors.backtests, "ensure_ray", lambda cfg: pytest.fail("a cluster was started"))
    _real_registry(tmp_path / "models", Config())
    path = tmp_path / "models" / "regime" / "v0001" / "model.ubj"
    _corrupt(path)
    argv = ["serve", "--config", _default_config(tmp_path), "--registry", str(tmp_path / "models")]
    code = cli.main(argv + (["--reload"] if reload else []))
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT
    assert err.startswith(f"scalper serve: model regime v0001: cannot load {path}: ")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.ray
def test_ensure_ray_gives_the_address_serve_prints(ray_cluster):
    """`scalper serve` prints where the model app runs from `ensure_ray`'s answer (scalper/
    itself does not import ray)."""
    import ray

    from actors.backtests import ensure_ray
    from scalper.config import Config

    address = ensure_ray(Config())
    assert address and address == ray.get_runtime_context().gcs_address
