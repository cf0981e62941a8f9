"""Process settings: every environment variable the loop, the code location and the CLI read, parsed
once into one frozen value at an entry point (the CLI's `main`, `definitions.py`) and passed down.

Not the dataset spec (`mlops_pipeline.spec`, the YAML a user edits): these say *where* things live
(data dir, registry, stores, servers) and how the process behaves, and they change per machine, not
per dataset. Core functions take the values they need as parameters; nothing else reads
`os.environ` for them, and nothing reads it at import time. Serving's own knobs (`MLOPS_SERVE_*`)
are parsed by `mlops_pipeline.serving.settings`, the serving entry point's reader.

A configuration that must not touch the user's (the CI gate's sandbox) is a value too:
`Settings.isolated(root, config)`, handed to the code that runs the loop instead of editing the
environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG, PROJECT_ROOT

#: The retraining schedule's default: Mondays 06:00 UTC.
DEFAULT_CRON = "0 6 * * 1"

#: Field -> the environment variable it is read from (also what a child process is given).
ENV_VARS: dict[str, str] = {
    "data_dir": "MLOPS_DATA_DIR",
    "dataset_config": "MLOPS_DATASET_CONFIG",
    "dagster_home": "DAGSTER_HOME",
    "storage_root": "MLOPS_STORAGE_ROOT",
    "s3_endpoint_url": "MLOPS_S3_ENDPOINT_URL",
    "io_manager_root": "MLOPS_IO_MANAGER_ROOT",
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "mlflow_ui_url": "MLOPS_MLFLOW_UI_URL",
    "predictions_url": "MLOPS_PREDICTIONS_URL",
    "serving_url": "MLOPS_SERVING_URL",
    "serve_url": "MLOPS_SERVE_URL",
    "serve_token": "MLOPS_SERVE_TOKEN",
    "serve_state_file": "MLOPS_SERVE_STATE_FILE",
    "alert_webhook_url": "MLOPS_ALERT_WEBHOOK_URL",
    "profile": "MLOPS_PROFILE",
    "retrain_cron": "MLOPS_RETRAIN_CRON",
    "release_guard_seconds": "MLOPS_RELEASE_GUARD_SECONDS",
    "drift_report_rows": "MLOPS_DRIFT_REPORT_ROWS",
    "batch_index_cache_rows": "MLOPS_BATCH_INDEX_CACHE_ROWS",
    "cache_home": "XDG_CACHE_HOME",
    "registry_timeout": "MLOPS_REGISTRY_TIMEOUT",
    "search_storage": "MLOPS_SEARCH_STORAGE",
}


@dataclass(frozen=True)
class Settings:
    """Where the loop's data, registry, stores and servers are, and the process's knobs.

    String fields hold what was configured, "" meaning "the embedded default" (a SQLite registry,
    store and instance under `data_root`); the properties resolve those defaults. `environment` names
    the variables whose values came from this process's environment: the code location hands those
    to Dagster as `EnvVar`s, so the UI shows the variable rather than a value that may carry
    credentials, and every run resolves it when it starts.
    """

    data_dir: str = ""
    dataset_config: str = DEFAULT_DATASET_CONFIG
    dagster_home: str = ""
    storage_root: str = ""
    s3_endpoint_url: str = ""
    io_manager_root: str = ""
    tracking_uri: str = ""
    mlflow_ui_url: str = ""
    #: Artifact root of a SQLite-backed registry ("": `<data dir>/mlflow/artifacts`, found by the resource).
    artifact_location: str = ""
    predictions_url: str = ""
    serving_url: str = ""
    serve_url: str = ""
    serve_token: str = ""
    #: Where a running server records its URL and pid ("": `<data dir>/serving/<model>.json`).
    serve_state_file: str = ""
    alert_webhook_url: str = ""
    profile: str = "local"
    retrain_cron: str = DEFAULT_CRON
    release_guard_seconds: int = 30
    drift_report_rows: int = 50_000
    batch_index_cache_rows: int = 50_000_000
    cache_home: str = ""
    #: Seconds a command waits for the registry before it gives up (one line, no traceback).
    registry_timeout: int = 10
    #: SQLAlchemy URL of the database holding `model.search`'s Optuna studies ("": see
    #: `search_storage_setting`).
    search_storage: str = ""
    environment: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from `env` (default: this process's environment; empty values count
        as unset). Only a read of the real environment marks its variables as `environment`."""
        source = os.environ if env is None else env
        values: dict[str, object] = {}
        present = set()
        for name, var in ENV_VARS.items():
            raw = (source.get(var) or "").strip()
            if not raw:
                continue
            present.add(var)
            if isinstance(cls.__dataclass_fields__[name].default, int):
                try:
                    values[name] = int(raw)
                except ValueError:
                    raise ValueError(f"{var}={raw!r}: expected a whole number") from None
            else:
                values[name] = raw
        if "profile" in values:
            values["profile"] = str(values["profile"]).lower()
        return cls(**values, environment=frozenset(present) if env is None else frozenset())  # type: ignore[arg-type]

    @classmethod
    def isolated(cls, root: Path, dataset_config: str, cache_home: str = "") -> Settings:
        """Everything under `root` and nothing from the environment: its own landing, snapshots,
        SQLite registry and store, Dagster instance; no server, no alert, the local profile. What
        the CI gate runs the loop in, so that a user's registry or data dir is never written.
        `cache_home` is the user's cache, which only speeds the run up."""
        root = Path(root).resolve()
        store = f"sqlite:///{root / 'predictions' / 'predictions.db'}"
        return cls(
            data_dir=str(root), dataset_config=dataset_config, dagster_home=str(root / "dagster_home"),
            storage_root=str(root), tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}",
            artifact_location=str(root / "mlflow" / "artifacts"), predictions_url=store,
            cache_home=cache_home,
        )

    def replace(self, **changes: object) -> Settings:
        """A copy with `changes`; a changed field no longer counts as read from the environment."""
        changed = {ENV_VARS[name] for name in changes if name in ENV_VARS}
        return dataclasses.replace(self, **changes, environment=self.environment - changed)  # type: ignore[arg-type]

    def with_dataset(self, config: str | None) -> Settings:
        """The `--config` of a command, resolved to an absolute path, in place of the default."""
        return self.replace(dataset_config=str(Path(config).resolve())) if config else self

    # ---- resolved defaults ---------------------------------------------------------------------
    @property
    def data_root(self) -> Path:
        """Root of everything the loop writes locally (`MLOPS_DATA_DIR`, default `data/`)."""
        return Path(self.data_dir or PROJECT_ROOT / "data").resolve()

    @property
    def dagster_home_dir(self) -> Path:
        """The Dagster instance's directory (`DAGSTER_HOME`, default `<data dir>/dagster_home`)."""
        return Path(self.dagster_home or self.data_root / "dagster_home").resolve()

    @property
    def resolved_tracking_uri(self) -> str:
        """The registry: `MLFLOW_TRACKING_URI`, else the embedded SQLite store under the data dir."""
        return self.tracking_uri or f"sqlite:///{self.data_root / 'mlflow' / 'mlflow.db'}"

    @property
    def search_storage_setting(self) -> str:
        """Which setting holds the database of `model.search`'s studies: `search_storage` when set,
        else in the production profile `predictions_url` (its Postgres database), else "" (each
        study in memory, in its own process)."""
        if self.search_storage:
            return "search_storage"
        return "predictions_url" if self.profile == "production" and self.predictions_url else ""

    def serving_state_path(self, model_name: str) -> Path:
        """The state file a running server of `model_name` writes its URL and pid to (the rule of
        `serving.settings.state_path`): `MLOPS_SERVE_STATE_FILE`, else under the data dir."""
        if self.serve_state_file:
            return Path(self.serve_state_file)
        return self.data_root / "serving" / f"{model_name}.json"

    @property
    def cache_dir(self) -> Path:
        """This project's per-user cache (`$XDG_CACHE_HOME/mlops-pipeline`, default ~/.cache)."""
        return Path(self.cache_home or Path.home() / ".cache") / "mlops-pipeline"

    def secrets(self) -> tuple[str, ...]:
        """What no output may show (`redaction.secrets_in`): the passwords of every configured
        URI, the serving token, and the secrets of this process's environment."""
        from mlops_pipeline.redaction import secrets_in

        uris = [self.tracking_uri, self.predictions_url, self.storage_root, self.s3_endpoint_url,
                self.alert_webhook_url, self.serving_url, self.serve_url, self.search_storage]
        return secrets_in(uris, [self.serve_token])

    # ---- handing them on -------------------------------------------------------------------------
    def as_env(self) -> dict[str, str]:
        """The variables that give a child process (or `profile.check_profile`) this configuration."""
        out = {}
        for name, var in ENV_VARS.items():
            value = getattr(self, name)
            if value != self.__dataclass_fields__[name].default and value != "":
                out[var] = str(value)
        return out

    def child_env(self, base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
        """`base` (default: this process's environment) with these settings and `extra` on top: the
        environment of a server or worker started to run with this configuration."""
        return {**(os.environ if base is None else base), **self.as_env(), **extra}
