"""One retraining job, four triggers, one gate — plus alerts when something fails.

The schedule, the new-data sensor, the drift sensor and the estimated-performance sensor all
launch the same `mlops_loop` job, so every retraining goes through the same blocking contract
checks and the same eval gate; a model becomes champion only through that gate. Each run is
tagged `mlops/trigger` with what started it.
"""

from __future__ import annotations

import hashlib
import json
import time

import dagster as dg

from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.defs.resources.predictions import PredictionStoreResource
from mlops_pipeline.deployment.tags import (
    BATCHES_TAG,
    CHALLENGER,
    CONTENT_ID_TAG,
    DRIFT_CHECK_TAG,
    DRIFT_RUN_TAG,
    ESTIMATE_CHECK_TAG,
    ESTIMATE_PARTITION_TAG,
    ESTIMATE_REASON_TAG,
    ESTIMATE_RUN_TAG,
    READY_TAG,
    TRAINING_TAG,
    TRIGGER_TAG,
)
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.monitoring.alerts import Alerts
from mlops_pipeline.monitoring.serving_process import ServingProcess
from mlops_pipeline.settings import DEFAULT_CRON, Settings

LOOP_JOB = "mlops_loop"
PRODUCTION_JOB = "production_monitoring"
# Checks whose failure means "the world moved": the drift sensor retrains on them.
DRIFT_CHECKS = [
    dg.AssetCheckKey(dg.AssetKey("drift_report"), "input_drift"),
    dg.AssetCheckKey(dg.AssetKey("production_drift"), "production_input_drift"),
]


def landing_fingerprint(files) -> str:
    """Cheap change detector (names, sizes, mtimes or ETags from `Storage.listing`); the
    content id is computed only on change."""
    h = hashlib.sha256()
    for location, size, version in files:
        h.update(f"{location.rsplit('/', 1)[-1]}:{size}:{version};".encode())
    return h.hexdigest()


def _latest_snapshot_id(instance: dg.DagsterInstance) -> str | None:
    event = instance.get_latest_materialization_event(dg.AssetKey("dataset_snapshot"))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("snapshot_id")
    return None if value is None else str(value.value)


def build_schedule(cron: str = DEFAULT_CRON) -> dg.ScheduleDefinition:
    """The calendar trigger of the loop (`Settings.retrain_cron`, from `MLOPS_RETRAIN_CRON`): a
    tick whose run would train on the champion's own snapshot, config, contract, code and libraries
    is skipped, its reason (`deployment.unchanged.unchanged_since_champion`) shown in the UI."""

    @dg.schedule(
        name="weekly_retrain",
        job_name=LOOP_JOB,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Retrains on whatever has landed, on a calendar (MLOPS_RETRAIN_CRON); skips a "
        "tick when nothing changed since the champion.",
    )
    def weekly_retrain(context: dg.ScheduleEvaluationContext, dataset: DatasetResource,
                       storage: dg.ResourceParam[Storage], mlflow: dg.ResourceParam[MLflow]):
        from mlops_pipeline.deployment.unchanged import since_champion

        try:
            cache_rows = Settings.from_env().batch_index_cache_rows
            found = since_champion(dataset.spec(), storage, mlflow, cache_rows)
        except Exception as exc:  # noqa: BLE001 - cannot tell: the run trains and says what is wrong
            context.log.warning(f"could not compare with the champion ({exc}); retraining")
            found = None
        if found is not None and found.reason:
            return dg.SkipReason(found.reason)
        if found is not None:
            context.log.info(f"changed since champion v{found.version}: {', '.join(found.changed)}")
        return dg.RunRequest(tags={TRIGGER_TAG: "schedule"})

    return weekly_retrain


def production_job(selection: dg.AssetSelection) -> dg.UnresolvedAssetJobDefinition:
    """`PRODUCTION_JOB` over the production assets (`selection`), run daily by `build_production_schedule`."""
    return dg.define_asset_job(
        PRODUCTION_JOB,
        selection=selection,
        description="One day of production traffic: prediction log + inference checks, drift, "
        "quality from feedback, and labelled rows landed back for training.",
    )


def build_production_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    """Yesterday's partition, shortly after midnight UTC, when the day is complete."""
    return dg.build_schedule_from_partitioned_job(
        job,
        name="daily_production_monitoring",
        hour_of_day=0,
        minute_of_hour=30,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )


