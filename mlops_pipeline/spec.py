"""The dataset spec: the one file a user edits to point the loop at their own tabular data.

Everything dataset-specific (where the data lands, what the target is, which columns are features,
how the gate and drift are tuned) lives in a YAML file under `data/configs/`. The code reads only
this spec, so a new dataset with a new schema needs a new YAML file and a generated contract, never a
code change. Here: the whole spec (`DatasetSpec`), where the project and its data live, and
`load_spec`; the sections' models are in `spec_sections`, the one-line error text in `spec_errors`.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from mlops_pipeline.spec_errors import validation_message
from mlops_pipeline.spec_sections import (
    ChecksSpec,
    DriftSpec,
    FeatureSpec,
    LabelingSpec,
    MetricGate,
    ModelSpec,
    ReleaseSpec,
    SourceSpec,
    SplitSpec,
    StrictModel,
    TargetSpec,
)
from mlops_pipeline.spec_segments import SegmentsSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET_CONFIG = "data/configs/flights.yaml"


def data_dir() -> Path:
    """Root of everything the loop writes; `MLOPS_DATA_DIR` moves it (tests use a temp dir)."""
    return Path(os.environ.get("MLOPS_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def resolve_path(path: str | Path, base: Path | None = None) -> Path:
    """Relative paths in a spec are relative to the project root, whatever the working directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base or PROJECT_ROOT) / p


