"""Stage 5: is the world still the one the champion was trained on? Evidently drift reports.

The newest landed batch (here) and each day of production traffic (`production.py`) are compared
with the same reference — the champion's training split, scored by the champion — through the same
`drift.compute_drift` and published the same way, so training-side and production-side drift are
one computation with two inputs.
"""

from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from mlops_pipeline.resources import DatasetResource, MLflowResource, StorageResource
from mlops_pipeline.resources.mlflow import CHAMPION
from mlops_pipeline.settings import DatasetSpec


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

    from mlops_pipeline.contract import load_contract, validate
    from mlops_pipeline.preparation import SPLIT_COLUMN, prepare
    from mlops_pipeline.training import drift_reference

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
) -> dg.MaterializeResult:
    """Compute drift, save the HTML report, log it to MLflow, and build metadata and WARN checks."""
    import mlflow as mlflow_lib

    from mlops_pipeline.drift import PREDICTION_COLUMN, compute_drift

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
                severity=dg.AssetCheckSeverity.WARN,
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


@dg.asset(
    group_name="monitoring",
    kinds={"evidently", "mlflow"},
    deps=["champion_model"],
    description="Evidently data-drift report: the champion's training data (reference) against the "
    "newest landed batch (current), on the model's inputs and its predictions.",
    check_specs=[
        dg.AssetCheckSpec(
            "input_drift", asset="drift_report",
            description="Is the share of drifted input columns under the configured limit?",
        ),
        dg.AssetCheckSpec(
            "prediction_drift", asset="drift_report",
            description="Has the distribution of the champion's predictions stayed put?",
        ),
    ],
)
def drift_report(
    context: dg.AssetExecutionContext,
    dataset: DatasetResource,
    storage: StorageResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    from mlops_pipeline.contract import load_contract, validate
    from mlops_pipeline.drift import PREDICTION_COLUMN
    from mlops_pipeline.model import predict_scores
    from mlops_pipeline.snapshots import newest_batch

    spec = dataset.spec()
    reference = champion_reference(spec, storage, mlflow, with_model=True)
    batch_name, current = newest_batch(
        storage.landing_glob(spec), spec.source.format, spec.time_column, storage=storage
    )
    features = load_contract(spec).for_columns(spec.features.columns)
    current = validate(current[spec.features.columns], features)
    current[PREDICTION_COLUMN] = predict_scores(reference.model, current, spec.task)
    return publish_drift(
        context, spec, reference, current, batch_name.rsplit(".", 1)[0], storage, mlflow,
        extra_metadata={"current_batch": batch_name},
    )
