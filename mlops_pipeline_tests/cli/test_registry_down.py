"""A command that reads the registry fails fast, in one line, when the registry does not answer.

MLflow's client retries for ~250 s by default; `promote`, `rollback`, `explain` and `reproduce`
give up within `MLOPS_REGISTRY_TIMEOUT` seconds instead, name the URI with its password masked,
say what to do, and print no traceback. Two ways a registry fails: nothing listens (refused at
once), and a server that accepts connections but never answers (the timeout decides).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_pipeline_tests.serving.conftest import free_port

BIN = Path(sys.executable).parent
COMMANDS = [["promote", "1"], ["rollback"], ["explain", "0123456789abcdef0123456789abcdef"],
            ["reproduce", "1"]]
#: A guard against a hang, far above the configured timeout; not the measure of speed.
GUARD_S = 90


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the kernel's backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _run(args: list[str], uri: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLOPS_DATA_DIR": str(tmp_path / "data"),
           "DAGSTER_HOME": str(tmp_path / "dagster_home"), "MLOPS_REGISTRY_TIMEOUT": "2"}
    env.pop("MLOPS_SERVE_TOKEN", None)
    return subprocess.run([str(BIN / "mlops-pipeline"), *args], env=env, capture_output=True,
                          text=True, timeout=GUARD_S)


def _one_line_naming(result: subprocess.CompletedProcess, port: int) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "secret" not in result.stderr + result.stdout
    assert f"user:***@127.0.0.1:{port}" in lines[0]
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_registry_that_refuses_connections_is_one_line(command, tmp_path):
    port = free_port()  # nothing listens there
    line = _one_line_naming(_run(command, f"http://user:secret@127.0.0.1:{port}", tmp_path), port)
    assert "does not answer" in line and "start the tracking server" in line


def test_a_registry_that_never_answers_gives_up_after_the_configured_timeout(silent_server, tmp_path):
    line = _one_line_naming(_run(["promote", "1"], f"http://user:secret@127.0.0.1:{silent_server}",
                                 tmp_path), silent_server)
    assert "Timeout" in line and "MLOPS_REGISTRY_TIMEOUT=2s" in line


def test_a_sqlite_registry_that_does_not_exist_is_not_read_as_an_empty_one(tmp_path):
    missing = tmp_path / "typo" / "mlflow.db"
    result = _run(["rollback"], f"sqlite:///{missing}", tmp_path)
    assert result.returncode == 1 and "no MLflow registry at" in result.stderr, result.stderr
    assert not missing.parent.exists()  # nothing created on the way
