"""The board's first screen: THE verdict (`monitoring.verdict`) in one line, then at most eight
panels a person looks at rather than reads — traffic against the SLO, predictions over time,
estimated against realized quality, the most drifted inputs, the worst segments (when a
segment comparison left any or a signal names one, marked estimated, drift or realized), release
state, data gates and cost per 1,000 predictions.

Words instead of metric names, a unit on every number, the sample size beside every quality figure
("not enough labels" below `MIN_LABELS`). Pictures are inline SVG (nothing loads from anywhere).
`View` holds plain values gathered by the `monitoring_board` asset; everything here is pure.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from mlops_pipeline.monitoring.verdict import (
    ACT,
    METRIC_WORDS,
    OK,
    WATCH,
    SegmentSignal,
    Verdict,
)

#: Fewer labelled answers than this and realized quality is "not enough labels", not a number.
MIN_LABELS = 100

_COLORS = {OK: "#1a7f37", WATCH: "#b58100", ACT: "#c62828"}


@dataclass
class View:
    """Plain values for the first screen; a panel without data says so in words."""

    verdict: Verdict
    owner: str = ""
    runbook_url: str = ""
    slo_ms: float = 50.0
    #: Per minute: requests per second, and p99 latency in ms.
    rps: list[float] = field(default_factory=list)
    p99_series: list[float] = field(default_factory=list)
    p99_ms: float | None = None
    error_pct: float | None = None
    served: int = 0
    #: (day, mean answer) per day; `answer_words` names what the answer is ("chance of a delay").
    predictions: list[tuple[str, float]] = field(default_factory=list)
    answer_words: str = "mean answer"
    answer_unit: str = ""
    #: metric, estimated, lower, upper, realized, labelled, line (the gate's)
    quality: dict[str, Any] = field(default_factory=dict)
    #: (column, score, threshold) of the most drifted inputs, worst first
    drifted: list[tuple[str, float, float]] = field(default_factory=list)
    columns_compared: int = 0
    #: (segment, metric, value, rows, source), worst first: realized, or estimated before labels
    segments: list[tuple[str, str, float, int, str]] = field(default_factory=list)
    #: segments a signal names as getting worse, with its source; with `segments` both empty the
    #: panel is left out
    named_segments: list[SegmentSignal] = field(default_factory=list)
    champion: str = ""
    challenger: str = ""
    guard: str = ""
    #: the last blocked batch: batch, why; `gates_checked` batch checks seen
    blocked: tuple[str, str] | None = None
    gates_checked: int = 0
    #: (version and role, USD per 1,000 predictions)
    cost: list[tuple[str, float]] = field(default_factory=list)


def _e(x: Any) -> str:
    return html.escape(str(x))


def sparkline(values: list[float], width: int = 300, height: int = 70, line: float | None = None,
              color: str = "#1f6feb", label: str = "") -> str:
    """A line of `values` (oldest left) with an optional dashed `line` (a target) across it."""
    if not values:
        return "<p class='none'>no data yet</p>"
    if len(values) == 1:  # one minute (or day) so far: a flat line at its level, still a picture
        values = [values[0], values[0]]
    top = max([*values, line or 0.0]) * 1.15 or 1.0
    n = max(len(values) - 1, 1)
    pts = " ".join(f"{i * width / n:.1f},{height - v / top * height:.1f}" for i, v in enumerate(values))
    dash = (f"<line x1='0' x2='{width}' y1='{height - line / top * height:.1f}' "
            f"y2='{height - line / top * height:.1f}' stroke='#c62828' stroke-dasharray='4 3'/>"
            if line else "")
    return (f"<svg width='{width}' height='{height}' role='img' aria-label='{_e(label)}'>"
            f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{pts}'/>{dash}</svg>")


def bars(rows: list[tuple[str, float, str]], width: int = 300, limit: float | None = None,
         stacked: bool = False) -> str:
    """Horizontal bars: (label, value, value as words); a dashed `limit` line when given.
    `stacked`: each label on its own line above its bar (labels too long to sit beside it)."""
    if not rows:
        return "<p class='none'>no data yet</p>"
    top = max([*(v for _, v, _ in rows), limit or 0.0]) * 1.1 or 1.0
    h, out = (36, []) if stacked else (22, [])
    x0, room, dy = (0, width - 160, 14) if stacked else (110, width - 190, 0)
    for i, (label, value, words) in enumerate(rows):
        w = max(value / top * room, 1)
        color = "#c62828" if limit is not None and value > limit else "#1f6feb"
        out.append(f"<text x='0' y='{i * h + 15}' font-size='12'>{_e(label)}</text>"
                   f"<rect x='{x0}' y='{i * h + 4 + dy}' width='{w:.1f}' height='14' fill='{color}'/>"
                   f"<text x='{x0 + 4 + w:.1f}' y='{i * h + 15 + dy}' font-size='11'>{_e(words)}</text>")
    if limit is not None:
        x = 110 + limit / top * (width - 190)
        out.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='0' y2='{len(rows) * h}' stroke='#c62828' "
                   "stroke-dasharray='4 3'/>")
    return f"<svg width='{width + 60}' height='{len(rows) * h + 4}'>{''.join(out)}</svg>"


def band(est: float, lower: float, upper: float, realized: float | None, line: float | None,
         width: int = 300) -> str:
    """The estimate as a dot on its band, the realized value as a diamond, the gate's line dashed."""
    vals = [v for v in (est, lower, upper, realized, line) if v is not None]
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.2 or 0.05
    lo, hi = lo - pad, hi + pad
    x = lambda v: 10 + (v - lo) / (hi - lo) * (width - 20)  # noqa: E731
    parts = [f"<rect x='{x(lower):.1f}' y='18' width='{max(x(upper) - x(lower), 2):.1f}' height='14' "
             "fill='#9ec5fe'/>", f"<circle cx='{x(est):.1f}' cy='25' r='5' fill='#1f6feb'/>"]
    if realized is not None:
        parts.append(f"<rect x='{x(realized) - 5:.1f}' y='20' width='10' height='10' fill='#1a7f37' "
                     f"transform='rotate(45 {x(realized):.1f} 25)'/>")
    if line is not None:
        parts.append(f"<line x1='{x(line):.1f}' x2='{x(line):.1f}' y1='8' y2='42' stroke='#c62828' "
                     "stroke-dasharray='4 3'/>")
    return f"<svg width='{width}' height='50'>{''.join(parts)}</svg>"


