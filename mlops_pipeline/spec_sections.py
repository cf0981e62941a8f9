"""The sections of a dataset spec, one frozen pydantic model each.

`spec.DatasetSpec` is the whole file; these are its parts (source, target, features, split, model,
gate, checks, drift, release, labeling). Each field's `description` is also the hint a config error
shows (`spec_errors`), so it says what the field means and how to set it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops_pipeline.spec_search import SearchSpec


class StrictModel(BaseModel):
    """A spec section: frozen, and an unknown key is an error (a typo never passes silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(StrictModel):
    """`source:` where batches land and in which file format."""

    path: str = Field(description="Glob of landed batch files, relative to the data dir.")
    format: Literal["csv", "parquet"] = "parquet"


class TargetSpec(StrictModel):
    """`target:` the column the model learns, or how to derive it, and its positive class."""

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


class FeatureSpec(StrictModel):
    """`features:` the model's inputs by kind; datetime columns expand inside the pipeline."""

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


class SplitSpec(StrictModel):
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


class CostSpec(StrictModel):
    """`model.threshold.cost:` what one false positive and one false negative cost."""

    fp: float = Field(gt=0, description="Cost of a false positive.")
    fn: float = Field(gt=0, description="Cost of a false negative.")


class ThresholdSpec(StrictModel):
    """`model.threshold:` how the decision threshold of a binary target is chosen on the
    validation split (carved from the train split by content hash): exactly one of them."""

    objective: Literal["f1"] | None = Field(default=None, description="f1: the threshold of best F1.")
    precision_at_recall: float | None = Field(
        default=None, gt=0, le=1,
        description="The threshold of best precision among those keeping recall at least this.",
    )
    cost: CostSpec | None = Field(default=None, description="The threshold of least total cost.")
    validation_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of the train split set aside to choose it."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ThresholdSpec:
        chosen = [k for k in ("objective", "precision_at_recall", "cost") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("model.threshold: set exactly one of objective: f1, "
                             f"precision_at_recall: R, cost: {{fp: A, fn: B}} (got {chosen or 'none'})")
        return self


class ModelSpec(StrictModel):
    """`model:` the estimator, its seed and hyper-parameters, preprocessing and threshold."""

    seed: int = 42
    params: dict[str, bool | int | float | str | None] = Field(default_factory=dict)
    estimator: str | None = Field(
        default=None,
        description="Import path of a scikit-learn-compatible estimator (e.g. "
        "sklearn.linear_model.LogisticRegression, lightgbm.LGBMClassifier); null keeps the default "
        "HistGradientBoosting pipeline.",
    )
    preprocessing: Literal["auto", "ordinal", "onehot"] = Field(
        default="auto",
        description="auto: one-hot and scaling for linear models, ordinal codes (native categoricals "
        "for lightgbm/xgboost) for tree models; or force ordinal / onehot.",
    )
    threshold: ThresholdSpec | None = Field(
        default=None, description="Choose the binary decision threshold on a validation split."
    )
    train: str | None = Field(
        default=None,
        description="`package.module:function` training the model yourself (`training.custom`): it "
        "gets the train and validation frames, the spec and the seed, and returns a fitted "
        "scikit-learn-compatible model taking the contract's columns.",
    )
    search: SearchSpec | None = Field(
        default=None, description="Search `model.params` with Optuna before the final fit.")
    max_train_rows: int | None = Field(
        default=2_000_000, ge=1,
        description="Train on a seeded sample of at most this many train rows (stratified by class "
        "for classification) when the train split is larger; null trains on every row. The sample is "
        "recorded in the run manifest and drawn again the same by `reproduce`.",
    )

    @model_validator(mode="after")
    def _estimator_exists(self) -> ModelSpec:
        if self.estimator is not None:
            from mlops_pipeline.training.estimators import check_estimator

            check_estimator(self.estimator, self.params)
        return self

    @model_validator(mode="after")
    def _train_or_search_fits(self) -> ModelSpec:
        if self.train is not None:
            if self.estimator is not None:
                raise ValueError("model.train and model.estimator are mutually exclusive — your "
                                 "function builds the model: remove model.estimator")
            if self.search is not None:
                raise ValueError("model.search tunes model.estimator or the default model, not a "
                                 "model.train function — search inside the function, or remove it")
            from mlops_pipeline.training.estimators import resolve_train

            resolve_train(self.train)
        if self.search is not None:
            from mlops_pipeline.training.estimators import check_space

            check_space(self.estimator, self.search)
        return self


class MetricGate(StrictModel):
    """One `gate:` rule: an absolute floor and the largest regression against the champion."""

    floor: float | None = Field(default=None, description="Absolute bound the candidate must meet.")
    tolerance: float = Field(
        default=0.0, ge=0, description="Largest allowed regression against the champion."
    )


class ChecksSpec(StrictModel):
    """`checks:` the data checks' limits, per landed batch and over the whole snapshot."""

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


class DriftSpec(StrictModel):
    """`drift:` the drift methods and thresholds, and what drift may trigger or block."""

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


class LatencySLO(StrictModel):
    """`release.latency:` the canary's p99 against the champion's."""

    max_p99_ratio: float = Field(
        default=1.5, gt=0, description="Challenger (canary) p99 latency at most this times the "
        "champion's p99 over the same window, plus `slack_ms`.")
    slack_ms: float = Field(
        default=5.0, ge=0, description="Absolute allowance on top of the ratio, so a few ms of "
        "noise on a fast champion is not a breach.")
    min_requests: int = Field(default=100, ge=1, description="Requests per side before it decides.")


class ErrorSLO(StrictModel):
    """`release.errors:` the challenger's error rate from the server's counters."""

    max_error_rate: float = Field(default=0.01, ge=0, le=1,
                                  description="Challenger error rate at most this (server /metrics).")
    min_requests: int = Field(default=100, ge=1, description="Challenger requests before it decides.")


class ShiftSLO(StrictModel):
    """`release.shift:` how far the challenger's predictions may move from the champion's."""

    max_psi: float = Field(default=0.2, ge=0, description="PSI of the challenger's scores against "
                           "the champion's (binary probability, regression value).")
    max_js: float = Field(default=0.1, ge=0, description="Jensen-Shannon distance of the predicted "
                          "classes (multi-class).")
    min_records: int = Field(default=300, ge=1, description="Records per side before it decides.")


class AgreementSLO(StrictModel):
    """`release.agreement:` shadow and champion on the same records."""

    min_agreement: float = Field(default=0.9, ge=0, le=1, description="Shadow: share of shared "
                                 "records where challenger and champion predict the same class.")
    max_mean_abs_diff: float = Field(default=0.1, ge=0, description="Shadow: mean absolute "
                                     "difference of the scores on the same records.")
    min_records: int = Field(default=200, ge=1, description="Shared records before it decides.")


class QualitySLO(StrictModel):
    """`release.quality:` the gate's metric on labelled requests, with a bootstrap interval."""

    metric: str | None = Field(default=None, description="Gate metric compared on labelled "
                               "requests (default: the first of `gate:`); tolerance is the gate's.")
    confidence: float = Field(default=0.95, gt=0, lt=1, description="Bootstrap interval level.")
    bootstrap_samples: int = Field(default=300, ge=50)
    min_labelled: int = Field(default=300, ge=10, description="Labelled records per side first.")
    required: bool = Field(default=True, description="Ready to promote only once quality passed.")


class ReleaseSpec(StrictModel):
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


class LabelingSpec(StrictModel):
    """The daily labeling queue: which served predictions a human should label first."""

    max_per_day: int = Field(default=200, ge=0, description="Queue items per day at most.")
    shadow_disagreement: bool = Field(default=True, description="Also queue records where the "
                                      "shadow challenger's answer differs from the champion's.")
