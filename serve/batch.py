"""Checking one caller's rows, and predicting a batch of callers' rows so that none fails another.

A replica serves concurrent callers in one xgboost call (`@serve.batch`). Without a check, one
caller's malformed rows (another width, not numbers) failed the concatenation or the call,
and with it every other caller of that batch: a live run sharing the app saw its signals
refused as `validator_unavailable` because of someone else's request. So each request is
checked on its own before it joins a batch (`check_rows`), and a batch that still fails is
retried caller by caller (`predict_batches`), so only the failing caller gets the error.

No Ray here: tested without a cluster (tests/test_serve_batch.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class BadRows(ValueError):
    """A caller's rows cannot be predicted from: says what is wrong with them."""


def check_rows(rows: Any, width: int) -> np.ndarray:
    """`rows` as a contiguous 2-D float32 array of `width` columns (the model card's features, in
    order). BadRows for anything else: not a 2-D list of numbers, another width, an infinite
    value. NaN is allowed: it is the models' missing value (a feature at the start of a
    symbol's history), as it was in training."""
    try:
        x = np.asarray(rows)
    except ValueError as exc:  # ragged lists
        raise BadRows(f"rows: expected a list of rows of {width} numbers each ({exc})") from None
    if x.dtype.kind not in "iuf":
        raise BadRows(f"rows: expected numbers only (a list of rows of {width} numbers each)")
    if x.ndim != 2:
        raise BadRows(
            f"rows: expected a list of rows (2-D) of {width} numbers each, got a {x.ndim}-D array of shape {x.shape}"
        )
    if x.shape[1] != width:
        raise BadRows(
            f"rows: each row needs {width} numbers (the model card's features, in order), got {x.shape[1]}"
        )
    with np.errstate(over="ignore"):
        x = np.ascontiguousarray(x, dtype=np.float32)
    bad = np.argwhere(np.isinf(x))
    if bad.size:
        r, c = (int(v) for v in bad[0])
        raise BadRows(f"rows[{r}][{c}]: {rows[r][c]!r} is not a finite float32 number")
    return x


def predict_batches(model: Any, batches: Sequence[np.ndarray]) -> list[tuple[str, np.ndarray] | Exception]:
    """Each caller's (version, predictions), from one `model.predict` over all their rows; if that
    call fails, each caller's rows alone, and a caller whose own rows fail gets its exception in
    its place (the caller raises it) while the others get their answers."""
    version = model.card.version
    sizes = [len(b) for b in batches]
    try:
        y = model.predict(np.concatenate(batches)) if sum(sizes) else np.empty(0)
    except Exception:
        return [_predict_one(model, b) for b in batches]
    cuts = np.cumsum(sizes)[:-1]
    return [(version, part) for part in np.split(y, cuts)]


def _predict_one(model: Any, rows: np.ndarray) -> tuple[str, np.ndarray] | Exception:
    try:
        return model.card.version, model.predict(rows) if len(rows) else np.empty(0)
    except Exception as exc:
        return exc