def _num(v: float, digits: int = 3) -> str:
    return f"{v:.{digits}f}"


def _panel(title: str, body: str, note: str = "") -> str:
    return (f"<section class='panel'><h3>{_e(title)}</h3>{body}"
            + (f"<p class='note'>{note}</p>" if note else "") + "</section>")


def traffic_panel(v: View) -> str:
    rps = f"{v.rps[-1]:.2f} requests per second now" if v.rps else "no requests yet"
    err = "errors unknown" if v.error_pct is None else f"{v.error_pct:.2f}% of calls failed"
    p99 = ("p99 unknown" if v.p99_ms is None
           else f"p99 {v.p99_ms:.1f} ms against a {v.slo_ms:.0f} ms target")
    body = (sparkline(v.p99_series, line=v.slo_ms, label="slowest 1% per minute, ms")
            + "<p class='cap'>slowest 1% of requests per minute (ms); dashed: the target</p>"
            + sparkline(v.rps, height=40, color="#6e7781", label="requests per second"))
    return _panel("Traffic, errors and latency", body,
                  f"{_e(rps)} · {_e(err)} · {_e(p99)} · {v.served:,} answers in the window")


def predictions_panel(v: View) -> str:
    if not v.predictions:
        return _panel("Predictions over time", "<p class='none'>no answers served yet</p>")
    last_day, last = v.predictions[-1]
    body = sparkline([p for _, p in v.predictions], label=v.answer_words)
    return _panel("Predictions over time", body + f"<p class='cap'>{_e(v.answer_words)} per day</p>",
                  f"{_e(last_day)}: {_e(v.answer_words)} {_num(last, 1 if v.answer_unit else 3)}"
                  f"{_e(v.answer_unit)} "
                  f"over {len(v.predictions)} day(s)")


def quality_panel(v: View) -> str:
    q = v.quality
    if not q or q.get("estimated") is None:
        return _panel("Quality: estimated and realized", "<p class='none'>no estimate yet "
                      "(the champion has not served a day of traffic)</p>")
    name = METRIC_WORDS.get(q["metric"], q["metric"].replace("_", " "))
    n = int(q.get("labelled") or 0)
    realized = q.get("realized") if n >= MIN_LABELS else None
    real = (f"realized {_num(realized)} from {n:,} labels" if realized is not None
            else f"not enough labels ({n:,} of {MIN_LABELS} needed)")
    body = band(q["estimated"], q["lower"], q["upper"], realized, q.get("line"))
    rows = q.get("rows")
    est = (f"estimated {_num(q['estimated'])} (band {_num(q['lower'])} to {_num(q['upper'])})"
           + (f" from {int(rows):,} answers" if rows else ""))
    line = f" · gate line {_num(q['line'])}" if q.get("line") is not None else ""
    return _panel(f"Quality: {name}", body + "<p class='cap'>dot: estimate and band · diamond: "
                  "realized · dashed: the gate's line</p>", _e(est + " · " + real + line))


def drift_panel(v: View) -> str:
    if not v.drifted:
        return _panel("Most drifted inputs", "<p class='none'>no production drift measured yet</p>")
    rows = [(c, s / t if t else s, f"{s / t:.1f}x its limit" if t else f"{s:.2f}")
            for c, s, t in v.drifted[:5]]
    over = sum(1 for _, s, t in v.drifted if t and s > t)
    of = f" of {v.columns_compared}" if v.columns_compared else ""
    return _panel("Most drifted inputs", bars(rows, limit=1.0),
                  f"{over}{of} input columns past their drift limit (dashed: the limit)")


