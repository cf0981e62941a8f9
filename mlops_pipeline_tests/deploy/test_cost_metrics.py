"""The cost metrics of the serving process (serving/metrics.py) as Prometheus reads them, in
multiprocess mode too: `serve --workers N` has one set of files per worker, and /metrics must
sum the CPU seconds, records and cost of all of them (the rules divide those sums)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops_pipeline.serving.metrics import ServingMetrics

WORKER = """
import sys
from mlops_pipeline.serving.metrics import ServingMetrics
m = ServingMetrics()
m.scored("3", "canary", int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), 0.072)
m.scoring_latency.labels("3", "canary").observe(0.004)
"""


def _samples(text: bytes) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def test_one_process_exposes_cpu_wall_records_and_cost_by_version_and_role() -> None:
    m = ServingMetrics()
    m.scored("1", "champion", 200, 0.5, 0.7, 0.05)
    m.scored("1", "champion", 100, 0.25, 0.3, 0.05)
    s = _samples(m.render())
    key = (("model_version", "1"), ("role", "champion"))
    assert s[("mlops_scoring_cpu_seconds_total", key)] == 0.75
    assert s[("mlops_scoring_wall_seconds_total", key)] == pytest.approx(1.0)
    assert s[("mlops_scored_records_total", key)] == 300
    assert s[("mlops_scoring_cost_usd_total", key)] == pytest.approx(0.75 * 0.05 / 3600)
    assert s[("mlops_cost_per_core_hour_usd", ())] == 0.05


def test_worker_processes_are_summed_in_multiprocess_mode(tmp_path: Path, monkeypatch) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for records, cpu, wall in ((100, 1.0, 1.5), (300, 2.0, 2.5)):
        subprocess.run([sys.executable, "-c", WORKER, str(records), str(cpu), str(wall)], env=env,
                       check=True, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    s = _samples(ServingMetrics().render())  # what any worker's /metrics answers
    key = (("model_version", "3"), ("role", "canary"))
    assert s[("mlops_scoring_cpu_seconds_total", key)] == 3.0
    assert s[("mlops_scoring_wall_seconds_total", key)] == 4.0
    assert s[("mlops_scored_records_total", key)] == 400
    assert s[("mlops_scoring_cost_usd_total", key)] == pytest.approx(3.0 * 0.072 / 3600)
    assert s[("mlops_cost_per_core_hour_usd", ())] == 0.072
    assert s[("mlops_scoring_latency_seconds_count", key)] == 2
