"""Two serving replicas behind HAProxy (deploy/haproxy/haproxy.cfg, Debian's haproxy), all real
processes on loopback: a replica killed with SIGKILL under client load costs at most the requests
that were in flight on it, HAProxy takes it out on its `/ready` health check, Prometheus (the
shipped rules, scraping every second) raises `MlopsServingDown` for that replica, and the restarted
replica rejoins, answers again and the alert clears."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from mlops_pipeline.processes import stop_group
from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline.topology.production import prometheus_config
from mlops_pipeline_tests.conftest import skip_or_fail
from mlops_pipeline_tests.serving.conftest import (
    BIN,
    Stack,
    free_port,
    records,
    start,
    wait_http,
)

HAPROXY_CFG = PROJECT_ROOT / "deploy" / "haproxy" / "haproxy.cfg"
CLIENTS = 4  # concurrent client connections: at most this many requests are ever in flight


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen | None = None


def _start_replica(s: Stack, replica: Replica) -> None:
    """`mlops-pipeline serve` on the replica's own port (the same port again on a restart, as a
    supervisor would), capturing into the one prediction store both replicas share."""
    (s.root / replica.name).mkdir(exist_ok=True)
    env = {**s.env, "MLOPS_SERVE_STATE_FILE": str(s.root / replica.name / "server.json")}
    log = s.root / replica.name / "serve.log"
    proc = start([str(BIN / "mlops-pipeline"), "serve", "--port", str(replica.port),
                  "--predictions-url", s.predictions_url("lb")], env, log)
    replica.proc = proc
    wait_http(f"http://127.0.0.1:{replica.port}/ready", proc, log)


def _status(stats_url: str) -> dict[str, str]:
    """Each server's state in HAProxy's own view (its CSV stats: UP, DOWN, ...)."""
    text = httpx.get(f"{stats_url};csv", timeout=5).text
    header, *rows = [line for line in text.splitlines() if line]
    columns = header.lstrip("# ").split(",")
    out = {}
    for row in rows:
        values = dict(zip(columns, row.split(","), strict=False))
        if values["pxname"] == "serving_replicas" and values["svname"].startswith("replica"):
            out[values["svname"]] = values["status"].split(" ")[0]
    return out


def _wait_status(stats_url: str, want: dict[str, str], timeout: float = 120.0) -> float:
    """Wait until HAProxy shows `want`; returns when (time.monotonic())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_status(stats_url).get(k) == v for k, v in want.items()):
            return time.monotonic()
        time.sleep(0.1)
    raise TimeoutError(f"HAProxy never showed {want}: {_status(stats_url)}")


