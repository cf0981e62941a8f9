"""THE rules that turn the loop's signals into one verdict — OK, WATCH or ACT — and one action.

On-call at 3 a.m. needs one line and one decision, not forty check rows. `decide` reads the
signals the board already gathers (`Signals`: serving figures per version, release verdicts, the
latest check results, the labeling queue, drift and estimated quality, the last retraining) and
applies the rules below in order of urgency; the first rule that fires at the highest level wins,
the others stay listed as `findings` (for the details and the alert body). The same function feeds
the board (`monitoring.board`) and the alerts (`monitoring.alerts.Alerts.send_verdict`), so the
page and the pager never disagree.

Rules, most urgent first:
1. ACT  a canary (or a newly promoted champion) answers slower than the latency SLO
        -> `mlops-pipeline rollback`
2. ACT  the serving process fails more than `max_error_rate` of its calls -> `mlops-pipeline rollback`
3. ACT  a landed batch blocks retraining -> `mlops-pipeline batches quarantine FILE --reason ...`
4. ACT  another blocking check failed -> its description (details section)
5. ACT  inputs drifted and the estimated quality fell below its floor, with no retraining since
        -> `mlops-pipeline materialize` (retrain on the new data)
6. WATCH inputs drifted (retraining ran and was promoted: said in words; not promoted: said too)
7. WATCH no champion yet -> `mlops-pipeline materialize`
8. WATCH answers wait for labels -> the labeling CSV to fill
9. WATCH a warning check failed
10. OK  otherwise, in words: traffic, latency against the SLO, the champion.
No Dagster, no heavy imports: pure functions over plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

OK, WATCH, ACT = "OK", "WATCH", "ACT"
_RANK = {OK: 0, WATCH: 1, ACT: 2}

ROLLBACK_COMMAND = "mlops-pipeline rollback"
QUARANTINE_COMMAND = "mlops-pipeline batches quarantine"
RETRAIN_COMMAND = "mlops-pipeline materialize"
#: Fewer requests than this in a role's window and its p99 is not judged (one slow call is noise).
MIN_LATENCY_REQUESTS = 20
#: Fewer answers than this waiting for labels is not worth a line.
MIN_LABELS_WAITING = 50
#: What a metric is called where people read it (the board, the alerts): words, not names.
METRIC_WORDS = {"roc_auc": "ranking quality (ROC AUC)", "accuracy": "share answered right",
                "brier": "probability error (Brier)", "log_loss": "log loss", "f1": "F1 score",
                "macro_f1": "F1 score (per-class mean)", "mae": "mean absolute error",
                "rmse": "root mean squared error", "r2": "share of variance explained (R²)"}


@dataclass(frozen=True)
class Finding:
    """One rule that fired: its level, the sentence a person reads and the command that fixes it."""

    level: str
    rule: str
    words: str
    command: str = ""


@dataclass(frozen=True)
class Verdict:
    """The one line: the most urgent finding (or OK in words), and every finding behind it."""

    level: str
    words: str
    command: str = ""
    rule: str = "ok"
    findings: tuple[Finding, ...] = ()

    def line(self) -> str:
        """`ACT — roll back v7: ... → mlops-pipeline rollback`, the text alerts carry."""
        return f"{self.level} — {self.words}" + (f" → {self.command}" if self.command else "")


@dataclass
class Signals:
    """What the rules read; every field optional (a missing signal never fires a rule)."""

    model: str
    #: `board.serving_by_version` rows: version ("v2"), role, predictions, p99_ms.
    versions: list[dict[str, Any]] = field(default_factory=list)
    slo_p99_ms: float = 50.0
    #: Server-side error share of calls since the server started, None when /metrics is unknown.
    error_rate: float | None = None
    max_error_rate: float = 0.01
    #: Rows of the latest check results: asset, check, status, severity, detail; batch checks
    #: also `batch` and `column` (the first failing batch file and column); `first_run` marks
    #: a first drift report's warnings (informative only).
    checks: list[dict[str, Any]] = field(default_factory=list)
    labels_waiting: int = 0
    labeling_file: str = ""
    #: Production inputs: drifted column names and how many columns were compared.
    drifted_columns: list[str] = field(default_factory=list)
    columns_compared: int = 0
    max_drift_share: float = 0.3
    #: Estimated quality before labels: metric name, estimate and the floor it must not cross
    #: (higher is better for classifier metrics; `lower_is_better` for errors like MAE).
    estimate_metric: str = ""
    estimate: float | None = None
    estimate_floor: float | None = None
    lower_is_better: bool = False
    drift_at: datetime | None = None
    retrained_at: datetime | None = None
    retrain_promoted: bool | None = None
    champion_version: str = ""
    served: int = 0


def _ms(x: float) -> str:
    return f"{x:.0f} ms" if x >= 10 else f"{x:.1f} ms"


def _at(t: datetime | None) -> str:
    return "" if t is None else f" at {t:%H:%M} UTC"


def latency_rule(s: Signals) -> Finding | None:
    """A canary slower than the SLO is rolled back (a slow champion too: rollback is one step)."""
    slow = [r for r in s.versions if r.get("role") in ("canary", "champion")
            and r.get("p99_ms") is not None and r.get("predictions", 0) >= MIN_LATENCY_REQUESTS
            and r["p99_ms"] > s.slo_p99_ms]
    if not slow:
        return None
    worst = max(slow, key=lambda r: (r["role"] == "canary", r["p99_ms"]))
    ratio = worst["p99_ms"] / s.slo_p99_ms
    return Finding(ACT, "latency", f"roll back {worst['version']}: {worst['role']} p99 "
                   f"{_ms(worst['p99_ms'])} is {ratio:.1f}x the {_ms(s.slo_p99_ms)} target",
                   f'{ROLLBACK_COMMAND} --reason "{worst["role"]} {worst["version"]} p99 '
                   f'{ratio:.1f}x the SLO"')


def error_rule(s: Signals) -> Finding | None:
    """Server-side failures above the budget: the release that brought them goes back."""
    if s.error_rate is None or s.error_rate <= s.max_error_rate:
        return None
    return Finding(ACT, "errors", f"{s.error_rate:.1%} of calls fail on the server "
                   f"(budget {s.max_error_rate:.0%})", ROLLBACK_COMMAND)


def _failed(s: Signals, severity: str) -> list[dict[str, Any]]:
    return [c for c in s.checks if c.get("status") == "failed" and c.get("severity") == severity]


def batch_rule(s: Signals) -> Finding | None:
    """A landed batch fails a blocking check: retraining waits until it is set aside (or fixed)."""
    blocked = [c for c in _failed(s, "ERROR") if c.get("batch")]
    if not blocked:
        return None
    c = blocked[0]
    column = f", column '{c['column']}'" if c.get("column") else ""
    what = c["check"].removeprefix("batch_").replace("_", " ")
    return Finding(ACT, "batch", f"retraining blocked by batch {c['batch']}{column} ({what})",
                   f'{QUARANTINE_COMMAND} {c["batch"]} --reason "{what}"')


def check_rule(s: Signals) -> Finding | None:
    """Any other blocking check that failed: named in words, its description tells the fix."""
    failed = [c for c in _failed(s, "ERROR") if not c.get("batch")]
    if not failed:
        return None
    c = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    detail = f": {c['detail']}" if c.get("detail") else ""
    return Finding(ACT, "check", f"{c['check'].replace('_', ' ')} failed{more}{detail}")


def _drifted(s: Signals) -> bool:
    return bool(s.columns_compared) and len(s.drifted_columns) / s.columns_compared > s.max_drift_share


def _below_floor(s: Signals) -> bool:
    if s.estimate is None or s.estimate_floor is None:
        return False
    return s.estimate > s.estimate_floor if s.lower_is_better else s.estimate < s.estimate_floor


def _retrained_since_drift(s: Signals) -> bool:
    return s.retrained_at is not None and (s.drift_at is None or s.retrained_at >= s.drift_at)


def drift_rule(s: Signals) -> Finding | None:
    """Drifted inputs: ACT when the estimated quality fell below its floor and nothing retrained
    since; WATCH otherwise, saying whether retraining ran and was promoted."""
    if not _drifted(s):
        return None
    words = f"inputs drifted in {len(s.drifted_columns)} of {s.columns_compared} columns"
    if _retrained_since_drift(s):
        outcome = "was promoted" if s.retrain_promoted else "was not promoted (the gate kept the champion)"
        return Finding(WATCH, "drift", f"{words}; retraining ran{_at(s.retrained_at)} and {outcome}")
    if _below_floor(s):
        metric = METRIC_WORDS.get(s.estimate_metric, s.estimate_metric.replace("_", " "))
        return Finding(ACT, "drift", f"{words}; estimated {metric} {s.estimate:.3f} is "
                       f"below its floor {s.estimate_floor:.3f} and no retraining ran since: retrain",
                       RETRAIN_COMMAND)
    return Finding(WATCH, "drift", f"{words}; estimated quality still above its floor")


def labels_rule(s: Signals) -> Finding | None:
    """Answers waiting for labels: the file to fill, so realized quality can be measured."""
    if s.labels_waiting < MIN_LABELS_WAITING or not s.labeling_file:
        return None
    return Finding(WATCH, "labels", f"{s.labels_waiting} answers wait for labels",
                   f"fill {s.labeling_file}, then mlops-pipeline labels import {s.labeling_file}")


def warning_rule(s: Signals) -> Finding | None:
    """A failed warning check: worth a look, not a page (a first run's drift — the holdout against
    the training split, marked `first_run` — informs and is left out)."""
    failed = [c for c in _failed(s, "WARN") if not c.get("first_run")]
    if not failed:
        return None
    names = ", ".join(c["check"].replace("_", " ") for c in failed[:3])
    return Finding(WATCH, "warning", f"warning: {names}" + (" …" if len(failed) > 3 else ""))


def champion_rule(s: Signals) -> Finding | None:
    """No champion: nothing answers for this model yet; the loop has to run (and pass its gate)."""
    if s.champion_version:
        return None
    return Finding(WATCH, "no_champion", f"no champion for {s.model} yet: run the loop",
                   RETRAIN_COMMAND)


#: In order of urgency within a level; `decide` takes the highest level, first in this order.
RULES = (latency_rule, error_rule, batch_rule, check_rule, drift_rule, champion_rule, labels_rule,
         warning_rule)


def ok_words(s: Signals) -> str:
    """What OK means, in words: the champion, its traffic and latency against the target."""
    head = f"{s.model} champion {s.champion_version}" if s.champion_version else s.model
    champ = [r for r in s.versions if r.get("role") == "champion" and r.get("p99_ms") is not None]
    parts = [f"{s.served:,} predictions served"] if s.served else []
    if champ:
        parts.append(f"p99 {_ms(champ[-1]['p99_ms'])} (target {_ms(s.slo_p99_ms)})")
    return head + (" — " + ", ".join(parts) if parts else "")


def decide(s: Signals) -> Verdict:
    """The verdict: the first finding of the highest level among `RULES`, or OK in words."""
    findings = tuple(f for rule in RULES if (f := rule(s)) is not None)
    if not findings:
        return Verdict(OK, "all is well: " + ok_words(s))
    top = max(findings, key=lambda f: _RANK[f.level])  # max keeps the first of equals
    return Verdict(top.level, top.words, top.command, top.rule, findings)
