"""A drift report, published: computed against the champion's reference, saved as HTML where the
reports live, and logged to MLflow as a run of its own.

The run's new data (before promotion) and each day of production traffic go through this one
function with the same reference (`champion.champion_reference`), so training-side and
production-side drift are one computation with two inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlops_pipeline.deployment.tags import CHAMPION_VERSION_TAG, CURRENT_TAG, DRIFT_REPORT_KIND, KIND_TAG
from mlops_pipeline.ids import check_segment

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
    label: str  # what was compared (the report's name ends with it)


def publish_drift(spec: DatasetSpec, reference: ChampionReference,
                  current: pd.DataFrame | Iterable[pd.DataFrame], label: str | Callable[[], str],
                  storage: Storage, mlflow: MLflow, run_tags: dict[str, str] | None = None,
                  report_rows: int | None = None) -> PublishedDrift:
    """Drift of `current` (model inputs plus the champion's `prediction`: a frame, or its chunks,
    streamed through `drift.compute_drift_chunks`) against the reference, with the spec's
    settings; the HTML report is saved as `drift_<model>_v<champion>_<label>` (a callable label is
    asked once the chunks are consumed) and logged, with every column's score and the drift
    share, to an MLflow run tagged `drift_report` (plus `run_tags`). `report_rows` caps the rows
    per side behind the HTML report."""
    import mlflow as mlflow_lib

    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN, compute_drift_chunks

    result = compute_drift_chunks(
        reference.frame,
        [current] if isinstance(current, pd.DataFrame) else current,
        categorical=spec.features.categorical,
        numerical=[*spec.features.numerical, PREDICTION_COLUMN],
        settings=spec.drift,
        seed=spec.model.seed,
        report_rows=report_rows,
    )
    label = label() if callable(label) else label
    name = check_segment(f"drift_{spec.name}_v{reference.version}_{label}", "report name")
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
    return PublishedDrift(result, report_location, run.info.run_id, label)


class NewRows:
    """What a drift report says of the new rows streamed through it (`watch`): how many, a short
    content id (one report file per distinct new data, whatever the chunking) and their time span."""

    def __init__(self, time_column: str | None = None):
        self.time_column = time_column
        self.rows = 0
        self._keys: list[np.ndarray] = []
        self._span: list[pd.Timestamp] = []

    def watch(self, chunks: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from mlops_pipeline.deployment.holdout import content_keys

        for chunk in chunks:
            self.rows += len(chunk)
            self._keys.append(content_keys(chunk, list(chunk.columns)))
            if self.time_column and self.time_column in chunk.columns and len(chunk):
                times = pd.to_datetime(chunk[self.time_column])
                self._span = [t for t in (*self._span, times.min(), times.max()) if pd.notna(t)]
                self._span = [min(self._span), max(self._span)] if self._span else []
            yield chunk

    @property
    def digest(self) -> str:
        keys = np.sort(np.concatenate([np.zeros(0, np.uint64), *self._keys]))
        return hashlib.sha256(keys.tobytes()).hexdigest()[:12]

    @property
    def span(self) -> dict[str, str]:
        """`current_from` / `current_to` of the time column, when there is one."""
        return {"current_from": str(self._span[0]), "current_to": str(self._span[1])} if self._span else {}


def rows_digest(frame: pd.DataFrame) -> str:
    """A short content id of the compared rows (`NewRows.digest` of one chunk)."""
    seen = NewRows()
    for _ in seen.watch([frame]):
        pass
    return seen.digest
