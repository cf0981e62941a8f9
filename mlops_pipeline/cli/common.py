"""Helpers every command shares: the Dagster instance and the core's clients built from the process
`Settings`, the registry preflight, and running the loop (what it prints: `cli/run_output.py`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from mlops_pipeline.cli.run_output import StepPrinter
from mlops_pipeline.settings import Settings
from mlops_pipeline.spec import PROJECT_ROOT

#: Dagster's console logger silenced: the step lines say what happened, warnings included.
QUIET_LOGGERS = {"console": {"config": {"log_level": "CRITICAL"}}}
#: Libraries whose INFO chatter (table creation, uv project detection) only `--verbose` shows.
CHATTY_LOGGERS = ("mlflow", "alembic", "dagster")
REGISTRY_TIMEOUT_S = 5.0


class RegistryUnreachable(RuntimeError):
    """The tracking server / registry database named by MLFLOW_TRACKING_URI does not answer."""


def ensure_dagster_home(settings: Settings | None = None) -> Path:
    """The Dagster instance's directory (`DAGSTER_HOME`, default data/dagster_home), created with the
    project's dagster.yaml when new. Returned, not exported: callers open the instance there
    (`open_instance`) or hand it to the servers they start."""
    s = Settings.from_env() if settings is None else settings
    home = s.dagster_home_dir
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml = home / "dagster.yaml"
    if not instance_yaml.exists():
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", instance_yaml)
    return home


def open_instance(settings: Settings):
    """The persistent Dagster instance of `settings` (what `DagsterInstance.get()` would open with
    DAGSTER_HOME pointing there), created on first use."""
    import dagster as dg

    return dg.DagsterInstance.from_config(str(ensure_dagster_home(settings)))


def mlflow_client(settings: Settings, existing: bool = False):
    """The registry the loop's resources use, as the core's plain client (no Dagster); with
    `existing`, only after `require_registry` found it answering."""
    from mlops_pipeline.deployment.tracking import MLflow

    if existing:
        require_registry(settings)

    return MLflow(tracking_uri=settings.tracking_uri, ui_url=settings.mlflow_ui_url)


def storage_client(settings: Settings):
    """The storage the pipeline uses (local data dir or S3), so a version's snapshot is found."""
    from mlops_pipeline.data.storage import Storage

    return Storage(root=settings.storage_root or settings.data_dir, endpoint_url=settings.s3_endpoint_url)


# ---- the registry answers before anything trains ---------------------------------------------
def redact(uri: str) -> str:
    """The URI without a password (`user:***@host`), for messages and logs."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparseable URI>"
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def tracking_uri(settings: Settings) -> str:
    """The tracking URI the loop's resources will use (MLFLOW_TRACKING_URI, else embedded SQLite)."""
    return settings.resolved_tracking_uri


def check_registry(uri: str, timeout: float = REGISTRY_TIMEOUT_S, must_exist: bool = False,
                   data_root: Path | None = None) -> str:
    """Raise `RegistryUnreachable` within about `timeout` seconds unless the registry answers.

    Called before any training: a run that trains for minutes and then cannot register its model
    wastes the minutes and says less. HTTP(S) servers are asked for one registered model (no
    retries); database URIs are connected to; a SQLite file only needs a directory we can write —
    or, with `must_exist` (commands that read a registry: promote, rollback, explain, reproduce),
    must already be there, so a mistyped path is not read as an empty registry. A SQLite file in
    a directory that does not exist is created only under `data_root` (the data dir this project
    manages): elsewhere a missing directory is a typo, not a new registry.
    Returns the (redacted) URI that answered.
    """
    shown = redact(uri)
    scheme = urlsplit(uri).scheme
    fix = ("start the tracking server, or unset MLFLOW_TRACKING_URI to use the embedded SQLite "
           "registry under the data dir")
    if scheme in ("http", "https"):
        import httpx

        url = uri.rstrip("/") + "/api/2.0/mlflow/registered-models/search"
        try:
            answer = httpx.get(url, params={"max_results": 1}, timeout=timeout)
        except httpx.HTTPError as exc:
            raise RegistryUnreachable(
                f"the MLflow registry at {shown} does not answer ({type(exc).__name__}: "
                f"{redact(str(exc))[:160]}); {fix}") from None
        if answer.status_code != 200:
            raise RegistryUnreachable(
                f"the MLflow registry at {shown} answered HTTP {answer.status_code} to a registry "
                f"search; check the URL and credentials") from None
        return shown
    if scheme == "sqlite":
        path = uri.removeprefix("sqlite:///")
        parent = Path(path).parent
        if must_exist and not Path(path).is_file():
            raise RegistryUnreachable(
                f"no MLflow registry at {shown}: nothing was registered there yet (run `mlops-pipeline "
                "materialize` first, or check MLFLOW_TRACKING_URI and MLOPS_DATA_DIR)")
        managed = data_root is not None and parent.resolve().is_relative_to(Path(data_root).resolve())
        if not parent.exists() and not managed:
            raise RegistryUnreachable(
                f"the SQLite registry's directory {parent} does not exist: a typo in "
                "MLFLOW_TRACKING_URI? Create the directory to start a registry there, or unset "
                "MLFLOW_TRACKING_URI to use the one under the data dir")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryUnreachable(f"cannot create the SQLite registry {shown}: {exc}") from None
        if not os.access(parent, os.W_OK):
            raise RegistryUnreachable(f"the SQLite registry's directory {parent} is not writable")
        return shown
    if scheme.startswith(("postgresql", "mysql", "mssql")):
        import sqlalchemy as sa

        args = {"connect_timeout": int(max(timeout, 1))} if scheme.startswith(("postgresql", "mysql")) else {}
        try:
            engine = sa.create_engine(uri, connect_args=args)
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
        except Exception as exc:  # noqa: BLE001 - any driver error means "does not answer"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RegistryUnreachable(
                f"the registry database {shown} does not answer ({redact(first)[:160]}); {fix}") from None
        return shown
    raise RegistryUnreachable(f"MLFLOW_TRACKING_URI={shown}: unsupported scheme {scheme!r}")


