"""What the monitoring assets share: the day partitions of served traffic, the champion's
artefacts (a missing one fails the step with its reason), and a drift report as a
materialization with its two checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

from mlops_pipeline.deployment.tags import RUN_DAGSTER_RUN_TAG
from mlops_pipeline.monitoring.champion import (
    ChampionEstimator,
    ChampionReference,
    ChampionUnavailable,
    NoProbabilities,
    champion_estimator,
    champion_reference,
)
from mlops_pipeline.spec import DatasetSpec

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.deployment.tracking import MLflow

#: One partition per day of captured predictions (today's included, so it can be read as it fills).
#: A fixed first day: partitions are defined when the module loads, before any settings are read.
DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)


def reference_or_fail(spec: DatasetSpec, storage: Storage, mlflow: MLflow,
                      with_model: bool = False, alias: str = "champion") -> ChampionReference:
    """`champion.champion_reference` (of the version `alias` points at), a missing version or
    snapshot failing the step."""
    try:
        return champion_reference(spec, storage, mlflow, with_model=with_model, alias=alias)
    except ChampionUnavailable as exc:
        raise dg.Failure(str(exc)) from exc


def estimator_or_fail(spec: DatasetSpec, storage: Storage, mlflow: MLflow) -> ChampionEstimator:
    """`champion.champion_estimator`, a missing champion or estimator failing the step. A champion
    without class probabilities raises `NoProbabilities` (see `no_probabilities`): not a failure."""
    try:
        return champion_estimator(spec, storage, mlflow)
    except NoProbabilities:
        raise
    except ChampionUnavailable as exc:
        raise dg.Failure(str(exc)) from exc


def no_probabilities(context: dg.AssetExecutionContext, exc: NoProbabilities) -> dg.MaterializeResult:
    """What an estimate asset materializes for a classifier champion answering labels only: its
    one-line reason as the status and as the description of each of its checks (WARN, passed:
    nothing was estimated, nothing degraded). Its drift is still measured, on its labels."""
    line = str(exc)
    return dg.MaterializeResult(
        metadata={"status": line},
        check_results=[dg.AssetCheckResult(check_name=key.name, passed=True,
                                           severity=dg.AssetCheckSeverity.WARN, description=line)
                       for key in context.selected_asset_check_keys],
    )


#: Check metadata key: the evaluation compared a first model's holdout with its own training split.
FIRST_RUN = "first_run"


def drift_materialization(
    context: dg.AssetExecutionContext,
    spec: DatasetSpec,
    reference: ChampionReference,
    current: pd.DataFrame | Iterable[pd.DataFrame],
    label: str | Callable[[], str],
    storage: Storage,
    mlflow: MLflow,
    check_prefix: str = "",
    extra_metadata: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    input_severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.WARN,
    first_run: bool = False,
) -> dg.MaterializeResult:
    """Publish the drift report (`monitoring.reports.publish_drift`: `current` a frame or its
    chunks; a callable `label` or `extra_metadata` is asked once they are consumed) and report it:
    the drift share, a per-column table, links to the report and its MLflow run, and the checks
    `<check_prefix>input_drift` (severity `input_severity`) and `<check_prefix>prediction_drift`
    (WARN). `first_run`: the report compares a first model's holdout with its training split; its
    checks say so and carry `FIRST_RUN` in their metadata, so no sensor retrains on them."""
    from mlops_pipeline.monitoring.reports import publish_drift
    from mlops_pipeline.settings import Settings

    published = publish_drift(spec, reference, current, label, storage, mlflow,
                              run_tags={RUN_DAGSTER_RUN_TAG: context.run_id},
                              report_rows=Settings.from_env().drift_report_rows)
    result, run_id = published.result, published.run_id
    url = mlflow.run_url(run_id)
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
    note = (" (first run: the holdout against the training split; informs, never triggers "
            "retraining)") if first_run else ""
    marks = {FIRST_RUN: True} if first_run else {}
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
            "current": published.label,
            "current_rows": result.current_rows,
            "report_path": dg.MetadataValue.path(published.report_location),
            **({"report": dg.MetadataValue.url(url)} if url else {}),
            "mlflow_run_id": run_id,
            **((extra_metadata() if callable(extra_metadata) else extra_metadata) or {}),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=f"{check_prefix}input_drift",
                passed=share <= limit,
                severity=input_severity,
                description=f"{share:.0%} of input columns drifted (limit {limit:.0%})"
                + (f": {', '.join(result.drifted_columns)}" if result.drifted_columns else "") + note,
                metadata={"drift_share": float(share), "limit": float(limit), **marks},
            ),
            dg.AssetCheckResult(
                check_name=f"{check_prefix}prediction_drift",
                passed=pred is None or not pred.drifted,
                severity=dg.AssetCheckSeverity.WARN,
                description=(
                    "no prediction column" if pred is None
                    else f"prediction {pred.method} {pred.score:.3f} "
                    f"({'above' if pred.drifted else 'within'} {pred.threshold})"
                ) + note,
                metadata={"score": float(pred.score) if pred else 0.0, **marks},
            ),
        ],
    )