def segments_panel(v: View) -> str:
    """The segments named as getting worse, each with where that came from (estimated before
    labels, its inputs' drift, realized on labels), then the metric by segment, worst first."""
    named: dict[str, list[SegmentSignal]] = {}
    for x in v.named_segments:
        named.setdefault(x.segment, []).append(x)
    lines = "".join(
        f"<p class='seg'><b>{_e(seg)}</b> " + " ".join(
            f"<span class='src' data-source='{_e(x.source)}'>{_e(x.source)}</span> {_e(x.words)}"
            for x in said) + "</p>" for seg, said in list(named.items())[:2])
    shown = 3 - min(len(named), 1)  # the panel keeps its height: fewer bars under named segments
    rows = [(s, val, f"{_num(val)} {src} ({n:,} rows)") for s, _, val, n, src in v.segments[:shown]]
    metric = METRIC_WORDS.get(v.segments[0][1], v.segments[0][1]) if v.segments else ""
    note = (f"{_e(metric)} by segment ({_e(v.segments[0][4])}), worst first" if v.segments
            else "no per-segment figures yet")
    return _panel("Worst segments", lines + (bars(rows, stacked=True) if rows else ""), note)


def release_panel(v: View) -> str:
    lines = [f"<div class='big'>champion {_e(v.champion or 'none')}</div>",
             f"<p>challenger: {_e(v.challenger or 'none')}</p>"]
    return _panel("Release", "".join(lines), _e(v.guard or "no release analysis yet"))


def gates_panel(v: View) -> str:
    if v.blocked:
        batch, why = v.blocked
        body = f"<div class='big bad'>blocked</div><p>by batch <b>{_e(batch)}</b></p>"
        return _panel("Data gates", body, _e(why))
    if not v.gates_checked:
        return _panel("Data gates", "<p class='none'>no batch checked yet</p>")
    return _panel("Data gates", "<div class='big ok'>open</div>",
                  f"all {v.gates_checked} batch checks passed on the last snapshot")


def cost_panel(v: View) -> str:
    rows = [(label, usd, f"${usd:.5f}") for label, usd in v.cost]
    return _panel("Cost per 1,000 predictions", bars(rows), "US dollars of CPU time per 1,000 answers")


def panels(v: View) -> list[str]:
    """The panels in reading order (at most eight; segments only when there are any)."""
    out = [traffic_panel(v), predictions_panel(v), quality_panel(v), drift_panel(v)]
    if v.segments or v.named_segments:
        out.append(segments_panel(v))
    return [*out, release_panel(v), gates_panel(v), cost_panel(v)]


def verdict_line(v: View) -> str:
    """The one line: the level, the words, the command to copy, and who is paged."""
    level = v.verdict.level
    command = (f"<div class='cmd'>→ <code>{_e(v.verdict.command)}</code></div>"
               if v.verdict.command else "")
    owner = (f"<div class='owner'>owner: {_e(v.owner)}"
             + (f" · <a href='{_e(v.runbook_url)}'>runbook</a>" if v.runbook_url else "")
             + "</div>") if v.owner else ""
    return (f"<div id='verdict' class='verdict' data-level='{level}' style='border-color:"
            f"{_COLORS[level]}'><span class='level' style='background:{_COLORS[level]}'>{level}</span>"
            f" <span class='words'>{_e(v.verdict.words)}</span>{command}{owner}</div>")


STYLE = """.verdict{border:3px solid;border-radius:6px;padding:10px 14px;margin:8px 0 12px;font-size:18px}
.level{color:#fff;font-weight:bold;padding:2px 10px;border-radius:4px}
.cmd{margin-top:6px;font-size:15px}.cmd code{background:#f3f3f3;padding:2px 6px}
.owner{font-size:13px;color:#555;margin-top:4px}
#first{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}
.panel{border:1px solid #ddd;border-radius:6px;padding:6px 10px;min-height:150px;overflow:hidden}
.panel h3{margin:2px 0 6px;font-size:15px}.note,.cap{font-size:12px;color:#444;margin:4px 0}
.src{font-size:11px;background:#eee;border-radius:3px;padding:0 4px}.seg{font-size:12px;margin:2px 0}
.none{color:#777}.big{font-size:22px;font-weight:bold}.big.bad{color:#c62828}.big.ok{color:#1a7f37}
details{margin:6px 0}summary{cursor:pointer;font-weight:bold;font-size:15px}"""


def first_screen(v: View) -> str:
    """The verdict line and the panels: what fits on one 1400x900 screen."""
    return f"{verdict_line(v)}<main id='first'>{''.join(panels(v))}</main>"
