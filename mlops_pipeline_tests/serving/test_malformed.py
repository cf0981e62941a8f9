"""Malformed and hostile input against the real app in this process (its micro-batcher, contract
checks and a real SQLite prediction store; a stand-in model, no MLflow): every malformed body is a
4xx naming the field or the body, never a 500; one request that makes the model raise fails alone
while its batch-mates are answered and captured; every 5xx is counted; nothing secret is shown.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline.serving.app import create_app
from mlops_pipeline.serving.loader import LoadedModel
from mlops_pipeline.serving.settings import (
    ExposureError,
    RedactingFormatter,
    ServeSettings,
    check_exposure,
    redact,
    secrets_of,
)
from mlops_pipeline.spec import load_spec

POISON = "ZZPOISON"  # a carrier value the stand-in model raises on (the contract admits it)

GOOD: dict[str, Any] = {
    "carrier": "UA", "origin": "EWR", "dest": "IAH", "distance": 1400, "hour": 5, "month": 1,
    "temp": 39.0, "dewp": 28.0, "humid": 64.4, "wind_dir": 260.0, "wind_speed": 12.7,
    "wind_gust": None, "precip": 0.0, "pressure": 1011.9, "visib": 10.0,
    "time_hour": "2013-01-01T05:00:00",
}


class StandInModel:
    """Answers 0.7 for every row, and raises on the poison carrier (as a real model raises on a
    value its preprocessing cannot take)."""

    classes_ = np.array([0, 1])

    def __init__(self) -> None:
        self.broken = False

    def predict_proba(self, X):
        if self.broken or (X["carrier"] == POISON).any():
            raise ValueError(f"cannot encode {POISON!r}")
        return np.tile([0.3, 0.7], (len(X), 1))


class Registry:
    """A registry with no aliases: the watcher keeps the model the test put in place."""

    tracking_uri = "http://alice:s3cr3t-pw@registry.invalid:5000"

    def version_by_alias(self, name: str, alias: str) -> None:
        raise ConnectionError(f"API request to {self.tracking_uri}/api/2.0/mlflow/registered-models"
                              "/alias failed: connection refused")


@dataclass
class Harness:
    app: FastAPI
    store: PredictionStore
    model: StandInModel

    def run(self, coro_fn) -> Any:
        async def main():
            async with self.app.router.lifespan_context(self.app):
                server = self.app.state.server
                server.watcher.champion = LoadedModel("flights_delay", "1", self.model, "classification")
                transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
                async with httpx.AsyncClient(transport=transport, base_url="http://serving") as client:
                    return await coro_fn(client, server)
        return asyncio.run(main())


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    store = PredictionStore(f"sqlite:///{tmp_path / 'predictions.db'}")
    settings = ServeSettings(token="t0ken-abc", max_wait_ms=20.0, poll_seconds=60)
    app = create_app(settings, load_spec(), Registry(), store)
    yield Harness(app, PredictionStore(f"sqlite:///{tmp_path / 'predictions.db'}"), StandInModel())


JSON = {"content-type": "application/json"}


def body(**fields: Any) -> bytes:
    return json.dumps({"records": [{**GOOD, **fields}]}).encode()


def swap(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert old in raw
    return raw.replace(old, new)


# (name, body, status, field named in the errors or None for the body, text in the answer)
CASES: list[tuple[str, bytes, int, str | None, str]] = [
    ("Infinity in a float", body(temp=float("inf")), 422, "temp", "Infinity"),
    ("-Infinity in a float", body(temp=float("-inf")), 422, "temp", "-Infinity"),
    ("1e400 in a float", swap(body(temp=1.5), b"1.5", b"1e400"), 422, "temp", "Infinity"),
    ("NaN in an int", body(distance=float("nan")), 422, "distance", "NaN"),
    ("Infinity in an int", body(hour=float("inf")), 422, "hour", "Infinity"),
    ("nested 5,000 deep (records)", b'{"records": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, None,
     "nested too deeply"),
    ("nested 5,000 deep (a field)", swap(body(), b'"UA"', b"[" * 5000 + b"]" * 5000), 400, None,
     "nested too deeply"),
    ("invalid UTF-8 in a category", swap(body(), b'"UA"', b'"U\xff"'), 400, None, "utf-8"),
    ("invalid UTF-8 body", b"\xff\xfe\x00" + body(), 400, None, "not valid JSON"),
    ("lone surrogate in a category", swap(body(), b'"UA"', b'"\\ud800"'), 422, "carrier", "surrogate"),
    ("lone surrogate in the key", swap(body(), b'{"records"', b'{"key": "\\udfff", "records"'), 422,
     "key", "surrogate"),
    ("integer beyond int64", swap(body(distance=7), b": 7,", b": 1e30,"), 422, "distance", "distance"),
    ("unparseable timestamp", body(time_hour="not a time"), 422, "time_hour", "time_hour"),
    ("timestamp past 2262", body(time_hour="9999-01-01T00:00:00"), 422, "time_hour", "time_hour"),
    ("string for a number", body(temp="warm"), 422, "temp", "expected a number"),
    ("missing field", json.dumps({"records": [{k: v for k, v in GOOD.items() if k != "dest"}]}).encode(),
     422, "dest", "field required"),
    ("records not a list", b'{"records": {"a": 1}}', 422, "records", "list"),
    ("empty body", b"", 400, None, "not valid JSON"),
]


@pytest.mark.parametrize(("name", "raw", "status", "field", "text"), CASES, ids=[c[0] for c in CASES])
def test_malformed_predict_is_a_4xx_naming_the_field(harness, name, raw, status, field, text):
    async def go(client, server):
        r = await client.post("/predict", content=raw, headers={"content-type": "application/json"})
        return r, (await client.get("/metrics")).text

    r, metrics = harness.run(go)
    assert r.status_code == status, (name, r.text)
    answer = r.json()  # always JSON, whatever the client sent
    assert text.lower() in r.text.lower()
    if field is not None:
        assert field in {e["field"] for e in answer["errors"]}, answer
    assert "mlops_errors_total{kind=" in metrics
    assert harness.store.count() == 0  # nothing refused is ever captured


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"request_id": "x", "label": Infinity}', "label"),
    (b'{"request_id": "x", "label": NaN}', "label"),
    (b'{"request_id": "x", "label": 1e400}', "label"),
    (b"[" * 5000 + b"]" * 5000, None),
    (b'{"request_id": "\xff", "label": 1}', None),
])
def test_malformed_feedback_is_a_4xx(harness, raw, field):
    async def go(client, server):
        return await client.post("/feedback", content=raw,
                                 headers={"Authorization": "Bearer t0ken-abc", **JSON})

    r = harness.run(go)
    assert 400 <= r.status_code < 500, r.text
    if field:
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field


def test_a_request_the_model_cannot_score_fails_alone_and_every_other_is_answered_and_captured(harness):
    """Concurrent requests share micro-batches; the poisoned one is isolated by bisection."""
    async def go(client, server):
        async def post(i: int) -> httpx.Response:
            recs = [{**GOOD, "carrier": POISON if i == 17 else "UA", "flight": i}]
            return await client.post("/predict", json={"records": recs})

        answers = await asyncio.gather(*(post(i) for i in range(60)))
        return answers, (await client.get("/metrics")).text

    answers, metrics = harness.run(go)
    poisoned = answers[17]
    assert poisoned.status_code == 422, poisoned.text
    assert poisoned.json()["errors"][0]["field"] == "carrier"
    assert poisoned.json()["errors"][0]["value"] == POISON
    others = [r for i, r in enumerate(answers) if i != 17]
    assert [r.status_code for r in others] == [200] * 59
    ids = {r.json()["predictions"][0]["request_id"] for r in others}
    assert ids == set(harness.store.read_window()["request_id"])  # every answer captured, only those
    assert 'mlops_errors_total{kind="model_input"} 1.0' in metrics
    calls = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                if line.startswith("mlops_batch_rows_count"))
    assert calls < 30  # the 59 shared micro-batches (max_wait 20 ms), the poisoned one's included


def test_a_broken_model_is_a_500_and_every_5xx_is_counted(harness):
    async def go(client, server):
        ok = await client.post("/predict", content=body(), headers=JSON)
        harness.model.broken = True
        broken = await client.post("/predict", content=body(), headers=JSON)

        def explode(*_a, **_k):
            raise RuntimeError("unexpected")

        server.health_body = explode  # anything unanticipated: still one counted JSON 500
        health = await client.get("/health")
        return ok, broken, health, (await client.get("/metrics")).text

    ok, broken, health, metrics = harness.run(go)
    assert ok.status_code == 200
    assert broken.status_code == 500 and broken.json()["detail"] == "model failed: ValueError"
    assert health.status_code == 500 and health.json()["detail"] == "internal error: RuntimeError"
    assert 'mlops_errors_total{kind="model"} 1.0' in metrics
    assert 'mlops_errors_total{kind="internal"} 1.0' in metrics


def test_openapi_declares_the_request_bodies_from_the_contract(harness):
    async def go(client, server):
        return (await client.get("/openapi.json")).json()

    spec = harness.run(go)
    predict = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    record = predict["anyOf"][0]["properties"]["records"]["items"]
    assert set(record["required"]) == set(load_spec().features.columns)
    assert record["properties"]["distance"]["type"] == "integer"
    assert record["properties"]["temp"]["type"] == ["number", "null"]
    assert record["properties"]["hour"]["maximum"] == 23
    feedback = spec["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert feedback["required"] == ["request_id", "label"]


def test_the_hot_routes_skip_fastapi_routing_and_keep_their_answers(harness):
    """/predict and the probes are answered straight from the ASGI call, with the same checks
    (415, the answer); another method on a hot path still goes through FastAPI (405), and
    /openapi.json still lists every hot route."""
    async def go(client, server):
        return (await client.post("/predict", content=body(), headers=JSON),
                await client.post("/predict", content=body(), headers={"content-type": "text/plain"}),
                await client.get("/predict"), (await client.get("/openapi.json")).json()["paths"])

    ok, wrong_type, wrong_method, paths = harness.run(go)
    assert set(harness.app.hot) == {("POST", "/predict"), ("POST", "/invocations"), ("GET", "/ping"),
                                    ("GET", "/health"), ("GET", "/ready")}
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1
    assert wrong_type.status_code == 415 and wrong_method.status_code == 405
    assert {path for _, path in harness.app.hot} <= set(paths)


def test_health_never_shows_the_registry_password(harness):
    async def go(client, server):
        await asyncio.get_running_loop().run_in_executor(None, server.watcher.refresh_now, 10.0)
        return (await client.get("/health")).json()

    health = harness.run(go)
    error = health["registry"]["last_error"]
    assert "alice:***@registry.invalid" in error and "s3cr3t-pw" not in error
    assert health["status"] == "degraded"


def test_logs_mask_credentials_even_in_tracebacks():
    secrets = secrets_of(ServeSettings(token="t0ken-abc", predictions_url="postgresql://u:pg%40pw@db/p"),
                         "http://alice:s3cr3t-pw@mlflow:5000")
    formatter = RedactingFormatter("%(message)s", secrets)
    try:
        raise ConnectionError("to http://alice:s3cr3t-pw@mlflow:5000 with pg@pw and t0ken-abc")
    except ConnectionError as exc:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (exc,),
                                   exc_info=(type(exc), exc, exc.__traceback__))
    text = formatter.format(record)
    assert "alice:***@mlflow" in text
    for secret in ("s3cr3t-pw", "pg@pw", "t0ken-abc"):
        assert secret not in text
    assert redact("s3://key:secret@bucket/x") == "s3://key:***@bucket/x"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.org"])
def test_beyond_loopback_the_server_refuses_to_start_without_a_token(host, capsys):
    with pytest.raises(ExposureError, match="MLOPS_SERVE_TOKEN"):
        check_exposure(ServeSettings(host=host))
    check_exposure(ServeSettings(host=host, token="x" * 32))
    for loopback in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_exposure(ServeSettings(host=loopback))


@pytest.mark.parametrize("token", [" ", "x", "short-but-not-empty", "x" * 31, " " * 40,
                                   "x" * 20 + " " + "y" * 20, "\t" + "x" * 32])
@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_a_weak_token_is_refused_and_the_error_says_how_to_make_one(host, token):
    with pytest.raises(ExposureError, match="at least 32") as err:
        check_exposure(ServeSettings(host=host, token=token))
    assert "secrets.token_urlsafe(32)" in str(err.value)
    check_exposure(ServeSettings(host=host, token="x" * 32))


def test_serve_cli_refuses_a_weak_token_in_one_line(monkeypatch, capsys):
    from mlops_pipeline.cli import main

    monkeypatch.setenv("MLOPS_SERVE_TOKEN", " ")
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: refusing to serve")
    assert "whitespace" in err and "token_urlsafe" in err


def test_serve_cli_says_why_it_refuses(monkeypatch, capsys):
    from mlops_pipeline.cli import main

    monkeypatch.delenv("MLOPS_SERVE_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0" in err and "MLOPS_SERVE_TOKEN" in err


def test_feedback_and_admin_need_the_exact_token(harness):
    async def go(client, server):
        out = []
        for header in (None, "Bearer wrong", "Bearer t0ken-abc-", "bearer t0ken-abc", "Bearer t0ken-abc"):
            headers = {"Authorization": header} if header else {}
            out.append((await client.post("/feedback", json={"request_id": "r", "label": 1},
                                          headers=headers)).status_code)
        return out

    assert harness.run(go) == [401, 401, 401, 401, 404]  # 404: authorised, unknown request id


# What a web page can send cross-site without a CORS preflight (a "simple request"), and no type.
SIMPLE_TYPES = ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x", None]


@pytest.mark.parametrize("content_type", SIMPLE_TYPES)
@pytest.mark.parametrize("path", ["/predict", "/feedback"])
def test_a_body_not_declared_json_is_a_415_and_no_cors_header_is_ever_sent(harness, path, content_type):
    async def go(client, server):
        headers = {"Authorization": "Bearer t0ken-abc", "Origin": "http://evil.example"}
        payload = body() if path == "/predict" else b'{"request_id": "r", "label": 1}'
        refused = await client.post(path, content=payload,
                                    headers={**headers, **({"content-type": content_type}
                                                           if content_type else {})})
        accepted = await client.post(path, content=payload,
                                     headers={**headers, "content-type": "Application/JSON; charset=utf-8"})
        preflight = await client.options(path, headers={
            "Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        return refused, accepted, preflight, (await client.get("/metrics")).text

    refused, accepted, preflight, metrics = harness.run(go)
    assert refused.status_code == 415, refused.text
    assert "application/json" in refused.json()["detail"]
    assert 'mlops_errors_total{kind="unsupported_media_type"} 1.0' in metrics
    assert accepted.status_code == (200 if path == "/predict" else 404), accepted.text  # 404: unknown id
    assert preflight.status_code >= 400
    for r in (refused, accepted, preflight):
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], r.headers


def test_health_says_starting_until_the_first_model_even_with_the_registry_down(harness):
    """No model yet and the registry unreachable: `starting` (not `degraded`, which means "serving
    the last model"), the registry's error shown; /ready 503. Once a model is loaded: `degraded`."""
    async def go(client, server):
        loaded = server.watcher.champion
        server.watcher.champion = None
        await asyncio.get_running_loop().run_in_executor(None, server.watcher.refresh_now, 10.0)
        before = (await client.get("/health")), (await client.get("/ready"))
        server.watcher.champion = loaded
        return before, (await client.get("/health")), (await client.get("/ready"))

    (health, ready), after, ready_after = harness.run(go)
    assert health.status_code == 200 and health.json()["status"] == "starting", health.text
    assert health.json()["registry"]["reachable"] is False and health.json()["registry"]["last_error"]
    assert ready.status_code == 503
    assert after.json()["status"] == "degraded" and ready_after.status_code == 200


def test_a_client_that_hangs_up_mid_body_is_a_client_error_not_a_500(harness, caplog):
    """Through a real uvicorn on 127.0.0.1: a client that closes the connection mid-body and one
    that sends a malformed chunked body are counted as `client_disconnect` (not `internal`, the
    500 on the board) and logged at INFO without a traceback."""
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    payload = body()
    head = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")

    async def raw(request: bytes, read: bool) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10) if read else b""
        writer.close()
        return answer

    async def main() -> str:
        config = uvicorn.Config(harness.app, host="127.0.0.1", port=port, lifespan="on",
                                log_config=None, access_log=False)
        srv = uvicorn.Server(config)
        task = asyncio.create_task(srv.serve())
        try:
            while not srv.started:
                await asyncio.sleep(0.02)
            harness.app.state.server.watcher.champion = LoadedModel(
                "flights_delay", "1", harness.model, "classification")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                ok = await client.post("/predict", content=payload, headers=JSON)
                assert ok.status_code == 200, ok.text
                await raw(head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload[:20], read=False)
                await raw(head + b"Transfer-Encoding: chunked\r\n\r\n5\r\n" + payload[:5]
                          + b"\r\nzz-not-a-size\r\n", read=True)
                for _ in range(200):
                    metrics = (await client.get("/metrics")).text
                    if 'mlops_errors_total{kind="client_disconnect"} 2.0' in metrics:
                        break
                    await asyncio.sleep(0.05)
                return metrics
        finally:
            srv.should_exit = True
            await task

    with caplog.at_level(logging.INFO):
        metrics = asyncio.run(main())
    assert 'mlops_errors_total{kind="client_disconnect"} 2.0' in metrics, metrics
    assert 'mlops_errors_total{kind="internal"} 0.0' in metrics  # no 500: still at zero
    ours = [r for r in caplog.records if r.name.startswith("mlops_pipeline")]
    assert not [r for r in ours if r.levelno >= logging.ERROR], [r.getMessage() for r in ours]
    gone = [r for r in ours if "disconnected" in r.getMessage()]
    assert len(gone) == 2 and all(r.levelno == logging.INFO and not r.exc_info for r in gone)
