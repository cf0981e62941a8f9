"""THE drift computation: one Evidently setup for the training batch and for production windows.

Methods and thresholds are set explicitly from the dataset spec instead of Evidently's
size-dependent defaults (KS/chi-squared under 1,000 rows, Wasserstein/Jensen-Shannon above), which
change verdicts with sample size and turn every column "drifted" on large samples (evidently#50):
- numerical columns and the prediction: PSI (population stability index), drifted above 0.1, the
  usual "moderate shift" line in credit-risk practice;
- categorical columns: Jensen-Shannon distance, drifted above 0.1.
Both are distances, not p-values, so the verdict does not depend on how many rows there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_pipeline.settings import DriftSpec

PREDICTION_COLUMN = "prediction"


@dataclass
class ColumnDrift:
    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass
class DriftResult:
    columns: list[ColumnDrift]
    reference_rows: int
    current_rows: int
    snapshot: Any = field(default=None, repr=False)

    @property
    def input_columns(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.column != PREDICTION_COLUMN]

    @property
    def drift_share(self) -> float:
        cols = self.input_columns
        return sum(c.drifted for c in cols) / len(cols) if cols else 0.0

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.input_columns if c.drifted]

    @property
    def prediction(self) -> ColumnDrift | None:
        return next((c for c in self.columns if c.column == PREDICTION_COLUMN), None)

    def save_html(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.snapshot.save_html(str(path))
        return path


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    categorical: list[str],
    numerical: list[str],
    settings: DriftSpec,
    seed: int = 0,
) -> DriftResult:
    """Per-column drift of `current` against `reference` (include `prediction` as numerical)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if reference.empty or current.empty:
        raise ValueError(
            f"drift needs rows on both sides (reference {len(reference)}, current {len(current)})"
        )
    cols = [*categorical, *numerical]
    ref, cur = reference[cols], current[cols]
    if settings.sample_rows:
        ref = ref.sample(min(len(ref), settings.sample_rows), random_state=seed)
        cur = cur.sample(min(len(cur), settings.sample_rows), random_state=seed)
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=cols,
        num_method=settings.num_method,
        num_threshold=settings.num_threshold,
        cat_method=settings.cat_method,
        cat_threshold=settings.cat_threshold,
        drift_share=settings.max_drift_share,
    )
    snap = Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    doc = snap.dict()
    scores: dict[str, tuple[str, float, float]] = {}
    for metric in doc["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            scores[config["column"]] = (config["method"], config["threshold"], metric["value"])
    failed: dict[str, bool] = {}
    for test in doc.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift"):
            failed[params["column"]] = test["status"] == "FAIL"
    columns = [
        ColumnDrift(
            column=c,
            method=m,
            threshold=float(t),
            score=float(s),
            drifted=failed.get(c, float(s) > float(t)),
        )
        for c, (m, t, s) in scores.items()
    ]
    return DriftResult(columns, len(ref), len(cur), snapshot=snap)
