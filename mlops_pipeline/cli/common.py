"""Helpers every command shares: the Dagster instance, the dataset choice, the registry preflight,
running the loop and saying what it did.

A run prints one line per step as it ends (duration, outcome, each check's verdict) and then a
summary: the candidate's holdout metrics next to the champion's, and the decision. Dagster's own
event stream (a DEBUG line per event, hundreds per run) is shown only with `--verbose`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mlops_pipeline.spec import PROJECT_ROOT, data_dir

#: Dagster's console logger silenced: the step lines say what happened, warnings included.
QUIET_LOGGERS = {"console": {"config": {"log_level": "CRITICAL"}}}
#: Libraries whose INFO chatter (table creation, uv project detection) only `--verbose` shows.
CHATTY_LOGGERS = ("mlflow", "alembic", "dagster")
REGISTRY_TIMEOUT_S = 5.0


class RegistryUnreachable(RuntimeError):
    """The tracking server / registry database named by MLFLOW_TRACKING_URI does not answer."""


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME defaults to data/dagster_home, holding the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or data_dir() / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    instance_yaml = home / "dagster.yaml"
    if not instance_yaml.exists():
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", instance_yaml)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def set_dataset(config: str | None) -> None:
    if config:
        os.environ["MLOPS_DATASET_CONFIG"] = str(Path(config).resolve())


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


def tracking_uri() -> str:
    """The tracking URI the loop's resources will use (MLFLOW_TRACKING_URI, else embedded SQLite)."""
    from mlops_pipeline.deployment.registry import default_tracking_uri

    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def check_registry(uri: str | None = None, timeout: float = REGISTRY_TIMEOUT_S) -> str:
    """Raise `RegistryUnreachable` within about `timeout` seconds unless the registry answers.

    Called before any training: a run that trains for minutes and then cannot register its model
    wastes the minutes and says less. HTTP(S) servers are asked for one registered model (no
    retries); database URIs are connected to; a SQLite file only needs a directory we can write.
    Returns the (redacted) URI that answered.
    """
    uri = uri or tracking_uri()
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


# ---- running a job and saying what it does ----------------------------------------------------
@dataclass
class StepLine:
    seconds: float | None
    outcome: str
    name: str
    detail: str = ""


def _fmt_seconds(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.1f}s"


@dataclass
class StepPrinter:
    """Event listener: one line per materialized asset or evaluated check, when its step ends.

    Passing checks of one step are folded into one line (a step may run a dozen); every failed or
    warning check gets its own. Warnings the run's code logs are printed as they come.
    """

    say: Callable[[str], None] = print
    lines: list[StepLine] = field(default_factory=list)
    _pending: dict[str, list[StepLine]] = field(default_factory=dict)
    _shown: set = field(default_factory=set)  # (key, value) pairs already printed once

    def __call__(self, entry) -> None:
        event = entry.get_dagster_event() if entry.is_dagster_event else None
        if event is None:
            self._log_message(entry)
            return
        if event.step_key is None:
            return
        pending = self._pending.setdefault(event.step_key, [])
        kind = event.event_type_value
        data = event.event_specific_data
        if kind == "ASSET_MATERIALIZATION":
            mat = data.materialization
            detail = _asset_detail(mat.metadata, self._shown)
            pending.append(StepLine(None, "ok", mat.asset_key.to_user_string(), detail))
        elif kind == "ASSET_CHECK_EVALUATION":
            outcome = "passed" if data.passed else ("FAILED" if data.severity.value == "ERROR" else "warn")
            name = f"{data.asset_key.to_user_string()}:{data.check_name}"
            pending.append(StepLine(None, outcome, name, data.description or ""))
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            seconds = getattr(data, "duration_ms", None)
            lines = self._fold(self._pending.pop(event.step_key, []))
            if kind == "STEP_FAILURE":
                message = error_summary(getattr(data, "error", None))
                if "blocking asset checks failed" in message:
                    lines.append(StepLine(None, "blocked", event.step_key, "downstream steps do not run"))
                else:
                    lines.append(StepLine(None, "ERROR", event.step_key,
                                          f"{message} (--verbose shows the stack trace)"))
            elif kind == "STEP_SKIPPED":
                lines.append(StepLine(None, "skipped", event.step_key))
            if not lines:
                lines.append(StepLine(None, "ok", event.step_key))
            lines[0].seconds = None if seconds is None else seconds / 1000
            for line in lines:
                self._emit(line)

    def _log_message(self, entry) -> None:
        if entry.level < logging.WARNING:
            return
        message = (entry.user_message or "").strip()
        if message.startswith("Dependencies for step"):
            self._emit(StepLine(None, "not run", entry.step_key or "?", "an upstream step failed or "
                                "a blocking check failed"))
        elif message:
            self._emit(StepLine(None, "warning", entry.step_key or "run", message.splitlines()[0]))

    @staticmethod
    def _fold(lines: list[StepLine]) -> list[StepLine]:
        passed = [line for line in lines if line.outcome == "passed"]
        if len(passed) <= 3:
            return lines
        asset = passed[0].name.split(":")[0]
        names = ", ".join(line.name.split(":", 1)[1] for line in passed)
        folded = StepLine(None, "passed", f"{asset}: {len(passed)} checks", names)
        return [line for line in lines if line.outcome != "passed"] + [folded]

    def _emit(self, line: StepLine) -> None:
        self.lines.append(line)
        folded = line.outcome == "passed" and ": " in line.name
        limit = 400 if folded else 220 if line.outcome == "ERROR" else 100
        detail = line.detail if len(line.detail) <= limit else line.detail[: limit - 3] + "..."
        self.say(f"  {_fmt_seconds(line.seconds):>6}  {line.outcome:<7} {line.name:<40} {detail}".rstrip())


