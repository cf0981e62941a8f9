"""Which rows are new since the champion, and which rows the gate may compare models on.

Rows are identified by content, not by file or position: `content_keys` hashes each row's values
over the given columns after normalising dtypes (every number as float64, timestamps as naive UTC
nanoseconds, everything else as text), so the same row hashes the same whether it sits in an int64
column of one snapshot or a float64 column (with nulls elsewhere) of the next.

Two uses, both Dagster-free:
- `new_rows`: the rows of a frame that the champion's training snapshot did not hold — what drift
  compares with the champion's training data (nothing new means nothing to compare);
- `comparison_holdout`: THE rule for the rows on which the gate scores champion and candidate.

The trusted holdout (issue 14: a poisoned batch in the holdout also handicaps the champion it is
compared with). Champion and candidate are both scored on the candidate's holdout — the only rows
the candidate never trained on, whatever the split strategy — restricted to rows that passed every
check of the run:
- a blocking check that fails stops the run before the gate, so every row that reaches the gate
  passed the blocking checks;
- rows of a batch that a check flagged without stopping the run (a check declared blocking, so it
  runs before the gate, that failed with WARN severity and names the batch in its metadata `batch`
  or `batches`) are removed from the comparison, for the candidate and the champion alike, whether
  or not the champion's snapshot held them;
- input drift does not flag rows: a world that moved is what retraining is for, and with a time
  split the new period is the whole holdout (`drift.block_promotion` blocks promotion instead);
- no trusted row left means no comparison: the caller must refuse to gate (fail closed) rather than
  let the floors alone decide.
The champion's snapshot is read only to say how many compared rows it already held (the yardstick
a gated run admitted) and how many are new.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


def content_keys(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """A uint64 per row of `frame` from the values of `columns`, independent of their dtypes."""
    normal = {}
    for col in sorted(set(columns)):
        s = frame[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            normal[col] = s.astype("float64").to_numpy()
        elif pd.api.types.is_datetime64_any_dtype(s):
            t = s.dt.tz_convert("UTC").dt.tz_localize(None) if s.dt.tz is not None else s
            normal[col] = t.astype("datetime64[ns]").to_numpy()
        else:
            values = s.astype("object")
            normal[col] = values.where(values.notna(), None).map(
                lambda v: v if v is None else str(v)).to_numpy()
    out = pd.DataFrame(normal, index=pd.RangeIndex(len(frame)))
    return pd.util.hash_pandas_object(out, index=False).to_numpy(np.uint64)


def shared_columns(frame: pd.DataFrame, other: pd.DataFrame) -> list[str]:
    """The columns both frames have: what a row of one can be recognised by in the other."""
    return [c for c in frame.columns if c in set(other.columns)]


def rows_in(frame: pd.DataFrame, known: pd.DataFrame, columns: list[str] | None = None) -> np.ndarray:
    """Boolean mask: which rows of `frame` also occur in `known` (by content over `columns`,
    default the columns both have)."""
    cols = columns if columns is not None else shared_columns(frame, known)
    if frame.empty or known.empty or not cols:
        return np.zeros(len(frame), dtype=bool)
    return np.isin(content_keys(frame, cols), content_keys(known, cols))


def new_rows(frame: pd.DataFrame, known: pd.DataFrame) -> pd.DataFrame:
    """The rows of `frame` that `known` (e.g. the champion's training snapshot) does not hold."""
    return frame[~rows_in(frame, known)]


def new_stored_rows(storage: Any, info: Any, spec: Any, snapshot_id: str,
                    columns: list[str]) -> pd.DataFrame:
    """`new_rows` over stored tables: the prepared rows (`data.features`) that the stored
    snapshot `snapshot_id` does not hold, with `columns` only (`iter_new_stored_rows`, joined)."""
    parts = list(iter_new_stored_rows(storage, info, spec, snapshot_id, columns))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def iter_new_stored_rows(storage: Any, info: Any, spec: Any, snapshot_id: str,
                         columns: list[str]) -> Iterator[pd.DataFrame]:
    """The new rows of `new_stored_rows` a chunk at a time, in the prepared table's order. Holds
    the snapshot's row keys (8 bytes a row) and one chunk, never either table. FileNotFoundError
    (before the first chunk) when the snapshot is gone."""
    from mlops_pipeline.data import tables
    from mlops_pipeline.data.features import iter_features

    known_uri = storage.snapshot_uri(snapshot_id)
    known_columns = set(tables.arrow_schema(storage, known_uri).names)
    shared = [c for c in tables.arrow_schema(storage, info.location).names if c in known_columns]
    keys = np.sort(np.concatenate([np.zeros(0, np.uint64), *(
        content_keys(chunk, shared) for chunk in tables.iter_table(storage, known_uri, shared))]))
    return _unknown_chunks(iter_features(storage, info, list(dict.fromkeys([*shared, *columns]))),
                           keys, shared, columns)


def _unknown_chunks(chunks: Iterator[pd.DataFrame], keys: np.ndarray, shared: list[str],
                    columns: list[str]) -> Iterator[pd.DataFrame]:
    for chunk in chunks:
        mine = content_keys(chunk, shared) if shared else np.zeros(len(chunk), np.uint64)
        at = np.searchsorted(keys, mine).clip(max=max(len(keys) - 1, 0))
        held = (keys[at] == mine) if len(keys) and shared else np.zeros(len(chunk), dtype=bool)
        if not held.all():
            yield chunk.loc[~held, columns].reset_index(drop=True)


@dataclass(frozen=True)
class ComparisonHoldout:
    """The rows champion and candidate are scored on, and where they came from."""

    frame: pd.DataFrame
    holdout_rows: int  # the candidate's whole holdout
    known_rows: int  # compared rows the champion's snapshot already held
    excluded_rows: int  # holdout rows of flagged batches, left out of the comparison
    flagged_batches: tuple[str, ...] = ()

    @property
    def compared_rows(self) -> int:
        return len(self.frame)

    @property
    def new_rows(self) -> int:
        return self.compared_rows - self.known_rows

    @property
    def complete(self) -> bool:
        """True when nothing was left out: the candidate's own holdout metrics apply as they are."""
        return self.excluded_rows == 0

    def describe(self, champion_version: str | None = None) -> str:
        champion = f"champion v{champion_version}'s" if champion_version else "the champion's"
        text = (f"{self.compared_rows} of {self.holdout_rows} holdout rows compared "
                f"({self.known_rows} already in {champion} snapshot, {self.new_rows} new)")
        if self.excluded_rows:
            text += (f"; {self.excluded_rows} rows of flagged batches left out: "
                     f"{', '.join(self.flagged_batches)}")
        return text


def comparison_holdout(
    holdout: pd.DataFrame,
    champion_snapshot: pd.DataFrame | None = None,
    flagged: dict[str, pd.DataFrame] | None = None,
) -> ComparisonHoldout:
    """The candidate's holdout restricted to rows that passed every check (module docstring).

    `holdout`: the candidate's holdout rows (source columns plus target and split). Rows are
    recognised in `champion_snapshot` (the champion's training snapshot, None without a champion)
    and in the `flagged` batches (file name -> the batch's rows, for batches a check of this run
    flagged) by content over the columns each frame shares with `holdout`.
    """
    flagged = flagged or {}
    keep = np.ones(len(holdout), dtype=bool)
    for rows in flagged.values():
        keep &= ~rows_in(holdout, rows)
    trusted = holdout[keep]
    known = 0
    if champion_snapshot is not None and len(trusted):
        known = int(rows_in(trusted, champion_snapshot).sum())
    return ComparisonHoldout(
        frame=trusted,
        holdout_rows=len(holdout),
        known_rows=known,
        excluded_rows=int((~keep).sum()),
        flagged_batches=tuple(sorted(flagged)),
    )
