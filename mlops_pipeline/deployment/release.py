"""Release analysis: is the challenger fit to replace the champion, judged on live traffic?

The server routes a canary share to the `challenger` and captures its shadow answers. This module
judges that evidence (`traffic_stats`: the rows of a rolling window and the server's `/metrics`;
`release_quality`: the labelled comparison) against the release policy of the dataset spec
(`release:`, `spec_sections.ReleaseSpec`). Five checks, each with a threshold and a minimum sample
before it may decide, each answering pass / fail / insufficient (not enough evidence yet) / n/a
(does not apply to this deployment):

- latency: canary p99 <= max_p99_ratio x champion p99 + slack_ms (requests clients waited for;
  shadow latency includes waiting for the champion, so it is reported, never judged);
- errors: the challenger's error rate from the server's counters (since the server started);
- shift: the challenger's prediction distribution against the champion's over the window (PSI of
  scores, Jensen-Shannon of multi-class classes: `drift.column_score`, THE drift functions);
- agreement: on the same requests (shadow rows share the champion's batch id), the share of equal
  classes and the mean absolute score difference;
- quality: on labelled requests, the gate's metric of challenger minus champion with a bootstrap
  interval: fail when the interval lies wholly beyond the gate's tolerance, pass when wholly within.

`decide` turns the verdicts into one action (remove the challenger / promote or announce / wait);
the `challenger_analysis` asset and the `release_guard` sensor are thin wiring around it. No Dagster
here; MLflow and scikit-learn are imported only where used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from mlops_pipeline.deployment.release_quality import QualityComparison, quality, segment_quality
from mlops_pipeline.deployment.tags import (
    CANARY,
    CHALLENGER,
    CHAMPION,
    ROLES,
    ROLLBACK_REASON_TAG,
    ROLLBACK_TAG,
    ROLLED_BACK_BY_TAG,
    SHADOW,
)
from mlops_pipeline.deployment.traffic_stats import (
    Agreement,
    RoleStats,
    agreement,
    prediction_shift,
    role_stats,
    server_counts,
)
from mlops_pipeline.spec import DatasetSpec
from mlops_pipeline.spec_sections import ReleaseSpec

PASS, FAIL, INSUFFICIENT, NA = "pass", "fail", "insufficient", "n/a"
CHECKS = ("latency", "errors", "shift", "agreement", "quality")
GUARD_ACTOR = "sensor:release_guard"


@dataclass(frozen=True)
class CheckVerdict:
    """One check's answer: pass / fail / insufficient / n/a, with its number and evidence."""

    check: str
    status: str  # pass | fail | insufficient | n/a
    value: float | None
    threshold: str
    evidence: int
    needed: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReleaseAnalysis:
    """One window's evidence about the challenger and the policy's verdict per check."""

    model: str
    champion_version: str | None
    challenger_version: str | None
    window_start: datetime
    window_end: datetime
    roles: dict[str, RoleStats] = field(default_factory=dict)
    agreement: Agreement | None = None
    quality: QualityComparison | None = None
    #: The quality check per segment (`release_quality.segment_quality`), None without segments.
    segments: Any = None
    verdicts: list[CheckVerdict] = field(default_factory=list)

    def verdict(self, check: str) -> CheckVerdict:
        """The verdict of `check` (one of `CHECKS`)."""
        return next(v for v in self.verdicts if v.check == check)

    @property
    def failed(self) -> list[CheckVerdict]:
        """The checks that failed: any one removes the challenger."""
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
        """The per-role statistics as a Markdown table, for metadata and alerts."""
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
    """The rolling window the analysis reads: the last `window_hours` up to `now`."""
    end = now or datetime.now(UTC)
    return end - timedelta(hours=spec.window_hours), end


def read_traffic(store: Any, model: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The window's captured rows of `model` (every role), with each record's probabilities."""
    return store.read_window(start=start, end=end, model_name=model, probabilities=True)


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
    if spec.segments.enabled:
        out.append(_segments_verdict(analysis.segments, spec))
    return out


def _segments_verdict(report: Any, spec: DatasetSpec) -> CheckVerdict:
    """`segments`: fails when a segment with enough labelled records on both sides is worse
    than under the champion beyond the segment tolerance with confidence (the gate's rule);
    never required, so without enough evidence it does not hold a release back."""
    seg = spec.segments
    thr = (f"each segment not worse by > {seg.tolerance:g} ({seg.confidence:.0%} interval, "
           f">= {seg.min_rows} labelled records)")
    if report is None:
        return CheckVerdict("segments", NA, None, thr, 0, seg.min_rows,
                            "no labelled records carrying the segment columns on both sides")
    deciding = [r for r in report.rows if r.verdict in ("ok", "regressed")]
    if report.blocking:
        worst = report.blocking[0]
        return CheckVerdict("segments", FAIL, worst.difference, thr, worst.rows, seg.min_rows,
                            "; ".join(report.failures()))
    if not deciding:
        return CheckVerdict("segments", NA, None, thr, max((r.rows for r in report.rows), default=0),
                            seg.min_rows, "no segment has enough labelled records yet")
    return CheckVerdict("segments", PASS, None, thr, len(deciding), seg.min_rows,
                        f"{len(deciding)} segments judged, none worse beyond {seg.tolerance:g}")


def quality_metric(spec: DatasetSpec) -> str:
    """The gate metric the quality check compares (`release.quality.metric`, else the gate's
    first); a metric the gate does not have is a config error naming the choices."""
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
        analysis.segments = segment_quality(rows, spec, quality_metric(spec), seed)
    analysis.verdicts = judge(analysis, rows, counts, spec) if challenger_version else []
    return analysis


# ---- the decision ------------------------------------------------------------------------------

REMOVE, PROMOTE, ANNOUNCE, WAIT = "remove", "promote", "announce", "wait"


@dataclass(frozen=True)
class Decision:
    """The one action the guard takes on an analysis, and why (recorded with it)."""

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
    current = registry.version_by_alias(name, CHALLENGER)
    if current is None or str(current.version) != str(version):
        return None
    move = registry.remove_alias(name, CHALLENGER, actor=actor, reason=reason)
    registry.client.set_model_version_tag(name, str(version), ROLLBACK_TAG, "true")
    registry.client.set_model_version_tag(name, str(version), ROLLBACK_REASON_TAG, reason[:4000])
    registry.client.set_model_version_tag(name, str(version), ROLLED_BACK_BY_TAG, actor)
    return move
