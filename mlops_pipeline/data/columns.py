"""What landed data holds, read cheaply, so a config naming a column the data lacks (or a gate metric
its target cannot have) fails before anything runs, with `spec.check_columns`' one line.

Only schemas are read (a Parquet footer, a CSV header); the target's classes are counted only when
a gate metric needs a binary target (f1, brier), reading the label's source columns alone.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import pandas as pd

from mlops_pipeline.spec import DatasetSpec, check_columns, check_gate_classes

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage

S3 = "s3://"


def file_columns(storage: Storage, location: str, fmt: str) -> list[str]:
    """One landed file's column names: a Parquet footer (ranged GETs on S3), a CSV header line."""
    if fmt == "parquet":
        from mlops_pipeline.data.tables import parquet_metadata

        return list(parquet_metadata(storage, location).schema.to_arrow_schema().names)
    if location.startswith(S3):
        head = storage.read_bytes(location)[:1 << 16]  # the header is the first line
        return [str(c) for c in pd.read_csv(io.BytesIO(head), nrows=0).columns]
    return [str(c) for c in pd.read_csv(location, nrows=0).columns]


def landed_columns(storage: Storage, pattern: str, fmt: str) -> list[str] | None:
    """Every column any landed batch has (first seen first); None when nothing is landed."""
    files = storage.list_uris(pattern)
    if not files:
        return None
    seen: dict[str, None] = {}
    for location in files:
        seen.update(dict.fromkeys(file_columns(storage, location, fmt)))
    return list(seen)


def _binary_only_gate(spec: DatasetSpec) -> bool:
    from mlops_pipeline.training.metrics import BINARY_ONLY_METRICS

    return spec.task == "classification" and bool(BINARY_ONLY_METRICS & set(spec.gate))


def landed_class_count(storage: Storage, pattern: str, spec: DatasetSpec) -> int:
    """Distinct values of the target over every landed batch (derived as in training), reading only
    the label's source columns."""
    from mlops_pipeline.data.preparation import derive_target
    from mlops_pipeline.spec import required_source_columns

    needed = [c for c, field in required_source_columns(spec).items() if field.startswith("target.")]
    classes: set = set()
    for location in storage.list_uris(pattern):
        if not set(needed) <= set(file_columns(storage, location, spec.source.format)):
            continue  # a batch without labels (null there) adds no class
        frame = storage.read_table(location, spec.source.format, needed)
        labelled, _ = derive_target(frame, spec)
        classes.update(labelled[spec.target.name].dropna().unique().tolist())
    return len(classes)


def check_frame(spec: DatasetSpec, frame: pd.DataFrame, where: str) -> None:
    """`check_landed_data` for data in memory (a file about to land): its columns, then its
    target's classes when a gate metric needs a binary target."""
    check_columns(spec, frame.columns, where)
    if _binary_only_gate(spec):
        from mlops_pipeline.data.preparation import derive_target

        labelled, _ = derive_target(frame, spec)
        check_gate_classes(spec, int(labelled[spec.target.name].nunique()), where)


def check_landed_data(spec: DatasetSpec, storage: Storage) -> None:
    """Raise `spec.ConfigError` (one line) when the landed data lacks a column the spec reads, or
    its target has more classes than a gate metric allows; nothing landed passes (the run says so)."""
    pattern = storage.landing_glob(spec)
    where = f"the landed data ({pattern})"
    columns = landed_columns(storage, pattern, spec.source.format)
    if columns is None:
        return
    check_columns(spec, columns, where)
    if _binary_only_gate(spec):
        check_gate_classes(spec, landed_class_count(storage, pattern, spec), where)
