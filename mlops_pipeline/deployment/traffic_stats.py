"""The challenger's evidence from live traffic, summarised per role.

Reads the captured rows of one window (the prediction store) and the server's Prometheus text, and
turns them into what the release policy (`deployment.release`) judges: per-role volume, errors and
latency, the prediction distribution, shadow agreement on the same records, and the shift of the
challenger's predictions measured with the drift module's own functions. No Dagster.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops_pipeline.deployment.tags import CANARY, CHAMPION, SHADOW


@dataclass(frozen=True)
class RoleStats:
    """One role's traffic in the window: volume, errors, latency per request, prediction mix."""

    role: str
    versions: tuple[str, ...]
    requests: int
    records: int
    errors: int | None  # None: unknown (no serving URL, or the server did not answer)
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    distribution: dict[str, float]
    labelled: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Agreement:
    """Champion and shadow answers to the same records, compared."""

    records: int
    agreement: float | None  # share of equal classes (classification)
    mean_abs_diff: float | None  # mean |score difference|


def server_counts(metrics_text: str | None,
                  challenger_version: str | None) -> dict[str, tuple[int, int]] | None:
    """Per role (answered, errors) from the server's Prometheus text; None when unknown.

    Answered: `mlops_predict_requests` (champion, canary; the challenger's version only for the
    canary) and the shadow's model calls (`mlops_batch_rows` count of role shadow). Errors:
    `mlops_errors{kind="shadow"}` are the shadow's failed calls; `kind="model"` (a 500: the model
    failed on known-good input too) is not labelled by version, so while a canary is live it is
    counted against the canary (the conservative reading: removing a challenger costs nothing).
    Counters run since the server started."""
    if not metrics_text:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    answered = {CHAMPION: 0.0, CANARY: 0.0, SHADOW: 0.0}
    errors = {"shadow": 0.0, "model": 0.0}
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == "mlops_predict_requests_total":
                role = s.labels.get("role")
                other = s.labels.get("model_version") != challenger_version
                if role == CANARY and challenger_version and other:
                    continue
                if role in answered:
                    answered[role] += s.value
            elif s.name == "mlops_batch_rows_count" and s.labels.get("role") == SHADOW:
                answered[SHADOW] += s.value
            elif s.name == "mlops_errors_total" and s.labels.get("kind") in errors:
                errors[s.labels["kind"]] += s.value
    canary_live = answered[CANARY] > 0
    return {
        CHAMPION: (int(answered[CHAMPION]), 0 if canary_live else int(errors["model"])),
        CANARY: (int(answered[CANARY]), int(errors["model"]) if canary_live else 0),
        SHADOW: (int(answered[SHADOW]), int(errors["shadow"])),
    }


def is_classification(rows: pd.DataFrame) -> bool:
    """Whether the rows are a classifier's answers (they carry class probabilities)."""
    return "probabilities" in rows.columns and rows["probabilities"].notna().any()


def request_latencies(rows: pd.DataFrame) -> np.ndarray:
    """One latency (ms) per request: the store repeats a batch's latency on each of its records."""
    if rows.empty:
        return np.array([], dtype=float)
    return rows.drop_duplicates("batch_id")["latency_ms"].to_numpy(dtype=float)


def _pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def scores(rows: pd.DataFrame) -> pd.Series:
    """The number each record's answer is compared by: the positive-class probability (binary),
    the value (regression); multi-class answers compare by class (`prediction`)."""
    if is_classification(rows):
        return rows["probability"].astype(float)
    return rows["prediction"].astype(float)


def _binary(rows: pd.DataFrame) -> bool:
    if not is_classification(rows):
        return False
    first = rows["probabilities"].dropna()
    return len(first) > 0 and len(first.iloc[0]) == 2


