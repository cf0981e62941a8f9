"""The production side of the loop: what the serving API saw and said, one day at a time.

Every prediction the server answers is in the prediction store. These daily-partitioned assets
turn it into the loop's inputs: the day's log with the SAME contract and null-rate checks as the
training data (`defs.checks`: a discrepancy between the two is the bug), a training/serving skew
check (`monitoring.skew`), drift of the day's inputs and predictions against the champion's
training data (the same drift report as the training batch), model quality once labels arrive
(`monitoring.quality`; a label-free proxy before), and the labelled rows landed back as a batch
so the next snapshot trains on them.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.checks import contract_check, null_rate_check
from mlops_pipeline.defs.monitoring.shared import DAILY, drift_materialization, reference_or_fail
from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.defs.resources.predictions import PredictionStoreResource
from mlops_pipeline.deployment.tags import CHAMPION, SHADOW
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.deployment.traffic_stats import request_latencies
from mlops_pipeline.monitoring.predictions import served_rows

#: The columns of a read log that are not the request's inputs.
LOG_COLUMNS = ["request_id", "role", "ts", "model_name", "model_version", "prediction", "probability",
               "probabilities", "latency_ms", "label", "label_ts"]


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
    storage: dg.ResourceParam[Storage],
    mlflow: dg.ResourceParam[MLflow],
    predictions: PredictionStoreResource,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """The day's captured predictions, with traffic numbers as metadata, then its checks: the
    training contract and null-rate limits on the served inputs (`defs.checks`) and skew against
    the champion's training data (`monitoring.skew`). A day with nothing served passes all three
    with a WARN severity, saying so."""
    from mlops_pipeline.data.contract import load_contract, null_rate_violations
    from mlops_pipeline.monitoring.skew import training_serving_skew

    spec = dataset.spec()
    window = context.partition_time_window
    log = predictions.store().read_window(
        window.start, window.end, model_name=spec.name, expand_features=True,
        probabilities=spec.task == "classification",
    )
    served = served_rows(log)
    latency = request_latencies(served)  # one per request: records repeat their request's latency
    metadata: dict[str, Any] = {
        "dagster/row_count": len(log),
        "served": len(served),
        "served_requests": len(latency),
        "shadow": int((log["role"] == SHADOW).sum()) if len(log) else 0,
        "labelled": int(served["label"].notna().sum()) if len(served) else 0,
        "versions": ", ".join(sorted(set(log["model_version"].astype(str)))) if len(log) else "none",
    }
    for q in (50, 95, 99):
        metadata[f"latency_p{q}_ms"] = float(np.percentile(latency, q)) if len(latency) else 0.0
    yield dg.Output(log, metadata=metadata)

    if served.empty:
        for name in ("inference_contract", "inference_null_rates", "training_serving_skew"):
            yield dg.AssetCheckResult(check_name=name, passed=True, severity=dg.AssetCheckSeverity.WARN,
                                      description="no served predictions in this partition")
        return
    contract = load_contract(spec)
    inputs = served.drop(columns=[c for c in LOG_COLUMNS if c in served.columns])
    yield contract_check("inference_contract", inputs, contract.for_columns(spec.features.columns),
                         f"{len(inputs)} production inputs match the contract")
    violations = null_rate_violations(inputs, contract, spec.features.columns)
    yield null_rate_check("inference_null_rates", violations, "every feature is under its null-rate limit")
    reference = reference_or_fail(spec, storage, mlflow)
    rows, problems = training_serving_skew(inputs, reference.frame, spec)
    yield dg.AssetCheckResult(
        check_name="training_serving_skew", passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
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
    storage: dg.ResourceParam[Storage],
    mlflow: dg.ResourceParam[MLflow],
) -> dg.MaterializeResult:
    """Drift of the champion's served inputs and answers against its training data
    (`monitoring.reports.publish_drift`). Rows that break the contract are left out (and logged);
    a column-level break fails the step, pointing at `prediction_log`'s checks."""
    from mlops_pipeline.data.contract import ContractError, load_contract, validate
    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN
    from mlops_pipeline.monitoring.quality import drift_predictions

    spec = dataset.spec()
    served = served_rows(prediction_log)
    champion_rows = served[served["role"] == CHAMPION] if len(served) else served
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
    reference = reference_or_fail(spec, storage, mlflow)
    current[PREDICTION_COLUMN] = drift_predictions(champion_rows, reference.frame[PREDICTION_COLUMN],
                                                   spec.task)
    by_segment, worst = _segment_drift(reference.frame, current, champion_rows, spec)
    result = drift_materialization(
        context, spec, reference, current, f"production_{context.partition_key}", storage, mlflow,
        check_prefix="production_", extra_metadata={"partition": context.partition_key, **by_segment},
    )
    if not worst:
        return result
    return dg.MaterializeResult(metadata=result.metadata, check_results=[
        c._replace(description=f"{c.description}; worst {worst}")
        if c.check_name == "production_input_drift" else c for c in result.check_results])


