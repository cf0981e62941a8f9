"""How a scored request becomes one stored row, and stored rows become one row per record.

A request's features are one LZ4-compressed UTF-8 JSON array (JSON records repeat their keys, so
they compress well for little CPU); predictions and probabilities are float64 little-endian arrays.
A classifier's prediction is stored as the index of its class in the version's class list
(`classes`, JSON, so string, int and bool classes round-trip in their own type); a multi-class
answer keeps every class's probability as an (n, k) matrix. Labels are JSON text in the dataset's
own label type. Records answered with values outside the contract's domain (policy `flag`) are
marked as JSON {record: [columns]}, read back on request as each record's `out_of_domain` list
(None when unmarked). Decoding is column-wise across batches, so reading many small requests stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from mlops_pipeline.deployment.tags import CHAMPION
from mlops_pipeline.monitoring.predictions.ids import MAX_BATCH_RECORDS, new_batch_id, request_ids
from mlops_pipeline.monitoring.predictions.schema import COLUMNS, OUT_OF_DOMAIN, PROBABILITIES

encode = msgspec.json.Encoder().encode
decode = msgspec.json.decode

_F8 = np.dtype("<f8")
_CODEC = "lz4"


@dataclass(frozen=True)
class PredictionBatch:
    """The predictions of one request (or one shadow job), column-wise, features already JSON.

    `features` is the UTF-8 JSON array of the records' feature objects (the server encodes its
    typed records in one call); `from_records` builds one from plain dicts.
    """

    batch_id: str
    role: str
    ts: datetime
    model_name: str
    model_version: str
    features: bytes
    prediction: Sequence[Any] | np.ndarray  # class index (with `classes`) or value
    probability: Sequence[Any] | np.ndarray | None
    latency_ms: float
    classes: tuple | None = None  # the model's classes (classification)
    positive: int | None = None  # index of the positive class (binary)
    probabilities: np.ndarray | None = None  # (n, k), multi-class only
    out_of_domain: Mapping[int, Sequence[str]] | None = None  # record -> flagged columns

    def __len__(self) -> int:
        return len(self.prediction)

    @property
    def request_ids(self) -> list[str]:
        """The request ids of this batch's records, in record order."""
        return request_ids(self.batch_id, len(self))

    @classmethod
    def from_records(cls, features: Sequence[Mapping[str, Any]], prediction: Sequence[Any],
                     probability: Sequence[Any] | None = None, *, role: str = CHAMPION,
                     ts: datetime | None = None, model_name: str = "model", model_version: str = "1",
                     latency_ms: float = 0.0, batch_id: str | None = None,
                     classes: Sequence[Any] | None = None, positive: int | None = None,
                     probabilities: np.ndarray | None = None) -> PredictionBatch:
        """With `classes`, `prediction` holds class labels (mapped to their index here)."""
        if classes is not None:
            classes = tuple(classes)
            prediction = pd.Index(list(classes)).get_indexer(list(prediction)).astype(np.float64)
        return cls(batch_id or new_batch_id(), role, ts or datetime.now(UTC), model_name, model_version,
                   encode(list(features)), prediction, probability, latency_ms, classes, positive,
                   probabilities)


# ---- encoding ----------------------------------------------------------------------------------

def compress(data: bytes) -> bytes:
    """LZ4 through pyarrow (imported on first use)."""
    import pyarrow as pa

    return pa.compress(data, codec=_CODEC, asbytes=True)


def decompress(data: bytes, size: int) -> bytes:
    """The inverse of `compress`, given the uncompressed size."""
    import pyarrow as pa

    return pa.decompress(data, decompressed_size=size, codec=_CODEC, asbytes=True)


def float64_bytes(values: Sequence[Any] | np.ndarray | None, n: int) -> bytes | None:
    """float64 little-endian bytes (None as NaN): one copy, no per-value conversion."""
    if values is None:
        return None
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        out = values.astype(_F8, copy=False)
    else:
        out = np.array([np.nan if v is None else float(v) for v in values], dtype=_F8)
    if out.shape != (n,):
        raise ValueError(f"{out.size} values for {n} records")
    return out.tobytes()


def classes_json(classes: tuple) -> str:
    """A class list as JSON text (numpy scalars as their Python value)."""
    return encode([v.item() if isinstance(v, np.generic) else v for v in classes]).decode()


