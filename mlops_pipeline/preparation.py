"""From a snapshot to a labelled, split frame: target derivation and the time-based split.

The split is by time, not at random: the holdout is the most recent period, which is what a model
meets in production. It is deterministic (a timestamp cutoff, no randomness), so a snapshot id and
the spec fully determine which rows are train and which are holdout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_pipeline.settings import DatasetSpec

SPLIT_COLUMN = "_split"


@dataclass(frozen=True)
class Prepared:
    frame: pd.DataFrame
    dropped_unlabelled: int
    cutoff: str


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


def target_from_feedback(labels, spec: DatasetSpec) -> np.ndarray:
    """Feedback carries the observed label source (e.g. arr_delay minutes); the target comes from it
    through the same derivation as in training, so production quality means what holdout quality
    means."""
    truth, _ = derive_target(pd.DataFrame({spec.label_source: np.asarray(labels, dtype=float)}), spec)
    return truth[spec.target.name].to_numpy()


def time_split(df: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, str]:
    """Mark the most recent `holdout_fraction` of rows (by time) as holdout."""
    times = pd.to_datetime(df[spec.time_column])
    if times.isna().any():
        raise ValueError(f"time column '{spec.time_column}' has nulls; cannot split by time")
    ordered = np.sort(times.to_numpy())
    cutoff = ordered[int(len(ordered) * (1 - spec.split.holdout_fraction))]
    out = df.copy()
    out[SPLIT_COLUMN] = np.where(times >= cutoff, "holdout", "train")
    return out, str(pd.Timestamp(cutoff))


def prepare(df: pd.DataFrame, spec: DatasetSpec) -> Prepared:
    labelled, dropped = derive_target(df, spec)
    split, cutoff = time_split(labelled, spec)
    return Prepared(frame=split, dropped_unlabelled=dropped, cutoff=cutoff)


def xy(df: pd.DataFrame, spec: DatasetSpec, part: str | None = None):
    """Feature matrix and target for `part` ('train' | 'holdout' | None for all rows)."""
    rows = df if part is None else df[df[SPLIT_COLUMN] == part]
    return rows[spec.features.columns], rows[spec.target.name]
