"""Running the CI gate: the real `mlops_loop` job, in-process, on a small seeded sample, in a
configuration of its own, read back into the gate's check rows (`deployment.ci_gate`).

The run gets `Settings.isolated(root, config)`: its own landing, snapshots, SQLite registry,
prediction store and Dagster instance under `root` (a temporary directory unless `--data-dir`),
handed to `build_definitions` and the instance explicitly. Nothing reads or writes the user's data
dir (except to sample its landed files), registry or environment. The reference (the registry's
champion) is looked up in the user's configuration (the same registry `materialize` uses:
`MLFLOW_TRACKING_URI`, else the embedded SQLite one under the data dir) before anything trains.

A candidate trained on the gate's sample is only compared with a reference trained on the same
rows by the same procedure: the champion itself when it was trained on this very snapshot, else the
champion's recorded config retrained on the sample (`training.reproduce.retrain_on`). A champion
trained on every row scores higher than any sample-trained model and would fail healthy changes.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_pipeline.deployment.ci_gate import (
    CheckRow,
    GateOutcome,
    baseline_path,
    baseline_record,
    compare_row,
    judge_against_baseline,
)
from mlops_pipeline.deployment.ci_sample import (
    GateSetupError,
    land_sample,
    plan_sample,
    refresh_hint,
)
from mlops_pipeline.settings import Settings

REGISTRY_PROBE_SECONDS = 5.0
#: What MLflow exports to the environment when pointed at a store (for its own subprocesses).
MLFLOW_EXPORTS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@dataclass(frozen=True)
class GateOptions:
    """The `gate` command's choices (see its `--help`)."""

    config: str | None = None  # `--config` as typed: for the baseline hint (read: settings')
    months: tuple[int, ...] = (1, 2, 3)
    sample: float | None = None
    sample_rows: int | None = None
    data_dir: str | None = None
    reference: str = "auto"  # auto | champion | baseline | none
    baseline: str | None = None
    write_baseline: bool = False
    shuffle_labels: bool = False
    verbose: bool = False


# ---- reading the run ---------------------------------------------------------------------------
_PREFERRED = ["drift_share", "score", "worst_null_rate", "rows", "duplicate_rows", "failing_columns"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def key_metric(metadata: dict[str, Any]) -> str:
    """The one number a reviewer wants per check, chosen from the check's own metadata."""
    table = metadata.get("metrics")
    records = getattr(getattr(table, "value", None), "records", None)
    if records:
        first = records[0].data
        text = f"{first['metric']}={_fmt(first['candidate'])}"
        return text + (f" (champion {_fmt(first['champion'])})" if first.get("champion") is not None else "")
    for key in _PREFERRED:
        if key in metadata and metadata[key].value not in ("", None):
            return f"{key}={_fmt(metadata[key].value)}"
    if "actual" in metadata:
        return f"content_id={str(metadata['actual'].value)[:12]}"
    return "-"


def rows_from_result(result, defined: list[tuple[str, str]]) -> list[CheckRow]:
    """Every defined check, in definition order; the ones that never ran are listed as such."""
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()
    }
    rows = []
    for asset, check in defined:
        e = evaluations.get((asset, check))
        if e is None:
            rows.append(CheckRow(asset, check, None, "-", "-", "not executed: an upstream step failed "
                                 "or a blocking check stopped the run"))
            continue
        rows.append(CheckRow(asset, check, bool(e.passed), e.severity.value, key_metric(e.metadata),
                             e.description or ""))
    return rows


def defined_checks(settings: Settings) -> list[tuple[str, str]]:
    """The checks of the `mlops_loop` job's assets (not of other jobs' assets in the location)."""
    from mlops_pipeline.defs.definitions import build_definitions

    defs = build_definitions(settings)
    selected = defs.resolve_job_def("mlops_loop").asset_layer.selected_asset_keys
    graph = defs.resolve_asset_graph()
    order = {key.to_user_string(): i for i, key in enumerate(graph.toposorted_asset_keys)}
    keys = [(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys if k.asset_key in selected]
    return sorted(keys, key=lambda k: (order.get(k[0], 99), k[1]))


# ---- the reference -----------------------------------------------------------------------------
def registry_champion(tracking_uri: str, name: str):
    """(client, champion version or None, why) for a registry that answers; (None, None, why) if not.

    An HTTP registry is probed first, once, with a short timeout: an unreachable server must make
    the gate fall back to the baseline in seconds, not after MLflow's minutes of retrying.
    """
    if not tracking_uri:
        return None, None, "MLFLOW_TRACKING_URI is not set"
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).exists():
        return None, None, f"{tracking_uri} does not exist"
    from mlops_pipeline.deployment.tags import CHAMPION
    from mlops_pipeline.deployment.tracking import MLflow

    try:
        if tracking_uri.startswith(("http://", "https://")):
            import httpx

            answer = httpx.get(tracking_uri.rstrip("/") + "/api/2.0/mlflow/registered-models/search",
                               params={"max_results": 1}, timeout=REGISTRY_PROBE_SECONDS)
            if answer.status_code != 200:
                raise RuntimeError(f"HTTP {answer.status_code} to a registry search")
        client = MLflow(tracking_uri=tracking_uri)
        client.client().search_registered_models(max_results=1)
        champion = client.version_by_alias(name, CHAMPION)
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable" here
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        return None, None, f"registry {tracking_uri} is not reachable: {first}"
    if champion is None:
        return client, None, f"registry {tracking_uri} has no {name}@{CHAMPION}"
    return client, champion, f"champion v{champion.version} of {tracking_uri}"


