"""cluster.yaml and docs/cluster-aws.yaml, validated OFFLINE with Ray's own checks.

`ray up` begins with two functions from ray.autoscaler._private.util, and so do these tests:
- prepare_config: merges the file with the provider's defaults.yaml (ray/autoscaler/<provider>/)
  and, for the local provider, turns head_ip / worker_ips / min_workers into Ray's single
  on-prem node type. It must run first: a raw local config has a top-level `min_workers`
  (which the schema does not allow; prepare_config moves it) and lacks defaults such as
  `cluster_synced_files` (which validate_config requires).
- validate_config: jsonschema against ray/autoscaler/ray-schema.json (unknown keys are errors)
  plus the checks Ray codes by hand (head_node_type, the sum of min_workers).
Both are dict work plus reading those two files: nothing contacts a machine. The `offline`
fixture makes that a test: any socket connect or subprocess during validation fails it. What
`ray up` does next (the provider's bootstrap: EC2/IAM calls for AWS, ssh) is never called.
No Ray cluster starts; the module takes about a second (importing ray).
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from scalper.config import validate as validate_scalper_config

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "cluster.yaml"
AWS = ROOT / "docs" / "cluster-aws.yaml"
FILES = [LOCAL, AWS]
IDS = ["cluster.yaml", "docs/cluster-aws.yaml"]
TOKEN_FILE = "~/.ray/auth_token"  # Ray's default token path (ray get-auth-token --generate)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())  # what `ray up` does with the file


@pytest.fixture
def offline(monkeypatch):
    """Fail on any network connection or child process while Ray checks a config."""

    def refuse(*args, **kwargs):
        raise AssertionError("config validation tried to reach the network or run a command")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(os, "system", refuse)


def check(config: dict) -> dict:
    """What `ray up` checks before it contacts anything; returns the prepared config."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


# --- both files pass Ray's validation ---------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_config_passes_rays_validation(path, offline):
    raw = load(path)
    prepared = check(raw)
    assert prepared["cluster_name"] == "scalper"
    # Our commands survive the merge with Ray's defaults (which have their own start commands).
    assert prepared["head_start_ray_commands"] == raw["head_start_ray_commands"]
    assert prepared["worker_start_ray_commands"] == raw["worker_start_ray_commands"]
    assert prepared["setup_commands"] == raw["setup_commands"]


def test_local_cluster_keeps_every_worker_ip(offline):
    raw = load(LOCAL)
    assert raw["provider"]["type"] == "local"
    assert raw["provider"]["head_ip"] not in raw["provider"]["worker_ips"]
    (node_type,) = check(raw)["available_node_types"].values()
    n = len(raw["provider"]["worker_ips"])
    # On-prem nodes are fixed: min = max = the number of worker_ips (Ray would clamp otherwise).
    assert node_type["min_workers"] == node_type["max_workers"] == n
    assert raw["min_workers"] == raw["max_workers"] == n


def test_aws_variant_node_types(offline):
    prepared = check(load(AWS))
    assert prepared["provider"]["type"] == "aws"
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    (worker,) = [t for name, t in types.items() if name != prepared["head_node_type"]]
    for node_type in (head, worker):
        # An instance type and an AMI (Ray's default AMI has no python3.12) for each type.
        assert {"InstanceType", "ImageId"} <= node_type["node_config"].keys()
    assert head["max_workers"] == 0
    assert 0 <= worker["min_workers"] <= worker["max_workers"] <= prepared["max_workers"]


# --- and the same validation rejects a broken one (so the tests above can fail) -----------


def _rename(node: dict, old: str, new: str) -> None:
    node[new] = node.pop(old)


def _worker(config: dict) -> dict:
    return config["available_node_types"]["ray.worker.default"]


