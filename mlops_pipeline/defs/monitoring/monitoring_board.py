"""The monitoring board: one HTML page with system, data and model health, and key numbers in the UI
(thin wiring over `mlops_pipeline.monitoring.board`).

The board lists every check of the code location, which only `definitions.py` knows: it builds
the board with `build_monitoring_board`, handing in the assets and checks it loaded, so this
module never imports the definitions it belongs to.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.monitoring.shared import FIRST_RUN
from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.defs.resources.predictions import PredictionStoreResource
from mlops_pipeline.deployment.tags import (
    BOARD_KIND,
    CHALLENGER,
    CHAMPION,
    GATE_STATUS_TAG,
    KIND_TAG,
    PREVIOUS_CHAMPION,
)
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.monitoring.alerts import Alerts
from mlops_pipeline.monitoring.serving_process import ServingProcess

WINDOW_DAYS = 7


def _check_rows(context: dg.AssetExecutionContext,
                keys: Sequence[dg.AssetCheckKey]) -> list[dict[str, Any]]:
    """The latest verdict of each check of `keys`, in every state the instance can hold: `passed` /
    `failed` with the evaluation's severity and description, `not run` for a check that was
    planned but never evaluated (its run failed or stopped first; the detail says which
    run and how it ended), `running` while that run is still going, `never run` without a record."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    rows = []
    for key in keys:
        record = context.instance.get_latest_asset_check_evaluation_record(key)
        row = {"asset": key.asset_key.to_user_string(), "check": key.name, "status": "never run",
               "severity": "", "detail": ""}
        if record is not None and record.status == AssetCheckExecutionRecordStatus.PLANNED:
            run = context.instance.get_run_by_id(record.run_id)
            done = run is None or run.is_finished
            row["status"] = "not run" if done else "running"
            row["detail"] = (f"planned in run {record.run_id[:8]} "
                             f"({run.status.value.lower() if run else 'deleted'})")
        elif record is not None:
            event = record.event.dagster_event if record.event else None
            evaluation = event.event_specific_data if event else None
            passed = getattr(evaluation, "passed", None)
            if passed is None:  # an evaluation without a verdict: say so rather than guess
                row["status"] = record.status.value.lower()
            else:
                row.update(status="passed" if passed else "failed",
                           severity=evaluation.severity.value,
                           detail=(evaluation.description or "")[:160])
                row.update(_named_batch(evaluation) if not passed else {})
                if not passed and FIRST_RUN in (evaluation.metadata or {}):
                    row["first_run"] = True  # a first run's drift informs, never alarms
        rows.append(row)
    return rows


def _named_batch(evaluation: Any) -> dict[str, str]:
    """The first failing batch file and column a batch check names (its metadata), for THE verdict."""
    meta = getattr(evaluation, "metadata", None) or {}
    value = lambda k: str(getattr(meta.get(k), "value", "") or "")  # noqa: E731
    batches, columns = value("failing_batches"), value("failing_columns")
    if not batches:
        return {}
    return {"batch": batches.split(", ")[0], "column": columns.split(", ")[0] if columns else ""}


def _latest_event(context: dg.AssetExecutionContext, asset: str) -> Any:
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    return None if event is None or event.asset_materialization is None else event


def _when(event: Any) -> datetime | None:
    return None if event is None else datetime.fromtimestamp(event.timestamp, UTC)


def _check_meta(context: dg.AssetExecutionContext, key: str) -> dict[str, Any]:
    """The metadata of a check's latest evaluation (`asset:check`), {} when there is none."""
    asset, name = key.split(":")
    record = context.instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey(asset), name))
    evaluation = (record.event.dagster_event.event_specific_data
                  if record is not None and record.event and record.event.dagster_event else None)
    return dict(getattr(evaluation, "metadata", None) or {})


def _records(table: Any) -> list[dict[str, Any]]:
    """A table metadata value's records as dicts, [] for anything else (a sentence, nothing)."""
    return [dict(r.data) for r in getattr(getattr(table, "value", None), "records", None) or []]


def _latest(context: dg.AssetExecutionContext, asset: str, field: str) -> Any:
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get(field)
    return None if value is None else value.value


