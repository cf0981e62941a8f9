"""Stage 5: is the world still the one the champion was trained on? An Evidently drift report."""


import dagster as dg
import pandas as pd

from mlops_pipeline.resources import DatasetResource, MLflowResource, StorageResource
from mlops_pipeline.resources.mlflow import CHAMPION


def newest_batch(pattern: str, fmt: str, time_column: str) -> tuple[str, pd.DataFrame]:
    """The landed batch with the latest timestamps: what production is seeing now."""
    from mlops_pipeline.snapshots import LandingError, landed_files

    files = landed_files(pattern)
    if not files:
        raise LandingError(f"no landed batches match {pattern!r}")

    def read(f, columns=None):
        return pd.read_parquet(f, columns=columns) if fmt == "parquet" else pd.read_csv(
            f, usecols=columns
        )

    latest = max(files, key=lambda f: pd.to_datetime(read(f, [time_column])[time_column]).max())
    return latest.name, read(latest)


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
):
    import mlflow as mlflow_lib

    from mlops_pipeline.contract import load_contract, validate
    from mlops_pipeline.drift import PREDICTION_COLUMN, compute_drift
    from mlops_pipeline.model import predict_scores
    from mlops_pipeline.preparation import SPLIT_COLUMN, prepare

    spec = dataset.spec()
    champion = mlflow.version_by_alias(spec.name, CHAMPION)
    if champion is None:
        raise dg.Failure(f"{spec.name} has no champion yet: nothing to compare against")
    version = str(champion.version)
    snapshot_id = champion.tags.get("snapshot_id")
    if not snapshot_id:
        raise dg.Failure(f"champion v{version} has no snapshot_id tag")

    features = load_contract(spec).for_columns(spec.features.columns)
    reference = prepare(storage.read_snapshot(snapshot_id), spec).frame
    reference = validate(reference[reference[SPLIT_COLUMN] == "train"][spec.features.columns], features)
    batch_name, current = newest_batch(
        spec.landing_glob(storage.base), spec.source.format, spec.time_column
    )
    current = validate(current[spec.features.columns], features)

    model = mlflow_lib.sklearn.load_model(f"models:/{spec.name}/{version}")
    reference[PREDICTION_COLUMN] = predict_scores(model, reference, spec.task)
    current[PREDICTION_COLUMN] = predict_scores(model, current, spec.task)
    result = compute_drift(
        reference,
        current,
        categorical=spec.features.categorical,
        numerical=[*spec.features.numerical, PREDICTION_COLUMN],
        settings=spec.drift,
        seed=spec.model.seed,
    )
    stem = batch_name.rsplit(".", 1)[0]
    html = result.save_html(storage.reports_dir / f"drift_{spec.name}_v{version}_{stem}.html")

    with mlflow.start_run(
        run_name=f"drift-{spec.name}-{stem}",
        tags={"kind": "drift_report", "champion_version": version, "batch": batch_name,
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
            "drifted_columns": ", ".join(result.drifted_columns) or "none",
            "columns": table,
            "reference": f"champion v{version} training split of snapshot {snapshot_id[:12]}",
            "reference_rows": result.reference_rows,
            "current_batch": batch_name,
            "current_rows": result.current_rows,
            "report_path": dg.MetadataValue.path(str(html)),
            **({"report": dg.MetadataValue.url(url)} if url else {}),
            "mlflow_run_id": run.info.run_id,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="input_drift",
                passed=share <= limit,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"{share:.0%} of input columns drifted (limit {limit:.0%})"
                + (f": {', '.join(result.drifted_columns)}" if result.drifted_columns else ""),
                metadata={"drift_share": float(share), "limit": float(limit)},
            ),
            dg.AssetCheckResult(
                check_name="prediction_drift",
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
