"""Where Dagster keeps the values passed between assets: S3 when storage is on S3."""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from mlops_pipeline.data.storage import split_s3_uri


def io_manager(env: Mapping[str, str] | None = None) -> dg.ConfigurableIOManager | None:
    """The S3 pickle I/O manager (dagster-aws) when storage is on S3, else None (Dagster's default
    filesystem I/O manager). Values passed between assets must be where every run worker can read
    them; a worker's local disk is not.

    Bucket and prefix are fixed when the code location loads (`MLOPS_IO_MANAGER_ROOT`, default
    `<MLOPS_STORAGE_ROOT>/dagster-io`); the endpoint is resolved per run.
    """
    env = os.environ if env is None else env
    storage_root = env.get("MLOPS_STORAGE_ROOT", "")
    io_root = env.get("MLOPS_IO_MANAGER_ROOT") or (
        f"{storage_root.rstrip('/')}/dagster-io" if storage_root.startswith("s3://") else ""
    )
    if not io_root:
        return None
    from dagster_aws.s3 import S3PickleIOManager, S3Resource

    bucket, prefix = split_s3_uri(io_root)
    endpoint = dg.EnvVar("MLOPS_S3_ENDPOINT_URL") if env.get("MLOPS_S3_ENDPOINT_URL") else None
    return S3PickleIOManager(
        s3_resource=S3Resource(endpoint_url=endpoint, max_attempts=3),
        s3_bucket=bucket,
        s3_prefix=prefix or "dagster-io",
    )
