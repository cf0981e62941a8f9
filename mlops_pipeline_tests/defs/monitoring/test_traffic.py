"""The production side: the day's prediction log is checked like training data, drift and quality
are measured, and labelled rows flow back into training.

These tests write to the prediction store the way the serving process does (same store class, same
row type); the end-to-end test through the real serving API lives with the simulation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.defs import automation
from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.defs.resources import DatasetResource, StorageResource
from mlops_pipeline.monitoring.predictions import PredictionBatch, PredictionStore
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.conftest import check_results

pytestmark = pytest.mark.slow

TODAY = datetime.now(UTC).strftime("%Y-%m-%d")


def _log_predictions(flights: pd.DataFrame, month: int, n: int, labelled: float = 0.5, poison=None):
    """Score `n` flights of `month` with the champion and capture them as the server would;
    returns the request ids that got a label."""
    spec = load_spec()
    rows = flights[flights["month"] == month].dropna(subset=["arr_delay"]).sample(n, random_state=month)
    model = mlflow.sklearn.load_model(f"models:/{spec.name}@champion")
    version = str(mlflow.MlflowClient().get_model_version_by_alias(spec.name, "champion").version)
    proba = model.predict_proba(rows[spec.features.columns])[:, 1]
    records = rows[[*spec.features.columns, *spec.key_columns]].astype(object)
    records = records.where(records.notna(), None)
    if poison is not None:
        records = poison(records)
    store = PredictionStore()
    features = [{k: (str(v) if isinstance(v, pd.Timestamp) else v) for k, v in rec.items()}
                for rec in records.to_dict("records")]
    captured = [  # one request per record, as single-record clients send them
        PredictionBatch.from_records([f], [float(p >= 0.5)], [float(p)], model_name=spec.name,
                                     model_version=version, latency_ms=3.0)
        for f, p in zip(features, proba, strict=True)
    ]
    store.write(captured)
    labels = rows["arr_delay"].to_numpy()
    ids = [b.request_ids[0] for b in captured[:int(n * labelled)]]
    for rid, label in zip(ids, labels, strict=False):
        store.set_label(rid, float(label))
    store.close()
    return ids


def _run_production(instance):
    job = build_definitions().resolve_job_def("production_monitoring")
    return job.execute_in_process(instance=instance, partition_key=TODAY, raise_on_error=False)


def test_a_day_of_traffic_is_checked_measured_and_fed_back(trained_flights, flights):
    data_dir = trained_flights  # Jan-Mar landed, the loop run, v1 champion: this test's own copy
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        labelled = _log_predictions(flights, month=4, n=600)

        result = _run_production(instance)

        assert result.success
        checks = check_results(result)
        for name in ("inference_contract", "inference_null_rates", "training_serving_skew"):
            assert checks[name].passed, checks[name].description
        log = result.asset_materializations_for_node("prediction_log")[0].metadata
        assert log["served"].value == 600 and log["labelled"].value == 300
        assert log["latency_p99_ms"].value == pytest.approx(3.0)
        drift = result.asset_materializations_for_node("production_drift")[0].metadata
        assert 0.0 <= drift["drift_share"].value <= 1.0
        assert "production_input_drift" in checks
        quality = result.asset_materializations_for_node("model_quality")[0].metadata
        assert quality["labelled"].value == 300 and quality["label_coverage"].value == 0.5
        assert 0.5 < quality["production_roc_auc"].value < 0.9
        assert 0.0 <= quality["expected_calibration_error"].value < 0.2
        assert len(quality["reliability_curve"].value) >= 5
        # Per segment too (`segment_quality`): 300 labelled answers leave each carrier, origin and
        # distance band under min_rows (300), so every segment is shown and none decides yet.
        segments = checks["segment_quality"]
        assert segments.passed and "no segment crossed the gate's roc_auc floor" in segments.description
        table = {r.data["segment"]: r.data for r in segments.metadata["segments"].records}
        assert {"origin=JFK", "origin=LGA", "origin=EWR"} <= set(table)
        assert sum(r["rows"] for r in table.values() if r["column"] == "origin") == 300
        feedback = result.asset_materializations_for_node("feedback_batch")[0].metadata
        assert feedback["rows"].value == 300
        landed = pd.read_parquet(feedback["path"].value)
        assert sorted(landed["_provenance"]) == sorted(f"feedback:{TODAY}:{rid}:v1" for rid in labelled)

        board = defs.resolve_job_def("monitoring_board_job").execute_in_process(instance=instance)
        assert board.success
        meta = board.asset_materializations_for_node("monitoring_board")[0].metadata
        assert meta["served_predictions"].value == 600 and meta["champion"].value.startswith("v1")
        page = Path(meta["board_path"].value).read_text()
        for section in ("System", "Data", "Drift", "Model", "Prediction distribution by day",
                        "inference_null_rates", "Quality on labelled production traffic"):
            assert section in page

        # The labelled rows are new data: the sensor asks for a retraining, which trains on them.
        resources = {"dataset": DatasetResource(), "storage": StorageResource(root=str(data_dir))}
        tick = automation.new_data_sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, resources=resources, definitions=defs)
        )
        assert len(tick.run_requests) == 1
        retrain = defs.resolve_job_def("mlops_loop").execute_in_process(
            instance=instance, tags=tick.run_requests[0].tags, raise_on_error=False
        )
        assert {"contract_schema", "unique_keys", "eval_floor"} <= set(check_results(retrain))
        assert all(check_results(retrain)[c].passed for c in ("contract_schema", "unique_keys"))
        snapshot = retrain.output_for_node("dataset_snapshot")
        assert snapshot.batches == 4
        assert retrain.dagster_run.tags[automation.TRIGGER_TAG] == "new_data"


def _poison(records: pd.DataFrame) -> pd.DataFrame:
    records["distance"] = records["distance"].map(lambda v: f"{v}")  # numbers sent as strings
    records.loc[records.index[: int(len(records) * 0.4)], "temp"] = None  # a null spike
    return records


def test_a_poisoned_day_fails_the_inference_checks_by_name(trained_flights, flights):
    with dg.DagsterInstance.get() as instance:
        _log_predictions(flights, month=4, n=300, labelled=0.0, poison=_poison)

        result = _run_production(instance)

        checks = check_results(result)
        assert not checks["inference_null_rates"].passed
        assert "column 'temp'" in checks["inference_null_rates"].description
        assert not checks["training_serving_skew"].passed
        assert "column 'distance' arrives as string" in checks["training_serving_skew"].description
        quality = result.asset_materializations_for_node("model_quality")[0].metadata
        assert quality["labelled"].value == 0 and "no labels yet" in quality["status"].value
        assert np.isfinite(quality["mean_prediction"].value)
