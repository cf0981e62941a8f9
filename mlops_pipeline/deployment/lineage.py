"""The lineage of one prediction, and the reverse: what a snapshot's models answered.

`explain_request` joins the four places a prediction's story is kept: the prediction store (the
record, its answer, role, latency, label), the alias history (which version each alias named at
that moment), the MLflow registry and run (the version's tags and model card, the run manifest,
the drift reports the same Dagster run logged) and the store's snapshots (the snapshot's row count
and the landed batch files it was made of, each with its own content id, recorded beside the
snapshot by `dataset_snapshot`). `explain_snapshot` answers "which answers did this batch
influence?": the versions trained on a snapshot and what each served, by role, first and last.

No Dagster here: callers pass the clients (an `MlflowClient`, a prediction store, a storage with
`uri`/`exists`/`read_bytes`, an alias history), the same ones the CLI and the pipeline use, so it
works unchanged against the production profile (Postgres store, MLflow server, S3).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from mlops_pipeline.deployment.filters import all_of, equals
from mlops_pipeline.deployment.tags import (
    ALIASES,
    CHAMPION,
    CHAMPION_VERSION_TAG,
    COPIED_FROM_TAG,
    CURRENT_TAG,
    DAGSTER_RUN_ID_TAG,
    DRIFT_REFERENCE_TAG,
    DRIFT_REPORT_KIND,
    EXTERNAL_ORIGIN,
    GATE_CHAMPION_TAG,
    GATE_REASONS_TAG,
    GATE_STATUS_TAG,
    GIT_SHA_TAG,
    KIND_TAG,
    ORIGIN_TAG,
    PROMOTED_BY_TAG,
    RUN_DAGSTER_RUN_TAG,
    RUN_ID_TAG,
    SHADOW,
    SNAPSHOT_ID_TAG,
)
from mlops_pipeline.ids import InvalidId, check_segment

#: Tags of a version that explain shows as its searchable facts.
VERSION_TAGS = (SNAPSHOT_ID_TAG, GIT_SHA_TAG, RUN_ID_TAG, DAGSTER_RUN_ID_TAG, GATE_STATUS_TAG,
                GATE_REASONS_TAG, GATE_CHAMPION_TAG, PROMOTED_BY_TAG, DRIFT_REFERENCE_TAG, ORIGIN_TAG,
                COPIED_FROM_TAG)
#: What explain says of a version trained outside the loop, where a loop version has its facts.
EXTERNAL_UNKNOWN = "unknown: trained outside the loop (origin=external), no snapshot and no run manifest"


class LineageError(LookupError):
    """What was asked for is not on record (an unknown request id or snapshot)."""


def batches_relative(snapshot_id: str) -> str:
    """Where, under the store's root, the landed batch files of a snapshot are recorded
    (`InvalidId` for an id that is not one path segment)."""
    return f"snapshots/{check_segment(snapshot_id, 'snapshot id')}.batches.json"


def read_snapshot_batches(storage: Any, snapshot_id: str) -> dict[str, Any] | None:
    """The record `dataset_snapshot` wrote beside the snapshot (rows, time range, batch files
    with their content ids and check findings), or None for a snapshot made before it existed.
    Each batch gets `uri`, its location in the landing area."""
    location = storage.uri(batches_relative(snapshot_id))
    if not storage.exists(location):
        return None
    record = json.loads(storage.read_bytes(location))
    folder = str(record.get("landing", "")).rsplit("/", 1)[0]
    for batch in record.get("batches", []):
        batch.setdefault("uri", f"{folder}/{batch['name']}" if folder else batch["name"])
    return record


def _iso(ts: Any) -> str | None:
    if ts is None:
        return None
    try:
        import pandas as pd

        if pd.isna(ts):
            return None
        return pd.Timestamp(ts).isoformat()
    except (TypeError, ValueError):
        return str(ts)


def _plain(value: Any) -> Any:
    """numpy scalars and NaN as JSON-ready values."""
    import math

    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _record(rows) -> dict[str, Any]:
    """The captured rows of one request id (served and shadow) as plain data."""
    from mlops_pipeline.monitoring.predictions import served_rows

    served = served_rows(rows)
    first = (served if len(served) else rows).iloc[0]
    answers = []
    for _, r in rows.iterrows():
        answer = {"role": r["role"], "model_version": str(r["model_version"]),
                  "prediction": _plain(r["prediction"]), "probability": _plain(r["probability"]),
                  "latency_ms": _plain(r["latency_ms"]), "at": _iso(r["ts"])}
        if "probabilities" in rows.columns and r["probabilities"] is not None:
            answer["probabilities"] = {str(k): _plain(v) for k, v in dict(r["probabilities"]).items()}
        answers.append(answer)
    return {
        "request_id": str(first["request_id"]),
        "model_name": str(first["model_name"]),
        "features": json.loads(first["features"]),
        "answers": answers,
        "label": _plain(first["label"]),
        "label_at": _iso(first["label_ts"]),
    }


def _aliases_at(history: Any, model: str, at: datetime, version: str) -> dict[str, Any]:
    """Which version each alias named at `at`, and the move that put the champion there."""
    if history is None:
        return {"source": "no alias history given"}
    named = {alias: history.version_at(model, alias, at) for alias in ALIASES}
    event = history.event_at(model, CHAMPION, at)
    held = [alias for alias, v in named.items() if v == version]
    return {"source": "alias history", "at": at.isoformat(), "aliases": named,
            "version_held": held, "champion_move": None if event is None else event.as_dict()}


def _aliases_now(client: Any, model: str) -> dict[str, str | None]:
    out = {}
    for alias in ALIASES:
        try:
            out[alias] = str(client.get_model_version_by_alias(model, alias).version)
        except Exception:  # noqa: BLE001 - MLflow raises for an unset alias
            out[alias] = None
    return out


def read_manifest(client: Any, run_id: str) -> dict[str, Any] | None:
    """The training run's `manifest.yaml` (None when the run has none)."""
    import tempfile
    from pathlib import Path

    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, "manifest.yaml", tmp)
        except Exception:  # noqa: BLE001 - MLflow raises several types for a missing artifact
            return None
        return yaml.safe_load(Path(path).read_text())


