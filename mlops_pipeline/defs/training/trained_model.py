"""Stage 3: train the model pipeline on the train split; one MLflow run with a run manifest."""


import tempfile
from pathlib import Path

import dagster as dg

from mlops_pipeline.data.features import FeaturesInfo
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.handoffs import SnapshotRef, TrainedModel
from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.defs.resources.search import SearchResource
from mlops_pipeline.deployment.tags import (
    DATASET_TAG,
    DRIFT_REFERENCE_TAG,
    ESTIMATOR_TAG,
    RUN_DAGSTER_RUN_TAG,
    TRAINING_TAG,
)
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.training.fit import drift_reference, fit_parts, performance_estimator


class TrainingConfig(dg.Config):
    """Run-time knobs; everything else comes from the dataset spec."""

    seed: int | None = None
    # Trains on permuted labels: a deliberately bad model, to watch the gate block it.
    shuffle_labels: bool = False


@dg.asset(
    group_name="training",
    kinds={"sklearn", "mlflow"},
    description="The model the dataset config chooses (the default HistGradientBoosting pipeline, "
    "`model.estimator` behind its preprocessing, or the team's `model.train` function: a fitted "
    "estimator or an MLflow PythonModel), seeded, logged to MLflow with holdout metrics, a run "
    "manifest and its drift reference.",
    tags={TRAINING_TAG: "true"},
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    training_features: FeaturesInfo,
    dataset_snapshot: SnapshotRef,
    dataset: DatasetResource,
    mlflow: dg.ResourceParam[MLflow],
    storage: dg.ResourceParam[Storage],
    search: SearchResource,
) -> dg.Output[TrainedModel]:
    """Fit on the train split, bounded by `model.max_train_rows` (`data.features.training_rows`,
    read a chunk at a time; `training.fit.fit_parts`) and log one MLflow run: parameters, holdout
    metrics, the run manifest (with the training sample), the drift reference and performance
    estimator (stored, their locations tagged) and the model itself (`training.logged_model`).
    With `model.search` the parameters are searched first (`training.search`), each trial a nested
    run under this one, and the model is fitted with the chosen ones (recorded in the manifest)."""
    import yaml

    from mlops_pipeline.data.features import read_features, training_rows
    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN
    from mlops_pipeline.training.estimators import model_description
    from mlops_pipeline.training.logged_model import log_model
    from mlops_pipeline.training.manifest import build_manifest, manifest_tags

    spec = dataset.spec()
    seed = spec.model.seed if config.seed is None else config.seed
    if config.shuffle_labels:
        context.log.warning("training on SHUFFLED labels (shuffle_labels=true): expect the gate to block")
    columns = list(dict.fromkeys([*spec.features.columns, spec.target.name]))
    train, sample = training_rows(storage, training_features, spec, seed, columns)
    if sample.rows < sample.of:
        context.log.info(f"training on a seeded sample of {sample.rows} of {sample.of} train rows "
                         f"(model.max_train_rows), stratified by {sample.stratified_by or 'nothing'}")
    holdout = read_features(storage, training_features, spec, "holdout", columns)
    searched, fit_spec = None, spec
    if spec.model.search is not None:
        from mlops_pipeline.training.fit import training_xy
        from mlops_pipeline.training.search import apply_params, run_search, study_name

        X, y = training_xy(train, spec, seed, config.shuffle_labels)
        searched = run_search(X, y, spec, seed, storage_url=search.storage_url,
                              study=study_name(spec, dataset_snapshot.id, seed))
        del X, y
        context.log.info(f"model.search: {len(searched.trials)} trials ({searched.storage} study "
                         f"{searched.study}), chosen {searched.params}: validation "
                         f"{searched.metric} {searched.value:.4f}")
        fit_spec = apply_params(spec, searched.params)
    fitted = fit_parts(train, holdout, fit_spec, seed, config.shuffle_labels, sample)
    del train, holdout
    # MLflow only now, after scikit-learn: imported first, it slows the import of skops (which
    # log_model imports); see docs/benchmarks.md.
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
            "split": training_features.summary,
            "training_sample": sample.record,
            # The searched parameters: `reproduce` fits with these and does not search again.
            **({"search": searched.record()} if searched is not None else {}),
        },
        inputs={"config": spec.config_file, "contract": spec.contract_path()},
    )
    tags = {**manifest_tags(manifest), RUN_DAGSTER_RUN_TAG: context.run_id, DATASET_TAG: spec.name}
    with mlflow.start_run(run_name=f"train-{spec.name}", tags=tags) as run:
        mlflow_lib.log_params({
            "task": spec.task, "seed": seed, "shuffle_labels": config.shuffle_labels,
            "train_rows": len(X_train), "train_rows_available": sample.of, "holdout_rows": len(X_hold),
            **{f"model.{k}": v for k, v in fit_spec.model.params.items()},
            **({"model.train": spec.model.train} if spec.model.train else {}),
            **({"search.metric": searched.metric, "search.validation_value": searched.value,
                "search.trials": len(searched.trials)} if searched is not None else {}),
            **({"model.estimator": spec.model.estimator, "model.preprocessing": spec.model.preprocessing}
               if spec.model.estimator else {}),
            # The chosen decision threshold (`model.threshold`); the model itself carries it.
            **({"decision_threshold": fitted.classes.threshold}
               if fitted.classes is not None and fitted.classes.threshold is not None else {}),
        })
        mlflow_lib.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
        if searched is not None:
            from mlops_pipeline.training.search import log_trials

            log_trials(mlflow.client(), run.info.experiment_id, run.info.run_id, searched)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "manifest.yaml"
            path.write_text(yaml.safe_dump(manifest, sort_keys=False))
            mlflow_lib.log_artifact(str(path))
        reference = drift_reference(model, X_train, spec.task)
        reference_uri = storage.write_reference(run.info.run_id, reference)
        mlflow_lib.set_tag(DRIFT_REFERENCE_TAG, reference_uri)
        estimator_uri = storage.write_estimator(
            run.info.run_id, performance_estimator(fitted, spec, seed).to_bytes())
        mlflow_lib.set_tag(ESTIMATOR_TAG, estimator_uri)
        model_uri = log_model(model, X_train, reference[PREDICTION_COLUMN].to_numpy()[:100],
                              trust_dumped_types=spec.model.train is not None)

    trained = TrainedModel(run.info.run_id, model_uri, snapshot_id, metrics, seed, manifest,
                           reference_uri, estimator_uri)
    url = mlflow.run_url(run.info.run_id)
    return dg.Output(
        trained,
        metadata={
            "mlflow_run_id": run.info.run_id,
            **({"mlflow_run": dg.MetadataValue.url(url)} if url else {}),
            "model_uri": model_uri,
            "model": model_description(spec, model),
            "snapshot_id": snapshot_id,
            "drift_reference": dg.MetadataValue.path(reference_uri),
            "performance_estimator": dg.MetadataValue.path(estimator_uri),
            "seed": seed,
            **{f"holdout_{k}": float(v) for k, v in metrics.items()},
        },
    )
