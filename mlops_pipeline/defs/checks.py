"""The check results several assets report the same way: the data contract and the null rates.

The training data (`training_features`) and each day's production inputs (`prediction_log`) are
held to the same contract; a discrepancy between the two checks would be a bug, so both build
their results here, from the same core functions (`data.contract.validate`,
`data.contract.null_count_violations`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

if TYPE_CHECKING:
    from mlops_pipeline.data.contract import ContractError

#: Rows of a failing check's `failure_cases` table (the UI is for reading, not for dumps).
MAX_FAILURE_ROWS = 50


def failure_table(cases: pd.DataFrame) -> dg.TableMetadataValue:
    """Pandera's failure cases (column, check, failure_case, index) as a table, the first
    `MAX_FAILURE_ROWS` of them."""
    rows = cases.head(MAX_FAILURE_ROWS)
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "column": str(r["column"]),
                    "check": str(r["check"]),
                    "failure_case": str(r["failure_case"]),
                    "index": str(r["index"]),
                }
            )
            for _, r in rows.iterrows()
        ],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(c, "string") for c in ("column", "check", "failure_case", "index")]
        ),
    )


def contract_check(check_name: str, frame: pd.DataFrame, schema: Any,
                   passed_text: str) -> dg.AssetCheckResult:
    """`frame` validated against a contract `schema`: passes with `passed_text`; fails (ERROR)
    with the contract's own message, the failing columns and a table of failure cases."""
    from mlops_pipeline.data.contract import ContractError, validate

    try:
        validate(frame, schema)
    except ContractError as exc:
        return contract_result(check_name, exc, passed_text)
    return contract_result(check_name, None, passed_text)


def contract_result(check_name: str, error: ContractError | None, passed_text: str) -> dg.AssetCheckResult:
    """A contract validation already done (`error` None when the data passed) as an ERROR check,
    as `contract_check` reports it: for data validated a chunk at a time."""
    severity = dg.AssetCheckSeverity.ERROR
    if error is None:
        return dg.AssetCheckResult(check_name=check_name, passed=True, severity=severity,
                                   description=passed_text)
    return dg.AssetCheckResult(
        check_name=check_name, passed=False, severity=severity, description=str(error),
        metadata={
            "failing_columns": ", ".join(sorted({str(c) for c in error.failure_cases["column"]})),
            "failure_cases": failure_table(error.failure_cases),
        },
    )


def null_rate_check(check_name: str, violations: dict[str, tuple[float, float]], passed_text: str,
                    **metadata: Any) -> dg.AssetCheckResult:
    """Null-rate violations (column -> (rate, limit), `null_rate_violations`) as an ERROR check:
    each violating column named with its rate and limit, and the violations as JSON metadata
    (plus any `metadata` given)."""
    return dg.AssetCheckResult(
        check_name=check_name, passed=not violations, severity=dg.AssetCheckSeverity.ERROR,
        description=(
            passed_text if not violations
            else "null rate above limit: "
            + "; ".join(f"column '{c}' {r:.1%} > {lim:.1%}" for c, (r, lim) in violations.items())
        ),
        metadata={
            "violations": dg.MetadataValue.json(
                {c: {"rate": r, "limit": lim} for c, (r, lim) in violations.items()}
            ),
            **metadata,
        },
    )
