"""Serving knobs: environment variables (`MLOPS_SERVE_*`), overridable by `mlops-pipeline serve` flags.

Defaults are the safe ones: loopback only, no canary, shadow off, a body size limit, and admin
endpoints refused until a token is configured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "MLOPS_SERVE_"


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="Bind address; loopback unless told otherwise.")
    port: int = 8080
    workers: int = Field(default=1, ge=1, le=64,
                         description="Serving processes on the port (one per core for throughput).")
    model_name: str = Field(default="", description="Registered model; empty: the dataset spec's name.")
    alias: str = Field(default="champion", description="Alias to follow (ignored when version is set).")
    version: str = Field(default="", description="Pin one version: no alias following.")
    poll_seconds: float = Field(default=5.0, gt=0, description="How often the alias is re-read.")
    shadow: bool = Field(default=False, description="Score every champion request with the challenger.")
    canary_share: float = Field(default=0.0, ge=0, le=1, description="Share answered by the challenger.")
    token: str = Field(default="", description="Bearer token for /feedback and /admin/*.")
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    # At most 2**24: a request id numbers its record in 24 bits (resources.predictions.RECORD_BITS).
    max_records: int = Field(default=1000, gt=0, le=1 << 24, description="Records per /predict request.")
    max_batch_rows: int = Field(default=256, gt=0, description="Rows per model call (micro-batch).")
    max_wait_ms: float = Field(default=2.0, ge=0, description="How long a batch waits to fill up.")
    shadow_queue: int = Field(default=16, gt=0, description="Pending shadow batches before dropping.")
    unseen_categories: Literal["accept", "reject"] = Field(
        default="accept",
        description="accept: the model routes an unseen category like a missing value (counted in "
        "/metrics); reject: 422 naming the field and value.",
    )
    predictions_url: str = Field(default="", description="SQLAlchemy URL; empty: embedded SQLite.")
    capture_max_rows: int = Field(default=2000, gt=0, description="Rows per group commit at most.")
    state_file: str = Field(default="", description="Where the server writes its URL and pid.")

    @classmethod
    def from_env(cls, **overrides: object) -> ServeSettings:
        """Environment first, then explicit overrides (CLI flags) where they are not None."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        if "MLOPS_PREDICTIONS_URL" in os.environ and "predictions_url" not in values:
            values["predictions_url"] = os.environ["MLOPS_PREDICTIONS_URL"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def state_path(settings: ServeSettings, model_name: str) -> Path:
    """Where a running server records its URL and pid, so `promote`/`rollback` can find it."""
    from mlops_pipeline.settings import data_dir

    return Path(settings.state_file) if settings.state_file else (
        data_dir() / "serving" / f"{model_name}.json")
