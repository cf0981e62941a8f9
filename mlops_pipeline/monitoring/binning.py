"""Evidently's drift binning over value counts, so a column's drift can be scored from counts
summed a chunk at a time instead of from the whole column in memory.

A column is kept as `ColumnCounts`: its distinct values (NaN and +-inf dropped, as Evidently
drops them) and how often each occurs. That is enough to rebuild exactly what Evidently's
`get_binned_data` bins from the raw values: Sturges bins over the combined finite range of both
sides for a numerical column with more than 20 distinct reference values (`sturges_edges` is
`np.histogram_bin_edges(..., bins="sturges")` from the count, minimum and maximum alone), one bin
per value otherwise. Such a column's edges are known only once both sides are seen whole, so its
finite values are kept (8 bytes a row); every other column is kept as counts. Chunks add up
(`merge`), so the scores of streamed data are the scores of the whole data, not an approximation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

MAX_VALUE_BINS = 20  # Evidently: more distinct reference values than this -> Sturges bins


@dataclass(frozen=True)
class ColumnCounts:
    """One side of a column: its distinct finite values, sorted, with each one's count — or, for
    a numerical column binned by range (`raw` set), its finite values themselves (8 bytes a row:
    Sturges edges depend on both sides' range and size, known only once every chunk is seen)."""

    values: np.ndarray
    counts: np.ndarray  # int64, > 0
    numerical: bool
    raw: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.raw) if self.raw is not None else int(self.counts.sum())

    @cached_property
    def distinct(self) -> int:
        return int(pd.Series(self.raw).nunique()) if self.raw is not None else len(self.values)

    def as_counts(self) -> ColumnCounts:
        if self.raw is None:
            return self
        keys, inverse = _unique(self.raw)
        return ColumnCounts(keys, np.bincount(inverse, minlength=len(keys)).astype("int64"), self.numerical)


def merge(parts: list[ColumnCounts]) -> ColumnCounts:
    """The chunks' counts (or values) together: the same as those of their rows at once."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if first.raw is not None:
        return ColumnCounts(first.values, first.counts, first.numerical,
                            np.concatenate([p.raw for p in parts]))
    keys, inverse = _unique(np.concatenate([p.values for p in parts]))
    counts = np.bincount(inverse, weights=np.concatenate([p.counts for p in parts]), minlength=len(keys))
    return ColumnCounts(keys, counts.astype("int64"), first.numerical)


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and each value's position among them. Values of mixed types that
    do not sort together (an object column holding numbers and strings) are ordered by type
    name, then value."""
    try:
        return np.unique(values, return_inverse=True)
    except TypeError:
        keyed = pd.Series(values).map(lambda v: (type(v).__name__, v))
        order = sorted(set(keyed))
        position = {k: i for i, k in enumerate(order)}
        keys = np.empty(len(order), dtype=object)
        keys[:] = [v for _, v in order]
        return keys, keyed.map(position).to_numpy(dtype="int64")


def column_counts(series: pd.Series, numerical: bool, raw: bool = False) -> ColumnCounts:
    """The column's counts (`raw`: a numerical column's finite values), its NaN (and, for a
    numerical column, +-inf) left out as Evidently leaves them out."""
    empty = np.zeros(0, "int64")
    if numerical:
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        values = values[np.isfinite(values)]
        if raw:
            return ColumnCounts(np.zeros(0), empty, True, values)
        counted = pd.Series(values, copy=False).value_counts(sort=False)
    else:
        kept = series.dropna()
        counted = kept.value_counts(sort=False)
    counted = counted[counted > 0]
    keys = np.asarray(counted.index.astype(object) if isinstance(counted.index, pd.CategoricalIndex)
                      else counted.index)
    if not len(keys):
        return ColumnCounts(keys.astype("float64" if numerical else object), empty, numerical)
    ordered, position = _unique(keys)
    counts = np.zeros(len(ordered), "int64")
    counts[position] = counted.to_numpy(dtype="int64")
    return ColumnCounts(ordered, counts, numerical)


def sturges_edges(low: float, high: float, rows: int) -> np.ndarray:
    """`np.histogram_bin_edges(a, bins="sturges")` for any `a` of `rows` finite values between
    `low` and `high` (both occurring): the rule needs only the size and the range."""
    first, last = np.float64(low), np.float64(high)
    width = (last - first) / (np.log2(rows) + 1.0)
    if first == last:
        first, last = first - 0.5, last + 0.5
    bins = int(np.ceil((last - first) / width)) if width else 1
    return np.linspace(first, last, bins + 1, endpoint=True, dtype="float64")


def _fill_zeroes(shares: np.ndarray) -> np.ndarray:
    """Evidently's PSI zero filling: empty bins get a tiny share so the log stays finite."""
    nonzero = shares[shares != 0]
    if nonzero.size == 0:
        return shares
    low = nonzero.min()
    np.place(shares, shares == 0, low / 10**6 if low <= 0.0001 else 0.0001)
    return shares


def binned_shares(reference: ColumnCounts, current: ColumnCounts,
                  fill_zeroes: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each side's share of rows per bin, binned as Evidently's `get_binned_data` bins."""
    if reference.numerical and reference.distinct > MAX_VALUE_BINS:
        ref, cur = reference.raw, current.raw
        if ref is None or cur is None:
            raise ValueError("a numerical column binned by range needs both sides' values (raw)")
        edges = sturges_edges(min(ref.min(), cur.min()), max(ref.max(), cur.max()), len(ref) + len(cur))
        ref_shares = np.histogram(ref, edges)[0] / len(ref)
        cur_shares = np.histogram(cur, edges)[0] / len(cur)
    else:
        reference, current = reference.as_counts(), current.as_counts()
        keys, inverse = _unique(np.concatenate([reference.values, current.values]))
        ref_shares = np.zeros(len(keys))
        cur_shares = np.zeros(len(keys))
        ref_shares[inverse[:len(reference.values)]] = reference.counts / reference.rows
        cur_shares[inverse[len(reference.values):]] = current.counts / current.rows
    if fill_zeroes:
        ref_shares, cur_shares = _fill_zeroes(ref_shares), _fill_zeroes(cur_shares)
    return ref_shares, cur_shares


def counts_score(reference: ColumnCounts, current: ColumnCounts, method: str, column: str) -> float:
    """PSI or Jensen-Shannon distance of one column's counts, as Evidently's stattest computes it
    from the column's rows. ValueError for a side without a value, or another method."""
    from scipy.spatial import distance

    if not reference.rows or not current.rows:
        side = "reference" if not reference.rows else "current"
        raise ValueError(f"An empty column '{column}' was provided for drift in the {side} data.")
    if method == "psi":
        r, c = binned_shares(reference, current, fill_zeroes=True)
        return float(np.sum((r - c) * np.log(r / c)))
    if method == "jensenshannon":
        r, c = binned_shares(reference, current, fill_zeroes=False)
        return float(distance.jensenshannon(r, c))
    raise ValueError(f"no fast implementation of drift method {method!r}")
