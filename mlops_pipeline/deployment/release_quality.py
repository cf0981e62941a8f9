"""Quality with a confidence statement: the gate's metric, challenger against champion, on
labelled live requests.

Paired over the shadow's answers to the same requests when there are enough (the interval is then
about the models, not about which requests each saw), else canary against champion. The bootstrap
scores hundreds of resamples, so the common binary metrics are computed directly with numpy.
No Dagster; scipy and the model module are imported where used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops_pipeline.deployment.tags import CANARY, CHAMPION, SHADOW
from mlops_pipeline.deployment.traffic_stats import is_classification
from mlops_pipeline.spec import DatasetSpec


@dataclass(frozen=True)
class QualityComparison:
    """The gate's metric, challenger against champion on labelled records, with its interval."""

    metric: str
    paired: bool
    records: int  # labelled records on the challenger's side (pairs, when paired)
    champion: float | None
    challenger: float | None
    diff: float | None  # challenger better by (sign-adjusted: positive = better)
    low: float | None
    high: float | None


def _auc(pos: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC by ranks (Mann-Whitney U), ties averaged: sklearn's roc_auc_score, without its checks."""
    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)
    return float((ranks[pos == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


_FAST = {"roc_auc", "log_loss", "brier", "accuracy"}


def metric_value(metric: str, y: np.ndarray, s: np.ndarray, classes: Any) -> float:
    """The gate's metric (`model.compute_metrics`) of scores `s` against truths `y`; binary
    roc_auc, log_loss, brier and accuracy computed directly with numpy (the bootstrap calls this
    hundreds of times)."""
    from mlops_pipeline.training.model import _codes

    if s.ndim == 1 and classes is not None and metric in _FAST:
        pidx = 1 if classes.positive is None else classes.positive
        pos = (_codes(y, classes.labels) == pidx).astype(int)
        if metric == "roc_auc":
            return _auc(pos, s)
        if metric == "log_loss":
            p = np.clip(s, 1e-7, 1 - 1e-7)
            return float(-np.mean(pos * np.log(p) + (1 - pos) * np.log(1 - p)))
        if metric == "brier":
            return float(np.mean((s - pos) ** 2))
        return float(np.mean(pos == (s >= 0.5)))
    from mlops_pipeline.training.model import compute_metrics

    return float(compute_metrics("classification" if classes is not None else "regression",
                                 y, s, classes)[metric])


def _scores_and_classes(rows: pd.DataFrame, labels: tuple | None = None) -> tuple[np.ndarray, Any]:
    from mlops_pipeline.training.model import ClassInfo

    if not is_classification(rows):
        return rows["prediction"].to_numpy(dtype=float), None
    dicts = rows["probabilities"].tolist()
    labels = labels or tuple(dict.fromkeys(c for d in dicts for c in d))
    if len(labels) == 2:  # the store builds {negative: 1-p, positive: p}
        positive = labels.index(list(dicts[0])[-1])
        return rows["probability"].to_numpy(dtype=float), ClassInfo(labels, positive)
    return np.array([[d.get(c, 0.0) for c in labels] for d in dicts], dtype=float), ClassInfo(labels, None)


def bootstrap_difference(y_a: np.ndarray, s_a: np.ndarray, y_b: np.ndarray, s_b: np.ndarray,
                         metric: str, classes: Any, greater_is_better: bool, paired: bool,
                         samples: int, confidence: float, seed: int = 0,
                         ) -> tuple[float, float, float, float, float]:
    """(metric of a = champion, of b = challenger, b better by, interval low, high): the percentile
    bootstrap of the sign-adjusted difference (positive = challenger better). Paired: the same
    resampled records score both (a and b are two answers to the same records, so the interval is
    about the models, not about which requests each saw)."""
    sign = 1.0 if greater_is_better else -1.0
    m_a = metric_value(metric, y_a, s_a, classes)
    m_b = metric_value(metric, y_b, s_b, classes)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(samples):
        ia = rng.integers(0, len(y_a), len(y_a))
        ib = ia if paired else rng.integers(0, len(y_b), len(y_b))
        d = sign * (metric_value(metric, y_b[ib], s_b[ib], classes)
                    - metric_value(metric, y_a[ia], s_a[ia], classes))
        if not math.isnan(d):
            diffs.append(d)
    alpha = (1 - confidence) / 2
    if not diffs:
        return m_a, m_b, sign * (m_b - m_a), float("nan"), float("nan")
    low, high = np.quantile(np.asarray(diffs), [alpha, 1 - alpha])
    return m_a, m_b, sign * (m_b - m_a), float(low), float(high)


def quality(rows: pd.DataFrame, spec: DatasetSpec, metric: str, seed: int = 0) -> QualityComparison | None:
    """The gate's `metric`, challenger against champion on labelled records, with its interval:
    paired over shadow's shared labelled records when there are enough, else canary against
    champion (unpaired). None when no labelled record of the challenger exists."""
    from mlops_pipeline.data.preparation import target_from_feedback
    from mlops_pipeline.training.metrics import GREATER_IS_BETTER

    q = spec.release.quality
    up = GREATER_IS_BETTER[metric]
    labelled = rows[rows["label"].notna()] if len(rows) else rows
    if labelled.empty:
        return None
    champ = labelled[labelled["role"] == CHAMPION]
    shadow = labelled[labelled["role"] == SHADOW]
    canary = labelled[labelled["role"] == CANARY]
    shared = champ[["request_id"]].merge(shadow[["request_id"]], on="request_id")
    paired = len(shared) >= q.min_labelled or (len(shared) > 0 and len(canary) < len(shared))
    if paired:
        a = champ.set_index("request_id").loc[shared["request_id"]].reset_index()
        b = shadow.set_index("request_id").loc[shared["request_id"]].reset_index()
    else:
        a, b = champ, canary
    if a.empty or b.empty:
        return QualityComparison(metric, paired, len(b), None, None, None, None, None)
    s_a, classes = _scores_and_classes(a)
    s_b, _ = _scores_and_classes(b, None if classes is None else classes.labels)
    y_a = target_from_feedback(a["label"], spec)
    y_b = target_from_feedback(b["label"], spec)
    m_a, m_b, diff, low, high = bootstrap_difference(
        y_a, s_a, y_b, s_b, metric, classes, up, paired, q.bootstrap_samples, q.confidence, seed)
    return QualityComparison(metric, paired, len(b), m_a, m_b, diff, low, high)


def segment_quality(rows: pd.DataFrame, spec: DatasetSpec, metric: str, seed: int = 0) -> Any:
    """THE per-segment rule (`deployment.segments`) on the release's labelled records: paired over
    the shadow's answers to the same requests when `quality` would pair, else the canary's
    requests against the champion's. None when the spec has no segments, nothing is labelled on
    both sides, or the records lack a segment column (`missing_columns` says which)."""
    from mlops_pipeline.data.preparation import target_from_feedback
    from mlops_pipeline.deployment.segment_metrics import scored
    from mlops_pipeline.deployment.segments import compare_segments, compare_unpaired

    segments = spec.segments.model_copy(update={"seed": seed}) if seed else spec.segments
    labelled = rows[rows["label"].notna()] if len(rows) else rows
    labelled = with_segment_columns(labelled, spec)
    if not segments.enabled or labelled.empty or missing_columns(labelled, spec):
        return None
    champ = labelled[labelled["role"] == CHAMPION]
    shadow = labelled[labelled["role"] == SHADOW]
    canary = labelled[labelled["role"] == CANARY]
    shared = champ[["request_id"]].merge(shadow[["request_id"]], on="request_id")
    paired = len(shared) >= spec.release.quality.min_labelled or (
        len(shared) > 0 and len(canary) < len(shared))
    if paired:
        a = champ.set_index("request_id").loc[shared["request_id"]].reset_index()
        b = shadow.set_index("request_id").loc[shared["request_id"]].reset_index()
    else:
        a, b = champ.reset_index(drop=True), canary.reset_index(drop=True)
    if a.empty or b.empty:
        return None
    s_a, classes = _scores_and_classes(a)
    s_b, _ = _scores_and_classes(b, None if classes is None else classes.labels)
    task = spec.task
    sa = scored(task, target_from_feedback(a["label"], spec), s_a, classes)
    sb = scored(task, target_from_feedback(b["label"], spec), s_b, classes)
    if paired:
        return compare_segments(a, sb, sa, segments, metric)
    return compare_unpaired(a, sa, b, sb, segments, metric)


def missing_columns(rows: pd.DataFrame, spec: DatasetSpec) -> list[str]:
    """The segment columns the captured records lack (requests that do not carry them)."""
    return [c for c in spec.segments.dimensions if c not in rows.columns]


def with_segment_columns(rows: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """`rows` with the segment columns taken out of each record's captured `features` (the
    window is read without expanding every feature)."""
    missing = missing_columns(rows, spec)
    if not missing or "features" not in rows.columns or rows.empty:
        return rows
    import json

    features = rows["features"].map(lambda f: json.loads(f) if isinstance(f, str | bytes) else (f or {}))
    return rows.assign(**{c: features.map(lambda f, c=c: f.get(c)) for c in missing})
