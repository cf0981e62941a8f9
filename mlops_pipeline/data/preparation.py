"""From a snapshot to a labelled, split frame: target derivation and the train/holdout split.

The split (`split:` in the spec) is a function of row content, never of file or row order, so a
snapshot id and the spec fully determine which rows are train and which are holdout:
- `time`: the most recent `holdout_fraction` of rows by the time column (a timestamp cutoff), which
  is what a model meets in production;
- `random`: a row is holdout when a seeded hash of its key columns (of the whole row when no keys
  are configured), mapped to [0, 1), falls below the fraction;
- `stratified`: per class, exactly round(fraction * class rows) rows, those of lowest hash;
- `group`: the hash of the group column's value decides, so a group never straddles the split.
Without a time column the prepared frame is ordered by row content as well, so the same rows
landed in another order train the same model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops_pipeline.spec import DatasetSpec

SPLIT_COLUMN = "_split"


@dataclass(frozen=True)
class Prepared:
    """`prepare`'s result: the labelled frame with its `_split` column, the count of unlabelled rows
    dropped, and the split's strategy and time cutoff."""

    frame: pd.DataFrame
    dropped_unlabelled: int
    cutoff: str | None  # the holdout's first timestamp (strategy `time` only)
    strategy: str = "time"
    class_column: str | None = None  # the target, for classification

    @property
    def summary(self) -> dict:
        """Strategy, holdout size and the holdout's class balance (for metadata and manifests)."""
        return split_summary(self.frame, self.strategy, self.class_column)


def derive_target(df: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, int]:
    """Drop rows with no label, then compute the target; returns the frame and rows dropped."""
    t = spec.target
    needed = [*t.drop_missing] + ([] if t.expression else [t.name])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise KeyError(f"target '{t.name}' needs columns {missing}, which the snapshot lacks")
    labelled = df.dropna(subset=needed) if needed else df
    dropped = len(df) - len(labelled)
    out = labelled.copy()
    if t.expression:
        try:
            values = out.eval(t.expression)
        except Exception as exc:
            raise ValueError(f"cannot derive target '{t.name}' from {t.expression!r}: {exc}") from exc
        out[t.name] = values.astype(int) if spec.task == "classification" else values
    return out.reset_index(drop=True), dropped


def feedback_label(label: Any, spec: Any, classes: Sequence[Any] = ()) -> tuple[Any, str | None]:
    """The label as `POST /feedback` stores it (the dataset's own label type) or why it is not one:
    a derived target or regression takes a number, a classification target a class of the model's
    type (string, boolean or number, judged by `classes`, the answering model's classes). One
    rule for `POST /feedback` and `labels import`, beside the derivation that turns the label
    into the target (`target_from_feedback`)."""
    numeric = isinstance(label, int | float) and not isinstance(label, bool)
    if spec.target.expression or spec.task == "regression":
        if isinstance(label, bool):
            return int(label), None
        if numeric:
            return float(label), None
        return None, f"expected a number (the observed '{spec.label_source}')"
    labels = tuple(classes)
    if any(isinstance(c, str) for c in labels):
        if not (isinstance(label, str) and label):
            return None, f"expected a string class of '{spec.target.name}', e.g. {labels[0]!r}"
        return _known_class(label, labels, spec)
    if labels and all(isinstance(c, bool) for c in labels):
        return _known_class(label, labels, spec) if isinstance(label, bool) else (
            None, f"expected true or false (the class of '{spec.target.name}')")
    if labels:
        return _known_class(label, labels, spec) if numeric else (
            None, f"expected a number (the class of '{spec.target.name}')")
    if isinstance(label, str | bool) or numeric:
        return label, None
    return None, f"expected the class of '{spec.target.name}' (a string, number or boolean)"


def _known_class(label: Any, classes: tuple, spec: Any) -> tuple[Any, str | None]:
    """`label` when it is one of the model's `classes`, else why not, naming the allowed ones (a
    label the model cannot predict would count as an error on every answer)."""
    if any(label == c and isinstance(label, bool) == isinstance(c, bool) for c in classes):
        return label, None
    allowed = ", ".join(repr(c.item() if hasattr(c, "item") else c) for c in sorted(classes, key=str))
    return None, f"{label!r} is not a class of '{spec.target.name}': use one of {allowed}"


