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
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

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
    positive: str | bool | int | float | None = Field(
        default=None,
        description="Classification: the positive class that binary metrics (roc_auc, f1, brier) "
        "and the served `probability` refer to, written as in the data (e.g. `bad`). When absent: "
        "1 for a derived target (`expression`); otherwise the minority class of the training split, "
        "a tie going to the last class in sorted order.",
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


SPLIT_STRATEGIES = ("time", "random", "stratified", "group")


class SplitSpec(_Strict):
    """How rows are divided into train and holdout; see `mlops_pipeline.data.preparation`.

    Every strategy is a function of row content, never of file or row order: the same snapshot
    gives the same holdout however its batches were landed.
    """

    strategy: Literal["time", "random", "stratified", "group"] | None = Field(
        default=None,
        description="time (the most recent rows), random, stratified (per class) or group (all rows "
        "of a group on one side). Default: time with a time column, else stratified for "
        "classification and random for regression.",
    )
    holdout_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of rows held out (0 < fraction < 1)."
    )
    seed: int = Field(default=0, description="Seeds the row hash of the non-time strategies.")
    group_column: str | None = Field(
        default=None, description="Column whose value keeps a group's rows together (strategy: group)."
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
    # Per landed batch (and overall), against the contract's `domain:` section.
    max_unseen_category_share: float = Field(
        default=0.01, ge=0, le=1,
        description="Largest share of a categorical's values outside the contract's allowed set.",
    )
    max_out_of_range_share: float = Field(
        default=0.001, ge=0, le=1,
        description="Largest share of a numeric column's values outside the contract's range.",
    )
    max_outside_time_window_share: float = Field(
        default=0.0, ge=0, le=1,
        description="Largest share of timestamps outside the contract's time window.",
    )
    future_tolerance_hours: float = Field(
        default=24.0, ge=0,
        description="Timestamps this far past the batch's landing are tolerated (time zones).",
    )
    min_class_share: float = Field(
        default=0.01, ge=0, lt=1,
        description="Classification: a batch whose rarest class is below this share is refused.",
    )
    class_balance_min_rows: int = Field(
        default=100, ge=1, description="Batches with fewer labelled rows skip the class-balance check."
    )
    max_duplicate_share: float = Field(
        default=0.01, ge=0, le=1,
        description="Largest share of fully duplicated rows when no key columns are configured "
        "(with keys, any duplicated key fails).",
    )
    null_rate_allowance_sigmas: float = Field(
        default=3.0, ge=0,
        description="A batch's null rate may exceed the column's limit by this many binomial "
        "standard deviations: sampling noise in small batches, not dilution in large ones.",
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
    block_promotion: bool = Field(
        default=False,
        description="Input drift of the new data above `max_drift_share` blocks promotion (the "
        "`input_drift` check fails with ERROR) instead of only warning.",
    )
    sample_rows: int | None = Field(
        default=None, description="Optional cap on rows per side; seeded, so reports are stable."
    )


class LatencySLO(_Strict):
    max_p99_ratio: float = Field(
        default=1.5, gt=0, description="Challenger (canary) p99 latency at most this times the "
        "champion's p99 over the same window, plus `slack_ms`.")
    slack_ms: float = Field(
        default=5.0, ge=0, description="Absolute allowance on top of the ratio, so a few ms of "
        "noise on a fast champion is not a breach.")
    min_requests: int = Field(default=100, ge=1, description="Requests per side before it decides.")


class ErrorSLO(_Strict):
    max_error_rate: float = Field(default=0.01, ge=0, le=1,
                                  description="Challenger error rate at most this (server /metrics).")
    min_requests: int = Field(default=100, ge=1, description="Challenger requests before it decides.")


class ShiftSLO(_Strict):
    max_psi: float = Field(default=0.2, ge=0, description="PSI of the challenger's scores against "
                           "the champion's (binary probability, regression value).")
    max_js: float = Field(default=0.1, ge=0, description="Jensen-Shannon distance of the predicted "
                          "classes (multi-class).")
    min_records: int = Field(default=300, ge=1, description="Records per side before it decides.")


class AgreementSLO(_Strict):
    min_agreement: float = Field(default=0.9, ge=0, le=1, description="Shadow: share of shared "
                                 "records where challenger and champion predict the same class.")
    max_mean_abs_diff: float = Field(default=0.1, ge=0, description="Shadow: mean absolute "
                                     "difference of the scores on the same records.")
    min_records: int = Field(default=200, ge=1, description="Shared records before it decides.")


class QualitySLO(_Strict):
    metric: str | None = Field(default=None, description="Gate metric compared on labelled "
                               "requests (default: the first of `gate:`); tolerance is the gate's.")
    confidence: float = Field(default=0.95, gt=0, lt=1, description="Bootstrap interval level.")
    bootstrap_samples: int = Field(default=300, ge=50)
    min_labelled: int = Field(default=300, ge=10, description="Labelled records per side first.")
    required: bool = Field(default=True, description="Ready to promote only once quality passed.")


class ReleaseSpec(_Strict):
    """How a challenger earns (or loses) its place: see `mlops_pipeline.deployment.release`."""

    window_hours: float = Field(default=24.0, gt=0, description="Rolling window of captured traffic.")
    guard: bool = Field(default=True, description="The `release_guard` sensor acts (false: only "
                        "the `challenger_analysis` asset reports).")
    auto_promote: bool = Field(default=False, description="All checks passed: promote through the "
                               "eval gate (true) or alert 'ready to promote' (false).")
    guard_interval_seconds: int = Field(default=60, ge=10)
    latency: LatencySLO = LatencySLO()
    errors: ErrorSLO = ErrorSLO()
    shift: ShiftSLO = ShiftSLO()
    agreement: AgreementSLO = AgreementSLO()
    quality: QualitySLO = QualitySLO()


class LabelingSpec(_Strict):
    """The daily labeling queue: which served predictions a human should label first."""

    max_per_day: int = Field(default=200, ge=0, description="Queue items per day at most.")
    shadow_disagreement: bool = Field(default=True, description="Also queue records where the "
                                      "shadow challenger's answer differs from the champion's.")


class DatasetSpec(_Strict):
    name: str = Field(description="Also the registered model name in MLflow.")
    task: Literal["classification", "regression"] = Field(description="classification or regression")
    source: SourceSpec = Field(description="Where batches land: `{path: landing/<name>/*.csv, format: csv}`")
    target: TargetSpec = Field(description="The column the model learns: `{name: <column>}`")
    time_column: str | None = Field(
        default=None, description="Timestamp column: the `time` split and `time_range` use it."
    )
    key_columns: list[str] = Field(default_factory=list)
    features: FeatureSpec = Field(
        description="The model's inputs: `{categorical: [...], numerical: [...]}`"
    )
    contract: str = Field(description="Path of the committed data contract (YAML).")
    split: SplitSpec = SplitSpec()
    model: ModelSpec = ModelSpec()
    gate: dict[str, MetricGate] = Field(
        description="Metric bounds a candidate must meet, e.g. `roc_auc: {floor: 0.6, tolerance: 0.01}`; "
        "optional `inference_cost: {tolerance: 0.25}`: CPU seconds per 1,000 holdout rows at most "
        "25% above the champion's"
    )
    checks: ChecksSpec = ChecksSpec()
    drift: DriftSpec = DriftSpec()
    release: ReleaseSpec = ReleaseSpec()
    labeling: LabelingSpec = LabelingSpec()
    description: str | None = Field(
        default=None, description="What the model predicts, one sentence (the model card's first line)."
    )
    intended_use: str | None = Field(
        default=None, description="Who may rely on the answers, and for what (in the model card)."
    )
    limitations: str | None = Field(
        default=None, description="Known limits of the model and its data (in the model card)."
    )

    _config_file: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _features_exclude_target(self) -> DatasetSpec:
        leaked = {self.target.name, *self.target.drop_missing} & set(self.features.columns)
        if leaked:
            raise ValueError(f"features: include the target or its source {sorted(leaked)} — "
                             "remove them from the feature lists")
        return self

    @model_validator(mode="after")
    def _gate_metrics_fit_the_task(self) -> DatasetSpec:
        from mlops_pipeline.deployment.gate import metric_task_problem

        for metric in self.gate:
            problem = metric_task_problem(metric, self.task)
            if problem:
                raise ValueError(problem)
        if self.target.positive is not None and self.task != "classification":
            raise ValueError("target.positive: only for task: classification — remove it")
        return self

    @model_validator(mode="after")
    def _split_is_possible(self) -> DatasetSpec:
        split = self.split
        if split.strategy == "time" and not self.time_column:
            raise ValueError(
                "split.strategy: time needs `time_column` — set time_column, or choose "
                "random, stratified or group"
            )
        if split.strategy == "stratified" and self.task != "classification":
            raise ValueError("split.strategy: stratified needs task: classification — use random")
        if split.strategy == "group" and not split.group_column:
            raise ValueError(
                "split.group_column: required with strategy: group — the column whose value keeps "
                "a group's rows together (e.g. a customer id)"
            )
        if split.group_column and split.strategy != "group":
            raise ValueError("split.group_column: only used with strategy: group — remove it or set "
                             "split.strategy: group")
        label = {self.target.name, *self.target.drop_missing}
        if split.group_column in label:
            raise ValueError(f"split.group_column: '{split.group_column}' is the target or its "
                             "source — choose an id column")
        return self

    @property
    def split_strategy(self) -> str:
        """The configured strategy, or the default: time with a time column, else stratified for
        classification and random for regression."""
        if self.split.strategy:
            return self.split.strategy
        if self.time_column:
            return "time"
        return "stratified" if self.task == "classification" else "random"

    @property
    def config_file(self) -> Path | None:
        """The YAML file this spec was loaded from (None when built in code or from a manifest)."""
        return self._config_file

    @property
    def source_columns(self) -> list[str]:
        """Columns the contract guards at training time: features, time, keys and label sources."""
        label = self.target.drop_missing or ([] if self.target.expression else [self.target.name])
        time = [self.time_column] if self.time_column else []
        group = [self.split.group_column] if self.split.group_column else []
        cols = [*self.features.columns, *time, *self.key_columns, *group, *label]
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


class ConfigError(ValueError):
    """An invalid dataset config: one line naming the file, the field and how to fix it."""


def _shown(p: Path) -> str:
    """A config path as the user typed it: relative to the working directory when under it."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _field(loc: tuple) -> Any:
    """The pydantic FieldInfo at `loc` (None when `loc` does not name a declared field)."""
    owner = _owner(loc[:-1])
    return owner.model_fields.get(loc[-1]) if owner is not None and loc else None


def _owner(loc: tuple) -> type[BaseModel] | None:
    model: Any = DatasetSpec
    for part in loc:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        inner = info.annotation if info is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model


_UNION_TAG = re.compile(r"^(bool|int|float|str|none|list\[.*\]|dict\[.*\])$")


def _untagged(error: Any) -> dict:
    """A union's per-member errors (loc `...x.bool`, `...x.int`) become one 'wrong type' error."""
    loc = tuple(error.get("loc", ()))
    if loc and isinstance(loc[-1], str) and _UNION_TAG.match(loc[-1]) and _field(loc) is None:
        return {"loc": loc[:-1], "type": "union", "input": error.get("input"),
                "msg": "has the wrong type — use a number, string, true/false or null"}
    return dict(error)


def _describe(error: dict) -> str:
    """One pydantic error as `field: problem — fix`."""
    loc = tuple(error.get("loc", ()))
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "missing":
        info = _field(loc)
        hint = (info.description or "").split(";")[0].rstrip(".") if info is not None else ""
        hint = hint[:1].lower() + hint[1:] if hint else "add it"
        return f"{where}: required — {hint}"
    if kind == "extra_forbidden":
        owner = _owner(loc[:-1])
        allowed = ", ".join(owner.model_fields) if owner is not None else ""
        return f"{where}: unknown key — " + (f"allowed here: {allowed}" if allowed else "remove it")
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"{where}: {error.get('input')!r} is not allowed — use one of {expected}"
    if kind == "value_error":
        msg = str(ctx.get("error", error.get("msg", "")))
        return f"{where}: {msg}" if where else msg
    msg = str(error.get("msg", "invalid")).removeprefix("Input should").rstrip(".")
    msg = f"should{msg}" if msg != error.get("msg") else msg
    return f"{where}: {msg} (got {error.get('input')!r})"


def load_spec(path: str | Path | None = None) -> DatasetSpec:
    """Load and validate a dataset spec.

    A missing file raises FileNotFoundError; anything else wrong raises ConfigError with one line,
    `<file>: <field>: <problem> — <fix>`, so the CLI can print it before landing or launching
    anything. The spec remembers its file (`config_file`), which the run manifest hashes.
    """
    p = resolve_path(path or os.environ.get("MLOPS_DATASET_CONFIG", DEFAULT_DATASET_CONFIG))
    shown = _shown(p)
    if not p.is_file():
        raise FileNotFoundError(
            f"{shown}: dataset config not found — pass --config PATH or set MLOPS_DATASET_CONFIG"
        )
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f"line {where.line + 1}: " if where is not None else ""
        raise ConfigError(f"{shown}: {line}not valid YAML — {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{shown}: expected a mapping of keys (name, task, source, target, ...), "
                          f"got {type(raw).__name__}")
    try:
        spec = DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = list(dict.fromkeys(_describe(_untagged(e)) for e in exc.errors()))
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError(f"{shown}: " + "; ".join(problems[:3]) + more) from None
    spec._config_file = p.resolve()
    return spec
