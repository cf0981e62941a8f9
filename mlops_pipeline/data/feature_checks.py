"""The training data's checks over the stored prepared table, a chunk at a time: pure pandas.

`check_features` runs every check `training_features_checks` reports (the contract, null rates,
enough rows, unique keys and the overall domain checks) in one pass over the stored table
(`features.FeaturesInfo`), holding one chunk plus one 8-byte hash per row, never the table. Each
check combines its chunks so that its verdict and numbers are those of the same check over the
whole table in memory:

- contract: each chunk validated (its rows numbered as in the table); the first failing chunk's
  error is reported, and the check fails when any chunk fails.
- null rates: nulls counted per column over all chunks; the contract's rule on the totals.
- min rows: the stored counts.
- unique keys: a hash of the key columns per row (without key columns, of the whole row and its
  split, as `duplicated()` over the frame sees it), sorted: a duplicate is an equal neighbour.
  Exact up to 64-bit hash collisions.
- domain (`DomainTally`, which `batch_checks.domain_findings` also uses): values counted over all
  chunks and the limits applied to the totals; examples are the first met (time window: the
  earliest and latest outside), unseen categories by frequency among the first `MAX_TRACKED`
  distinct ones of each column; the class balance from class counts over all chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_pipeline.data import tables
from mlops_pipeline.data.batch_checks import summary
from mlops_pipeline.data.contract import ContractError, null_count_violations, null_counts, validate
from mlops_pipeline.data.domain import ALL_BATCHES, EXAMPLES, DomainTally, Finding, examples
from mlops_pipeline.data.features import ROW_HASH_COLUMN, FeaturesInfo
from mlops_pipeline.data.preparation import SPLIT_COLUMN, remix, row_hash

if TYPE_CHECKING:
    from mlops_pipeline.data.contract import Contract
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.spec import DatasetSpec

@dataclass(frozen=True)
class CheckOutcome:
    """One check's verdict as `training_features_checks` reports it (metadata: plain values)."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    #: A failure that warns rather than blocks (duplicated rows without key columns).
    warn_only: bool = False


@dataclass(frozen=True)
class FeatureChecks:
    """Every check of the stored training data (`check_features`)."""

    rows: int
    #: The first failing chunk's contract error; None when every chunk passed.
    contract_error: ContractError | None
    null_violations: dict[str, tuple[float, float]]
    worst_null_rate: float
    #: min_rows, unique_keys, then each of `batch_checks.OVERALL_CHECKS` in order.
    outcomes: list[CheckOutcome]


def check_features(storage: Storage, info: FeaturesInfo, spec: DatasetSpec, contract: Contract,
                   chunk_rows: int = tables.CHUNK_ROWS) -> FeatureChecks:
    """The stored prepared table against the contract and the spec's checks (see the module
    docstring), read once a chunk at a time: memory is one chunk plus 8 bytes per row."""
    keys: list[str] | None = None  # the key columns the table has, from its first chunk
    hashes = np.empty(info.rows, dtype=np.uint64)
    error: ContractError | None = None
    nulls: dict[str, int] = {}
    tally = DomainTally(contract, spec)
    at = 0
    for frame in tables.iter_table(storage, info.location, None, chunk_rows):
        if at + len(frame) > len(hashes):
            raise ValueError(f"{info.location} holds more than the {info.rows} rows its info says")
        # The rows as `iter_features` gives them (without their content hash), numbered as stored.
        content = frame.pop(ROW_HASH_COLUMN).to_numpy(np.uint64)
        keys = [c for c in spec.key_columns if c in frame.columns] if keys is None else keys
        frame.index = pd.RangeIndex(at, at + len(frame))
        if spec.key_columns:
            hashes[at:at + len(frame)] = row_hash(frame, keys) if keys else 0
        else:
            hashes[at:at + len(frame)] = _with_split(content, frame[SPLIT_COLUMN])
        if error is None:
            try:
                validate(frame, contract.schema)
            except ContractError as exc:
                error = exc
        for c, n in null_counts(frame, contract.columns).items():
            nulls[c] = nulls.get(c, 0) + n
        tally.add(frame)
        at += len(frame)
    hashes = hashes[:at]
    if keys is None:  # no chunk at all: the columns from the table's footer
        keys = [c for c in spec.key_columns if c in tables.arrow_schema(storage, info.location).names]
    rates = [n / at for n in nulls.values()] if at else []
    outcomes = [_min_rows(info, spec),
                _unique_keys(storage, info, spec, keys, hashes, chunk_rows),
                *[CheckOutcome(name, not found, summary(name, found, f"{at} rows"),
                               {"failing_columns": ", ".join(sorted({str(f.column) for f in found
                                                                     if f.column}))})
                  for name, found in tally.overall().items()]]
    return FeatureChecks(at, error, null_count_violations(nulls, at, contract),
                         max(rates) if rates else float("nan"), outcomes)


