"""The validator, regime and sizer as Ray Serve deployments, composed in one app.

Each model is a deployment (`validator`, `regime`, `sizer`) whose replicas load their model
from the registry and answer `predict(rows)` with `@serve.batch`: concurrent callers (the
risk manager at each bar close, outside callers) are served in one xgboost call.

Hot swap by registry watch: a replica following `latest` (the default) looks at the
registry's `latest` pointer at most every `WATCH_S` and loads a new version in place, between
two batches: no replica restarts and no request fails (tests/test_serve.py). A version whose
feature list is not what this code computes is refused there, logged, and the old model keeps
serving; `scalper serve --reload` checks the registry the same way first and says what the
replicas will serve. The `models` ingress adds an optional JSON API over HTTP (127.0.0.1).

Each request's rows are checked on their own before they join a batch (serve/batch.py): a
malformed request is refused alone (HTTP 400 with the reason; a handle caller gets BadRows)
and never fails the other callers batched with it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import msgspec
import numpy as np
from ray import serve

from scalper.config import Config
from scalper.ml.features import feature_names, market_feature_names
from scalper.ml.registry import ModelCard, Registry
from scalper.ml.sizing import SIZER_FEATURES
from serve.batch import BadRows, check_rows, predict_batches

log = logging.getLogger(__name__)

APP = "scalper-models"
WATCH_S = 1.0  # how often a replica following `latest` looks at the registry
MODELS = ("validator", "regime", "sizer")
ROUTE = "/models"


def expected_features(cfg: Config, name: str) -> list[str]:
    """The ordered features this code computes for model `name` (what a version must match)."""
    if name == "validator":
        return feature_names(cfg)
    if name == "regime":
        return market_feature_names(cfg)
    if name == "sizer":
        return list(SIZER_FEATURES)
    raise ValueError(f"unknown model {name!r} (one of {', '.join(MODELS)})")


def resolve_versions(cfg: Config, registry: str | None = None) -> dict[str, str]:
    """The `latest` version of every model, each loaded once and schema-checked here, so a bad
    version is refused (ModelSchemaError / ModelNotFoundError) before any replica sees it."""
    reg = Registry(registry or cfg.ml.registry)
    out = {}
    for name in MODELS:
        model = reg.load(name, features=expected_features(cfg, name))
        out[name] = model.card.version
    return out


@serve.deployment
class ModelServer:
    """One model of the registry, batched."""

    def __init__(self, cfg: Config, name: str):
        self.cfg = cfg
        self.name = name
        self.model: Any = None
        self.card_bytes = b""
        self.registry: Registry | None = None
        self.follow = True  # follow `latest`, or a pinned version
        self.refused: set[str] = set()
        self._checked = 0.0
        self.batches = self.requests = 0  # how much batching happens (stats())
        self.width = len(expected_features(cfg, name))  # every version served has these features
        self._predict_batch.set_max_batch_size(cfg.serve.max_batch_size)
        self._predict_batch.set_batch_wait_timeout_s(cfg.serve.batch_wait_timeout_s)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """The registry and the version to serve ("latest" = follow the registry)."""
        self.registry = Registry(user_config.get("registry") or self.cfg.ml.registry)
        version = str(user_config.get("version", "latest"))
        self.follow = version == "latest"
        if not self.follow:
            self._load(version)
            return
        # the newest version that passes the schema check (a new replica must not be the one
        # that fails to start on a refused `latest`)
        versions = self.registry.versions(self.name)
        for v in reversed(versions):
            try:
                self._load(v)
                return
            except Exception as exc:
                self.refused.add(v)
                log.error("%s: version %s refused (%s)", self.name, v, exc)
        raise RuntimeError(
            f"{self.name}: no version in {self.registry.root} passes the schema check ({versions})"
        )

    def _load(self, version: str | None) -> None:
        """Load `version`; on failure keep serving the current model (none yet: raise)."""
        assert self.registry is not None
        try:
            model = self.registry.load(
                self.name, version or "latest", features=expected_features(self.cfg, self.name)
            )
        except Exception as exc:
            if self.model is None:
                raise  # nothing to fall back to: the deployment cannot start
            self.refused.add(str(version))
            log.error(
                "%s: version %s refused (%s); still serving %s", self.name, version, exc, self.model.tag
            )
            return
        self.model = model
        self.card_bytes = msgspec.json.encode(model.card)
        log.info("%s: serving %s", self.name, model.tag)

    def _watch(self) -> None:
        now = time.monotonic()
        if not self.follow or self.registry is None or now - self._checked < WATCH_S:
            return
        self._checked = now
        latest = self.registry.latest(self.name)
        if latest and latest != self.model.card.version and latest not in self.refused:
            self._load(latest)

    def card(self) -> bytes:
        self._watch()
        return self.card_bytes

    def stats(self) -> dict[str, int]:
        """Batches run and requests answered by this replica."""
        return {"batches": self.batches, "requests": self.requests}

    async def predict(self, rows: Any) -> tuple[str, np.ndarray]:
        """The version and its predictions for one caller's rows (2-D, the card's feature
        order). Checked here, alone, before joining a batch: BadRows for this caller only."""
        answer = await self._predict_batch(check_rows(rows, self.width))
        if isinstance(answer, Exception):  # this caller's rows failed in the model
            raise answer
        return answer

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def _predict_batch(self, batches: list[np.ndarray]) -> list[tuple[str, np.ndarray] | Exception]:
        """Every batched caller's (version, predictions), or the exception of a caller whose
        own rows failed (serve/batch.py)."""
        self._watch()
        self.batches += 1
        self.requests += len(batches)
        return predict_batches(self.model, batches)


@serve.deployment
class Models:
    """Ingress: the JSON API for outside callers (POST {"model": ..., "rows": [[...], ...]})."""

    def __init__(self, validator: Any, regime: Any, sizer: Any):
        self.handles = {"validator": validator, "regime": regime, "sizer": sizer}

    async def __call__(self, request: Any) -> Any:
        """The answer, or 400 / 405 with {"error": reason} for a request that cannot be served."""
        from starlette.responses import JSONResponse

        if request.method != "POST":
            return JSONResponse(
                {"error": f'{request.method}: POST a JSON body {{"model": ..., "rows": [[...], ...]}}'},
                status_code=405,
            )
        try:  # Python's json: NaN (a missing feature) is accepted, as the models were trained with it
            body = json.loads(await request.body())
        except ValueError as exc:
            return JSONResponse({"error": f"body: not JSON ({exc})"}, status_code=400)
        name = body.get("model") if isinstance(body, dict) else None
        if name not in self.handles:
            what = repr(name) if isinstance(body, dict) else "a body that is not a JSON object"
            return JSONResponse({"error": f"model: one of {list(MODELS)}, got {what}"}, status_code=400)
        card = msgspec.json.decode(await self.handles[name].card.remote(), type=ModelCard)
        try:
            rows = check_rows(body.get("rows"), len(card.features))
        except BadRows as exc:
            return JSONResponse({"error": f"{exc} (model {name})"}, status_code=400)
        version, y = await self.handles[name].predict.remote(rows)
        return {"model": name, "version": version, "features": card.features, "predictions": y.tolist()}


def build_app(cfg: Config, registry: str | None = None) -> Any:
    """The app: the three model deployments (resources, batching: the `serve` section) + ingress."""
    s = cfg.serve
    opts = {
        "ray_actor_options": {"num_cpus": s.num_cpus_per_replica},
        "num_replicas": s.replicas,
        "max_ongoing_requests": max(8, 2 * s.max_batch_size),
    }
    bound = {}
    for name in MODELS:
        user_config = {"registry": registry or cfg.ml.registry, "version": "latest"}
        server = ModelServer.options(name=name, user_config=user_config, **opts)
        bound[name] = server.bind(cfg, name)
    return Models.options(ray_actor_options={"num_cpus": 0}).bind(**bound)


def deploy_models(
    cfg: Config, registry: str | None = None, http: bool | None = None, quiet: bool = False
) -> dict[str, str]:
    """Start the model app on the connected cluster (after checking every model's `latest`
    against this code's features); returns the versions the replicas load.

    No HTTP unless `http` (default `serve.http`): then on 127.0.0.1:`serve.http_port` at
    /models. Access logs off. `quiet`: Serve's and the replicas' INFO lines (deploying,
    replicas added and removed, versions loaded) stay out of the terminal and the logs: a
    paper run's output is its own."""
    http = cfg.serve.http if http is None else http
    versions = resolve_versions(cfg, registry)
    logging_config = {"enable_access_log": False, "log_level": "WARNING" if quiet else "INFO"}
    if quiet:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # this process's Serve client
    serve.start(
        proxy_location="HeadOnly" if http else "Disabled",
        http_options={"host": "127.0.0.1", "port": cfg.serve.http_port},
        logging_config=logging_config,
    )
    serve.run(
        build_app(cfg, registry),
        name=APP,
        route_prefix=ROUTE if http else None,
        blocking=False,
        logging_config=logging_config,
    )
    return versions


def models_running() -> bool:
    """Is the model app deployed on the connected cluster?"""
    try:
        return APP in serve.status().applications
    except Exception:  # Serve not started on this cluster
        return False


def delete_models() -> None:
    """Take the model app down (Serve itself stays up)."""
    serve.delete(APP)