def error_summary(error) -> str:
    """The first line of the error that started it all (Dagster wraps a step's exception in its
    own `DagsterExecutionStepExecutionError`, whose first line names only the op)."""
    if error is None:
        return ""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    lines = (error.message or "").strip().splitlines()
    return lines[0] if lines else getattr(error, "cls_name", "") or ""


def _asset_detail(metadata: dict[str, Any], shown: set) -> str:
    """A few words about a materialization, from its metadata (a value printed before is not
    repeated: every asset carries the snapshot id)."""
    parts = []
    for key in ("snapshot_id", "dagster/row_count", "version", "champion_version", "previous_champion",
                "drift_share"):
        if key in metadata:
            value = getattr(metadata[key], "value", metadata[key])
            if isinstance(value, float):
                value = f"{value:.2f}"
            elif key == "snapshot_id":
                value = str(value)[:12]
            if (key, value) in shown:
                continue
            shown.add((key, value))
            parts.append(f"{key.removeprefix('dagster/')} {value}")
    return ", ".join(parts[:3])


@contextlib.contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Lift the INFO chatter of MLflow and friends to WARNING for the duration, unless verbose."""
    if verbose:
        yield
        return
    saved = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # MLflow sets its logger's level when it is first imported, which may happen inside the run.
    env_was = os.environ.get("MLFLOW_LOGGING_LEVEL")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        if env_was is None:
            os.environ.pop("MLFLOW_LOGGING_LEVEL", None)


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


def run_loop(run_config: dict | None = None, raise_on_error: bool = False, *, verbose: bool = True,
             say: Callable[[str], None] | None = None):
    """Execute the `mlops_loop` job in this process, recorded in the DAGSTER_HOME instance.

    The defaults keep what tests and the gate rely on (Dagster's log as before, nothing printed);
    the CLI passes `verbose=False, say=print`.
    """
    import dagster as dg

    from mlops_pipeline.definitions import build_definitions
    from mlops_pipeline.defs.runtime import tune_collector

    ensure_dagster_home()
    tune_collector()  # this process runs the job and ends, like a run worker
    job = build_definitions().resolve_job_def("mlops_loop")
    with dg.DagsterInstance.get() as instance:
        return execute_job(job, instance, verbose=verbose, run_config=run_config, say=say,
                           raise_on_error=raise_on_error)


# ---- the summary --------------------------------------------------------------------------------
@dataclass
class RunSummary:
    ok: bool
    decision: str
    lines: list[str]


def summarize(result) -> RunSummary:
    """The candidate's holdout metrics next to the champion's, and what the run decided."""
    evaluations = list(result.get_asset_check_evaluations())
    blocking = [e for e in evaluations if not e.passed and e.severity.value == "ERROR"]
    warned = [e for e in evaluations if not e.passed and e.severity.value != "ERROR"]

    def metadata(node: str) -> dict[str, Any]:
        try:
            mats = result.asset_materializations_for_node(node)
        except Exception:  # noqa: BLE001 - the node did not run
            return {}
        return {k: getattr(v, "value", v) for k, v in mats[0].metadata.items()} if mats else {}

    candidate = metadata("model_version")
    champion = metadata("champion_model")
    lines: list[str] = []
    version = candidate.get("version")
    prior = candidate.get("champion_version", "none")
    metrics = sorted(k.removeprefix("candidate_") for k in candidate if k.startswith("candidate_"))
    if metrics:
        head_c = f"candidate v{version}"
        head_p = "champion" + (f" v{prior}" if prior != "none" else " (none yet)")
        lines.append(f"{'holdout metric':<16} {head_c:>14} {head_p:>18}")
        for m in metrics:
            theirs = candidate.get(f"champion_{m}")
            lines.append(f"{m:<16} {candidate[f'candidate_{m}']:>14.4f} "
                         f"{'-' if theirs is None else f'{theirs:.4f}':>18}")
    if blocking:
        first = blocking[0]
        name = f"{first.asset_key.to_user_string()}:{first.check_name}"
        kept = f"kept champion v{prior}" if prior != "none" else "no champion"
        decision = f"blocked by check {name} ({kept}): {first.description or ''}".rstrip(": ")
    elif champion:
        moved = champion.get("previous_champion", "none")
        decision = (f"promoted v{champion.get('champion_version')} to champion"
                    + (f" (previous champion v{moved})" if moved not in ("none", None) else ""))
    elif not result.success:
        failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        decision = f"run failed at step {', '.join(failed) or '?'}" + (
            f"; kept champion v{prior}" if prior != "none" else "")
    else:
        decision = f"kept champion v{prior}" if prior != "none" else "no model promoted"
    lines.append(f"decision: {decision}")
    for e in warned:
        lines.append(f"warning: {e.asset_key.to_user_string()}:{e.check_name}: {e.description or ''}")
    lines.append(f"dagster run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    return RunSummary(ok=result.success and not blocking, decision=decision, lines=lines)


def print_summary(result, say: Callable[[str], None] = print) -> bool:
    """Print the summary; True when the run succeeded and no ERROR-severity check failed."""
    summary = summarize(result)
    say("")
    for line in summary.lines:
        say(line)
    return summary.ok

