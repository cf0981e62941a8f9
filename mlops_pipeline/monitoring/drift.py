"""THE drift computation: one Evidently setup for the training batch and for production windows.

Methods and thresholds are set explicitly from the dataset spec instead of Evidently's
size-dependent defaults (KS/chi-squared under 1,000 rows, Wasserstein/Jensen-Shannon above), which
change verdicts with sample size and turn every column "drifted" on large samples (evidently#50):
- numerical columns and the prediction: PSI (population stability index), drifted above 0.1, the
  usual "moderate shift" line in credit-risk practice;
- categorical columns: Jensen-Shannon distance, drifted above 0.1.
Both are distances, not p-values, so the verdict does not depend on how many rows there are.

Speed: Evidently's preset builds plots, correlations and per-column copies, too slow and too large
on a million rows (docs/benchmarks.md). For PSI and Jensen-Shannon the scores are computed here on
ALL rows with numpy, using exactly Evidently's binning (`get_binned_data`: Sturges bins over the
combined finite values for numerical columns with more than 20 distinct reference values, one bin
per value otherwise; PSI's zero filling), so scores and verdicts are Evidently's on the full frames
(mlops_pipeline_tests/monitoring/test_drift.py checks the agreement). The HTML report is still Evidently's
preset, rendered from a seeded sample of at most `REPORT_ROWS` rows per side: it is the picture,
the published scores are the exact ones. Other methods fall back to Evidently on the full frames.

Chunks: `compute_drift_chunks` feeds the current side a chunk at a time (a run's new rows can be
many times memory). Columns are kept as counts, numerical columns binned by range as their values
(`binning`), and samples are drawn by seeded per-row keys, so the scores and the report's rows are
the same as for the chunks concatenated; `compute_drift` is the one-chunk case.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_pipeline.spec_sections import DriftSpec

PREDICTION_COLUMN = "prediction"
# Rows per side behind the HTML report (its plots and its own scores), unless the caller passes
# `report_rows` (`Settings.drift_report_rows`, from `MLOPS_DRIFT_REPORT_ROWS`). 50k rows: the
# report's histogram shares are within ~0.5 percentage point of the full data (binomial standard
# error sqrt(p(1-p)/n) <= 0.0022).
REPORT_ROWS = 50_000
FAST_METHODS = frozenset({"psi", "jensenshannon"})


@dataclass
class ColumnDrift:
    """One column's score by `method` against `threshold`, and the verdict, as `compute_drift` reports it."""

    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass
class DriftResult:
    """`compute_drift`'s answer: each column's verdict (the prediction's too; `drift_share` counts the
    inputs only), the rows compared per side and the Evidently snapshot behind the HTML report."""

    columns: list[ColumnDrift]
    reference_rows: int
    current_rows: int
    snapshot: Any = field(default=None, repr=False)
    report_rows: tuple[int, int] | None = None  # rows per side behind the HTML report

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


def column_score(reference: pd.Series, current: pd.Series, numerical: bool, method: str) -> float:
    """PSI or Jensen-Shannon distance of one column, as Evidently's stattest computes it."""
    from mlops_pipeline.monitoring.binning import column_counts, counts_score

    return counts_score(column_counts(reference, numerical, raw=numerical),
                        column_counts(current, numerical, raw=numerical), method, str(reference.name))


def _evidently_report(ref: pd.DataFrame, cur: pd.DataFrame, categorical: list[str],
                      numerical: list[str], settings: DriftSpec) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=[*categorical, *numerical],
        num_method=settings.num_method,
        num_threshold=settings.num_threshold,
        cat_method=settings.cat_method,
        cat_threshold=settings.cat_threshold,
        drift_share=settings.max_drift_share,
    )
    return Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )


def _evidently_columns(snap: Any) -> list[ColumnDrift]:
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
    return [
        ColumnDrift(column=c, method=m, threshold=float(t), score=float(s),
                    drifted=failed.get(c, float(s) > float(t)))
        for c, (m, t, s) in scores.items()
    ]