def require_registry(settings: Settings) -> None:
    """For a command that reads an existing registry (promote, rollback, explain, reproduce): raise
    `RegistryUnreachable` within `MLOPS_REGISTRY_TIMEOUT` seconds unless it answers, and bound
    MLflow's own client the same way, so no later call sits in MLflow's default retries (~250 s)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.registry_timeout))
    try:
        check_registry(settings.resolved_tracking_uri, timeout=settings.registry_timeout, must_exist=True)
    except RegistryUnreachable as exc:
        raise RegistryUnreachable(
            f"{exc} (gave up after MLOPS_REGISTRY_TIMEOUT={settings.registry_timeout}s)") from None


# ---- running a job and saying what it does ----------------------------------------------------

@contextlib.contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Lift the INFO chatter of MLflow and friends to WARNING for the duration, unless verbose."""
    if verbose:
        yield
        return
    import mlflow  # noqa: F401 - MLflow sets its logger's level on import: import first, then lift it

    saved = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def execute_job(job, instance, *, verbose: bool = False, run_config: dict | None = None,
                say: Callable[[str], None] | None = print, **kwargs):
    """`job.execute_in_process` with one printed line per step; Dagster's event log only if verbose."""
    run_id = str(uuid.uuid4())
    config = dict(run_config or {})
    if not verbose:
        config.setdefault("loggers", QUIET_LOGGERS)
    if say is not None:
        instance.add_event_listener(run_id, StepPrinter(say))
    with quiet_libraries(verbose):
        return job.execute_in_process(instance=instance, run_config=config, run_id=run_id, **kwargs)


def preflight(settings: Settings) -> None:
    """Before a run launches: raise `spec.ConfigError` (one line) when the landed data lacks a
    column the dataset config reads, or its target cannot have a gate metric (f1 on multi-class).
    Reads schemas only (and the label's columns for a binary-only gate metric)."""
    from mlops_pipeline.data.columns import check_landed_data
    from mlops_pipeline.spec import load_spec

    check_landed_data(load_spec(settings.dataset_config), storage_client(settings))


def run_loop(run_config: dict | None = None, raise_on_error: bool = False, *, verbose: bool = True,
             say: Callable[[str], None] | None = None, settings: Settings | None = None,
             checked: bool = False):
    """Execute the `mlops_loop` job in this process, configured by `settings` (default: read from
    the environment now) and recorded in its Dagster instance.

    The defaults keep what tests and the gate rely on (Dagster's log as before, nothing printed);
    the CLI passes `verbose=False, say=print` and the settings it parsed. The landed data is
    checked against the config first (`preflight`) unless the caller already did (`checked`).
    """
    from mlops_pipeline.defs.definitions import build_definitions
    from mlops_pipeline.defs.runtime import tune_collector

    s = Settings.from_env() if settings is None else settings
    if not checked:
        preflight(s)
    tune_collector()  # this process runs the job and ends, like a run worker
    job = build_definitions(s).resolve_job_def("mlops_loop")
    with open_instance(s) as instance:
        return execute_job(job, instance, verbose=verbose, run_config=run_config, say=say,
                           raise_on_error=raise_on_error)
