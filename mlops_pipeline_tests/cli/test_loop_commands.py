"""The README's commands, run as a user runs them (subprocesses of the installed entry point)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pytest

from mlops_pipeline_tests.conftest import fresh_env

CLI = str(Path(sys.executable).parent / "mlops-pipeline")
STEP_LINE = re.compile(r"^\s+\d+\.\ds\s+(ok|passed|FAILED|warn|blocked|ERROR)\s+\S+")
#: Warnings every run used to print; each is now fixed or silenced where it arises.
NOISE = ["BetaWarning", "Hint: Inferred schema contains integer", "Failed to resolve installed pip version",
         " - DEBUG - ", "dagster dev", "DAGSTER_HOME environment variable is set"]


def _run(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_land_up_materialize_and_a_blocked_materialize_talk_like_a_tool(tmp_path):
    env = fresh_env(tmp_path / "data")

    landed = _run("land", "--months", "1", "2", "3", "--sample", "0.12", env=env)
    assert landed.returncode == 0, landed.stderr
    assert landed.stdout.count("landed ") == 3

    up = _run("up", "--no-ui", env=env)
    assert up.returncode == 0, up.stdout + up.stderr[-3000:]
    assert "decision: promoted v1 to champion" in up.stdout
    home = tmp_path / "data" / "dagster_home"
    assert (home / "dagster.yaml").exists()  # the run is recorded where the UI will look

    assert _run("land", "--months", "4", "--sample", "0.12", env=env).returncode == 0
    again = _run("materialize", env=env)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    lines = again.stdout.splitlines()
    assert len(lines) < 60, again.stdout
    steps = [ln for ln in lines if STEP_LINE.match(ln)]
    for name in ("dataset_snapshot", "training_features", "trained_model", "model_version", "champion_model",
                 "drift_report"):
        assert any(ln.split()[2] == name for ln in steps), (name, again.stdout)
    for check in ("eval_floor", "no_regression", "input_drift"):
        assert check in again.stdout
    # The summary: candidate and champion side by side, with values, and the decision.
    header = next(i for i, ln in enumerate(lines) if ln.startswith("holdout metric"))
    assert "candidate v2" in lines[header] and "champion v1" in lines[header]
    auc = next(ln for ln in lines[header:] if ln.startswith("roc_auc")).split()
    assert 0.5 < float(auc[1]) <= 1 and 0.5 < float(auc[2]) <= 1
    assert any(ln.startswith("decision: ") for ln in lines[header:])
    for noise in NOISE:
        assert noise not in again.stdout + again.stderr, noise

    blocked = _run("materialize", "--shuffle-labels", env=env)
    assert blocked.returncode == 1
    line = next(ln for ln in blocked.stdout.splitlines() if "model_version:eval_floor" in ln)
    assert "FAILED" in line.split()[:2] and "roc_auc" in line  # [duration] outcome name detail
    champion = "v2" if "decision: promoted v2" in again.stdout else "v1"
    assert f"decision: blocked by check model_version:eval_floor (kept champion {champion})" in blocked.stdout

    verbose = _run("materialize", "--shuffle-labels", "--verbose", env=env)
    assert verbose.returncode == 1
    assert "STEP_START" in verbose.stderr  # Dagster's own event log, on request

    os.environ["DAGSTER_HOME"], old = str(home), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            failed, ok = dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS
            assert [r.status for r in runs][:3] == [failed, failed, ok]
            assert instance.get_latest_materialization_event(dg.AssetKey("champion_model")) is not None
    finally:
        if old is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = old


@pytest.mark.parametrize("command", [["materialize"], ["up", "--no-ui"]])
def test_materialize_and_up_fail_in_seconds_when_the_registry_does_not_answer(tmp_path, command):
    env = fresh_env(tmp_path / "data", MLFLOW_TRACKING_URI=f"http://user:s3cret@127.0.0.1:{_closed_port()}")
    started = time.monotonic()

    proc = _run(*command, env=env, timeout=60)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert time.monotonic() - started < 30
    assert "does not answer" in proc.stderr and "MLFLOW_TRACKING_URI" in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout  # the password never reaches a message
    assert not (tmp_path / "data" / "landing").exists()  # nothing landed, nothing trained


def test_up_for_a_new_dataset_without_data_says_what_to_land_and_lands_no_flights(fair, tmp_path):
    empty = tmp_path / "empty"
    env = fresh_env(empty, MLOPS_DATASET_CONFIG=str(fair.config))

    proc = _run("up", "--no-ui", env=env, timeout=120)

    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"mlops-pipeline land --from FILE --config {fair.config}" in proc.stderr
    assert not (empty / "landing" / "flights").exists()


@pytest.mark.slow
def test_up_runs_a_new_dataset_named_by_mlops_dataset_config(fair):
    """README: `MLOPS_DATASET_CONFIG=data/configs/my_data.yaml uv run mlops-pipeline up`."""
    proc = _run("up", "--no-ui", env=fair.env(MLOPS_DATASET_CONFIG=str(fair.config)))

    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "decision: promoted v1 to champion" in proc.stdout
    assert "roc_auc" in proc.stdout
    assert not (fair.root / "landing" / "flights").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gone(pgid: int) -> bool:
    from mlops_pipeline.processes import group_alive

    return not group_alive(pgid)


def _wait(what: str, probe, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            raise AssertionError(f"`up` exited with {proc.returncode} before {what}:\n{tail}")
        try:
            if probe():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


@dataclass
class _Up:
    """A running `mlops-pipeline up` with both UIs answering: its process, log, UI port and the
    pids of the Dagster and MLflow servers it started."""

    proc: subprocess.Popen
    log: Path
    port: int
    dagster_pid: int
    mlflow_pid: int


def _start_up(tmp_path: Path, preexec_fn=None) -> _Up:
    """Land two small months and start `up` as a subprocess; return once both UIs answer."""
    env = fresh_env(tmp_path / "data")
    assert _run("land", "--months", "1", "2", "--sample", "0.06", env=env).returncode == 0
    port, mlflow_port = _free_port(), _free_port()
    log = tmp_path / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen([CLI, "up", "--port", str(port), "--mlflow-port", str(mlflow_port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
    try:
        _wait("the Dagster UI", lambda: httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2)
              .status_code == 200, 600, proc, log)
        _wait("the MLflow UI", lambda: httpx.get(f"http://127.0.0.1:{mlflow_port}/health", timeout=2)
              .status_code == 200, 120, proc, log)
        text = log.read_text()
        return _Up(proc, log, port, int(re.search(r"Dagster UI: .*\(pid (\d+)", text).group(1)),
                   int(re.search(r"MLflow UI: .*\(pid (\d+)", text).group(1)))
    except BaseException:
        proc.kill()
        proc.wait()
        raise


@pytest.mark.slow
def test_up_in_the_background_stops_both_servers_on_sigterm(tmp_path):
    """Started the way a script's background job starts (SIGINT inherited ignored), `up` still stops
    the Dagster and MLflow servers, and every process of theirs, on SIGTERM."""
    def background_job() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    up = _start_up(tmp_path, background_job)
    proc, log, port, dagster_pid, mlflow_pid = up.proc, up.log, up.port, up.dagster_pid, up.mlflow_pid
    try:
        assert not _gone(dagster_pid) and not _gone(mlflow_pid)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]

        assert _gone(dagster_pid) and _gone(mlflow_pid), "a server's process group outlived `up`"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_up_stopped_with_two_sigints_from_a_script_is_quiet_and_leaves_no_server(tmp_path):
    """`up` stopped by a script's SIGINT, a second SIGINT arriving while the real Dagster and MLflow
    servers shut down: no traceback, exit 0, and every process of both servers is gone when `up`
    has exited (the second signal hurries the cleanup; it does not break out of it)."""
    up = _start_up(tmp_path)
    proc, log, dagster_pid, mlflow_pid = up.proc, up.log, up.dagster_pid, up.mlflow_pid
    try:
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while "stopping the servers" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)  # while the servers are being stopped
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]

        assert _gone(dagster_pid) and _gone(mlflow_pid), "a server's process group outlived `up`"
        after = log.read_text().split("stopping the servers", 1)[1]
        assert "Traceback" not in after and "KeyboardInterrupt" not in after, after[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
