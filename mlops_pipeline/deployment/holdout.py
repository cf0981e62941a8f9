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
- rows the champion trained on are left out too (issue 24: after a backfill moves a time split's
  cutoff, a quarter of the new holdout had been the champion's training rows, on which it scored
  0.96 ROC AUC against 0.70 on unseen rows, and a clean candidate was blocked). A row is
  recognised by the spec's key columns when both sides have them, else by its content; the
  champion's training rows are the train split of its snapshot prepared under the current spec (a
  superset of a bounded training sample, so nothing it saw slips through). The candidate never
  trained on its own holdout, so what is left is a holdout neither model saw.
The champion's prepared snapshot also says how many compared rows it already held (in its own
holdout: the yardstick a gated run admitted) and how many are new.
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
class ChampionRows:
    """What the gate knows of the champion's rows: sorted content keys (`content_keys` over
    `columns`) of every prepared row of its snapshot, and of those in its train split."""

    columns: tuple[str, ...]
    known: np.ndarray
    trained: np.ndarray

    def mask(self, frame: pd.DataFrame, which: str) -> np.ndarray:
        """Boolean mask: the rows of `frame` among the champion's `which` ('known' | 'trained')."""
        keys = getattr(self, which)
        if frame.empty or not len(keys):
            return np.zeros(len(frame), dtype=bool)
        return np.isin(content_keys(frame, list(self.columns)), keys)


def identity_columns(spec: Any, columns: list[str]) -> list[str]:
    """The columns a prepared row is recognised by across snapshots: the spec's key columns when
    the table has them all, else every content column (not the split or the row hash)."""
    from mlops_pipeline.data.features import ROW_HASH_COLUMN
    from mlops_pipeline.data.preparation import SPLIT_COLUMN

    keys = list(getattr(spec, "key_columns", []) or [])
    if keys and set(keys) <= set(columns):
        return keys
    return [c for c in columns if c not in (SPLIT_COLUMN, ROW_HASH_COLUMN)]


def champion_rows(storage: Any, spec: Any, snapshot_id: str, columns: list[str]) -> ChampionRows:
    """`ChampionRows` of the champion's snapshot, prepared under `spec` (reused when stored),
    recognised by `identity_columns` among `columns` (the candidate's prepared columns). Holds
    keys only (8 bytes a row), a chunk at a time. FileNotFoundError when the snapshot is gone."""
    from mlops_pipeline.data import tables
    from mlops_pipeline.data.features import prepare_features
    from mlops_pipeline.data.preparation import SPLIT_COLUMN

    info = prepare_features(storage, snapshot_id, spec)
    stored = tables.arrow_schema(storage, info.location).names
    ident = identity_columns(spec, [c for c in columns if c in set(stored)])
    known, trained = [np.zeros(0, np.uint64)], [np.zeros(0, np.uint64)]
    for chunk in tables.iter_table(storage, info.location, [*ident, SPLIT_COLUMN]):
        keys = content_keys(chunk, ident)
        known.append(keys)
        trained.append(keys[(chunk[SPLIT_COLUMN] == "train").to_numpy()])
    return ChampionRows(tuple(ident), np.unique(np.concatenate(known)), np.unique(np.concatenate(trained)))


@dataclass(frozen=True)
class ComparisonHoldout:
    """The rows champion and candidate are scored on, and where they came from."""

    frame: pd.DataFrame
    holdout_rows: int  # the candidate's whole holdout
    known_rows: int  # compared rows the champion's snapshot already held (in its holdout)
    excluded_rows: int  # holdout rows of flagged batches, left out of the comparison
    flagged_batches: tuple[str, ...] = ()
    #: Holdout rows the champion trained on, left out (after the flagged batches' rows).
    champion_trained_rows: int = 0

    @property
    def compared_rows(self) -> int:
        return len(self.frame)

    @property
    def new_rows(self) -> int:
        return self.compared_rows - self.known_rows

    @property
    def complete(self) -> bool:
        """True when nothing was left out: the candidate's own holdout metrics apply as they are."""
        return self.excluded_rows == 0 and self.champion_trained_rows == 0

    def describe(self, champion_version: str | None = None) -> str:
        champion = f"champion v{champion_version}" if champion_version else "the champion"
        text = (f"{self.compared_rows} of {self.holdout_rows} holdout rows compared "
                f"({self.known_rows} already in {champion}'s snapshot, {self.new_rows} new)")
        if self.champion_trained_rows:
            text += f"; {self.champion_trained_rows} rows {champion} trained on left out"
        if self.excluded_rows:
            text += (f"; {self.excluded_rows} rows of flagged batches left out: "
                     f"{', '.join(self.flagged_batches)}")
        return text

    @property
    def metadata(self) -> dict[str, int]:
        """The counts a gate shows beside its verdict: what was compared and what was left out why."""
        return {"compared_rows": self.compared_rows, "holdout_rows": self.holdout_rows,
                "excluded_champion_trained_rows": self.champion_trained_rows,
                "excluded_flagged_rows": self.excluded_rows}


def comparison_holdout(
    holdout: pd.DataFrame,
    champion: ChampionRows | None = None,
    flagged: dict[str, pd.DataFrame] | None = None,
) -> ComparisonHoldout:
    """The candidate's holdout restricted to rows that passed every check and that the champion
    never trained on (module docstring).

    `holdout`: the candidate's holdout rows (prepared columns, target and split). `champion`: the
    champion's rows (`champion_rows`; None without a champion). `flagged`: file name -> the
    batch's rows, for batches a check of this run flagged, recognised by content over the columns
    each shares with `holdout`.
    """
    flagged = flagged or {}
    keep = np.ones(len(holdout), dtype=bool)
    for rows in flagged.values():
        keep &= ~rows_in(holdout, rows)
    trained = np.zeros(len(holdout), dtype=bool)
    if champion is not None:
        trained = champion.mask(holdout, "trained") & keep
    trusted = holdout[keep & ~trained]
    known = int(champion.mask(trusted, "known").sum()) if champion is not None and len(trusted) else 0
    return ComparisonHoldout(
        frame=trusted,
        holdout_rows=len(holdout),
        known_rows=known,
        excluded_rows=int((~keep).sum()),
        flagged_batches=tuple(sorted(flagged)),
        champion_trained_rows=int(trained.sum()),
    )


def trusted_comparison(storage: Any, spec: Any, holdout: pd.DataFrame,
                       champion_snapshot_id: str | None,
                       flagged: dict[str, pd.DataFrame] | None = None) -> ComparisonHoldout:
    """THE trusted holdout over stored data, for every caller that gates (the pipeline's
    `model_version`, `promote`, the release guard through it): `comparison_holdout` with the
    champion's rows read from its stored snapshot. FileNotFoundError when that snapshot is gone:
    without it nobody can say which rows the champion trained on, so the caller must not gate."""
    champion = None
    if champion_snapshot_id:
        champion = champion_rows(storage, spec, champion_snapshot_id, list(holdout.columns))
    return comparison_holdout(holdout, champion, flagged)
