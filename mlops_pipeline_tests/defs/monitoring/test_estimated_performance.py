"""Estimated performance in the loop: the version carries its estimator, a day of served traffic
is estimated before any label, a degraded day requests a gated retraining through the sensor, and
labels that contradict unchanged inputs raise `concept_drift` (not the input-drift check).

Predictions are written to the prediction store the way the serving process does (same store
class, same row type), scored by the registered champion.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.defs import automation
from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.monitoring.predictions import PredictionBatch, PredictionStore
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.conftest import check_results
from mlops_pipeline_tests.defs.monitoring.champion_traffic import champion_answers

pytestmark = pytest.mark.slow

TODAY = datetime.now(UTC).strftime("%Y-%m-%d")
WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]


def _serve(rows: pd.DataFrame, labels=None) -> list[str]:
    """Score `rows` with the champion and capture them as the server would; attach `labels`
    (the dataset's label source, `arr_delay`) when given."""
    spec, version, proba, features = champion_answers(rows)
    batch = PredictionBatch.from_records(features, (proba >= 0.5).astype(float).tolist(),
                                         proba.tolist(), model_name=spec.name, model_version=version,
                                         latency_ms=3.0)
    store = PredictionStore()
    store.write([batch])
    if labels is not None:
        for rid, label in zip(batch.request_ids, labels, strict=True):
            store.set_label(rid, float(label))
    store.close()
    return list(batch.request_ids)


def _run_production(instance):
    job = build_definitions().resolve_job_def("production_monitoring")
    return job.execute_in_process(instance=instance, partition_key=TODAY, raise_on_error=False)


def _stuck_feed(rows: pd.DataFrame) -> pd.DataFrame:
    """An upstream failure: the weather feed frozen at one reading, the hour defaulting to noon."""
    rows = rows.copy()
    for column in WEATHER:
        rows[column] = float(rows[column].median())
    rows["hour"] = 12
    return rows


def test_a_degraded_day_is_estimated_and_requests_a_gated_retraining_before_any_label(
        trained_flights, flights):
    # trained_flights: Jan-Mar landed, the loop run, v1 champion (this test's own copy)
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        spec = load_spec()
        v1 = mlflow.MlflowClient().get_model_version_by_alias(spec.name, "champion")
        stored = v1.tags["performance_estimator"]
        assert Path(stored).is_file() and stored.endswith(f"{v1.run_id}.skops")
        assert mlflow.get_run(v1.run_id).data.tags["performance_estimator"] == stored

        april = flights[flights["month"] == 4].dropna(subset=["arr_delay"]).sample(600, random_state=4)
        _serve(_stuck_feed(april))  # no labels: nobody knows yet
        result = _run_production(instance)

        assert result.success
        checks = check_results(result)
        assert not checks["estimated_quality"].passed
        assert "estimated roc_auc" in checks["estimated_quality"].description
        meta = result.asset_materializations_for_node("estimated_performance")[0].metadata
        assert meta["rows"].value == 600 and meta["method"].value == "CBPE (calibrated)"
        assert meta["estimator_source"].value == stored
        assert meta["estimated_roc_auc_upper"].value < meta["threshold_roc_auc"].value
        assert meta["floor_roc_auc"].value == 0.6
        assert meta["champion_holdout_roc_auc"].value == pytest.approx(float(v1.tags["holdout_roc_auc"]))
        assert "| roc_auc |" in meta["estimates"].value
        confusion = meta["expected_confusion"].value
        assert sum(sum(row.values()) for row in confusion.values()) == pytest.approx(600, abs=0.1)
        realized = result.asset_materializations_for_node("estimate_vs_realized")[0].metadata
        assert realized["labelled"].value == 0  # before any label

        resources = {"dataset": DatasetResource()}
        context = dg.build_sensor_context(instance=instance, resources=resources, definitions=defs)
        tick = automation.estimated_performance_sensor.evaluate_tick(context)
        assert len(tick.run_requests) == 1
        request = tick.run_requests[0]
        assert request.tags[automation.TRIGGER_TAG] == "estimated_performance"
        again = automation.estimated_performance_sensor.evaluate_tick(dg.build_sensor_context(
            instance=instance, resources=resources, definitions=defs, cursor=tick.cursor))
        assert not again.run_requests  # the same estimate never retrains twice

        # Estimated again, still degraded, within the cooldown: no second retraining.
        assert not check_results(_run_production(instance))["estimated_quality"].passed
        cooled = automation.estimated_performance_sensor.evaluate_tick(dg.build_sensor_context(
            instance=instance, resources=resources, definitions=defs, cursor=tick.cursor))
        assert not cooled.run_requests and "cooldown" in (cooled.skip_message or "")
        assert json.loads(cooled.cursor)["triggered_at"] == json.loads(tick.cursor)["triggered_at"]

        retrain = defs.resolve_job_def("mlops_loop").execute_in_process(
            instance=instance, tags=request.tags, raise_on_error=False)
        assert {"eval_floor", "no_regression"} <= set(check_results(retrain))  # gated
        assert retrain.dagster_run.tags[automation.TRIGGER_TAG] == "estimated_performance"


def test_labels_that_contradict_unchanged_inputs_fire_concept_drift_not_input_drift(
        trained_flights, flights):
    with dg.DagsterInstance.get() as instance:
        # Inputs from the months the champion was trained on; the relation flipped: flights the
        # data says were late are labelled on time, and the other way round.
        rows = flights[flights["month"] <= 3].dropna(subset=["arr_delay"]).sample(800, random_state=9)
        flipped = np.where(rows["arr_delay"].to_numpy() > 15, 0.0, 60.0)
        _serve(rows, labels=flipped)

        result = _run_production(instance)

        checks = check_results(result)
        assert checks["production_input_drift"].passed, checks["production_input_drift"].description
        assert checks["estimated_quality"].passed  # the inputs look as usual: so does the estimate
        assert not checks["concept_drift"].passed
        assert checks["concept_drift"].description.startswith("concept drift")
        assert not checks["estimate_within_band"].passed
        meta = result.asset_materializations_for_node("estimate_vs_realized")[0].metadata
        assert meta["labelled"].value == 800
        assert meta["realized_roc_auc"].value < 0.45 < meta["estimated_roc_auc"].value
        assert meta["estimate_abs_error_roc_auc"].value > 0.2
        assert "| roc_auc |" in meta["comparison"].value


def test_honest_labels_keep_the_estimate_in_band_and_no_concept_drift(trained_flights, flights):
    with dg.DagsterInstance.get() as instance:
        rows = flights[flights["month"] <= 3].dropna(subset=["arr_delay"]).sample(800, random_state=9)
        _serve(rows, labels=rows["arr_delay"].to_numpy())
        # A version registered before estimators were stored gets one rebuilt from its holdout.
        spec = load_spec()
        client = mlflow.MlflowClient()
        v1 = client.get_model_version_by_alias(spec.name, "champion")
        client.delete_model_version_tag(spec.name, v1.version, "performance_estimator")

        result = _run_production(instance)
        checks = check_results(result)

        assert checks["concept_drift"].passed, checks["concept_drift"].description
        assert checks["estimated_quality"].passed
        meta = result.asset_materializations_for_node("estimate_vs_realized")[0].metadata
        assert meta["labelled"].value == 800 and meta["realized_roc_auc"].value > 0.6
        estimated = result.asset_materializations_for_node("estimated_performance")[0].metadata
        assert estimated["estimator_source"].value.startswith("rebuilt from snapshot")


def test_a_regression_champion_is_estimated_by_its_loss_model_and_checked_once_labels_come(
        trained_regression, flights):
    # trained_regression: the loop run on flights_regression.yaml (MLOPS_DATASET_CONFIG set to it)
    with dg.DagsterInstance.get() as instance:
        spec = load_spec("data/configs/flights_regression.yaml")
        model = mlflow.sklearn.load_model(f"models:/{spec.name}@champion")
        version = str(mlflow.MlflowClient().get_model_version_by_alias(spec.name, "champion").version)
        rows = flights[flights["month"] == 4].dropna(subset=["arr_delay"]).sample(400, random_state=4)
        prediction = model.predict(rows[spec.features.columns])
        records = rows[list(dict.fromkeys([*spec.features.columns, *spec.key_columns]))].astype(object)
        records = records.where(records.notna(), None)
        features = [{k: (str(v) if isinstance(v, pd.Timestamp) else v) for k, v in rec.items()}
                    for rec in records.to_dict("records")]
        batch = PredictionBatch.from_records(features, prediction.tolist(), model_name=spec.name,
                                             model_version=version)
        store = PredictionStore()
        store.write([batch])
        for rid, label in zip(batch.request_ids[:200], rows["arr_delay"].to_numpy()[:200], strict=True):
            store.set_label(rid, float(label))
        store.close()

        result = _run_production(instance)

        assert result.success
        meta = result.asset_materializations_for_node("estimated_performance")[0].metadata
        assert meta["method"].value == "DLE (loss model)" and meta["rows"].value == 400
        assert 5 < meta["estimated_mae"].value < 60
        mae = meta["estimated_mae"].value
        assert meta["estimated_mae_lower"].value < mae < meta["estimated_mae_upper"].value
        assert meta["floor_r2"].value == 0.02 and "estimated_r2" in meta
        realized = result.asset_materializations_for_node("estimate_vs_realized")[0].metadata
        assert realized["labelled"].value == 200
        assert realized["estimate_abs_error_mae"].value < 0.5 * realized["realized_mae"].value
        assert "concept_drift" in check_results(result)
