"""The serving process over real HTTP: champion v1, challenger v2 in shadow and as a 30% canary.

One `mlops-pipeline serve` process (see conftest) answers every test here; each test asserts on
what the client saw, on what the prediction store committed, and on /metrics.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops_pipeline.monitoring.predictions import SERVED_ROLES, PredictionStore
from mlops_pipeline.serving.scoring import canary_bucket
from mlops_pipeline_tests.serving.conftest import TOKEN, ServeProc, Stack, records

pytestmark = pytest.mark.slow

SHARE = 0.3


@pytest.fixture(scope="module")
def models(stack: Stack) -> dict[str, object]:
    import mlflow

    from mlops_pipeline.deployment.tracking import MLflow

    MLflow(tracking_uri=stack.tracking_uri).configure()
    return {v: mlflow.sklearn.load_model(f"models:/flights_delay/{v}") for v in ("1", "2")}


@pytest.fixture(scope="module")
def store(full_server: ServeProc) -> PredictionStore:
    return PredictionStore(full_server.predictions_url)


def keys(route: str, n: int, prefix: str) -> list[str]:
    """Request keys that the sticky hash sends to `route` (champion or canary)."""
    out, i = [], 0
    while len(out) < n:
        key = f"{prefix}-{i}"
        if (canary_bucket(key) < SHARE) == (route == "canary"):
            out.append(key)
        i += 1
    return out


def in_process(models: dict, version: str, recs: list[dict]) -> np.ndarray:
    from mlops_pipeline.data.contract import load_contract, validate
    from mlops_pipeline.spec import load_spec

    spec = load_spec()
    X = validate(pd.DataFrame(recs)[spec.features.columns],
                 load_contract(spec).for_columns(spec.features.columns))
    return models[version].predict_proba(X)[:, 1]


def metric_samples(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{url}/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text) for s in fam.samples
    }


def test_http_predictions_equal_in_process_predictions(stack, full_server, models, store):
    recs = records(stack, 40)
    seen = set()
    with httpx.Client(base_url=full_server.url) as client:
        for i in range(0, 40, 8):
            batch = recs[i:i + 8]
            r = client.post("/predict", json={"records": batch}, headers={"X-Request-Key": f"eq-{i}"})
            assert r.status_code == 200, r.text
            body = r.json()
            version = body["model_version"]
            seen.add((version, body["role"]))
            expected = in_process(models, version, batch)
            got = np.array([p["probability"] for p in body["predictions"]])
            np.testing.assert_array_equal(got, expected)  # the compiled model's answers: the same bits
            assert [p["prediction"] for p in body["predictions"]] == [int(p >= 0.5) for p in expected]
            ids = [p["request_id"] for p in body["predictions"]]
            assert len(set(ids)) == len(ids) == len(batch)
            assert body["model_name"] == "flights_delay"
            # Durable before the response: the rows are there the moment the client has it.
            for rid, p in zip(ids, got, strict=True):
                row = store.get(rid)
                served = row[row["role"] == body["role"]].iloc[0]
                assert served["model_version"] == version
                assert served["probability"] == pytest.approx(p, abs=1e-12)
                assert served["latency_ms"] > 0
    assert ("1", "champion") in seen


def _bad(recs: list[dict], field: str, value) -> list[dict]:
    out = [dict(r) for r in recs]
    out[-1][field] = value
    return out


def _missing(recs: list[dict], field: str) -> list[dict]:
    out = [dict(r) for r in recs]
    del out[-1][field]
    return out


def test_invalid_payloads_are_refused_and_never_logged(stack, full_server, store):
    good = records(stack, 2, offset=100)
    cases = {
        "missing field": ({"records": _missing(good, "distance")}, 422, "distance", "field required"),
        "wrong type": ({"records": _bad(good, "distance", "far")}, 422, "distance", "integer"),
        "fractional int": ({"records": _bad(good, "hour", 7.5)}, 422, "hour", "integer"),
        "null not allowed": ({"records": _bad(good, "carrier", None)}, 422, "carrier", "null"),
        "out of range": ({"records": _bad(good, "hour", 99)}, 422, "hour", "in_range"),
        "bad timestamp": ({"records": _bad(good, "time_hour", "yesterday")}, 422, "time_hour",
                          "contract"),
        "unseen category": ({"records": _bad(good, "carrier", "ZZ")}, 422, "carrier", "not seen"),
        "empty batch": ({"records": []}, 422, "records", "empty"),
        "not a list": ({"records": {"a": 1}}, 422, "records", "list"),
    }
    before = store.count(SERVED_ROLES)
    with httpx.Client(base_url=full_server.url) as client:
        for name, (payload, status, field, words) in cases.items():
            r = client.post("/predict", json=payload)
            assert r.status_code == status, (name, r.text)
            errors = r.json()["errors"]
            assert any(e["field"] == field and words in e["error"] for e in errors), (name, errors)
            if field not in ("records",):
                assert all(e["record"] == 1 for e in errors if e["field"] == field), (name, errors)
        r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "JSON" in r.json()["detail"]
        big = b'{"records": [' + b" " * 1_100_000 + b"]}"
        r = client.post("/predict", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "larger than" in r.json()["detail"]
        # The valid record in a refused batch is not scored or logged either.
        assert client.post("/predict", json={"records": good}).status_code == 200
    assert store.count(SERVED_ROLES) == before + len(good)


def test_burst_of_concurrent_requests_logs_exactly_the_answered_predictions(stack, full_server, store):
    recs = records(stack, 300, offset=200)
    before = store.count(SERVED_ROLES)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=full_server.url, limits=limits, timeout=30) as client:
            sem = asyncio.Semaphore(32)

            async def one(i: int) -> httpx.Response:
                async with sem:
                    n = 1 + i % 3
                    return await client.post("/predict", json={"records": recs[i:i + n]})

            return await asyncio.gather(*[one(i) for i in range(240)])

    started = time.perf_counter()
    responses = asyncio.run(burst())
    elapsed = time.perf_counter() - started
    ok = [r for r in responses if r.status_code == 200]
    answered = sum(len(r.json()["predictions"]) for r in ok)
    # The only refusals are records with a category v1 never saw (this server's policy: reject).
    refused = [r for r in responses if r.status_code != 200]
    assert all(r.status_code == 422 and "not seen" in r.text for r in refused), refused[:3]
    assert len(ok) > 0.9 * len(responses)
    assert store.count(SERVED_ROLES) == before + answered
    ids = {p["request_id"] for r in ok for p in r.json()["predictions"]}
    assert len(ids) == answered
    logged = store.read_window(roles=SERVED_ROLES)
    assert ids <= set(logged["request_id"])
    print(f"burst: {len(responses)} requests / {answered} records in {elapsed:.2f}s "
          f"({len(responses) / elapsed:.0f} req/s)")
    # Micro-batching happened: some model calls scored more than one request's records.
    samples = metric_samples(full_server.url)
    calls = samples[("mlops_batch_rows_count", (("role", "champion"),))]
    rows = samples[("mlops_batch_rows_sum", (("role", "champion"),))]
    assert rows / calls > 1.0


def test_shadow_is_logged_but_never_returned(stack, full_server, store, models):
    recs = records(stack, 12, offset=600)
    ids: list[str] = []
    with httpx.Client(base_url=full_server.url) as client:
        for key, i in zip(keys("champion", 6, "shadow"), range(0, 12, 2), strict=True):
            r = client.post("/predict", json={"records": recs[i:i + 2], "key": key})
            assert r.status_code == 200
            body = r.json()
            assert (body["role"], body["model_version"]) == ("champion", "1")
            assert all(set(p) == {"request_id", "prediction", "probability", "probabilities"}
                       for p in body["predictions"])
            assert all(p["probabilities"] == {"0": pytest.approx(1 - p["probability"]),
                                              "1": p["probability"]} for p in body["predictions"])
            ids += [p["request_id"] for p in body["predictions"]]
    deadline = time.time() + 10
    while True:
        frame = pd.concat([store.get(i) for i in ids])
        shadow = frame[frame["role"] == "shadow"]
        if len(shadow) == len(ids) or time.time() > deadline:
            break
        time.sleep(0.1)
    assert len(shadow) == len(ids)
    assert set(shadow["model_version"]) == {"2"}
    order = {rid: k for k, rid in enumerate(ids)}
    shadow = shadow.sort_values("request_id", key=lambda s: s.map(order))
    np.testing.assert_allclose(shadow["probability"], in_process(models, "2", recs), atol=1e-12)
    champion = frame[frame["role"] == "champion"]
    assert len(champion) == len(ids) and set(champion["model_version"]) == {"1"}


def test_canary_share_is_within_tolerance_and_sticky(stack, full_server, store):
    rec = records(stack, 1, offset=700)
    n = 200
    sample = [f"user-{i}" for i in range(n)]
    expected = sum(canary_bucket(k) < SHARE for k in sample) / n
    roles = {}
    with httpx.Client(base_url=full_server.url) as client:
        for key in sample:
            r = client.post("/predict", json={"records": rec}, headers={"X-Request-Key": key})
            body = r.json()
            roles[key] = (body["role"], body["model_version"], body["predictions"][0]["request_id"])
        share = sum(role == "canary" for role, _, _ in roles.values()) / n
        assert abs(share - SHARE) < 0.08
        assert share == pytest.approx(expected)
        assert all(v == "2" for role, v, _ in roles.values() if role == "canary")
        assert all(v == "1" for role, v, _ in roles.values() if role == "champion")
        for key in sample[:10]:  # sticky: the same key gets the same model every time
            again = client.post("/predict", json={"records": rec}, headers={"X-Request-Key": key}).json()
            assert (again["role"], again["model_version"]) == roles[key][:2]
    canary_id = next(rid for role, _, rid in roles.values() if role == "canary")
    logged = store.get(canary_id)
    assert list(logged["role"]) == ["canary"]  # a canary answer is not shadowed by anyone
    assert logged["model_version"].iloc[0] == "2"


def test_feedback_attaches_labels_idempotently(stack, full_server, store):
    with httpx.Client(base_url=full_server.url) as client:
        body = client.post("/predict", json={"records": records(stack, 1, offset=800),
                                             "key": keys("champion", 1, "fb")[0]}).json()
        rid = body["predictions"][0]["request_id"]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post("/feedback", json={"request_id": rid, "label": 1}).status_code == 401
        first = client.post("/feedback", json={"request_id": rid, "label": 1}, headers=auth)
        assert first.status_code == 200 and first.json()["changed"] is True
        label_ts = store.get(rid)["label_ts"].iloc[0]
        again = client.post("/feedback", json={"request_id": rid, "label": 1}, headers=auth)
        assert again.status_code == 200 and again.json()["changed"] is False
        assert store.get(rid)["label_ts"].iloc[0] == label_ts
        missing = client.post("/feedback", json={"request_id": "nope", "label": 0}, headers=auth)
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]
        bad = client.post("/feedback", json={"request_id": rid, "label": "yes"}, headers=auth)
        assert bad.status_code == 422
    deadline = time.time() + 10
    while len(rows := store.get(rid)) < 2 and time.time() < deadline:  # the shadow row is async
        time.sleep(0.1)
    # Champion and shadow rows both carry the label, whichever was committed first.
    assert sorted(rows["role"]) == ["champion", "shadow"] and list(rows["label"]) == [1.0, 1.0]


def test_metrics_count_what_happened(stack, full_server):
    recs = records(stack, 10, offset=900)
    champion_keys = keys("champion", 5, "metrics")
    before = metric_samples(full_server.url)
    with httpx.Client(base_url=full_server.url) as client:
        for i, key in enumerate(champion_keys):
            r = client.post("/predict", json={"records": recs[2 * i:2 * i + 2], "key": key})
            assert r.status_code == 200, r.text
        assert client.post("/predict", json={"records": []}).status_code == 422
        assert client.post("/predict", json={"records": _bad(recs[:1], "hour", 99)}).status_code == 422
    after = metric_samples(full_server.url)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("mlops_request_latency_seconds_count", endpoint="predict") == 7
    assert delta("mlops_request_latency_seconds_bucket", endpoint="predict", le="+Inf") == 7
    assert delta("mlops_predict_requests_total", model_version="1", role="champion") == 5
    assert delta("mlops_predictions_total", model_version="1", role="champion") == 10
    assert delta("mlops_prediction_probability_count", role="champion") == 10
    assert delta("mlops_errors_total", kind="validation") == 2
    assert after[("mlops_model_info", (("model_name", "flights_delay"), ("model_version", "1"),
                                       ("slot", "champion")))] == 1
    assert after[("mlops_registry_reachable", ())] == 1
    assert any(n == "mlops_request_latency_seconds_bucket" and dict(lb).get("le") == "0.05"
               for n, lb in after)


def test_health_ready_and_authenticated_reload(full_server):
    with httpx.Client(base_url=full_server.url) as client:
        ready = client.get("/ready").json()
        assert ready == {"ready": True, "model_name": "flights_delay", "model_version": "1"}
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["registry"]["reachable"] is True
        assert health["champion"]["compiled"] is True  # serving.compiled answers for the pipeline
        assert health["challenger"]["version"] == "2" and health["canary_active"] is True
        assert client.post("/admin/reload").status_code == 401
        assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert r.status_code == 200 and r.json()["polled"] is True
        assert r.json()["model_version"] == "1"