def target_from_feedback(labels, spec: DatasetSpec) -> np.ndarray:
    """Feedback carries the observed label source (e.g. arr_delay minutes); the target comes from it
    through the same derivation as in training, so production quality means what holdout quality
    means. A target that is a column itself comes back as sent, in its own type (a string class
    stays a string; numbers are floats for regression)."""
    if not spec.target.expression:
        values = pd.Series(list(labels), dtype=object)
        if spec.task == "regression" or pd.api.types.infer_dtype(values) in ("integer", "floating",
                                                                            "mixed-integer-float"):
            return values.to_numpy(dtype=float) if spec.task == "regression" else _numbers(values)
        return values.to_numpy()
    truth, _ = derive_target(pd.DataFrame({spec.label_source: np.asarray(labels, dtype=float)}), spec)
    return truth[spec.target.name].to_numpy()


def _numbers(values: pd.Series) -> np.ndarray:
    """Numeric class labels as int64 when they are whole numbers (JSON 3 and 3.0 are one class)."""
    floats = values.to_numpy(dtype=float)
    return floats.astype(np.int64) if np.all(np.mod(floats, 1) == 0) else floats


def time_split(df: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, str]:
    """Mark the most recent `holdout_fraction` of rows (by time) as holdout, rows ordered by
    `time_order` (the order in which a snapshot was stored does not matter)."""
    cutoff = time_cutoff(time_values(df, spec), spec.split.holdout_fraction)
    return mark_time_split(df, spec, cutoff), str(pd.Timestamp(cutoff))


