"""The model registry: versioned models with everything needed to trust and reload them.

Layout (a local directory, `ml.registry`):

    <root>/<name>/<version>/model.ubj   the XGBoost booster (UBJSON)
    <root>/<name>/<version>/card.json   ModelCard: ordered feature list and its hash, data
                                        span, parameters, metrics, git commit, extra settings
    <root>/<name>/latest                the newest version's name (a text file, not a symlink,
                                        so the layout copies to object stores unchanged)

Versions are `v0001`, `v0002`, ... per name; `latest` moves only after the version is
complete, so a reader never sees a half-written model. `load` checks the card's feature list
against the features the caller will pass and refuses a mismatch (ModelSchemaError) with the
difference spelled out: a model fed columns in another order predicts garbage silently. A
model file that cannot be read (truncated, edited) is ModelFileError naming the file and why;
the card keeps the file's sha256 so the bootstrap's check spots it without loading xgboost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from scalper.ml.dataset import describe_diff
from scalper.ml.features import FEATURE_VERSION, feature_hash

log = logging.getLogger(__name__)

MODEL_FILE = "model.ubj"
CARD_FILE = "card.json"
LATEST = "latest"
MODEL_NAMES = ("validator", "regime", "sizer")
_VERSION = re.compile(r"^v(\d{4,})$")


class ModelSchemaError(ValueError):
    """A model's feature list is not the one the caller provides."""


class ModelNotFoundError(FileNotFoundError):
    """No such model or version in the registry."""


class ModelFileError(ValueError):
    """A registered version's file exists but cannot be used (corrupt, truncated, replaced)."""