class DatasetSpec(StrictModel):
    """A whole dataset config: its sections (`spec_sections`) and the rules that tie them together."""

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
    segments: SegmentsSpec = Field(
        default=SegmentsSpec(), description="Groups of rows judged on their own: `{columns: "
        "[carrier, origin], bins: {distance: [500, 1000]}, min_rows: 200, tolerance: 0.02}`")
    description: str | None = Field(
        default=None, description="What the model predicts, one sentence (the model card's first line)."
    )
    intended_use: str | None = Field(
        default=None, description="Who may rely on the answers, and for what (in the model card)."
    )
    limitations: str | None = Field(
        default=None, description="Known limits of the model and its data (in the model card)."
    )
    owner: str | None = Field(
        default=None, description="Who trains this model and gets paged when it regresses (a team or "
        "person; on the model card, every registered version, every alert and Alertmanager's routing)."
    )
    runbook_url: str | None = Field(
        default=None, description="Where on-call reads what to do (linked from every alert)."
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
        from mlops_pipeline.training.metrics import metric_task_problem

        for metric in self.gate:
            problem = metric_task_problem(metric, self.task)
            if problem:
                raise ValueError(problem)
        if self.target.positive is not None and self.task != "classification":
            raise ValueError("target.positive: only for task: classification — remove it")
        return self

    @model_validator(mode="after")
    def _model_fits_the_task(self) -> DatasetSpec:
        if self.model.estimator is not None:
            from mlops_pipeline.training.estimators import check_estimator, kind

            made_for = kind(check_estimator(self.model.estimator, self.model.params))
            if made_for != self.task:
                raise ValueError(f"model.estimator: {self.model.estimator} is for {made_for}, the task "
                                 f"is {self.task} — choose a {self.task} estimator")
        if self.model.threshold is not None and self.task != "classification":
            raise ValueError("model.threshold: only for a binary target (task: classification) — "
                             "remove it")
        return self

    @model_validator(mode="after")
    def _segments_are_known_columns(self) -> DatasetSpec:
        known = [*self.features.categorical, *self.features.numerical, *self.key_columns]
        for column in self.segments.dimensions:
            if column not in known:
                close = difflib.get_close_matches(column, known, n=2, cutoff=0.6)
                hint = f" (closest: {', '.join(close)})" if close else ""
                raise ValueError(f"segments: {column!r} is not a feature or key column{hint} — "
                                 "segment by a column the model's holdout carries")
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
        """The glob of landed batch files, under `root` (default: the data dir)."""
        return str(resolve_path(self.source.path, root or data_dir()))

    def contract_path(self) -> Path:
        """The committed data contract's file, resolved against the project root."""
        return resolve_path(self.contract)

    def fingerprint(self) -> str:
        """Hash of the spec, so a manifest can tell which config trained a model."""
        dump = self.model_dump(mode="json")
        # `model.estimator`, `.preprocessing`, `.threshold`, `.train` and `.search` came later: left
        # at their defaults, they leave a config's fingerprint as it was (baselines hold).
        for key, default in (("estimator", None), ("preprocessing", "auto"), ("threshold", None),
                             ("train", None), ("search", None)):
            if dump["model"].get(key, default) == default:
                dump["model"].pop(key, None)
        dump.pop("segments", None)  # segments judge models, they do not train one
        for key in ("owner", "runbook_url"):  # who is paged does not change what is trained
            dump.pop(key, None)
        blob = json.dumps(dump, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class ConfigError(ValueError):
    """An invalid dataset config: one line naming the file, the field and how to fix it."""


def _shown(p: Path) -> str:
    """A config path as the user typed it: relative to the working directory when under it."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


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
        raise ConfigError(f"{shown}: {validation_message(exc, DatasetSpec)}") from None
    spec._config_file = p.resolve()
    return spec


# ---- the columns a spec needs from the data ---------------------------------------------------

class ColumnsError(ConfigError):
    """The spec names a column the data does not have: one line naming it and the closest names."""


_BACKTICKED = re.compile(r"`([^`]*)`")


def expression_columns(expression: str) -> list[str]:
    """The column names a pandas `DataFrame.eval` expression reads (`arr_delay > 15` → arr_delay),
    backtick-quoted names included; function names and `@local` references are not columns."""
    quoted = _BACKTICKED.findall(expression)
    text = _BACKTICKED.sub(lambda m: f"__q{quoted.index(m.group(1))}__", expression).replace("@", "_at_")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return list(dict.fromkeys(quoted))
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    names: list[str] = []
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Name)),
                       key=lambda n: (n.lineno, n.col_offset)):
        if isinstance(node, ast.Name) and id(node) not in called and not node.id.startswith("_at_"):
            m = re.fullmatch(r"__q(\d+)__", node.id)
            names.append(quoted[int(m.group(1))] if m else node.id)
    return list(dict.fromkeys(names))


def required_source_columns(spec: DatasetSpec) -> dict[str, str]:
    """Every column the spec reads from landed data, mapped to the spec field that names it
    (first one wins): the target (or its expression's columns), `drop_missing`, the features
    (datetime_parts' source columns included), the time column, key columns and the split's group
    column. The one list `land`, `contract infer`, `materialize` and `gate` check data against."""
    fields: list[tuple[str, Iterable[str]]] = [
        ("target.name", [] if spec.target.expression else [spec.target.name]),
        ("target.expression", expression_columns(spec.target.expression or "")),
        ("target.drop_missing", spec.target.drop_missing),
        ("features.categorical", spec.features.categorical),
        ("features.numerical", spec.features.numerical),
        ("features.datetime_parts", spec.features.datetime_parts),
        ("time_column", [spec.time_column] if spec.time_column else []),
        ("key_columns", spec.key_columns),
        ("split.group_column", [spec.split.group_column] if spec.split.group_column else []),
        ("segments", spec.segments.dimensions),
    ]
    required: dict[str, str] = {}
    for field, columns in fields:
        for column in columns:
            required.setdefault(column, field)
    return required


def missing_columns_message(spec: DatasetSpec, available: Iterable[str], where: str,
                            limit: int = 3) -> str | None:
    """One line naming the required columns `available` lacks, each with its spec field and the
    closest existing names (difflib; the first `limit` in full, the rest by name); None when every
    required column is there."""
    have = [str(c) for c in available]
    present = set(have)
    missing = [(c, f) for c, f in required_source_columns(spec).items() if c not in present]
    if not missing:
        return None
    problems = []
    for column, field in missing[:limit]:
        close = difflib.get_close_matches(column, have, n=3, cutoff=0.6)
        hint = "closest: " + ", ".join(repr(c) for c in close) if close else "nothing similar"
        problems.append(f"{field}: {column!r} is not a column of {where} ({hint})")
    more = missing[limit:]
    rest = f" (and {len(more)} more: {', '.join(c for c, _ in more)})" if more else ""
    shown_cols = ", ".join(have[:15]) + (f", … ({len(have)} in all)" if len(have) > 15 else "")
    config = f"{_shown(spec.config_file)}: " if spec.config_file else ""
    return f"{config}{'; '.join(problems)}{rest} — its columns: {shown_cols or 'none'}"


def check_columns(spec: DatasetSpec, available: Iterable[str], where: str) -> None:
    """Raise `ColumnsError` (one line, see `missing_columns_message`) unless `available` has every
    column the spec reads; `where` says which data was looked at (a file, "the landed data")."""
    message = missing_columns_message(spec, available, where)
    if message:
        raise ColumnsError(message)


def check_gate_classes(spec: DatasetSpec, n_classes: int, where: str) -> None:
    """Raise `ConfigError` (one line naming the config, the gate metric and the fix) when a gate
    metric cannot apply to a target with `n_classes` classes (f1 or brier on multi-class), as
    counted in `where`; the task alone is already checked at `load_spec`."""
    from mlops_pipeline.training.metrics import metric_task_problem

    if spec.task != "classification":
        return
    for metric in spec.gate:
        problem = metric_task_problem(metric, spec.task, n_classes)
        if problem:
            config = f"{_shown(spec.config_file)}: " if spec.config_file else ""
            raise ConfigError(f"{config}gate.{metric}: {problem} (counted in {where})")
