"""The dataset spec: the one file a user edits to point the loop at their own tabular data.

Everything dataset-specific (where the data lands, what the target is, which columns are features,
how the gate and drift are tuned) lives in a YAML file under `data/configs/`. The code reads only
this spec, so a new dataset with a new schema needs a new YAML file and a generated contract, never a
code change.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET_CONFIG = "data/configs/flights.yaml"


def data_dir() -> Path:
    """Root of everything the loop writes; `MLOPS_DATA_DIR` moves it (tests use a temp dir)."""
    return Path(os.environ.get("MLOPS_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def resolve_path(path: str | Path, base: Path | None = None) -> Path:
    """Relative paths in a spec are relative to the project root, whatever the working directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base or PROJECT_ROOT) / p


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Strict):
    path: str = Field(description="Glob of landed batch files, relative to the data dir.")
    format: Literal["csv", "parquet"] = "parquet"


class TargetSpec(_Strict):
    name: str = Field(description="Name of the target column the model learns.")
    expression: str | None = Field(
        default=None,
        description="pandas `DataFrame.eval` expression deriving the target from source columns "
        "(e.g. `arr_delay > 15`); omitted when `name` is already a column.",
    )
    drop_missing: list[str] = Field(
        default_factory=list,
        description="Source columns whose nulls mean 'no label' (rows are dropped, and counted).",
    )


class FeatureSpec(_Strict):
    categorical: list[str] = Field(default_factory=list)
    numerical: list[str] = Field(default_factory=list)
    datetime_parts: dict[str, list[Literal["dayofweek", "hour", "month", "dayofyear"]]] = Field(
        default_factory=dict,
        description="Datetime columns expanded inside the model pipeline, so serving sends the raw "
        "timestamp and training and inference derive parts the same way.",
    )

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numerical, *self.datetime_parts]


class SplitSpec(_Strict):
    holdout_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of the most recent rows (by time) held out."
    )


class ModelSpec(_Strict):
    seed: int = 42
    params: dict[str, bool | int | float | str | None] = Field(default_factory=dict)


class MetricGate(_Strict):
    floor: float | None = Field(default=None, description="Absolute bound the candidate must meet.")
    tolerance: float = Field(
        default=0.0, ge=0, description="Largest allowed regression against the champion."
    )


class ChecksSpec(_Strict):
    min_rows: int = 1000
    max_null_rate: float = Field(
        default=0.05, description="Default per-column null-rate limit; the contract can override."
    )


class DriftSpec(_Strict):
    num_method: str = "psi"
    num_threshold: float = 0.1
    cat_method: str = "jensenshannon"
    cat_threshold: float = 0.1
    max_drift_share: float = Field(
        default=0.3, description="Input-drift check fails (WARN) above this share of drifted columns."
    )
    retrain_cooldown_hours: float = Field(
        default=24.0, description="After drift triggers a retraining, persisting drift waits this long."
    )
    sample_rows: int | None = Field(
        default=None, description="Optional cap on rows per side; seeded, so reports are stable."
    )


class DatasetSpec(_Strict):
    name: str = Field(description="Also the registered model name in MLflow.")
    task: Literal["classification", "regression"]
    source: SourceSpec
    target: TargetSpec
    time_column: str
    key_columns: list[str] = Field(default_factory=list)
    features: FeatureSpec
    contract: str = Field(description="Path of the committed data contract (YAML).")
    split: SplitSpec = SplitSpec()
    model: ModelSpec = ModelSpec()
    gate: dict[str, MetricGate]
    checks: ChecksSpec = ChecksSpec()
    drift: DriftSpec = DriftSpec()

    @model_validator(mode="after")
    def _features_exclude_target(self) -> DatasetSpec:
        leaked = {self.target.name, *self.target.drop_missing} & set(self.features.columns)
        if leaked:
            raise ValueError(f"feature columns include the target or its source: {sorted(leaked)}")
        return self

    @property
    def source_columns(self) -> list[str]:
        """Columns the contract guards at training time: features, time, keys and label sources."""
        label = self.target.drop_missing or ([] if self.target.expression else [self.target.name])
        cols = [*self.features.columns, self.time_column, *self.key_columns, *label]
        return list(dict.fromkeys(cols))

    @property
    def label_source(self) -> str:
        """The observed value feedback carries (e.g. `arr_delay` minutes, from which `delayed` is
        derived with the same expression as in training)."""
        if self.target.expression:
            if len(self.target.drop_missing) != 1:
                raise ValueError("a derived target needs exactly one `drop_missing` column as its source")
            return self.target.drop_missing[0]
        return self.target.name

    def landing_glob(self, root: Path | None = None) -> str:
        return str(resolve_path(self.source.path, root or data_dir()))

    def contract_path(self) -> Path:
        return resolve_path(self.contract)

    def fingerprint(self) -> str:
        """Hash of the spec, so a manifest can tell which config trained a model."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_spec(path: str | Path | None = None) -> DatasetSpec:
    """Load and validate a dataset spec; errors name the file and the bad field."""
    p = resolve_path(path or os.environ.get("MLOPS_DATASET_CONFIG", DEFAULT_DATASET_CONFIG))
    if not p.exists():
        raise FileNotFoundError(f"dataset config not found: {p}")
    raw = yaml.safe_load(p.read_text())
    try:
        return DatasetSpec.model_validate(raw)
    except ValueError as exc:
        raise ValueError(f"invalid dataset config {p}: {exc}") from exc
