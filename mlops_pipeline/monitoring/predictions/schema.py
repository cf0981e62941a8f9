"""The prediction store's tables: one row per scored request and role, labels beside them.

`prediction_batches` holds a request's records column-wise (features as one compressed JSON array,
predictions and probabilities as float64 arrays); `prediction_labels` holds ground truth keyed by
(batch, record), so a label never rewrites a captured row. `migrate` brings an older store up to
this schema in place.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.exc import DBAPIError

metadata = MetaData()

batches_table = Table(
    "prediction_batches",
    metadata,
    Column("batch_id", String(32), primary_key=True,
           comment="The HTTP request: a UUIDv7 (hex) whose low 24 bits are zero."),
    Column("role", String(16), primary_key=True, comment="champion | canary | shadow"),
    Column("ts", DateTime(timezone=True), nullable=False, comment="UTC time the batch was scored."),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("records", Integer, nullable=False, comment="Records in the request."),
    Column("latency_ms", Float, nullable=False, comment="Server time from receipt to prediction."),
    Column("features", LargeBinary, nullable=False,
           comment="LZ4-compressed UTF-8 JSON array: each record's feature values (and key fields)."),
    Column("features_size", Integer, nullable=False, comment="Uncompressed bytes of `features`."),
    Column("prediction", LargeBinary, nullable=False,
           comment="float64 little-endian, one per record: class index into `classes` "
           "(classification) or value."),
    Column("probability", LargeBinary, nullable=True,
           comment="float64 little-endian, one per record: positive-class probability (binary), "
           "predicted class's probability (multi-class)."),
    Column("classes", Text, nullable=True,
           comment="JSON array: the version's classes in probability-column order (classification)."),
    Column("positive", Integer, nullable=True, comment="Index of the positive class (binary)."),
    Column("probabilities", LargeBinary, nullable=True,
           comment="float64 little-endian, records x classes, row-major (multi-class only)."),
    Column("out_of_domain", Text, nullable=True,
           comment="JSON object {record: [columns]}: values outside the contract's domain that were "
           "answered (domain policy flag); null when none."),
    Index("ix_prediction_batches_ts", "ts"),
)

labels_table = Table(
    "prediction_labels",
    metadata,
    Column("batch_id", String(32), primary_key=True),
    Column("record", Integer, primary_key=True, comment="The record's index in its batch."),
    Column("label", Text, nullable=False,
           comment="Ground truth from POST /feedback, as JSON in the dataset's own label type."),
    Column("label_ts", DateTime(timezone=True), nullable=False),
)

#: What `read_window` and `get` return: one row per (record, role).
COLUMNS = ["request_id", "role", "ts", "batch_id", "model_name", "model_version", "features",
           "prediction", "probability", "latency_ms", "label", "label_ts"]
#: Added by `read_window(..., probabilities=True)`: each record's {class: probability}.
PROBABILITIES = "probabilities"
#: Added by `read_window(..., out_of_domain=True)`: each record's columns answered outside the
#: contract's domain (policy flag), or None.
OUT_OF_DOMAIN = "out_of_domain"
#: The columns of an insert into `prediction_batches`, in table order.
BATCH_INSERT = [c.name for c in batches_table.columns]


def create(engine: Engine) -> None:
    """Create the tables if missing and migrate older ones (safe when several processes race)."""
    from mlops_pipeline.monitoring.predictions.engine import create_tables

    create_tables(engine, metadata)
    migrate(engine)


def migrate(engine: Engine) -> None:
    """Bring a store created before classes, JSON labels and domain marks up to this schema: the new
    nullable columns are added; on Postgres the float label column becomes text (a float is valid JSON)."""
    from sqlalchemy import inspect, text

    inspector = inspect(engine)
    have = {c["name"]: c for c in inspector.get_columns(batches_table.name)}
    missing = [c for c in ("classes", "positive", "probabilities", "out_of_domain") if c not in have]
    label_type = {c["name"]: c for c in inspector.get_columns(labels_table.name)}["label"]["type"]
    alter_label = engine.dialect.name == "postgresql" and not isinstance(label_type, String)
    if not missing and not alter_label:
        return
    prep = engine.dialect.identifier_preparer
    for name in missing:
        kind = batches_table.c[name].type.compile(dialect=engine.dialect)
        # another process may add it meanwhile: then this one fails, harmlessly
        with contextlib.suppress(DBAPIError), engine.connect() as conn, conn.begin():
            conn.execute(text(f"ALTER TABLE {prep.format_table(batches_table)} "
                              f"ADD COLUMN {prep.quote(name)} {kind}"))
    with engine.connect() as conn, conn.begin():
        if alter_label:
            conn.execute(text(f"ALTER TABLE {prep.format_table(labels_table)} ALTER COLUMN label "
                              "TYPE TEXT USING label::text"))
