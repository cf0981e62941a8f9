"""Without MLOPS_SERVING_URL the board reads the running server's /metrics through the state file
the server writes where it listens (its path derived from the code location's settings)."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import dagster as dg

from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.serving.metrics import ServingMetrics
from mlops_pipeline.serving.settings import ServeSettings, state_path
from mlops_pipeline.serving.workers import write_state


def test_the_board_finds_the_running_server_through_its_state_file(data_dir, monkeypatch):
    monkeypatch.delenv("MLOPS_SERVING_URL", raising=False)
    monkeypatch.delenv("MLOPS_SERVE_STATE_FILE", raising=False)
    metrics = ServingMetrics()
    for _ in range(100):
        metrics.latency.labels("predict").observe(0.045)
    metrics.requests.labels("1", "champion").inc(100)
    body = metrics.render()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        write_state(state_path(ServeSettings.from_env(), "flights_delay"), url, "flights_delay")
        defs = build_definitions()
        with dg.DagsterInstance.ephemeral() as instance:
            result = defs.resolve_job_def("monitoring_board_job").execute_in_process(instance=instance)
        meta = {k: v.value for k, v in result.asset_materializations_for_node("monitoring_board")[0]
                .metadata.items()}
    finally:
        server.shutdown()
        server.server_close()
    assert 40 <= meta["p99_latency_ms"] <= 50  # the server's histogram, not the (empty) store's
    page = Path(meta["board_path"]).read_text()
    assert url in page and "state file" in page and "MLOPS_SERVING_URL not set" not in page
