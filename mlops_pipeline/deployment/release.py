"""Release analysis: is the challenger fit to replace the champion, judged on live traffic?

The server routes a canary share to the `challenger` and captures its shadow answers; this module
reads that captured traffic (the prediction store, over a rolling window) and the server's
`/metrics` (errors are not captured in the store), and judges the challenger against the release
policy of the dataset spec (`release:`, `settings.ReleaseSpec`). Five checks, each with a threshold
and a minimum sample before it may decide, each answering pass / fail / insufficient (not enough
evidence yet) / n/a (does not apply to this deployment):

- latency: canary p99 <= max_p99_ratio x champion p99 + slack_ms (requests clients waited for;
  shadow latency includes waiting for the champion, so it is reported, never judged);
- errors: the challenger's error rate from the server's counters (since the server started);
- shift: the challenger's prediction distribution against the champion's over the window (PSI of
  scores, Jensen-Shannon of multi-class classes: `drift.column_score`, THE drift functions);
- agreement: on the same requests (shadow rows share the champion's batch id), the share of equal
  classes and the mean absolute score difference;
- quality: on labelled requests, the gate's metric of challenger minus champion with a bootstrap
  interval (paired over the same requests with shadow, else unpaired canary vs champion): fail when
  the interval lies wholly beyond the gate's tolerance, pass when wholly within it.

`decide` turns the verdicts into one action (remove the challenger / promote or announce / wait);
the `challenger_analysis` asset and the `release_guard` sensor are thin wiring around it. No Dagster
here; MLflow and scikit-learn are imported only where used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from mlops_pipeline.spec import DatasetSpec, ReleaseSpec

PASS, FAIL, INSUFFICIENT, NA = "pass", "fail", "insufficient", "n/a"
CHAMPION, CANARY, SHADOW = "champion", "canary", "shadow"
ROLES = (CHAMPION, CANARY, SHADOW)
CHECKS = ("latency", "errors", "shift", "agreement", "quality")
GUARD_ACTOR = "sensor:release_guard"
#: Version tags the guard writes on a challenger it removed.
ROLLBACK_TAG = "release.rolled_back"
ROLLBACK_REASON_TAG = "release.rollback_reason"
#: Version tag the guard writes when it announces a challenger as ready to promote.
READY_TAG = "release.ready_to_promote"


@dataclass(frozen=True)
class CheckVerdict:
    check: str
    status: str  # pass | fail | insufficient | n/a
    value: float | None
    threshold: str
    evidence: int
    needed: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RoleStats:
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
    records: int
    agreement: float | None  # share of equal classes (classification)
    mean_abs_diff: float | None  # mean |score difference|


@dataclass(frozen=True)
class QualityComparison:
    metric: str
    paired: bool
    records: int  # labelled records on the challenger's side (pairs, when paired)
    champion: float | None
    challenger: float | None
    diff: float | None  # challenger better by (sign-adjusted: positive = better)
    low: float | None
    high: float | None


@dataclass
class ReleaseAnalysis:
    model: str
    champion_version: str | None
    challenger_version: str | None
    window_start: datetime
    window_end: datetime
    roles: dict[str, RoleStats] = field(default_factory=dict)
    agreement: Agreement | None = None
    quality: QualityComparison | None = None
    verdicts: list[CheckVerdict] = field(default_factory=list)

    def verdict(self, check: str) -> CheckVerdict:
        return next(v for v in self.verdicts if v.check == check)

    @property
    def failed(self) -> list[CheckVerdict]:
        return [v for v in self.verdicts if v.status == FAIL]

    @property
    def ready(self) -> bool:
        """Every check that applies passed on enough evidence (and at least one applied)."""
        applied = [v for v in self.verdicts if v.status != NA]
        return bool(applied) and all(v.status == PASS for v in applied)

    def reason(self) -> str:
        """One line naming the failed checks and their numbers (the SLO breach, as recorded)."""
        return "; ".join(f"{v.check}: {v.detail}" for v in self.failed)

    def table(self) -> str:
        """The verdicts as a Markdown table, for metadata and alerts."""
        lines = ["| check | verdict | value | threshold | evidence | detail |",
                 "|---|---|---|---|---|---|"]
        for v in self.verdicts:
            value = "" if v.value is None else f"{v.value:.4g}"
            lines.append(f"| {v.check} | {v.status} | {value} | {v.threshold} | "
                         f"{v.evidence}/{v.needed} | {v.detail} |")
        return "\n".join(lines)

    def roles_table(self) -> str:
        lines = ["| role | versions | requests | records | errors | p50 ms | p95 ms | p99 ms | "
                 "labelled |", "|---|---|---|---|---|---|---|---|---|"]

        def ms(x: float | None) -> str:
            return "" if x is None else f"{x:.1f}"

        for r in self.roles.values():
            errors = "unknown" if r.errors is None else str(r.errors)
            lines.append(f"| {r.role} | {','.join(r.versions)} | {r.requests} | {r.records} | "
                         f"{errors} | {ms(r.latency_p50_ms)} | {ms(r.latency_p95_ms)} | "
                         f"{ms(r.latency_p99_ms)} | {r.labelled} |")
        return "\n".join(lines)


# ---- reading the evidence ----------------------------------------------------------------------

def window(spec: ReleaseSpec, now: datetime | None = None) -> tuple[datetime, datetime]:
    end = now or datetime.now(UTC)
    return end - timedelta(hours=spec.window_hours), end


def read_traffic(store: Any, model: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The window's captured rows of `model` (every role), with each record's probabilities."""
    return store.read_window(start=start, end=end, model_name=model, probabilities=True)


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


