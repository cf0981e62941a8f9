"""The gate's optional cost rule (`gate: {inference_cost: {tolerance: 0.25}}`), through the path
`promote` takes (`promotion.gate_version`): candidate and champion loaded from the registry and
timed on the same holdout in the same step, single-threaded.

A candidate with 10x the champion's trees is blocked by the rule and passes without it; the
champion's own model registered again (an equal candidate) passes with it.
"""

from __future__ import annotations

import pytest
import yaml

from mlops_pipeline.deployment.gate import evaluate_gate
from mlops_pipeline.spec import load_spec
from mlops_pipeline.spec_sections import MetricGate
from mlops_pipeline.training.metrics import COST_METRIC
from mlops_pipeline_tests.cli.conftest import Registry

pytestmark = pytest.mark.slow


def test_relative_tolerance_is_a_share_of_the_champions_cost():
    policy = {COST_METRIC: MetricGate(tolerance=0.25)}
    assert evaluate_gate({COST_METRIC: 1.24}, {COST_METRIC: 1.0}, policy, "1").passed
    blocked = evaluate_gate({COST_METRIC: 1.26}, {COST_METRIC: 1.0}, policy, "1")
    assert not blocked.passed
    assert blocked.failures() == [
        "inference_cost=1.2600 regresses against champion v1 (1.0000; limit 1.2500)"]
    assert evaluate_gate({COST_METRIC: 9.0}, None, policy).passed  # no champion: floors only
    # where no cost was measured (CI against a baseline) the rule is not part of the verdict
    unmeasured = evaluate_gate({"roc_auc": 0.7}, {"roc_auc": 0.7},
                               {"roc_auc": MetricGate(), COST_METRIC: MetricGate(tolerance=0.25)})
    assert [v.metric for v in unmeasured.verdicts] == ["roc_auc"]


def _register(registry: Registry, spec, max_iter: int | None) -> str:
    """A new version on the champion's snapshot: the champion's own model again (None), or one
    retrained with `max_iter` trees."""
    import mlflow

    from mlops_pipeline.data.preparation import prepare
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.training.fit import fit_and_score
    from mlops_pipeline.training.logged_model import log_model

    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.tracking_uri)
    tags = {"snapshot_id": registry.snapshot_id}
    if max_iter is None:
        mv = mlflow.register_model(f"runs:/{registry.run_id}/model", spec.name, tags=tags)
        return str(mv.version)
    costly = spec.model_copy(deep=True)
    costly.model.params["max_iter"] = max_iter
    frame = prepare(Storage(root=str(registry.root)).read_snapshot(registry.snapshot_id),
                    costly).frame
    fitted = fit_and_score(frame, costly, seed=42)
    mlflow.set_experiment(experiment_id=mlflow.get_run(registry.run_id).info.experiment_id)
    with mlflow.start_run(run_name="costly-candidate"):
        uri = log_model(fitted.model, fitted.X_train, fitted.scores)
    return str(mlflow.register_model(uri, spec.name, tags=tags).version)


def test_cost_rule_blocks_a_ten_times_costlier_candidate_and_passes_an_equal_one(
        registry: Registry, monkeypatch, tmp_path):
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.deployment.promotion import gate_version
    from mlops_pipeline.deployment.tracking import MLflow

    registry.use(monkeypatch)
    raw = yaml.safe_load(registry.config.read_text())
    raw["gate"][COST_METRIC] = {"tolerance": 0.25}
    with_rule = tmp_path / "flights_cost.yaml"
    with_rule.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec, plain = load_spec(with_rule), load_spec(registry.config)
    trees = spec.model.params["max_iter"]
    mlflow_res = MLflow(tracking_uri=registry.tracking_uri)
    storage = Storage(root=str(registry.root))

    costly = _register(registry, spec, max_iter=10 * trees)
    report = gate_version(mlflow_res, storage, spec, costly)
    cost = next(v for v in report.result.verdicts if v.metric == COST_METRIC)
    assert cost.candidate > 3 * cost.champion, (cost.candidate, cost.champion)
    assert not report.passed and not cost.passed
    assert any(f.startswith("inference_cost=") for f in report.result.failures())
    # the same candidate without the rule: only the metrics judge it
    assert COST_METRIC not in gate_version(mlflow_res, storage, plain, costly).candidate_metrics

    equal = _register(registry, spec, max_iter=None)
    report = gate_version(mlflow_res, storage, spec, equal)
    cost = next(v for v in report.result.verdicts if v.metric == COST_METRIC)
    assert cost.passed and report.passed, report.result.failures()
    assert 0.5 < cost.candidate / cost.champion < 1.25
