"""Rows a landed batch repeats from batches landed before it (issue 24): per batch, naming the file.

The per-batch duplicates check (`batch_checks.duplicate_findings`) sees one file at a time, so the
same flights delivered again in a second file pass it. Here each batch contributes the sorted
uint64 hashes of its key columns (`spec.key_columns`), or without keys of its whole rows (the
batch index's row hashes, `batch_index.entry_of`): 8 bytes a row, as the batch index holds them,
never a batch's frame. Batches are then taken in the order they landed (file time, then name;
by name where the store keeps no time) and a batch whose keys (rows) are already among earlier
batches' is reported under the `batch_duplicates` check with the share and example keys.

With key columns any repeated key blocks (as within a batch); without, a share above
`checks.max_duplicate_share` is reported (the Dagster check only warns for keyless datasets).
Examples are read back from the reported file alone (its key columns), once it is known to repeat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_pipeline.data.domain import EXAMPLES, Finding, examples
from mlops_pipeline.data.snapshots import canonicalize, sorted_row_hashes

if TYPE_CHECKING:
    from mlops_pipeline.spec import DatasetSpec

CHECK = "batch_duplicates"


def hashes_of(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """The sorted uint64 hashes of `frame`'s key columns, or of its whole rows without keys (the
    batch index's row hashes), each row hashed under its columns' canonical dtypes."""
    part = frame[keys] if keys else frame
    return sorted_row_hashes(canonicalize(part))


def _unsorted_hashes(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    part = canonicalize(frame[keys] if keys else frame)
    return pd.util.hash_pandas_object(part, index=False).to_numpy(np.uint64)


@dataclass
class _Seen:
    name: str
    location: str
    landed_at: Any
    hashes: np.ndarray  # sorted


@dataclass
class CrossBatchDuplicates:
    """Collects each batch's hashes as batches are read (in any order), then `findings` compares
    every batch with the batches landed before it."""

    spec: DatasetSpec
    seen: list[_Seen] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return list(self.spec.key_columns)

    def add(self, name: str, location: str, frame: pd.DataFrame, landed_at: Any = None) -> None:
        """Remember one batch's key (or row) hashes; a batch lacking a key column is skipped (the
        columns check names it)."""
        if frame.empty or any(k not in frame.columns for k in self.keys):
            return
        self.seen.append(_Seen(name, location, landed_at, hashes_of(frame, self.keys)))

    def findings(self, read: Callable[[str, list[str] | None], pd.DataFrame]) -> list[Finding]:
        """One finding per batch repeating rows of earlier-landed batches; `read(location,
        columns)` reads a reported batch back for example keys (only the reported ones).

        One stable sort of every batch's hashes, concatenated in landing order: in each run of
        equal hashes the first belongs to the earliest batch holding it, and every later-landed
        batch's occurrence is a repeat (O(rows log rows), whatever the number of batches)."""
        order = sorted(self.seen, key=lambda s: (s.landed_at is None,
                                                 pd.Timestamp(s.landed_at) if s.landed_at is not None
                                                 else pd.Timestamp(0), s.name))
        if len(order) < 2:
            return []
        hashes = np.concatenate([s.hashes for s in order])
        rank = np.repeat(np.arange(len(order), dtype=np.int32), [len(s.hashes) for s in order])
        by_hash = np.argsort(hashes, kind="stable")
        h, r = hashes[by_hash], rank[by_hash]
        del hashes, rank, by_hash
        starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
        first = np.repeat(r[starts], np.diff(np.r_[starts, len(h)]))  # the earliest batch per hash
        repeat = r != first
        counts = np.bincount(r[repeat], minlength=len(order))
        limit = 0.0 if self.keys else self.spec.checks.max_duplicate_share
        out: list[Finding] = []
        for i, s in enumerate(order):
            share = counts[i] / len(s.hashes)
            if counts[i] and share > limit:
                mine = repeat & (r == i)
                sources = [order[j].name for j in np.unique(first[mine])]
                out.append(self._finding(s, int(counts[i]), share, np.unique(h[mine]), sources, read))
        return out

    def _finding(self, s: _Seen, count: int, share: float, repeated: np.ndarray,
                 sources: list[str], read) -> Finding:
        keys = self.keys
        try:
            frame = read(s.location, keys or None)
            hits = frame[np.isin(_unsorted_hashes(frame, keys), repeated)].head(EXAMPLES)
            ex = (examples(hits[keys].astype(str).agg("/".join, axis=1)) if keys
                  else tuple(f"row {i}" for i in hits.index))
        except Exception:  # noqa: BLE001 - the examples are a courtesy; the count stands
            ex = ()
        where = ", ".join(sources[:3]) + (f" (+{len(sources) - 3} more)" if len(sources) > 3 else "")
        what = f"key(s) ({', '.join(keys)})" if keys else "entire rows (no key columns configured)"
        return Finding(CHECK, s.name, ", ".join(keys) or None,
                       f"{count} of {len(s.hashes)} rows ({share:.1%}) repeat {what} already landed "
                       f"in earlier batches ({where})", ex)