def trained_on(champion, snapshot_id: str) -> bool:
    """Whether the registry's `champion` (a model version) was trained on snapshot `snapshot_id`."""
    from mlops_pipeline.deployment.tags import SNAPSHOT_ID_TAG

    return (getattr(champion, "tags", None) or {}).get(SNAPSHOT_ID_TAG) == snapshot_id


def champion_retrained(reference, name: str, sample_rows, snapshot_id: str,
                       outcome: GateOutcome) -> dict[str, float] | None:
    """The holdout metrics of the champion's recorded config retrained on the gate's sample (the
    rows the candidate trained on), and `outcome.reference` saying so; None (with a note) when the
    champion has no manifest to retrain from."""
    from mlops_pipeline.deployment.tags import SNAPSHOT_ID_TAG
    from mlops_pipeline.training.reproduce import ReproduceError, retrain_on

    client, champion, why = reference
    try:
        fitted = retrain_on(client, name, str(champion.version), sample_rows)
    except ReproduceError as exc:
        outcome.notes.append(f"{why}, but its config cannot be retrained on the sample ({exc}); "
                             "comparing with the baseline instead")
        return None
    theirs = (champion.tags or {}).get(SNAPSHOT_ID_TAG, "?")[:12]
    outcome.reference = (f"{why}: its recorded config retrained on this sample (snapshot "
                         f"{snapshot_id[:12]}); the champion itself was trained on snapshot {theirs}, "
                         "other rows")
    return {k: float(v) for k, v in fitted.metrics.items()}


# ---- the run -----------------------------------------------------------------------------------
def seed_mlflow_db(target: Path, cache_dir: Path) -> None:
    """Start the sandbox's SQLite registry from an empty, already-migrated copy.

    Creating an MLflow SQLite store runs every schema migration (seconds, more on a busy machine);
    the empty store is made once per MLflow version under `cache_dir` and copied from then on.
    """
    import os
    import shutil
    from importlib import metadata

    if target.exists():
        return
    template = cache_dir / f"mlflow-{metadata.version('mlflow')}-empty.db"
    try:
        if not template.exists():
            import mlflow

            cache_dir.mkdir(parents=True, exist_ok=True)
            fresh = cache_dir / f"{template.name}.{os.getpid()}.tmp"
            mlflow.MlflowClient(f"sqlite:///{fresh}").search_experiments()
            os.replace(fresh, template)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, target)
    except OSError:
        return  # no cache dir: the run creates the store itself, only slower


@contextlib.contextmanager
def mlflow_exports_undone() -> Iterator[None]:
    """Put back what MLflow exported while the sandboxed run pointed it at its own store.

    `mlflow.set_tracking_uri` (called by the run's MLflow client) also writes the URI to
    `os.environ`, so that MLflow's subprocesses inherit it; left there, the sandbox's deleted store
    would outlive the gate in the caller's process and in anything it starts afterwards.
    """
    saved = {key: os.environ.get(key) for key in MLFLOW_EXPORTS}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_isolated(settings: Settings, shuffle: bool, verbose: bool):
    """Run `mlops_loop` in `settings` (an isolated configuration) and return Dagster's result."""
    from threadpoolctl import threadpool_limits

    from mlops_pipeline.cli.common import run_loop

    run_config = {"ops": {"trained_model": {"config": {"shuffle_labels": True}}}} if shuffle else None
    seed_mlflow_db(settings.data_root / "mlflow" / "mlflow.db", settings.cache_dir)
    # One OpenMP thread: on a gate-sized sample HistGradientBoosting's threads mostly wait for each
    # other and, on a busy CI machine, spin. Histograms are summed per feature: the model is the same.
    with threadpool_limits(limits=1, user_api="openmp"), mlflow_exports_undone():
        return run_loop(run_config, verbose=verbose, say=print, settings=settings)


