"""One server, several worker processes (`serve --workers 2`): they share the port, the prediction
store and the metrics, follow the registry together, and a dead worker is replaced.

The workers poll the registry only every 60 s here, so a version change seen within seconds by
every worker can only come from the reload fan-out.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mlops_pipeline.cli import main
from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline_tests.serving.conftest import TOKEN, ServeProc, Stack, records, start_server, stop
from mlops_pipeline_tests.serving.test_deploy import Traffic, _seconds, restore_aliases

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workers_server(stack: Stack) -> Iterator[ServeProc]:
    srv = start_server(stack, "workers", "--workers", "2", "--poll-seconds", "60")
    yield srv
    stop(srv.proc)


def _health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=5).json()


def _workers(url: str) -> list[dict]:
    for _ in range(5):  # a connection that reached a worker's socket just as the worker died is reset
        try:
            return _health(url).get("workers", [])
        except httpx.TransportError:
            time.sleep(0.1)
    return _health(url).get("workers", [])


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def test_every_worker_is_listed_with_its_model(workers_server):
    # start_server waited for /ready, which answers 200 only once every worker has loaded a model
    workers = _workers(workers_server.url)
    pids = {w["pid"] for w in workers}
    assert len(pids) == 2 and workers_server.proc.pid not in pids  # the supervisor does not serve
    assert {w["champion_version"] for w in workers} == {"1"}
    assert "mlops_registry_reachable 1.0" in httpx.get(f"{workers_server.url}/metrics").text


def test_concurrent_traffic_is_answered_captured_and_counted_across_workers(stack, workers_server):
    store = PredictionStore(workers_server.predictions_url)
    before_rows, before_metric = store.count(), _metric(workers_server.url, "mlops_predictions_total")
    small = records(stack, 40)
    large = records(stack, 800, offset=40)  # ~350 KB: above the large-request threshold

    def post(i: int) -> httpx.Response:
        body = {"records": large} if i % 20 == 0 else {"records": [small[i % len(small)]]}
        with httpx.Client(base_url=workers_server.url, timeout=30) as client:
            return client.post("/predict", json=body)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(200)))
    assert [r.status_code for r in answers] == [200] * 200
    answered = sum(len(r.json()["predictions"]) for r in answers)
    assert answered == 190 + 10 * 800
    assert store.count() - before_rows == answered  # every answer captured, by both writers
    assert _metric(workers_server.url, "mlops_predictions_total") - before_metric == answered
    ids = {p["request_id"] for r in answers for p in r.json()["predictions"]}
    assert len(ids) == answered and ids <= set(store.read_window()["request_id"])


def test_promote_and_rollback_reach_every_worker_at_once(stack, workers_server, capsys, monkeypatch):
    monkeypatch.setenv("MLOPS_SERVE_TOKEN", TOKEN)
    traffic = [Traffic(workers_server.url, records(stack, 1, offset=100 + i)[0]) for i in range(3)]
    for t in traffic:
        t.start()
    try:
        time.sleep(0.5)
        assert main(["promote", "2", "--server-url", workers_server.url]) == 0
        assert _seconds(capsys.readouterr().out, "2") < 5  # both workers, long before a poll
        assert {w["champion_version"] for w in _workers(workers_server.url)} == {"2"}
        switched = time.time()
        time.sleep(0.5)
        assert main(["rollback", "--server-url", workers_server.url]) == 0
        assert _seconds(capsys.readouterr().out, "1") < 5
        assert {w["champion_version"] for w in _workers(workers_server.url)} == {"1"}
        time.sleep(0.5)
    finally:
        for t in traffic:
            t.halt.set()
        for t in traffic:
            t.join(timeout=15)
        restore_aliases()
    log = [entry for t in traffic for entry in t.log]
    assert {status for _, status, _ in log} == {200}, [e for e in log if e[1] != 200][:5]
    for t in traffic:
        assert t.versions() == ["1", "2", "1"]
    # once the promote command returned, no worker answered with the old version any more
    assert not [e for e in log if switched + 0.05 < e[0] < switched + 0.45 and e[2] != "2"]


def test_rollback_through_the_server_refuses_what_it_cannot_do(stack, workers_server, capsys, monkeypatch):
    """With the token set, `rollback` asks the running server (it has MLflow loaded) to move the
    aliases; a server that cannot (nothing to roll back to, another model, a wrong token) moves
    nothing."""
    from mlops_pipeline.deployment.registry import registry_fingerprint

    monkeypatch.setenv("MLOPS_SERVE_TOKEN", TOKEN)
    restore_aliases()  # no previous-champion
    assert main(["rollback", "--server-url", workers_server.url]) == 1
    assert "no 'previous-champion' alias" in capsys.readouterr().err
    url = f"{workers_server.url}/admin/rollback"
    body = {"model_name": "flights_delay", "registry": registry_fingerprint(stack.tracking_uri, TOKEN)}
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    other = httpx.post(url, json={**body, "model_name": "other_model"},
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert other.status_code == 409 and other.json()["kind"] == "mismatch"
    elsewhere = httpx.post(url, headers={"Authorization": f"Bearer {TOKEN}"},
                           json={**body, "registry": registry_fingerprint("sqlite:///x.db", TOKEN)})
    assert elsewhere.status_code == 409 and "another registry" in elsewhere.json()["detail"]
    assert {w["champion_version"] for w in _workers(workers_server.url)} == {"1"}


def test_a_dead_worker_is_replaced_and_the_server_keeps_answering(stack, workers_server):
    victim = _workers(workers_server.url)[0]["pid"]
    answers: list[int] = []
    halt = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=workers_server.url, timeout=10) as c:
            while not halt.is_set():
                try:
                    answers.append(c.post("/predict", json={"records": records(stack, 1)}).status_code)
                except httpx.HTTPError:  # the connection the dead worker held, or one that reached
                    answers.append(0)  # its socket in the milliseconds before it was closed
                time.sleep(0.01)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        deadline = time.time() + 60
        while True:
            pids = {w["pid"] for w in _workers(workers_server.url)}
            if len(pids) == 2 and victim not in pids:
                break
            assert time.time() < deadline, workers_server.log.read_text()[-3000:]
            time.sleep(0.2)
        ready = httpx.get(f"{workers_server.url}/ready", timeout=5)
        while ready.status_code != 200:  # the replacement has started: not ready until it has a model
            assert ready.json()["reason"].endswith("workers have loaded a model"), ready.text
            assert time.time() < deadline, workers_server.log.read_text()[-3000:]
            time.sleep(0.2)
            ready = httpx.get(f"{workers_server.url}/ready", timeout=5)
        time.sleep(0.3)
    finally:
        halt.set()
        thread.join(timeout=15)
    assert workers_server.proc.poll() is None
    assert answers.count(200) > 20 and set(answers) <= {200, 0} and answers.count(0) <= 2
    assert answers[-5:] == [200] * 5
    assert {w["champion_version"] for w in _workers(workers_server.url)} == {"1"}


def test_sigterm_stops_every_worker_and_loses_no_capture(stack, workers_server):
    pids = [w["pid"] for w in _workers(workers_server.url)]
    store = PredictionStore(workers_server.predictions_url)
    r = httpx.post(f"{workers_server.url}/predict", json={"records": records(stack, 3)})
    assert r.status_code == 200
    before = store.count()
    stop(workers_server.proc)
    assert workers_server.proc.returncode in (0, -15), workers_server.log.read_text()[-2000:]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert store.count() == before
    assert {p["request_id"] for p in r.json()["predictions"]} <= set(store.read_window()["request_id"])
    assert "Traceback" not in workers_server.log.read_text()
