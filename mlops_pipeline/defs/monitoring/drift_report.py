"""Drift of the run's new data against the champion's training data, before promotion (thin
wiring over `mlops_pipeline.monitoring.reports`; each day of production traffic goes through the
same report in `traffic.production_drift`).
"""

import itertools
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from mlops_pipeline.data.features import FeaturesInfo
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.monitoring.shared import drift_materialization, reference_or_fail
from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.deployment.tags import CHALLENGER, CHAMPION, FIRST_RUN_CURRENT, SNAPSHOT_ID_TAG
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.spec import DatasetSpec


def input_drift_severity(spec: DatasetSpec) -> dg.AssetCheckSeverity:
    """ERROR (blocks promotion: `input_drift` is a blocking check) only when the dataset config sets
    `drift.block_promotion`; a WARN failure of a blocking check does not stop the run."""
    return dg.AssetCheckSeverity.ERROR if spec.drift.block_promotion else dg.AssetCheckSeverity.WARN


def nothing_to_compare(spec: DatasetSpec, reason: str, **metadata: Any) -> dg.MaterializeResult:
    """Both drift checks pass with the reason as their description, and no report is made."""
    return dg.MaterializeResult(
        metadata={"status": reason, **metadata},
        check_results=[
            dg.AssetCheckResult(check_name=name, passed=True, severity=severity, description=reason)
            for name, severity in (("input_drift", input_drift_severity(spec)),
                                   ("prediction_drift", dg.AssetCheckSeverity.WARN))
        ],
    )


@dg.asset(
    group_name="monitoring",
    kinds={"evidently", "mlflow"},
    deps=["model_version"],
    description="Before promotion: Evidently data-drift report of the run's new data (rows the "
    "champion's training snapshot did not hold) against the champion's training data, on the "
    "model's inputs and the champion's predictions. First run (no champion): the holdout against "
    "the training split, scored by the candidate.",
    check_specs=[
        dg.AssetCheckSpec(
            "input_drift", asset="drift_report", blocking=True,
            description="Is the share of drifted input columns under the configured limit? Warns; "
            "blocks promotion when the dataset config sets drift.block_promotion.",
        ),
        dg.AssetCheckSpec(
            "prediction_drift", asset="drift_report",
            description="Has the distribution of the champion's predictions stayed put?",
        ),
    ],
)
def drift_report(
    context: dg.AssetExecutionContext,
    training_features: FeaturesInfo,
    dataset: DatasetResource,
    storage: dg.ResourceParam[Storage],
    mlflow: dg.ResourceParam[MLflow],
) -> dg.MaterializeResult:
    """Input and prediction drift of the new data, computed before `champion_model` may move the
    alias (which depends on this asset, so a blocking `input_drift` failure skips promotion).

    The new data is the run's labelled rows that the champion's training snapshot did not hold,
    recognised by content: it needs no time column and no landing order, and it is the data the
    run's contract checks admitted (a column a batch lacked is a null column here, as the contract
    allowed), so drift cannot fail on data the checks let through. No new row (nothing landed
    since the champion's snapshot): both checks pass, saying there is nothing new to compare,
    instead of comparing data with itself. No champion yet: `first_run_drift`.
    """
    from mlops_pipeline.data.contract import load_contract, validate
    from mlops_pipeline.data.features import iter_features
    from mlops_pipeline.deployment.holdout import iter_new_stored_rows
    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN
    from mlops_pipeline.monitoring.reports import NewRows
    from mlops_pipeline.training.model import drift_scores

    spec = dataset.spec()
    champion = mlflow.version_by_alias(spec.name, CHAMPION)
    if champion is None:
        return first_run_drift(context, spec, training_features, storage, mlflow)
    version, snapshot_id = str(champion.version), champion.tags.get(SNAPSHOT_ID_TAG, "")
    time_col = getattr(spec, "time_column", None)
    columns = list(dict.fromkeys([*spec.features.columns, *([time_col] if time_col else [])]))
    fresh: Iterator[pd.DataFrame] | None = None
    if snapshot_id:
        try:
            fresh = iter_new_stored_rows(storage, training_features, spec, snapshot_id, columns)
            basis = "rows new since champion's snapshot"
        except FileNotFoundError:
            fresh = None
    if fresh is None:
        fresh = iter_features(storage, training_features, columns)
        basis = f"champion v{version}'s snapshot is unavailable: every row"
    first = next((chunk for chunk in fresh if len(chunk)), None)
    if first is None:
        return nothing_to_compare(
            spec,
            f"nothing new to compare: all {training_features.rows} rows were in champion "
            f"v{version}'s training snapshot {snapshot_id[:12]}",
            champion_version=version, current_rows=0,
        )
    reference = reference_or_fail(spec, storage, mlflow, with_model=True)
    features = load_contract(spec).for_columns(spec.features.columns)
    new = NewRows(time_col)

    def scored() -> Iterator[pd.DataFrame]:
        """The new rows a chunk at a time, as serving sees them, with the champion's answers."""
        for chunk in new.watch(itertools.chain([first], fresh)):
            current = validate(chunk[spec.features.columns], features)
            current[PREDICTION_COLUMN] = drift_scores(reference.model, current, spec.task)
            yield current

    return drift_materialization(
        context, spec, reference, scored(), lambda: f"new_{new.digest}", storage, mlflow,
        extra_metadata=lambda: {"current_basis": basis, **new.span},
        input_severity=input_drift_severity(spec),
    )


