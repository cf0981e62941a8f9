"""The prepared training data as a stored table, built and read a chunk at a time.

`prepare_features` applies `preparation.prepare` (target derived, unlabelled rows dropped, every
row marked train or holdout) to a stored snapshot chunk by chunk and stores the result beside it,
write-once, under the snapshot id and a digest of the spec and this code: the same snapshot and
spec always give the same stored table, and a second run reuses it. The split is exactly
`prepare`'s: what needs all rows (the time cutoff, a stratified split's per-class ranks) is found in
a first pass over the few columns it needs, then applied to each chunk. Each row also carries its
whole-content hash (`ROW_HASH_COLUMN`), which orders rows and draws the training sample.

Readers (`read_features`, `training_rows`, `iter_features`) never hold more than one chunk of the
table plus what they return, and return rows in `prepare`'s order (time then keys for a time
split, content hash otherwise), so in-memory and streamed preparation train the same model.
`training_rows` bounds the train split by `model.max_train_rows`: a seeded sample, stratified by
class, the same rows on every read (`sample_mask`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_pipeline.data import tables
from mlops_pipeline.data.preparation import (
    SPLIT_COLUMN,
    derive_target,
    mark_time_split,
    remix,
    row_hash,
    stratified_holdout,
    time_cutoff,
    time_order,
    time_values,
    unit_interval,
)

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.spec import DatasetSpec

#: Each prepared row's hash over all its columns but the split (`preparation.row_hash`).
ROW_HASH_COLUMN = "_row"


@dataclass(frozen=True)
class FeaturesInfo:
    """A stored prepared table and what preparing it found (kept beside it as JSON)."""

    location: str
    snapshot_id: str
    rows: int
    train_rows: int
    holdout_rows: int
    dropped_unlabelled: int
    strategy: str
    cutoff: str | None = None
    #: Overall share of each class (classification), and the holdout's rows per class.
    class_shares: dict[str, float] = field(default_factory=dict)
    holdout_class_balance: dict[str, int] = field(default_factory=dict)
    positive_rate: float | None = None
    #: First and last timestamp of the labelled rows (None without a time column).
    time_start: str | None = None
    time_end: str | None = None

    @property
    def summary(self) -> dict:
        """What the split did, as `preparation.split_summary` says it."""
        out: dict[str, Any] = {"strategy": self.strategy, "train_rows": self.train_rows,
                               "holdout_rows": self.holdout_rows}
        if self.holdout_class_balance:
            out["holdout_class_balance"] = dict(self.holdout_class_balance)
        return out


@dataclass(frozen=True)
class TrainingSample:
    """Which train rows a model was fitted on (recorded in the run manifest)."""

    rows: int
    of: int
    max_rows: int | None
    seed: int
    stratified_by: str | None

    @property
    def record(self) -> dict:
        """The manifest's `training_sample` entry."""
        return asdict(self)


def features_digest(spec: DatasetSpec) -> str:
    """Names what the prepared table depends on besides the snapshot: the spec and this code."""
    from mlops_pipeline.data import preparation

    h = hashlib.sha256(spec.model_dump_json().encode())
    for module in (preparation.__file__, __file__):
        h.update(Path(module).read_bytes())
    return h.hexdigest()[:16]


def features_location(storage: Storage, snapshot_id: str, spec: DatasetSpec) -> str:
    """Where the prepared table of this snapshot under this spec is stored."""
    return storage.uri(f"features/{snapshot_id}-{features_digest(spec)}.parquet")


def content_columns(df: pd.DataFrame) -> list[str]:
    """The columns a prepared row's content hash covers: all but the split and the hash itself."""
    return [c for c in df.columns if c not in (SPLIT_COLUMN, ROW_HASH_COLUMN)]