def prediction_kind(reference: pd.DataFrame, categorical: list[str],
                    numerical: list[str]) -> tuple[list[str], list[str]]:
    """The column lists with `prediction` where its values belong: numerical for a score or a
    value, categorical for predicted classes (strings, booleans, any non-numeric column)."""
    if PREDICTION_COLUMN not in reference.columns or PREDICTION_COLUMN not in {*categorical, *numerical}:
        return categorical, numerical
    column = reference[PREDICTION_COLUMN]
    is_class = not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
    rest_cat = [c for c in categorical if c != PREDICTION_COLUMN]
    rest_num = [c for c in numerical if c != PREDICTION_COLUMN]
    if is_class:
        return [*rest_cat, PREDICTION_COLUMN], rest_num
    return rest_cat, [*rest_num, PREDICTION_COLUMN]


class _BottomK:
    """A seeded uniform sample of at most `k` rows of a stream of unknown length (all rows when
    `k` is None): every row carries a key drawn from one seeded stream and the rows with the `k`
    smallest keys are kept, in stream order. Fed in chunks or whole, it keeps the same rows."""

    def __init__(self, k: int | None):
        self.k = k
        self.frames: list[pd.DataFrame] = []
        self.keys: list[np.ndarray] = []
        self.held = 0

    def add(self, frame: pd.DataFrame, keys: np.ndarray) -> None:
        self.frames.append(frame)
        self.keys.append(keys)
        self.held += len(frame)
        if self.k is not None and self.held > 2 * max(self.k, 1):
            self._keep(self.k)

    def _keep(self, k: int | None) -> tuple[pd.DataFrame, np.ndarray]:
        frame = self.frames[0] if len(self.frames) == 1 else pd.concat(self.frames, ignore_index=True)
        keys = self.keys[0] if len(self.keys) == 1 else np.concatenate(self.keys)
        if k is not None and len(keys) > k:
            kept = np.sort(np.argpartition(keys, k - 1)[:k]) if k else np.zeros(0, "int64")
            frame, keys = frame.iloc[kept], keys[kept]
        frame = frame.reset_index(drop=True)
        self.frames, self.keys, self.held = [frame], [keys], len(frame)
        return frame, keys

    def rows(self, k: int | None = None) -> pd.DataFrame:
        """The sample, or its `k` smallest-key rows (a seeded sample of the sample)."""
        frame, keys = self._keep(self.k)
        if k is None or len(frame) <= k:
            return frame
        return frame.iloc[np.sort(np.argpartition(keys, k - 1)[:k])].reset_index(drop=True)


class DriftSide:
    """One side of a drift comparison, fed a chunk at a time (`add`): each column's counts, or
    for the `raw` columns (numerical, binned by range) their finite values (`binning`), exact
    whatever the chunking, and seeded samples for the HTML report and, when `sample_rows` caps
    the scored rows, for the scores. With a method that has no counts form (`exact` False), every
    scored row is kept for Evidently."""

    def __init__(self, categorical: list[str], numerical: list[str], raw: set[str],
                 sample_rows: int | None, report_rows: int, seed: int, exact: bool):
        self.columns, self.numerical, self.raw = [*categorical, *numerical], set(numerical), raw
        self.sample_rows, self.report_rows, self.exact = sample_rows, report_rows, exact
        self.rng = np.random.default_rng(seed)
        # The scored rows when capped, else the report's rows, else (Evidently's methods) all rows.
        self.sample = _BottomK(sample_rows if sample_rows is not None else (report_rows if exact else None))
        self.rows = 0
        self._whole: pd.DataFrame | None = None  # the only chunk so far, held as given (no copy)
        self._parts: dict[str, list[Any]] = {c: [] for c in self.columns}

    def add(self, chunk: pd.DataFrame) -> None:
        if self.exact and self.sample_rows is None:
            if self.rows == 0:
                self._whole = chunk
            else:
                if self._whole is not None:
                    self._count(self._whole)
                    self._whole = None
                self._count(chunk)
        self.rows += len(chunk)
        self.sample.add(chunk, self.rng.random(len(chunk)))  # columns picked once sampled: no copy

    def _count(self, chunk: pd.DataFrame) -> None:
        from mlops_pipeline.monitoring.binning import column_counts

        for c in self.columns:
            self._parts[c].append(column_counts(chunk[c], c in self.numerical, raw=c in self.raw))

    @property
    def scored_rows(self) -> int:
        return self.rows if self.sample_rows is None else min(self.rows, self.sample_rows)

    def column(self, c: str) -> Any:
        """Column `c`'s counts (or values) over the scored rows: computed when asked for a side
        fed whole, so only one column's values are held at a time."""
        from mlops_pipeline.monitoring.binning import column_counts, merge

        if self.sample_rows is not None:
            return column_counts(self.sample.rows()[c], c in self.numerical, raw=c in self.raw)
        if self._whole is not None:
            return column_counts(self._whole[c], c in self.numerical, raw=c in self.raw)
        return merge(self._parts[c])

    def scored_frame(self) -> pd.DataFrame:
        """Every scored row (the methods without a counts form need them)."""
        return self.sample.rows()[self.columns]

    def report_frame(self) -> pd.DataFrame:
        return self.sample.rows(self.report_rows)[self.columns]


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    categorical: list[str],
    numerical: list[str],
    settings: DriftSpec,
    seed: int = 0,
    report_rows: int | None = None,
    report: bool = True,
) -> DriftResult:
    """Per-column drift of `current` against `reference` (include `prediction` as numerical).

    A `prediction` column that holds classes (a multi-class model's predicted class, see
    `model.drift_scores`) is compared as a categorical column, whichever list names it.
    `report=False`: the scores and verdicts only, no HTML report behind them (no `snapshot`; the
    per-segment drift of `monitoring.segment_drift` calls this once per segment)."""
    if reference.empty or current.empty:
        raise ValueError(
            f"drift needs rows on both sides (reference {len(reference)}, current {len(current)})"
        )
    return compute_drift_chunks(reference, [current], categorical, numerical, settings, seed, report_rows,
                                report)


