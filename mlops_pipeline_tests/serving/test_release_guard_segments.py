"""The release guard per segment, end to end (issue 27): a canary worse for one airport only is
removed by the `release_guard` sensor, the airport named in the reason.

Real parts: the session's MLflow server and trained versions (`stack`), a real
`mlops-pipeline serve` routing half the requests to the canary, labels fed back through
`POST /feedback`, the real sensor deciding from the prediction store, the server reloading.
Its own registered model (`flights_release_segments`), so no other test's aliases move: v1 is a
copy of the stack's champion; v2 is the same model with one more boosting tree that, for EWR
flights only, pushes the score the wrong way by the hour of departure (a model that learnt EWR's
hour effect backwards). Every other airport gets exactly v1's answers, and the overall figure
stays within the (loose) gate tolerance: only the segment check can catch it.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.resources import AlertResource, DatasetResource, MLflowResource
from mlops_pipeline.defs.resources.predictions import PredictionStoreResource
from mlops_pipeline.defs.resources.serving import ServingResource
from mlops_pipeline.defs.simulation import post_feedback
from mlops_pipeline.deployment.tags import ROLLBACK_REASON_TAG
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.spec import PROJECT_ROOT, load_spec
from mlops_pipeline_tests.serving.conftest import MODEL, TOKEN, Stack, start_server, stop

pytestmark = pytest.mark.slow

NAME = "flights_release_segments"


def _config(path: Path) -> Path:
    """flights with its own name; the gate (and so the release's overall quality) tolerates 0.1
    ROC AUC on average; segments decide from 100 labelled records a side; the other release
    checks need more evidence than this test sends, so only quality and segments can decide."""
    raw = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    raw["name"] = NAME
    raw["gate"]["roc_auc"]["tolerance"] = 0.1
    raw["segments"]["min_rows"] = 100
    never = 1_000_000
    raw["release"] = {
        "latency": {"min_requests": never}, "errors": {"min_requests": never},
        "shift": {"min_records": never}, "agreement": {"min_records": never},
        "quality": {"metric": "roc_auc", "min_labelled": 150, "bootstrap_samples": 100},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def _backwards_by_hour(model, spec, rows: pd.DataFrame, column: str, value: str, size: float = 5.0):
    """`model` (the project's HistGradientBoosting pipeline) with one more tree: rows whose
    `column` is `value` get +`size` at hour 0 down to -`size` at hour 23 (raw score, the reverse
    of how delays grow through the day); every other row gets 0, so its answer is unchanged."""
    from sklearn.ensemble._hist_gradient_boosting.common import (
        PREDICTOR_RECORD_DTYPE,
        X_BITSET_INNER_DTYPE,
    )
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    model = copy.deepcopy(model)
    booster = model.steps[-1][1]
    categorical, numerical = list(spec.features.categorical), list(spec.features.numerical)
    probe = rows[spec.features.columns].head(1).assign(**{column: value})
    # The booster's own inputs: categoricals first (its ordinal codes), then the numbers.
    code = float(booster._preprocessor.transform(model[:-1].transform(probe))[0, categorical.index(column)])
    at = len(categorical) + numerical.index("hour")
    edges = np.arange(0.5, 23.0, 1.0)
    nodes: list = []

    def node(**fields) -> int:
        record = np.zeros(1, dtype=PREDICTOR_RECORD_DTYPE)[0]
        for k, v in fields.items():
            record[k] = v
        nodes.append(record)
        return len(nodes) - 1

    def split(lo: int, hi: int, depth: int) -> int:  # a search tree over edges[lo:hi]
        if lo >= hi:
            return node(value=size * (1 - 2 * lo / len(edges)), is_leaf=1, depth=depth, count=1)
        mid = (lo + hi) // 2
        i = node(feature_idx=at, num_threshold=edges[mid], missing_go_to_left=1, depth=depth, count=1)
        left, right = split(lo, mid, depth + 1), split(mid + 1, hi, depth + 1)
        nodes[i]["left"], nodes[i]["right"] = left, right
        return i

    # code <= x < code + 1 is the segment: two numeric splits on the booster's code column.
    root = node(feature_idx=categorical.index(column), num_threshold=code + 0.5, depth=0, count=1)
    low = node(feature_idx=categorical.index(column), num_threshold=code - 0.5, depth=1, count=1)
    nodes[root]["left"], nodes[root]["right"] = low, node(value=0.0, is_leaf=1, depth=1, count=1)
    below = node(value=0.0, is_leaf=1, depth=2, count=1)
    nodes[low]["left"], nodes[low]["right"] = below, split(0, len(edges), 2)
    empty = np.zeros((0, 8), dtype=X_BITSET_INNER_DTYPE)
    booster._predictors.append([TreePredictor(np.array(nodes, dtype=PREDICTOR_RECORD_DTYPE), empty, empty)])
    return model


def _register(res: MLflow, model, stack: Stack) -> str:
    """Log and register `model` as the loop does (skops, the project's trusted types)."""
    import mlflow

    from mlops_pipeline.training.model import SKOPS_TRUSTED_TYPES

    res.configure()
    with res.start_run("release-segments-challenger"):
        info = mlflow.sklearn.log_model(model, name="model", input_example=stack.holdout.head(5),
                                        skops_trusted_types=list(SKOPS_TRUSTED_TYPES))
    snapshot = res.client().get_model_version(MODEL, "1").tags["snapshot_id"]
    return str(mlflow.register_model(info.model_uri, NAME, tags={"snapshot_id": snapshot}).version)


def _labelled_march(stack: Stack, n: int) -> tuple[list[dict], list[float]]:
    """`n` landed March flights with an arrival delay: the requests and their labels."""
    import json

    frame = pd.read_parquet(next((stack.data_dir / "landing" / "flights").glob("*03*.parquet")))
    frame = frame[frame["arr_delay"].notna()].head(n).reset_index(drop=True)
    rows = json.loads(frame[stack.features].to_json(orient="records", date_format="iso"))
    return rows, frame["arr_delay"].astype(float).tolist()


def _send(url: str, records: list[dict], batch: int = 8) -> list[str]:
    """POST the records in batches, each with its caller's routing key (the server's sticky
    canary routing: the same callers reach the canary every run), 4 at a time; the request ids."""
    from concurrent.futures import ThreadPoolExecutor

    chunks = [records[i:i + batch] for i in range(0, len(records), batch)]
    with httpx.Client(base_url=url, timeout=30) as client:
        def post(i: int) -> list[str]:
            answer = client.post("/predict", json={"records": chunks[i], "key": f"caller-{i}"})
            assert answer.status_code == 200, answer.text
            return [p["request_id"] for p in answer.json()["predictions"]]

        with ThreadPoolExecutor(4) as pool:
            return [rid for ids in pool.map(post, range(len(chunks))) for rid in ids]


def test_a_canary_worse_for_one_airport_only_is_removed_naming_it(stack: Stack, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLOPS_SERVE_TOKEN", TOKEN)  # the guard's reload is authenticated
    config = _config(tmp_path / "segments.yaml")
    spec = load_spec(config)
    res = MLflow(tracking_uri=stack.tracking_uri)
    res.client().create_registered_model(NAME)
    source = res.client().get_model_version(MODEL, "1")
    v1 = str(mlflow.register_model(source.source, NAME, tags=dict(source.tags)).version)
    res.set_alias(NAME, "champion", v1, actor="test:setup", reason="segment release test")
    champion = mlflow.sklearn.load_model(f"models:/{MODEL}/1")
    worse = _backwards_by_hour(champion, spec, stack.holdout, "origin", "EWR")
    probe = stack.holdout.head(400)
    same = (probe["origin"] != "EWR").to_numpy()
    assert np.array_equal(worse.predict_proba(probe)[same], champion.predict_proba(probe)[same])
    assert not np.allclose(worse.predict_proba(probe)[~same], champion.predict_proba(probe)[~same])
    v2 = _register(res, worse, stack)
    res.set_alias(NAME, "challenger", v2, actor="test:setup", reason="canary worse for EWR")

    srv = start_server(stack, "release_segments", "--config", str(config), "--canary-share", "0.5",
                       "--poll-seconds", "1")
    try:
        deadline = time.monotonic() + 60
        while not httpx.get(f"{srv.url}/health").json()["canary_active"]:
            assert time.monotonic() < deadline, srv.log.read_text()[-3000:]
            time.sleep(0.2)
        requests, labels = _labelled_march(stack, 1600)
        ids = _send(srv.url, requests)
        assert post_feedback(srv.url, list(zip(ids, labels, strict=True)), token=TOKEN) == len(ids)

        from mlops_pipeline.defs.automation import build_release_guard

        resources = {
            "dataset": DatasetResource(config_path=str(config)),
            "mlflow": MLflowResource(tracking_uri=stack.tracking_uri, history_url=srv.predictions_url),
            "predictions": PredictionStoreResource(url=srv.predictions_url),
            "serving": ServingResource(url=srv.url),
            "alerts": AlertResource(),
            "storage": Storage(root=str(stack.data_dir)),
        }
        with dg.DagsterInstance.ephemeral() as instance:
            tick = build_release_guard(serve_token=TOKEN).evaluate_tick(
                dg.build_sensor_context(instance=instance, resources=resources))
        message = tick.skip_message or ""
        assert message.startswith("remove:"), message
        assert "segments: segment " in message and "segment origin=EWR (" in message, message
        # EWR, and carriers flying mostly from it; never the other airports, nor the average.
        assert "origin=JFK" not in message and "origin=LGA" not in message, message
        assert "quality:" not in message, message
        deadline = time.monotonic() + 10
        while httpx.get(f"{srv.url}/health").json()["challenger"] is not None:
            assert time.monotonic() < deadline, "the server still routes to the removed canary"
            time.sleep(0.1)
    finally:
        stop(srv.proc)
    assert res.version_by_alias(NAME, "challenger") is None
    assert str(res.version_by_alias(NAME, "champion").version) == v1
    reason = res.client().get_model_version(NAME, v2).tags[ROLLBACK_REASON_TAG]
    assert "origin=EWR" in reason
