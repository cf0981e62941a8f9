"""Saying what a run of the loop did: one line per step as it ends (duration, outcome, each check's
verdict), then a summary: the candidate's holdout metrics next to the champion's, and the decision.
Dagster's own event stream (a DEBUG line per event, hundreds per run) is shown only with `--verbose`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepLine:
    """One printed line of a run's progress (`StepPrinter`): duration, outcome, step or check, detail."""

    seconds: float | None
    outcome: str
    name: str
    detail: str = ""


def _fmt_seconds(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.1f}s"


@dataclass
class StepPrinter:
    """Event listener: one line per materialized asset or evaluated check, when its step ends.

    Passing checks of one step are folded into one line (a step may run a dozen); every failed or
    warning check gets its own. Warnings the run's code logs are printed as they come.
    """

    say: Callable[[str], None] = print
    lines: list[StepLine] = field(default_factory=list)
    _pending: dict[str, list[StepLine]] = field(default_factory=dict)
    _shown: set = field(default_factory=set)  # (key, value) pairs already printed once

    def __call__(self, entry) -> None:
        event = entry.get_dagster_event() if entry.is_dagster_event else None
        if event is None:
            self._log_message(entry)
            return
        if event.step_key is None:
            return
        pending = self._pending.setdefault(event.step_key, [])
        kind = event.event_type_value
        data = event.event_specific_data
        if kind == "ASSET_MATERIALIZATION":
            mat = data.materialization
            detail = _asset_detail(mat.metadata, self._shown)
            pending.append(StepLine(None, "ok", mat.asset_key.to_user_string(), detail))
        elif kind == "ASSET_CHECK_EVALUATION":
            outcome = "passed" if data.passed else ("FAILED" if data.severity.value == "ERROR" else "warn")
            name = f"{data.asset_key.to_user_string()}:{data.check_name}"
            pending.append(StepLine(None, outcome, name, data.description or ""))
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            seconds = getattr(data, "duration_ms", None)
            lines = self._fold(self._pending.pop(event.step_key, []))
            if kind == "STEP_FAILURE":
                message = error_summary(getattr(data, "error", None))
                if "blocking asset checks failed" in message:
                    lines.append(StepLine(None, "blocked", event.step_key, "downstream steps do not run"))
                else:
                    lines.append(StepLine(None, "ERROR", event.step_key,
                                          f"{message} (--verbose shows the stack trace)"))
            elif kind == "STEP_SKIPPED":
                lines.append(StepLine(None, "skipped", event.step_key))
            if not lines:
                lines.append(StepLine(None, "ok", event.step_key))
            lines[0].seconds = None if seconds is None else seconds / 1000
            for line in lines:
                self._emit(line)

    def _log_message(self, entry) -> None:
        if entry.level < logging.WARNING:
            return
        message = (entry.user_message or "").strip()
        if message.startswith("Dependencies for step"):
            self._emit(StepLine(None, "not run", entry.step_key or "?", "an upstream step failed or "
                                "a blocking check failed"))
        elif message:
            self._emit(StepLine(None, "warning", entry.step_key or "run", message.splitlines()[0]))

    @staticmethod
    def _fold(lines: list[StepLine]) -> list[StepLine]:
        passed = [line for line in lines if line.outcome == "passed"]
        if len(passed) <= 3:
            return lines
        asset = passed[0].name.split(":")[0]
        names = ", ".join(line.name.split(":", 1)[1] for line in passed)
        folded = StepLine(None, "passed", f"{asset}: {len(passed)} checks", names)
        return [line for line in lines if line.outcome != "passed"] + [folded]

    def _emit(self, line: StepLine) -> None:
        self.lines.append(line)
        folded = line.outcome == "passed" and ": " in line.name
        limit = 400 if folded else 220 if line.outcome == "ERROR" else 100
        detail = line.detail if len(line.detail) <= limit else line.detail[: limit - 3] + "..."
        self.say(f"  {_fmt_seconds(line.seconds):>6}  {line.outcome:<7} {line.name:<40} {detail}".rstrip())


def error_summary(error) -> str:
    """The first line of the error that started it all (Dagster wraps a step's exception in its
    own `DagsterExecutionStepExecutionError`, whose first line names only the op)."""
    if error is None:
        return ""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    message = (error.message or "").strip()
    cls = getattr(error, "cls_name", "") or ""
    if cls in SELF_EXPLAINING_ERRORS:  # already names file, field and fix: not the class too
        message = re.sub(rf"^(?:[\w.]+\.)?{cls}: ", "", message)
    return first_line(message) or cls


#: Our errors whose text is the whole story (a config's one line): shown without the class name.
SELF_EXPLAINING_ERRORS = ("ConfigError", "ColumnsError")


def first_line(text: str) -> str:
    """The first line of `text`, with the lines it introduces when it ends in a colon (e.g. "data
    violates the contract 'x':" and its findings): never a dangling colon."""
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if not lines[0].endswith(":"):
        return lines[0]
    rest = lines[1:]
    return (f"{lines[0]} {'; '.join(rest)}" if rest else lines[0].rstrip(":")).strip()