def first_run_basis(spec: DatasetSpec, features: FeaturesInfo, version: str) -> str:
    """What a first run's drift report compares, in words (the `compared` metadata)."""
    if features.strategy == "time":
        held = (f"the holdout (the newest period, from {features.cutoff})" if features.cutoff
                else "the holdout (the newest period)")
    else:
        held = f"the holdout split ({features.strategy})"
    return (f"no champion yet: {held} against the training split of snapshot "
            f"{features.snapshot_id[:12]}, scored by candidate v{version}")


def first_run_drift(context: dg.AssetExecutionContext, spec: DatasetSpec, features: FeaturesInfo,
                    storage: Storage, mlflow: MLflow) -> dg.MaterializeResult:
    """The first run's report: with no champion there is no "new data", so the candidate's holdout
    is compared with its training split (its stored drift reference) and scored by the candidate
    (the `challenger` this run registered). `input_drift` only warns here: there is no champion
    to protect, and the first model is promoted on the floors."""
    from mlops_pipeline.data.contract import load_contract, validate
    from mlops_pipeline.data.features import iter_features
    from mlops_pipeline.data.preparation import SPLIT_COLUMN
    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN
    from mlops_pipeline.training.model import drift_scores

    if mlflow.version_by_alias(spec.name, CHALLENGER) is None or not features.holdout_rows:
        return nothing_to_compare(spec, "no champion yet and no candidate with a holdout: "
                                  "nothing to compare against")
    reference = reference_or_fail(spec, storage, mlflow, with_model=True, alias=CHALLENGER)
    contract = load_contract(spec).for_columns(spec.features.columns)
    basis = first_run_basis(spec, features, reference.version)

    def holdout() -> Iterator[pd.DataFrame]:
        """The holdout a chunk at a time, as serving sees it, with the candidate's answers."""
        for chunk in iter_features(storage, features, [*spec.features.columns, SPLIT_COLUMN]):
            chunk = chunk[chunk[SPLIT_COLUMN] == "holdout"]
            if len(chunk):
                current = validate(chunk[spec.features.columns], contract)
                current[PREDICTION_COLUMN] = drift_scores(reference.model, current, spec.task)
                yield current

    return drift_materialization(
        context, spec, reference, holdout(), FIRST_RUN_CURRENT, storage, mlflow,
        extra_metadata={
            "compared": basis, "current_basis": "the holdout split (no champion yet)",
            "reference": f"candidate v{reference.version} training split of snapshot "
            f"{reference.snapshot_id[:12]}",
        },
        input_severity=dg.AssetCheckSeverity.WARN, first_run=True,
    )
