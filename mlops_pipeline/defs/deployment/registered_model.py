"""Stage 4: register the candidate as `challenger`, gate it, and only then make it `champion`.

The gate's verdict is computed by `mlops_pipeline.deployment.gate.evaluate_gate` in the blocking checks, and
computed again by `champion_model` right before it moves the alias: the checked asset is still
materialized when its gate fails, so promotion must re-check this very candidate rather than trust
that it is "the latest one".
"""


from collections.abc import Iterator

import dagster as dg

from mlops_pipeline.data.features import FeaturesInfo
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.deployment.trusted_holdout import trusted_holdout
from mlops_pipeline.defs.handoffs import CandidateVersion, ChampionRecord, TrainedModel
from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.defs.segment_tables import segment_table
from mlops_pipeline.deployment.gate import GateResult
from mlops_pipeline.deployment.scoring import score_version, score_version_rows
from mlops_pipeline.deployment.tags import (
    CHALLENGER,
    CHAMPION,
    DAGSTER_RUN_ID_TAG,
    DRIFT_REFERENCE_TAG,
    ESTIMATOR_TAG,
    GATE_CHAMPION_TAG,
    GATE_REASONS_TAG,
    GATE_STATUS_TAG,
    GIT_SHA_TAG,
    HOLDOUT_TAG_PREFIX,
    OWNER_TAG,
    PROMOTED_BY_TAG,
    RUN_ID_TAG,
    SNAPSHOT_ID_TAG,
)
from mlops_pipeline.deployment.tracking import MLflow


@dg.asset(
    group_name="deployment",
    kinds={"mlflow"},
    pool="mlflow_registry",
    description="The trained model as an MLflow model version with alias `challenger`, scored "
    "against the current champion on the same holdout.",
)
def model_version(
    context: dg.AssetExecutionContext,
    trained_model: TrainedModel,
    training_features: FeaturesInfo,
    dataset: DatasetResource,
    mlflow: dg.ResourceParam[MLflow],
    storage: dg.ResourceParam[Storage],
) -> dg.Output[CandidateVersion]:
    """Register the candidate as `challenger` and score it and the champion on the same trusted
    holdout (`deployment.holdout.comparison_holdout`: the candidate's holdout without the rows of
    batches a check of this run flagged and the rows the champion trained on). No trusted row
    left: fail before registering."""
    import mlflow as mlflow_lib

    from mlops_pipeline.deployment.promotion import version_costs
    from mlops_pipeline.training.metrics import COST_METRIC

    spec = dataset.spec()
    name = spec.name
    mlflow.configure()
    champion = mlflow.version_by_alias(name, CHAMPION)
    comparison = trusted_holdout(context, spec, storage, training_features, champion)
    champion_version = str(champion.version) if champion else None
    if comparison.compared_rows == 0:
        raise dg.Failure(
            f"no holdout row is left to compare on ({comparison.describe(champion_version)}): "
            "nothing to compare the candidate with the champion on"
        )
    champion_metrics, champion_scored = None, None
    by_segment = spec.segments.enabled and champion is not None
    if by_segment:  # the answers per row too: the segments are judged on them, no second call
        champion_metrics, champion_scored = score_version_rows(
            mlflow, name, str(champion.version), comparison.frame, spec)
    elif champion is not None:
        champion_metrics = score_version(mlflow, name, str(champion.version), comparison.frame, spec)
    # Only the tags a person searches versions by; the full manifest is the run's manifest.yaml
    # (and its `manifest.*` run tags), the summary is the model card (the description).
    tags = {
        SNAPSHOT_ID_TAG: trained_model.snapshot_id,
        GIT_SHA_TAG: str(trained_model.manifest.get("git", {}).get("sha")),
        RUN_ID_TAG: trained_model.run_id,
        DAGSTER_RUN_ID_TAG: context.run_id,
        **({OWNER_TAG: spec.owner} if spec.owner else {}),  # who is paged for this version
        **({DRIFT_REFERENCE_TAG: trained_model.reference_uri} if trained_model.reference_uri else {}),
        **({ESTIMATOR_TAG: trained_model.estimator_uri}
           if getattr(trained_model, "estimator_uri", "") else {}),
        **{f"{HOLDOUT_TAG_PREFIX}{k}": f"{v:.6f}" for k, v in trained_model.metrics.items()},
    }
    mv = mlflow_lib.register_model(trained_model.model_uri, name, tags=tags)
    segments = None
    if by_segment:
        from mlops_pipeline.deployment.segments import gate_segments, log_segments

        scored_metrics, candidate_scored = score_version_rows(
            mlflow, name, str(mv.version), comparison.frame, spec)
        metrics = dict(trained_model.metrics if comparison.complete else scored_metrics)
        segments = gate_segments(comparison.frame, candidate_scored, champion_scored, spec)
        if segments is not None:
            log_segments(mlflow.client(), trained_model.run_id, segments)
    else:
        metrics = dict(trained_model.metrics if comparison.complete
                       else score_version(mlflow, name, str(mv.version), comparison.frame, spec))
    if COST_METRIC in spec.gate:  # both versions loaded and timed here, interleaved
        costs = version_costs(mlflow, name, [str(mv.version), *([champion_version] if champion_metrics
                                                                 else [])], comparison.frame, spec)
        metrics[COST_METRIC] = costs[str(mv.version)]
        if champion_metrics is not None:
            champion_metrics[COST_METRIC] = costs[champion_version]
    candidate = CandidateVersion(
        name=name,
        version=str(mv.version),
        run_id=trained_model.run_id,
        snapshot_id=trained_model.snapshot_id,
        metrics=metrics,
        champion_version=champion_version,
        champion_metrics=champion_metrics,
        comparison=comparison.describe(champion_version),
        comparison_counts=comparison.metadata,
        segments=segments,
    )
    verdict = candidate.gate(spec.gate)
    client = mlflow.client()
    client.set_model_version_tag(name, mv.version, GATE_STATUS_TAG, "passed" if verdict.passed else "failed")
    client.set_model_version_tag(name, mv.version, GATE_CHAMPION_TAG, champion_version or "none")
    if not verdict.passed:
        client.set_model_version_tag(name, mv.version, GATE_REASONS_TAG, "; ".join(verdict.failures()))
    client.update_model_version(name, mv.version, description=_card(
        spec, candidate, trained_model, training_features, verdict, storage))
    mlflow.set_alias(name, CHALLENGER, mv.version)
    url = mlflow.model_version_url(name, mv.version)
    metadata = {
        "model_name": name,
        "version": candidate.version,
        **({"mlflow_model_version": dg.MetadataValue.url(url)} if url else {}),
        "snapshot_id": candidate.snapshot_id,
        "champion_version": candidate.champion_version or "none",
        "comparison_holdout": comparison.describe(champion_version),
        **comparison.metadata,
        **{f"candidate_{k}": float(v) for k, v in candidate.metrics.items()},
        **{f"champion_{k}": float(v) for k, v in (champion_metrics or {}).items()},
    }
    return dg.Output(candidate, metadata=metadata)


