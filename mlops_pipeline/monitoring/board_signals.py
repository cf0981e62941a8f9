"""From what the board gathers to THE verdict's `Signals` and the first screen's `View`.

The `monitoring_board` asset reads the instance, the store and the server; this module turns
those plain values (no Dagster) into the inputs of `verdict.decide` and `board_view.View`, so the
rules and the pictures read the same numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from mlops_pipeline.monitoring.board_view import MIN_LABELS, View
from mlops_pipeline.monitoring.verdict import (
    DRIFT,
    ESTIMATED,
    METRIC_WORDS,
    REALIZED,
    SegmentSignal,
    Signals,
    decide,
    segment_words,
)

#: The serving target the board and the Prometheus alerts share (deploy/prometheus/rules/alerts.yml).
SLO_P99_MS = 50.0


@dataclass
class Gathered:
    """Everything the asset read, as plain values (see `monitoring_board._render`)."""

    spec: Any
    log: pd.DataFrame
    system: dict[str, Any]
    versions: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    quality: pd.DataFrame
    release: list[dict[str, Any]]
    champion: str = ""
    challenger: str = ""
    labeling: dict[str, Any] = field(default_factory=dict)
    #: day -> request ids of the labeling queue exports
    queued: dict[str, list[str]] = field(default_factory=dict)
    #: production_drift's `columns` records (column, score, threshold, drifted) and when it ran
    drift_columns: list[dict[str, Any]] = field(default_factory=list)
    drift_at: datetime | None = None
    #: estimated_performance's metadata (estimated_<m>, _lower, _upper, threshold_<m>, rows)
    estimate: dict[str, Any] = field(default_factory=dict)
    retrained_at: datetime | None = None
    retrain_promoted: bool | None = None
    #: the gate's segment comparison's records (segment, candidate, rows, verdict), worst first
    segments: list[dict[str, Any]] = field(default_factory=list)
    segment_metric: str = ""
    #: labelled production per segment (`segment_quality`'s records), realized like the gate's
    labelled_segments: list[dict[str, Any]] = field(default_factory=list)
    #: before labels: `estimated_segment_quality`'s records and the metric they estimate
    estimated_segments: list[dict[str, Any]] = field(default_factory=list)
    estimated_metric: str = ""
    #: production_drift's `segment_drift` records (segment, rows, drift_share, drifted_columns)
    segment_drift: list[dict[str, Any]] = field(default_factory=list)


def _estimate(g: Gathered) -> dict[str, Any]:
    """The first gate metric with an estimate: value, band, the gate's line, realized and labels."""
    from mlops_pipeline.training.metrics import GREATER_IS_BETTER

    for metric in g.spec.gate:
        if f"estimated_{metric}" not in g.estimate:
            continue
        e = g.estimate
        line = e.get(f"threshold_{metric}", e.get(f"floor_{metric}"))
        served = g.log[g.log["label"].notna()] if len(g.log) and "label" in g.log.columns else g.log
        realized = None
        if len(g.quality) and metric in g.quality.columns:
            realized = float(g.quality[metric].iloc[-1])
        return {"metric": metric, "estimated": float(e[f"estimated_{metric}"]),
                "lower": float(e[f"estimated_{metric}_lower"]),
                "upper": float(e[f"estimated_{metric}_upper"]),
                "line": None if line is None else float(line), "rows": e.get("rows"),
                "realized": realized, "labelled": len(served),
                "lower_is_better": not GREATER_IS_BETTER.get(metric, True)}
    return {}


def _guard_words(release: list[dict[str, Any]]) -> str:
    if not release:
        return ""
    failed = [v["check"] for v in release if v.get("status") == "fail"]
    waiting = [v for v in release if v.get("status") == "insufficient"]
    if failed:
        return "release guard: failing on " + ", ".join(failed)
    if waiting:
        v = waiting[0]
        return (f"release guard: gathering evidence ({v.get('check')}: {v.get('evidence')} of "
                f"{v.get('needed')})")
    return "release guard: every check passed"


def _labeling_file(g: Gathered) -> tuple[int, str]:
    from mlops_pipeline.monitoring.labeling import queue_file

    if not g.queued:
        return 0, ""
    waiting = int(g.labeling.get("queued items", 0)) - int(g.labeling.get("queued items labelled", 0))
    return waiting, queue_file(max(g.queued), "csv")


def _metric(name: str) -> str:
    return METRIC_WORDS.get(name, name.replace("_", " "))


def segment_signals(g: Gathered) -> list[SegmentSignal]:
    """Every segment a signal names as getting worse, with where it came from: the estimate's
    band wholly below the gate's floor (before labels), its own inputs drifted past the spec's
    drift share, or regressed on labels (the gate's holdout comparison, labelled production).
    Names in words (`verdict.segment_words`)."""
    def named(r: dict[str, Any], source: str, words: str) -> SegmentSignal:
        return SegmentSignal(segment_words(str(r["segment"])), source,
                             f"{words} ({int(r['rows']):,} rows)", int(r["rows"]))

    out = []
    for rows, where in ((g.segments, "against the champion on the holdout"),
                        (g.labelled_segments, "on labelled answers, below the gate's floor")):
        out += [named(r, REALIZED, f"{_metric(g.segment_metric)} {float(r['candidate']):.3f} {where}")
                for r in rows if r.get("verdict") == "regressed"]
    out += [named(r, ESTIMATED, f"{_metric(g.estimated_metric)} {float(r['candidate']):.3f}, its "
                  "whole band below the gate's floor")
            for r in g.estimated_segments if r.get("verdict") == "regressed"]
    out += [named(r, DRIFT, f"{float(r['drift_share']):.0%} of its input columns drifted")
            for r in g.segment_drift if r.get("drift_share") is not None
            and float(r["drift_share"]) > g.spec.drift.max_drift_share]
    return out


