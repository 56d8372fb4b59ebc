"""One caller's rows checked on their own, and a batch in which a bad caller fails no other
(serve/batch.py: what every Serve replica runs; no cluster here)."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from scalper.ml.registry import LoadedModel, ModelCard, ModelSchemaError
from serve.batch import BadRows, check_rows, predict_batches

NAMES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(NAMES)))
    booster = xgb.train(
        {"objective": "binary:logistic", "nthread": 1},
        xgb.DMatrix(x, label=(x[:, 0] > 0).astype(float), feature_names=NAMES),
        5,
    )
    card = ModelCard(name="validator", version="v0001", kind="binary", features=NAMES)
    return LoadedModel(card, booster)


def test_good_rows_become_a_contiguous_float32_array_and_nan_is_a_missing_value():
    x = check_rows([[1, 2.5, 3], [4, float("nan"), 6]], 3)
    assert x.dtype == np.float32 and x.shape == (2, 3) and x.flags.c_contiguous
    assert np.isnan(x[1, 1])
    a = np.ones((4, 3), dtype=np.float32)
    assert check_rows(a, 3) is a  # a handle caller's array is not copied


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([[1.0, 2.0]], "each row needs 3 numbers"),
        ([1.0, 2.0, 3.0], "list of rows"),
        ([[1, 2, 3], [4, 5]], "rows of 3 numbers"),
        ([["x", 2, 3]], "numbers only"),
        ([[True, False, True]], "numbers only"),
        ([[1, None, 3]], "numbers only"),
        (None, "numbers only"),
        ("[[1, 2, 3]]", "numbers only"),
        ([[1, float("inf"), 3]], r"rows\[0\]\[1\]: inf is not a finite"),
        ([[1, 2, 3], [1, 2, 1e300]], r"rows\[1\]\[2\]: 1e\+300 is not a finite"),
    ],
)
def test_malformed_rows_are_refused_with_the_reason(rows, reason):
    with pytest.raises(BadRows, match=reason):
        check_rows(rows, 3)


def test_a_caller_whose_rows_fail_the_model_fails_alone_in_its_batch(model):
    """Rows that slipped past the check (here: another width) used to fail the concatenation,
    and with it every caller batched with them."""
    rng = np.random.default_rng(1)
    good = [rng.normal(size=(k, 3)).astype(np.float32) for k in (1, 4, 2)]
    bad = np.ones((1, 2), dtype=np.float32)
    answers = predict_batches(model, [good[0], bad, good[1], good[2]])
    assert isinstance(answers[1], ModelSchemaError)
    for rows, answer in zip(good, [answers[0], answers[2], answers[3]], strict=True):
        assert not isinstance(answer, Exception)
        version, y = answer
        assert version == "v0001"
        np.testing.assert_array_equal(y, model.predict(rows))


def test_a_batch_of_good_callers_is_one_call_split_back_per_caller(model):
    rows = [np.full((k, 3), float(k), dtype=np.float32) for k in (2, 0, 3)]
    answers = predict_batches(model, rows)
    assert [len(a[1]) for a in answers] == [2, 0, 3]
    np.testing.assert_array_equal(answers[2][1], model.predict(rows[2]))


# ------------------------------------------------------------ the HTTP ingress, with stand-in handles


class _Method:
    """A deployment handle method: `.remote(...)` gives an awaitable answer."""

    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        async def answer():
            return self.fn(*args)

        return answer()


class _Handle:
    def __init__(self, model: LoadedModel):
        import msgspec

        self.card = _Method(lambda: msgspec.json.encode(model.card))
        self.predict = _Method(lambda rows: (model.card.version, model.predict(check_rows(rows, 3))))


def _ask(model: LoadedModel, method: str, body: bytes):
    """(status, JSON answer) of the ingress for one request."""
    import asyncio
    import json

    from starlette.requests import Request

    from serve.models import Models

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": method, "headers": [], "path": "/models", "query_string": b""}
    ingress = Models.func_or_class(validator=_Handle(model), regime=_Handle(model), sizer=_Handle(model))
    answer = asyncio.run(ingress(Request(scope, receive)))
    if isinstance(answer, dict):
        return 200, answer
    return answer.status_code, json.loads(answer.body)


@pytest.mark.parametrize(
    ("method", "body", "status", "reason"),
    [
        ("GET", b"", 405, "POST a JSON body"),
        ("POST", b"not json", 400, "body: not JSON"),
        ("POST", b'{"model": "validator", "rows": [[...]]}', 400, "body: not JSON"),  # the docs' placeholder
        ("POST", b"[1, 2]", 400, "not a JSON object"),
        ("POST", b'{"model": "nope", "rows": [[1, 2, 3]]}', 400, "model: one of"),
        ("POST", b'{"model": "validator", "rows": [[1.0, 2.0]]}', 400, "each row needs 3 numbers"),
        ("POST", b'{"model": "validator"}', 400, "rows: expected numbers only"),
        ("POST", b'{"model": "validator", "rows": [[1, Infinity, 3]]}', 400, "not a finite"),
    ],
)
def test_a_bad_http_request_is_answered_400_with_a_json_reason(model, method, body, status, reason):
    code, answer = _ask(model, method, body)
    assert code == status and reason in answer["error"]


def test_a_good_http_request_gets_the_predictions_and_nan_is_a_missing_feature(model):
    code, answer = _ask(model, "POST", b'{"model": "validator", "rows": [[1, 2, 3], [0.5, NaN, -1]]}')
    assert code == 200 and answer["version"] == "v0001" and answer["features"] == NAMES
    expected = model.predict(np.array([[1, 2, 3], [0.5, np.nan, -1]], dtype=np.float32))
    np.testing.assert_allclose(answer["predictions"], expected)
