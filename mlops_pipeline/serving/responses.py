"""The /predict answer as bytes: one model call's arrays encoded column-wise, with no dict per record.

Typed msgspec structs (one type per answer shape, one per class list) are built straight from the
arrays and encoded in one call, which keeps large answers cheap; a NaN is written as null. A
record outside the contract's domain in a `flag` column carries `out_of_domain` (its columns).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import numpy as np


class _Prediction(msgspec.Struct, gc=False, omit_defaults=True):
    request_id: str
    prediction: Any
    out_of_domain: Any = None  # the record's flagged columns (contract domain policy `flag`)


class _PredictionProba(msgspec.Struct, gc=False, omit_defaults=True):
    request_id: str
    prediction: Any
    probability: float
    out_of_domain: Any = None


class _PredictionProbas(msgspec.Struct, gc=False, omit_defaults=True):
    request_id: str
    prediction: Any
    probability: float
    probabilities: Any  # a `_probabilities_struct` instance: {class: p}
    out_of_domain: Any = None


_encode = msgspec.json.Encoder().encode
_PROBA_STRUCTS: dict[tuple, type] = {}


def _class_key(label: Any) -> str:
    """A class as a JSON object key: strings as they are, numbers and booleans as JSON writes them."""
    return label if isinstance(label, str) else json.dumps(label.item() if hasattr(label, "item") else label)


def _probabilities_struct(labels: tuple) -> type:
    """A struct type whose fields are the classes (renamed to their JSON keys), built once per class
    list: `{class: p}` objects are then built column-wise, like the rest of the answer."""
    key = tuple((type(c), c) for c in labels)
    struct = _PROBA_STRUCTS.get(key)
    if struct is None:
        fields = [f"c{i}" for i in range(len(labels))]
        struct = msgspec.defstruct("_Probabilities", [(f, float) for f in fields], gc=False,
                                   rename={f: _class_key(c) for f, c in zip(fields, labels, strict=True)})
        _PROBA_STRUCTS[key] = struct
    return struct


def predictions_body(head: dict[str, Any], ids: list[str], prediction: np.ndarray,
                     probability: np.ndarray | None, probabilities: np.ndarray | None = None,
                     classes: tuple | None = None,
                     out_of_domain: dict[int, list[str]] | None = None) -> bytes:
    """The /predict response: `{**head, "predictions": [{request_id, prediction[, probability,
    probabilities]}]}` as compact JSON, one item per record in request order.

    `prediction` is the class label in the dataset's own type (or the value); `probability` the
    positive class's (binary) or the predicted class's (multi-class); `probabilities`, given the
    (n, k) matrix and the model's `classes`, every class's probability keyed by class.
    `out_of_domain` ({record: columns}) adds `out_of_domain: [columns]` to the records it names."""
    preds = prediction.tolist()
    if probability is None:
        items = list(map(_Prediction, ids, preds))
    elif probabilities is None or classes is None:
        items = list(map(_PredictionProba, ids, preds, probability.astype(np.float64).tolist()))
    else:
        struct = _probabilities_struct(tuple(classes))
        columns = np.asarray(probabilities, dtype=np.float64).T.tolist()
        items = list(map(_PredictionProbas, ids, preds, probability.astype(np.float64).tolist(),
                         map(struct, *columns)))
    for record, columns in (out_of_domain or {}).items():
        items[record].out_of_domain = columns
    return _encode({**head, "predictions": items})
