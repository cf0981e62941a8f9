"""The Open Inference Protocol (KServe v2, as MLServer and Triton speak it), on the /predict path.

`POST /v2/models/{name}/infer` takes columnar tensors, one per contract column (MLServer's pandas
codec): `{"id"?, "inputs": [{"name": column, "shape": [n] or [n, 1], "datatype": "FP64", "data":
[...]}, ...]}`. They become the records of a /predict request, so every answer is checked against
the contract, routed (canary, shadow) and captured like one. The answer's `outputs` are `predict`
(the class label or value per record) and, for a classifier, `probability`; `parameters` carry the
batch id (request ids `<batch_id>-<record>`) and the answering role. Metadata and health:
`GET /v2`, `GET /v2/models/{name}`, `GET /v2/health/live`, `GET /v2/health/ready`,
`GET /v2/models/{name}/ready`.
"""

from __future__ import annotations

import json
from typing import Any

from mlops_pipeline.serving.errors import FieldError, RequestError, loads

#: The contract's kinds (serving.inputs) as v2 datatypes.
DATATYPES = {"int": "INT64", "float": "FP64", "bool": "BOOL", "str": "BYTES", "datetime": "BYTES",
             "any": "BYTES"}


def _bad(field: str | None, message: str) -> RequestError:
    return RequestError(400, f"invalid inference request: {message}", [FieldError(None, field, message)],
                        kind="bad_request")


def _flat(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    out: list[Any] = []
    for item in data:
        out.extend(_flat(item) if isinstance(item, list) else [item])
    return out


def to_records(payload: Any) -> tuple[list[dict[str, Any]], Any]:
    """The records of an inference request and its `id` (400 naming what is wrong otherwise)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise _bad("inputs", "expected {inputs: [{name, shape, datatype, data}, ...]}")
    columns: dict[str, list[Any]] = {}
    for i, tensor in enumerate(payload["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise _bad(f"inputs[{i}]", "each input needs a name (the contract column)")
        shape = tensor.get("shape")
        values = _flat(tensor.get("data"))
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) for d in shape):
            raise _bad(tensor["name"], "shape must be a list of integers, e.g. [n] or [n, 1]")
        if any(d != 1 for d in shape[1:]) or len(values) != shape[0]:
            raise _bad(tensor["name"], f"expected one value per record (shape [n] or [n, 1]) and "
                       f"{shape[0]} values, got shape {shape} and {len(values)} values")
        columns[tensor["name"]] = values
    sizes = {len(v) for v in columns.values()}
    if len(sizes) != 1:
        raise _bad("inputs", f"inputs have different lengths {sorted(sizes)}")
    n = sizes.pop()
    return [{c: v[i] for c, v in columns.items()} for i in range(n)], payload.get("id")


def predict_body(body: bytes) -> tuple[bytes, Any]:
    """The /predict body of an inference request (JSON literals kept, so /predict's checks refuse
    what they would refuse) and the request's id."""
    records, rid = to_records(loads(body))
    return json.dumps({"records": records}).encode(), rid


def _datatype(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "INT64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) or v is None for v in values):
        return "FP64"
    return "BYTES"


def infer_answer(predict_answer: bytes, rid: Any) -> bytes:
    """The inference response from /predict's answer bytes."""
    answer = json.loads(predict_answer)
    preds = answer["predictions"]
    labels = [p["prediction"] for p in preds]
    outputs = [{"name": "predict", "shape": [len(labels), 1], "datatype": _datatype(labels), "data": labels}]
    if preds and "probability" in preds[0]:
        outputs.append({"name": "probability", "shape": [len(preds), 1], "datatype": "FP64",
                        "data": [p["probability"] for p in preds]})
    return json.dumps({
        "model_name": answer["model_name"], "model_version": answer["model_version"],
        "id": str(rid) if rid is not None else answer["batch_id"],
        "parameters": {"batch_id": answer["batch_id"], "role": answer["role"]},
        "outputs": outputs,
    }).encode()


def model_metadata(name: str, champion: Any, fields: list[tuple[str, str, bool]]) -> dict[str, Any]:
    """`GET /v2/models/{name}`: the served versions, the flavor and the contract as tensors."""
    return {
        "name": name,
        "versions": [champion.version] if champion is not None else [],
        "platform": f"mlflow-{champion.flavor}" if champion is not None else "mlflow",
        "inputs": [{"name": c, "datatype": DATATYPES.get(kind, "BYTES"), "shape": [-1, 1]}
                   for c, kind, _ in fields],
        "outputs": [{"name": "predict", "datatype": "BYTES", "shape": [-1, 1]},
                    {"name": "probability", "datatype": "FP64", "shape": [-1, 1]}],
    }
