"""Performance before labels, and the estimate checked once they arrive (thin wiring over
`mlops_pipeline.monitoring.estimation`).

`estimated_performance` estimates, for each day of served traffic, the champion's gate metrics
from its own calibrated probabilities (CBPE) or its loss model (DLE), with a band; its WARN check
`estimated_quality` fails when a band is clear of the gate's line, which the
`estimated_performance_sensor` turns into a gated retraining. `estimate_vs_realized` runs when
labels have come: realized against estimated on the same rows (`estimate_within_band`), and
`concept_drift` when quality dropped past the gate's line and below the estimate's band
while the day's inputs did not drift.
"""

import math
from dataclasses import dataclass
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from mlops_pipeline.defs.monitoring.traffic import DAILY, _served
from mlops_pipeline.defs.resources import DatasetResource, MLflowResource, StorageResource
from mlops_pipeline.defs.resources.mlflow import CHAMPION
from mlops_pipeline.spec import DatasetSpec

ESTIMATOR_TAG = "performance_estimator"
MIN_LABELLED = 30


@dataclass
class ChampionEstimator:
    version: str
    estimator: Any  # monitoring.estimation.PerformanceEstimator
    holdout: dict[str, float]  # the champion's holdout metrics (version tags)
    source: str  # the stored estimator, or rebuilt from the snapshot's holdout
    model: Any = None  # loaded for regression (DLE needs the champion's feature encoding)


def champion_estimator(spec: DatasetSpec, storage: StorageResource,
                       mlflow: MLflowResource) -> ChampionEstimator:
    """The champion's performance estimator: read from where training stored it (version tag
    `performance_estimator`), or, for a version without one, rebuilt the way training builds it
    (the snapshot's holdout split, scored by the registered model)."""
    import mlflow as mlflow_lib

    from mlops_pipeline.monitoring.estimation import PerformanceEstimator, fit_estimator

    champion = mlflow.version_by_alias(spec.name, CHAMPION)
    if champion is None:
        raise dg.Failure(f"{spec.name} has no champion yet: nothing to estimate")
    version = str(champion.version)
    holdout = {k[len("holdout_"):]: float(v) for k, v in champion.tags.items()
               if k.startswith("holdout_") and _is_number(v)}
    model = None
    stored = champion.tags.get(ESTIMATOR_TAG)
    if spec.task == "regression" or not (stored and storage.exists(stored)):
        mlflow.configure()
        model = mlflow_lib.sklearn.load_model(f"models:/{spec.name}/{version}")
    if stored and storage.exists(stored):
        est = PerformanceEstimator.from_bytes(storage.read_bytes(stored))
        return ChampionEstimator(version, est, holdout, stored, model)
    from mlops_pipeline.data.contract import load_contract, validate
    from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare
    from mlops_pipeline.training.model import class_info, predict_scores

    snapshot_id = champion.tags.get("snapshot_id")
    if not snapshot_id:
        raise dg.Failure(f"champion v{version} has neither a performance estimator nor a snapshot_id")
    frame = prepare(storage.read_snapshot(snapshot_id), spec).frame
    hold = frame[frame[SPLIT_COLUMN] == "holdout"]
    X = validate(hold[spec.features.columns], load_contract(spec).for_columns(spec.features.columns))
    scores = predict_scores(model, X, spec.task)
    classes = class_info(model) if spec.task == "classification" else None
    est = fit_estimator(model, X, hold[spec.target.name], scores, spec.task, classes, spec.model.seed)
    return ChampionEstimator(version, est, holdout, f"rebuilt from snapshot {snapshot_id[:12]}", model)


