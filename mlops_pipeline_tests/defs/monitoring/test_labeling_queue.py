"""The labeling queue on a real instance: a day of served traffic (some labelled, some shadowed by a
challenger that disagrees) becomes the day's queue and its CSV / Label Studio exports; labels
imported back show on the monitoring board.

Predictions are written the way the serving process writes them (same store class, same row type),
scored by the registered champion.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.monitoring.labeling import import_labels, read_labels
from mlops_pipeline.monitoring.predictions import PredictionBatch, PredictionStore
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.defs.monitoring.champion_traffic import champion_answers

pytestmark = pytest.mark.slow

TODAY = datetime.now(UTC).strftime("%Y-%m-%d")


def _serve(rows: pd.DataFrame, labelled: int, shadowed: int) -> dict[str, list[str]]:
    """One request of `rows`, the first `labelled` records labelled, the next `shadowed` answered
    by a shadow challenger that always says the opposite class."""
    spec, version, proba, features = champion_answers(rows)
    pred = (proba >= 0.5).astype(float)
    batch = PredictionBatch.from_records(features, pred.tolist(), proba.tolist(), model_name=spec.name,
                                         model_version=version, classes=(0.0, 1.0), positive=1)
    shadow = PredictionBatch.from_records(
        features[:labelled + shadowed], (1.0 - pred[:labelled + shadowed]).tolist(),
        (1.0 - proba[:labelled + shadowed]).tolist(), role="shadow", model_name=spec.name,
        model_version="99", classes=(0.0, 1.0), positive=1, batch_id=batch.batch_id)
    store = PredictionStore()
    store.write([batch, shadow])
    ids = batch.request_ids
    for rid, label in zip(ids[:labelled], rows["arr_delay"], strict=False):
        store.set_label(rid, float(label))
    store.close()
    return {"labelled": ids[:labelled], "shadowed": ids[labelled:labelled + shadowed], "all": ids}


def test_the_day_queue_is_exported_and_its_labels_show_on_the_board(trained_flights, flights):
    data_dir = trained_flights  # Jan-Mar landed, the loop run, v1 champion: this test's own copy
    defs = build_definitions()
    spec = load_spec()
    with dg.DagsterInstance.get() as instance:
        april = flights[flights["month"] == 4].dropna(subset=["arr_delay"]).sample(400, random_state=4)
        ids = _serve(april, labelled=50, shadowed=30)

        job = defs.resolve_job_def("production_monitoring")
        result = job.execute_in_process(
            instance=instance, partition_key=TODAY,
            asset_selection=[dg.AssetKey("prediction_log"), dg.AssetKey("labeling_queue")])
        assert result.success
        meta = result.asset_materializations_for_node("labeling_queue")[0].metadata
        cap = spec.labeling.max_per_day
        assert meta["queued"].value == cap == 200 and meta["served_unlabelled"].value == 350
        assert meta["shadow_disagreement"].value == 30 and meta["least_confident"].value == cap - 30

        queue = pd.read_csv(data_dir / "labeling" / f"{TODAY}.csv", dtype={"request_id": str})
        assert len(queue) == cap and queue["request_id"].is_unique
        assert list(queue["request_id"]) == meta["request_ids"].value
        assert not set(queue["request_id"]) & set(ids["labelled"])  # unlabelled only
        assert set(ids["shadowed"]) <= set(queue["request_id"])  # every disagreement queued
        assert queue["uncertainty"].is_monotonic_decreasing  # least confident first
        # no record left out was less confident than the least confident one queued
        log = PredictionStore().read_window(roles=["champion"])
        left_out = log[~log["request_id"].isin(queue["request_id"]) & log["label"].isna()]
        unsure = queue[queue["reason"] == "least_confident"]
        assert (2 * left_out["probability"] - 1).abs().min() >= unsure["margin"].max() - 1e-12
        tasks = json.loads((data_dir / "labeling" / f"{TODAY}.json").read_text())
        assert [t["data"]["request_id"] for t in tasks] == list(queue["request_id"])
        assert set(spec.features.columns) <= set(tasks[0]["data"])

        # a reviewer labels 40 of them in Label Studio; the export comes back
        delay = dict(zip(ids["all"], april["arr_delay"], strict=True))
        exported = [{**t, "annotations": [{"was_cancelled": False, "result": [
            {"type": "number", "from_name": "arr_delay", "to_name": "flight",
             "value": {"number": float(delay[t["data"]["request_id"]])}}]}]} for t in tasks[:40]]
        path = data_dir / "export.json"
        path.write_text(json.dumps(exported))
        store = PredictionStore()
        report = import_labels(store, read_labels(path)[0], spec)
        store.close()
        assert len(report.changed) == 40 and not report.unknown and not report.invalid

        board = defs.resolve_job_def("monitoring_board_job").execute_in_process(instance=instance)
        assert board.success
        board_meta = board.asset_materializations_for_node("monitoring_board")[0].metadata
        assert board_meta["labeling_queued"].value == cap
        assert board_meta["labeling_labelled"].value == 40
        html = (data_dir / "reports" / f"board_{spec.name}.html").read_text()
        assert "Labeling queue" in html and "queued items labelled" in html
        assert np.isfinite(queue["margin"]).all()


def test_a_regression_queue_is_ranked_by_the_loss_models_estimate(trained_regression, flights):
    data_dir = trained_regression  # the loop run on flights_regression.yaml (MLOPS_DATASET_CONFIG)
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        spec = load_spec("data/configs/flights_regression.yaml")
        model = mlflow.sklearn.load_model(f"models:/{spec.name}@champion")
        version = str(mlflow.MlflowClient().get_model_version_by_alias(spec.name, "champion").version)
        rows = flights[flights["month"] == 4].dropna(subset=["arr_delay"]).sample(300, random_state=4)
        records = rows[list(dict.fromkeys([*spec.features.columns, *spec.key_columns]))].astype(object)
        records = records.where(records.notna(), None)
        features = [{k: (str(v) if isinstance(v, pd.Timestamp) else v) for k, v in rec.items()}
                    for rec in records.to_dict("records")]
        batch = PredictionBatch.from_records(features, model.predict(rows[spec.features.columns]).tolist(),
                                             model_name=spec.name, model_version=version)
        store = PredictionStore()
        store.write([batch])
        store.close()

        result = defs.resolve_job_def("production_monitoring").execute_in_process(
            instance=instance, partition_key=TODAY,
            asset_selection=[dg.AssetKey("prediction_log"), dg.AssetKey("labeling_queue")])
        assert result.success
        meta = result.asset_materializations_for_node("labeling_queue")[0].metadata
        assert meta["ranked_by"].value == "estimated loss (DLE)"
        assert meta["queued"].value == spec.labeling.max_per_day == 200
        queue = pd.read_csv(data_dir / "labeling" / f"{TODAY}.csv", dtype={"request_id": str})
        assert queue["estimated_loss"].is_monotonic_decreasing and (queue["estimated_loss"] > 0).all()
        assert set(queue["reason"]) == {"least_confident"}
