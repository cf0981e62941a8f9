"""What monitoring compares production with: the champion's drift reference and its performance
estimator, and the champion's own answers in a day's log.

Training stores both artefacts beside the model version (version tags `drift_reference` and
`performance_estimator`). A version registered before they were stored, or whose file is gone,
gets them rebuilt the way training builds them, from the version's own snapshot — so monitoring
always compares against the data the champion learned from, never against "the latest data".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlops_pipeline.deployment.tags import (
    CHAMPION,
    DRIFT_REFERENCE_TAG,
    ESTIMATOR_TAG,
    GATE_SNAPSHOT_TAG,
    HOLDOUT_TAG_PREFIX,
    SNAPSHOT_ID_TAG,
)

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.deployment.tracking import MLflow
    from mlops_pipeline.spec import DatasetSpec


class ChampionUnavailable(LookupError):
    """No champion, or a champion without what monitoring needs; the message says which."""


class NoProbabilities(ChampionUnavailable):
    """A classifier champion that answers labels only (a pyfunc without `predict_proba` and
    `classes_`): its drift is measured on its labels, but nothing that needs probabilities (the
    estimates before labels) can be computed; the one-line message says so."""


@dataclass
class ChampionReference:
    """The drift reference: the champion's training split, scored by the champion."""

    version: str
    snapshot_id: str
    frame: pd.DataFrame  # contract-coerced features of the training split + `prediction`
    source: str  # where the frame came from: the stored reference, or rebuilt from the snapshot
    model: Any = None  # loaded only when asked for (to score new data)


@dataclass
class ChampionEstimator:
    """The champion's performance estimator (before labels) and its holdout metrics."""

    version: str
    estimator: Any  # monitoring.estimation.PerformanceEstimator
    holdout: dict[str, float]  # the champion's holdout metrics (version tags)
    source: str  # the stored estimator, or rebuilt from the snapshot's holdout
    model: Any = None  # loaded for regression (DLE needs the champion's feature encoding)


def _split(storage: Storage, snapshot_id: str, spec: DatasetSpec, split: str) -> pd.DataFrame:
    """One split of a snapshot, prepared as training prepares it (the stored prepared table,
    prepared now if this snapshot and config have none)."""
    from mlops_pipeline.data.features import prepare_features, read_features

    return read_features(storage, prepare_features(storage, snapshot_id, spec), spec, split)


def contract_features(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The model's inputs of `frame`, coerced by the data contract (as serving coerces them)."""
    from mlops_pipeline.data.contract import load_contract, validate

    return validate(frame[spec.features.columns], load_contract(spec).for_columns(spec.features.columns))


def champion_reference(spec: DatasetSpec, storage: Storage, mlflow: MLflow,
                       with_model: bool = False, alias: str = CHAMPION) -> ChampionReference:
    """The champion (or the version `alias` points at) and its training split scored by it: the
    drift reference.

    Read from where the training step stored it (tag `drift_reference`); rebuilt otherwise (the
    snapshot's training split, contract-coerced, scored by the registered model). `with_model`
    also loads the version, to score new data. Raises `ChampionUnavailable`."""
    from mlops_pipeline.deployment.scoring import load_version
    from mlops_pipeline.training.fit import drift_reference

    champion = mlflow.version_by_alias(spec.name, alias)
    if champion is None:
        raise ChampionUnavailable(f"{spec.name} has no {alias} yet: nothing to compare against")
    version = str(champion.version)
    # A version trained outside the loop: the snapshot it was gated on stands for its own.
    snapshot_id = champion.tags.get(SNAPSHOT_ID_TAG) or champion.tags.get(GATE_SNAPSHOT_TAG)
    if not snapshot_id:
        raise ChampionUnavailable(f"{alias} v{version} has no snapshot_id tag")
    model = load_version(mlflow, spec.name, version) if with_model else None
    stored = champion.tags.get(DRIFT_REFERENCE_TAG)
    if stored and storage.exists(stored):
        return ChampionReference(version, snapshot_id, storage.read_table(stored), stored, model)
    if model is None:
        model = load_version(mlflow, spec.name, version)
    frame = contract_features(_split(storage, snapshot_id, spec, "train"), spec)
    return ChampionReference(version, snapshot_id, drift_reference(model, frame, spec.task),
                             f"rebuilt from snapshot {snapshot_id[:12]}", model if with_model else None)


def _is_number(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def champion_estimator(spec: DatasetSpec, storage: Storage, mlflow: MLflow) -> ChampionEstimator:
    """The champion's performance estimator: read from where training stored it (version tag
    `performance_estimator`), or, for a version without one, rebuilt the way training builds it
    (the snapshot's holdout split, scored by the registered model). The model is loaded when
    rebuilding and for regression. Raises `ChampionUnavailable`."""
    from mlops_pipeline.deployment.scoring import load_version
    from mlops_pipeline.monitoring.estimation import PerformanceEstimator
    from mlops_pipeline.monitoring.estimation_fit import fit_estimator

    champion = mlflow.version_by_alias(spec.name, CHAMPION)
    if champion is None:
        raise ChampionUnavailable(f"{spec.name} has no champion yet: nothing to estimate")
    version = str(champion.version)
    holdout = {k[len(HOLDOUT_TAG_PREFIX):]: float(v) for k, v in champion.tags.items()
               if k.startswith(HOLDOUT_TAG_PREFIX) and _is_number(v)}
    model = None
    stored = champion.tags.get(ESTIMATOR_TAG)
    if spec.task == "regression" or not (stored and storage.exists(stored)):
        model = load_version(mlflow, spec.name, version)
    if stored and storage.exists(stored):
        est = PerformanceEstimator.from_bytes(storage.read_bytes(stored))
        return ChampionEstimator(version, est, holdout, stored, model)
    from mlops_pipeline.training.model import class_info, predict_scores

    if spec.task == "classification" and getattr(model, "has_proba", True) is False:
        raise NoProbabilities(f"champion v{version} ({getattr(model, 'flavor', '?')} flavor) offers no "
                              "class probabilities: a classifier's performance is estimated from them")
    # A version trained outside the loop: the snapshot it was gated on stands for its own.
    snapshot_id = champion.tags.get(SNAPSHOT_ID_TAG) or champion.tags.get(GATE_SNAPSHOT_TAG)
    if not snapshot_id:
        raise ChampionUnavailable(
            f"champion v{version} has neither a performance estimator nor a snapshot_id")
    hold = _split(storage, snapshot_id, spec, "holdout")
    X = contract_features(hold, spec)
    scores = predict_scores(model, X, spec.task)
    classes = class_info(model) if spec.task == "classification" else None
    est = fit_estimator(model, X, hold[spec.target.name], scores, spec.task, classes, spec.model.seed)
    return ChampionEstimator(version, est, holdout, f"rebuilt from snapshot {snapshot_id[:12]}", model)


def champion_rows(log: pd.DataFrame, version: str) -> pd.DataFrame:
    """The answers of `log` served by this champion version (not its canary or shadow)."""
    from mlops_pipeline.monitoring.predictions import served_rows

    served = served_rows(log)
    if served.empty:
        return served
    return served[(served["role"] == CHAMPION) & (served["model_version"].astype(str) == version)]
