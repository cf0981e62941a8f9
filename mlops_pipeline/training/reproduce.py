"""Rebuild a registered model version from its manifest and prove it is the same model.

A version's `manifest.yaml` (logged on its MLflow run by `trained_model`) records the dataset snapshot
id, the full dataset spec, the training config, the seeds and the environment. Reproducing means:
read that, warn where today's environment differs, load the very snapshot by id (refusing a missing or
altered one), retrain through `fit_and_score` (the function the asset itself calls), and compare the
new model's holdout predictions with the registered model's, row by row.

Nothing is checked out: a different git SHA or lockfile is reported, not fixed, because the answer
"does today's checkout still rebuild v7?" is the useful one in CI and in an audit.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops_pipeline.deployment.tags import (
    EXTERNAL_ORIGIN,
    MANIFEST_MODEL_SEED_TAG,
    MANIFEST_SNAPSHOT_TAG,
    ORIGIN_TAG,
)

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.deployment.tracking import MLflow


class ReproduceError(RuntimeError):
    """The version cannot be rebuilt at all (no manifest, snapshot missing or altered)."""


@dataclass(frozen=True)
class PredictionDiff:
    """How far a rebuilt model's holdout predictions are from the registered one's (`compare_predictions`)."""

    rows: int
    differing_rows: int
    max_abs_diff: float

    @property
    def identical(self) -> bool:
        return self.differing_rows == 0

    @property
    def share_differing(self) -> float:
        return self.differing_rows / self.rows if self.rows else 0.0


@dataclass
class Reproduction:
    """What `reproduce` found for one version: environment warnings, the rebuilt holdout metrics beside
    the recorded ones and the prediction diff, which `cmd_reproduce` turns into an exit code."""

    name: str
    version: str
    run_id: str
    snapshot_id: str
    seed: int
    warnings: list[str] = field(default_factory=list)
    diff: PredictionDiff | None = None
    recorded_metrics: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def compare_predictions(registered: np.ndarray, rebuilt: np.ndarray, atol: float = 0.0) -> PredictionDiff:
    """Exact by default: a reproduction is only "identical" when every score is bit-for-bit equal.

    Scores are 1-D (positive-class probability, value) or (n, k) class probabilities for a
    multi-class model, where a row differs when any of its classes' probabilities does."""
    a = np.asarray(registered, dtype="float64")
    b = np.asarray(rebuilt, dtype="float64")
    if a.shape != b.shape:
        raise ReproduceError(f"holdout sizes differ: registered model scored {a.shape}, rebuilt {b.shape}")
    delta = np.abs(a - b)
    # NaN == NaN counts as equal (a regression model can legitimately predict NaN nowhere, but be safe).
    differs = (delta > atol) | (np.isnan(a) != np.isnan(b))
    if differs.ndim == 2:
        differs = differs.any(axis=1)
    return PredictionDiff(
        rows=int(len(differs)),
        differing_rows=int(differs.sum()),
        max_abs_diff=float(np.nanmax(delta)) if a.size and not np.isnan(delta).all() else 0.0,
    )


def resolve_version(mlflow: MLflow, name: str, ref: str):
    """`7`, `v7`, `champion` or `@champion`: a number is a version, anything else an alias."""
    from mlflow.exceptions import MlflowException

    ref = ref.strip()
    try:
        if ref.lstrip("v").isdigit():
            return mlflow.client().get_model_version(name, ref.lstrip("v"))
        mv = mlflow.version_by_alias(name, ref.lstrip("@"))
    except MlflowException as exc:
        where = mlflow.resolved_tracking_uri
        raise ReproduceError(f"{name} version {ref!r} not found in {where}: {exc}") from exc
    if mv is None:
        raise ReproduceError(f"{name} has no alias {ref!r} in {mlflow.resolved_tracking_uri}")
    return mv


def read_manifest(mlflow: MLflow, run_id: str) -> dict[str, Any]:
    """The `manifest.yaml` artifact of the training run; the flat tags alone cannot rebuild a model
    (they lack the full dataset spec), so a run without the artifact is not reproducible."""
    import tempfile

    import mlflow as mlflow_lib
    import yaml

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.configure()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow_lib.artifacts.download_artifacts(
                run_id=run_id, artifact_path="manifest.yaml", dst_path=tmp,
                tracking_uri=mlflow.resolved_tracking_uri,
            )
        except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing file
            raise ReproduceError(f"run {run_id} has no readable manifest.yaml: {exc}") from exc
        return yaml.safe_load(Path(path).read_text())


