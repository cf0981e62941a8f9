"""No credential in any output: one filter, installed at every entry point.

The unit tests pin the filter (URIs, known secrets, lines split across writes, log records with
tracebacks). The end-to-end test runs the loop through the CLI against a real MLflow server whose
URI carries a password, then greps everything the run left behind — its stdout and stderr,
Dagster's compute logs and event log, the registry's database and artifacts, MLflow's tags — for
the password, as written and URL-encoded.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_pipeline.redaction import RedactingStream, install, redact, secrets_in
from mlops_pipeline_tests.serving.conftest import free_port, start, stop, wait_http

BIN = Path(sys.executable).parent
PASSWORD = "S3cr3t%40pw-4711"  # URL-encoded: the password is "S3cr3t@pw-4711"
DECODED = "S3cr3t@pw-4711"


def test_passwords_in_uris_and_known_secrets_are_masked_wherever_they_appear():
    secrets = secrets_in([f"postgresql://u:{PASSWORD}@db/p"], ["tok-0123456789"], env={})
    assert set(secrets) == {PASSWORD, DECODED, "tok-0123456789"}
    text = (f"View run at: http://alice:{PASSWORD}@host:5000/#/runs/1 after {DECODED} "
            "with Bearer tok-0123456789")
    masked = redact(text, secrets)
    assert "alice:***@host:5000" in masked
    assert DECODED not in masked and PASSWORD not in masked and "tok-0123456789" not in masked
    assert secrets_in([], [], env={"AWS_SECRET_ACCESS_KEY": "aws-key-xyz"}) == ("aws-key-xyz",)


def test_a_stream_masks_lines_even_when_a_uri_arrives_in_pieces():
    out = io.StringIO()
    stream = RedactingStream(out, [DECODED])
    stream.write("connecting to http://bob:hunt")
    stream.write("er2@db:5432 ...\nsecret ")
    assert out.getvalue() == "connecting to http://bob:***@db:5432 ...\n"
    stream.write(DECODED)
    stream.flush()
    assert out.getvalue().endswith("secret ***") and DECODED not in out.getvalue()


def test_install_masks_log_records_and_their_tracebacks(monkeypatch):
    saved = logging.getLogRecordFactory()
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    try:
        install([DECODED])
        handler_out = io.StringIO()
        logger = logging.getLogger("mlops_test_redaction")
        logger.propagate = False
        handler = logging.StreamHandler(handler_out)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        try:
            raise RuntimeError(f"cannot reach http://u:{DECODED}@registry")
        except RuntimeError:
            logger.exception("failed with %s", DECODED)
        print(f"printed {DECODED}")
        assert DECODED not in handler_out.getvalue() and "failed with ***" in handler_out.getvalue()
        assert "http://u:***@registry" in handler_out.getvalue()  # the traceback too
        sys.stdout.flush()
        assert sys.stdout.stream.getvalue() == "printed ***\n"
    finally:
        logging.setLogRecordFactory(saved)


def _grep(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {n!r}" for n in needles if n in data]
    return hits


@pytest.mark.slow
def test_nothing_a_run_leaves_behind_holds_the_registry_password(tmp_path):
    port = free_port()
    server_env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                  "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = tmp_path / "mlflow-server.log"
    server = start([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                    "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                    "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
                   server_env, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", server, log, timeout=90)
        uri = f"http://mlops:{PASSWORD}@127.0.0.1:{port}"
        env = {**server_env, "MLFLOW_TRACKING_URI": uri, "MLOPS_DATA_DIR": str(tmp_path / "data"),
               "DAGSTER_HOME": str(tmp_path / "dagster_home"), "MLOPS_REGISTRY_TIMEOUT": "20"}
        for var in ("MLOPS_DATASET_CONFIG", "MLOPS_SERVE_TOKEN", "MLOPS_PREDICTIONS_URL"):
            env.pop(var, None)
        outputs = []
        for args in (["land", "--months", "1", "2", "--sample", "0.05"], ["materialize", "--verbose"],
                     ["rollback"], ["promote", "1"], ["history"]):
            done = subprocess.run([str(BIN / "mlops-pipeline"), *args], env=env, capture_output=True,
                                  text=True, timeout=900)
            outputs.append((args, done))
        (tmp_path / "cli-output.txt").write_text(
            "\n".join(f"{a}\n{d.stdout}\n{d.stderr}" for a, d in outputs))
        materialize = outputs[1][1]
        assert materialize.returncode == 0, materialize.stderr[-3000:]
        assert "View run" in materialize.stdout + materialize.stderr  # MLflow's own line, masked
        assert "mlops:***@127.0.0.1" in materialize.stdout + materialize.stderr
        assert outputs[2][1].returncode != 0  # nothing to roll back to: said without a traceback
        assert "Traceback" not in outputs[2][1].stderr
        compute_logs = [p for p in (tmp_path / "dagster_home").rglob("*") if p.suffix in (".out", ".err")]
        assert compute_logs, "the run left no compute logs to check"
    finally:
        stop(server)
    # Everything: the commands' output, compute logs, the event log (SQLite under dagster_home),
    # the registry's database (MLflow tags) and artifacts, the server's own log.
    assert (tmp_path / "mlflow.db").stat().st_size > 0 and (tmp_path / "cli-output.txt").stat().st_size
    hits = _grep(tmp_path, [DECODED.encode(), PASSWORD.encode()])
    assert not hits, hits
