"""Performance before labels, and the estimate checked once they arrive (thin wiring over
`mlops_pipeline.monitoring.estimates`).

`estimated_performance` estimates, for each day of served traffic, the champion's gate metrics
from its own calibrated probabilities (CBPE) or its loss model (DLE), with a band; its WARN check
`estimated_quality` fails when a band is clear of the gate's line, and `estimated_segment_quality`
when one segment's is clear below the floor (`segments:`), which the
`estimated_performance_sensor` turns into a gated retraining. `estimate_vs_realized` runs when
labels have come: realized against estimated on the same rows (`estimate_within_band`), and
`concept_drift` when quality dropped past the gate's line and below the estimate's band
while the day's inputs did not drift.
"""

from typing import Any

import dagster as dg
import pandas as pd

from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.monitoring.shared import DAILY, estimator_or_fail, no_probabilities
from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.monitoring.champion import NoProbabilities, champion_rows
from mlops_pipeline.monitoring.estimates import estimate_table
from mlops_pipeline.spec import DatasetSpec


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
        dg.AssetCheckSpec("estimated_segment_quality", asset="estimated_performance",
                          description="Before labels, per segment (dataset config `segments:`): "
                          "does every segment's estimated gate metric stay above the gate's floor "
                          "(its band not wholly below it by more than segments.tolerance)?"),
    ],
)
def estimated_performance(
    context: dg.AssetExecutionContext,
    prediction_log: pd.DataFrame,
    dataset: DatasetResource,
    storage: dg.ResourceParam[Storage],
    mlflow: dg.ResourceParam[MLflow],
) -> dg.MaterializeResult:
    """The champion's gate metrics estimated on the day's answers it served (`estimates.estimate_rows`);
    the WARN check fails when an estimate's whole band is past the gate's line, which the
    `estimated_performance_sensor` turns into a gated retraining. No champion fails the step."""
    from mlops_pipeline.monitoring.degradation import degradation, threshold
    from mlops_pipeline.monitoring.estimates import estimate_rows, expected_confusion_table

    spec = dataset.spec()
    try:
        champ = estimator_or_fail(spec, storage, mlflow)
    except NoProbabilities as exc:  # a labels-only classifier: said in one line, not a failure
        return no_probabilities(context, exc)
    rows = champion_rows(prediction_log, champ.version)
    warn = dg.AssetCheckSeverity.WARN
    if rows.empty:
        return dg.MaterializeResult(
            metadata={"rows": 0, "champion_version": champ.version,
                      "status": f"no traffic served by champion v{champ.version} in this partition"},
            check_results=[dg.AssetCheckResult(check_name=name, passed=True, severity=warn,
                                               description="nothing served to estimate")
                           for name in ("estimated_quality", "estimated_segment_quality")],
        )
    estimates = estimate_rows(spec, champ, rows, spec.model.seed)
    metadata: dict[str, Any] = {
        "rows": len(rows),
        "champion_version": champ.version,
        "method": "DLE (loss model)" if champ.estimator.kind == "regression" else "CBPE (calibrated)",
        "estimator_source": champ.source,
        "estimator_day_bias": dg.MetadataValue.json(champ.estimator.bias),
        "estimator_day_spread": dg.MetadataValue.json(champ.estimator.extra_sd),
        "estimates": dg.MetadataValue.md(estimate_table(estimates, spec, champ.holdout)),
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
        metadata["expected_confusion"] = dg.MetadataValue.json(expected_confusion_table(rows, champ))
    reasons = degradation(estimates, spec.gate, champ.holdout)
    by_segment = _segment_estimates(rows, spec, champ)
    metadata.update(by_segment.metadata)
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[dg.AssetCheckResult(
            check_name="estimated_quality", passed=not reasons, severity=warn,
            description="; ".join(reasons) if reasons
            else f"estimated gate metrics of {len(rows)} served rows are clear of the gate's lines",
            metadata={f"estimated_{m}": float(e.value) for m, e in estimates.items()},
        ), by_segment],
    )


def _segment_estimates(rows: pd.DataFrame, spec: DatasetSpec, champ) -> dg.AssetCheckResult:
    """`estimated_segment_quality` (`segment_quality.estimated_segment_quality`): fails, WARN,
    naming every segment whose estimated metric is below the gate's floor with its whole band, the
    per-segment table in its metadata (the asset's too); the estimate sensor retrains on it."""
    from mlops_pipeline.defs.segment_tables import segment_table
    from mlops_pipeline.monitoring.segment_quality import estimated_segment_quality

    quality = estimated_segment_quality(rows, spec, champ, seed=spec.model.seed)
    metadata: dict[str, Any] = {}
    if quality.report is not None:
        failing = [r.segment for r in quality.report.blocking]
        metadata = {"segments": segment_table(quality.report), "segment_metric": quality.report.metric,
                    "segment_line": float(quality.line), "failing_segments": ", ".join(failing) or "none"}
    return dg.AssetCheckResult(check_name="estimated_segment_quality", passed=quality.passed,
                               severity=dg.AssetCheckSeverity.WARN, description=quality.describe(),
                               metadata=metadata)


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
    storage: dg.ResourceParam[Storage],
    mlflow: dg.ResourceParam[MLflow],
) -> dg.MaterializeResult:
    """Realized against estimated gate metrics on the day's labelled champion answers
    (`estimates.compare_realized`), and concept drift when quality dropped beyond the estimate
    while the day's inputs did not drift. Too few labels: both checks pass, saying so."""
    from mlops_pipeline.monitoring.estimates import compare_realized, concept_verdict, too_few_labels

    spec = dataset.spec()
    warn = dg.AssetCheckSeverity.WARN
    try:
        champ = estimator_or_fail(spec, storage, mlflow)
    except NoProbabilities as exc:
        return no_probabilities(context, exc)
    rows = champion_rows(prediction_log, champ.version)
    labelled = rows[rows["label"].notna()] if len(rows) else rows
    if too_few_labels(spec, labelled):
        reason = f"{len(labelled)} labelled rows of champion v{champ.version}: too few to judge"
        return dg.MaterializeResult(
            metadata={"labelled": len(labelled), "status": reason},
            check_results=[dg.AssetCheckResult(check_name=c, passed=True, severity=warn,
                                               description=reason)
                           for c in ("estimate_within_band", "concept_drift")],
        )
    compared = compare_realized(spec, champ, labelled, spec.model.seed)
    realized, estimates, outside, errors = (compared.realized, compared.estimates, compared.outside,
                                            compared.errors)
    metadata: dict[str, Any] = {
        "labelled": len(labelled),
        "champion_version": champ.version,
        "comparison": dg.MetadataValue.md(estimate_table(estimates, spec, champ.holdout, realized)),
        **{f"realized_{m}": float(realized[m]) for m in estimates if m in realized},
        **{f"estimated_{m}": float(e.value) for m, e in estimates.items()},
        **{f"estimate_error_{m}": v for m, v in errors.items()},
        **{f"estimate_abs_error_{m}": abs(v) for m, v in errors.items()},
    }
    inputs_ok = _input_drift_passed(context, spec)
    concept, concept_text = concept_verdict(compared.drops, inputs_ok)
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
