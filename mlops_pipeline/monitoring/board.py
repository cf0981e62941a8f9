"""The one page on-call opens at 3 a.m.: system, data, model, and who is champion.

Plain functions turn the prediction store, the serving process's Prometheus metrics, the latest
check results and the registry into numbers and plotly figures; `render_board` writes one
self-contained HTML file (plotly.js inlined: the board opens without network access).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops_pipeline.monitoring.predictions import served_rows


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' `histogram_quantile`: linear interpolation inside the cumulative bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            width = count - prev_count
            return prev_bound + (bound - prev_bound) * ((rank - prev_count) / width if width else 0.0)
        prev_bound, prev_count = bound, count
    return prev_bound


def parse_serving_metrics(text: str) -> dict[str, Any]:
    """Latency quantiles, request and error totals from the serving process's `/metrics`."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[float, float] = {}
    requests = 0.0
    errors: dict[str, float] = {}
    registry_up = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mlops_request_latency_seconds_bucket" and sample.labels.get(
                "endpoint", "predict"
            ) == "predict":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == "mlops_predict_requests_total":
                requests += sample.value
            elif sample.name == "mlops_errors_total" and sample.value:  # kinds that happened
                errors[sample.labels.get("kind", "?")] = sample.value
            elif sample.name == "mlops_registry_reachable":
                registry_up = bool(sample.value)
    pairs = list(buckets.items())
    out: dict[str, Any] = {
        f"p{int(q * 100)}_ms": (v * 1000 if (v := histogram_quantile(q, pairs)) is not None else None)
        for q in (0.5, 0.95, 0.99)
    }
    total_errors = sum(errors.values())
    out.update({
        "requests": requests,
        "errors": errors,
        "error_rate": total_errors / (requests + total_errors) if requests + total_errors else 0.0,
        "registry_reachable": registry_up,
    })
    return out


#: Per (model_version, role) counters of the serving process's cost accounting (serving/metrics.py).
_COST_SAMPLES = {
    "mlops_scored_records_total": "predictions",
    "mlops_scoring_cpu_seconds_total": "cpu_seconds",
    "mlops_scoring_wall_seconds_total": "wall_seconds",
    "mlops_scoring_cost_usd_total": "cost_usd",
}


def serving_by_version(text: str) -> list[dict[str, Any]]:
    """One row per model version and role from the serving process's `/metrics`: records scored,
    p50/p95/p99 latency (receipt to prediction), CPU seconds and USD per 1,000 predictions — the
    cost next to the latency, by version, as on-call compares a canary with the champion. Counters
    are summed over worker processes (multiprocess mode exposes one sample per label set)."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[tuple[str, str], dict[str, float]] = {}
    buckets: dict[tuple[str, str], dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if "model_version" not in labels:
                continue
            key = (labels["model_version"], labels.get("role", ""))
            if sample.name in _COST_SAMPLES:
                row = totals.setdefault(key, {})
                name = _COST_SAMPLES[sample.name]
                row[name] = row.get(name, 0.0) + sample.value
            elif sample.name == "mlops_scoring_latency_seconds_bucket":
                bound = float(labels["le"])
                per = buckets.setdefault(key, {})
                per[bound] = per.get(bound, 0.0) + sample.value
    rows = []
    for key in sorted(set(totals) | set(buckets), key=lambda k: (_version_order(k[0]), k[1])):
        t = totals.get(key, {})
        n = t.get("predictions", 0.0)
        pairs = list(buckets.get(key, {}).items())
        row: dict[str, Any] = {"version": f"v{key[0]}", "role": key[1], "predictions": int(n)}
        for q in (0.5, 0.95, 0.99):
            v = histogram_quantile(q, pairs)
            row[f"p{int(q * 100)}_ms"] = None if v is None else v * 1000
        row["cpu_s_per_1k"] = t["cpu_seconds"] * 1000 / n if n and "cpu_seconds" in t else None
        row["usd_per_1k"] = t["cost_usd"] * 1000 / n if n and "cost_usd" in t else None
        rows.append(row)
    return rows


def store_by_version(log: pd.DataFrame) -> list[dict[str, Any]]:
    """`serving_by_version`'s latency rows from the prediction store instead of `/metrics` (when no
    server answers): per model version and role, the requests captured and their p50/p95/p99
    (receipt to prediction, as the server's histogram measures it). No cost: the store has none."""
    if log.empty or "role" not in log.columns:
        return []
    requests = request_rows(log)
    rows = []
    for (version, role), group in requests.groupby(["model_version", "role"]):
        row: dict[str, Any] = {"version": f"v{version}", "role": role, "predictions": len(group)}
        row.update({f"p{q}_ms": float(np.percentile(group["latency_ms"], q)) for q in (50, 95, 99)})
        rows.append(row)
    return sorted(rows, key=lambda r: (_version_order(r["version"][1:]), r["role"]))


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 30, version)


