"""The demo that shows the loop closing: later months of flights flow through the serving API.

For each month: the month's flights are sent to `POST /predict` as they would be at schedule
time (features and the flight's key, never the outcome); after a delay, the true arrival delay is
posted to `POST /feedback` (for `label_share` of the requests; with `label_lag_days` N, the labels
of a replayed month are posted only when the month N steps later is replayed, as late labels
arrive, so the estimated metric leads the realized one); the day's production assets are
materialized (prediction log and its checks, drift, quality, the estimate of performance before
labels and its check once they come, the labelled rows landed back); then the sensors are
evaluated, and whatever they request — a retraining on the new content id, on drift, or on an
estimated degradation — runs through the same job and the same gate. Everything lands in the
Dagster instance, so the UI and the board show it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mlops_pipeline.spec import DatasetSpec


@dataclass
class MonthReport:
    """What one replayed month did (`run_simulation`): traffic, labels, checks, retrainings and the
    champion before and after; `mlops-pipeline simulate` prints one table row per report."""

    month: int
    sent: int = 0
    answered: int = 0
    labelled: int = 0
    checks: dict[str, bool] = field(default_factory=dict)
    drift_share: float | None = None
    quality: dict[str, float] = field(default_factory=dict)
    triggers: list[str] = field(default_factory=list)
    retrain_runs: list[dict[str, Any]] = field(default_factory=list)
    champion_before: str | None = None
    champion_after: str | None = None
    #: Labels held back for a later step (delayed-label mode) after this step.
    labels_pending: int = 0
    #: The champion's gate metrics estimated before labels (`estimated_performance`, on the
    #: day's served traffic so far) and realized on the labels that had arrived (`model_quality`,
    #: every served version: a retrained champion's estimate has no labels of its own yet).
    estimated: dict[str, float] = field(default_factory=dict)
    realized: dict[str, float] = field(default_factory=dict)


def request_records(frame: pd.DataFrame, spec: DatasetSpec) -> list[dict[str, Any]]:
    """What a caller knows at schedule time: features and the record's key (JSON-safe)."""
    cols = list(dict.fromkeys([*spec.features.columns, *spec.key_columns]))
    out = []
    for rec in frame[cols].to_dict("records"):
        clean = {}
        for k, v in rec.items():
            if isinstance(v, pd.Timestamp):
                v = v.isoformat(sep=" ")
            elif isinstance(v, float) and math.isnan(v):
                v = None
            elif hasattr(v, "item"):
                v = v.item()
            clean[k] = v
        out.append(clean)
    return out


def replay(
    url: str, records: list[dict[str, Any]], batch: int = 20, concurrency: int = 8,
    token: str = "",
) -> list[str | None]:
    """POST the records in batches; returns the request id of each record (None if refused)."""
    import httpx

    chunks = [records[i:i + batch] for i in range(0, len(records), batch)]
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    with httpx.Client(base_url=url, timeout=30.0, headers=headers) as client:
        def send(chunk: list[dict[str, Any]]) -> list[str | None]:
            r = client.post("/predict", json={"records": chunk})
            if r.status_code != 200:
                return [None] * len(chunk)
            return [p["request_id"] for p in r.json()["predictions"]]

        with ThreadPoolExecutor(concurrency) as pool:
            return [rid for ids in pool.map(send, chunks) for rid in ids]


def wait_for_version(url: str, version: str | None, token: str = "", timeout: float = 30.0) -> bool:
    """Wait until the server answers with `version` (it polls the registry): a month replayed right
    after a promotion is then served, and estimated, by the new champion. False on timeout."""
    import httpx

    if version is None:
        return True
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if str(httpx.get(f"{url}/health", headers=headers, timeout=5.0).json().get("model_version")) \
                    == str(version):
                return True
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    return False


def post_feedback(url: str, pairs: list[tuple[str, float]], token: str = "", concurrency: int = 8) -> int:
    """POST each (request id, label) to `/feedback` concurrently; returns how many the server accepted."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, timeout=30.0, headers=headers) as client:
        def send(pair: tuple[str, float]) -> bool:
            rid, label = pair
            return client.post("/feedback", json={"request_id": rid, "label": label}).status_code == 200

        with ThreadPoolExecutor(concurrency) as pool:
            return sum(pool.map(send, pairs))


def _metadata_numbers(result, asset: str, prefix: str) -> dict[str, float]:
    """`<prefix><metric>` numbers of an asset's materialization in a run (band ends left out)."""
    found = result.asset_materializations_for_node(asset)
    if not found:
        return {}
    return {k[len(prefix):]: float(v.value) for k, v in found[0].metadata.items()
            if k.startswith(prefix) and not k.endswith(("_lower", "_upper"))
            and isinstance(v.value, int | float)}