def matrix_bytes(matrix: np.ndarray | None, n: int, classes: tuple | None) -> bytes | None:
    """An (n, k) probability matrix as row-major float64 bytes; its shape must match."""
    if matrix is None:
        return None
    out = np.ascontiguousarray(matrix, dtype=_F8)
    k = len(classes) if classes is not None else -1
    if out.shape != (n, k):
        raise ValueError(f"probabilities of shape {out.shape} for {n} records and {k} classes")
    return out.tobytes()


def batch_values(b: PredictionBatch) -> dict[str, Any]:
    """A batch as the column values of its `prediction_batches` row."""
    n = len(b)
    if n > MAX_BATCH_RECORDS:
        raise ValueError(f"a batch holds at most {MAX_BATCH_RECORDS} records, not {n}")
    return {
        "batch_id": b.batch_id, "role": b.role, "ts": b.ts, "model_name": b.model_name,
        "model_version": str(b.model_version), "records": n, "latency_ms": float(b.latency_ms),
        "features": compress(b.features), "features_size": len(b.features),
        "prediction": float64_bytes(b.prediction, n),
        "probability": float64_bytes(b.probability, n),
        "classes": None if b.classes is None else classes_json(b.classes),
        "positive": None if b.positive is None else int(b.positive),
        "probabilities": matrix_bytes(b.probabilities, n, b.classes),
        "out_of_domain": domain_marks_json(b.out_of_domain, n),
    }


def domain_marks_json(marks: Mapping[int, Sequence[str]] | None, n: int) -> str | None:
    """{record: [columns]} as JSON text (None when no record is marked)."""
    if not marks:
        return None
    if any(not 0 <= int(k) < n for k in marks):
        raise ValueError(f"out_of_domain names records outside 0..{n - 1}: {sorted(marks)}")
    return encode({str(int(k)): list(v) for k, v in marks.items()}).decode()


def _domain_marks(rows: Sequence[Any], counts: np.ndarray) -> list[Any]:
    """Each record's flagged columns (a list) or None, from the batches' `out_of_domain` JSON (a
    store from before the column reads as no marks)."""
    out: list[Any] = [None] * int(counts.sum())
    start = 0
    for r, n in zip(rows, counts.tolist(), strict=True):
        raw = getattr(r, "out_of_domain", None)
        if raw:
            for k, columns in decode(raw).items():
                out[start + int(k)] = columns
        start += n
    return out


def label_json(label: Any) -> str:
    """A label as stored: JSON text of a scalar (numpy scalars as their Python value)."""
    return encode(label.item() if isinstance(label, np.generic) else label).decode()


def label_value(stored: Any) -> Any:
    """A stored label back in its own type (a store from before JSON labels holds floats)."""
    return decode(stored) if isinstance(stored, str | bytes) else stored


# ---- decoding ----------------------------------------------------------------------------------

def _floats(rows: Sequence[Any], column: str, counts: np.ndarray) -> np.ndarray:
    """One float64 array of every batch's values in `column`, in order (NaN where a batch has none)."""
    parts = [bytes(getattr(r, column)) if getattr(r, column) is not None
             else np.full(int(n), np.nan, dtype=_F8).tobytes() for r, n in zip(rows, counts, strict=True)]
    out = np.frombuffer(b"".join(parts), dtype=_F8).astype(np.float64)
    if len(out) != int(counts.sum()):
        raise ValueError(f"{len(out)} stored {column} values for {int(counts.sum())} records")
    return out


def _numeric_or_object(values: list[Any] | np.ndarray) -> np.ndarray:
    """float64 when every value is a number (not a bool), else an object array of the values."""
    arr = np.asarray(values, dtype=object)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in pd.unique(arr)):
        return arr.astype(np.float64)
    return arr