def _card(spec, candidate: CandidateVersion, trained: TrainedModel, features: FeaturesInfo,
          verdict: GateResult, storage: Storage) -> str:
    """The version's model card (`deployment.card`), from what this step already holds."""
    from mlops_pipeline.deployment.card import CardFacts, model_card
    from mlops_pipeline.deployment.lineage import read_snapshot_batches

    period = (features.time_start, features.time_end) if features.time_start else None
    recorded = read_snapshot_batches(storage, candidate.snapshot_id) or {}
    git = trained.manifest.get("git", {}) or {}
    facts = CardFacts(
        version=candidate.version, run_id=candidate.run_id, snapshot_id=candidate.snapshot_id,
        snapshot_rows=recorded.get("rows"), period=period,
        train_rows=features.train_rows, holdout_rows=features.holdout_rows,
        git_sha=str(git.get("sha", "unknown")), git_dirty=git.get("dirty"),
    )
    return model_card(spec, facts, verdict)


def _gate_table(verdict: GateResult) -> dg.TableMetadataValue:
    def num(v: float | None) -> float | None:
        return None if v is None else float(v)

    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({
                "metric": v.metric,
                "candidate": num(v.candidate),
                "champion": num(v.champion),
                "floor": num(v.floor),
                "tolerance": float(v.tolerance),
                "passed": bool(v.passed),
            })
            for v in verdict.verdicts
        ],
        schema=dg.TableSchema(columns=[
            dg.TableColumn("metric", "string"), dg.TableColumn("candidate", "float"),
            dg.TableColumn("champion", "float"), dg.TableColumn("floor", "float"),
            dg.TableColumn("tolerance", "float"), dg.TableColumn("passed", "bool"),
        ]),
    )


