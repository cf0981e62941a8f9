"""Is the world still the one the champion was trained on? Evidently drift reports.

The run's new data (here, before promotion) and each day of production traffic (`production.py`)
are compared with the same reference — the champion's training split, scored by the champion —
through the same `drift.compute_drift` and published the same way, so training-side and
production-side drift are one computation with two inputs.
"""

from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from mlops_pipeline.defs.resources import DatasetResource, MLflowResource, StorageResource
from mlops_pipeline.defs.resources.mlflow import CHAMPION
from mlops_pipeline.spec import DatasetSpec


@dataclass
class ChampionReference:
    version: str
    snapshot_id: str
    frame: pd.DataFrame  # contract-coerced features of the training split + `prediction`
    source: str  # where the frame came from: the stored reference, or rebuilt from the snapshot
    model: Any = None  # loaded only when asked for (to score new data)


def champion_reference(spec: DatasetSpec, storage: StorageResource, mlflow: MLflowResource,
                       with_model: bool = False) -> ChampionReference:
    """The champion and its training split scored by it: the drift reference.

    Read from where the training step stored it (tag `drift_reference`). A version registered
    before references were stored, or whose reference is gone, gets it rebuilt the way training
    builds it: the snapshot's training split, contract-coerced, scored by the registered model.
    """
    import mlflow as mlflow_lib

    from mlops_pipeline.data.contract import load_contract, validate
    from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare
    from mlops_pipeline.training.fit import drift_reference

    champion = mlflow.version_by_alias(spec.name, CHAMPION)
    if champion is None:
        raise dg.Failure(f"{spec.name} has no champion yet: nothing to compare against")
    version = str(champion.version)
    snapshot_id = champion.tags.get("snapshot_id")
    if not snapshot_id:
        raise dg.Failure(f"champion v{version} has no snapshot_id tag")
    model = None
    if with_model:
        mlflow.configure()
        model = mlflow_lib.sklearn.load_model(f"models:/{spec.name}/{version}")
    stored = champion.tags.get("drift_reference")
    if stored and storage.exists(stored):
        return ChampionReference(version, snapshot_id, storage.read_table(stored), stored, model)
    if model is None:
        mlflow.configure()
        model = mlflow_lib.sklearn.load_model(f"models:/{spec.name}/{version}")
    features = load_contract(spec).for_columns(spec.features.columns)
    frame = prepare(storage.read_snapshot(snapshot_id), spec).frame
    frame = validate(frame[frame[SPLIT_COLUMN] == "train"][spec.features.columns], features)
    return ChampionReference(version, snapshot_id, drift_reference(model, frame, spec.task),
                             f"rebuilt from snapshot {snapshot_id[:12]}", model if with_model else None)


def publish_drift(
    context: dg.AssetExecutionContext,
    spec: DatasetSpec,
    reference: ChampionReference,
    current: pd.DataFrame,
    label: str,
    storage: StorageResource,
    mlflow: MLflowResource,
    check_prefix: str = "",
    extra_metadata: dict[str, Any] | None = None,
    input_severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
) -> dg.MaterializeResult:
    """Compute drift, save the HTML report, log it to MLflow, and build metadata and the checks
    (prediction drift warns; input drift has `input_severity`)."""
    import mlflow as mlflow_lib

    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN, compute_drift

    result = compute_drift(
        reference.frame,
        current,
        categorical=spec.features.categorical,
        numerical=[*spec.features.numerical, PREDICTION_COLUMN],
        settings=spec.drift,
        seed=spec.model.seed,
    )
    name = f"drift_{spec.name}_v{reference.version}_{label}"
    html = result.save_html(storage.reports_dir / f"{name}.html")
    report_location = storage.publish_report(html)  # on S3: uploaded next to the snapshots
    with mlflow.start_run(
        run_name=name,
        tags={"kind": "drift_report", "champion_version": reference.version, "current": label,
              "dagster.run_id": context.run_id},
    ) as run:
        mlflow_lib.log_metrics({
            "drift_share": result.drift_share,
            **{f"drift_{c.column}": c.score for c in result.columns},
        })
        mlflow_lib.log_artifact(str(html))
    url = mlflow.run_url(run.info.run_id)
    table = dg.MetadataValue.table(
        records=[
            dg.TableRecord({"column": c.column, "method": c.method, "score": float(c.score),
                            "threshold": float(c.threshold), "drifted": bool(c.drifted)})
            for c in result.columns
        ],
        schema=dg.TableSchema(columns=[
            dg.TableColumn("column", "string"), dg.TableColumn("method", "string"),
            dg.TableColumn("score", "float"), dg.TableColumn("threshold", "float"),
            dg.TableColumn("drifted", "bool"),
        ]),
    )
    share, limit = result.drift_share, spec.drift.max_drift_share
    pred = result.prediction
    return dg.MaterializeResult(
        metadata={
            "drift_share": float(share),
            # Evidently's own headline counts the prediction as one more column; ours is inputs only.
            "drift_share_of": f"{len(result.input_columns)} input columns (prediction reported apart)",
            "drifted_columns": ", ".join(result.drifted_columns) or "none",
            "columns": table,
            "reference": f"champion v{reference.version} training split of snapshot "
            f"{reference.snapshot_id[:12]}",
            "reference_source": reference.source,
            "reference_rows": result.reference_rows,
            "current": label,
            "current_rows": result.current_rows,
            "report_path": dg.MetadataValue.path(report_location),
            **({"report": dg.MetadataValue.url(url)} if url else {}),
            "mlflow_run_id": run.info.run_id,
            **(extra_metadata or {}),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=f"{check_prefix}input_drift",
                passed=share <= limit,
                severity=input_severity,
                description=f"{share:.0%} of input columns drifted (limit {limit:.0%})"
                + (f": {', '.join(result.drifted_columns)}" if result.drifted_columns else ""),
                metadata={"drift_share": float(share), "limit": float(limit)},
            ),
            dg.AssetCheckResult(
                check_name=f"{check_prefix}prediction_drift",
                passed=pred is None or not pred.drifted,
                severity=dg.AssetCheckSeverity.WARN,
                description=(
                    "no prediction column" if pred is None
                    else f"prediction {pred.method} {pred.score:.3f} "
                    f"({'above' if pred.drifted else 'within'} {pred.threshold})"
                ),
                metadata={"score": float(pred.score) if pred else 0.0},
            ),
        ],
    )


