"""The contract's domain at serving, per record and column, over a whole micro-batch.

The rules (`data.domain.RecordDomain`: ranges and allowed categories, a policy per column) are
compiled once per server and evaluated over the batch's columns (`fast_validate.FastValidator.outside`:
one vectorised pass per column); `apply_domain` only touches the requests whose records fall outside.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlops_pipeline.serving.errors import FieldError, RequestError


def apply_domain(found: list[tuple[Any, np.ndarray]], columns: Mapping[str, np.ndarray],
                 spans: dict[int, tuple[int, int]], results: list[Any], jobs: list[Any]) -> None:
    """The domain's hits over the whole micro-batch (`FastValidator.outside`: (rule, row positions)
    for each rule some row breaks; `columns` the batch's checked columns): a value outside a
    `reject` column refuses its request in `results` (422 naming record, field, value and what is
    allowed); outside a `flag` column the record is answered and marked in its job's
    `out_of_domain`."""
    for job in jobs:  # a bisected batch runs again: marks are recomputed, never doubled
        job.out_of_domain = None
    if not found:
        return
    owners = list(spans)  # request indices, in row order
    starts = np.array([spans[i][0] for i in owners], dtype=np.int64)
    for rule, hits in found:
        values = columns[rule.column]
        where = np.searchsorted(starts, hits, side="right") - 1
        for k, j in zip(hits.tolist(), where.tolist(), strict=True):
            i, record = owners[j], k - int(starts[j])
            if rule.policy == "flag":
                marks = jobs[i].out_of_domain
                if marks is None:
                    marks = jobs[i].out_of_domain = {}
                marks.setdefault(record, []).append(rule.column)
                continue
            value = values[k]
            err = FieldError(record, rule.column, f"outside the contract's domain: "
                             f"{rule.allowed_text()} (domain policy: reject)",
                             value.item() if isinstance(value, np.generic) else value)
            if isinstance(results[i], RequestError):
                results[i].errors.append(err)
            else:
                results[i] = RequestError(422, "request violates the data contract", [err])
