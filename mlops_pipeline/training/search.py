"""`model.search`: a seeded Optuna search of `model.params`, run before the final fit.

Each trial builds the configured model (`estimators.build_model`: `model.estimator` or the default
pipeline) with the trial's parameters over `model.params`, fits it on the train split minus a
validation split carved by content hash (`threshold.validation_mask` with
`model.search.validation_fraction`; never the holdout, which stays the gate's), and scores the first
gate metric on the validation rows (its direction from `training.metrics.GREATER_IS_BETTER`; the
default decision rule, the threshold being chosen afterwards on the final model).

The chosen parameters go into the run manifest (`search.params`) and the run's params; the final
model is refitted on the train split with them; `reproduce` retrains with the manifest's params and
never searches (`apply_params`).

Storage: in memory by default, sampled by `TPESampler(seed=seed)`, so the same data and seed pick
the same parameters. With a storage URL (`MLOPS_SEARCH_STORAGE`, or the production profile's
Postgres) the study lives in the database (`optuna.storages.RDBStorage`) under a name derived from
the spec, the snapshot and the seed (`study_name`): processes training the same thing share one
study and its trials, and a later run of the same spec, snapshot and seed continues it (its earlier
trials count towards the best). There each process seeds its sampler with the seed and its pid, so
parallel workers do not draw the same candidates; reproducibility comes from the recorded parameters.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd


def objective_metric(spec: Any) -> tuple[str, str]:
    """The metric the trials optimize (the first gate metric that scores predictions) and its
    Optuna direction."""
    from mlops_pipeline.training.metrics import COST_METRIC, GREATER_IS_BETTER

    for metric in spec.gate:
        if metric != COST_METRIC:
            return metric, "maximize" if GREATER_IS_BETTER[metric] else "minimize"
    raise ValueError("model.search: the gate has no metric to optimize — add one, e.g. roc_auc")


def apply_params(spec: Any, params: dict[str, Any]) -> Any:
    """`spec` with `params` over `model.params` and no search: what the final fit, a trial and
    `reproduce` build the model from."""
    model = spec.model.model_copy(update={"params": {**spec.model.params, **params}, "search": None})
    return spec.model_copy(update={"model": model})


def study_name(spec: Any, snapshot_id: str, seed: int) -> str:
    """One study per spec, snapshot and seed: the processes training the same thing share it."""
    return f"{spec.name}-{spec.fingerprint()}-{snapshot_id[:12]}-seed{seed}"


@dataclass(frozen=True)
class Trial:
    """One finished trial of this process: its number in the study, parameters and value."""

    number: int
    params: dict[str, Any]
    value: float


@dataclass(frozen=True)
class SearchResult:
    """What a search chose, as the run manifest records it (`record`)."""

    params: dict[str, Any]
    metric: str
    direction: str
    value: float
    study: str
    storage: str  # "memory" or "database"
    trials: tuple[Trial, ...]  # this process's trials, in order
    study_trials: int  # every finished trial of the study (all processes)

    def record(self) -> dict[str, Any]:
        """The manifest's `search` section: plain values only."""
        return {"params": dict(self.params), "metric": self.metric, "direction": self.direction,
                "value": float(self.value), "study": self.study, "storage": self.storage,
                "trials": len(self.trials), "study_trials": self.study_trials,
                "validation": "content hash of the train split (model.search.validation_fraction)"}


def _suggest(trial: Any, name: str, dim: Any) -> Any:
    if dim.type == "categorical":
        return trial.suggest_categorical(name, list(dim.choices))
    if dim.type == "int":
        return trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(name, float(dim.low), float(dim.high), log=dim.log)


def _rdb_storage(url: str, attempts: int = 3) -> Any:
    """Optuna's RDB storage at `url`. Processes meeting a fresh database at once race to create its
    tables (one gets a unique violation): the loser tries again and finds them made."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def run_search(X: pd.DataFrame, y: pd.Series, spec: Any, seed: int, *, storage_url: str = "",
               study: str | None = None, on_trial: Callable[[Trial], None] | None = None) -> SearchResult:
    """Search `model.search.space` on the contract-coerced train split `X`, `y` (see the module
    docstring): `model.search.trials` trials in this process, within `timeout`. `storage_url`
    ("" = in memory) holds the study named `study` (default: `<name>-search`); `on_trial` is
    called with each finished trial of this process."""
    import optuna

    from mlops_pipeline.training.estimators import build_model
    from mlops_pipeline.training.model import compute_metrics, predict_scores, set_positive_class
    from mlops_pipeline.training.threshold import validation_mask

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = spec.model.search
    metric, direction = objective_metric(spec)
    mask = validation_mask(X, y, spec, fraction=search.validation_fraction)
    fit_X, fit_y, val_X, val_y = X[~mask], y[~mask], X[mask], y[mask]
    if storage_url:
        storage: Any = _rdb_storage(storage_url)
        sampler_seed = (seed * 1_000_003 + os.getpid()) % 2**32
    else:
        storage, sampler_seed = None, seed
    name = study or f"{spec.name}-search"
    st = optuna.create_study(study_name=name, storage=storage, direction=direction,
                             sampler=optuna.samplers.TPESampler(seed=sampler_seed), load_if_exists=True)
    done: list[Trial] = []

    def objective(trial: Any) -> float:
        params = {p: _suggest(trial, p, dim) for p, dim in search.space.items()}
        trial.set_user_attr("pid", os.getpid())
        model = build_model(apply_params(spec, params), seed).fit(fit_X, fit_y)
        classes = set_positive_class(model, fit_y, spec) if spec.task == "classification" else None
        scores = predict_scores(model, val_X, spec.task)
        value = float(compute_metrics(spec.task, val_y, scores, classes)[metric])
        done.append(Trial(trial.number, params, value))
        if on_trial is not None:
            on_trial(done[-1])
        return value

    st.optimize(objective, n_trials=search.trials, timeout=search.timeout)
    best = st.best_trial
    finished = st.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return SearchResult(dict(best.params), metric, direction, float(best.value), name,
                        "database" if storage_url else "memory", tuple(done), len(finished))


def log_trials(client: Any, experiment_id: str, parent_run_id: str, result: SearchResult) -> list[str]:
    """Each of this process's trials as a nested MLflow run under the training run
    (`mlflow.parentRunId`): its parameters and its validation metric. Returns their run ids."""
    import time

    from mlflow.entities import Metric, Param

    ids = []
    for trial in result.trials:
        run = client.create_run(experiment_id, run_name=f"trial-{trial.number}",
                                tags={"mlflow.parentRunId": parent_run_id})
        now = int(time.time() * 1000)
        client.log_batch(run.info.run_id,
                         metrics=[Metric(f"validation_{result.metric}", trial.value, now, 0)],
                         params=[Param(k, str(v)) for k, v in trial.params.items()])
        client.set_terminated(run.info.run_id)
        ids.append(run.info.run_id)
    return ids



def fitted_spec(spec: Any, manifest: dict[str, Any]) -> Any:
    """The spec a version was fitted with, from its manifest: with `model.search`, the recorded
    chosen parameters applied and no search (what `reproduce` retrains); ValueError without them."""
    if spec.model.search is None:
        return spec
    params = (manifest.get("search") or {}).get("params")
    if not isinstance(params, dict):
        raise ValueError("model.search is set but the manifest records no search.params")
    return apply_params(spec, params)