# ---- statistics ----------------------------------------------------------------------------

def _is_classification(rows: pd.DataFrame) -> bool:
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
    if _is_classification(rows):
        return rows["probability"].astype(float)
    return rows["prediction"].astype(float)


def _binary(rows: pd.DataFrame) -> bool:
    if not _is_classification(rows):
        return False
    first = rows["probabilities"].dropna()
    return len(first) > 0 and len(first.iloc[0]) == 2


def distribution(rows: pd.DataFrame) -> dict[str, float]:
    """Class shares (classification) or value quantiles (regression) plus the mean score."""
    if rows.empty:
        return {}
    if _is_classification(rows):
        shares = rows["prediction"].astype(str).value_counts(normalize=True).sort_index()
        out = {f"share[{k}]": float(v) for k, v in shares.items()}
        if _binary(rows):
            out["mean_probability"] = float(rows["probability"].mean())
        return out
    values = rows["prediction"].astype(float)
    return {"mean": float(values.mean()), "p10": float(values.quantile(0.1)),
            "p50": float(values.quantile(0.5)), "p90": float(values.quantile(0.9))}


def role_stats(rows: pd.DataFrame, role: str, counts: dict[str, tuple[int, int]] | None) -> RoleStats:
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

    if _is_classification(champion) and not _binary(champion):
        ref = champion["prediction"].astype(str).rename("prediction")
        cur = challenger["prediction"].astype(str).rename("prediction")
        return "jensenshannon", column_score(ref, cur, numerical=False, method="jensenshannon")
    return "psi", column_score(scores(champion).rename("prediction"), scores(challenger).rename("prediction"),
                               numerical=True, method="psi")


# ---- quality with a confidence statement -----------------------------------------------------

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

    if not _is_classification(rows):
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
    from mlops_pipeline.deployment.gate import GREATER_IS_BETTER

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


# ---- the policy --------------------------------------------------------------------------------

def _verdict(check: str, evidence: int, needed: int, value: float | None, threshold: str,
             ok: bool | None, detail: str) -> CheckVerdict:
    if evidence < needed or value is None or (isinstance(value, float) and math.isnan(value)):
        return CheckVerdict(check, INSUFFICIENT, value, threshold, evidence, needed,
                            f"{evidence} of {needed} needed; {detail}")
    return CheckVerdict(check, PASS if ok else FAIL, value, threshold, evidence, needed, detail)


