"""The contract's domain holds at serving (issue 25 item 8): every record is checked against the
contract's ranges and allowed categories, each column with the contract's policy — `reject` (422
naming field, value and allowed range; the default) or `flag` (answered, marked `out_of_domain` in
the answer and the capture, counted in `mlops_out_of_domain_total`). NaN is refused like Infinity;
`null` is a missing value. In process (real app, micro-batcher, SQLite store, stand-in model) and
against the session's real server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlops_pipeline.data.contract import Domain, infer_contract
from mlops_pipeline.monitoring.predictions import SERVED_ROLES, PredictionStore
from mlops_pipeline.serving.app import create_app
from mlops_pipeline.serving.settings import ServeSettings
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.serving.conftest import ServeProc, Stack, records
from mlops_pipeline_tests.serving.test_malformed import GOOD, Harness, Registry, StandInModel

# (field, value, the allowed range the 422 names) — the flights contract's reviewed domain
REJECTED: list[tuple[str, Any, str]] = [
    ("temp", 1e308, "[2.0299, 108.95]"),
    ("pressure", -1000.0, "[977.97, 1047.93]"),
    ("humid", 130.5, "[4.0139, 100]"),
    ("distance", 99_999, "[1, 5480]"),  # an int64 column the schema only asks to be > 0
]


def _harness(tmp_path: Path, flag: tuple[str, ...] = ()) -> Harness:
    """The real app on the committed flights contract, or on a copy whose `domain.policy` flags
    `flag` columns too."""
    spec = load_spec()
    if flag:
        doc = yaml.safe_load(spec.contract_path().read_text())
        doc["domain"]["policy"].update({c: "flag" for c in flag})
        path = tmp_path / "contract.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        spec = spec.model_copy(update={"contract": str(path)})
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    settings = ServeSettings(token="t0ken-abc", max_wait_ms=50.0, poll_seconds=60)
    return Harness(create_app(settings, spec, Registry(), PredictionStore(url)), PredictionStore(url),
                   StandInModel())


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    yield _harness(tmp_path)


def _spy_batches(server: Any) -> list[int]:
    """Record how many requests each micro-batch held."""
    sizes: list[int] = []
    process = server.scorer._process_batch

    def spy(jobs):
        sizes.append(len(jobs))
        return process(jobs)

    server.scorer._process_batch = spy
    return sizes


def test_out_of_domain_values_are_refused_alone_naming_field_value_and_range(harness):
    """Each example is a 422 naming its field, value and the contract's range, while the good
    requests sent at the same time, in the same micro-batches, are answered and captured."""
    async def go(client, server):
        sizes = _spy_batches(server)

        async def post(i: int) -> httpx.Response:
            recs = [{**GOOD, "flight": i}, {**GOOD, "flight": i}]
            if i % 3 == 0:
                field, value, _ = REJECTED[(i // 3) % len(REJECTED)]
                recs[1][field] = value
            return await client.post("/predict", json={"records": recs})

        answers = await asyncio.gather(*(post(i) for i in range(24)))
        return answers, sizes

    answers, sizes = harness.run(go)
    assert max(sizes) > 1  # good and refused requests shared micro-batches
    for i, r in enumerate(answers):
        if i % 3:
            assert r.status_code == 200, r.text
            assert "out_of_domain" not in r.text
            continue
        field, value, allowed = REJECTED[(i // 3) % len(REJECTED)]
        assert r.status_code == 422, r.text
        [err] = r.json()["errors"]
        assert (err["record"], err["field"], err["value"]) == (1, field, value), err
        assert allowed in err["error"] and "domain policy: reject" in err["error"], err
    assert harness.store.count() == 2 * 16  # only the answered requests are captured


def test_nan_is_refused_like_infinity_and_null_is_a_missing_value(harness):
    async def go(client, server):
        nan = json.dumps({"records": [GOOD, {**GOOD, "temp": float("nan")}]}).encode()
        refused = await client.post("/predict", content=nan, headers={"content-type": "application/json"})
        missing = await client.post("/predict", json={"records": [{**GOOD, "temp": None}]})
        return refused, missing

    refused, missing = harness.run(go)
    assert refused.status_code == 422, refused.text
    [err] = refused.json()["errors"]
    assert (err["record"], err["field"], err["value"]) == (1, "temp", "NaN")
    assert "send null for a missing value" in err["error"]
    assert missing.status_code == 200, missing.text
    rid = missing.json()["predictions"][0]["request_id"]
    assert json.loads(harness.store.get(rid)["features"][0])["temp"] is None


def test_a_flagged_column_is_answered_marked_in_answer_and_capture_and_counted(tmp_path):
    """With `domain.policy: {temp: flag}` (and the drafted `carrier: flag`), 1e308 and a carrier
    the contract never listed are answered; the record says which columns are out of the domain,
    in the answer and in the prediction store, and the counter counts them by column."""
    harness = _harness(tmp_path, flag=("temp",))

    async def go(client, server):
        recs = [GOOD, {**GOOD, "temp": 1e308, "carrier": "ZZ"}, {**GOOD, "temp": -40.0}]
        r = await client.post("/predict", json={"records": recs})
        still = await client.post("/predict", json={"records": [{**GOOD, "pressure": -1000.0}]})
        return r, still, (await client.get("/metrics")).text

    r, still, metrics = harness.run(go)
    assert r.status_code == 200, r.text
    items = r.json()["predictions"]
    assert ["out_of_domain" in p for p in items] == [False, True, True]
    assert items[1]["out_of_domain"] == ["temp", "carrier"] and items[2]["out_of_domain"] == ["temp"]
    captured = [harness.store.get(p["request_id"], out_of_domain=True)["out_of_domain"][0] for p in items]
    assert captured == [None, ["temp", "carrier"], ["temp"]]
    assert 'mlops_out_of_domain_total{column="temp"} 2.0' in metrics
    assert 'mlops_out_of_domain_total{column="carrier"} 1.0' in metrics
    assert still.status_code == 422 and still.json()["errors"][0]["field"] == "pressure"  # reject: default


def test_the_policy_comes_from_the_contract_and_contract_infer_drafts_it(flights):
    """`domain.policy` defaults to reject, accepts only reject or flag, and the draft flags the
    categoricals (a new airline is a value the model takes) while numbers are refused."""
    from mlops_pipeline.data.domain import RecordDomain

    spec = load_spec()
    doc = infer_contract(flights.head(5000), spec)
    assert doc["domain"]["policy"] == {c: "flag" for c in spec.features.categorical}
    domain = Domain.from_doc(doc["domain"])
    assert domain.policy_of("carrier") == "flag" and domain.policy_of("temp") == "reject"
    assert "expectations" in doc  # the other sections are drafted as before
    with pytest.raises(ValueError, match="reject, flag"):
        Domain.from_doc({**doc["domain"], "policy": {"temp": "warn"}})
    rules = RecordDomain(domain, spec.features.columns)
    frame = flights.head(3)[spec.features.columns].copy()
    frame.loc[1, "temp"] = 1e308
    frame.loc[2, "carrier"] = "ZZ"
    assert [(r.column, r.policy, hits.tolist()) for r, hits in rules.outside(frame)] == [
        ("temp", "reject", [1]), ("carrier", "flag", [2])]


def test_the_real_server_refuses_out_of_domain_values_and_answers_null(stack: Stack, full_server: ServeProc):
    """Through `mlops-pipeline serve` on the registered model: the examples are 422s naming field,
    value and range and are not captured; null for a nullable feature is answered; NaN is refused."""
    store = PredictionStore(full_server.predictions_url)
    good = records(stack, 2, offset=400)
    before = store.count(SERVED_ROLES)
    with httpx.Client(base_url=full_server.url) as client:
        for field, value, allowed in REJECTED:
            bad = [dict(r) for r in good]
            bad[1][field] = value
            r = client.post("/predict", json={"records": bad})
            assert r.status_code == 422, r.text
            assert any(e["field"] == field and e["value"] == value and e["record"] == 1
                       and allowed in e["error"] for e in r.json()["errors"]), r.text
        nan = json.dumps({"records": [{**good[0], "temp": float("nan")}]}).encode()
        r = client.post("/predict", content=nan, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "temp", r.text
        missing = [{**r, "temp": None, "pressure": None} for r in good]
        r = client.post("/predict", json={"records": missing})
        assert r.status_code == 200, r.text
    assert store.count(SERVED_ROLES) == before + len(good)


def test_the_mark_is_kept_by_the_store_and_an_older_store_stays_readable(tmp_path: Path):
    """A store from before the `out_of_domain` column: its rows read back unmarked after the
    column is added in place, and a marked batch written then round-trips record by record."""
    import sqlite3

    from mlops_pipeline.monitoring.predictions import PredictionBatch

    path = tmp_path / "old.db"
    old = PredictionStore(f"sqlite:///{path}")
    before = PredictionBatch.from_records([{"x": 1}], [0.2])
    old.write([before])
    old.close()
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE prediction_batches DROP COLUMN out_of_domain")
    con.commit()
    con.close()
    store = PredictionStore(f"sqlite:///{path}")
    try:
        marked = PredictionBatch.from_records([{"x": 1}, {"x": 9}, {"x": 3}], [0.1, 0.2, 0.3])
        marked = PredictionBatch(**{**vars(marked), "out_of_domain": {1: ["x", "y"]}})
        store.write([marked])
        read = store.read_window(out_of_domain=True).set_index("request_id")["out_of_domain"]
        assert read[before.request_ids[0]] is None
        assert [read[r] for r in marked.request_ids] == [None, ["x", "y"], None]
        assert "out_of_domain" not in store.read_window().columns  # asked for, like probabilities
    finally:
        store.close()


def test_openapi_declares_the_domain_of_rejecting_columns(harness):
    """A schema-driven client builds requests the server takes: `reject` columns carry the
    domain's range; `flag` columns (carrier) take any string."""
    async def go(client, server):
        return (await client.get("/openapi.json")).json()

    spec = harness.run(go)
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    props = body["anyOf"][1]["items"]["properties"]
    assert (props["temp"]["minimum"], props["temp"]["maximum"]) == (2.0299, 108.95)
    assert (props["distance"]["minimum"], props["distance"]["maximum"]) == (1, 5480)
    assert "exclusiveMinimum" not in props["distance"] and props["hour"]["maximum"] == 23
    assert props["carrier"] == {"type": "string"}