def prepare_features(storage: Storage, snapshot_id: str, spec: DatasetSpec,
                     chunk_rows: int = tables.CHUNK_ROWS) -> FeaturesInfo:
    """The snapshot prepared (see the module docstring), stored once; a stored one is reused.
    KeyError / ValueError as `preparation.prepare` raises them."""
    location = features_location(storage, snapshot_id, spec)
    info_uri = location.removesuffix(".parquet") + ".json"
    if storage.exists(location) and storage.exists(info_uri):
        return FeaturesInfo(**json.loads(storage.read_bytes(info_uri)))
    source = storage.snapshot_uri(snapshot_id)
    if not storage.exists(source):
        raise FileNotFoundError(f"snapshot {snapshot_id} not found at {source}")
    strategy = spec.split_strategy
    plan = _split_plan(storage, source, spec, strategy, chunk_rows)
    counts = _Counts(spec)
    frames = _prepared_chunks(storage, source, spec, strategy, plan, counts, chunk_rows)
    tables.write_once(storage, location, frames)
    info = counts.info(location, snapshot_id, strategy, plan.get("cutoff"))
    storage.write_bytes_at(info_uri, json.dumps(asdict(info)).encode(), "application/json")
    return info


def _labelled_chunks(storage: Storage, source: str, spec: DatasetSpec, columns: list[str] | None,
                     chunk_rows: int) -> Iterator[tuple[pd.DataFrame, int]]:
    for chunk in tables.iter_table(storage, source, columns, chunk_rows):
        yield derive_target(chunk, spec)


def _split_plan(storage: Storage, source: str, spec: DatasetSpec, strategy: str,
                chunk_rows: int) -> dict:
    """What the split needs from all labelled rows at once, found from the columns it needs."""
    if strategy == "time":
        t = spec.target
        label_columns = [*t.drop_missing, *([] if t.expression else [t.name])]
        missing = sorted(set(label_columns) - set(tables.arrow_schema(storage, source).names))
        if missing:
            raise KeyError(f"target '{t.name}' needs columns {missing}, which the snapshot lacks")
        needed = sorted({spec.time_column, *label_columns})
        times = []
        for chunk in tables.iter_table(storage, source, needed, chunk_rows):
            labelled = chunk.dropna(subset=label_columns) if label_columns else chunk
            times.append(time_values(labelled, spec))
        if not times or not sum(len(t) for t in times):
            return {"cutoff": None}
        cutoff = time_cutoff(np.concatenate(times), spec.split.holdout_fraction)
        return {"cutoff": str(pd.Timestamp(cutoff)), "cutoff_value": cutoff}
    if strategy != "stratified":
        return {}
    labels, u, whole = [], [], []
    for labelled, _ in _labelled_chunks(storage, source, spec, None, chunk_rows):
        keys = [c for c in spec.key_columns if c in labelled.columns] or content_columns(labelled)
        labels.append(labelled[spec.target.name].to_numpy())
        u.append(unit_interval(row_hash(labelled, keys, spec.split.seed)))
        whole.append(row_hash(labelled, content_columns(labelled)))
    if not labels:
        return {"holdout": np.zeros(0, dtype=bool)}
    return {"holdout": stratified_holdout(np.concatenate(labels), np.concatenate(u),
                                          np.concatenate(whole), spec.split.holdout_fraction)}


