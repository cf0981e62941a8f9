"""Which served predictions a human should label first, and labels coming back from people.

Labels are scarce when they come from people (fraud review, churn calls, a second opinion on a
credit file): a team can label a few hundred records a day, not the day's traffic. The records that
teach the most are the ones the champion was least sure of and the ones where the shadow challenger
answered differently (a label there decides between the two models). `select_queue` picks those
from one day of captured traffic; `queue_csv` / `label_studio_tasks` export them; `read_labels`
and `import_labels` bring the labels back through the same validation as `POST /feedback` and the
store's idempotent `set_label`.

No Dagster here: the `labeling_queue` asset and `mlops-pipeline labels import` are thin wrappers.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_pipeline.data.preparation import feedback_label
from mlops_pipeline.deployment.tags import SHADOW
from mlops_pipeline.monitoring.predictions import served_rows

#: Columns of the queue before the features (the features follow, in the log's order).
QUEUE_COLUMNS = ["request_id", "ts", "model_version", "key", "reason", "prediction",
                 "shadow_prediction", "uncertainty", "margin", "entropy", "estimated_loss"]
#: Columns of a captured log that are not features.
_LOG_COLUMNS = {"request_id", "role", "ts", "batch_id", "model_name", "model_version", "features",
                "prediction", "probability", "latency_ms", "label", "label_ts", "probabilities",
                "record"}
LEAST_CONFIDENT = "least_confident"
SHADOW_DISAGREEMENT = "shadow_disagreement"
#: Regression: a shadow answer disagrees when it is this many standard deviations of the day's
#: champion predictions away from the champion's.
REGRESSION_DISAGREEMENT_SD = 0.1


def confidence_scores(probabilities: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(margin, entropy) of each record's {class: probability}: margin is the top probability less
    the runner-up's (small = unsure), entropy in nats (large = unsure). NaN where none was logged."""
    margin = np.full(len(probabilities), np.nan)
    entropy = np.full(len(probabilities), np.nan)
    for i, d in enumerate(probabilities):
        if not isinstance(d, dict) or not d:
            continue
        p = np.sort(np.clip(np.asarray(list(d.values()), dtype=float), 0.0, 1.0))[::-1]
        margin[i] = p[0] - (p[1] if len(p) > 1 else 0.0)
        nz = p[p > 0]
        entropy[i] = float(-(nz * np.log(nz)).sum())
    return margin, entropy


def _key(frame: pd.DataFrame, key_columns: Sequence[str]) -> pd.Series:
    """The dedup key of each row: its key columns' values when the client sent them all, else its
    request id."""
    out = frame["request_id"].astype(str).map(lambda r: f"request_id={r}")
    cols = [c for c in key_columns if c in frame.columns]
    if not key_columns or len(cols) != len(key_columns):
        return out
    values = frame[cols]
    complete = values.notna().all(axis=1)
    joined = values.astype(str).agg("|".join, axis=1) if len(frame) else out
    return pd.Series(np.where(complete, joined, out), index=frame.index)


def _disagreement(served: pd.DataFrame, shadow: pd.DataFrame, task: str) -> pd.Series:
    """The shadow's answer for each served row (NaN without one) and whether it differs."""
    answers = shadow.drop_duplicates("request_id").set_index("request_id")["prediction"]
    theirs = served["request_id"].map(answers)
    has = theirs.notna()
    if task == "regression":
        ours = served["prediction"].astype(float)
        tol = REGRESSION_DISAGREEMENT_SD * float(np.nanstd(ours)) if len(ours) else 0.0
        differs = has & ((theirs.astype(float) - ours).abs() > tol)
    else:
        differs = has & (theirs.astype(object) != served["prediction"].astype(object))
    return theirs, differs