def judge(analysis: ReleaseAnalysis, rows: pd.DataFrame, counts: dict[str, tuple[int, int]] | None,
          spec: DatasetSpec) -> list[CheckVerdict]:
    """The policy verdict per check (see the module docstring for what each one needs)."""
    policy = spec.release
    champ, canary, shadow = (analysis.roles[r] for r in ROLES)
    out: list[CheckVerdict] = []

    lat = policy.latency
    if canary.requests == 0:
        out.append(CheckVerdict("latency", NA, None, f"p99 <= {lat.max_p99_ratio}x champion + "
                                f"{lat.slack_ms} ms", 0, lat.min_requests,
                                "no canary traffic: latency is judged on answers clients waited for"))
    else:
        limit = (None if champ.latency_p99_ms is None
                 else lat.max_p99_ratio * champ.latency_p99_ms + lat.slack_ms)
        value = canary.latency_p99_ms
        detail = (f"canary p99 {value:.1f} ms vs limit {limit:.1f} ms (champion p99 "
                  f"{champ.latency_p99_ms:.1f} ms)" if value is not None and limit is not None
                  else "no champion latency in the window")
        out.append(_verdict("latency", min(canary.requests, champ.requests), lat.min_requests,
                            value if limit is not None else None,
                            f"p99 <= {lat.max_p99_ratio}x champion + {lat.slack_ms} ms",
                            value is not None and limit is not None and value <= limit, detail))

    err = policy.errors
    threshold = f"error rate <= {err.max_error_rate}"
    if counts is None:
        out.append(CheckVerdict("errors", INSUFFICIENT, None, threshold, 0, err.min_requests,
                                "unknown: no serving URL configured, or /metrics did not answer"))
    else:
        role = CANARY if counts[CANARY][0] > 0 or canary.requests else SHADOW
        answered, errors = counts[role]
        total = answered + errors
        rate = errors / total if total else None
        out.append(_verdict("errors", total, err.min_requests, rate, threshold,
                            rate is not None and rate <= err.max_error_rate,
                            f"{role}: {errors} errors in {total} calls since the server started"))

    sh = policy.shift
    challenger_rows = rows[rows["role"] == (SHADOW if shadow.records else CANARY)] if len(rows) else rows
    champion_rows = rows[rows["role"] == CHAMPION] if len(rows) else rows
    n = min(len(challenger_rows), len(champion_rows))
    if n >= sh.min_records:
        method, score = prediction_shift(champion_rows, challenger_rows)
        limit = sh.max_js if method == "jensenshannon" else sh.max_psi
        out.append(_verdict("shift", n, sh.min_records, score, f"{method} <= {limit}", score <= limit,
                            f"{method} {score:.4f} of the challenger's predictions against the champion's"))
    else:
        out.append(_verdict("shift", n, sh.min_records, None, f"psi <= {sh.max_psi} / js <= {sh.max_js}",
                            None, "prediction distributions"))

    ag = policy.agreement
    a = analysis.agreement or Agreement(0, None, None)
    thr = f"agreement >= {ag.min_agreement}, mean |diff| <= {ag.max_mean_abs_diff}"
    if shadow.records == 0:
        out.append(CheckVerdict("agreement", NA, None, thr, 0, ag.min_records,
                                "no shadow traffic: nothing to compare on the same requests"))
    else:
        ok_agree = a.agreement is None or a.agreement >= ag.min_agreement
        ok_diff = a.mean_abs_diff is not None and a.mean_abs_diff <= ag.max_mean_abs_diff
        agree = "" if a.agreement is None else f"{a.agreement:.3f} equal classes, "
        diff = "" if a.mean_abs_diff is None else f"mean |score diff| {a.mean_abs_diff:.4f}"
        out.append(_verdict("agreement", a.records, ag.min_records,
                            a.agreement if a.agreement is not None else a.mean_abs_diff, thr,
                            ok_agree and ok_diff, f"{agree}{diff} on {a.records} shared records"))

    q = policy.quality
    qc = analysis.quality
    metric = qc.metric if qc else quality_metric(spec)
    tol = spec.gate[metric].tolerance
    thr = f"{metric}: challenger not worse than champion by > {tol} ({q.confidence:.0%} interval)"
    if qc is None or qc.diff is None:
        status = INSUFFICIENT if q.required else NA
        out.append(CheckVerdict("quality", status, None, thr, 0 if qc is None else qc.records,
                                q.min_labelled, "no labelled challenger records yet"))
    else:
        if qc.high < -tol:
            ok: bool | None = False
        elif qc.low >= -tol:
            ok = True
        else:
            ok = None
        detail = (f"{metric} champion {qc.champion:.4f}, challenger {qc.challenger:.4f}, better by "
                  f"{qc.diff:+.4f} [{qc.low:+.4f}, {qc.high:+.4f}] on {qc.records} "
                  f"{'paired' if qc.paired else 'unpaired'} labelled records")
        verdict = _verdict("quality", qc.records, q.min_labelled, qc.diff, thr, bool(ok), detail)
        if ok is None and verdict.status != INSUFFICIENT:
            verdict = CheckVerdict("quality", INSUFFICIENT, qc.diff, thr, qc.records, q.min_labelled,
                                   detail + ": the interval straddles the tolerance")
        if verdict.status == INSUFFICIENT and not q.required:
            verdict = CheckVerdict("quality", NA, qc.diff, thr, qc.records, q.min_labelled, verdict.detail)
        out.append(verdict)
    return out


