"""The data contract: one pandera schema plus per-column null-rate limits, for training AND serving.

A contract is generated once from real data (`mlops-pipeline contract infer`), reviewed by a
person, and committed. The draft keeps dtypes and nullability and drops the observed min/max that
`pandera.infer_schema` hard-codes: those bounds describe one sample, not the domain, and would
reject a later month's legitimate values. Add real domain checks by hand when you review it.

Training validates the full source columns (features, time, keys, label sources); inference
validates the feature columns only, with the very same column definitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml

from mlops_pipeline.settings import DatasetSpec

if TYPE_CHECKING:
    import pandera.pandas as pa

FAILURE_COLUMNS = ["column", "check", "failure_case", "index"]


class ContractError(ValueError):
    """Data does not satisfy the contract; `failure_cases` says which column, check and value."""

    def __init__(self, message: str, failure_cases: pd.DataFrame):
        super().__init__(message)
        self.failure_cases = failure_cases


@dataclass(frozen=True)
class Contract:
    dataset: str
    schema: pa.DataFrameSchema
    max_null_rate: dict[str, float] = field(default_factory=dict)
    default_max_null_rate: float = 0.05

    @property
    def columns(self) -> list[str]:
        return list(self.schema.columns)

    def null_limit(self, column: str) -> float:
        return self.max_null_rate.get(column, self.default_max_null_rate)

    def for_columns(self, columns: list[str]) -> pa.DataFrameSchema:
        """The same column definitions restricted to `columns` (serving: features only)."""
        return self.schema.select_columns([c for c in columns if c in self.schema.columns])


def infer_contract(df: pd.DataFrame, spec: DatasetSpec, margin: float = 0.02) -> dict:
    """Draft a contract document from data; a person reviews it before it is committed."""
    import pandera.pandas as pa

    missing = [c for c in spec.source_columns if c not in df.columns]
    if missing:
        raise ContractError(f"cannot infer a contract: columns {missing} are not in the data",
                            pd.DataFrame(columns=FAILURE_COLUMNS))
    sample = df[spec.source_columns]
    inferred = pa.infer_schema(sample)
    columns = {
        name: pa.Column(col.dtype, nullable=bool(sample[name].isna().any()), name=name)
        for name, col in inferred.columns.items()
    }
    schema = pa.DataFrameSchema(columns, coerce=True, strict=False, name=spec.name)
    rates = sample.isna().mean()
    limits = {
        c: round(min(1.0, float(r) * 1.5 + margin), 4)
        for c, r in rates.items()
        if float(r) * 1.5 + margin > spec.checks.max_null_rate
    }
    return {
        "dataset": spec.name,
        "max_null_rate": limits,
        "schema": yaml.safe_load(schema.to_yaml()),
    }


def write_contract(doc: dict, path: Path) -> None:
    header = (
        f"# Data contract for {doc['dataset']}: drafted by `mlops-pipeline contract infer`,\n"
        "# reviewed and committed. It guards training data and every prediction request.\n"
        "# max_null_rate: per-column limit on the share of nulls (others use the dataset default).\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False))


def load_contract(spec: DatasetSpec, path: Path | None = None) -> Contract:
    import pandera.pandas as pa

    p = path or spec.contract_path()
    if not p.exists():
        raise FileNotFoundError(
            f"data contract not found: {p}; draft one with "
            f"`mlops-pipeline contract infer --config <dataset.yaml>` and review it"
        )
    doc = yaml.safe_load(p.read_text())
    schema = pa.DataFrameSchema.from_yaml(yaml.safe_dump(doc["schema"]))
    return Contract(
        dataset=doc.get("dataset", spec.name),
        schema=schema,
        max_null_rate={k: float(v) for k, v in (doc.get("max_null_rate") or {}).items()},
        default_max_null_rate=spec.checks.max_null_rate,
    )


def validate(df: pd.DataFrame, schema: pa.DataFrameSchema) -> pd.DataFrame:
    """Coerce to the contract's dtypes or raise `ContractError` listing every failure (lazy).

    The validated frame comes back without the `pandera` accessor pandera caches on it: the
    accessor holds the frame, so the pair is a reference cycle that only a full garbage collection
    frees. Every frame the contract guards (training splits, drift frames, each served request)
    lingered that way: ~0.5 GB of them at once in a run of the loop on the flights year.
    """
    import pandera.errors as pe

    try:
        validated = schema.validate(df, lazy=True)
    except pe.SchemaErrors as exc:
        cases = exc.failure_cases.copy()
        for col in FAILURE_COLUMNS:
            if col not in cases:
                cases[col] = None
        cases = cases[FAILURE_COLUMNS]
        # A missing column is reported against the schema, with the column's name as the value.
        missing = cases["check"].astype(str).str.startswith("column_in_dataframe")
        cases.loc[missing, "column"] = cases.loc[missing, "failure_case"]
        summary = (
            cases.groupby(["column", "check"], dropna=False).size().reset_index(name="rows")
        )
        lines = [
            f"  column {r.column!r}: {r.check} ({r.rows} failing row(s))"
            if r.column is not None and r.column == r.column
            else f"  {r.check} ({r.rows} failing row(s))"
            for r in summary.itertuples()
        ]
        raise ContractError(
            f"data violates the contract '{schema.name}':\n" + "\n".join(lines), cases
        ) from None
    vars(validated).pop("pandera", None)
    return validated


def null_rates(df: pd.DataFrame, columns: list[str]) -> dict[str, float]:
    present = [c for c in columns if c in df.columns]
    return {c: float(v) for c, v in df[present].isna().mean().items()}


def null_rate_violations(df: pd.DataFrame, contract: Contract, columns: list[str]) -> dict:
    """Columns whose null share is above their limit: {column: (rate, limit)}."""
    return {
        c: (rate, contract.null_limit(c))
        for c, rate in null_rates(df, columns).items()
        if rate > contract.null_limit(c)
    }
