"""The data tests' shared fixtures: the flights spec, its contract and its months (per module), and
S3: one SeaweedFS on loopback for the package, a fresh prefix per test."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from mlops_pipeline.data.contract import load_contract
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.spec import load_spec


@pytest.fixture(scope="module")
def spec():
    """The flights dataset spec (a module's own `spec` fixture overrides it)."""
    return load_spec("data/configs/flights.yaml")


@pytest.fixture(scope="module")
def contract(spec):
    return load_contract(spec)


@pytest.fixture(scope="module")
def months(flights) -> dict[int, pd.DataFrame]:
    """The flights table split by month (1-12), each indexed from 0."""
    return {m: g.reset_index(drop=True) for m, g in flights.groupby("month")}


@pytest.fixture(scope="package")
def seaweed() -> Iterator:
    """A real SeaweedFS S3 server on 127.0.0.1, started once and stopped by PID."""
    from mlops_pipeline_tests.conftest import skip_or_fail
    from mlops_pipeline_tests.production.conftest import MissingServer, SeaweedFS

    root = Path(tempfile.mkdtemp(prefix="mlops-data-s3-"))
    s3 = SeaweedFS(root)
    try:
        try:
            s3.start()
        except MissingServer as exc:
            skip_or_fail(str(exc))
        yield s3
    finally:
        s3.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def s3_storage(seaweed, monkeypatch, request) -> Storage:
    """The production profile's store on that server, under a prefix named after the test."""
    from mlops_pipeline_tests.production.conftest import ACCESS_KEY, BUCKET

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return Storage(root=f"s3://{BUCKET}/{request.node.name}", endpoint_url=seaweed.endpoint)
