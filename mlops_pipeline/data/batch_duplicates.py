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
        columns)` reads a reported batch back for example keys (only the reported ones)."""
        order = sorted(self.seen, key=lambda s: (s.landed_at is None,
                                                 pd.Timestamp(s.landed_at) if s.landed_at is not None
                                                 else pd.Timestamp(0), s.name))
        earlier = np.empty(0, np.uint64)
        earlier_names: list[str] = []
        out: list[Finding] = []
        for s in order:
            if len(earlier):
                pos = np.searchsorted(earlier, s.hashes).clip(max=len(earlier) - 1)
                repeated = earlier[pos] == s.hashes
                count = int(repeated.sum())
                share = count / len(s.hashes)
                limit = 0.0 if self.keys else self.spec.checks.max_duplicate_share
                if count and share > limit:
                    out.append(self._finding(s, count, share, earlier, earlier_names, read))
            earlier = np.sort(np.concatenate([earlier, s.hashes]), kind="stable")
            earlier_names.append(s.name)
        return out

    def _finding(self, s: _Seen, count: int, share: float, earlier: np.ndarray,
                 earlier_names: list[str], read) -> Finding:
        keys = self.keys
        try:
            frame = read(s.location, keys or None)
            mine = _unsorted_hashes(frame, keys)
            pos = np.searchsorted(earlier, mine).clip(max=len(earlier) - 1)
            hits = frame[earlier[pos] == mine].head(EXAMPLES)
            ex = (examples(hits[keys].astype(str).agg("/".join, axis=1)) if keys
                  else tuple(f"row {i}" for i in hits.index))
        except Exception:  # noqa: BLE001 - the examples are a courtesy; the count stands
            ex = ()
        before = ", ".join(earlier_names[-3:]) + (f" (+{len(earlier_names) - 3} more)"
                                                 if len(earlier_names) > 3 else "")
        what = f"key(s) ({', '.join(keys)})" if keys else "entire rows (no key columns configured)"
        return Finding(CHECK, s.name, ", ".join(keys) or None,
                       f"{count} of {len(s.hashes)} rows ({share:.1%}) repeat {what} already landed "
                       f"in earlier batches ({before})", ex)
