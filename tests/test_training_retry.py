"""A Ray Train run that loses a worker is rerun once (training/xgb.py: fit_retrying_once); no
cluster here: the run is a stand-in."""

from __future__ import annotations

import logging

import pytest
from ray.train import WorkerGroupError

from training.xgb import fit_retrying_once


def _lost_worker() -> WorkerGroupError:
    return WorkerGroupError(
        "Training failed due to worker errors:\nA worker health check failed.",
        {0: RuntimeError("Destroying worker since its placement group was removed")},
    )


def test_a_run_that_loses_a_worker_is_rerun_once_under_a_new_name_and_says_so(caplog):
    runs = []

    def fit(name: str) -> str:
        runs.append(name)
        if len(runs) == 1:
            raise _lost_worker()
        return "result"

    with caplog.at_level(logging.WARNING, logger="training.xgb"):
        assert fit_retrying_once(fit, "scalper-all-x") == ("result", "scalper-all-x-retry")
    assert runs == ["scalper-all-x", "scalper-all-x-retry"]
    assert "Ray Train run scalper-all-x failed (WorkerGroupError: Training failed" in caplog.text
    assert "retrying it once" in caplog.text


def test_a_run_that_fails_twice_raises_and_a_good_run_is_not_repeated():
    runs = []

    def failing(name: str) -> str:
        runs.append(name)
        raise _lost_worker()

    with pytest.raises(WorkerGroupError):
        fit_retrying_once(failing, "r")
    assert runs == ["r", "r-retry"]
    assert fit_retrying_once(lambda name: name, "ok") == ("ok", "ok")


def test_other_errors_are_not_retried():
    runs = []

    def broken(name: str) -> str:
        runs.append(name)
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        fit_retrying_once(broken, "r")
    assert runs == ["r"]