def request_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per request (and role) of captured rows: the store keeps a row per record and repeats
    its request's `ts` and `latency_ms` on each, so figures of requests (latency percentiles, QPS)
    are taken over these, never over records (one 1,000-record request would be 1,000 samples).
    Rows without a `batch_id` (the request) each count as a request of their own."""
    if rows.empty or "batch_id" not in rows.columns:
        return rows
    keys = ["batch_id", "role"] if "role" in rows.columns else ["batch_id"]
    return rows.drop_duplicates(keys)


def traffic_summary(log: pd.DataFrame, score_column: str) -> dict[str, Any]:
    """Latency percentiles and QPS per request, records per second, and the prediction mix from
    captured predictions (`served`: records answered; `requests`: the requests that carried them).

    `score_column` is `probability` for a classifier (the positive class's for binary, the
    predicted class's for multi-class) and `prediction` for regression."""
    served = served_rows(log)
    if served.empty:
        return {"served": 0, "requests": 0}
    requests = request_rows(served)
    ts = pd.to_datetime(served["ts"], utc=True)
    span = max((ts.max() - ts.min()).total_seconds(), 1.0)
    return {
        "served": len(served),
        "requests": len(requests),
        "qps": len(requests) / span,
        "records_per_second": len(served) / span,
        **{f"store_p{q}_ms": float(np.percentile(requests["latency_ms"], q)) for q in (50, 95, 99)},
        "mean_prediction": float(served[score_column].mean()),
        "by_version": served.groupby("model_version").size().astype(int).to_dict(),
        # a classifier's answers per class (its `score_column` is a probability)
        **({"by_class": served["prediction"].astype(str).value_counts().astype(int).to_dict()}
           if score_column == "probability" and "prediction" in served.columns else {}),
    }


@dataclass
class Board:
    """Everything one board page shows, gathered by the `monitoring_board` asset."""

    title: str
    system: dict[str, Any]
    data: list[dict[str, Any]]
    drift: dict[str, Any]
    model: dict[str, Any]
    figures: list[Any] = field(default_factory=list)
    #: The latest `challenger_analysis` verdicts (check, verdict, value, threshold, evidence, detail).
    release: list[dict[str, Any]] = field(default_factory=list)
    #: `serving_by_version` rows: latency and cost per 1,000 predictions by version and role.
    versions: list[dict[str, Any]] = field(default_factory=list)
    #: `labeling_summary`: the labeling queue's size and how many of its items got labels.
    labeling: dict[str, Any] = field(default_factory=dict)
    #: The first screen (`board_view.View`): THE verdict and the panels; None renders the details only.
    view: Any = None


def labeling_summary(log: pd.DataFrame, queued: dict[str, list[str]]) -> dict[str, Any]:
    """The labeling queue over the board's window: items queued (`queued`: day -> request ids),
    how many have a label by now (in `log`), and the share; the latest day's the same way."""
    if not queued:
        return {}
    labelled = set(log.loc[log["label"].notna(), "request_id"]) if len(log) else set()
    ids = {r for day in queued.values() for r in day}
    done = len(ids & labelled)
    last = max(queued)
    out = {"queued items": len(ids), "queued items labelled": done,
           "labelled share": done / len(ids) if ids else None,
           f"queue {last}": len(queued[last]),
           f"queue {last} labelled": len(set(queued[last]) & labelled)}
    return out


def per_minute(log: pd.DataFrame) -> pd.DataFrame:
    """Served traffic per minute: p99 latency and requests per second over requests
    (`request_rows`), records per second over records; indexed by the minute (UTC)."""
    served = served_rows(log)
    if served.empty:
        return pd.DataFrame(columns=["p99_ms", "requests_per_second", "records_per_second"])
    minute = lambda df: pd.to_datetime(df["ts"], utc=True).dt.floor("min")  # noqa: E731
    requests = request_rows(served)
    by_request = requests.groupby(minute(requests))
    return pd.DataFrame({
        "p99_ms": by_request["latency_ms"].quantile(0.99),
        "requests_per_second": by_request.size() / 60.0,
        "records_per_second": served.groupby(minute(served)).size() / 60.0,
    })


def figures_for(log: pd.DataFrame, score_column: str, quality: pd.DataFrame | None) -> list[Any]:
    """The board's plotly figures: p99 latency and requests per second per minute (per request),
    records per second beside them, the score's distribution per day (served answers only), and
    `quality.daily_quality` over time."""
    import plotly.graph_objects as go

    figs = []
    served = served_rows(log)
    if len(served):
        ts = pd.to_datetime(served["ts"], utc=True)
        minutes = per_minute(served)
        figs.append(go.Figure(go.Scatter(x=minutes.index, y=minutes["p99_ms"], mode="lines+markers"),
                              layout={"title": "p99 latency per minute, per request (ms)", "height": 300}))
        figs.append(go.Figure(go.Bar(x=minutes.index, y=minutes["requests_per_second"]),
                              layout={"title": "Requests per second (per-minute average)", "height": 300}))
        figs.append(go.Figure(go.Bar(x=minutes.index, y=minutes["records_per_second"]),
                              layout={"title": "Records per second (per-minute average)", "height": 300}))
        by_day = served.assign(day=ts.dt.date)
        figs.append(go.Figure(
            [go.Box(x=by_day["day"].astype(str), y=by_day[score_column], name="prediction")],
            layout={"title": "Prediction distribution by day", "height": 300},
        ))
    if quality is not None and len(quality):
        figs.append(go.Figure(
            [go.Scatter(x=quality["day"].astype(str), y=quality[c], mode="lines+markers", name=c)
             for c in quality.columns if c != "day"],
            layout={"title": "Quality on labelled production traffic", "height": 300},
        ))
    return figs


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td class='{_cls(r, c)}'>{html.escape(_fmt(r[c]))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cls(row: dict[str, Any], col: str) -> str:
    if col == "passed":
        return "ok" if row[col] else ("warn" if row.get("severity") == "WARN" else "bad")
    if col == "verdict":  # a release check: pass, fail, insufficient (evidence), n/a
        return {"pass": "ok", "fail": "bad", "insufficient": "warn"}.get(row[col], "")
    if col == "status":  # a check's state: passed, failed, not run (planned, never evaluated), ...
        if row[col] == "failed":
            return "warn" if row.get("severity") == "WARN" else "bad"
        return {"passed": "ok", "not run": "warn"}.get(row[col], "")
    return ""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "—" if v is None else str(v)


def release_panel(verdicts: list[dict[str, Any]]) -> str:
    """The challenger's release verdicts as a table (empty when no analysis ran yet)."""
    if not verdicts:
        return ""
    rows = [{"check": v.get("check"), "verdict": v.get("status"), "value": v.get("value"),
             "threshold": v.get("threshold"), "evidence": f"{v.get('evidence')}/{v.get('needed')}",
             "detail": v.get("detail")} for v in verdicts]
    return f"<h2>Release (challenger on live traffic)</h2>{_table(rows)}"


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>{body}</details>" if body else ""


def render_board(board: Board) -> str:
    """The board as one self-contained HTML page: THE verdict and the panels first
    (`board_view.first_screen`), then every table and check behind one "details" per area
    (plotly.js inlined once: it opens offline)."""
    from mlops_pipeline.monitoring.board_view import STYLE, first_screen

    figs = "".join(
        fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(board.figures)
    )
    kv = lambda d: _table([{"metric": k, "value": v} for k, v in d.items()])  # noqa: E731
    title = html.escape(board.title)
    labeling = f"<h2>Labeling queue</h2>{kv(board.labeling)}" if board.labeling else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:10px 16px;max-width:1370px}}h1{{font-size:20px;margin:4px 0}}
table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}}.ok{{background:#dfd}}.bad{{background:#fcc}}
.warn{{background:#ffd}}h2{{border-bottom:2px solid #333}}{STYLE}</style></head><body>
<h1>{title}</h1>
{first_screen(board.view) if board.view is not None else ""}
<div id="details">
{_details("Details: model and labels", f"<h2>Model</h2>{kv(board.model)}{labeling}")}
{_details("Details: release", release_panel(board.release))}
{_details("Details: serving", f"<h2>System</h2>{kv(board.system)}<h2>Serving by version (latency, "
          f"cost per 1,000 predictions)</h2>{_table(board.versions)}")}
{_details("Details: data checks", f"<h2>Data</h2>{_table(board.data)}")}
{_details("Details: drift", f"<h2>Drift</h2>{kv(board.drift)}")}
{_details("Details: over time", f"<h2>Over time</h2>{figs or '<p>no traffic captured yet</p>'}")}
</div>
</body></html>"""