def _with_split(content: np.ndarray, split: pd.Series) -> np.ndarray:
    """Each row's content hash, told apart by its split (a duplicate is alike in both)."""
    return np.where(split.to_numpy() == "holdout", remix(content, "holdout"), content)


def _min_rows(info: FeaturesInfo, spec: DatasetSpec) -> CheckOutcome:
    rows, train, holdout, least = info.rows, info.train_rows, info.holdout_rows, spec.checks.min_rows
    return CheckOutcome("min_rows", rows >= least and train > 0 and holdout > 0,
                        f"{rows} labelled rows (train {train}, holdout {holdout}); minimum {least}",
                        {"rows": rows, "train_rows": train, "holdout_rows": holdout})


def _repeats(hashes: np.ndarray, block: int) -> int:
    """Rows whose hash an earlier row has: sorts `hashes` in place, counts equal neighbours."""
    hashes.sort()
    n = len(hashes)
    return sum(int(np.count_nonzero(hashes[i:min(i + block, n)] == hashes[i - 1:min(i + block, n) - 1]))
               for i in range(1, n, block))


def _unique_keys(storage: Storage, info: FeaturesInfo, spec: DatasetSpec, keys: list[str],
                 hashes: np.ndarray, chunk_rows: int) -> CheckOutcome:
    """With key columns: any repeated key blocks. Without: duplicated rows above a share warn
    (`batch_checks.duplicate_findings`), naming the first rows that repeat an earlier one."""
    rows = len(hashes)
    duplicates = _repeats(hashes, chunk_rows) if keys or not spec.key_columns else 0
    if spec.key_columns:
        missing = sorted(set(spec.key_columns) - set(keys))
        said = (f"key columns missing: {missing}" if missing
                else f"{duplicates} rows duplicate the key ({', '.join(keys)})")
        return CheckOutcome("unique_keys", duplicates == 0 and not missing, said,
                            {"duplicate_rows": duplicates})
    share = duplicates / rows if rows else 0.0
    found = []
    if rows and share > spec.checks.max_duplicate_share:
        found.append(Finding(
            "unique_keys", ALL_BATCHES, None,
            f"{share:.1%} of rows duplicate another row entirely (no key columns configured; "
            f"limit {spec.checks.max_duplicate_share:.1%})",
            examples(str(i) for i in _first_repeats(storage, info, hashes, chunk_rows))))
    return CheckOutcome("unique_keys", not found,
                        summary("unique_keys", found, "no key columns; duplicated rows"),
                        {"duplicate_rows": duplicates if found else 0}, warn_only=True)


def _first_repeats(storage: Storage, info: FeaturesInfo, ordered: np.ndarray,
                   chunk_rows: int) -> list[int]:
    """Positions of the first `EXAMPLES` rows that repeat an earlier row, given every row's hash
    sorted: one more pass, remembering only hashes that occur more than once."""
    seen: set[int] = set()
    out: list[int] = []
    at = 0
    for chunk in tables.iter_table(storage, info.location, [ROW_HASH_COLUMN, SPLIT_COLUMN], chunk_rows):
        h = _with_split(chunk[ROW_HASH_COLUMN].to_numpy(np.uint64), chunk[SPLIT_COLUMN])
        repeated = (np.searchsorted(ordered, h, "right") - np.searchsorted(ordered, h, "left")) > 1
        for i in np.flatnonzero(repeated):
            if int(h[i]) in seen:
                out.append(at + int(i))
                if len(out) == EXAMPLES:
                    return out
            seen.add(int(h[i]))
        at += len(chunk)
    return out
