"""Stage 4: register the candidate as `challenger`, gate it, and only then make it `champion`.

The gate's verdict is computed by `mlops_pipeline.gate.evaluate_gate` in the blocking checks, and
computed again by `champion_model` right before it moves the alias: the checked asset is still
materialized when its gate fails, so promotion must re-check this very candidate rather than trust
that it is "the latest one".
"""


from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from mlops_pipeline.assets.training import TrainedModel
from mlops_pipeline.gate import GateResult, evaluate_gate
from mlops_pipeline.resources import DatasetResource, MLflowResource
from mlops_pipeline.resources.mlflow import CHALLENGER, CHAMPION


@dataclass(frozen=True)
class CandidateVersion:
    name: str
    version: str
    run_id: str
    snapshot_id: str
    metrics: dict[str, float]
    champion_version: str | None
    champion_metrics: dict[str, float] | None

    def gate(self, policy) -> GateResult:
        return evaluate_gate(self.metrics, self.champion_metrics, policy, self.champion_version)


def score_version(mlflow: MLflowResource, name: str, version: str, df: pd.DataFrame, spec) -> dict:
    """Score a registered version on `df`'s holdout exactly as serving would load it."""
    import mlflow as mlflow_lib

    from mlops_pipeline.contract import load_contract, validate
    from mlops_pipeline.model import compute_metrics, predict_scores
    from mlops_pipeline.preparation import xy

    mlflow.configure()
    model = mlflow_lib.sklearn.load_model(f"models:/{name}/{version}")
    X, y = xy(df, spec, "holdout")
    X = validate(X, load_contract(spec).for_columns(spec.features.columns))
    return compute_metrics(spec.task, y, predict_scores(model, X, spec.task))


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
    training_features: pd.DataFrame,
    dataset: DatasetResource,
    mlflow: MLflowResource,
) -> dg.Output[CandidateVersion]:
    import mlflow as mlflow_lib

    from mlops_pipeline.manifest import manifest_tags

    spec = dataset.spec()
    name = spec.name
    mlflow.configure()
    champion = mlflow.version_by_alias(name, CHAMPION)
    champion_metrics = None
    if champion is not None:
        champion_metrics = score_version(mlflow, name, str(champion.version), training_features, spec)
    tags = {
        **manifest_tags(trained_model.manifest),
        "snapshot_id": trained_model.snapshot_id,
        "git_sha": str(trained_model.manifest.get("git", {}).get("sha")),
        "run_id": trained_model.run_id,
        "dagster_run_id": context.run_id,
        **({"drift_reference": trained_model.reference_uri} if trained_model.reference_uri else {}),
        **{f"holdout_{k}": f"{v:.6f}" for k, v in trained_model.metrics.items()},
    }
    mv = mlflow_lib.register_model(trained_model.model_uri, name, tags=tags)
    candidate = CandidateVersion(
        name=name,
        version=str(mv.version),
        run_id=trained_model.run_id,
        snapshot_id=trained_model.snapshot_id,
        metrics=trained_model.metrics,
        champion_version=str(champion.version) if champion else None,
        champion_metrics=champion_metrics,
    )
    verdict = candidate.gate(spec.gate)
    client = mlflow.client()
    client.set_model_version_tag(name, mv.version, "gate.status", "passed" if verdict.passed else "failed")
    if not verdict.passed:
        client.set_model_version_tag(name, mv.version, "gate.reasons", "; ".join(verdict.failures()))
    mlflow.set_alias(name, CHALLENGER, mv.version)
    url = mlflow.model_version_url(name, mv.version)
    metadata = {
        "model_name": name,
        "version": candidate.version,
        **({"mlflow_model_version": dg.MetadataValue.url(url)} if url else {}),
        "snapshot_id": candidate.snapshot_id,
        "champion_version": candidate.champion_version or "none",
        **{f"candidate_{k}": float(v) for k, v in candidate.metrics.items()},
        **{f"champion_{k}": float(v) for k, v in (champion_metrics or {}).items()},
    }
    return dg.Output(candidate, metadata=metadata)


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
    ],
    ins={"model_version": dg.AssetIn("model_version")},
)
def eval_gate(
    model_version: CandidateVersion, dataset: DatasetResource
) -> Iterator[dg.AssetCheckResult]:
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
        metadata={"metrics": table, "champion_version": model_version.champion_version or "none"},
    )


@dataclass(frozen=True)
class ChampionRecord:
    name: str
    version: str
    previous_version: str | None
    snapshot_id: str


@dg.asset(
    group_name="deployment",
    kinds={"mlflow"},
    pool="mlflow_registry",
    description="Moves the `champion` alias to the candidate that passed the gate; the old champion "
    "stays as `previous-champion` for one-step rollback.",
)
def champion_model(
    context: dg.AssetExecutionContext,
    model_version: CandidateVersion,
    dataset: DatasetResource,
    mlflow: MLflowResource,
) -> dg.Output[ChampionRecord]:
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
    from mlops_pipeline.promotion import gate_reason

    moves = mlflow.promote(model_version.name, model_version.version,
                           actor=f"dagster:{context.run_id}", reason=gate_reason(verdict))
    mlflow.client().set_model_version_tag(
        model_version.name, model_version.version, "promoted_by", f"dagster:{context.run_id}"
    )
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
        },
    )
