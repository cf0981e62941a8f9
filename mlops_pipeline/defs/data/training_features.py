"""Stage 2: a snapshot becomes labelled, time-split training data, guarded by the data contract
(its checks build on `data.contract` and `data.batch_checks`; the contract and null-rate results are
`defs.checks`', the same as production inputs get)."""


from collections.abc import Iterator

import dagster as dg
import pandas as pd

from mlops_pipeline.data.batch_checks import OVERALL_CHECKS, check_overall, duplicate_findings, summary
from mlops_pipeline.data.contract import load_contract, null_rate_violations
from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.checks import contract_check, null_rate_check
from mlops_pipeline.defs.handoffs import SnapshotRef
from mlops_pipeline.defs.resources import DatasetResource


@dg.asset(
    group_name="data",
    kinds={"pandas", "pandera"},
    description="Labelled rows of the snapshot, split into train and holdout by the spec's `split` "
    "(by default the most recent period is the holdout).",
)
def training_features(
    context: dg.AssetExecutionContext,
    dataset_snapshot: SnapshotRef,
    dataset: DatasetResource,
    storage: dg.ResourceParam[Storage],
) -> dg.Output[pd.DataFrame]:
    """The snapshot prepared for training (`data.preparation.prepare`): the target derived, unlabelled
    rows dropped, every row marked train or holdout; its metadata is what a person checks first
    (rows per split, the split's boundary, class balance)."""
    spec = dataset.spec()
    prepared = prepare(storage.read_snapshot(dataset_snapshot.id), spec)
    df = prepared.frame
    counts = df[SPLIT_COLUMN].value_counts()
    metadata = {
        "snapshot_id": dataset_snapshot.id,
        "dagster/row_count": len(df),
        "train_rows": int(counts.get("train", 0)),
        "holdout_rows": int(counts.get("holdout", 0)),
        "split_strategy": prepared.strategy,
        **({"holdout_starts_at": prepared.cutoff} if prepared.cutoff else {}),
        **({"holdout_class_balance": dg.MetadataValue.json(prepared.summary["holdout_class_balance"])}
           if "holdout_class_balance" in prepared.summary else {}),
        "dropped_unlabelled_rows": prepared.dropped_unlabelled,
        "features": ", ".join(spec.features.columns),
        "target": spec.target.name,
    }
    if spec.task == "classification":
        # the share of each class (any label type); a derived 0/1 target keeps its positive rate
        shares = df[spec.target.name].value_counts(normalize=True).sort_index()
        metadata["class_balance"] = dg.MetadataValue.json({str(k): float(v) for k, v in shares.items()})
        if spec.target.expression:
            metadata["positive_rate"] = float(df[spec.target.name].mean())
    return dg.Output(df, metadata=metadata)


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "contract_schema",
            asset="training_features",
            blocking=True,
            description="Does every column have the contract's dtype and nullability?",
        ),
        dg.AssetCheckSpec(
            "null_rates",
            asset="training_features",
            blocking=True,
            description="Is each column's share of nulls under its limit?",
        ),
        dg.AssetCheckSpec(
            "min_rows",
            asset="training_features",
            blocking=True,
            description="Are there enough labelled rows, with both train and holdout non-empty?",
        ),
        dg.AssetCheckSpec(
            "unique_keys",
            asset="training_features",
            blocking=True,
            description="Does every row have a distinct key (no duplicated records; without key "
            "columns, few fully duplicated rows)?",
        ),
        *[
            dg.AssetCheckSpec(name, asset="training_features", blocking=True, description=description)
            for name, description in OVERALL_CHECKS.items()
        ],
    ],
    ins={"training_features": dg.AssetIn("training_features")},
)
def training_features_checks(
    training_features: pd.DataFrame, dataset: DatasetResource
) -> Iterator[dg.AssetCheckResult]:
    """The training data against the contract, overall (per-batch checks ran on the snapshot):
    every check blocks, except duplicated rows in a dataset without key columns, which warn."""
    spec = dataset.spec()
    contract = load_contract(spec)
    df = training_features
    error = dg.AssetCheckSeverity.ERROR

    yield contract_check("contract_schema", df, contract.schema,
                         f"{len(contract.columns)} columns match the contract")
    yield null_rate_check(
        "null_rates", null_rate_violations(df, contract, contract.columns),
        "every column is under its null-rate limit",
        worst_null_rate=float(df[[c for c in contract.columns if c in df]].isna().mean().max()),
    )

    counts = df[SPLIT_COLUMN].value_counts()
    train, holdout = int(counts.get("train", 0)), int(counts.get("holdout", 0))
    enough = len(df) >= spec.checks.min_rows and train > 0 and holdout > 0
    yield dg.AssetCheckResult(
        check_name="min_rows", passed=enough, severity=error,
        description=f"{len(df)} labelled rows (train {train}, holdout {holdout}); "
        f"minimum {spec.checks.min_rows}",
        metadata={"rows": len(df), "train_rows": train, "holdout_rows": holdout},
    )

    keys = [c for c in spec.key_columns if c in df.columns]
    missing_keys = sorted(set(spec.key_columns) - set(keys))
    if spec.key_columns:
        duplicates = int(df.duplicated(subset=keys).sum())
        keys_ok, keys_said = duplicates == 0 and not missing_keys, (
            f"key columns missing: {missing_keys}" if missing_keys
            else f"{duplicates} rows duplicate the key ({', '.join(keys)})"
        )
    else:  # no key: fully duplicated rows, above a share (some datasets repeat a row legitimately)
        dups = duplicate_findings("(all batches)", df, spec, check="unique_keys")
        duplicates = int(df.astype(str).duplicated().sum()) if dups else 0
        keys_ok, keys_said = not dups, summary("unique_keys", dups, "no key columns; duplicated rows")
    # Without a key, a repeated row may be a legitimate repeat (two survey answers alike): it warns.
    # A repeated key is a duplicated record: it blocks.
    yield dg.AssetCheckResult(
        check_name="unique_keys", passed=keys_ok,
        severity=error if spec.key_columns else dg.AssetCheckSeverity.WARN, description=keys_said,
        metadata={"duplicate_rows": duplicates},
    )

    for name, findings in check_overall(df, contract, spec).items():
        yield dg.AssetCheckResult(
            check_name=name, passed=not findings, severity=error,
            description=summary(name, findings, f"{len(df)} rows"),
            metadata={"failing_columns": ", ".join(sorted({str(f.column) for f in findings if f.column}))},
        )
