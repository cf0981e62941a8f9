"""Stage 3: train the model pipeline on the train split; one MLflow run with a run manifest."""


import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd

from mlops_pipeline.defs.data.dataset_snapshot import SnapshotRef
from mlops_pipeline.defs.resources import DatasetResource, MLflowResource, StorageResource
from mlops_pipeline.training.fit import drift_reference, fit_and_score, performance_estimator


class TrainingConfig(dg.Config):
    """Run-time knobs; everything else comes from the dataset spec."""

    seed: int | None = None
    # Trains on permuted labels: a deliberately bad model, to watch the gate block it.
    shuffle_labels: bool = False


@dataclass(frozen=True)
class TrainedModel:
    run_id: str
    model_uri: str
    snapshot_id: str
    metrics: dict[str, float]
    seed: int
    manifest: dict = field(default_factory=dict)
    reference_uri: str = ""  # the drift reference: the train split scored by this model
    estimator_uri: str = ""  # the performance estimator fitted on the holdout (before labels)


def _log_model(model, X: pd.DataFrame, scores) -> str:
    """Log with skops (MLflow's safe default), trusting only the types our pipelines are made of."""
    import platform
    import warnings

    import mlflow
    from mlflow.models import infer_signature

    from mlops_pipeline.training.model import SKOPS_TRUSTED_TYPES, pip_requirements

    # Our own conda env instead of `pip_requirements=`: pip is not installed in a uv venv, and
    # MLflow, asked to pin it in conda.yaml, warns on every run. pip is listed unpinned on purpose;
    # requirements.txt is the same pins either way.
    conda_env = {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={platform.python_version()}", "pip", {"pip": pip_requirements()}],
    }
    with warnings.catch_warnings():
        # MLflow's hint that int columns cannot carry NaN at inference: serving coerces every
        # request to the contract's dtypes before predicting, so it never applies here.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X.head(100), scores[:100]),
            input_example=X.head(5),
            skops_trusted_types=list(SKOPS_TRUSTED_TYPES),
            conda_env=conda_env,
        )
    return info.model_uri


@dg.asset(
    group_name="training",
    kinds={"sklearn", "mlflow"},
    description="A seeded scikit-learn Pipeline (transforms + HistGradientBoosting), logged to MLflow "
    "with holdout metrics, a run manifest and its drift reference.",
    tags={"mlops/training": "true"},
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    training_features: pd.DataFrame,
    dataset_snapshot: SnapshotRef,
    dataset: DatasetResource,
    mlflow: MLflowResource,
    storage: StorageResource,
) -> dg.Output[TrainedModel]:
    import yaml

    from mlops_pipeline.data.preparation import split_summary
    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN
    from mlops_pipeline.training.manifest import build_manifest, manifest_tags

    spec = dataset.spec()
    seed = spec.model.seed if config.seed is None else config.seed
    if config.shuffle_labels:
        context.log.warning("training on SHUFFLED labels (shuffle_labels=true): expect the gate to block")
    fitted = fit_and_score(training_features, spec, seed, config.shuffle_labels)
    # MLflow only now, after scikit-learn: imported first, its ~1,500 modules sit ahead of scipy's
    # in sys.modules, which skops (imported by log_model) walks once per scipy ufunc: +0.3 s.
    import mlflow as mlflow_lib

    model, X_train, X_hold, metrics = fitted.model, fitted.X_train, fitted.X_hold, fitted.metrics
    snapshot_id = dataset_snapshot.id

    manifest = build_manifest(
        snapshot_id=snapshot_id,
        seeds={"model": seed, "split": spec.split.seed},
        config={
            "dataset": spec.model_dump(mode="json"),
            "fingerprint": spec.fingerprint(),
            "training": config.model_dump(),
        },
        dagster_run_id=context.run_id,
        extra={
            "holdout": {"rows": len(X_hold), "metrics": metrics},
            "split": split_summary(training_features, spec.split_strategy,
                                   spec.target.name if spec.task == "classification" else None),
        },
        inputs={"config": spec.config_file, "contract": spec.contract_path()},
    )
    tags = {**manifest_tags(manifest), "dagster.run_id": context.run_id, "dataset": spec.name}
    with mlflow.start_run(run_name=f"train-{spec.name}", tags=tags) as run:
        mlflow_lib.log_params({
            "task": spec.task, "seed": seed, "shuffle_labels": config.shuffle_labels,
            "train_rows": len(X_train), "holdout_rows": len(X_hold),
            **{f"model.{k}": v for k, v in spec.model.params.items()},
        })
        mlflow_lib.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "manifest.yaml"
            path.write_text(yaml.safe_dump(manifest, sort_keys=False))
            mlflow_lib.log_artifact(str(path))
        reference = drift_reference(model, X_train, spec.task)
        reference_uri = storage.write_reference(run.info.run_id, reference)
        mlflow_lib.set_tag("drift_reference", reference_uri)
        estimator_uri = storage.write_estimator(
            run.info.run_id, performance_estimator(fitted, spec, seed).to_bytes())
        mlflow_lib.set_tag("performance_estimator", estimator_uri)
        model_uri = _log_model(model, X_train, reference[PREDICTION_COLUMN].to_numpy()[:100])

    trained = TrainedModel(run.info.run_id, model_uri, snapshot_id, metrics, seed, manifest,
                           reference_uri, estimator_uri)
    url = mlflow.run_url(run.info.run_id)
    return dg.Output(
        trained,
        metadata={
            "mlflow_run_id": run.info.run_id,
            **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
            "model_uri": model_uri,
            "snapshot_id": snapshot_id,
            "drift_reference": dg.MetadataValue.path(reference_uri),
            "performance_estimator": dg.MetadataValue.path(estimator_uri),
            "seed": seed,
            **{f"holdout_{k}": float(v) for k, v in metrics.items()},
        },
    )