V, T = jsonschema.ValidationError, TypeError
BROKEN = [
    # (file, mutation, what Ray raises, text its message must contain)
    pytest.param(
        LOCAL,
        lambda c: _rename(c, "max_workers", "max_worker"),
        V,
        "'max_worker' was unexpected",
        id="local-typo-top-level",
    ),
    pytest.param(
        AWS,
        lambda c: _rename(c, "max_workers", "max_worker"),
        V,
        "'max_worker' was unexpected",
        id="aws-typo-top-level",
    ),
    pytest.param(
        LOCAL,
        lambda c: _rename(c["auth"], "ssh_private_key", "ssh_privat_key"),
        V,
        "'ssh_privat_key' was unexpected",
        id="local-typo-auth",
    ),
    pytest.param(
        AWS,
        lambda c: _rename(c["auth"], "ssh_user", "ssh_usr"),
        V,
        "'ssh_usr' was unexpected",
        id="aws-typo-auth",
    ),
    pytest.param(
        AWS,
        lambda c: c.update(max_workers="many"),
        V,
        "'many' is not of type 'integer'",
        id="aws-max-workers-many",
    ),
    # The local provider compares max_workers with the number of worker_ips while preparing,
    # so a string stops `ray up` there, before the schema sees it.
    pytest.param(
        LOCAL,
        lambda c: c.update(max_workers="many"),
        T,
        "'>' not supported between instances of 'str' and 'int'",
        id="local-max-workers-many",
    ),
    pytest.param(
        LOCAL,
        lambda c: c["provider"].update(worker_ips="10.0.0.11"),
        V,
        "is not of type 'array'",
        id="local-worker-ips-not-a-list",
    ),
    pytest.param(
        LOCAL,
        lambda c: c.update(setup_commands=[["pip", "install"]]),
        V,
        "is not of type 'string'",
        id="local-command-not-a-string",
    ),
    pytest.param(
        AWS,
        lambda c: c.update(head_node_type="ray.head"),
        ValueError,
        "`head_node_type` must be one of",
        id="aws-unknown-head-type",
    ),
    pytest.param(
        AWS,
        lambda c: _worker(c).update(min_workers=9),
        ValueError,
        "smaller than the sum of `min_workers`",
        id="aws-min-above-max",
    ),
    pytest.param(
        AWS,
        lambda c: _rename(_worker(c), "min_workers", "min_worker"),
        V,
        "'min_worker' was unexpected",
        id="aws-typo-node-type",
    ),
]


@pytest.mark.parametrize(("path", "mutate", "error", "text"), BROKEN)
def test_broken_config_is_rejected(path, mutate, error, text, offline):
    config = load(path)
    check(config)  # the file itself passes...
    mutate(config)
    with pytest.raises(error, match=re.escape(text)):  # ...and the one change is caught
        check(config)


# --- token authentication stays on -------------------------------------------------------


def _ray_start_commands(config: dict, key: str) -> list[str]:
    return [cmd for cmd in config[key] if "ray start" in cmd]


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_token_auth_stays_on(path):
    text = path.read_text()
    # Every RAY_AUTH_MODE in the file (commands and comments) says token: never disabled.
    modes = re.findall(r"RAY_AUTH_MODE=(\w+)", text)
    assert modes, "the file never sets RAY_AUTH_MODE"
    assert set(modes) == {"token"}, f"token auth must stay on, found RAY_AUTH_MODE={modes}"
    config = load(path)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = _ray_start_commands(config, key)
        assert starts, f"{key} has no `ray start`"
        for cmd in starts:
            assert cmd.index("RAY_AUTH_MODE=token") < cmd.index("ray start"), cmd
    # Every node gets the token at Ray's default path, where `ray start` looks for it.
    assert config["file_mounts"][TOKEN_FILE] == TOKEN_FILE


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_start_commands(path):
    config = load(path)
    (head,) = _ray_start_commands(config, "head_start_ray_commands")
    for flag in (
        "--head",
        "--port=6379",
        "--dashboard-host=0.0.0.0",
        "--metrics-export-port=8080",
        "--autoscaling-config=~/ray_bootstrap_config.yaml",
    ):
        assert flag in head.split(), flag
    (worker,) = _ray_start_commands(config, "worker_start_ray_commands")
    assert "--address=$RAY_HEAD_IP:6379" in worker.split()
    assert "--metrics-export-port=8080" in worker.split()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert config[key][0].endswith("ray stop"), "stop a previous Ray first"
        for cmd in config[key]:  # the venv's ray, and jobs inherit the venv's `scalper`
            assert 'PATH="$HOME/scalper/.venv/bin:$PATH"' in cmd