def quality_metric(spec: DatasetSpec) -> str:
    metric = spec.release.quality.metric or next(iter(spec.gate))
    if metric not in spec.gate:
        raise ValueError(f"release.quality.metric {metric!r} is not a gate metric; use one of "
                         f"{sorted(spec.gate)}")
    return metric


def analyse(rows: pd.DataFrame, spec: DatasetSpec, champion_version: str | None,
            challenger_version: str | None, metrics_text: str | None,
            start: datetime, end: datetime, seed: int = 0) -> ReleaseAnalysis:
    """The whole analysis of one window of captured traffic (`read_traffic`) plus the server's
    metrics text (None: errors unknown). Only rows of the current champion and challenger versions
    count, so an earlier challenger's canary answers never judge this one."""
    keep = pd.Series(True, index=rows.index)
    if len(rows):
        version = rows["model_version"].astype(str)
        keep = ((rows["role"] == CHAMPION) & (version == str(champion_version))) | (
            rows["role"].isin([CANARY, SHADOW]) & (version == str(challenger_version)))
    rows = rows[keep].reset_index(drop=True) if len(rows) else rows
    counts = server_counts(metrics_text, challenger_version)
    analysis = ReleaseAnalysis(spec.name, champion_version, challenger_version, start, end)
    analysis.roles = {r: role_stats(rows, r, counts) for r in ROLES}
    analysis.agreement = agreement(rows) if len(rows) else Agreement(0, None, None)
    if len(rows) and challenger_version is not None:
        analysis.quality = quality(rows, spec, quality_metric(spec), seed)
    analysis.verdicts = judge(analysis, rows, counts, spec) if challenger_version else []
    return analysis


# ---- the decision ------------------------------------------------------------------------------

REMOVE, PROMOTE, ANNOUNCE, WAIT = "remove", "promote", "announce", "wait"


@dataclass(frozen=True)
class Decision:
    action: str  # remove | promote | announce | wait
    reason: str


def decide(analysis: ReleaseAnalysis, spec: ReleaseSpec, training_busy: bool = False,
           announced: bool = False) -> Decision:
    """One action, never two: a failed check removes the challenger; every applicable check passed
    promotes (`auto_promote`) or announces (once: `announced` says it was already); otherwise, and
    always while a training run may move aliases (`training_busy`), wait."""
    if analysis.challenger_version is None:
        return Decision(WAIT, "no challenger")
    if training_busy:
        return Decision(WAIT, "a training run is moving aliases: deciding after it")
    if analysis.failed:
        return Decision(REMOVE, f"SLO breached by v{analysis.challenger_version}: {analysis.reason()}")
    if analysis.ready:
        summary = "; ".join(f"{v.check}: {v.detail}" for v in analysis.verdicts if v.status == PASS)
        if spec.auto_promote:
            return Decision(PROMOTE, f"release checks passed: {summary}")
        if announced:
            return Decision(WAIT, "already announced as ready to promote")
        return Decision(ANNOUNCE, f"v{analysis.challenger_version} ready to promote: {summary}")
    waiting = "; ".join(f"{v.check} ({v.detail})" for v in analysis.verdicts if v.status == INSUFFICIENT)
    return Decision(WAIT, f"not enough evidence yet: {waiting}")


def reload_server(url: str | None, token: str | None, timeout: float = 30.0) -> bool:
    """Ask the server to re-read the registry now (authenticated `POST /admin/reload`); False when
    no URL or token is known or the server refused: it then follows at its next poll."""
    if not url or not token:
        return False
    import json
    import urllib.request

    request = urllib.request.Request(f"{url.rstrip('/')}/admin/reload", data=b"{}", method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
            return 200 <= response.status < 300 and bool(body.get("polled", True))
    except OSError:
        return False


def remove_challenger(registry: Any, name: str, version: str, reason: str,
                      actor: str = GUARD_ACTOR) -> Any:
    """Take the `challenger` alias off `version` (recorded in the alias history with `reason`) and
    tag the version with why; nothing moves when the alias already names another version."""
    current = registry.version_by_alias(name, "challenger")
    if current is None or str(current.version) != str(version):
        return None
    move = registry.remove_alias(name, "challenger", actor=actor, reason=reason)
    registry.client.set_model_version_tag(name, str(version), ROLLBACK_TAG, "true")
    registry.client.set_model_version_tag(name, str(version), ROLLBACK_REASON_TAG, reason[:4000])
    registry.client.set_model_version_tag(name, str(version), "release.rolled_back_by", actor)
    return move