def environment_warnings(manifest: dict[str, Any], tags: dict[str, str] | None = None) -> list[str]:
    """One line per difference between the recorded environment and this one."""
    from mlops_pipeline.spec import PROJECT_ROOT
    from mlops_pipeline.training.manifest import file_sha256, git_state, package_versions

    out: list[str] = []
    lock_now = file_sha256(PROJECT_ROOT / "uv.lock")
    lock_then = manifest.get("uv_lock_sha256")
    if lock_then != lock_now:
        out.append(f"uv.lock sha256 differs: recorded {str(lock_then)[:12]}, now {str(lock_now)[:12]}")
    recorded_pkgs = manifest.get("packages", {}) or {}
    current_pkgs = package_versions(list(recorded_pkgs)) if recorded_pkgs else {}
    for pkg, then in recorded_pkgs.items():
        if current_pkgs.get(pkg) != then:
            out.append(f"package {pkg}: recorded {then}, installed {current_pkgs.get(pkg)}")
    git_then = manifest.get("git", {}) or {}
    git_now = git_state()
    if git_then.get("sha") != git_now["sha"]:
        out.append(f"git SHA differs: recorded {git_then.get('sha')}, checkout {git_now['sha']}")
    if git_then.get("dirty"):
        unpinned = git_then.get("uncommitted_inputs") or {}
        out.append("the version was trained from a dirty working tree: uncommitted changes were not recorded"
                   + "".join(f"; {path} was {why}" for path, why in unpinned.items()))
    for role, recorded in (manifest.get("inputs") or {}).items():
        # The config and contract that trained the version, by hash: an edit since is named.
        path = Path(recorded.get("path") or "")
        now = file_sha256(path if path.is_absolute() else PROJECT_ROOT / path)
        if recorded.get("sha256") != now:
            state = "is missing now" if now is None else f"now {now[:12]}"
            out.append(f"{role} file {path} changed since training: recorded sha256 "
                       f"{str(recorded.get('sha256'))[:12]}, {state}")
    python_now = sys.version.split()[0]
    if manifest.get("python") and manifest["python"] != python_now:
        out.append(f"python: recorded {manifest['python']}, running {python_now}")
    if manifest.get("platform") and manifest["platform"] != platform.platform():
        out.append(f"platform: recorded {manifest['platform']}, running {platform.platform()}")
    for key, value in (tags or {}).items():
        # The run's flat tags are written from the same manifest; disagreement means one was edited.
        if key == MANIFEST_SNAPSHOT_TAG and value != manifest.get("dataset_snapshot_id"):
            out.append(f"run tag {key}={value[:12]} disagrees with manifest.yaml")
        if key == MANIFEST_MODEL_SEED_TAG and value != str(manifest.get("seeds", {}).get("model")):
            out.append(f"run tag {key}={value} disagrees with manifest.yaml seed "
                       f"{manifest.get('seeds', {}).get('model')}")
    return out


def load_snapshot(storage: Storage, snapshot_id: str):
    """The exact snapshot by id, re-hashed: a replaced file must not be silently trained on."""
    from mlops_pipeline.data.snapshots import stored_content_id

    path = storage.snapshot_uri(snapshot_id)
    if not storage.has_snapshot(snapshot_id):
        raise ReproduceError(f"snapshot {snapshot_id} is missing from storage (expected {path})")
    actual = stored_content_id(storage, snapshot_id)  # a chunk at a time, before reading it whole
    if actual != snapshot_id:
        raise ReproduceError(
            f"snapshot file {path} hashes to {actual[:12]}, not its id {snapshot_id[:12]}: it was "
            "altered or replaced, so the recorded data is gone"
        )
    return storage.read_snapshot(snapshot_id)