@dg.sensor(
    job_name=LOOP_JOB,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New batches in the landing area -> retraining. The run key is the content id, so "
    "the same data never retrains twice.",
)
def new_data_sensor(
    context: dg.SensorEvaluationContext, dataset: DatasetResource, storage: dg.ResourceParam[Storage]
):
    """Requests a loop run keyed by the landing area's content id; skips when the listing, the content or
    the latest snapshot already match it."""
    from mlops_pipeline.data.batch_index import landing_content_id

    spec = dataset.spec()
    pattern = storage.landing_glob(spec)
    files = storage.listing(pattern)
    if not files:
        return dg.SkipReason(f"nothing landed at {pattern}")
    cursor = json.loads(context.cursor) if context.cursor else {}
    fingerprint = landing_fingerprint(files)
    if cursor.get("fingerprint") == fingerprint:
        return dg.SkipReason("landing area unchanged")
    # Only batches not indexed yet are read; the id comes from every batch's stored row hashes.
    cid, _ = landing_content_id(pattern, spec.source.format, storage=storage, log=context.log.info,
                                cache_rows=Settings.from_env().batch_index_cache_rows)
    context.update_cursor(json.dumps({"fingerprint": fingerprint, "content_id": cid}))
    if cid == cursor.get("content_id"):
        return dg.SkipReason(f"files changed but the content ({cid[:12]}) did not")
    if cid == _latest_snapshot_id(context.instance):
        return dg.SkipReason(f"content {cid[:12]} is already the latest snapshot")
    return dg.RunRequest(
        run_key=cid,
        tags={TRIGGER_TAG: "new_data", CONTENT_ID_TAG: cid, BATCHES_TAG: str(len(files))},
    )