def _segment_drift(reference: pd.DataFrame, current: pd.DataFrame, rows: pd.DataFrame,
                   spec) -> tuple[dict[str, Any], str]:
    """Input drift of the day's largest segments (`monitoring.segment_drift`, THE drift per
    segment): a metadata table worst first, and the worst segment in words ("" without segments)."""
    from mlops_pipeline.monitoring.segment_drift import segment_drift

    if not spec.segments.enabled:
        return {}, ""
    extra = [c for c in spec.segments.dimensions if c not in current.columns and c in rows.columns]
    found = segment_drift(reference, current.assign(**{c: rows[c].to_numpy() for c in extra}),
                          spec)
    if not found:
        return {"segment_drift": "no segment with enough rows carrying the segment columns"}, ""
    columns = [("segment", "string"), ("rows", "int"), ("reference_rows", "int"),
               ("drift_share", "float"), ("drifted_columns", "string")]
    table = dg.MetadataValue.table(
        records=[dg.TableRecord(d.record()) for d in found],
        schema=dg.TableSchema(columns=[dg.TableColumn(k, t) for k, t in columns]))
    return {"segment_drift": table, "worst_segment_drift": found[0].describe()}, found[0].describe()


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"sklearn", "pandas"},
    description="Model quality on production traffic once labels arrive (joined by request id): "
    "the training metrics plus calibration; a label-free proxy (prediction shift) until then.",
    check_specs=[
        dg.AssetCheckSpec("production_quality", asset="model_quality",
                          description="Do labelled production predictions still meet the gate's floors?"),
        dg.AssetCheckSpec("segment_quality", asset="model_quality",
                          description="Does every segment (dataset config `segments:`) of labelled "
                          "production predictions still meet the gate's floor, with confidence?"),
    ],
)
def model_quality(
    context: dg.AssetExecutionContext,
    prediction_log: pd.DataFrame,
    dataset: DatasetResource,
) -> dg.MaterializeResult:
    """Metrics of the day's labelled served answers computed as on the holdout
    (`quality.labelled_quality`), per version and with calibration; the WARN check holds them to
    the gate's floors. Before labels, the prediction distribution is the label-free proxy."""
    from mlops_pipeline.deployment.gate import evaluate_gate
    from mlops_pipeline.monitoring.quality import labelled_quality, score_column, unmeasured

    spec = dataset.spec()
    served = served_rows(prediction_log)
    labelled = served[served["label"].notna()] if len(served) else served
    metadata: dict[str, Any] = {
        "served": len(served),
        "labelled": len(labelled),
        "label_coverage": float(len(labelled) / len(served)) if len(served) else 0.0,
        "mean_prediction": float(served[score_column(spec.task)].mean()) if len(served) else 0.0,
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
                check_name=name, passed=True, severity=dg.AssetCheckSeverity.WARN,
                description="no labels yet for this partition")
                for name in ("production_quality", "segment_quality")],
        )
    quality = labelled_quality(labelled, spec)
    metrics = quality.metrics
    metadata.update({f"production_{k}": float(v) for k, v in metrics.items()})
    metadata["by_version"] = dg.MetadataValue.json(quality.by_version)
    if quality.calibration:
        metadata["calibration"] = quality.calibration
        metadata["expected_calibration_error"] = quality.expected_calibration_error
        metadata["reliability_curve"] = dg.MetadataValue.json(quality.reliability_curve)
    floors = {m: rule for m, rule in spec.gate.items() if rule.floor is not None and m in metrics}
    verdict = evaluate_gate(metrics, None, floors)
    missing = [unmeasured(metrics, spec)] if unmeasured(metrics, spec) else []  # e.g. no probabilities
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[dg.AssetCheckResult(
            check_name="production_quality", passed=verdict.passed, severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(verdict.failures() + missing) if not verdict.passed
            else "; ".join([f"{len(labelled)} labelled predictions meet every floor", *missing]),
            metadata={m: float(v) for m, v in metrics.items()},
        ), _segment_quality_result(labelled, spec)],
    )


def _segment_quality_result(labelled: pd.DataFrame, spec) -> dg.AssetCheckResult:
    """`segment_quality` (`monitoring.segment_quality`): fails, WARN, naming every segment whose
    labelled answers fell below the gate's floor with confidence; the alert sensor pages on it."""
    from mlops_pipeline.defs.segment_tables import segment_table
    from mlops_pipeline.monitoring.segment_quality import segment_quality

    quality = segment_quality(labelled, spec)
    metadata: dict[str, Any] = {}
    if quality.report is not None:
        metadata = {"segments": segment_table(quality.report),
                    "metric": quality.report.metric, "line": float(quality.line),
                    "overall": float(quality.overall),
                    "failing_segments": ", ".join(r.segment for r in quality.report.blocking) or "none"}
    return dg.AssetCheckResult(check_name="segment_quality", passed=quality.passed,
                               severity=dg.AssetCheckSeverity.WARN, description=quality.describe(),
                               metadata=metadata)


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
    storage: dg.ResourceParam[Storage],
) -> dg.MaterializeResult:
    """The day's labelled served rows written to the landing area as one batch, the label in the
    dataset's own form and every column coerced by the contract, so the next snapshot trains on
    them. Requests without the dataset's key columns cannot become training data: fails."""
    spec = dataset.spec()
    served = served_rows(prediction_log)
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