def reproduce(
    mlflow: MLflow,
    storage: Storage,
    name: str,
    ref: str,
    atol: float = 0.0,
    log=print,
) -> Reproduction:
    """Rebuild version `ref` (number or alias) of `name` from its manifest and compare its holdout
    predictions with the registered model's, within `atol`; environment differences are only warnings.
    Raises `ReproduceError` when it cannot be rebuilt; differing predictions are reported in `diff`."""
    from mlops_pipeline.data.preparation import prepare
    from mlops_pipeline.deployment.scoring import load_version
    from mlops_pipeline.spec import DatasetSpec
    from mlops_pipeline.training.fit import fit_and_score
    from mlops_pipeline.training.model import predict_scores
    from mlops_pipeline.training.search import fitted_spec

    mv = resolve_version(mlflow, name, ref)
    version = str(mv.version)
    if (mv.tags or {}).get(ORIGIN_TAG) == EXTERNAL_ORIGIN:
        raise ReproduceError(f"{name} v{version} was trained outside the loop (origin=external): "
                             "no snapshot or manifest to rebuild it from")
    manifest = read_manifest(mlflow, mv.run_id)
    run_tags = mlflow.client().get_run(mv.run_id).data.tags
    try:
        # With model.search, the parameters it chose (recorded): reproduce never searches.
        spec = fitted_spec(DatasetSpec.model_validate(manifest["config"]["dataset"]), manifest)
        seed = int(manifest["seeds"]["model"])
        snapshot_id = manifest["dataset_snapshot_id"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ReproduceError(f"manifest of {name} v{version} is incomplete: {exc}") from exc
    training = manifest["config"].get("training", {}) or {}
    result = Reproduction(name, version, mv.run_id, snapshot_id, seed)
    result.recorded_metrics = dict(manifest.get("holdout", {}).get("metrics", {}))
    log(f"{name} v{version}: run {mv.run_id}, snapshot {snapshot_id[:12]}, seed {seed}, "
        f"spec {manifest['config'].get('fingerprint', '?')}, "
        f"shuffle_labels={training.get('shuffle_labels', False)}")

    result.warnings = environment_warnings(manifest, run_tags)
    for line in result.warnings:
        log(f"WARNING: {line}")

    df = load_snapshot(storage, snapshot_id)
    fitted = fit_and_score(prepare(df, spec).frame, spec, seed, bool(training.get("shuffle_labels", False)))
    result.metrics = fitted.metrics
    recorded_rows = manifest.get("holdout", {}).get("rows")
    if recorded_rows is not None and int(recorded_rows) != len(fitted.X_hold):
        log(f"WARNING: holdout has {len(fitted.X_hold)} rows, the manifest recorded {recorded_rows}")

    # As the gate and serving load it, whatever its flavor (a `model.train` PythonModel: pyfunc).
    registered = load_version(mlflow, name, version)
    result.diff = compare_predictions(
        predict_scores(registered, fitted.X_hold, spec.task), fitted.scores, atol
    )
    return result


def retrain_on(mlflow: MLflow, name: str, version: str, snapshot: Any):
    """Version `version`'s recorded config (dataset spec, model seed, training config) trained on
    `snapshot` (a raw snapshot frame) instead of its own data, through `fit_and_score`: a reference
    trained by the same procedure on the same rows as a candidate (the CI gate's sample). Returns
    the `Fitted`, whose `metrics` are on the holdout that config splits from `snapshot`. Raises
    `ReproduceError` when the version has no readable manifest."""
    from mlops_pipeline.data.preparation import prepare
    from mlops_pipeline.spec import DatasetSpec
    from mlops_pipeline.training.fit import fit_and_score
    from mlops_pipeline.training.search import fitted_spec

    mv = resolve_version(mlflow, name, version)
    manifest = read_manifest(mlflow, mv.run_id)
    try:
        # With model.search, the parameters it chose (recorded): reproduce never searches.
        spec = fitted_spec(DatasetSpec.model_validate(manifest["config"]["dataset"]), manifest)
        seed = int(manifest["seeds"]["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ReproduceError(f"manifest of {name} v{mv.version} is incomplete: {exc}") from exc
    training = manifest["config"].get("training", {}) or {}
    shuffle = bool(training.get("shuffle_labels", False))
    return fit_and_score(prepare(snapshot, spec).frame, spec, seed, shuffle)
