"""A drift report, published: computed against the champion's reference, saved as HTML where the
reports live, and logged to MLflow as a run of its own.

The run's new data (before promotion) and each day of production traffic go through this one
function with the same reference (`champion.champion_reference`), so training-side and
production-side drift are one computation with two inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from mlops_pipeline.deployment.tags import CHAMPION_VERSION_TAG, CURRENT_TAG, DRIFT_REPORT_KIND, KIND_TAG

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.deployment.tracking import MLflow
    from mlops_pipeline.monitoring.champion import ChampionReference
    from mlops_pipeline.monitoring.drift import DriftResult
    from mlops_pipeline.spec import DatasetSpec


@dataclass
class PublishedDrift:
    """The drift result and where its report went."""

    result: DriftResult
    report_location: str  # a path, or an s3:// URI beside the snapshots
    run_id: str  # the MLflow run holding the report and the drift scores


def publish_drift(spec: DatasetSpec, reference: ChampionReference, current: pd.DataFrame, label: str,
                  storage: Storage, mlflow: MLflow, run_tags: dict[str, str] | None = None,
                  report_rows: int | None = None) -> PublishedDrift:
    """Drift of `current` (model inputs plus the champion's `prediction`) against the reference,
    with the spec's settings; the HTML report is saved as `drift_<model>_v<champion>_<label>` and
    logged, with every column's score and the drift share, to an MLflow run tagged `drift_report`
    (plus `run_tags`). `report_rows` caps the rows per side behind the HTML report."""
    import mlflow as mlflow_lib

    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN, compute_drift

    result = compute_drift(
        reference.frame,
        current,
        categorical=spec.features.categorical,
        numerical=[*spec.features.numerical, PREDICTION_COLUMN],
        settings=spec.drift,
        seed=spec.model.seed,
        report_rows=report_rows,
    )
    name = f"drift_{spec.name}_v{reference.version}_{label}"
    html = result.save_html(storage.reports_dir / f"{name}.html")
    report_location = storage.publish_report(html)  # on S3: uploaded next to the snapshots
    with mlflow.start_run(
        run_name=name,
        tags={KIND_TAG: DRIFT_REPORT_KIND, CHAMPION_VERSION_TAG: reference.version, CURRENT_TAG: label,
              **(run_tags or {})},
    ) as run:
        mlflow_lib.log_metrics({
            "drift_share": result.drift_share,
            **{f"drift_{c.column}": c.score for c in result.columns},
        })
        mlflow_lib.log_artifact(str(html))
    return PublishedDrift(result, report_location, run.info.run_id)


def rows_digest(frame: pd.DataFrame) -> str:
    """A short content id of the compared rows: one report file per distinct new data."""
    import hashlib

    import numpy as np

    from mlops_pipeline.deployment.holdout import content_keys

    keys = np.sort(content_keys(frame, list(frame.columns)))
    return hashlib.sha256(keys.tobytes()).hexdigest()[:12]