def month_metric(reports: list[MonthReport], spec: DatasetSpec) -> str | None:
    """The metric the simulate table shows: the gate's first metric that was estimated."""
    for m in spec.gate:
        if any(m in r.estimated or m in r.realized for r in reports):
            return m
    return None


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def run_simulation(
    definitions: Any,
    flights: pd.DataFrame,
    spec: DatasetSpec,
    server_url: str,
    months: list[int],
    sample: float = 0.05,
    label_share: float = 1.0,
    label_delay: float = 2.0,
    label_lag_days: int = 0,
    token: str = "",
    seed: int = 0,
    say: Callable[[str], None] = print,
    execute: Callable[..., Any] | None = None,
    instance: Any = None,
) -> list[MonthReport]:
    """Drive the loop month by month (see the module docstring); returns what happened.

    `definitions` is the code location's `Definitions` (its jobs run and its sensors are evaluated),
    handed in by the entry point so this module never imports `mlops_pipeline.defs.definitions`.

    `execute(job, instance=..., **kwargs)` runs a job (default: `job.execute_in_process`); the CLI
    passes one that prints a line per step instead of Dagster's event log. `instance` (default: the
    one DAGSTER_HOME names) records the runs and is closed at the end.

    `label_lag_days` N > 0: a month's labels are posted when the month N steps later is replayed
    (those of the last N months stay pending), and the estimated-performance sensor is evaluated
    with the others: with late labels, the estimate is what can react first.
    """
    if execute is None:
        def execute(job, **kwargs):
            return job.execute_in_process(**kwargs)

    import dagster as dg

    from mlops_pipeline.defs import automation
    from mlops_pipeline.defs.resources import DatasetResource, StorageResource
    from mlops_pipeline.deployment.tags import CHAMPION, TRIGGER_TAG
    from mlops_pipeline.deployment.tracking import MLflow

    defs = definitions
    loop = defs.resolve_job_def(automation.LOOP_JOB)
    production = defs.resolve_job_def(automation.PRODUCTION_JOB)
    registry = MLflow()
    sensor_resources = {"dataset": DatasetResource(), "storage": StorageResource()}
    sensors = ["drift_sensor", "new_data_sensor"]
    if label_lag_days > 0:
        sensors.append("estimated_performance_sensor")
    cursors: dict[str, str | None] = dict.fromkeys(sensors)
    pending: dict[int, list[tuple[str, float]]] = {}
    reports = []

    def champion() -> str | None:
        mv = registry.version_by_alias(spec.name, CHAMPION)
        return None if mv is None else str(mv.version)

    with dg.DagsterInstance.get() if instance is None else instance as instance:
        for step, month in enumerate(months):
            report = MonthReport(month=month, champion_before=champion())
            rows = flights[flights["month"] == month]
            rows = rows.sample(frac=sample, random_state=seed + month) if sample < 1 else rows
            rows = rows.sort_values(spec.time_column) if spec.time_column else rows
            if not wait_for_version(server_url, report.champion_before, token=token):
                say(f"   the server does not serve champion v{report.champion_before} yet; replaying anyway")
            say(f"== month {month}: replaying {len(rows)} flights through {server_url}/predict")
            ids = replay(server_url, request_records(rows, spec), token=token)
            report.sent, report.answered = len(rows), sum(i is not None for i in ids)
            time.sleep(label_delay)
            truth = rows[spec.label_source].to_numpy()
            pairs = [
                (rid, float(y)) for rid, y in zip(ids, truth, strict=True)
                if rid is not None and not (isinstance(y, float) and math.isnan(y))
            ]
            pairs = pairs[: int(len(pairs) * label_share)]
            if label_lag_days > 0:  # these arrive later; the ones due now (months ago) arrive
                pending[step + label_lag_days] = pairs
                pairs = pending.pop(step, [])
            report.labelled = post_feedback(server_url, pairs, token=token)
            report.labels_pending = sum(len(p) for p in pending.values())
            say(f"   {report.answered} answered, {report.labelled} labels fed back"
                + (f" ({report.labels_pending} still to come)" if label_lag_days > 0 else ""))

            partition = datetime.now(UTC).strftime("%Y-%m-%d")
            result = execute(
                production, instance=instance, partition_key=partition, raise_on_error=False,
                tags={TRIGGER_TAG: "simulation"},
            )
            report.checks = _checks(result)
            drift = result.asset_materializations_for_node("production_drift")
            if drift:
                report.drift_share = float(drift[0].metadata["drift_share"].value)
            quality = result.asset_materializations_for_node("model_quality")
            if quality:
                report.quality = {
                    k: float(v.value) for k, v in quality[0].metadata.items() if k.startswith("production_")
                }
            report.estimated = _metadata_numbers(result, "estimated_performance", "estimated_")
            report.realized = {k[len("production_"):]: v for k, v in report.quality.items()}
            say(f"   production checks: {json.dumps(report.checks)}; drift share {report.drift_share}")

            # Drift first: when it fires, its retraining also consumes the new batch, and the
            # new-data sensor then sees its content already snapshotted.
            for name in sensors:
                sensor = defs.resolve_sensor_def(name)
                context = dg.build_sensor_context(
                    instance=instance, cursor=cursors[name], resources=sensor_resources, definitions=defs
                )
                tick = sensor.evaluate_tick(context)
                cursors[name] = tick.cursor
                for request in tick.run_requests:
                    trigger = request.tags.get(TRIGGER_TAG, name)
                    report.triggers.append(trigger)
                    say(f"   {name} requested a retraining ({trigger}); running it through the gate")
                    run = execute(
                        loop, instance=instance, tags=dict(request.tags), raise_on_error=False
                    )
                    checks = _checks(run)
                    report.retrain_runs.append({
                        "run_id": run.run_id, "trigger": trigger, "success": run.success,
                        "gate_passed": checks.get("eval_floor", False) and checks.get("no_regression", False),
                    })
            report.champion_after = champion()
            moved = report.champion_before != report.champion_after
            say(f"   champion v{report.champion_before} -> v{report.champion_after}"
                + ("" if moved else " (unchanged)"))
            reports.append(report)
    return reports
