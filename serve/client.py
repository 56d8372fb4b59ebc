"""Calling the served models from an actor: stand-ins for registry models in a ModelGate.

`ServedModel` has what `ModelGate` uses of a `LoadedModel` (`card`, `predict(frame)`), so the
risk manager's gate logic is the backtest's; only where the numbers come from differs. Its
card follows the version that answered (a hot swap shows in the records from that minute).
A call that fails or exceeds `serve.timeout_s` raises ModelsUnavailable; the gate's
`serve.on_failure` policy decides what that means for the minute's signals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
from ray import serve

from scalper.config import Config
from scalper.live_gate import ModelsUnavailable
from scalper.ml.registry import ModelCard
from serve.models import APP, MODELS

log = logging.getLogger(__name__)


class ServedModel:
    """One deployment of the model app, called through its handle."""

    def __init__(self, name: str, timeout_s: float):
        self.name = name
        self.timeout_s = timeout_s
        self.handle = serve.get_deployment_handle(name, app_name=APP)
        self.card = self._fetch_card()

    @property
    def tag(self) -> str:
        return f"{self.card.name}:{self.card.version}"

    def _fetch_card(self) -> ModelCard:
        raw = self._call(self.handle.card.remote())
        return msgspec.json.decode(raw, type=ModelCard)

    def _call(self, response: Any) -> Any:
        try:
            return response.result(timeout_s=self.timeout_s)
        except Exception as exc:  # timeout, replica gone, app not running: all the same here
            raise ModelsUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def predict(self, features: Any) -> np.ndarray:
        return self.ask(features)()

    def ask(self, features: Any) -> Callable[[], np.ndarray]:
        """Send the request now; the returned function waits for the answer (several models
        asked before waiting on any: their round trips overlap)."""
        names = self.card.features
        x = features[names].to_numpy(dtype=np.float32) if hasattr(features, "columns") else features
        try:
            response = self.handle.predict.remote(np.ascontiguousarray(x, dtype=np.float32))
        except Exception as exc:  # the app is gone: as unavailable as a failed answer
            raise ModelsUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc

        def answer() -> np.ndarray:
            version, y = self._call(response)
            if version != self.card.version:  # swapped: the records name the version that answered
                self.card = self._fetch_card()
                log.info("%s: now served by %s", self.name, self.tag)
            return y

        return answer


def served_gate(cfg: Config) -> Any:
    """A ModelGate whose three models are the running model app's deployments."""
    from scalper.ml.gate import ModelGate

    timeout = cfg.serve.timeout_s
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # the router's start-up INFO lines
    models = {name: ServedModel(name, timeout) for name in MODELS}
    return ModelGate(cfg, validator=models["validator"], regime=models["regime"], sizer=models["sizer"])
