"""The production side of the loop: what the serving API saw and said, one day at a time.

Every prediction the server answers is in the prediction store. These daily-partitioned assets
turn it into the loop's inputs: the day's log with the SAME contract and null-rate checks as the
training data (a discrepancy between the two is the bug), a training/serving skew check, drift of
the day's inputs and predictions against the champion's training data (the same drift code as the
training batch), model quality once labels arrive (with a label-free proxy before), and the labelled
rows landed back as a batch so the next snapshot trains on them.
"""

import os
from collections.abc import Iterator
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from mlops_pipeline.defs.data.training_features import failure_table
from mlops_pipeline.defs.monitoring.drift_report import champion_reference, publish_drift
from mlops_pipeline.defs.resources import DatasetResource, MLflowResource, StorageResource
from mlops_pipeline.defs.resources.predictions import SERVED_ROLES, PredictionStoreResource

DAILY = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("MLOPS_PREDICTIONS_START", "2026-01-01"), end_offset=1
)
LOG_COLUMNS = ["request_id", "role", "ts", "model_name", "model_version", "prediction", "probability",
               "probabilities", "latency_ms", "label", "label_ts"]
MAX_UNSEEN_CATEGORY_SHARE = 0.05


def _served(log: pd.DataFrame) -> pd.DataFrame:
    return log[log["role"].isin(SERVED_ROLES)] if len(log) else log


def _kind_of_values(values: pd.Series) -> str:
    """What JSON gave us for a column: numeric, string, or empty."""
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "numeric"
    if inferred == "empty":
        return "empty"
    return "string" if inferred == "string" else inferred


