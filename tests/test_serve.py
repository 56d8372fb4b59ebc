"""The models on Ray Serve: batched answers equal the registry models', a hot swap fails no
request and refuses a bad schema, and a dead replica gives the configured explicit decision."""

from __future__ import annotations

import threading
import time

import msgspec
import numpy as np
import pytest
from test_live_gate import market  # noqa: F401  (the fitted models fixture)

from scalper.config import with_overrides
from scalper.ml.features import feature_names
from scalper.ml.registry import ModelSchemaError, Registry

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def served(market, ray_cluster, tmp_path_factory):  # noqa: F811
    from ray import serve

    from serve.models import deploy_models

    cfg0, data, models = market
    registry = Registry(tmp_path_factory.mktemp("serve") / "models")
    for m in models.values():
        registry.save(m.booster, m.card)
    cfg = with_overrides(
        cfg0, {"ml.enabled": True, "ml.registry": str(registry.root), "serve.timeout_s": 5.0}
    )
    versions = deploy_models(cfg)
    yield cfg, registry, models, versions, data
    serve.shutdown()


def rows(cfg, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, len(feature_names(cfg)))).astype(np.float32)


def test_served_models_answer_as_the_registry_models_in_batches(served):
    from serve.client import ServedModel

    cfg, _, models, versions, _ = served
    assert versions == {"validator": "v0001", "regime": "v0001", "sizer": "v0001"}
    validator = ServedModel("validator", 5.0)
    x = rows(cfg, 50)
    np.testing.assert_allclose(validator.predict(x), models["validator"].predict(x), rtol=1e-6)
    # concurrent callers: every answer is its own rows' answer
    answers: dict[int, np.ndarray] = {}

    def call(k: int) -> None:
        answers[k] = validator.predict(rows(cfg, 3 + k, seed=k))

    threads = [threading.Thread(target=call, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for k, y in answers.items():
        np.testing.assert_allclose(y, models["validator"].predict(rows(cfg, 3 + k, seed=k)), rtol=1e-6)
    assert len(answers) == 12


def test_a_malformed_request_fails_alone_and_not_the_good_requests_batched_with_it(served):
    from ray import serve

    from serve.models import APP

    cfg, _, models, _, _ = served
    handle = serve.get_deployment_handle("validator", app_name=APP)
    x = rows(cfg, 4)
    sent = [handle.predict.remote(x if k % 2 == 0 else np.ones((1, 2), np.float32)) for k in range(40)]
    good, refused = [], []
    for k, response in enumerate(sent):
        if k % 2 == 0:
            good.append(response.result(timeout_s=30)[1])
        else:
            with pytest.raises(ValueError, match="each row needs") as exc:
                response.result(timeout_s=30)
            refused.append(exc.value)
    assert len(good) == 20 and len(refused) == 20
    for y in good:
        np.testing.assert_allclose(y, models["validator"].predict(x), rtol=1e-6)


def test_a_hot_swap_fails_no_request_and_a_bad_schema_is_refused(served):
    from serve.client import ServedModel
    from serve.models import WATCH_S, resolve_versions

    cfg, registry, models, _, _ = served
    validator = ServedModel("validator", 5.0)
    x = rows(cfg, 20)
    seen, failures, stop = [], [], threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                validator.predict(x)
                seen.append(validator.card.version)
            except Exception as exc:  # any failed request counts
                failures.append(exc)

    t = threading.Thread(target=hammer)
    t.start()
    time.sleep(1.0)
    registry.save(models["validator"].booster, models["validator"].card)  # v0002: replicas follow `latest`
    deadline = time.time() + 30
    while "v0002" not in seen and time.time() < deadline:
        time.sleep(0.2)
    # a version trained on other features: the --reload check refuses it, and so do the replicas
    card = msgspec.structs.replace(models["validator"].card, features=["x", "y"])
    registry.save(models["validator"].booster, card)  # v0003, bad
    with pytest.raises(ModelSchemaError, match="feature list differs"):
        resolve_versions(cfg)
    time.sleep(3 * WATCH_S)
    n = len(seen)
    time.sleep(0.5)
    assert len(seen) > n  # still answering
    stop.set()
    t.join(30)
    assert failures == []
    assert seen[0] == "v0001" and seen[-1] == "v0002" and "v0003" not in seen and len(seen) > 20


def test_a_dead_replica_gives_the_configured_decision_and_the_bot_recovers(served):
    import ray

    from scalper.backtest import Backtest
    from scalper.live_gate import UNAVAILABLE, LiveGate
    from scalper.trading import Candidate
    from scalper.types import Snapshot
    from serve.client import served_gate

    cfg, _, _, _, data = served
    cfg_fast = with_overrides(cfg, {"serve.timeout_s": 0.5})
    gate = LiveGate(cfg_fast, lambda: served_gate(cfg_fast))
    # a signal on the last bar of AAA, with its history remembered
    sig = next(s for s in reversed(Backtest(cfg).run(data).signals) if s.signal.symbol == "AAA").signal
    sd = data["AAA"]
    i = int(np.searchsorted(sd.ts, sig.ts))
    names = [c for c in sd.cols if c not in ("timestamp",)]
    for j in range(max(0, i - 150), i + 1):
        bar = sd.bar(j)
        gate.remember([Snapshot(bar, {c: float(sd.cols[c][j]) for c in names}, {})])
    cand = Candidate(sig, float(sd.cols["close"][i]))
    assert gate.evaluate([cand])[0].reason != UNAVAILABLE  # up

    actors = ray.util.list_named_actors(all_namespaces=True)
    replica = next(a for a in actors if "validator" in a["name"] and "REPLICA" in a["name"].upper())
    ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]), no_restart=True)
    down = gate.evaluate([cand])[0]
    assert not down.accepted and down.reason == UNAVAILABLE and "validator" in down.detail
    deadline, back = time.time() + 60, None
    while time.time() < deadline:
        back = gate.evaluate([cand])[0]
        if back.reason != UNAVAILABLE:
            break
        time.sleep(1.0)
    assert back is not None and back.reason != UNAVAILABLE, "the models did not come back"