def _prepared_chunks(storage: Storage, source: str, spec: DatasetSpec, strategy: str, plan: dict,
                     counts: _Counts, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Each snapshot chunk labelled, split by `plan` and hashed; counted into `counts`."""
    from mlops_pipeline.data.preparation import hash_split

    at, empty = 0, None
    for labelled, dropped in _labelled_chunks(storage, source, spec, None, chunk_rows):
        counts.dropped += dropped
        if labelled.empty:  # an all-unlabelled chunk would type its text columns as nothing
            empty = labelled
            continue
        if strategy == "time":
            cutoff = plan.get("cutoff_value")
            out = mark_time_split(labelled, spec, cutoff) if cutoff is not None else labelled.assign(
                **{SPLIT_COLUMN: "train"})
        elif strategy == "stratified":
            holdout = plan["holdout"][at:at + len(labelled)]
            out = labelled.assign(**{SPLIT_COLUMN: np.where(holdout, "holdout", "train")})
        else:
            out = hash_split(labelled, spec, strategy)
        at += len(labelled)
        out[ROW_HASH_COLUMN] = row_hash(out, content_columns(out))
        counts.add(out)
        yield out
    if counts.rows == 0 and empty is not None:
        yield empty.assign(**{SPLIT_COLUMN: pd.Series(dtype=object),
                              ROW_HASH_COLUMN: pd.Series(dtype=np.uint64)})


class _Counts:
    """Rows, split sizes and class counts accumulated over the prepared chunks."""

    def __init__(self, spec: DatasetSpec):
        self.spec, self.rows, self.train, self.dropped = spec, 0, 0, 0
        self.classes: dict[str, int] = {}
        self.holdout_classes: dict[str, int] = {}
        self.positive = 0.0
        self.times: list = []

    def add(self, chunk: pd.DataFrame) -> None:
        self.rows += len(chunk)
        self.train += int((chunk[SPLIT_COLUMN] == "train").sum())
        column = self.spec.time_column
        if column and column in chunk and len(chunk):
            times = pd.to_datetime(chunk[column])
            self.times += [times.min(), times.max()]
        if self.spec.task != "classification":
            return
        target = chunk[self.spec.target.name]
        for k, v in target.value_counts().items():
            self.classes[k] = self.classes.get(k, 0) + int(v)
        for k, v in target[chunk[SPLIT_COLUMN] == "holdout"].value_counts().items():
            self.holdout_classes[k] = self.holdout_classes.get(k, 0) + int(v)
        if self.spec.target.expression:
            self.positive += float(target.sum())

    def info(self, location: str, snapshot_id: str, strategy: str, cutoff: str | None) -> FeaturesInfo:
        labelled = sum(self.classes.values())
        shares = {str(k): v / labelled for k, v in sorted(self.classes.items())} if labelled else {}
        balance = {str(k): v for k, v in sorted(self.holdout_classes.items())}
        positive = self.positive / self.rows if self.spec.target.expression and self.rows else None
        known = [t for t in self.times if not pd.isna(t)]
        return FeaturesInfo(location, snapshot_id, self.rows, self.train, self.rows - self.train,
                            self.dropped, strategy, cutoff if strategy == "time" else None, shares,
                            balance, positive if self.spec.task == "classification" else None,
                            str(min(known)) if known else None, str(max(known)) if known else None)


def iter_features(storage: Storage, info: FeaturesInfo, columns: list[str] | None = None,
                  chunk_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The stored prepared rows a chunk at a time, in stored order, without the row hash unless
    asked for (all columns, `_split` included, when `columns` is None)."""
    for chunk in tables.iter_table(storage, info.location, columns, chunk_rows):
        yield chunk if columns is not None else chunk.drop(columns=[ROW_HASH_COLUMN])


def _order(df: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """`prepare`'s row order: time then keys for a time split, the content hash otherwise."""
    by = time_order(df, spec) if spec.split_strategy == "time" else [ROW_HASH_COLUMN]
    return df.sort_values(by, kind="stable").reset_index(drop=True) if by else df


def _wanted(info_columns: list[str], columns: list[str] | None, spec: DatasetSpec) -> list[str] | None:
    if columns is None:
        return None
    order = time_order(pd.DataFrame(columns=info_columns), spec) if spec.split_strategy == "time" else []
    return list(dict.fromkeys([*columns, SPLIT_COLUMN, ROW_HASH_COLUMN, *order]))


def read_features(storage: Storage, info: FeaturesInfo, spec: DatasetSpec, part: str | None = None,
                  columns: list[str] | None = None, chunk_rows: int = tables.CHUNK_ROWS) -> pd.DataFrame:
    """The prepared rows of `part` ('train' | 'holdout' | None for all) in `prepare`'s order, with
    `columns` only when given (else every column, `_split` included): what `prepare(...).frame`
    holds, read a chunk at a time."""
    names = tables.arrow_schema(storage, info.location).names
    wanted = _wanted(names, columns, spec)
    parts = [c if part is None else c[c[SPLIT_COLUMN] == part]
             for c in tables.iter_table(storage, info.location, wanted, chunk_rows)]
    df = _order(pd.concat(parts, ignore_index=True), spec)
    keep = [c for c in df.columns if c != ROW_HASH_COLUMN] if columns is None else columns
    return df[keep]


def holdout_for_scoring(storage: Storage, snapshot_id: str, spec: DatasetSpec) -> pd.DataFrame:
    """The holdout of a snapshot under `spec` with what scoring a version needs (features, target,
    `_split`) and what recognises a row in another snapshot (the key columns, or without them
    every column): the stored prepared table, prepared now if there is none."""
    info = prepare_features(storage, snapshot_id, spec)
    names = tables.arrow_schema(storage, info.location).names
    keys = spec.key_columns if set(spec.key_columns or []) <= set(names) and spec.key_columns else [
        c for c in names if c != ROW_HASH_COLUMN]
    columns = list(dict.fromkeys([*spec.features.columns, spec.target.name, SPLIT_COLUMN, *keys]))
    return read_features(storage, info, spec, "holdout", columns)


def sample_mask(row_hashes: np.ndarray, labels: np.ndarray | None, max_rows: int | None,
                seed: int) -> np.ndarray:
    """Which of these rows a bounded sample keeps: all when there are at most `max_rows`; else
    exactly `max_rows`, per class in proportion to its rows (largest remainders), the rows of lowest
    seeded hash. A function of row content and the seed only, so a re-read draws the same rows."""
    n = len(row_hashes)
    if max_rows is None or n <= max_rows:
        return np.ones(n, dtype=bool)
    keys = remix(row_hashes, f"sample-{seed}")
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c)
                                                     for c in np.unique(labels)]
    exact = np.array([max_rows * len(g) / n for g in groups])
    quota = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - quota), kind="stable")[:max_rows - quota.sum()]:
        quota[i] += 1
    mask = np.zeros(n, dtype=bool)
    for rows, k in zip(groups, quota, strict=True):
        mask[rows[np.argsort(keys[rows], kind="stable")[:k]]] = True
    return mask