@dataclass
class Load:
    """Client threads posting /predict through the balancer until stopped; every outcome kept."""

    url: str
    bodies: list[dict]
    outcomes: list[tuple[float, float, bool, str]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def _client(self, i: int) -> None:
        with httpx.Client(timeout=30) as client:
            n = i
            while not self.stopping.is_set():
                body = {"records": [self.bodies[n % len(self.bodies)]]}
                began = time.monotonic()
                try:
                    r = client.post(f"{self.url}/predict", json=body)
                    ok, why = r.status_code == 200, f"{r.status_code} {r.text[:120]}"
                except httpx.HTTPError as exc:
                    ok, why = False, repr(exc)
                self.outcomes.append((began, time.monotonic(), ok, why))
                n += CLIENTS

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        return threads

    def answered_after(self, moment: float) -> int:
        return sum(1 for began, _, ok, _ in self.outcomes if ok and began > moment)


def _alerts(prometheus: str) -> dict[str, str]:
    """MlopsServingDown's state (pending or firing) per scraped instance."""
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {a["labels"]["instance"]: a["state"] for a in alerts
            if a["labels"]["alertname"] == "MlopsServingDown"}


@pytest.fixture
def balanced(stack: Stack) -> Iterator[tuple[str, str, str, list[Replica]]]:
    haproxy, prometheus = shutil.which("haproxy"), shutil.which("prometheus")
    if haproxy is None or prometheus is None:
        skip_or_fail("haproxy or prometheus not installed (Debian: apt-get install haproxy prometheus)")
    assert haproxy is not None and prometheus is not None
    replicas = [Replica("replica1", free_port()), Replica("replica2", free_port())]
    lb_port, stats_port = free_port(), free_port()
    env = {**os.environ, "MLOPS_LB_BIND": f"127.0.0.1:{lb_port}",
           "MLOPS_REPLICA_1": f"127.0.0.1:{replicas[0].port}",
           "MLOPS_REPLICA_2": f"127.0.0.1:{replicas[1].port}",
           "MLOPS_LB_STATS": f"127.0.0.1:{stats_port}"}
    log = stack.root / "haproxy.log"
    lb = prom = None
    prom_port = free_port()
    prom_dir = stack.root / f"prometheus-{prom_port}"
    prom_dir.mkdir()
    targets = [f"127.0.0.1:{r.port}" for r in replicas]
    (prom_dir / "prometheus.yml").write_text(prometheus_config(targets, f"127.0.0.1:{prom_port}", "1s"))
    try:
        for replica in replicas:
            _start_replica(stack, replica)
        prom = start([prometheus, f"--config.file={prom_dir / 'prometheus.yml'}",
                      f"--storage.tsdb.path={prom_dir / 'tsdb'}",
                      f"--web.listen-address=127.0.0.1:{prom_port}"],
                     dict(os.environ), prom_dir / "prometheus.log")
        lb = start([haproxy, "-f", str(HAPROXY_CFG)], env, log)
        stats = f"http://127.0.0.1:{stats_port}/stats"
        deadline = time.monotonic() + 30
        while True:
            try:
                _status(stats)
                break
            except httpx.HTTPError:
                assert lb.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "HAProxy's stats never answered"
                time.sleep(0.1)
        _wait_status(stats, {"replica1": "UP", "replica2": "UP"})
        yield f"http://127.0.0.1:{lb_port}", stats, f"http://127.0.0.1:{prom_port}", replicas
    finally:
        stop_group(*[p for p in [lb, prom, *(r.proc for r in replicas)] if p is not None])


def test_a_replica_killed_under_load_loses_only_its_in_flight_requests_and_rejoins(
        stack: Stack, balanced: tuple[str, str, list[Replica]]) -> None:
    url, stats, prometheus, (first, second) = balanced
    load = Load(url, records(stack, 200))
    threads = load.run()
    try:
        deadline = time.monotonic() + 60
        while load.answered_after(0) < 50:  # traffic flows through both replicas
            assert time.monotonic() < deadline, load.outcomes[-3:]
            time.sleep(0.05)
        assert first.proc is not None
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=30)
        killed = time.monotonic()  # dead by now: a request begun later never reached it alive
        down = _wait_status(stats, {"replica1": "DOWN", "replica2": "UP"})
        dead = f"127.0.0.1:{first.port}"
        deadline = time.monotonic() + 60
        while dead not in _alerts(prometheus):  # the real Prometheus sees the replica down
            assert time.monotonic() < deadline, _alerts(prometheus)
            time.sleep(0.5)
        # Pending now; it fires after the rule's `for: 1m` (the promtool unit tests prove that part).
        assert _alerts(prometheus)[dead] in ("pending", "firing")
        assert f"127.0.0.1:{second.port}" not in _alerts(prometheus)
        deadline = time.monotonic() + 60
        while load.answered_after(down) < 50:  # the survivor carries everything
            assert time.monotonic() < deadline, load.outcomes[-3:]
            time.sleep(0.05)
        _start_replica(stack, first)
        back = _wait_status(stats, {"replica1": "UP", "replica2": "UP"})
        seen = httpx.get(f"http://127.0.0.1:{first.port}/metrics").text
        deadline = time.monotonic() + 60
        while 'mlops_predict_requests_total{' not in seen:  # the rejoined replica takes traffic
            assert time.monotonic() < deadline, "the restarted replica got no request"
            time.sleep(0.2)
            seen = httpx.get(f"http://127.0.0.1:{first.port}/metrics").text
        deadline = time.monotonic() + 60
        while dead in _alerts(prometheus):  # back: the alert clears
            assert time.monotonic() < deadline, _alerts(prometheus)
            time.sleep(0.5)
    finally:
        load.stopping.set()
        for t in threads:
            t.join(timeout=60)
    failed = [o for o in load.outcomes if not o[2]]
    # Lost: only requests already in flight when the replica died (at most one per client).
    assert len(failed) <= CLIENTS, failed
    assert all(began <= killed for began, *_ in failed), (killed, failed)
    assert load.answered_after(back) > 0
    print(f"\nfailover: {len(load.outcomes)} requests, {len(failed)} lost (in flight at the kill); "
          f"HAProxy marked the replica down {down - killed:.1f} s after SIGKILL")