def training_serving_skew(
    production: pd.DataFrame, training: pd.DataFrame, spec
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per feature: does production send the type training had, and mostly known categories?"""
    rows, problems = [], []
    for col in spec.features.columns:
        if col not in production.columns:
            rows.append({"column": col, "training": str(training[col].dtype), "production": "missing",
                         "unseen_share": 0.0})
            problems.append(f"column '{col}' is missing from production inputs")
            continue
        got = _kind_of_values(production[col])
        if col in spec.features.datetime_parts:
            ok = got in ("string", "empty", "datetime", "datetime64")
        elif pd.api.types.is_numeric_dtype(training[col]):
            ok = got in ("numeric", "empty")
        else:
            ok = got in ("string", "empty")
        unseen = 0.0
        if col in spec.features.categorical and got == "string":
            known = set(training[col].dropna().astype(str))
            values = production[col].dropna().astype(str)
            unseen = float((~values.isin(known)).mean()) if len(values) else 0.0
            if unseen > MAX_UNSEEN_CATEGORY_SHARE:
                problems.append(f"column '{col}': {unseen:.1%} of values never seen in training")
        if not ok:
            problems.append(f"column '{col}' arrives as {got}, trained as {training[col].dtype}")
        rows.append({"column": col, "training": str(training[col].dtype), "production": got,
                     "unseen_share": unseen})
    return rows, problems


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"pandas", "sql"},
    description="One day of captured predictions (inputs, outputs, model version, role, latency, "
    "labels) read from the prediction store.",
    check_specs=[
        dg.AssetCheckSpec("inference_contract", asset="prediction_log",
                          description="Do production inputs satisfy the training data contract?"),
        dg.AssetCheckSpec("inference_null_rates", asset="prediction_log",
                          description="Are production null rates under the contract's limits?"),
        dg.AssetCheckSpec("training_serving_skew", asset="prediction_log",
                          description="Does production send each feature with the type and "
                          "categories the champion was trained on?"),
    ],
)
def prediction_log(
    context: dg.AssetExecutionContext,
    dataset: DatasetResource,
    storage: StorageResource,
    mlflow: MLflowResource,
    predictions: PredictionStoreResource,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    from mlops_pipeline.data.contract import ContractError, load_contract, null_rate_violations, validate

    spec = dataset.spec()
    window = context.partition_time_window
    log = predictions.store().read_window(
        window.start, window.end, model_name=spec.name, expand_features=True,
        probabilities=spec.task == "classification",
    )
    served = _served(log)
    latency = served["latency_ms"] if len(served) else pd.Series(dtype=float)
    metadata: dict[str, Any] = {
        "dagster/row_count": len(log),
        "served": len(served),
        "shadow": int((log["role"] == "shadow").sum()) if len(log) else 0,
        "labelled": int(served["label"].notna().sum()) if len(served) else 0,
        "versions": ", ".join(sorted(set(log["model_version"].astype(str)))) if len(log) else "none",
    }
    for q in (50, 95, 99):
        metadata[f"latency_p{q}_ms"] = float(np.percentile(latency, q)) if len(latency) else 0.0
    yield dg.Output(log, metadata=metadata)

    error = dg.AssetCheckSeverity.ERROR
    if served.empty:
        for name in ("inference_contract", "inference_null_rates", "training_serving_skew"):
            yield dg.AssetCheckResult(check_name=name, passed=True, severity=dg.AssetCheckSeverity.WARN,
                                      description="no served predictions in this partition")
        return
    contract = load_contract(spec)
    features = contract.for_columns(spec.features.columns)
    inputs = served.drop(columns=[c for c in LOG_COLUMNS if c in served.columns])
    try:
        validate(inputs, features)
        yield dg.AssetCheckResult(check_name="inference_contract", passed=True, severity=error,
                                  description=f"{len(inputs)} production inputs match the contract")
    except ContractError as exc:
        cols = sorted({str(c) for c in exc.failure_cases["column"]})
        yield dg.AssetCheckResult(
            check_name="inference_contract", passed=False, severity=error, description=str(exc),
            metadata={"failing_columns": ", ".join(cols),
                      "failure_cases": failure_table(exc.failure_cases)},
        )
    violations = null_rate_violations(inputs, contract, spec.features.columns)
    yield dg.AssetCheckResult(
        check_name="inference_null_rates", passed=not violations, severity=error,
        description=(
            "every feature is under its null-rate limit" if not violations
            else "null rate above limit: "
            + "; ".join(f"column '{c}' {r:.1%} > {lim:.1%}" for c, (r, lim) in violations.items())
        ),
        metadata={"violations": dg.MetadataValue.json(
            {c: {"rate": r, "limit": lim} for c, (r, lim) in violations.items()})},
    )
    reference = champion_reference(spec, storage, mlflow)
    rows, problems = training_serving_skew(inputs, reference.frame, spec)
    yield dg.AssetCheckResult(
        check_name="training_serving_skew", passed=not problems, severity=error,
        description="; ".join(problems) if problems else "types and categories match training",
        metadata={"columns": dg.MetadataValue.json(rows), "champion_version": reference.version},
    )


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"evidently", "mlflow"},
    description="Drift of one day of production inputs and the champion's predictions against the "
    "champion's training data: the same Evidently setup as the training-batch drift report.",
    check_specs=[
        dg.AssetCheckSpec("production_input_drift", asset="production_drift",
                          description="Is the share of drifted production inputs under the limit?"),
        dg.AssetCheckSpec("production_prediction_drift", asset="production_drift",
                          description="Has the distribution of production predictions stayed put?"),
    ],
)
def production_drift(
    context: dg.AssetExecutionContext,
    prediction_log: pd.DataFrame,
    dataset: DatasetResource,
    storage: StorageResource,
    mlflow: MLflowResource,
) -> dg.MaterializeResult:
    from mlops_pipeline.data.contract import ContractError, load_contract, validate
    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN

    spec = dataset.spec()
    served = _served(prediction_log)
    champion_rows = served[served["role"] == "champion"] if len(served) else served
    if champion_rows.empty:
        raise dg.Failure(f"no champion predictions logged for {context.partition_key}")
    features = load_contract(spec).for_columns(spec.features.columns)
    try:
        current = validate(champion_rows[spec.features.columns], features)
    except ContractError as exc:
        bad = exc.failure_cases["index"].dropna()
        if len(bad) < len(exc.failure_cases):
            raise dg.Failure(f"production inputs of {context.partition_key} break the contract at "
                             f"column level; see prediction_log's inference checks:\n{exc}") from exc
        keep = champion_rows.drop(index=bad.astype(int).unique())
        context.log.warning(f"drift skips {len(champion_rows) - len(keep)} rows that break the contract")
        current = validate(keep[spec.features.columns], features)
        champion_rows = keep
    reference = champion_reference(spec, storage, mlflow)
    current[PREDICTION_COLUMN] = drift_predictions(champion_rows, reference.frame[PREDICTION_COLUMN], spec)
    return publish_drift(
        context, spec, reference, current, f"production_{context.partition_key}", storage, mlflow,
        check_prefix="production_", extra_metadata={"partition": context.partition_key},
    )


def drift_predictions(rows: pd.DataFrame, reference: pd.Series, spec) -> np.ndarray:
    """The logged predictions as the drift reference holds them (`model.drift_scores`): the
    positive-class probability (binary), the value (regression), the predicted class (multi-class,
    a category: the reference column is then not numeric)."""
    if spec.task == "classification" and not pd.api.types.is_numeric_dtype(reference):
        from mlops_pipeline.training.model import class_name

        return np.asarray([class_name(v) for v in rows["prediction"]], dtype=object)
    score = "probability" if spec.task == "classification" else "prediction"
    return rows[score].to_numpy(dtype=float)


def quality_scores(rows: pd.DataFrame) -> tuple[np.ndarray, Any]:
    """Scores for `model.compute_metrics` from logged classifier answers, and their classes: the
    positive-class probability for binary answers, the (n, k) matrix for multi-class ones (over
    the union of the versions' classes)."""
    from mlops_pipeline.training.model import ClassInfo

    dicts = rows["probabilities"].tolist() if "probabilities" in rows.columns else []
    if not dicts or any(d is None for d in dicts):  # answers logged without their classes
        return rows["probability"].to_numpy(dtype=float), None
    labels = tuple(dict.fromkeys(c for d in dicts for c in d))
    if len(labels) == 2:  # {negative: 1-p, positive: p}, as the store builds it
        positive = labels.index(list(dicts[0])[-1])
        return rows["probability"].to_numpy(dtype=float), ClassInfo(labels, positive)
    matrix = np.array([[d.get(c, 0.0) for c in labels] for d in dicts], dtype=float)
    return matrix, ClassInfo(labels, None)


def calibration(y: np.ndarray, scores: np.ndarray, classes: Any) -> tuple[list[dict], float]:
    """Binary: the reliability curve of the positive class's probability. Multi-class: top-label
    calibration (the predicted class's probability against how often it was right)."""
    from mlops_pipeline.training.model import ClassInfo

    classes = classes or ClassInfo((0, 1), 1)
    codes = pd.Index(list(classes.labels)).get_indexer(pd.Index(y))
    if scores.ndim == 1:
        return reliability((codes == classes.positive).astype(float), scores)
    top = scores.argmax(axis=1)
    return reliability((codes == top).astype(float), scores.max(axis=1))


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[list[dict], float]:
    """Reliability curve (quantile bins) and expected calibration error."""
    frame = pd.DataFrame({"y": y, "p": p})
    frame["bin"] = pd.qcut(frame["p"], q=min(bins, max(1, frame["p"].nunique())), duplicates="drop")
    grouped = frame.groupby("bin", observed=True).agg(mean_predicted=("p", "mean"),
                                                       observed_rate=("y", "mean"), rows=("y", "size"))
    ece = float((grouped["rows"] * (grouped["mean_predicted"] - grouped["observed_rate"]).abs()).sum()
                / len(frame))
    curve = [{k: float(v) for k, v in r.items()} for r in grouped.reset_index(drop=True).to_dict("records")]
    return curve, ece


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"sklearn", "pandas"},
    description="Model quality on production traffic once labels arrive (joined by request id): "
    "the training metrics plus calibration; a label-free proxy (prediction shift) until then.",
    check_specs=[
        dg.AssetCheckSpec("production_quality", asset="model_quality",
                          description="Do labelled production predictions still meet the gate's floors?"),
    ],
)
def model_quality(
    context: dg.AssetExecutionContext,
    prediction_log: pd.DataFrame,
    dataset: DatasetResource,
) -> dg.MaterializeResult:
    from mlops_pipeline.data.preparation import target_from_feedback
    from mlops_pipeline.deployment.gate import evaluate_gate
    from mlops_pipeline.training.model import compute_metrics

    spec = dataset.spec()
    served = _served(prediction_log)
    labelled = served[served["label"].notna()] if len(served) else served
    score_column = "probability" if spec.task == "classification" else "prediction"
    metadata: dict[str, Any] = {
        "served": len(served),
        "labelled": len(labelled),
        "label_coverage": float(len(labelled) / len(served)) if len(served) else 0.0,
        "mean_prediction": float(served[score_column].mean()) if len(served) else 0.0,
    }
    if spec.task == "classification" and len(served):
        shares = served["prediction"].astype(str).value_counts(normalize=True)
        metadata["predicted_class_share"] = dg.MetadataValue.json(
            {str(k): float(v) for k, v in shares.items()})
    if labelled.empty:
        return dg.MaterializeResult(
            metadata={**metadata, "status": "no labels yet: see production_prediction_drift for the "
                      "label-free proxy"},
            check_results=[dg.AssetCheckResult(
                check_name="production_quality", passed=True, severity=dg.AssetCheckSeverity.WARN,
                description="no labels yet for this partition")],
        )
    y = target_from_feedback(labelled["label"], spec)
    if spec.task == "classification":
        scores, classes = quality_scores(labelled)
    else:
        scores, classes = labelled[score_column].to_numpy(dtype=float), None
    metrics = compute_metrics(spec.task, y, scores, classes)
    metadata.update({f"production_{k}": float(v) for k, v in metrics.items()})
    by_version = {
        str(v): compute_metrics(spec.task, y[mask], scores[mask], classes)
        for v in labelled["model_version"].unique()
        if (mask := (labelled["model_version"] == v).to_numpy()).sum() >= 30
        and (spec.task != "classification" or len(np.unique(y[mask])) > 1)
    }
    metadata["by_version"] = dg.MetadataValue.json(by_version)
    if spec.task == "classification":
        curve, ece = calibration(y, scores, classes)
        metadata["calibration"] = "positive class" if scores.ndim == 1 else "top label (predicted class)"
        metadata["expected_calibration_error"] = ece
        metadata["reliability_curve"] = dg.MetadataValue.json(curve)
    floors = {m: rule for m, rule in spec.gate.items() if rule.floor is not None}
    verdict = evaluate_gate(metrics, None, floors)
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[dg.AssetCheckResult(
            check_name="production_quality", passed=verdict.passed, severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(verdict.failures()) if not verdict.passed
            else f"{len(labelled)} labelled predictions meet every floor",
            metadata={m: float(v) for m, v in metrics.items()},
        )],
    )


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"pandas", "parquet"},
    description="Labelled production rows landed back as a batch, so the next dataset snapshot "
    "(and retraining) learns from what users did; provenance is kept in a column.",
)
def feedback_batch(
    context: dg.AssetExecutionContext,
    prediction_log: pd.DataFrame,
    dataset: DatasetResource,
    storage: StorageResource,
) -> dg.MaterializeResult:
    spec = dataset.spec()
    served = _served(prediction_log)
    labelled = served[served["label"].notna()] if len(served) else served
    name = f"feedback_{context.partition_key}.parquet"
    if labelled.empty:
        return dg.MaterializeResult(metadata={"rows": 0, "batch": name, "status": "no labels yet"})
    needed = [c for c in spec.source_columns if c != spec.label_source]
    missing = [c for c in needed if c not in labelled.columns]
    if missing:
        raise dg.Failure(
            f"labelled predictions lack {missing}: requests must carry the dataset's key columns "
            f"({', '.join(spec.key_columns)}) for their feedback to become training data"
        )
    from mlops_pipeline.data.contract import load_contract, validate

    batch = labelled[needed].reset_index(drop=True)
    # The label as the dataset holds it: the observed number for a derived target or regression,
    # the class in its own type (a string, say) for a classification target that is a column.
    plain_class = spec.task == "classification" and not spec.target.expression
    batch[spec.label_source] = labelled["label"].to_numpy(dtype=object if plain_class else float)
    # Same dtypes as the landed batches (JSON turned timestamps into text): coerce by the contract.
    batch = validate(batch, load_contract(spec).for_columns([*needed, spec.label_source]))
    batch["_provenance"] = [
        f"feedback:{context.partition_key}:{rid}:v{v}"
        for rid, v in zip(labelled["request_id"], labelled["model_version"], strict=True)
    ]
    # A later materialization (more labels) replaces the day's batch whole, atomically.
    location = storage.write_landing(spec, name, batch)
    return dg.MaterializeResult(metadata={
        "rows": len(batch), "path": dg.MetadataValue.path(location),
        "model_versions": ", ".join(sorted(set(labelled["model_version"].astype(str)))),
    })
