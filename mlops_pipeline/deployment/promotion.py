"""Promotion from the command line goes through THE gate, exactly like the pipeline's promotion.

`gate_version` re-scores the registered candidate and the current champion on the same trusted
holdout (`deployment.holdout.trusted_comparison`: the holdout of the candidate's own snapshot,
recorded as the version's `snapshot_id` tag, without the rows the champion trained on), then lets
`gate.evaluate_gate` judge the numbers. Scoring both the same way (`score_version`, i.e. loaded
from the registry as serving loads them) is what makes the comparison fair; nothing here decides
what "better" means.

A version the loop did not train (registered from a notebook or another pipeline: no `snapshot_id`
tag) goes through the same gate: it is scored, loaded through its flavor as serving loads it, on
the champion's trusted holdout (the rows the champion never trained on; which rows the foreign
model saw is unknown) against the champion, and tagged `origin=external` with the verdict.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

from mlops_pipeline.data.storage import Storage
from mlops_pipeline.deployment.gate import GateResult, evaluate_gate
from mlops_pipeline.deployment.registry import AliasMove, RegistryError
from mlops_pipeline.deployment.tags import (
    CHAMPION,
    COPIED_FROM_TAG,
    EXTERNAL_ORIGIN,
    FORCED_BY_TAG,
    FORCED_REASONS_TAG,
    FORCED_TAG,
    GATE_CHAMPION_TAG,
    GATE_REASONS_TAG,
    GATE_SNAPSHOT_TAG,
    GATE_STATUS_TAG,
    HOLDOUT_TAG_PREFIX,
    ORIGIN_TAG,
    PROMOTED_BY_TAG,
    SNAPSHOT_ID_TAG,
)
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.spec import DatasetSpec
from mlops_pipeline.training.metrics import COST_METRIC


@dataclass(frozen=True)
class GateReport:
    """`gate_version`'s answer: both versions' metrics on the candidate's holdout and the gate's verdict
    (`champion_metrics` None when there is no other champion to compare with)."""

    name: str
    version: str
    champion_version: str | None
    snapshot_id: str
    candidate_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    result: GateResult
    #: Which holdout rows both were scored on (`ComparisonHoldout.describe`).
    comparison: str = ""
    #: The candidate was not trained by the loop: `snapshot_id` is the champion's (its holdout).
    external: bool = False

    @property
    def passed(self) -> bool:
        return self.result.passed


def gate_version(
    mlflow: MLflow, storage: Storage, spec: DatasetSpec, version: str, model_name: str | None = None
) -> GateReport:
    """Score `version` (of `model_name`, default the dataset's model) and the current champion on
    the candidate's holdout and run the gate; a version without a `snapshot_id` tag (trained
    outside the loop) on the champion's holdout instead (`external` in the report)."""
    from mlops_pipeline.data.features import holdout_for_scoring
    from mlops_pipeline.deployment.holdout import trusted_comparison
    from mlops_pipeline.deployment.scoring import score_version_rows
    from mlops_pipeline.deployment.segments import gate_segments

    name = spec.name
    source = model_name or name
    mv = mlflow.client().get_model_version(source, str(version))
    snapshot_id = (mv.tags or {}).get(SNAPSHOT_ID_TAG) if source == name else None
    champion = mlflow.version_by_alias(name, CHAMPION)
    champion_version = str(champion.version) if champion is not None else None
    rival = champion_version is not None and (source != name or champion_version != str(version))
    champion_snapshot = holdout_snapshot(champion.tags) if rival else None
    external = not snapshot_id
    if external:  # trained outside the loop: the champion's holdout is the trusted one
        if not champion_snapshot:
            raise RegistryError(f"{source} v{version} was trained outside the loop (no snapshot_id tag) "
                                f"and {name} has no champion with a holdout: no trusted holdout "
                                "to score it on; run the loop first")
        snapshot_id = champion_snapshot
    frame = holdout_for_scoring(storage, snapshot_id, spec)
    comparison = trusted_comparison(storage, spec, frame, champion_snapshot)
    if comparison.compared_rows == 0:
        raise RegistryError(f"no holdout row of v{version} is left to compare on "
                            f"({comparison.describe(champion_version)})")
    frame = comparison.frame
    try:
        candidate, candidate_scored = score_version_rows(mlflow, source, str(version), frame, spec)
    except (ValueError, KeyError) as exc:  # e.g. no probabilities, or columns the contract lacks
        raise RegistryError(f"{source} v{version} cannot be scored on {name}'s holdout: "
                            + " ".join(str(exc).split())[:300]) from exc
    champion_metrics, champion_scored = None, None
    if rival:  # the answers per row too: the segments are judged on them (`deployment.segments`)
        champion_metrics, champion_scored = score_version_rows(mlflow, name, champion_version, frame,
                                                               spec)
    if COST_METRIC in spec.gate:
        versions = [(source, str(version))] + ([(name, champion_version)] if champion_metrics else [])
        costs = version_costs(mlflow, name, versions, frame, spec)
        candidate[COST_METRIC] = costs[(source, str(version))]
        if champion_metrics is not None:
            champion_metrics[COST_METRIC] = costs[(name, champion_version)]
    result = evaluate_gate(candidate, champion_metrics, spec.gate,
                           champion_version if champion_metrics is not None else None,
                           segments=gate_segments(frame, candidate_scored, champion_scored, spec))
    return GateReport(source, str(version), champion_version, snapshot_id, candidate, champion_metrics,
                      result, comparison.describe(champion_version if rival else None), external)


