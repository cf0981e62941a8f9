"""Serving knobs: environment variables (`MLOPS_SERVE_*`), overridable by `mlops-pipeline serve` flags.

Defaults are the safe ones: loopback only, no canary, shadow off, a body size limit, and admin
endpoints refused until a token is configured. Beyond loopback a token is required (the server
refuses to start without one), so /feedback, which writes training labels, is never open to the
network. Credentials never leave the process: `/health` and the logs pass through `redact`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlops_pipeline.deployment.tags import CHAMPION
from mlops_pipeline.redaction import RedactingFormatter, install, redact, secrets_in  # noqa: F401

ENV_PREFIX = "MLOPS_SERVE_"


class ServeSettings(BaseModel):
    """One server's knobs, frozen: read once at `serve` (`from_env`) and handed to every worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="Bind address; loopback unless told otherwise.")
    port: int = 8080
    workers: int = Field(default=1, ge=1, le=64,
                         description="Serving processes on the port (one per core for throughput).")
    model_name: str = Field(default="", description="Registered model; empty: the dataset spec's name.")
    alias: str = Field(default=CHAMPION, description="Alias to follow (ignored when version is set).")
    version: str = Field(default="", description="Pin one version: no alias following.")
    contract: Literal["dataset", "signature"] = Field(
        default="dataset",
        description="Where the request contract comes from: the dataset config, or the served "
        "model's MLflow signature (`serve --model-name NAME` without a config).",
    )
    poll_seconds: float = Field(default=5.0, gt=0, description="How often the alias is re-read.")
    shadow: bool = Field(default=False, description="Score every champion request with the challenger.")
    canary_share: float = Field(default=0.0, ge=0, le=1, description="Share answered by the challenger.")
    token: str = Field(default="", description="Bearer token for /feedback and /admin/*.")
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    # At most 2**24: a request id numbers its record in 24 bits (monitoring.predictions.RECORD_BITS).
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
    cost_per_core_hour: float = Field(
        default=0.05, ge=0,
        description="USD per core-hour for the cost metrics in /metrics (env MLOPS_COST_PER_CORE_HOUR).",
    )

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
        if os.environ.get("MLOPS_COST_PER_CORE_HOUR") and "cost_per_core_hour" not in values:
            values["cost_per_core_hour"] = os.environ["MLOPS_COST_PER_CORE_HOUR"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    @property
    def loopback(self) -> bool:
        """True when only this machine can reach the server (127.0.0.0/8, ::1, localhost)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def url(self) -> str:
        """The server's base URL, as clients and the state file name it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def state_path(settings: ServeSettings, model_name: str) -> Path:
    """Where a running server records its URL and pid, so `promote`/`rollback` can find it."""
    from mlops_pipeline.spec import data_dir

    return Path(settings.state_file) if settings.state_file else (
        data_dir() / "serving" / f"{model_name}.json")


class ExposureError(ValueError):
    """Settings that would open the server's writes to the network."""


#: The shortest bearer token the server accepts, in characters (none of them whitespace).
MIN_TOKEN_CHARS = 32
#: How to make a token that passes `token_problem`.
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def token_problem(token: str) -> str | None:
    """Why `token` is too weak to guard /feedback and /admin/* (None: strong enough, or unset).
    A token must be at least `MIN_TOKEN_CHARS` characters, none of them whitespace: one space or
    one character would otherwise pass as "a token is configured"."""
    if not token:
        return None
    if any(c.isspace() for c in token):
        return "contains whitespace"
    if len(token) < MIN_TOKEN_CHARS:
        return f"has {len(token)} characters; at least {MIN_TOKEN_CHARS} are required"
    return None


def check_exposure(settings: ServeSettings) -> None:
    """Refuse to serve beyond loopback without a token: anyone who reaches the port could
    otherwise write labels through /feedback, which the loop lands as training data. Refuse a
    weak token anywhere (`token_problem`)."""
    if problem := token_problem(settings.token):
        raise ExposureError(
            f"refusing to serve: MLOPS_SERVE_TOKEN {problem} (at least {MIN_TOKEN_CHARS} "
            f"non-whitespace characters). Make one with: {MAKE_TOKEN}")
    if not settings.loopback and not settings.token:
        raise ExposureError(
            f"refusing to serve on {settings.host}: beyond loopback, /feedback and /admin/* need a "
            f"token. Set MLOPS_SERVE_TOKEN to a long random secret (make one with: {MAKE_TOKEN}; "
            "clients send 'Authorization: Bearer <token>'), or bind 127.0.0.1.")


def secrets_of(settings: ServeSettings | None, *uris: str) -> tuple[str, ...]:
    """What must never be shown: the passwords in the given URIs (the registry's, the prediction
    store's, MLFLOW_TRACKING_URI's), as written and URL-decoded, and the admin token
    (`redaction.secrets_in`)."""
    if settings is None:
        return secrets_in(uris)
    return secrets_in([*uris, settings.predictions_url], [settings.token])


def configure_logging(settings: ServeSettings | None) -> None:
    """Process logging for serving: INFO to stderr, credentials masked in every record of every
    logger and every printed line (`mlops_pipeline.redaction.install`: libraries that bring their
    own handlers are covered because records are masked when they are made); the root handler's
    `RedactingFormatter` masks the rest."""
    secrets = install(secrets_of(settings))
    formatter = RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    logging.basicConfig(level=logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