def distribution(rows: pd.DataFrame) -> dict[str, float]:
    """Class shares (classification) or value quantiles (regression) plus the mean score."""
    if rows.empty:
        return {}
    if is_classification(rows):
        shares = rows["prediction"].astype(str).value_counts(normalize=True).sort_index()
        out = {f"share[{k}]": float(v) for k, v in shares.items()}
        if _binary(rows):
            out["mean_probability"] = float(rows["probability"].mean())
        return out
    values = rows["prediction"].astype(float)
    return {"mean": float(values.mean()), "p10": float(values.quantile(0.1)),
            "p50": float(values.quantile(0.5)), "p90": float(values.quantile(0.9))}


def role_stats(rows: pd.DataFrame, role: str, counts: dict[str, tuple[int, int]] | None) -> RoleStats:
    """`role`'s share of the window's rows summarised; errors from the server's `counts` (None:
    unknown)."""
    mine = rows[rows["role"] == role] if len(rows) else rows
    lat = request_latencies(mine)
    return RoleStats(
        role=role,
        versions=tuple(sorted(str(v) for v in mine["model_version"].unique())) if len(mine) else (),
        requests=int(mine["batch_id"].nunique()) if len(mine) else 0,
        records=len(mine),
        errors=None if counts is None else counts[role][1],
        latency_p50_ms=_pct(lat, 50), latency_p95_ms=_pct(lat, 95), latency_p99_ms=_pct(lat, 99),
        distribution=distribution(mine),
        labelled=int(mine["label"].notna().sum()) if len(mine) else 0,
    )


def shared_records(rows: pd.DataFrame) -> pd.DataFrame:
    """Champion and shadow answers to the same records (same request id), side by side:
    prediction/score/probabilities `_champion` and `_shadow`, and the label."""
    keep = ["request_id", "prediction", "probability", "label"] + (
        ["probabilities"] if "probabilities" in rows.columns else [])
    champ = rows.loc[rows["role"] == CHAMPION, keep]
    shadow = rows.loc[rows["role"] == SHADOW, [c for c in keep if c != "label"]]
    return champ.merge(shadow, on="request_id", suffixes=("_champion", "_shadow"))


def agreement(rows: pd.DataFrame) -> Agreement:
    """On shared records: the share with the same class, and the mean absolute score difference
    (binary: positive-class probability; multi-class: total variation between the probability
    vectors; regression: the values, and no class agreement)."""
    pairs = shared_records(rows)
    if pairs.empty:
        return Agreement(0, None, None)
    classification = ("probabilities_champion" in pairs.columns
                      and pairs["probabilities_champion"].notna().all())
    if not classification:
        diff = (pairs["prediction_champion"].astype(float) - pairs["prediction_shadow"].astype(float)).abs()
        return Agreement(len(pairs), None, float(diff.mean()))
    same = float((pairs["prediction_champion"].to_numpy() == pairs["prediction_shadow"].to_numpy()).mean())
    if len(pairs["probabilities_champion"].iloc[0]) == 2:
        diff = (pairs["probability_champion"].astype(float) - pairs["probability_shadow"].astype(float)).abs()
    else:
        diff = pd.Series([0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in {*a, *b})
                          for a, b in zip(pairs["probabilities_champion"], pairs["probabilities_shadow"],
                                          strict=True)])
    return Agreement(len(pairs), same, float(diff.mean()))


def prediction_shift(champion: pd.DataFrame, challenger: pd.DataFrame) -> tuple[str, float]:
    """(method, score) of the challenger's predictions against the champion's, with the drift
    module's own functions: PSI of scores (binary probability, regression value), Jensen-Shannon
    distance of predicted classes (multi-class)."""
    from mlops_pipeline.monitoring.drift import column_score

    if is_classification(champion) and not _binary(champion):
        ref = champion["prediction"].astype(str).rename("prediction")
        cur = challenger["prediction"].astype(str).rename("prediction")
        return "jensenshannon", column_score(ref, cur, numerical=False, method="jensenshannon")
    return "psi", column_score(scores(champion).rename("prediction"), scores(challenger).rename("prediction"),
                               numerical=True, method="psi")