# --- the setup installs this project -----------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_setup_commands_install_this_project(path):
    config = load(path)
    setup = config["setup_commands"]
    assert "test -x ~/scalper/.venv/bin/python || python3.12 -m venv ~/scalper/.venv" in setup
    installs = [cmd for cmd in setup if " -m pip install " in cmd and " -e ~/scalper" in cmd]
    assert len(installs) == 1, setup
    assert installs[0].startswith("~/scalper/.venv/bin/python -m pip install")
    # ...and pip finds the project there: pyproject.toml, its readme and every package it
    # packages (tool.setuptools.packages.find include) are mounted under ~/scalper.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mounts = config["file_mounts"]
    assert mounts["~/scalper/pyproject.toml"] == "./pyproject.toml"
    readme = pyproject["project"]["readme"]
    assert mounts[f"~/scalper/{readme}"] == f"./{readme}"
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        if (ROOT / package).is_dir():
            assert mounts.get(f"~/scalper/{package}") == f"./{package}", package


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_mounted_sources_exist_in_the_repository(path):
    # `ray up` runs from the repository root; a missing source would stop it mid-setup.
    for remote, local in load(path)["file_mounts"].items():
        if local.startswith("~"):
            continue  # on the user's machine (the token)
        assert (ROOT / local).exists(), f"{remote}: {local} does not exist"
        assert not local.startswith(("./.venv", "./runs")), "never mount the venv or runs/"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_cluster_runs_the_same_ray_as_this_venv(path):
    # `ray up`, `ray job submit` and the cluster must run one Ray version.
    pins = re.findall(r"\bray==([0-9][\w.]*)", " ".join(load(path)["setup_commands"]))
    assert pins == [ray.__version__], (
        f"setup_commands pin ray=={pins}, this venv has ray {ray.__version__}: update the pin"
    )


def test_both_files_set_up_and_start_nodes_the_same_way():
    local, aws = load(LOCAL), load(AWS)
    for key in (
        "file_mounts",
        "rsync_exclude",
        "setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
    ):
        assert local[key] == aws[key], key


def test_the_docs_cluster_config_recipe_is_valid():
    # docs/cluster.md makes cluster.json = config.json with ray.address "auto", so that a job's
    # `scalper backtest --parallel` attaches to the cluster instead of starting its own.
    doc = json.loads((ROOT / "config.json").read_text())
    doc["ray"]["address"] = "auto"
    assert validate_scalper_config(doc) == []
    assert "ray.address" in (ROOT / "docs" / "cluster.md").read_text()


def _uploaded(root: Path, ignore_gitignore: bool) -> set[str]:
    """The files `ray job submit --working-dir root` packs (Ray's own walk over the ignore files)."""
    from ray._private.runtime_env.packaging import _dir_travel

    found: set[str] = set()
    _dir_travel(
        root,
        [],
        lambda p: found.add(p.relative_to(root).as_posix()) if p.is_file() else None,
        include_gitignore=not ignore_gitignore,
    )
    return found


def test_a_job_submitted_as_the_docs_say_ships_the_models_and_cluster_json_but_not_the_venv(tmp_path):
    # The shipped config turns the models on: a job without models/ stops with "model not found".
    for name in (".gitignore", ".rayignore"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    files = [
        "models/validator/v0001/model.ubj",
        "cluster.json",
        "config.json",
        "scalper/cli.py",
        "data/samples/es.parquet",
        ".venv/lib/site.py",
        "runs/r1/summary.json",
        "datasets/bootstrap/part.parquet",
        "scalper/__pycache__/cli.cpython-312.pyc",
        ".git/HEAD",
    ]
    for rel in files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    shipped = _uploaded(tmp_path, ignore_gitignore=True) - {".gitignore", ".rayignore"}
    assert shipped == {
        "models/validator/v0001/model.ubj",
        "cluster.json",
        "config.json",
        "scalper/cli.py",
        "data/samples/es.parquet",
    }
    # without the variable Ray follows .gitignore: no models, no cluster.json (why the docs set it)
    assert "models/validator/v0001/model.ubj" not in _uploaded(tmp_path, ignore_gitignore=False)
    # and both guides set the variable before their first `ray job submit --working-dir`
    for doc in (ROOT / "docs" / "cluster.md", ROOT / "README.md"):
        text = doc.read_text()
        first_submit = text.index("ray job submit --address")
        assert text.find("export RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1") in range(first_submit), doc.name