def _asset_detail(metadata: dict[str, Any], shown: set) -> str:
    """A few words about a materialization, from its metadata (a value printed before is not
    repeated: every asset carries the snapshot id)."""
    parts = []
    for key in ("snapshot_id", "dagster/row_count", "version", "champion_version", "previous_champion",
                "drift_share"):
        if key in metadata:
            value = getattr(metadata[key], "value", metadata[key])
            if isinstance(value, float):
                value = f"{value:.2f}"
            elif key == "snapshot_id":
                value = str(value)[:12]
            if (key, value) in shown:
                continue
            shown.add((key, value))
            parts.append(f"{key.removeprefix('dagster/')} {value}")
    return ", ".join(parts[:3])



# ---- the summary --------------------------------------------------------------------------------
@dataclass
class RunSummary:
    """`summarize`'s answer: `ok` (the run succeeded and no ERROR check failed), the decision, the lines."""

    ok: bool
    decision: str
    lines: list[str]


def summarize(result, champion_lookup: Callable[[], str | None] | None = None) -> RunSummary:
    """The candidate's holdout metrics next to the champion's, and what the run decided.

    `champion_lookup` answers the registry's champion version (None: there is none) when the run
    stopped before it could say (a data check blocked it), so the decision names the champion that
    stays rather than "no champion"."""
    evaluations = list(result.get_asset_check_evaluations())
    blocking = [e for e in evaluations if not e.passed and e.severity.value == "ERROR"]
    warned = [e for e in evaluations if not e.passed and e.severity.value != "ERROR"]

    def metadata(node: str) -> dict[str, Any]:
        try:
            mats = result.asset_materializations_for_node(node)
        except Exception:  # noqa: BLE001 - the node did not run
            return {}
        return {k: getattr(v, "value", v) for k, v in mats[0].metadata.items()} if mats else {}

    candidate = metadata("model_version")
    champion = metadata("champion_model")
    lines: list[str] = []
    version = candidate.get("version")
    prior = candidate.get("champion_version", "none")
    metrics = sorted(k.removeprefix("candidate_") for k in candidate if k.startswith("candidate_"))
    if metrics:
        head_c = f"candidate v{version}"
        head_p = "champion" + (f" v{prior}" if prior != "none" else " (none yet)")
        lines.append(f"{'holdout metric':<16} {head_c:>14} {head_p:>18}")
        for m in metrics:
            theirs = candidate.get(f"champion_{m}")
            lines.append(f"{m:<16} {candidate[f'candidate_{m}']:>14.4f} "
                         f"{'-' if theirs is None else f'{theirs:.4f}':>18}")
    if prior == "none" and (blocking or not result.success) and champion_lookup is not None:
        prior = champion_lookup() or "none"
    if blocking:
        first = blocking[0]
        name = f"{first.asset_key.to_user_string()}:{first.check_name}"
        kept = f"kept champion v{prior}" if prior != "none" else "no champion"
        why = first_line(first.description or "")
        decision = f"blocked by check {name} ({kept})" + (f": {why}" if why else "")
    elif champion:
        moved = champion.get("previous_champion", "none")
        decision = (f"promoted v{champion.get('champion_version')} to champion"
                    + (f" (previous champion v{moved})" if moved not in ("none", None) else ""))
    elif not result.success:
        failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        decision = f"run failed at step {', '.join(failed) or '?'}" + (
            f"; kept champion v{prior}" if prior != "none" else "")
    else:
        decision = f"kept champion v{prior}" if prior != "none" else "no model promoted"
    lines.append(f"decision: {decision}")
    if blocking:
        lines += [f"next: {hint}" for hint in _batch_hints(blocking)]
    for e in warned:
        why = first_line(e.description or "")
        lines.append(f"warning: {e.asset_key.to_user_string()}:{e.check_name}" + (f": {why}" if why else ""))
    lines.append(f"dagster run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    return RunSummary(ok=result.success and not blocking, decision=decision, lines=lines)


def _batch_hints(blocking: list) -> list[str]:
    """For each landed batch a blocking per-batch check names (`failing_batches`), the command
    that sets it aside so the next run proceeds (`data.quarantine`)."""
    from mlops_pipeline.data.quarantine import quarantine_hint

    names: list[str] = []
    for e in blocking:
        if e.asset_key.to_user_string() != "dataset_snapshot" or not e.check_name.startswith("batch_"):
            continue
        failing = (e.metadata or {}).get("failing_batches")
        text = str(getattr(failing, "value", failing) or "")
        names += [n.strip() for n in text.split(",") if n.strip() and n.strip() not in names]
    return [quarantine_hint(n) for n in names]


def print_summary(result, say: Callable[[str], None] = print,
                  champion_lookup: Callable[[], str | None] | None = None) -> bool:
    """Print the summary (`summarize`); True when the run succeeded and no ERROR-severity check
    failed."""
    summary = summarize(result, champion_lookup)
    say("")
    for line in summary.lines:
        say(line)
    return summary.ok