def _render(
    context: dg.AssetExecutionContext,
    check_keys: Sequence[dg.AssetCheckKey],
    dataset: DatasetResource,
    storage: dg.ResourceParam[Storage],
    mlflow: dg.ResourceParam[MLflow],
    predictions: PredictionStoreResource,
    serving: dg.ResourceParam[ServingProcess],
    alerts: Alerts,
) -> dg.MaterializeResult:
    """Render the board (`monitoring.board`) from the last week of captured traffic, the server's
    `/metrics`, the registry's aliases and the instance's latest check verdicts; write it where
    reports live and log it to MLflow; the key numbers become the materialization's metadata."""
    import mlflow as mlflow_lib

    from mlops_pipeline.monitoring.board import (
        Board,
        figures_for,
        labeling_summary,
        parse_serving_metrics,
        render_board,
        serving_by_version,
        store_by_version,
        traffic_summary,
    )
    from mlops_pipeline.monitoring.labeling import queued_request_ids
    from mlops_pipeline.monitoring.quality import daily_quality, score_column

    spec = dataset.spec()
    score = score_column(spec.task)
    since = datetime.now(UTC) - timedelta(days=WINDOW_DAYS)
    log = predictions.store().read_window(since, None, model_name=spec.name,
                                          probabilities=spec.task == "classification")

    system: dict[str, Any] = {"window": f"last {WINDOW_DAYS} days", **traffic_summary(log, score)}
    server = serving.for_model(spec.name)  # MLOPS_SERVING_URL, else the running server's state file
    text = server.metrics_text()
    # no server answering: latency per version and role from the store (what it captured)
    versions = serving_by_version(text) if text is not None else store_by_version(log)
    if text is not None:
        system["server"] = f"{server.url} ({server.source})"
        system.update({f"server_{k}": v for k, v in parse_serving_metrics(text).items()})
    else:
        system["server"] = f"not reachable at {server.url} ({server.source})" if server.url else server.source

    model: dict[str, Any] = {}
    for alias in (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION):
        mv = mlflow.version_by_alias(spec.name, alias)
        model[alias] = f"v{mv.version} ({mv.tags.get(GATE_STATUS_TAG, '?')})" if mv else "none"
    quality = daily_quality(log, spec)
    if len(quality):
        model.update({f"latest_{k}": float(v) for k, v in quality.iloc[-1].items() if k != "day"})
    checks = _check_rows(context, check_keys)
    drift = {
        "new training data drift share": _latest(context, "drift_report", "drift_share"),
        "new training data drifted columns": _latest(context, "drift_report", "drifted_columns"),
        "new training data": _latest(context, "drift_report", "status")
        or _latest(context, "drift_report", "current_basis"),
        "production drift share": _latest(context, "production_drift", "drift_share"),
        "production drifted columns": _latest(context, "production_drift", "drifted_columns"),
        "production calibration error": _latest(context, "model_quality", "expected_calibration_error"),
    }
    queued = queued_request_ids(storage, since)
    release = _latest(context, "challenger_analysis", "verdicts") or []
    labeling = labeling_summary(log, queued)
    view = _first_screen(context, spec, log, system, versions, checks, quality, release, model,
                         labeling, queued)
    board = Board(
        title=f"{spec.name} — monitoring board ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        system=system, data=checks, drift=drift, model=model,
        figures=figures_for(log, score, quality), versions=versions, release=release,
        labeling=labeling, view=view,
    )
    if view.verdict.level == "ACT":  # the pager gets what the board opens with
        alerts.send_verdict(view.verdict, log=context.log)
    path = storage.reports_dir / f"board_{spec.name}.html"
    path.write_text(render_board(board))
    location = storage.publish_report(path)
    with mlflow.start_run(run_name=f"board-{spec.name}", tags={KIND_TAG: BOARD_KIND}) as run:
        mlflow_lib.log_artifact(str(path))
    url = mlflow.run_url(run.info.run_id)
    failing = [f"{r['asset']}:{r['check']}" for r in checks if r["status"] == "failed"]
    not_run = [f"{r['asset']}:{r['check']}" for r in checks if r["status"] == "not run"]

    def num(v: Any) -> float:
        return float(v) if isinstance(v, int | float) and v is not None else 0.0

    return dg.MaterializeResult(metadata={
        "verdict": view.verdict.line(),
        "board_path": dg.MetadataValue.path(location),
        **({"board": dg.MetadataValue.url(url)} if url else {}),
        "champion": model[CHAMPION],
        "challenger": model[CHALLENGER],
        "served_predictions": int(system.get("served", 0)),
        "served_requests": int(system.get("requests", 0)),
        "qps": num(system.get("qps")),
        "records_per_second": num(system.get("records_per_second")),
        "p99_latency_ms": num(system.get("server_p99_ms", system.get("store_p99_ms"))),
        "error_rate": num(system.get("server_error_rate")),
        "failing_checks": ", ".join(failing) or "none",
        "checks_not_run": ", ".join(not_run) or "none",
        "production_drift_share": num(drift["production drift share"]),
        "labeling_queued": int(board.labeling.get("queued items", 0)),
        "labeling_labelled": int(board.labeling.get("queued items labelled", 0)),
        **({"serving_by_version": dg.MetadataValue.json(versions)} if versions else {}),
    })


