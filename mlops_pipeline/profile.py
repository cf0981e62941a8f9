"""Which infrastructure the loop runs on, chosen by environment variables only (docs/production.md).

The code is the same for both profiles; only where things live changes:

- `local` (default): data dir on disk, SQLite for Dagster and MLflow, Dagster's filesystem I/O manager.
- `production` (`MLOPS_PROFILE=production`): snapshots/landing/reports/Dagster I/O on S3
  (`MLOPS_STORAGE_ROOT=s3://bucket/prefix`, `MLOPS_S3_ENDPOINT_URL` for a non-AWS store), an MLflow
  tracking server (`MLFLOW_TRACKING_URI=http://...`), a Postgres prediction store
  (`MLOPS_PREDICTIONS_URL=postgresql://...`) and a Postgres Dagster instance (`DAGSTER_HOME` holding
  `deploy/dagster.yaml`).

The S3 root alone already moves storage and the I/O manager to S3 (`defs.resources.io_manager`); the
profile variable adds a check at load time that nothing was left on a local default, because in
production a forgotten variable would otherwise silently write to a container's disk that
disappears with it. No Dagster here: the CLI and tests check a profile without loading it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PROFILE_ENV = "MLOPS_PROFILE"
PRODUCTION = "production"

#: What the production profile needs, and the form each value must have.
PRODUCTION_ENV: dict[str, tuple[tuple[str, ...], str]] = {
    "MLOPS_STORAGE_ROOT": (("s3://",), "S3 prefix for snapshots, landing, reports and Dagster I/O"),
    "MLFLOW_TRACKING_URI": (("http://", "https://"), "URL of the MLflow tracking server"),
    "MLOPS_PREDICTIONS_URL": (("postgresql",), "SQLAlchemy URL of the Postgres prediction store"),
}


class ProfileError(RuntimeError):
    """The profile is unknown, or production is missing a variable; the message lists each one."""


def profile(env: Mapping[str, str] | None = None) -> str:
    """The profile name (`MLOPS_PROFILE`, default `local`), lower-cased."""
    env = os.environ if env is None else env
    return (env.get(PROFILE_ENV) or "local").strip().lower()


def check_profile(env: Mapping[str, str] | None = None) -> None:
    """Refuse to load a production code location that would fall back to local files or SQLite."""
    env = os.environ if env is None else env
    name = profile(env)
    if name not in ("local", PRODUCTION):
        raise ProfileError(f"{PROFILE_ENV}={name!r}: expected 'local' or '{PRODUCTION}'")
    if name != PRODUCTION:
        return
    problems = []
    for var, (prefixes, what) in PRODUCTION_ENV.items():
        value = env.get(var, "")
        if not value:
            problems.append(f"{var} is not set ({what})")
        elif not value.startswith(prefixes):
            problems.append(f"{var}={value!r} should start with {' or '.join(prefixes)} ({what})")
    if problems:
        raise ProfileError(f"{PROFILE_ENV}={PRODUCTION} but: " + "; ".join(problems))