def time_values(df: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
    """The time column as datetime64 values; ValueError when it has nulls (no split by time then)."""
    times = pd.to_datetime(df[spec.time_column])
    if times.isna().any():
        raise ValueError(f"time column '{spec.time_column}' has nulls; cannot split by time")
    return times.to_numpy()


def time_cutoff(times: np.ndarray, fraction: float) -> np.datetime64:
    """The holdout's first timestamp: rows at or after it are the most recent `fraction`."""
    ordered = np.sort(times)
    return ordered[int(len(ordered) * (1 - fraction))]


def mark_time_split(df: pd.DataFrame, spec: DatasetSpec, cutoff) -> pd.DataFrame:
    """`_split` by the time cutoff, rows in `time_order`: what `time_split` does, for any chunk of
    the labelled rows once the cutoff of all of them is known."""
    out = df.copy()
    out[SPLIT_COLUMN] = np.where(pd.to_datetime(df[spec.time_column]).to_numpy() >= cutoff,
                                 "holdout", "train")
    order = time_order(out, spec)
    return out.sort_values(order, kind="stable").reset_index(drop=True) if order else out


def time_order(df: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """The columns prepared rows of a time split are ordered by: the time column, then the keys."""
    return [c for c in [spec.time_column, *spec.key_columns] if c and c in df.columns]


def row_hash(df: pd.DataFrame, columns: list[str], seed: int | None = None) -> np.ndarray:
    """A uint64 per row from the values of `columns` (sorted, canonical dtypes, index ignored), so
    equal content hashes equally however it was stored. `seed` re-mixes every hash (pandas' own
    `hash_key` reaches only text columns), so another seed draws another split."""
    from mlops_pipeline.data.snapshots import canonicalize

    canon = canonicalize(df[sorted(set(columns))])
    h = pd.util.hash_pandas_object(canon, index=False).to_numpy(np.uint64)
    return h if seed is None else remix(h, f"split-{seed}")


def remix(hashes: np.ndarray, salt: str) -> np.ndarray:
    """Every uint64 hash mixed with `salt` (splitmix64's finalizer): another salt, another order,
    each as uniform as the input."""
    h = np.asarray(hashes, dtype=np.uint64)
    mix = int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "little")
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps
        h = h ^ np.uint64(mix)
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def unit_interval(hashes: np.ndarray) -> np.ndarray:
    """Hashes mapped uniformly to [0, 1) (the top 53 bits, exact in a float64)."""
    return (hashes >> np.uint64(11)).astype("float64") / float(2**53)


def hash_split(df: pd.DataFrame, spec: DatasetSpec, strategy: str) -> pd.DataFrame:
    """`random`, `stratified` or `group` (see the module docstring): holdout rows by content hash."""
    fraction, seed = spec.split.holdout_fraction, spec.split.seed
    content = [c for c in df.columns if c != SPLIT_COLUMN]
    whole_row = row_hash(df, content)  # breaks ties between rows sharing a key, and orders rows
    if strategy == "group":
        group = spec.split.group_column
        if group not in df.columns:
            raise KeyError(f"split.group_column '{group}' is not a column of the snapshot; "
                           f"columns: {sorted(map(str, df.columns))}")
        u = unit_interval(row_hash(df, [group], seed))
        holdout = u < fraction
    else:
        keys = [c for c in spec.key_columns if c in df.columns] or content
        u = unit_interval(row_hash(df, keys, seed))
        if strategy == "random":
            holdout = u < fraction
        elif strategy == "stratified":
            holdout = stratified_holdout(df[spec.target.name].to_numpy(), u, whole_row, fraction)
        else:
            raise ValueError(f"split.strategy: unknown {strategy!r}")
    out = df.copy()
    out[SPLIT_COLUMN] = np.where(holdout, "holdout", "train")
    # Row order by content too: the same rows landed in another order train the same model.
    order = np.argsort(whole_row, kind="stable")
    return out.iloc[order].reset_index(drop=True)


def stratified_holdout(labels: np.ndarray, u: np.ndarray, whole_row: np.ndarray,
                       fraction: float) -> np.ndarray:
    """Per class, exactly round(fraction * class rows) holdout rows: those of lowest key hash `u`
    (ties broken by the whole row's hash, then by position)."""
    holdout = np.zeros(len(labels), dtype=bool)
    for cls in pd.unique(labels):
        rows = np.flatnonzero(labels == cls)
        take = int(round(fraction * len(rows)))
        holdout[rows[np.lexsort((whole_row[rows], u[rows]))[:take]]] = True
    return holdout


def split_summary(frame: pd.DataFrame, strategy: str, class_column: str | None = None) -> dict:
    """What the split did: strategy, train/holdout rows and, given the class column, the holdout's
    rows per class."""
    holdout = frame[frame[SPLIT_COLUMN] == "holdout"]
    summary = {
        "strategy": strategy,
        "train_rows": int((frame[SPLIT_COLUMN] == "train").sum()),
        "holdout_rows": len(holdout),
    }
    if class_column and class_column in holdout.columns:
        counts = holdout[class_column].value_counts().sort_index()
        summary["holdout_class_balance"] = {str(k): int(v) for k, v in counts.items()}
    return summary


def split(df: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, str | None]:
    """Split by the spec's strategy; returns the frame with `_split` and the time cutoff (or None)."""
    strategy = spec.split_strategy
    if strategy == "time":
        return time_split(df, spec)
    return hash_split(df, spec, strategy), None


def prepare(df: pd.DataFrame, spec: DatasetSpec) -> Prepared:
    """Derive the target and split the rows by the spec's strategy. KeyError when columns the target or
    the split need are missing; ValueError on a bad target expression or a time column with nulls."""
    labelled, dropped = derive_target(df, spec)
    frame, cutoff = split(labelled, spec)
    return Prepared(frame=frame, dropped_unlabelled=dropped, cutoff=cutoff,
                    strategy=spec.split_strategy,
                    class_column=spec.target.name if spec.task == "classification" else None)


def xy(df: pd.DataFrame, spec: DatasetSpec, part: str | None = None):
    """Feature matrix and target for `part` ('train' | 'holdout' | None for all rows)."""
    rows = df if part is None else df[df[SPLIT_COLUMN] == part]
    return rows[spec.features.columns], rows[spec.target.name]
