"""The code location: loads fast, tells the loop's story in the UI, and validates with Dagster."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dagster as dg

from mlops_pipeline.data.batch_checks import BATCH_CHECKS
from mlops_pipeline.data.domain import OVERALL_CHECKS
from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.spec import PROJECT_ROOT

GROUPS = {
    "dataset_snapshot": "data", "training_features": "data", "trained_model": "training",
    "model_version": "deployment", "champion_model": "deployment", "drift_report": "monitoring",
    "prediction_log": "monitoring", "production_drift": "monitoring", "model_quality": "monitoring",
    "feedback_batch": "monitoring", "monitoring_board": "monitoring",
    "estimated_performance": "monitoring", "estimate_vs_realized": "monitoring",
    "labeling_queue": "monitoring",
    "challenger_analysis": "deployment",
}


def test_assets_are_grouped_in_loop_order_with_kinds_and_descriptions():
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assert node.group_name == GROUPS[name], name
        assert node.description, f"{name} has no description"
        assert {k for k in node.tags if k.startswith("dagster/kind/")}, f"{name} has no kinds"
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == set(GROUPS)


def test_every_check_has_a_description_and_the_gate_blocks():
    graph = build_definitions().resolve_asset_graph()
    checks = {k.name: graph.get_check_spec(k) for k in graph.asset_check_keys}
    assert all(spec.description for spec in checks.values())
    blocking = {n for n, spec in checks.items() if spec.blocking}
    assert blocking == {
        "snapshot_matches_content_id", "contract_schema", "null_rates", "min_rows", "unique_keys",
        "eval_floor", "no_regression", "segment_regression", "input_drift",
        *BATCH_CHECKS, *OVERALL_CHECKS,  # per landed batch, and the domain over all data
    }
    # input_drift is blocking in its spec but fails with WARN (which blocks nothing) unless the
    # dataset config sets drift.block_promotion; prediction drift only warns.
    assert "prediction_drift" in set(checks) - blocking
    assert {"inference_contract", "inference_null_rates", "training_serving_skew",
            "production_input_drift", "production_quality", "estimated_quality",
            "estimate_within_band", "concept_drift"} <= set(checks) - blocking


def test_loading_the_code_location_imports_no_heavy_library():
    code = (
        "import sys, json, time; t = time.perf_counter();"
        "from mlops_pipeline.defs.definitions import build_definitions; build_definitions();"
        "print(json.dumps([m for m in ('mlflow', 'sklearn', 'evidently', 'pandera') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_dagster_validates_the_definitions_and_the_instance_config(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    out = subprocess.run(
        [dagster, "definitions", "validate", "-m", "mlops_pipeline.defs.definitions"],
        capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    os.environ["DAGSTER_HOME"], old = str(home), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            coordinator = instance.run_coordinator
            assert type(coordinator).__name__ == "QueuedRunCoordinator"
            concurrency = instance.get_concurrency_config()
            limits = concurrency.run_queue_config.tag_concurrency_limits
            assert {"key": "mlops/training", "limit": 1} in limits
            assert concurrency.pool_config.default_pool_limit == 1  # registry steps one at a time
    finally:
        if old is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = old


def test_the_loop_job_carries_the_training_concurrency_tag():
    job = build_definitions().resolve_job_def("mlops_loop")
    assert job.tags.get("mlops/training") == "true"


def test_mlflow_telemetry_is_off_so_nothing_leaves_the_machine():
    """Outside CI, `import mlflow` would start a telemetry client that calls home; importing this
    package first (as every entry point does) turns it off, unless a user opts in explicitly."""
    code = ("import mlops_pipeline, mlflow; from mlflow.telemetry.client import get_telemetry_client;"
            "print(get_telemetry_client() is None)")
    ci = ("CI", "GITHUB_ACTIONS", "PYTEST_CURRENT_TEST", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
    env = {k: v for k, v in os.environ.items() if k not in ci}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert run.stdout.strip().splitlines()[-1] == "True"