def _first_screen(context: dg.AssetExecutionContext, spec: Any, log: Any, system: dict[str, Any],
                  versions: list[dict[str, Any]], checks: list[dict[str, Any]], quality: Any,
                  release: list[dict[str, Any]], model: dict[str, Any], labeling: dict[str, Any],
                  queued: dict[str, list[str]]) -> Any:
    """THE verdict and the panels' values (`monitoring.board_signals`) from the instance's latest
    drift, estimate, retraining and segment results (the gate's and labelled production's per
    segment, the estimate's before labels, production drift's per segment)."""
    from mlops_pipeline.monitoring.board_signals import Gathered, view

    drift = _latest_event(context, "production_drift")
    table = drift.asset_materialization.metadata.get("columns") if drift else None
    estimate = _latest_event(context, "estimated_performance")
    trained, promoted = _latest_event(context, "model_version"), _latest_event(context, "champion_model")
    version = lambda e, k: str(getattr(e.asset_materialization.metadata.get(k), "value", ""))  # noqa: E731
    estimated = _check_meta(context, "estimated_performance:estimated_segment_quality")
    return view(Gathered(
        spec=spec, log=log, system=system, versions=versions, checks=checks, quality=quality,
        release=release, champion=str(model[CHAMPION]).split(" (")[0],
        challenger=str(model[CHALLENGER]).split(" (")[0], labeling=labeling, queued=queued,
        drift_columns=[dict(r.data) for r in table.value.records] if table is not None else [],
        drift_at=_when(drift),
        estimate={k: v.value for k, v in estimate.asset_materialization.metadata.items()
                  if isinstance(v.value, int | float)} if estimate else {},
        retrained_at=_when(trained),
        retrain_promoted=(None if trained is None else promoted is not None
                          and promoted.timestamp >= trained.timestamp
                          and version(promoted, "champion_version") == version(trained, "version")),
        segments=_records(_check_meta(context, "model_version:segment_regression").get("segments")),
        segment_metric=next(iter(spec.gate), ""),
        labelled_segments=_records(_check_meta(context, "model_quality:segment_quality").get("segments")),
        estimated_segments=_records(estimated.get("segments")),
        estimated_metric=str(getattr(estimated.get("segment_metric"), "value", "")),
        segment_drift=_records(drift.asset_materialization.metadata.get("segment_drift")) if drift else [],
    ))


def build_monitoring_board(definitions: Sequence[Any]) -> dg.AssetsDefinition:
    """The `monitoring_board` asset, listing the checks of `definitions` (the assets and checks
    the code location loads: their `check_keys`, sorted by name)."""
    check_keys = sorted({key for d in definitions for key in getattr(d, "check_keys", ())},
                        key=lambda k: k.to_user_string())

    @dg.asset(
        group_name="monitoring",
        kinds={"plotly", "html"},
        description="The on-call page: latency/errors/QPS, check status, drift, prediction "
        "distribution, quality and calibration on labelled traffic, and which versions are "
        "champion and challenger.",
    )
    def monitoring_board(
        context: dg.AssetExecutionContext,
        dataset: DatasetResource,
        storage: dg.ResourceParam[Storage],
        mlflow: dg.ResourceParam[MLflow],
        predictions: PredictionStoreResource,
        serving: dg.ResourceParam[ServingProcess],
        alerts: dg.ResourceParam[Alerts],
    ) -> dg.MaterializeResult:
        """The on-call board of the code location's checks (see `_render`)."""
        return _render(context, check_keys, dataset, storage, mlflow, predictions, serving, alerts)

    return monitoring_board