def _is_number(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def champion_rows(log: pd.DataFrame, version: str) -> pd.DataFrame:
    """The day's answers served by this champion version."""
    served = _served(log)
    if served.empty:
        return served
    return served[(served["role"] == "champion") & (served["model_version"].astype(str) == version)]


def served_scores(rows: pd.DataFrame, est: Any) -> np.ndarray:
    """The logged scores in the estimator's class order: the positive class's probability
    (binary) or the (n, k) matrix (multi-class, matched by class name)."""
    if est.kind == "binary":
        return rows["probability"].to_numpy(dtype=float)
    from mlops_pipeline.training.model import class_name

    names = [class_name(c) for c in est.labels]
    return np.array([[{class_name(k): v for k, v in d.items()}.get(c, 0.0) for c in names]
                     for d in rows["probabilities"]], dtype=float)


def estimate_rows(spec: DatasetSpec, champ: ChampionEstimator, rows: pd.DataFrame,
                  seed: int) -> dict[str, Any]:
    """The estimates (metric -> `Estimate`) of these rows' gate metrics."""
    from mlops_pipeline.monitoring.estimation import estimate_classification, estimate_regression

    est = champ.estimator
    metrics = est.metrics(spec.gate)
    if est.kind == "regression":
        from mlops_pipeline.data.contract import load_contract, validate

        X = validate(rows[spec.features.columns], load_contract(spec).for_columns(spec.features.columns))
        return estimate_regression(est, champ.model, X, rows["prediction"].to_numpy(dtype=float), metrics)
    return estimate_classification(est, served_scores(rows, est), metrics, seed=seed)


def _estimate_table(estimates: dict, spec: DatasetSpec, holdout: dict[str, float],
                    realized: dict[str, float] | None = None) -> str:
    from mlops_pipeline.monitoring.estimation import threshold

    head = "| metric | estimate | 95% band | threshold | floor | champion holdout |"
    sep = "|---|---|---|---|---|---|"
    if realized is not None:
        head, sep = head + " realized | error |", sep + "---|---|"
    lines = [head, sep]
    for m, e in estimates.items():
        rule = spec.gate.get(m)
        line = threshold(m, rule, holdout) if rule else None
        row = (f"| {m} | {e.value:.4f} | [{e.lower:.4f}, {e.upper:.4f}] | "
               f"{'' if line is None else f'{line:.4f}'} | "
               f"{'' if rule is None or rule.floor is None else rule.floor} | "
               f"{holdout.get(m, float('nan')):.4f} |")
        if realized is not None:
            r = realized.get(m, float("nan"))
            row += f" {r:.4f} | {r - e.value:+.4f} |"
        lines.append(row)
    return "\n".join(lines)


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"sklearn", "pandas"},
    description="The champion's gate metrics estimated on the day's served traffic before any "
    "label (CBPE from calibrated probabilities; DLE for regression), each with a 95% band, the "
    "gate's floors as reference lines.",
    check_specs=[
        dg.AssetCheckSpec("estimated_quality", asset="estimated_performance",
                          description="Does every estimated gate metric stay on the right side of "
                          "the gate's line (its band not wholly past the floor or the champion's "
                          "holdout metric less the tolerance)?"),
    ],
)
def estimated_performance(
    context: dg.AssetExecutionContext,
    prediction_log: pd.DataFrame,
    dataset: DatasetResource,
    storage: StorageResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    from mlops_pipeline.monitoring.estimation import degradation, expected_confusion, threshold

    spec = dataset.spec()
    champ = champion_estimator(spec, storage, mlflow)
    rows = champion_rows(prediction_log, champ.version)
    warn = dg.AssetCheckSeverity.WARN
    if rows.empty:
        return dg.MaterializeResult(
            metadata={"rows": 0, "champion_version": champ.version,
                      "status": f"no traffic served by champion v{champ.version} in this partition"},
            check_results=[dg.AssetCheckResult(check_name="estimated_quality", passed=True,
                                               severity=warn, description="nothing served to estimate")],
        )
    estimates = estimate_rows(spec, champ, rows, spec.model.seed)
    metadata: dict[str, Any] = {
        "rows": len(rows),
        "champion_version": champ.version,
        "method": "DLE (loss model)" if champ.estimator.kind == "regression" else "CBPE (calibrated)",
        "estimator_source": champ.source,
        "estimator_day_bias": dg.MetadataValue.json(champ.estimator.bias),
        "estimator_day_spread": dg.MetadataValue.json(champ.estimator.extra_sd),
        "estimates": dg.MetadataValue.md(_estimate_table(estimates, spec, champ.holdout)),
    }
    for m, e in estimates.items():
        metadata[f"estimated_{m}"] = float(e.value)
        metadata[f"estimated_{m}_lower"] = float(e.lower)
        metadata[f"estimated_{m}_upper"] = float(e.upper)
        rule = spec.gate.get(m)
        if rule is not None and rule.floor is not None:
            metadata[f"floor_{m}"] = float(rule.floor)
        line = threshold(m, rule, champ.holdout) if rule is not None else None
        if line is not None:
            metadata[f"threshold_{m}"] = float(line)
        if m in champ.holdout:
            metadata[f"champion_holdout_{m}"] = float(champ.holdout[m])
    if champ.estimator.kind != "regression":
        scores = served_scores(rows, champ.estimator)
        p = champ.estimator.calibrate(scores)
        hard = scores.argmax(axis=1) if scores.ndim == 2 else (scores >= 0.5).astype(int)
        names = [str(c) for c in champ.estimator.labels] if scores.ndim == 2 else ["negative", "positive"]
        matrix = expected_confusion(p, hard, len(names))
        metadata["expected_confusion"] = dg.MetadataValue.json(
            {f"true {t}": {f"predicted {q}": round(float(matrix[i, j]), 2) for j, q in enumerate(names)}
             for i, t in enumerate(names)})
    reasons = degradation(estimates, spec.gate, champ.holdout)
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[dg.AssetCheckResult(
            check_name="estimated_quality", passed=not reasons, severity=warn,
            description="; ".join(reasons) if reasons
            else f"estimated gate metrics of {len(rows)} served rows are clear of the gate's lines",
            metadata={f"estimated_{m}": float(e.value) for m, e in estimates.items()},
        )],
    )


