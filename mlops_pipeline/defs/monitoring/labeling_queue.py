"""The daily labeling queue (thin wiring over `mlops_pipeline.monitoring.labeling`).

`labeling_queue` picks, from one day of served traffic, the unlabelled records most worth a human
label (the champion's least confident answers, the shadow challenger's disagreements), one per key,
at most `labeling.max_per_day`, and exports them under `<storage root>/labeling/<day>.csv` (fill in
the `label` column) and `<day>.json` (Label Studio tasks). `mlops-pipeline labels import FILE`
brings the labels back.
"""

import json
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.monitoring.shared import DAILY
from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.monitoring.predictions import served_rows


def _estimated_loss(spec: Any, log: pd.DataFrame, storage: Storage,
                    mlflow: MLflow, context: dg.AssetExecutionContext) -> np.ndarray | None:
    """Regression: each served row's absolute error predicted by the champion's loss model (DLE,
    `estimates.estimated_loss`), in the served rows' order; None when there is no champion or
    loss model to ask (the queue then ranks by shadow disagreement only)."""
    from mlops_pipeline.monitoring.champion import champion_estimator
    from mlops_pipeline.monitoring.estimates import estimated_loss

    served = served_rows(log)
    if served.empty:
        return None
    try:
        return estimated_loss(spec, served, champion_estimator(spec, storage, mlflow))
    except Exception as exc:  # no champion, no loss model, inputs the contract refuses: rank by shadow only
        context.log.warning(f"no estimated loss to rank by ({type(exc).__name__}: {exc})")
        return None


@dg.asset(
    partitions_def=DAILY,
    group_name="monitoring",
    kinds={"pandas", "csv"},
    description="The day's served predictions most worth a human label (least confident, and "
    "where the shadow challenger disagrees), deduplicated by key, unlabelled only, capped by "
    "`labeling.max_per_day`; exported as CSV and Label Studio tasks under labeling/<day>.",
)
def labeling_queue(
    context: dg.AssetExecutionContext,
    prediction_log: pd.DataFrame,
    dataset: DatasetResource,
    storage: dg.ResourceParam[Storage],
    mlflow: dg.ResourceParam[MLflow],
) -> dg.MaterializeResult:
    """The day's queue (`labeling.select_queue`) written as CSV and Label Studio tasks under
    `labeling/<day>`; a later materialization replaces the day's files. Regression ranks by the
    champion's estimated loss when it has a loss model."""
    from mlops_pipeline.monitoring.labeling import label_studio_tasks, queue_csv, queue_file, select_queue

    spec = dataset.spec()
    cfg = spec.labeling
    loss = (_estimated_loss(spec, prediction_log, storage, mlflow, context)
            if spec.task == "regression" and len(prediction_log) else None)
    queue = select_queue(prediction_log, spec.task, key_columns=spec.key_columns,
                         max_per_day=cfg.max_per_day, shadow_disagreement=cfg.shadow_disagreement,
                         estimated_loss=loss)
    day = context.partition_key
    csv_at = storage.write_bytes(queue_file(day, "csv"), queue_csv(queue).encode(), "text/csv")
    json_at = storage.write_bytes(queue_file(day, "json"),
                                  json.dumps(label_studio_tasks(queue), indent=1).encode(),
                                  "application/json")
    reasons = queue["reason"].value_counts().to_dict() if len(queue) else {}
    served = served_rows(prediction_log)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(queue),
        "queued": len(queue),
        "least_confident": int(reasons.get("least_confident", 0)),
        "shadow_disagreement": int(reasons.get("shadow_disagreement", 0)),
        "served_unlabelled": int(served["label"].isna().sum()) if len(served) else 0,
        "max_per_day": cfg.max_per_day,
        "ranked_by": ("estimated loss (DLE)" if loss is not None else "shadow disagreement only")
        if spec.task == "regression" else "margin between the top two classes",
        "csv": dg.MetadataValue.path(csv_at),
        "label_studio_json": dg.MetadataValue.path(json_at),
        "request_ids": dg.MetadataValue.json(list(queue["request_id"])),
        "preview": dg.MetadataValue.md(_preview(queue)),
    })


def _preview(queue: pd.DataFrame, n: int = 10) -> str:
    if queue.empty:
        return "empty: nothing served and unlabelled worth a label"
    cols = ["request_id", "reason", "prediction", "shadow_prediction", "uncertainty"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in queue.head(n)[cols].itertuples(index=False):
        lines.append("| " + " | ".join("" if pd.isna(v) else (f"{v:.3f}" if isinstance(v, float) else str(v))
                                       for v in row) + " |")
    return "\n".join(lines)