def training_rows(storage: Storage, info: FeaturesInfo, spec: DatasetSpec, seed: int,
                  columns: list[str] | None = None,
                  chunk_rows: int = tables.CHUNK_ROWS) -> tuple[pd.DataFrame, TrainingSample]:
    """The train split bounded by `model.max_train_rows` (`sample_mask`), in `prepare`'s order:
    one pass over the hashes and labels picks the rows, a second reads only those."""
    stratify = spec.target.name if spec.task == "classification" else None
    head = [SPLIT_COLUMN, ROW_HASH_COLUMN, *([stratify] if stratify else [])]
    hashes, labels = [], []
    for chunk in tables.iter_table(storage, info.location, head, chunk_rows):
        train = chunk[chunk[SPLIT_COLUMN] == "train"]
        hashes.append(train[ROW_HASH_COLUMN].to_numpy(np.uint64))
        if stratify:
            labels.append(train[stratify].to_numpy())
    all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    mask = sample_mask(all_hashes, np.concatenate(labels) if stratify and labels else None,
                       spec.model.max_train_rows, seed)
    names = tables.arrow_schema(storage, info.location).names
    parts, at = [], 0
    for chunk in tables.iter_table(storage, info.location, _wanted(names, columns, spec), chunk_rows):
        train = chunk[chunk[SPLIT_COLUMN] == "train"]
        parts.append(train[mask[at:at + len(train)]])
        at += len(train)
    df = _order(pd.concat(parts, ignore_index=True), spec)
    keep = [c for c in df.columns if c != ROW_HASH_COLUMN] if columns is None else columns
    sample = TrainingSample(int(mask.sum()), len(mask), spec.model.max_train_rows, seed, stratify)
    return df[keep], sample


def sample_train(df: pd.DataFrame, spec: DatasetSpec, seed: int) -> tuple[pd.DataFrame, TrainingSample]:
    """`training_rows` on a prepared frame in memory (`prepare(...).frame`): the same rows."""
    train = df[df[SPLIT_COLUMN] == "train"]
    stratify = spec.target.name if spec.task == "classification" else None
    mask = sample_mask(row_hash(train, content_columns(train)),
                       train[stratify].to_numpy() if stratify else None, spec.model.max_train_rows, seed)
    sample = TrainingSample(int(mask.sum()), len(mask), spec.model.max_train_rows, seed, stratify)
    return train[mask], sample