@dg.sensor(
    job_name=LOOP_JOB,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed drift check -> retraining, at most once per cooldown while drift persists.",
)
def drift_sensor(context: dg.SensorEvaluationContext, dataset: DatasetResource):
    """Requests a loop run on a new failure of a `DRIFT_CHECKS` check, unless this sensor requested one
    within the spec's `drift.retrain_cooldown_hours`."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    cursor = json.loads(context.cursor) if context.cursor else {"seen": 0, "triggered_at": 0.0}
    failures = []
    newest = cursor["seen"]
    for key in DRIFT_CHECKS:
        record = context.instance.get_latest_asset_check_evaluation_record(key)
        if record is None or record.id <= cursor["seen"]:
            continue
        newest = max(newest, record.id)
        if record.status == AssetCheckExecutionRecordStatus.FAILED and not _first_run(record):
            failures.append((key, record))
    cooldown = dataset.spec().drift.retrain_cooldown_hours * 3600
    now = time.time()
    if not failures:
        context.update_cursor(json.dumps({**cursor, "seen": newest}))
        return dg.SkipReason("no new drift check failure")
    if now - cursor["triggered_at"] < cooldown:
        context.update_cursor(json.dumps({**cursor, "seen": newest}))
        wait = (cursor["triggered_at"] + cooldown - now) / 3600
        return dg.SkipReason(f"drift persists; retraining is in cooldown for {wait:.1f} more hours")
    context.update_cursor(json.dumps({"seen": newest, "triggered_at": now}))
    key, record = failures[0]
    return dg.RunRequest(
        run_key=f"drift-{record.id}",
        tags={
            TRIGGER_TAG: "drift",
            DRIFT_CHECK_TAG: key.to_user_string(),
            DRIFT_RUN_TAG: record.run_id,
        },
    )


def _first_run(record) -> bool:
    """Whether a drift check's evaluation compared a first model's holdout with its own training
    split (`shared.FIRST_RUN`): information about the data, not drift since a champion."""
    from mlops_pipeline.defs.monitoring.shared import FIRST_RUN

    event = record.event.dagster_event if record.event is not None else None
    evaluation = event.event_specific_data if event is not None else None
    return bool(getattr(evaluation, "metadata", {}).get(FIRST_RUN))


#: The check whose failure means "the estimate says the champion got worse" (before labels).
ESTIMATE_CHECK = dg.AssetCheckKey(dg.AssetKey("estimated_performance"), "estimated_quality")
#: The same per segment: one segment's estimate fell below the floor while the overall may hold.
SEGMENT_ESTIMATE_CHECK = dg.AssetCheckKey(ESTIMATE_CHECK.asset_key, "estimated_segment_quality")
ESTIMATE_CHECKS = [ESTIMATE_CHECK, SEGMENT_ESTIMATE_CHECK]


@dg.sensor(
    job_name=LOOP_JOB,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Estimated performance clear below the gate's line, overall or in one segment "
    "(before any label) -> gated retraining, at most once per cooldown (drift.retrain_cooldown_hours) "
    "while it persists.",
)
def estimated_performance_sensor(context: dg.SensorEvaluationContext, dataset: DatasetResource):
    """Requests a loop run on a new failure of an `ESTIMATE_CHECKS` check (the overall estimate
    first, else the per-segment one), unless this sensor requested one within the spec's
    `drift.retrain_cooldown_hours`; the run is tagged with the check, its partition and its reason
    (which names the segment)."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    cursor = json.loads(context.cursor) if context.cursor else {"seen": 0, "triggered_at": 0.0}
    new = [(key, r) for key in ESTIMATE_CHECKS
           if (r := context.instance.get_latest_asset_check_evaluation_record(key)) and r.id > cursor["seen"]]
    if not new:
        return dg.SkipReason("no new performance estimate")
    seen = {**cursor, "seen": max(r.id for _, r in new)}
    failed = [(key, r) for key, r in new if r.status == AssetCheckExecutionRecordStatus.FAILED]
    if not failed:
        context.update_cursor(json.dumps(seen))
        return dg.SkipReason("the latest estimate is clear of the gate's lines")
    cooldown = dataset.spec().drift.retrain_cooldown_hours * 3600
    now = time.time()
    if now - cursor["triggered_at"] < cooldown:
        context.update_cursor(json.dumps(seen))
        wait = (cursor["triggered_at"] + cooldown - now) / 3600
        return dg.SkipReason(f"estimated degradation persists; retraining is in cooldown for "
                             f"{wait:.1f} more hours")
    context.update_cursor(json.dumps({"seen": seen["seen"], "triggered_at": now}))
    key, record = failed[0]
    evaluation = record.event.dagster_event.event_specific_data if record.event else None
    reason = (getattr(evaluation, "description", None) or "")[:1000]
    return dg.RunRequest(
        run_key=f"estimate-{record.id}",
        tags={
            TRIGGER_TAG: "estimated_performance",
            ESTIMATE_CHECK_TAG: key.to_user_string(),
            ESTIMATE_RUN_TAG: record.run_id,
            **({ESTIMATE_REASON_TAG: reason} if reason else {}),
            **({ESTIMATE_PARTITION_TAG: str(evaluation.partition)}
               if evaluation is not None and getattr(evaluation, "partition", None) else {}),
        },
    )


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (log, optional webhook) when any run fails, e.g. a blocking check stopped it.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, alerts: dg.ResourceParam[Alerts]):
    """Sends one alert per failed run, naming its job, its trigger tag and the failure message."""
    run = context.dagster_run
    trigger = run.tags.get(TRIGGER_TAG, "manual")
    alerts.send(
        f"run {run.run_id} of {run.job_name} (trigger: {trigger}) failed: "
        f"{context.failure_event.message}",
        log=context.log,
        run_id=run.run_id,
        kind="run_failure",
    )


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (log, optional webhook) on every newly failed asset check, warnings included "
    "(a failed WARN check does not fail its run, so the run-failure alert would miss it).",
)
def alert_on_check_failure(context: dg.SensorEvaluationContext, alerts: dg.ResourceParam[Alerts]):
    """Sends one alert per newly failed asset check, whatever its severity; never requests a run."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    seen = int(context.cursor or 0)
    newest = seen
    sent = 0
    for key in context.repository_def.asset_graph.asset_check_keys:
        record = context.instance.get_latest_asset_check_evaluation_record(key)
        if record is None or record.id <= seen:
            continue
        newest = max(newest, record.id)
        if record.status == AssetCheckExecutionRecordStatus.FAILED:
            evaluation = record.event.dagster_event.event_specific_data if record.event else None
            severity = evaluation.severity.value if evaluation else "ERROR"
            detail = evaluation.description if evaluation else ""
            alerts.send(
                f"check {key.to_user_string()} failed ({severity}) in run {record.run_id}: {detail}",
                log=context.log,
                check=key.to_user_string(),
                severity=severity,
                kind="check_failure",
            )
            sent += 1
    context.update_cursor(str(newest))
    return dg.SkipReason(f"{sent} check failure alert(s) sent" if sent else "no new failed checks")


_IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def training_in_progress(instance: dg.DagsterInstance) -> bool:
    """A run of the loop (or anything tagged `mlops/training`) that has not finished may move
    aliases: the guard waits for it (the `mlflow_registry` pool serialises the loop's moves, not
    the guard's)."""
    for filters in (dg.RunsFilter(job_name=LOOP_JOB, statuses=_IN_PROGRESS),
                    dg.RunsFilter(tags={TRAINING_TAG: "true"}, statuses=_IN_PROGRESS)):
        if instance.get_runs(filters=filters, limit=1):
            return True
    return False


def build_release_guard(interval_seconds: int = 30, serve_token: str | None = None) -> dg.SensorDefinition:
    """The release guard sensor, evaluated at most every `interval_seconds` (`Settings.release_guard_seconds`,
    from `MLOPS_RELEASE_GUARD_SECONDS`; the spec's `release.guard_interval_seconds` spaces its
    decisions further). `serve_token` authorises its reload calls to the serving process."""

    @dg.sensor(
        name="release_guard",
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Release guard: judges the challenger on captured traffic and the server's /metrics "
        "(release: in the dataset spec). A failed SLO removes the challenger alias (the server stops "
        "canary and shadow); every check passed: promote through the gate (auto_promote) or alert "
        "'ready to promote'. Never while a training run is in progress.",
    )
    def release_guard(context: dg.SensorEvaluationContext, dataset: DatasetResource,
                      mlflow: dg.ResourceParam[MLflow], predictions: PredictionStoreResource,
                      serving: dg.ResourceParam[ServingProcess], alerts: dg.ResourceParam[Alerts],
                      storage: dg.ResourceParam[Storage]):
        from mlops_pipeline.deployment import release
        from mlops_pipeline.deployment.challenger import analyse_challenger

        spec = dataset.spec()
        if not spec.release.guard:
            return dg.SkipReason("release.guard is false in the dataset spec: analysis only")
        cursor = json.loads(context.cursor) if context.cursor else {}
        now = time.time()
        if now - cursor.get("last", 0.0) < spec.release.guard_interval_seconds:
            return dg.SkipReason("within release.guard_interval_seconds of the last decision")
        busy = training_in_progress(context.instance)
        analysis = analyse_challenger(spec, mlflow, predictions.store(), serving.metrics_text())
        version = analysis.challenger_version
        decision = release.decide(analysis, spec.release, training_busy=busy,
                                  announced=version is not None and cursor.get("announced") == version)
        cursor["last"] = now
        name = spec.name
        if decision.action == release.REMOVE:
            move = release.remove_challenger(mlflow.registry(), name, version, decision.reason)
            reloaded = release.reload_server(serving.url, serve_token)
            alerts.send(f"{name} v{version} removed as challenger: {decision.reason}" + (
                "" if move else " (the alias had already moved)"), log=context.log, kind="release_rollback",
                model=name, version=str(version), reloaded=str(reloaded))
        elif decision.action == release.ANNOUNCE:
            cursor["announced"] = version
            mlflow.client().set_model_version_tag(name, str(version), READY_TAG,
                                                  decision.reason[:4000])
            mlflow.registry().record_decision(name, CHALLENGER, str(version), actor=release.GUARD_ACTOR,
                                              reason=f"ready to promote: {decision.reason}")
            alerts.send(f"{name} {decision.reason}", log=context.log, kind="release_ready",
                        model=name, version=str(version))
        elif decision.action == release.PROMOTE:
            from mlops_pipeline.deployment.promotion import PromotionRefused, promote_version

            try:
                promote_version(mlflow, storage, spec, str(version), actor=release.GUARD_ACTOR,
                                reason=decision.reason)
            except PromotionRefused as exc:
                if cursor.get("refused") != version:
                    cursor["refused"] = version
                    alerts.send(f"{name} v{version} passed the release checks but the eval gate refused "
                                f"it: {exc}", log=context.log, kind="release_gate_refused",
                                model=name, version=str(version))
                context.update_cursor(json.dumps(cursor))
                return dg.SkipReason(f"gate refused v{version}: {exc}")
            release.reload_server(serving.url, serve_token)
            alerts.send(f"{name} v{version} promoted to champion by the release guard: {decision.reason}",
                        log=context.log, kind="release_promoted", model=name, version=str(version))
        context.update_cursor(json.dumps(cursor))
        return dg.SkipReason(f"{decision.action}: {decision.reason}"[:2000])

    return release_guard