def select_queue(log: pd.DataFrame, task: str, key_columns: Sequence[str] = (), max_per_day: int = 200,
                 shadow_disagreement: bool = True,
                 estimated_loss: np.ndarray | None = None) -> pd.DataFrame:
    """The day's labeling queue from a `read_window(..., expand_features=True, probabilities=True)`
    frame: served, unlabelled records, one per key, at most `max_per_day`.

    Candidates are the least confident answers (classification: smallest margin between the top
    two classes, entropy breaking ties; regression: the largest `estimated_loss`, one per served
    row in order, when the performance estimator gives one, else none) and, with
    `shadow_disagreement`, those the shadow challenger answered differently. A key already
    labelled that day is not queued again; of a key's records the least confident is kept. When the
    cap binds, disagreements take up to half of it (a label there decides between the models), the
    rest goes to the least confident. The queue is ordered most uncertain first."""
    empty = pd.DataFrame(columns=QUEUE_COLUMNS)
    if log is None or log.empty or max_per_day <= 0:
        return empty
    served = served_rows(log).copy()
    shadow = log[log["role"] == SHADOW]
    if served.empty:
        return empty
    if "probabilities" in served.columns and task != "regression":
        margin, entropy = confidence_scores(served["probabilities"].tolist())
    else:
        margin = entropy = np.full(len(served), np.nan)
    served["margin"], served["entropy"] = margin, entropy
    served["estimated_loss"] = (np.asarray(estimated_loss, dtype=float) if estimated_loss is not None
                                and task == "regression" else np.nan)
    # one number, larger = more worth a label
    served["uncertainty"] = (served["estimated_loss"] if task == "regression"
                             else (1.0 - served["margin"]) + 1e-6 * served["entropy"].fillna(0.0))
    theirs, differs = _disagreement(served, shadow, task)
    served["shadow_prediction"] = theirs
    served["_disagrees"] = differs.to_numpy() if shadow_disagreement else False
    served["key"] = _key(served, key_columns)
    labelled_keys = set(served.loc[served["label"].notna(), "key"])
    pool = served[served["label"].isna() & ~served["key"].isin(labelled_keys)]
    pool = pool.sort_values(["uncertainty", "ts", "request_id"], ascending=[False, True, True],
                            na_position="last", kind="stable")
    pool = pool.assign(_disagrees=pool.groupby("key")["_disagrees"].transform("max").astype(bool))
    pool = pool.drop_duplicates("key", keep="first")
    disagree = pool[pool["_disagrees"]]
    confident_known = pool["uncertainty"].notna()
    unsure = pool[~pool["_disagrees"] & confident_known]
    n_dis = min(len(disagree), max(max_per_day - len(unsure), (max_per_day + 1) // 2))
    chosen = pd.concat([disagree.head(n_dis), unsure.head(max_per_day - n_dis)])
    chosen = chosen.sort_values(["uncertainty", "ts", "request_id"], ascending=[False, True, True],
                                na_position="last", kind="stable")
    chosen["reason"] = np.where(chosen["_disagrees"], SHADOW_DISAGREEMENT, LEAST_CONFIDENT)
    features = [c for c in log.columns if c not in _LOG_COLUMNS and c not in QUEUE_COLUMNS]
    return chosen[QUEUE_COLUMNS + features].reset_index(drop=True)


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if v is pd.NaT or v is None or (not isinstance(v, str | bool | int | float | list | dict)
                                     and pd.isna(v)):
        return None
    return v


def label_studio_tasks(queue: pd.DataFrame) -> list[dict[str, Any]]:
    """The queue in Label Studio's JSON import format: one task `{"data": {...}}` per record, its
    data the record's features plus `request_id` (the id the import needs back), the model's
    answer and why it was queued."""
    features = [c for c in queue.columns if c not in QUEUE_COLUMNS]
    tasks = []
    for row in queue.to_dict("records"):
        data = {c: _json_value(row[c]) for c in features}
        data.update({"request_id": row["request_id"], "prediction": _json_value(row["prediction"]),
                     "shadow_prediction": _json_value(row["shadow_prediction"]),
                     "reason": row["reason"], "uncertainty": _json_value(row["uncertainty"])})
        tasks.append({"data": data})
    return tasks


def queue_csv(queue: pd.DataFrame) -> str:
    """The queue as CSV with an empty `label` column after `request_id`: fill it in and import it
    back with `mlops-pipeline labels import`."""
    out = queue.copy()
    out.insert(1, "label", "")
    return out.to_csv(index=False)


# ---- labels coming back -----------------------------------------------------------------------

@dataclass
class LabelRow:
    """One label read from a file by `read_labels`, for `import_labels`; `source` locates it in messages."""

    request_id: str
    label: Any  # JSON scalar as given (str from CSV/choices, number from a number result)
    source: str  # where in the file, for messages


def _ls_value(result: dict[str, Any]) -> Any:
    """The label of one Label Studio result: `choices` (first choice), `number`, `textarea` (first
    text); None for other result types."""
    value = result.get("value") or {}
    kind = result.get("type")
    if (kind == "choices" or kind is None) and value.get("choices"):
        return value["choices"][0]
    if (kind == "number" or kind is None) and "number" in value:
        return value["number"]
    if (kind == "textarea" or kind is None) and value.get("text"):
        text = value["text"]
        return (text[0] if isinstance(text, list) else text).strip()
    return None


def read_labels(path: str | Path) -> tuple[list[LabelRow], list[str]]:
    """Labels from a file: (rows, problems). Accepted:

    - CSV with a header holding `request_id` and `label` (other columns ignored, so the queue's own
      CSV with its `label` column filled in works; rows with an empty label are skipped);
    - Label Studio's JSON export: a list of tasks with `data.request_id` and `annotations`; the last
      annotation not cancelled counts, its first result of type `choices` (first choice), `number`
      or `textarea` (first text) is the label. Tasks without one are skipped."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    rows: list[LabelRow] = []
    problems: list[str] = []
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        tasks = json.loads(text)
        if isinstance(tasks, dict):
            tasks = [tasks]
        for i, task in enumerate(tasks):
            rid = (task.get("data") or {}).get("request_id")
            if not rid:
                problems.append(f"task {task.get('id', i)}: no data.request_id")
                continue
            anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
            label = None
            for ann in reversed(anns):
                label = next((v for v in map(_ls_value, ann.get("result") or []) if v is not None), None)
                if label is not None:
                    break
            if label is not None and label != "":
                rows.append(LabelRow(str(rid), label, f"task {task.get('id', i)}"))
        return rows, problems
    reader = csv.DictReader(io.StringIO(text))
    missing = {"request_id", "label"} - set(reader.fieldnames or [])
    if missing:
        raise ValueError(f"{path}: a CSV needs the columns request_id and label "
                         f"(missing {', '.join(sorted(missing))})")
    for line, rec in enumerate(reader, start=2):
        rid, label = (rec.get("request_id") or "").strip(), (rec.get("label") or "").strip()
        if rid and label:
            rows.append(LabelRow(rid, label, f"line {line}"))
        elif label:
            problems.append(f"line {line}: no request_id")
    return rows, problems


def typed_label(raw: Any, spec: Any, classes: Sequence[Any] = ()) -> Any:
    """A label read as text (CSV cell, Label Studio choice) in the type the server expects, as a
    JSON client would have sent it: a number where a number is expected ("12" -> 12, "12.5" ->
    12.5), true/false for boolean classes, the text itself for string classes."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    labels = tuple(classes)
    wants_number = bool(spec.target.expression) or spec.task == "regression" or (
        labels and all(isinstance(c, int | float) and not isinstance(c, bool) for c in labels))
    if labels and all(isinstance(c, bool) for c in labels) or (wants_number and text.lower() in
                                                                ("true", "false")):
        return {"true": True, "false": False}.get(text.lower(), text)
    if wants_number:
        try:
            value = float(text)
        except ValueError:
            return text
        return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    return text


@dataclass
class ImportReport:
    """What an import did: labels newly attached or corrected, already there, ids the store does
    not know, labels the server would refuse."""

    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)  # "<source> <id>: <problem>"

    def summary(self) -> str:
        parts = [f"{len(self.changed)} label(s) attached", f"{len(self.unchanged)} already there"]
        if self.unknown:
            parts.append(f"{len(self.unknown)} unknown request id(s)")
        if self.invalid:
            parts.append(f"{len(self.invalid)} invalid")
        line = ", ".join(parts)
        return line + (" — nothing changed" if not self.changed else "")


def import_labels(store: Any, rows: Iterable[LabelRow], spec: Any) -> ImportReport:
    """Attach each label the way `POST /feedback` does: validated by `feedback_label` against the
    answering model's classes, stored by `PredictionStore.set_label` (idempotent: the same label
    again changes nothing; a different one corrects it)."""
    report = ImportReport()
    for row in rows:
        captured = store.get(row.request_id, probabilities=True)
        if captured.empty:
            report.unknown.append(row.request_id)
            continue
        classes: tuple = ()
        if spec.task == "classification" and "probabilities" in captured.columns:
            dicts = [d for d in served_rows(captured)["probabilities"]
                     if isinstance(d, dict)]
            classes = tuple(dicts[0]) if dicts else ()
        label, problem = feedback_label(typed_label(row.label, spec, classes), spec, classes)
        if problem:
            report.invalid.append(f"{row.source} {row.request_id}: {problem} (got {row.label!r})")
            continue
        matched, changed = store.set_label(row.request_id, label)
        if not matched:
            report.unknown.append(row.request_id)
        elif changed:
            report.changed.append(row.request_id)
        else:
            report.unchanged.append(row.request_id)
    return report


#: Where the daily queue exports live, relative to the storage root: `<day>.csv` and `<day>.json`.
QUEUE_DIR = "labeling"


def queue_file(day: str, suffix: str) -> str:
    """A day's queue export relative to the storage root, `labeling/<day>.<suffix>`; `InvalidId`
    unless `day` is an ISO date."""
    from mlops_pipeline.ids import check_day

    return f"{QUEUE_DIR}/{check_day(day, 'labeling day')}.{suffix}"


def queued_request_ids(storage: Any, since: Any) -> dict[str, list[str]]:
    """The request ids of each day's queue export (`QUEUE_DIR/<day>.csv`) from `since` (a
    datetime) to today, day -> ids: what the board counts labels against."""
    from datetime import UTC, datetime, timedelta

    out: dict[str, list[str]] = {}
    day, today = since.date(), datetime.now(UTC).date()
    while day <= today:
        location = storage.uri(queue_file(day.isoformat(), "csv"))
        if storage.exists(location):
            frame = pd.read_csv(io.BytesIO(storage.read_bytes(location)), usecols=["request_id"], dtype=str)
            out[day.isoformat()] = frame["request_id"].dropna().tolist()
        day += timedelta(days=1)
    return out