def holdout_snapshot(tags: dict[str, str] | None) -> str | None:
    """The snapshot whose holdout stands for a version: the one it was trained on, or, for a
    version trained outside the loop, the one the gate scored it on."""
    tags = tags or {}
    return tags.get(SNAPSHOT_ID_TAG) or tags.get(GATE_SNAPSHOT_TAG)


def inference_costs(models: dict[str, object], X, task: str, repeats: int = 5) -> dict[str, float]:
    """CPU seconds per 1,000 rows of `X` for each model, what the gate's `inference_cost` rule
    judges: single-threaded (OpenMP and BLAS limited to one thread, so `time.thread_time` sees all
    the work), the models interleaved in the same loop so machine load hits them alike, and the
    fastest of `repeats` passes kept (noise only ever adds time)."""
    import time

    from threadpoolctl import threadpool_limits

    from mlops_pipeline.training.model import predict_scores

    if len(X) == 0:
        raise ValueError("no rows to measure inference cost on")
    best = {key: float("inf") for key in models}
    with threadpool_limits(limits=1):
        for model in models.values():
            predict_scores(model, X.head(100), task)  # warm caches and lazy imports first
        for _ in range(repeats):
            for key, model in models.items():
                start = time.thread_time()
                predict_scores(model, X, task)
                best[key] = min(best[key], time.thread_time() - start)
    return {key: seconds * 1000 / len(X) for key, seconds in best.items()}


def version_costs(mlflow: MLflow, name: str, versions: list, df, spec) -> dict:
    """`inference_costs` of registered versions (loaded as serving loads them, any flavor) on
    `df`'s holdout. `versions` are version numbers of `name`, or (model name, version) pairs (a
    foreign candidate beside the champion); the answer is keyed the same way."""
    from mlops_pipeline.data.contract import load_contract, validate
    from mlops_pipeline.data.preparation import xy
    from mlops_pipeline.deployment.scoring import load_version

    X, _ = xy(df, spec, "holdout")
    X = validate(X, load_contract(spec).for_columns(spec.features.columns))
    models = {v: load_version(mlflow, *(v if isinstance(v, tuple) else (name, v)))
              for v in dict.fromkeys(versions)}
    return inference_costs(models, X, spec.task)