def signals(g: Gathered) -> Signals:
    """THE verdict's inputs from what the board gathered."""
    est = _estimate(g)
    waiting, file = _labeling_file(g)
    drifted = [str(c["column"]) for c in g.drift_columns if c.get("drifted")]
    champion = g.champion.split(" ")[0] if g.champion and g.champion != "none" else ""
    return Signals(
        model=g.spec.name, versions=g.versions, slo_p99_ms=SLO_P99_MS,
        error_rate=g.system.get("server_error_rate"),
        max_error_rate=g.spec.release.errors.max_error_rate,
        checks=g.checks, labels_waiting=max(waiting, 0), labeling_file=file,
        drifted_columns=drifted, columns_compared=len(g.drift_columns),
        max_drift_share=g.spec.drift.max_drift_share,
        estimate_metric=est.get("metric", ""), estimate=est.get("estimated"),
        estimate_floor=est.get("line"), lower_is_better=bool(est.get("lower_is_better")),
        drift_at=g.drift_at, retrained_at=g.retrained_at, retrain_promoted=g.retrain_promoted,
        champion_version=champion, served=int(g.system.get("served", 0)),
        segments=segment_signals(g),
    )


def _answers_by_day(g: Gathered) -> tuple[list[tuple[str, float]], str, str]:
    from mlops_pipeline.monitoring.predictions import served_rows
    from mlops_pipeline.monitoring.quality import score_column

    served = served_rows(g.log)
    if served.empty:
        return [], "", ""
    column = score_column(g.spec.task)
    days = served.groupby(pd.to_datetime(served["ts"], utc=True).dt.date)[column].mean()
    if g.spec.task == "classification":
        words = f"mean predicted chance of {g.spec.target.name.replace('_', ' ')}"
        return [(str(d), float(v) * 100) for d, v in days.items()], words, "%"
    return ([(str(d), float(v)) for d, v in days.items()],
            f"mean predicted {g.spec.target.name.replace('_', ' ')}", "")


def _why(check: dict[str, Any]) -> str:
    """A blocking batch check's description in words: the problem, without the count prefix, the
    batch's name (the panel names it) or the command (the verdict line has it)."""
    detail = str(check.get("detail", "")).split(" — ")[0]
    detail = re.sub(r"^\d+ problem\(s\): ", "", detail)
    detail = re.sub(r"batch \S+?(, |: )", "", detail)
    return f"{check['check'].removeprefix('batch_').replace('_', ' ')}: {detail}"


def view(g: Gathered) -> View:
    """The first screen's values, THE verdict first."""
    from mlops_pipeline.monitoring.board import per_minute

    inputs = signals(g)
    verdict = decide(inputs)
    minutes = per_minute(g.log)
    p99 = g.system.get("server_p99_ms", g.system.get("store_p99_ms"))
    error = g.system.get("server_error_rate")
    blocked = next(((c["batch"], _why(c)) for c in g.checks
                    if c.get("status") == "failed" and c.get("batch")), None)
    predictions, words, unit = _answers_by_day(g)
    drifted = sorted(((str(c["column"]), float(c["score"]), float(c["threshold"]))
                      for c in g.drift_columns), key=lambda r: -(r[1] / r[2] if r[2] else r[1]))
    cost = [(f"{r['version']} {r['role']}", float(r["usd_per_1k"])) for r in g.versions
            if r.get("usd_per_1k") is not None]
    # the bars: realized by segment (the gate's comparison), else the estimates before labels
    segments = [(segment_words(str(s["segment"])), metric, float(s["candidate"]), int(s["rows"]),
                 source)
                for rows, metric, source in ((g.segments, g.segment_metric, REALIZED),
                                             (g.estimated_segments, g.estimated_metric, ESTIMATED))
                for s in rows if s.get("candidate") is not None]
    segments = [s for s in segments if s[4] == segments[0][4]][:5] if segments else []
    return View(
        verdict=verdict, owner=g.spec.owner or "", runbook_url=g.spec.runbook_url or "",
        slo_ms=SLO_P99_MS, rps=[float(x) for x in minutes["requests_per_second"]],
        p99_series=[float(x) for x in minutes["p99_ms"]],
        p99_ms=None if p99 is None else float(p99),
        error_pct=None if error is None else float(error) * 100, served=int(g.system.get("served", 0)),
        predictions=predictions, answer_words=words or "mean answer", answer_unit=unit,
        quality=_estimate(g), drifted=drifted, columns_compared=len(g.drift_columns),
        segments=segments, named_segments=inputs.segments, champion=g.champion,
        challenger=g.challenger,
        guard=_guard_words(g.release), blocked=blocked,
        gates_checked=sum(1 for c in g.checks if str(c.get("check", "")).startswith("batch_")
                          and c.get("status") in ("passed", "failed")),
        cost=cost,
    )


__all__ = ["MIN_LABELS", "Gathered", "segment_signals", "signals", "view"]