def _rows_digest(frame: pd.DataFrame) -> str:
    """A short content id of the compared rows: one report file per distinct new data."""
    import hashlib

    import numpy as np

    from mlops_pipeline.deployment.holdout import content_keys

    keys = np.sort(content_keys(frame, list(frame.columns)))
    return hashlib.sha256(keys.tobytes()).hexdigest()[:12]


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
    "model's inputs and the champion's predictions.",
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
    training_features: pd.DataFrame,
    dataset: DatasetResource,
    storage: StorageResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    """Input and prediction drift of the new data, computed before `champion_model` may move the
    alias (which depends on this asset, so a blocking `input_drift` failure skips promotion).

    The new data is the run's labelled rows that the champion's training snapshot did not hold,
    recognised by content: it needs no time column and no landing order, and it is the data the
    run's contract checks admitted (a column a batch lacked is a null column here, as the contract
    allowed), so drift cannot fail on data the checks let through. No champion yet, or no new row
    (a single landed batch, or nothing landed since the champion's snapshot): both checks pass,
    saying there is nothing new to compare, instead of comparing data with itself.
    """
    from mlops_pipeline.data.contract import load_contract, validate
    from mlops_pipeline.deployment.holdout import new_rows
    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN
    from mlops_pipeline.training.model import drift_scores

    spec = dataset.spec()
    champion = mlflow.version_by_alias(spec.name, CHAMPION)
    if champion is None:
        return nothing_to_compare(spec, "no champion yet: nothing to compare against")
    version, snapshot_id = str(champion.version), champion.tags.get("snapshot_id", "")
    try:
        known = storage.read_snapshot(snapshot_id) if snapshot_id else None
    except FileNotFoundError:
        known = None
    if known is None:
        fresh, basis = training_features, f"champion v{version}'s snapshot is unavailable: every row"
    else:
        fresh, basis = new_rows(training_features, known), "rows new since champion's snapshot"
    if fresh.empty:
        return nothing_to_compare(
            spec,
            f"nothing new to compare: all {len(training_features)} rows were in champion "
            f"v{version}'s training snapshot {snapshot_id[:12]}",
            champion_version=version, current_rows=0,
        )
    reference = champion_reference(spec, storage, mlflow, with_model=True)
    features = load_contract(spec).for_columns(spec.features.columns)
    current = validate(fresh[spec.features.columns].reset_index(drop=True), features)
    current[PREDICTION_COLUMN] = drift_scores(reference.model, current, spec.task)
    time_col = getattr(spec, "time_column", None)
    span = {}
    if time_col and time_col in fresh.columns:
        times = pd.to_datetime(fresh[time_col])
        span = {"current_from": str(times.min()), "current_to": str(times.max())}
    return publish_drift(
        context, spec, reference, current, f"new_{_rows_digest(fresh)}", storage, mlflow,
        extra_metadata={"current_basis": basis, **span},
        input_severity=input_drift_severity(spec),
    )
