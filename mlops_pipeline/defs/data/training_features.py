"""Stage 2: a snapshot becomes labelled, split training data, stored as a table beside it and
guarded by the data contract (thin wiring over `data.features` and `data.feature_checks`, which read
it a chunk at a time; the contract and null-rate results are `defs.checks`', the same as production
inputs get)."""


from collections.abc import Iterator

import dagster as dg

from mlops_pipeline.data.contract import load_contract
from mlops_pipeline.data.domain import OVERALL_CHECKS
from mlops_pipeline.data.feature_checks import check_features
from mlops_pipeline.data.features import FeaturesInfo, prepare_features
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.checks import contract_result, null_rate_check
from mlops_pipeline.defs.handoffs import SnapshotRef
from mlops_pipeline.defs.resources import DatasetResource


@dg.asset(
    group_name="data",
    kinds={"pandas", "pandera"},
    description="Labelled rows of the snapshot, split into train and holdout by the spec's `split` "
    "(by default the most recent period is the holdout), stored as a table beside the snapshot.",
)
def training_features(
    context: dg.AssetExecutionContext,
    dataset_snapshot: SnapshotRef,
    dataset: DatasetResource,
    storage: dg.ResourceParam[Storage],
) -> dg.Output[FeaturesInfo]:
    """The snapshot prepared for training (`data.features.prepare_features`, a chunk at a time): the
    target derived, unlabelled rows dropped, every row marked train or holdout; its metadata is
    what a person checks first (rows per split, the split's boundary, class balance)."""
    from mlops_pipeline.data.columns import file_columns
    from mlops_pipeline.spec import check_columns, check_gate_classes

    spec = dataset.spec()
    where = f"snapshot {dataset_snapshot.id[:12]}"
    # The config's columns, from the snapshot's footer: one line naming a missing one, not a KeyError.
    check_columns(spec, file_columns(storage, storage.snapshot_uri(dataset_snapshot.id), "parquet"), where)
    info = prepare_features(storage, dataset_snapshot.id, spec)
    if spec.task == "classification" and info.class_shares:
        check_gate_classes(spec, len(info.class_shares), where)  # f1 on multi-class, before training
    metadata = {
        "snapshot_id": dataset_snapshot.id,
        "path": dg.MetadataValue.path(info.location),
        "dagster/row_count": info.rows,
        "train_rows": info.train_rows,
        "holdout_rows": info.holdout_rows,
        "split_strategy": info.strategy,
        **({"holdout_starts_at": info.cutoff} if info.cutoff else {}),
        **({"holdout_class_balance": dg.MetadataValue.json(info.holdout_class_balance)}
           if info.holdout_class_balance else {}),
        "dropped_unlabelled_rows": info.dropped_unlabelled,
        "features": ", ".join(spec.features.columns),
        "target": spec.target.name,
    }
    if spec.task == "classification":
        # the share of each class (any label type); a derived 0/1 target keeps its positive rate
        metadata["class_balance"] = dg.MetadataValue.json(info.class_shares)
        if info.positive_rate is not None:
            metadata["positive_rate"] = info.positive_rate
    return dg.Output(info, metadata=metadata)


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
    training_features: FeaturesInfo, dataset: DatasetResource, storage: dg.ResourceParam[Storage]
) -> Iterator[dg.AssetCheckResult]:
    """The stored training data against the contract, overall (per-batch checks ran on the
    snapshot), read a chunk at a time (`data.feature_checks.check_features`): every check blocks,
    except duplicated rows in a dataset without key columns, which warn."""
    spec = dataset.spec()
    contract = load_contract(spec)
    checks = check_features(storage, training_features, spec, contract)
    yield contract_result("contract_schema", checks.contract_error,
                          f"{len(contract.columns)} columns match the contract")
    yield null_rate_check("null_rates", checks.null_violations, "every column is under its null-rate limit",
                          worst_null_rate=checks.worst_null_rate)
    # Without a key, a repeated row may be a legitimate repeat (two survey answers alike): it warns.
    # A repeated key is a duplicated record: it blocks.
    for o in checks.outcomes:
        yield dg.AssetCheckResult(
            check_name=o.name, passed=o.passed, description=o.description, metadata=o.metadata,
            severity=dg.AssetCheckSeverity.WARN if o.warn_only else dg.AssetCheckSeverity.ERROR,
        )
