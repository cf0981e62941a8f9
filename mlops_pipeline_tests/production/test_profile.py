"""Profile switching and S3 naming rules: no servers needed, so these run in the quick suite too."""

from __future__ import annotations

import pytest

from mlops_pipeline.defs.resources.storage import StorageError, StorageResource, _glob_match, split_s3_uri
from mlops_pipeline.profile import ProfileError, check_profile, io_manager

PRODUCTION = {
    "MLOPS_PROFILE": "production",
    "MLOPS_STORAGE_ROOT": "s3://mlops/pipeline",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "MLOPS_PREDICTIONS_URL": "postgresql+psycopg2://u:p@db/predictions",
}


def test_production_profile_refuses_local_fallbacks():
    check_profile(PRODUCTION)
    check_profile({})  # local default needs nothing
    with pytest.raises(ProfileError) as exc:
        check_profile({**PRODUCTION, "MLOPS_STORAGE_ROOT": "/data", "MLFLOW_TRACKING_URI": ""})
    assert "MLOPS_STORAGE_ROOT='/data' should start with s3://" in str(exc.value)
    assert "MLFLOW_TRACKING_URI is not set" in str(exc.value)
    with pytest.raises(ProfileError, match="expected 'local' or 'production'"):
        check_profile({"MLOPS_PROFILE": "prod"})


def test_io_manager_follows_the_storage_root():
    from dagster_aws.s3 import S3PickleIOManager

    assert io_manager({}) is None
    assert io_manager({"MLOPS_STORAGE_ROOT": "/srv/data"}) is None
    io = io_manager(PRODUCTION)
    assert isinstance(io, S3PickleIOManager)
    assert (io.s3_bucket, io.s3_prefix) == ("mlops", "pipeline/dagster-io")
    other = io_manager({**PRODUCTION, "MLOPS_IO_MANAGER_ROOT": "s3://scratch/io"})
    assert (other.s3_bucket, other.s3_prefix) == ("scratch", "io")


def test_s3_globs_match_per_segment_like_local_globs():
    assert split_s3_uri("s3://b/x/y/") == ("b", "x/y")
    assert _glob_match("p/landing/flights/a.parquet", "p/landing/flights/*.parquet")
    assert not _glob_match("p/landing/flights/old/a.parquet", "p/landing/flights/*.parquet")
    assert not _glob_match("p/landing/flights/a.csv", "p/landing/flights/*.parquet")


def test_s3_root_has_no_local_base_and_names_itself(monkeypatch):
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", "http://127.0.0.1:1")
    store = StorageResource(root="s3://mlops/p/")
    assert store.is_s3 and store.snapshot_uri("abc") == "s3://mlops/p/snapshots/abc.parquet"
    assert store.describe() == "S3 store http://127.0.0.1:1 (s3://mlops/p)"
    with pytest.raises(StorageError, match="no local directory"):
        _ = store.base