def _class_labels(rows: Sequence[Any], counts: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Predictions as labels: a classifier's stored class index mapped through its batch's class
    list (one lookup per distinct class list, not per record); values pass through."""
    lists = [r.classes for r in rows]
    if all(c is None for c in lists):
        return index
    out = index.astype(object)
    numeric = True
    for text in {c for c in lists if c is not None}:
        labels = decode(text)
        numeric = numeric and all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels)
        mask = np.repeat(np.fromiter((c == text for c in lists), dtype=bool, count=len(lists)), counts)
        out[mask] = np.asarray(labels, dtype=object)[index[mask].astype(np.int64)]
    return out.astype(np.float64) if numeric else out


def _probability_dicts(rows: Sequence[Any], counts: np.ndarray, probability: np.ndarray) -> list[Any]:
    """Each record's {class: probability}: from the stored matrix (multi-class) or the positive
    class's probability (binary); None for regression."""
    out: list[Any] = []
    start = 0
    for r, n in zip(rows, counts.tolist(), strict=True):
        if r.classes is None:
            out.extend([None] * n)
        else:
            labels = decode(r.classes)
            if r.probabilities is not None:
                matrix = np.frombuffer(bytes(r.probabilities), dtype=_F8).reshape(n, len(labels))
                out.extend(dict(zip(labels, row, strict=True)) for row in matrix.tolist())
            else:
                pos = 1 if r.positive is None else int(r.positive)
                pos_label, neg_label = labels[pos], labels[1 - pos]
                out.extend({neg_label: 1.0 - p, pos_label: p} for p in probability[start:start + n].tolist())
        start += n
    return out


def explode(rows: Sequence[Any], label_rows: Sequence[Any], expand_features: bool,
            probabilities: bool = False, out_of_domain: bool = False) -> pd.DataFrame:
    """Batch rows -> one row per record (request ids derived), labels joined by (batch, record).

    Column-wise across batches (one `repeat` per batch-level column, one buffer per float array),
    so a day of single-record requests costs a few microseconds per request to read."""
    if not rows:
        return pd.DataFrame(columns=COLUMNS + ([PROBABILITIES] if probabilities else [])
                            + ([OUT_OF_DOMAIN] if out_of_domain else []))
    counts = np.array([int(r.records) for r in rows], dtype=np.int64)
    ids: list[str] = []
    features: list[Any] = []
    for r, n in zip(rows, counts.tolist(), strict=True):
        feats = decode(decompress(bytes(r.features), int(r.features_size)))
        if len(feats) != n:
            raise ValueError(f"batch {r.batch_id} ({r.role}) holds {len(feats)} feature rows for {n} records")
        features.extend(feats)
        ids.extend(request_ids(r.batch_id, n))

    def per_batch(column: str) -> np.ndarray:
        return np.repeat(np.array([getattr(r, column) for r in rows], dtype=object), counts)

    starts = np.repeat(np.cumsum(counts) - counts, counts)
    frame = pd.DataFrame({
        "request_id": ids,
        **{c: per_batch(c) for c in ("role", "batch_id", "model_name", "model_version")},
        "ts": pd.to_datetime(per_batch("ts").tolist()),
        "record": np.arange(int(counts.sum()), dtype=np.int64) - starts,
        "prediction": _class_labels(rows, counts, _floats(rows, "prediction", counts)),
        "probability": _floats(rows, "probability", counts),
        "latency_ms": np.repeat(np.array([r.latency_ms for r in rows], dtype=np.float64), counts),
    })
    labels = pd.DataFrame([tuple(x) for x in label_rows], columns=["batch_id", "record", "label", "label_ts"])
    labels["record"] = labels["record"].astype(np.int64)
    labels["label"] = _numeric_or_object([label_value(v) for v in labels["label"]])
    frame = frame.merge(labels, on=["batch_id", "record"], how="left", sort=False)
    if len(label_rows):
        frame["label_ts"] = pd.to_datetime(frame["label_ts"].tolist())
    else:
        frame["label_ts"] = pd.Series([pd.NaT] * len(frame), dtype=frame["ts"].dtype)
    extra = []
    if probabilities:
        frame[PROBABILITIES] = _probability_dicts(rows, counts, frame["probability"].to_numpy())
        extra = [PROBABILITIES]
    if out_of_domain:
        frame[OUT_OF_DOMAIN] = _domain_marks(rows, counts)
        extra.append(OUT_OF_DOMAIN)
    if expand_features:
        feats = pd.DataFrame(features, index=frame.index)
        frame = pd.concat([frame, feats], axis=1)
        ordered = ([c for c in COLUMNS if c != "features"] + extra
                   + [c for c in feats.columns if c not in COLUMNS and c not in extra])
    else:
        frame["features"] = [encode(f).decode() for f in features]
        ordered = COLUMNS + extra
    frame = frame.sort_values(["ts", "request_id", "role"], kind="stable").reset_index(drop=True)
    return frame[ordered]