def _segment_result(model_version: CandidateVersion, spec) -> dg.AssetCheckResult:
    """The `segment_regression` check from the candidate's per-segment verdict."""
    report = model_version.segments
    if report is None:
        why = ("no segments in the dataset config" if not spec.segments.enabled
               else "no champion yet: nothing to compare segments with")
        return dg.AssetCheckResult(check_name="segment_regression", passed=True, description=why)
    failures = report.failures()
    return dg.AssetCheckResult(
        check_name="segment_regression",
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(failures) if failures else (
            f"no segment regressed beyond {report.tolerance:g} {report.metric} with "
            f"{report.confidence:.0%} confidence ({len(report.rows)} segments)"),
        metadata={"segments": segment_table(report), "metric": report.metric,
                  "tolerance": float(report.tolerance), "confidence": float(report.confidence),
                  "min_rows": int(report.min_rows),
                  "blocking_segments": ", ".join(r.segment for r in report.blocking) or "none",
                  "champion_version": model_version.champion_version or "none"},
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "eval_floor", asset="model_version", blocking=True,
            description="Does the candidate meet every metric's absolute floor on the holdout?",
        ),
        dg.AssetCheckSpec(
            "no_regression", asset="model_version", blocking=True,
            description="Is the candidate no worse than the champion (within tolerance) on the "
            "same holdout?",
        ),
        dg.AssetCheckSpec(
            "segment_regression", asset="model_version", blocking=True,
            description="Is no segment (dataset config `segments:`) worse than under the champion "
            "beyond segment tolerance, with confidence (paired bootstrap interval)?",
        ),
    ],
    ins={"model_version": dg.AssetIn("model_version")},
)
def eval_gate(
    model_version: CandidateVersion, dataset: DatasetResource
) -> Iterator[dg.AssetCheckResult]:
    """THE gate's verdict on the registered candidate, as two blocking checks: a failing floor or a
    regression against the champion stops the run before drift and promotion."""
    verdict = model_version.gate(dataset.spec().gate)
    table = _gate_table(verdict)
    floor_fail = verdict.failures("floor")
    yield dg.AssetCheckResult(
        check_name="eval_floor",
        passed=verdict.meets_floor,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(floor_fail) if floor_fail else "every metric meets its floor",
        metadata={"metrics": table, "version": model_version.version},
    )
    reg_fail = verdict.failures("regression")
    yield dg.AssetCheckResult(
        check_name="no_regression",
        passed=verdict.no_regression,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "; ".join(reg_fail) if reg_fail
            else "no champion yet: the floor decides" if model_version.champion_version is None
            else f"no regression against champion v{model_version.champion_version}"
        ),
        metadata={"metrics": table, "champion_version": model_version.champion_version or "none",
                  **({"comparison_holdout": model_version.comparison} if model_version.comparison else {}),
                  **model_version.comparison_counts},
    )
    yield _segment_result(model_version, dataset.spec())


class PromotionConfig(dg.Config):
    """How this run may promote."""

    #: A first champion in a registry the alias history does not know (`Registry.forgotten_champion`)
    #: is promoted only when this is set: `mlops-pipeline materialize --new-registry`.
    new_registry: bool = False


@dg.asset(
    group_name="deployment",
    kinds={"mlflow"},
    pool="mlflow_registry",
    deps=["drift_report"],
    description="Moves the `champion` alias to the candidate that passed the gate (and, when "
    "drift.block_promotion is set, the input-drift check); the old champion stays as "
    "`previous-champion` for one-step rollback. The last step of the loop.",
)
def champion_model(
    context: dg.AssetExecutionContext,
    model_version: CandidateVersion,
    dataset: DatasetResource,
    mlflow: dg.ResourceParam[MLflow],
    config: PromotionConfig,
) -> dg.Output[ChampionRecord]:
    """Re-gate this very candidate, then move the alias — the last thing a loop run does.

    Everything that can refuse a candidate (contract checks, the eval gate, input drift when
    blocking) runs upstream of this asset, and no asset or check of the `mlops_loop` job depends
    on it, so a run cannot fail after the alias moved. Once the alias has moved, bookkeeping that
    fails (the `promoted_by` tag) is logged and reported in the metadata, never raised.
    """
    spec = dataset.spec()
    verdict = model_version.gate(spec.gate)
    if not verdict.passed:
        raise dg.Failure(
            f"v{model_version.version} did not pass the gate: {'; '.join(verdict.failures())}"
        )
    current = mlflow.version_by_alias(model_version.name, CHAMPION)
    current_version = str(current.version) if current else None
    if current_version not in (model_version.champion_version, model_version.version):
        raise dg.Failure(
            f"champion moved from v{model_version.champion_version} to v{current_version} after "
            f"v{model_version.version} was gated; rerun so it is compared with the new champion"
        )
    from mlops_pipeline.deployment.promotion import gate_reason
    from mlops_pipeline.deployment.registry import RegistryError

    try:
        moves = mlflow.promote(model_version.name, model_version.version,
                               actor=f"dagster:{context.run_id}", reason=gate_reason(verdict),
                               new_registry=config.new_registry)
    except RegistryError as exc:  # a registry the alias history does not know: nothing moved
        raise dg.Failure(str(exc)) from None
    try:
        mlflow.client().set_model_version_tag(
            model_version.name, model_version.version, PROMOTED_BY_TAG, f"dagster:{context.run_id}"
        )
        promoted_by = "tagged"
    except Exception as exc:  # noqa: BLE001 - the alias has moved: report, never fail the run now
        promoted_by = f"not written ({type(exc).__name__}: {exc})"
        context.log.warning(f"v{model_version.version} is champion; promoted_by tag {promoted_by}")
    for move in moves:
        context.log.info(f"alias moved: {move}")
    record = ChampionRecord(
        model_version.name, model_version.version, current_version, model_version.snapshot_id
    )
    return dg.Output(
        record,
        metadata={
            "champion_version": record.version,
            "previous_champion": record.previous_version or "none",
            "snapshot_id": record.snapshot_id,
            "alias_moves": "; ".join(str(m) for m in moves) or "already champion",
            "promoted_by_tag": promoted_by,
        },
    )