def library_reason(exc: BaseException) -> str:
    """The first line of a library's error without its `[hh:mm:ss] file.cc:123:` prefix
    (xgboost appends a C++ stack trace a user cannot act on)."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    return re.sub(r"^\[[\d:]+\]\s+\S+:\d+:\s*", "", first).strip(" :") or type(exc).__name__


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (the model file's checksum kept in its card)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ModelCard(msgspec.Struct, kw_only=True):
    """What a registered model is: enough to reload it safely and to judge it."""

    name: str
    version: str = ""
    kind: str  # "binary" | "multiclass" | "regression"
    features: list[str]
    feature_hash: str = ""
    feature_version: int = FEATURE_VERSION
    data_start_ts: int | None = None
    data_end_ts: int | None = None
    rows: int = 0
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    metrics: dict[str, Any] = msgspec.field(default_factory=dict)
    # model-specific settings used at inference: validator threshold, regime classes, sizer scale
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
    git_commit: str | None = None
    created: str = ""
    model_sha256: str = ""  # of model.ubj as registered ("" in cards written before it was kept)
    dataset: str | None = None
    run_name: str | None = None


def git_commit(cwd: str | Path | None = None) -> str | None:
    """HEAD's commit of the repository the code runs from (None outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class Registry:
    """`models/<name>/<version>/` directories under `root` (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def versions(self, name: str) -> list[str]:
        d = self.root / name
        if not d.is_dir():
            return []
        found = [p.name for p in d.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def latest(self, name: str) -> str | None:
        p = self.root / name / LATEST
        return p.read_text().strip() if p.exists() else None

    def is_empty(self) -> bool:
        return not any(self.latest(n) for n in MODEL_NAMES)

    def save(self, booster: Any, card: ModelCard) -> ModelCard:
        """Store a trained xgboost Booster with its card as the next version; move `latest`."""
        existing = self.versions(card.name)
        number = int(existing[-1][1:]) + 1 if existing else 1
        version = f"v{number:04d}"
        d = self.root / card.name / version
        d.mkdir(parents=True, exist_ok=False)
        card = msgspec.structs.replace(
            card,
            version=version,
            feature_hash=feature_hash(card.features),
            git_commit=card.git_commit if card.git_commit is not None else git_commit(),
            created=card.created or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        booster.save_model(str(d / MODEL_FILE))
        card = msgspec.structs.replace(card, model_sha256=file_sha256(d / MODEL_FILE))
        (d / CARD_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(card)) + b"\n")
        tmp = self.root / card.name / f".{LATEST}.tmp"
        tmp.write_text(version + "\n")
        tmp.replace(self.root / card.name / LATEST)
        log.info("registered %s %s (%d features)", card.name, version, len(card.features))
        return card

    def card(self, name: str, version: str = LATEST) -> ModelCard:
        v = self._resolve(name, version)
        path = self.root / name / v / CARD_FILE
        try:
            return msgspec.json.decode(path.read_bytes(), type=ModelCard)
        except OSError as exc:
            raise ModelFileError(f"model {name} {v}: cannot read {path}: {exc.strerror or exc}") from None
        except msgspec.DecodeError as exc:
            raise ModelFileError(f"model {name} {v}: {path} is not a model card: {exc}") from None

    def _resolve(self, name: str, version: str) -> str:
        v = self.latest(name) if version == LATEST else version
        if not v or not (self.root / name / v / MODEL_FILE).exists():
            have = self.versions(name)
            raise ModelNotFoundError(
                f"model {name!r} version {version!r} not found in registry {self.root} "
                f"(versions: {have or 'none'}; train one with `scalper train {name}`)"
            )
        return v

    def load(self, name: str, version: str = LATEST, features: Sequence[str] | None = None) -> LoadedModel:
        """The booster and its card. With `features` (the ordered list the caller will pass), a
        model trained on another list is refused with ModelSchemaError."""
        import xgboost as xgb

        card = self.card(name, version)
        if card.feature_version != FEATURE_VERSION:
            raise ModelSchemaError(
                f"model {name} {card.version}: trained on feature definitions v{card.feature_version}, "
                f"this code computes v{FEATURE_VERSION}; retrain it"
            )
        if features is not None and list(features) != list(card.features):
            raise ModelSchemaError(
                f"model {name} {card.version}: its feature list differs from the features given: "
                f"{describe_diff(list(features), card.features)}"
            )
        path = self.root / name / card.version / MODEL_FILE
        booster = xgb.Booster()
        try:
            booster.load_model(str(path))
        except (xgb.core.XGBoostError, OSError) as exc:
            raise ModelFileError(
                f"model {name} {card.version}: cannot load {path}: {library_reason(exc)}"
            ) from None
        if card.model_sha256 and file_sha256(path) != card.model_sha256:
            raise ModelFileError(
                f"model {name} {card.version}: {path} is not the file registered (its sha256 differs from "
                f"the card's); retrain it"
            )
        booster.feature_names = list(card.features)
        # one thread: the live path predicts a few rows per call, where OpenMP's thread start-up
        # and spinning on a busy 2-core machine cost 10-20 ms per call (and a served replica
        # has no CPU of its own to spread over)
        booster.set_param({"nthread": 1})
        return LoadedModel(card, booster)


class LoadedModel:
    """A registered model ready to predict from a DataFrame or array in its feature order."""

    def __init__(self, card: ModelCard, booster: Any):
        self.card = card
        self.booster = booster

    @property
    def tag(self) -> str:
        return f"{self.card.name}:{self.card.version}"

    def predict(self, features: Any) -> Any:
        """Predictions for rows of `features` (DataFrame with the card's columns, or a 2-D array
        in that order): P(class 1) for binary, class probabilities for multiclass, values for
        regression."""
        import numpy as np

        names = self.card.features
        if hasattr(features, "columns"):
            missing = [c for c in names if c not in features.columns]
            if missing:
                raise ModelSchemaError(f"model {self.tag}: input lacks feature columns {missing}")
            x = features[names].to_numpy(dtype=np.float32)
        else:
            x = np.asarray(features, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] != len(names):
                raise ModelSchemaError(
                    f"model {self.tag}: expected a 2-D array with {len(names)} feature columns, got shape {x.shape}"
                )
        # in place: no DMatrix built per call (same numbers as predict(DMatrix(x)))
        return self.booster.inplace_predict(x)


def card_json(card: ModelCard) -> str:
    return json.dumps(msgspec.to_builtins(card), indent=2)