def compute_drift_chunks(
    reference: pd.DataFrame,
    current: Iterable[pd.DataFrame],
    categorical: list[str],
    numerical: list[str],
    settings: DriftSpec,
    seed: int = 0,
    report_rows: int | None = None,
    report: bool = True,
) -> DriftResult:
    """`compute_drift` of the rows of `current`'s chunks, holding one chunk and the samples at a
    time: the same scores and verdicts as `compute_drift` of the chunks concatenated."""
    from mlops_pipeline.monitoring.binning import MAX_VALUE_BINS, counts_score

    categorical, numerical = prediction_kind(reference, categorical, numerical)
    exact = {settings.num_method, settings.cat_method} <= FAST_METHODS
    rows = REPORT_ROWS if report_rows is None else report_rows
    ref = DriftSide(categorical, numerical, set(numerical), settings.sample_rows, rows, seed, exact)
    ref.add(reference)
    by_range = {c for c in numerical if exact and ref.column(c).distinct > MAX_VALUE_BINS}
    cur = DriftSide(categorical, numerical, by_range, settings.sample_rows, rows, seed, exact)
    for chunk in current:
        cur.add(chunk)
    if not ref.rows or not cur.rows:
        raise ValueError(f"drift needs rows on both sides (reference {ref.rows}, current {cur.rows})")
    if not exact:
        ref_rows, cur_rows = ref.scored_frame(), cur.scored_frame()
        snap = _evidently_report(ref_rows, cur_rows, categorical, numerical, settings)
        return DriftResult(_evidently_columns(snap), len(ref_rows), len(cur_rows), snapshot=snap,
                           report_rows=(len(ref_rows), len(cur_rows)))
    columns = []
    for col in ref.columns:
        is_num = col in ref.numerical
        method = settings.num_method if is_num else settings.cat_method
        threshold = float(settings.num_threshold if is_num else settings.cat_threshold)
        score = counts_score(ref.column(col), cur.column(col), method, col)
        columns.append(ColumnDrift(col, method, threshold, score, drifted=score >= threshold))
    if not report:
        return DriftResult(columns, ref.scored_rows, cur.scored_rows)
    ref_report, cur_report = ref.report_frame(), cur.report_frame()
    snap = _evidently_report(ref_report, cur_report, categorical, numerical, settings)
    return DriftResult(columns, ref.scored_rows, cur.scored_rows, snapshot=snap,
                       report_rows=(len(ref_report), len(cur_report)))