def run_gate(opts: GateOptions, settings: Settings) -> tuple[GateOutcome, dict[str, Any] | None]:
    """Run the gate in the user's `settings`; returns the outcome and, when the run trained a model,
    what a baseline file would record. Raises `GateSetupError` when it cannot start."""
    from mlops_pipeline.cli.run_output import error_summary
    from mlops_pipeline.spec import load_spec, resolve_path

    started = time.monotonic()
    # `--config` already in `settings` (`cli.resolve_config`); the default from the project.
    config = str(resolve_path(settings.dataset_config))
    spec = load_spec(config)
    plan = plan_sample(spec, settings.data_root, list(opts.months), opts.sample, opts.sample_rows)
    hint = refresh_hint(opts.config, plan)
    outcome = GateOutcome()

    # The reference is looked up before anything trains: a registry that must answer and does not
    # fails the gate in seconds.
    reference = None
    if opts.reference in ("auto", "champion"):
        client, champion, why = registry_champion(settings.resolved_tracking_uri, spec.name)
        if champion is not None:
            reference = (client, champion, why)
        elif opts.reference == "champion":
            raise GateSetupError(f"--reference champion, but {why}")
        else:
            outcome.notes.append(f"no registry champion to compare with ({why})")

    tmp = None if opts.data_dir else tempfile.TemporaryDirectory(prefix="mlops-gate-")
    sample_rows = None  # the sample's snapshot, when the champion must be retrained on it
    try:
        root = Path(opts.data_dir or tmp.name).resolve()  # type: ignore[union-attr]
        root.mkdir(parents=True, exist_ok=True)
        print(f"gate: {plan.describe()}, in {root}", flush=True)
        isolated = Settings.isolated(root, config, cache_home=settings.cache_home)
        land_sample(plan, spec, Path(spec.landing_glob(root)).parent)
        result = run_isolated(isolated, opts.shuffle_labels, opts.verbose)
        outcome.run_id = result.run_id
        outcome.run_success = result.success
        outcome.run_failures = [
            f"{e.step_key}: {error_summary(e.event_specific_data.error)}"
            for e in result.all_events
            if e.event_type_value == "STEP_FAILURE" and e.event_specific_data and e.event_specific_data.error
        ]
        outcome.rows = rows_from_result(result, defined_checks(isolated))
        try:
            trained = result.output_for_node("trained_model")
            features = result.output_for_node("training_features")
        except Exception:  # noqa: BLE001 - the run stopped before training: nothing to compare
            trained = features = None
        if trained is not None and reference is not None:  # read before the sandbox is removed
            from mlops_pipeline.data.features import read_features
            from mlops_pipeline.data.storage import Storage

            sandbox = Storage(root=isolated.storage_root)
            holdout = read_features(sandbox, features, spec, "holdout")
            if not trained_on(reference[1], trained.snapshot_id):
                sample_rows = sandbox.read_snapshot(trained.snapshot_id)
    finally:
        if tmp is not None:
            tmp.cleanup()

    record = None
    if trained is not None:
        holdout_rows = features.holdout_rows
        record = baseline_record(spec, plan.record(), trained, holdout_rows, hint)
        same_sample = None
        if reference is not None and not trained_on(reference[1], trained.snapshot_id):
            same_sample = champion_retrained(reference, spec.name, sample_rows, trained.snapshot_id, outcome)
            if same_sample is None:
                reference = None  # no manifest to retrain from: the baseline decides
        if reference is not None and same_sample is not None:
            outcome.rows.append(compare_row(trained.metrics, same_sample, spec,
                                            f"v{reference[1].version} retrained"))
        elif reference is not None:
            from mlops_pipeline.deployment.scoring import score_version

            client, champion, why = reference
            # Scored on the candidate's holdout, as the in-pipeline no_regression check does.
            champ_metrics = score_version(client, spec.name, str(champion.version), holdout, spec)
            outcome.reference = f"{why} (trained on this very sample, snapshot {trained.snapshot_id[:12]})"
            outcome.rows.append(compare_row(trained.metrics, champ_metrics, spec, f"v{champion.version}"))
        else:
            judge_against_baseline(outcome, spec, record, trained.metrics, reference=opts.reference,
                                   path=baseline_path(spec.name, opts.baseline),
                                   write_baseline=opts.write_baseline, hint=hint)
    else:
        outcome.notes.append("no model was trained, so there is nothing to compare with a reference")
    outcome.seconds = time.monotonic() - started
    return outcome, record
