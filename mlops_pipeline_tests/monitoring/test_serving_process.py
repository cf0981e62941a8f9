"""Without MLOPS_SERVING_URL, monitoring finds the running server through the state file serving
writes (the same path, derived from the settings handed in), and ignores a dead server's file."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_pipeline.monitoring.board import parse_serving_metrics
from mlops_pipeline.monitoring.serving_process import ServingProcess, live_server_url
from mlops_pipeline.serving.metrics import ServingMetrics
from mlops_pipeline.serving.settings import ServeSettings, state_path
from mlops_pipeline.serving.workers import write_state
from mlops_pipeline.settings import Settings


@pytest.fixture
def metrics_server() -> Iterator[str]:
    """A loopback HTTP server answering /metrics with a serving process's real Prometheus text."""
    metrics = ServingMetrics()
    for _ in range(99):
        metrics.latency.labels("predict").observe(0.004)
    metrics.latency.labels("predict").observe(0.9)
    body = metrics.render()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_board_reads_the_server_its_state_file_names(tmp_path, metrics_server):
    settings = Settings(data_dir=str(tmp_path))
    write_state(settings.serving_state_path("flights"), metrics_server, "flights")  # what `serve` does
    client = ServingProcess("", state_path=settings.serving_state_path).for_model("flights")
    assert client.url == metrics_server and "state file" in client.source
    parsed = parse_serving_metrics(client.metrics_text() or "")
    assert 2.5 <= parsed["p50_ms"] <= 5.0 and parsed["requests"] == 0
    # A configured URL wins over the state file.
    assert ServingProcess("http://127.0.0.1:9", state_path=settings.serving_state_path).for_model(
        "flights").url == "http://127.0.0.1:9"
    # No state file for another model: nothing to read, and the board says where it looked.
    other = ServingProcess("", state_path=settings.serving_state_path).for_model("taxi")
    assert other.url == "" and other.metrics_text() is None and "taxi.json" in other.source


def test_a_state_file_left_by_a_dead_server_is_not_followed(tmp_path):
    path = tmp_path / "server.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": dead.pid, "model_name": "m"}))
    assert live_server_url(path) is None
    path.write_text("{not json")
    assert live_server_url(path) is None
    assert live_server_url(tmp_path / "missing.json") is None


@pytest.mark.parametrize("state_file", ["", "custom/server.json"])
def test_settings_name_the_state_file_the_server_writes(tmp_path, monkeypatch, state_file):
    """`Settings.serving_state_path` (the board's) and `serving.settings.state_path` (the server's)
    are the same file, with and without MLOPS_SERVE_STATE_FILE."""
    env = {"MLOPS_DATA_DIR": str(tmp_path / "data")}
    if state_file:
        env["MLOPS_SERVE_STATE_FILE"] = str(tmp_path / state_file)
    for var in ("MLOPS_DATA_DIR", "MLOPS_SERVE_STATE_FILE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    served = state_path(ServeSettings.from_env(), "flights")
    assert Settings.from_env(env).serving_state_path("flights") == served
    assert served == (Path(env["MLOPS_SERVE_STATE_FILE"]) if state_file
                      else (tmp_path / "data" / "serving" / "flights.json").resolve())
