"""MLflow's scoring protocol on the same scoring path as /predict: `POST /invocations`.

A client written for `mlflow models serve` sends one of `dataframe_split` (`{columns, data}`),
`dataframe_records` (a list of objects), `instances` or `inputs` (a list of objects, or an object
of columns); `params` is accepted and ignored. The body becomes the records of a /predict request,
so every answer is checked against the contract, routed (canary, shadow) and captured exactly like
one, and the answer is MLflow's: `{"predictions": [...]}`, one prediction per record in order
(the class label, or the value). The batch id, model version and role are in headers
(`x-mlops-batch-id`, `x-mlops-model-version`, `x-mlops-role`): the request ids for /feedback are
`<batch_id>-<record>` as /predict names them.
"""

from __future__ import annotations

import json
from typing import Any

from mlops_pipeline.serving.errors import FieldError, RequestError, loads

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def _bad(field: str | None, message: str) -> RequestError:
    return RequestError(400, f"invalid /invocations body: {message}",
                        [FieldError(None, field, message)], kind="bad_request")


def _columns_to_records(columns: dict[str, Any], field: str) -> list[dict[str, Any]]:
    lists = {k: v if isinstance(v, list) else [v] for k, v in columns.items()}
    sizes = {len(v) for v in lists.values()}
    if len(sizes) > 1:
        raise _bad(field, f"columns have different lengths {sorted(sizes)}")
    n = sizes.pop() if sizes else 0
    return [{k: v[i] for k, v in lists.items()} for i in range(n)]


def to_records(payload: Any) -> list[Any]:
    """The records of an MLflow scoring body (400 naming the format for any other shape)."""
    if not isinstance(payload, dict):
        raise _bad(None, f"expected a JSON object with one of {', '.join(FORMATS)}")
    present = [k for k in FORMATS if k in payload]
    if len(present) != 1:
        raise _bad(None, f"expected exactly one of {', '.join(FORMATS)}, got "
                   f"{present or sorted(payload)[:5]}")
    field = present[0]
    value = payload[field]
    if field == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise _bad(field, "expected {columns: [...], data: [[...], ...]}")
        columns = value.get("columns")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise _bad(field, "columns must be a list of column names")
        rows = value["data"]
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                raise _bad(field, f"data[{i}] must be a list of {len(columns)} values")
        return [dict(zip(columns, row, strict=True)) for row in rows]
    if field == "dataframe_records":
        if not isinstance(value, list):
            raise _bad(field, "expected a list of records")
        return value
    if isinstance(value, dict):  # instances / inputs as columns: {column: [values]}
        return _columns_to_records(value, field)
    if not isinstance(value, list):
        raise _bad(field, "expected a list of records or an object of columns")
    return value


def predict_body(body: bytes) -> bytes:
    """The /predict body (`{"records": [...]}`) of an /invocations body. Written with JSON's
    NaN/Infinity literals and escapes intact, so /predict's checks refuse what they would refuse."""
    return json.dumps({"records": to_records(loads(body))}).encode()


def invocations_answer(predict_answer: bytes) -> tuple[bytes, dict[str, str]]:
    """MLflow's answer (`{"predictions": [...]}`) and the headers naming batch, version and role,
    from /predict's answer bytes."""
    answer = json.loads(predict_answer)
    body = json.dumps({"predictions": [p["prediction"] for p in answer["predictions"]]}).encode()
    headers = {"x-mlops-batch-id": str(answer["batch_id"]),
               "x-mlops-model-version": str(answer["model_version"]), "x-mlops-role": str(answer["role"])}
    return body, headers