def manifest_summary(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    """The parts of a run manifest a person rebuilding or blaming a model asks for first."""
    if manifest is None:
        return None
    git = manifest.get("git") or {}
    return {
        "git_sha": git.get("sha"),
        "git_dirty": git.get("dirty"),
        "uncommitted_inputs": git.get("uncommitted_inputs") or {},
        "uv_lock_sha256": manifest.get("uv_lock_sha256"),
        "seeds": manifest.get("seeds") or {},
        "config_fingerprint": (manifest.get("config") or {}).get("fingerprint"),
        "inputs": manifest.get("inputs") or {},
        "python": manifest.get("python"),
        "dagster_run_id": manifest.get("dagster_run_id"),
        "dataset_snapshot_id": manifest.get("dataset_snapshot_id"),
        "holdout": manifest.get("holdout") or {},
    }


def _version(client: Any, model: str, version: str) -> dict[str, Any]:
    mv = client.get_model_version(model, version)
    tags = dict(mv.tags or {})
    return {"version": str(mv.version), "run_id": mv.run_id, "source": mv.source,
            "created": _iso_ms(mv.creation_timestamp), "description": mv.description or "",
            "tags": {k: tags[k] for k in VERSION_TAGS if k in tags},
            "metrics": {k[len("holdout_"):]: float(v) for k, v in tags.items()
                        if k.startswith("holdout_")}}


def _iso_ms(ms: int | None) -> str | None:
    from datetime import UTC

    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def drift_runs(client: Any, experiment_id: str, dagster_run_id: str | None) -> list[dict[str, Any]]:
    """The drift reports the training's Dagster run logged to MLflow (share, report files)."""
    if not dagster_run_id:
        return []
    runs = client.search_runs(
        [experiment_id],
        filter_string=all_of(equals(f"tags.{KIND_TAG}", DRIFT_REPORT_KIND),
                             equals(f"tags.`{RUN_DAGSTER_RUN_TAG}`", dagster_run_id)),
    )
    out = []
    for run in runs:
        reports = [a.path for a in client.list_artifacts(run.info.run_id) if a.path.endswith(".html")]
        out.append({
            "run_id": run.info.run_id,
            "name": run.data.tags.get("mlflow.runName", ""),
            "champion_version": run.data.tags.get(CHAMPION_VERSION_TAG),
            "current": run.data.tags.get(CURRENT_TAG),
            "drift_share": run.data.metrics.get("drift_share"),
            "reports": [f"{run.info.artifact_uri}/{p}" for p in reports],
        })
    return out


def snapshot_section(storage: Any, snapshot_id: str | None) -> dict[str, Any]:
    """The snapshot part of an explanation: id and location plus its recorded rows, period and batch
    files; a `note` says what is missing (no snapshot tag, or batches not recorded)."""
    if not snapshot_id:
        return {"id": None, "note": "the version has no snapshot_id tag"}
    try:
        check_segment(snapshot_id, "snapshot id")
    except InvalidId as exc:  # a tag is not a path: say so instead of reading one
        return {"id": snapshot_id, "note": str(exc)}
    recorded = read_snapshot_batches(storage, snapshot_id)
    out: dict[str, Any] = {"id": snapshot_id, "uri": storage.uri(f"snapshots/{snapshot_id}.parquet")}
    if recorded is None:
        out["note"] = ("batch files not recorded: the snapshot was made before `dataset_snapshot` "
                       "recorded them")
        return out
    out.update({k: recorded.get(k) for k in ("rows", "time_start", "time_end", "landing")})
    out["batches"] = recorded.get("batches", [])
    return out


def explain_request(request_id: str, *, store: Any, client: Any, storage: Any,
                    history: Any = None) -> dict[str, Any]:
    """Everything on record about one prediction, as plain data (see the module docstring).

    Raises `LineageError` when the store holds no record with this id."""
    rows = store.get(request_id, probabilities=True)
    if rows is None or len(rows) == 0:
        raise LineageError(f"no prediction with request id {request_id!r} in the prediction store")
    record = _record(rows)
    served = next((a for a in record["answers"] if a["role"] != SHADOW), record["answers"][0])
    model, version = record["model_name"], served["model_version"]
    import pandas as pd

    at = pd.Timestamp(served["at"]).to_pydatetime()
    info = _version(client, model, version)
    external = info["tags"].get(ORIGIN_TAG) == EXTERNAL_ORIGIN
    run = client.get_run(info["run_id"]) if info["run_id"] else None
    manifest = read_manifest(client, info["run_id"]) if run is not None else None
    dagster_run = info["tags"].get(DAGSTER_RUN_ID_TAG) or (manifest or {}).get("dagster_run_id")
    champion_then = info["tags"].get(GATE_CHAMPION_TAG)
    compared = None
    if champion_then and champion_then != "none":
        try:
            compared = _version(client, model, champion_then)
            compared.pop("description", None)
        except Exception as exc:  # noqa: BLE001 - a deleted version is reported, not fatal
            compared = {"version": champion_then, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "record": record,
        "model": {"name": model, **info,
                  "aliases_then": _aliases_at(history, model, at, version),
                  "aliases_now": _aliases_now(client, model)},
        "run": {"run_id": info["run_id"], "experiment_id": run.info.experiment_id if run else None,
                "artifact_uri": run.info.artifact_uri if run else None,
                "manifest": manifest_summary(manifest),
                **({"note": EXTERNAL_UNKNOWN} if external else {})},
        "gate": {"status": info["tags"].get(GATE_STATUS_TAG),
                 "reasons": info["tags"].get(GATE_REASONS_TAG, ""),
                 "champion_version": champion_then, "champion": compared},
        "snapshot": ({"id": None, "note": EXTERNAL_UNKNOWN} if external
                     else snapshot_section(storage, info["tags"].get(SNAPSHOT_ID_TAG))),
        "training_run": {"dagster_run_id": dagster_run,
                         "drift_reports": drift_runs(client, run.info.experiment_id, dagster_run)
                         if run is not None else []},
    }


def served_by_version(store: Any, model: str, versions: list[str]) -> list[dict[str, Any]]:
    """Records each version answered (or shadowed), by role, with the first and last time."""
    if not versions:
        return []
    from sqlalchemy import bindparam, text

    query = text(
        "SELECT model_version, role, SUM(records), COUNT(*), MIN(ts), MAX(ts) "
        "FROM prediction_batches WHERE model_name = :model AND model_version IN :versions "
        "GROUP BY model_version, role ORDER BY model_version, role"
    ).bindparams(bindparam("versions", expanding=True))
    with store.engine.connect() as conn:
        rows = conn.execute(query, {"model": model, "versions": list(versions)}).all()
    return [{"version": str(v), "role": role, "predictions": int(n), "requests": int(reqs),
             "first": _iso(first), "last": _iso(last)} for v, role, n, reqs, first, last in rows]


def explain_snapshot(snapshot_id: str, *, model: str, store: Any, client: Any,
                     storage: Any) -> dict[str, Any]:
    """The versions of `model` trained on the snapshot (a unique prefix of its id will do) and
    how many predictions each served, by role, first and last time."""
    versions = [mv for mv in client.search_model_versions(equals("name", model))
                if str((mv.tags or {}).get(SNAPSHOT_ID_TAG, "")).startswith(snapshot_id)]
    ids = {mv.tags[SNAPSHOT_ID_TAG] for mv in versions}
    if len(ids) > 1:
        raise LineageError(f"snapshot prefix {snapshot_id!r} matches {len(ids)} snapshots: "
                           f"{sorted(i[:16] for i in ids)}; give more of the id")
    full = next(iter(ids)) if ids else snapshot_id
    section = snapshot_section(storage, full)
    if not versions and "rows" not in section:
        raise LineageError(f"no version of {model} was trained on snapshot {snapshot_id!r} and "
                           "no such snapshot is recorded")
    numbers = sorted((str(mv.version) for mv in versions), key=int)
    served = served_by_version(store, model, numbers)
    by_version = {
        v: {"version": v, "gate.status": next((mv.tags or {}).get(GATE_STATUS_TAG) for mv in versions
                                              if str(mv.version) == v),
            "served": [s for s in served if s["version"] == v]}
        for v in numbers
    }
    for entry in by_version.values():
        entry["predictions"] = sum(s["predictions"] for s in entry["served"] if s["role"] != SHADOW)
        entry["shadowed"] = sum(s["predictions"] for s in entry["served"] if s["role"] == SHADOW)
    return {"snapshot": section, "model": model, "versions": list(by_version.values())}
