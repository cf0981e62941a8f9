"""The run manifest: everything needed to rebuild a model version, attached to it.

Logged as `manifest.yaml` on the MLflow run and flattened into tags on the run and the model
version, so "can I rebuild this model?" has an answer in the registry itself.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mlops_pipeline.deployment.tags import MANIFEST_SNAPSHOT_TAG, MANIFEST_TAG_PREFIX
from mlops_pipeline.spec import PROJECT_ROOT

KEY_PACKAGES = [
    "mlops-pipeline", "dagster", "mlflow", "scikit-learn", "pandas", "numpy", "pandera",
    "evidently", "pyarrow", "lightgbm", "xgboost",  # the boosters `model.estimator` may name
]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def shown_path(path: Path) -> str:
    """A path relative to the project root when under it (as committed), else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def uncommitted(path: Path) -> str | None:
    """Why git's SHA does not pin `path`: 'untracked', 'modified', 'outside the checkout' (or
    ignored, or no git at all), or None when it is committed as it is on disk."""
    rel = shown_path(path)
    if Path(rel).is_absolute():
        return "outside the checkout"
    tracked = _git("ls-files", "--", rel)
    if tracked is None:
        return "not under git"
    if not tracked:
        return "untracked"
    return "modified" if _git("status", "--porcelain", "--", rel) else None


def git_state(paths: list[Path] | tuple[Path, ...] = ()) -> dict[str, Any]:
    """HEAD's SHA and whether the tree differs from it: tracked changes anywhere, plus any of
    `paths` (the files a run used, e.g. its config and contract) that git does not pin."""
    sha = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    inputs = {shown_path(p): why for p in paths if (why := uncommitted(p))}
    dirty = (bool(status) or bool(inputs)) if status is not None else None
    out: dict[str, Any] = {"sha": sha or "unknown", "dirty": dirty}
    if inputs:
        out["uncommitted_inputs"] = inputs
    return out


def input_files(paths: dict[str, Path | None]) -> dict[str, dict[str, str | None]]:
    """Each file a run read (by role: config, contract): its path and SHA-256."""
    return {
        role: {"path": shown_path(p), "sha256": file_sha256(Path(p))}
        for role, p in paths.items() if p is not None
    }


def file_sha256(path: Path) -> str | None:
    """Hex SHA-256 of the file's bytes, or None when it does not exist (recorded as such, not an error)."""
    if not path.exists():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: The code that decides what a model is trained from and how (under the package): the data path
#: (landing, snapshot, contract, preparation), training, the spec, and their Dagster wiring.
TRAINING_CODE = ("data", "training", "spec.py", "spec_sections.py", "spec_search.py", "spec_errors.py",
                 "defs/data", "defs/training")


def code_digest(package: Path = PROJECT_ROOT / "mlops_pipeline") -> str:
    """SHA-256 over the training code's Python files (`TRAINING_CODE`: paths and bytes, in sorted
    order): equal digests mean the same code trained, committed or not, which git's SHA alone cannot
    say of a dirty tree."""
    h = hashlib.sha256()
    files: list[Path] = []
    for part in TRAINING_CODE:
        path = package / part
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else [])
    for f in sorted(files):
        h.update(f"{f.relative_to(package).as_posix()}\0".encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def package_versions(names: list[str] = KEY_PACKAGES) -> dict[str, str]:
    """Installed version of each package, "not installed" for a missing one, so every name gets an entry."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_manifest(
    *,
    snapshot_id: str,
    seeds: dict[str, int],
    config: dict[str, Any],
    dagster_run_id: str,
    extra: dict[str, Any] | None = None,
    inputs: dict[str, Path | None] | None = None,
) -> dict[str, Any]:
    """The manifest; `inputs` are the files the run read by role (`config`, `contract`): their
    SHA-256 is recorded and, when git does not pin them, the tree counts as dirty."""
    files = {role: Path(p) for role, p in (inputs or {}).items() if p is not None}
    return {
        "git": git_state(tuple(files.values())),
        "inputs": input_files(files),
        "dataset_snapshot_id": snapshot_id,
        "uv_lock_sha256": file_sha256(PROJECT_ROOT / "uv.lock"),
        "code_sha256": code_digest(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "seeds": seeds,
        "dagster_run_id": dagster_run_id,
        "config": config,
        **(extra or {}),
    }


def manifest_tags(manifest: dict[str, Any]) -> dict[str, str]:
    """The manifest's key fields as flat string tags (searchable in the MLflow UI)."""
    p = MANIFEST_TAG_PREFIX
    tags = {
        f"{p}git_sha": str(manifest["git"]["sha"]),
        f"{p}git_dirty": str(manifest["git"]["dirty"]).lower(),
        MANIFEST_SNAPSHOT_TAG: manifest["dataset_snapshot_id"],
        f"{p}uv_lock_sha256": str(manifest["uv_lock_sha256"]),
        **({f"{p}code_sha256": manifest["code_sha256"]} if manifest.get("code_sha256") else {}),
        f"{p}python": manifest["python"],
        f"{p}dagster_run_id": manifest["dagster_run_id"],
        f"{p}config_fingerprint": str(manifest["config"].get("fingerprint", "")),
    }
    tags.update({f"{p}{role}_sha256": str(f.get("sha256"))
                 for role, f in (manifest.get("inputs") or {}).items()})
    tags.update({f"{p}seed.{k}": str(v) for k, v in manifest["seeds"].items()})
    tags.update({f"{p}pkg.{k}": v for k, v in manifest["packages"].items()})
    return tags
