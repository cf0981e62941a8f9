"""THE rules that turn the loop's signals into one verdict — OK, WATCH or ACT — and one action.

On-call at 3 a.m. needs one line and one decision, not forty check rows. `decide` reads the
signals the board already gathers (`Signals`: serving figures per version, release verdicts, the
latest check results, the labeling queue, drift and estimated quality, the segments named as
getting worse, the last retraining) and applies the rules below in order of urgency; the first
rule that fires at the highest level wins, the others stay listed as `findings` (for the details
and the alert body). The same function feeds the board (`monitoring.board`) and the alerts
(`monitoring.alerts.Alerts.send_verdict`), so the page and the pager never disagree.

Rules, in the order they are tried (the highest level wins; of equals, the first):
1. ACT  a canary (or a newly promoted champion) answers slower than the latency SLO
        -> `mlops-pipeline rollback`
2. ACT  the serving process fails more than `max_error_rate` of its calls -> `mlops-pipeline rollback`
3. ACT  a landed batch blocks retraining -> `mlops-pipeline batches quarantine FILE --reason ...`
4. ACT  another blocking check failed -> its description (details section)
5. WATCH a segment is getting worse, said with where that came from (`SegmentSignal`): its
        estimate below the gate's floor before labels, its own inputs drifted, or realized on
        labels -> the labeling CSV to fill while nothing is realized yet (before the whole
        inputs' drift: of two WATCH lines, the one naming a segment says more)
6. ACT  inputs drifted and the estimated quality fell below its floor, with no retraining since
        -> `mlops-pipeline materialize` (retrain on the new data); the worst segment named, if any
7. WATCH inputs drifted (retraining ran and was promoted: said in words; not promoted: said too)
8. WATCH no champion yet -> `mlops-pipeline materialize`
9. WATCH answers wait for labels -> the labeling CSV to fill
10. WATCH a warning check failed
11. OK  otherwise, in words: traffic, latency against the SLO, the champion.
No Dagster, no heavy imports: pure functions over plain values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

OK, WATCH, ACT = "OK", "WATCH", "ACT"
_INTERVAL = re.compile(r"\[([^,\]]+), ([^)]+)\)")  # a numeric band's label, `[500, 1000)`
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


#: Where a segment's signal came from: its estimate before labels, its own inputs' drift, labels.
ESTIMATED, DRIFT, REALIZED = "estimated", "drift", "realized"
_SOURCES = (REALIZED, ESTIMATED, DRIFT)  # most certain first


def segment_words(name: str) -> str:
    """A segment's name as people read it: `distance=[500, 1000)` is `distance=500 to 1000`, a
    column's underscores are spaces (the board and the alerts show no brackets or snake case)."""
    column, _, value = name.partition("=")
    return column.replace("_", " ") + "=" + _INTERVAL.sub(r"\1 to \2", value)


@dataclass(frozen=True)
class SegmentSignal:
    """A segment one signal names as getting worse: the segment, where the signal came from
    (`ESTIMATED`, `DRIFT` or `REALIZED`), the figure in words, and the segment's rows."""

    segment: str
    source: str
    words: str
    rows: int = 0


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
    #: Segments named as getting worse, by estimate, per-segment drift or labels (any order).
    segments: list[SegmentSignal] = field(default_factory=list)


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


def _named_segment(s: Signals) -> tuple[str, list[SegmentSignal]]:
    """The most certain segment named (realized, then estimated, then drift) and its signals."""
    rank = lambda x: _SOURCES.index(x.source) if x.source in _SOURCES else len(_SOURCES)  # noqa: E731
    name = min(s.segments, key=rank).segment
    return name, sorted((x for x in s.segments if x.segment == name), key=rank)


def segment_rule(s: Signals) -> Finding | None:
    """A segment named as getting worse: the most certain one (realized, then estimated, then
    drift), every source that names it in words, so a segment shows before labels arrive."""
    if not s.segments:
        return None
    name, said = _named_segment(s)
    others = len({x.segment for x in s.segments} - {name})
    more = f" (and {others} more segment{'s' if others > 1 else ''})" if others else ""
    why = "; ".join(f"{x.source}: {x.words}" for x in said)
    command = ("" if any(x.source == REALIZED for x in said) or not s.labeling_file else
               f"fill {s.labeling_file}, then mlops-pipeline labels import {s.labeling_file}")
    return Finding(WATCH, "segment", f"segment {name} is getting worse — {why}{more}", command)


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
        worst = ""  # the line that outranks the segment's still names it, and where it came from
        if s.segments:
            name, said = _named_segment(s)
            worst = f"; worst segment {name} ({', '.join(dict.fromkeys(x.source for x in said))})"
        return Finding(ACT, "drift", f"{words}; estimated {metric} {s.estimate:.3f} is "
                       f"below its floor {s.estimate_floor:.3f} and no retraining ran since: "
                       f"retrain{worst}", RETRAIN_COMMAND)
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
RULES = (latency_rule, error_rule, batch_rule, check_rule, segment_rule, drift_rule, champion_rule,
         labels_rule, warning_rule)


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