def _input_drift_passed(context: dg.AssetExecutionContext, spec: DatasetSpec) -> bool | None:
    """Whether the day's `production_input_drift` passed, from production_drift's metadata for
    this partition (None when it was not measured)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("production_drift"),
                              asset_partitions=[context.partition_key]), limit=1).records
    if not records or records[0].asset_materialization is None:
        return None
    share = records[0].asset_materialization.metadata.get("drift_share")
    return None if share is None else float(share.value) <= spec.drift.max_drift_share


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"sklearn", "pandas"},
    deps=["estimated_performance", "production_drift", "model_quality"],
    description="Once labels arrive: realized against estimated gate metrics on the same labelled "
    "rows, the error of the estimate, and concept drift (quality dropped, inputs did not drift).",
    check_specs=[
        dg.AssetCheckSpec("estimate_within_band", asset="estimate_vs_realized",
                          description="Is each realized gate metric inside the estimate's band?"),
        dg.AssetCheckSpec("concept_drift", asset="estimate_vs_realized",
                          description="Did realized quality drop past the gate's line and below "
                          "the estimate's band while the day's inputs did not drift (the relation "
                          "between inputs and target moved)?"),
    ],
)
def estimate_vs_realized(
    context: dg.AssetExecutionContext,
    prediction_log: pd.DataFrame,
    dataset: DatasetResource,
    storage: StorageResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    from mlops_pipeline.data.preparation import target_from_feedback
    from mlops_pipeline.defs.monitoring.traffic import quality_scores
    from mlops_pipeline.deployment.gate import GREATER_IS_BETTER
    from mlops_pipeline.monitoring.estimation import realized_drop
    from mlops_pipeline.training.model import compute_metrics

    spec = dataset.spec()
    warn = dg.AssetCheckSeverity.WARN
    champ = champion_estimator(spec, storage, mlflow)
    rows = champion_rows(prediction_log, champ.version)
    labelled = rows[rows["label"].notna()] if len(rows) else rows
    y = target_from_feedback(labelled["label"], spec) if len(labelled) else np.array([])
    if len(labelled) < MIN_LABELLED or (spec.task == "classification" and len(np.unique(y)) < 2):
        reason = f"{len(labelled)} labelled rows of champion v{champ.version}: too few to judge"
        return dg.MaterializeResult(
            metadata={"labelled": len(labelled), "status": reason},
            check_results=[dg.AssetCheckResult(check_name=c, passed=True, severity=warn,
                                               description=reason)
                           for c in ("estimate_within_band", "concept_drift")],
        )
    if spec.task == "classification":
        scores, classes = quality_scores(labelled)
    else:
        scores, classes = labelled["prediction"].to_numpy(dtype=float), None
    realized = compute_metrics(spec.task, y, scores, classes)
    estimates = estimate_rows(spec, champ, labelled, spec.model.seed)
    outside = [f"realized {m} {realized[m]:.4f} outside [{e.lower:.4f}, {e.upper:.4f}] "
               f"(estimated {e.value:.4f})"
               for m, e in estimates.items() if m in realized and not e.contains(realized[m])]
    errors = {m: float(realized[m] - e.value) for m, e in estimates.items() if m in realized}
    metadata: dict[str, Any] = {
        "labelled": len(labelled),
        "champion_version": champ.version,
        "comparison": dg.MetadataValue.md(_estimate_table(estimates, spec, champ.holdout, realized)),
        **{f"realized_{m}": float(realized[m]) for m in estimates if m in realized},
        **{f"estimated_{m}": float(e.value) for m, e in estimates.items()},
        **{f"estimate_error_{m}": v for m, v in errors.items()},
        **{f"estimate_abs_error_{m}": abs(v) for m, v in errors.items()},
    }
    # Concept drift: quality past the gate's line AND worse than the estimate's band (the inputs
    # did not announce the drop: a drop the estimate foresaw is covariate shift), inputs steady.
    below_band = {m for m, e in estimates.items() if m in realized and not e.contains(realized[m])
                  and ((realized[m] < e.lower) if GREATER_IS_BETTER[m] else (realized[m] > e.upper))}
    drops = realized_drop({m: realized[m] for m in below_band}, spec.gate, champ.holdout)
    inputs_ok = _input_drift_passed(context, spec)
    concept = bool(drops) and inputs_ok is not False
    if not drops:
        concept_text = ("realized quality holds against the champion's holdout, or the estimate "
                        "foresaw its drop")
    elif inputs_ok is False:
        concept_text = ("quality dropped but the inputs drifted too (see production_input_drift): "
                        + "; ".join(drops))
    else:
        concept_text = ("concept drift: quality dropped while the inputs did not drift"
                        + ("" if inputs_ok else " (input drift not measured for this day)")
                        + ": " + "; ".join(drops))
    return dg.MaterializeResult(
        metadata={**metadata, "input_drift_passed": str(inputs_ok)},
        check_results=[
            dg.AssetCheckResult(
                check_name="estimate_within_band", passed=not outside, severity=warn,
                description="; ".join(outside) if outside
                else f"every realized gate metric of {len(labelled)} labelled rows is in its band",
                metadata={f"estimate_error_{m}": v for m, v in errors.items()}),
            dg.AssetCheckResult(check_name="concept_drift", passed=not concept, severity=warn,
                                description=concept_text,
                                metadata={f"realized_{m}": float(realized[m]) for m in estimates
                                          if m in realized}),
        ],
    )
