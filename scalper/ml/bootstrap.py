"""Bootstrap: the three models trained before the first trading run, when the registry lacks them.

`scalper train all --bootstrap` (which `make run` runs before `scalper run`):

1. `registry_status` - does the registry hold a `latest` validator, regime and sizer whose
   feature lists are the ones this code and config compute, and whose model files are intact?
   If so there is nothing to do (the check reads three small card files and checksums the model
   files against them: no Ray, and no xgboost unless a card predates the checksum, when the
   model is loaded instead). A model that cannot be loaded counts as missing.
2. `bootstrap_bars` - otherwise, the history to learn from: `ml.bootstrap_symbols` of the
   synthetic market (feed.synthetic - seeded, with planted trending / ranging / volatile
   regimes) over `ml.bootstrap_minutes` each, plus, with `ml.bootstrap_replay`, the configured
   replay file (feed.replay.path: the bundled real ES ticks by default).
3. The dataset (`scalper.ml.dataset.collect`) is written to `ml.datasets_dir`/bootstrap, and all
   three models are trained in one Ray Train run (training/xgb.py) into the registry.

A partly filled or stale registry (a model missing, or trained on another feature list) is
bootstrapped whole: the sizer learns from the validator of the same run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec

from scalper.config import Config, with_overrides
from scalper.ml.dataset import describe_diff
from scalper.ml.features import FEATURE_VERSION
from scalper.ml.registry import (
    CARD_FILE,
    MODEL_FILE,
    MODEL_NAMES,
    ModelCard,
    ModelFileError,
    Registry,
    file_sha256,
)

log = logging.getLogger(__name__)

DATASET_NAME = "bootstrap"


class RegistryStatus(msgspec.Struct, frozen=True):
    """What the registry holds for the three models, and why it is not usable as it is."""

    root: str
    versions: dict[str, str | None]  # model -> its `latest` version (None: none)
    problems: list[str]  # one line per model that is missing or stale

    @property
    def complete(self) -> bool:
        return not self.problems


def _expected_features(cfg: Config, name: str) -> list[str]:
    from scalper.ml.models import spec

    return list(spec(cfg, name).features)


def registry_status(root: str | Path, cfg: Config) -> RegistryStatus:
    """Whether `root` has a usable `latest` of every model (see the module docstring). Reads the
    card files and checksums the model files (loads a model whose card has no checksum)."""
    reg = Registry(root)
    versions: dict[str, str | None] = {}
    problems: list[str] = []
    for name in MODEL_NAMES:
        version = reg.latest(name)
        versions[name] = version
        if not version:
            problems.append(f"{name}: no model")
            continue
        d = reg.root / name / version
        if not (d / MODEL_FILE).exists() or not (d / CARD_FILE).exists():
            problems.append(f"{name}: `latest` names {version}, which has no {MODEL_FILE} / {CARD_FILE}")
            continue
        try:
            card = msgspec.json.decode((d / CARD_FILE).read_bytes(), type=ModelCard)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            problems.append(f"{name} {version}: unreadable card ({exc})")
            continue
        if card.feature_version != FEATURE_VERSION:
            problems.append(
                f"{name} {version}: feature definitions v{card.feature_version}, this code computes v{FEATURE_VERSION}"
            )
            continue
        want = _expected_features(cfg, name)
        if list(card.features) != want:
            problems.append(
                f"{name} {version}: trained on another feature list ({describe_diff(card.features, want)})"
            )
            continue
        unusable = _model_file_problem(reg, card, d / MODEL_FILE)
        if unusable:
            problems.append(f"{name} {version}: {unusable}")
    return RegistryStatus(str(root), versions, problems)


def _model_file_problem(reg: Registry, card: ModelCard, path: Path) -> str | None:
    """Why the model file cannot be used (None: it can): its checksum differs from the card's,
    or, for a card without one, xgboost cannot load it."""
    if card.model_sha256:
        try:
            same = file_sha256(path) == card.model_sha256
        except OSError as exc:
            return f"cannot read {path}: {exc.strerror or exc}"
        return None if same else f"{path} is not the file registered (its sha256 differs from the card's)"
    try:
        reg.load(card.name, card.version)
    except ModelFileError as exc:
        return str(exc).split(": ", 1)[-1]  # without the "model NAME VERSION" the caller adds
    return None


def synthetic_config(cfg: Config) -> Config:
    """`cfg` with the synthetic market lasting `ml.bootstrap_minutes`."""
    return with_overrides(cfg, {"feed.synthetic.minutes": cfg.ml.bootstrap_minutes})


def replay_path(cfg: Config) -> Path | None:
    """The real data the bootstrap adds: the configured replay file, if it is wanted and exists."""
    if not cfg.ml.bootstrap_replay:
        return None
    path = Path(cfg.feed.replay.path)
    return path if path.exists() else None


def bootstrap_bars(cfg: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """({symbol: bars DataFrame}, source description) of the bootstrap history (module docstring).
    ValueError when there is nothing to learn from or a real symbol has a synthetic name."""
    from scalper.backtest import load_bars

    syn = synthetic_config(cfg)
    symbols = list(cfg.ml.bootstrap_symbols)
    bars: dict[str, Any] = dict(load_bars(syn, synthetic=True, symbols=symbols)) if symbols else {}
    real = replay_path(cfg)
    real_symbols: list[str] = []
    if real is not None:
        for sym, frame in load_bars(cfg).items():
            if sym in bars:
                raise ValueError(
                    f"bootstrap: the replay file {real} has a symbol {sym!r} that ml.bootstrap_symbols also names"
                )
            if len(frame):
                bars[sym] = frame
                real_symbols.append(sym)
    elif cfg.ml.bootstrap_replay:
        log.warning("bootstrap: replay file %s not found; synthetic history only", cfg.feed.replay.path)
    bars = {s: b for s, b in bars.items() if len(b)}
    if not bars:
        raise ValueError(
            "bootstrap: no history to learn from (ml.bootstrap_symbols is empty and there is no replay file)"
        )
    source = {
        "bootstrap": True,
        "synthetic": False,  # a mix: `train --evaluate` cannot reload it as one source
        "synthetic_symbols": symbols,
        "synthetic_minutes": cfg.ml.bootstrap_minutes,
        "synthetic_seed": cfg.feed.synthetic.seed,
        "data": str(real) if real is not None else None,
        "data_symbols": real_symbols,
    }
    return bars, source


def describe_source(source: dict[str, Any], bars: dict[str, Any]) -> str:
    """One line: what the bootstrap history is made of."""
    parts = []
    syn = source.get("synthetic_symbols") or []
    if syn:
        days = source["synthetic_minutes"] / 1440
        parts.append(
            f"synthetic market {len(syn)} symbol(s) x {days:g} day(s) "
            f"(seed {source['synthetic_seed']}, {sum(len(bars[s]) for s in syn if s in bars):,} bars)"
        )
    real = source.get("data_symbols") or []
    if real:
        parts.append(f"{source['data']} ({', '.join(real)}: {sum(len(bars[s]) for s in real):,} bars)")
    return " + ".join(parts)