def promote_version(
    mlflow: MLflow,
    storage: Storage,
    spec: DatasetSpec,
    version: str,
    force: bool = False,
    actor: str | None = None,
    reason: str = "",
    new_registry: bool = False,
    model_name: str | None = None,
) -> tuple[GateReport | None, list[AliasMove]]:
    """Gate, then move `champion`; `force` skips a failing verdict but records that it did (on
    the version's tags and in the alias history, whose reason is the verdict plus `reason`).

    `model_name`: the candidate is that registered model's `version` (a notebook's model under a
    name of its own); once it passes it is copied into the dataset's model as a new version
    (tag `copied_from`), which becomes champion, so the server following the dataset's champion
    serves it. A candidate the loop did not train is tagged `origin=external` with the verdict
    (`gate.status`...) and its model card, whether or not it passes.

    Returns (the gate report, or None when the gate could not run and force was given; the moves).
    Raises `PromotionRefused` when the gate fails without force, `RegistryError` when the registry
    is not the one the alias history knows (`Registry.check_not_forgotten`) without `new_registry`.
    """
    name = spec.name
    source = model_name or name
    client = mlflow.client()
    mv = client.get_model_version(source, str(version))  # fails early on an unknown version
    external = source != name or not (mv.tags or {}).get(SNAPSHOT_ID_TAG)
    who = actor or f"cli:{getpass.getuser()}"
    report: GateReport | None
    try:
        report = gate_version(mlflow, storage, spec, version, model_name=source)
    except (FileNotFoundError, RegistryError):
        if not force:
            raise
        report = None
    if report is not None and report.external:
        record_external(mlflow, spec, source, str(version), report)
    if report is not None and not report.passed and not force:
        raise PromotionRefused(report)
    forced = force and (report is None or not report.passed)
    if source != name:  # the dataset's model gets the foreign version as one of its own
        copy = client.copy_model_version(f"models:/{source}/{version}", name)
        client.set_model_version_tag(name, str(copy.version), COPIED_FROM_TAG, f"{source}/{version}")
        version = str(copy.version)
        if report is not None and report.external:
            record_external(mlflow, spec, name, version, report)
    if external and report is None:  # forced past a gate that could not score it: origin still known
        client.set_model_version_tag(name, str(version), ORIGIN_TAG, EXTERNAL_ORIGIN)
        # ... and the snapshot the gate tried to score it on (the champion's): what its drift is
        # measured against once it serves (e.g. a classifier answering labels only).
        champion = mlflow.version_by_alias(name, CHAMPION)
        if champion is not None and (tried := holdout_snapshot(champion.tags)):
            client.set_model_version_tag(name, str(version), GATE_SNAPSHOT_TAG, tried)
    why = gate_reason(None if report is None else report.result, forced)
    moves = mlflow.promote(name, str(version), actor=who, reason=f"{why}; {reason}" if reason else why,
                           new_registry=new_registry)
    client.set_model_version_tag(name, str(version), PROMOTED_BY_TAG, who)
    if forced:
        client.set_model_version_tag(name, str(version), FORCED_TAG, "true")
        reasons = "gate could not run" if report is None else "; ".join(report.result.failures())
        client.set_model_version_tag(name, str(version), FORCED_REASONS_TAG, reasons[:4000])
        client.set_model_version_tag(name, str(version), FORCED_BY_TAG, who)
    return report, moves


def record_external(mlflow: MLflow, spec: DatasetSpec, name: str, version: str, report: GateReport) -> None:
    """Tags and card of a version the loop did not train: `origin=external`, the gate's verdict as
    the loop's own versions carry it, and a model card that says what is unknown."""
    from mlops_pipeline.deployment.card import external_card

    client = mlflow.client()
    result = report.result
    tags = {ORIGIN_TAG: EXTERNAL_ORIGIN, GATE_STATUS_TAG: "passed" if result.passed else "failed",
            GATE_CHAMPION_TAG: result.champion_version or "none",
            GATE_REASONS_TAG: "; ".join(result.failures())[:4000], GATE_SNAPSHOT_TAG: report.snapshot_id}
    # Its metrics on that holdout, as the loop's versions carry their own (`holdout_<metric>`).
    tags.update({f"{HOLDOUT_TAG_PREFIX}{k}": str(v) for k, v in report.candidate_metrics.items()})
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    mv = client.get_model_version(name, version)
    card = external_card(spec, f"{name} v{version}", mv.run_id, result, report.snapshot_id)
    client.update_model_version(name, version, description=card)


def gate_reason(result: GateResult | None, forced: bool = False) -> str:
    """The gate's verdict in one line, as the alias history records why a champion moved."""
    if result is None:
        return "FORCED: the gate could not run"
    if forced:
        return "FORCED past a failed gate: " + "; ".join(result.failures())
    vs = f" vs champion v{result.champion_version}" if result.champion_version else ""
    scores = ", ".join(
        f"{v.metric}={v.candidate:.4f}" + ("" if v.champion is None else f" ({v.champion:.4f})")
        for v in result.verdicts)
    return f"gate passed{vs}: {scores}"


class PromotionRefused(RuntimeError):
    """The gate refused the version and force was not given: no alias moved; `report` holds the verdict."""

    def __init__(self, report: GateReport):
        super().__init__("; ".join(report.result.failures()))
        self.report = report
