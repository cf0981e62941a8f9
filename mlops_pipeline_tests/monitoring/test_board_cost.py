"""The board shows cost per 1,000 predictions by version and role next to its latency, from the
serving process's own Prometheus output (`ServingMetrics`, rendered as `/metrics` renders it)."""

from __future__ import annotations

import pytest

from mlops_pipeline.monitoring.board import Board, render_board, serving_by_version
from mlops_pipeline.serving.metrics import ServingMetrics


def test_cost_per_1k_predictions_and_latency_by_version_and_role():
    metrics = ServingMetrics()
    price = 0.36  # USD per core-hour: 1 CPU second costs 0.0001 USD
    for _ in range(4):  # champion: 4 calls of 500 records, 0.25 CPU s each
        metrics.scored("3", "champion", 500, 0.25, 0.3, price)
    metrics.scored("4", "canary", 100, 0.2, 0.21, price)  # canary: 2 CPU ms per record
    for _ in range(95):
        metrics.scoring_latency.labels("3", "champion").observe(0.004)
    for _ in range(5):
        metrics.scoring_latency.labels("3", "champion").observe(0.04)
    metrics.scoring_latency.labels("4", "canary").observe(0.02)
    rows = serving_by_version(metrics.render().decode())
    by = {(r["version"], r["role"]): r for r in rows}
    assert list(by) == [("v3", "champion"), ("v4", "canary")]
    champion, canary = by[("v3", "champion")], by[("v4", "canary")]
    assert champion["predictions"] == 2000 and canary["predictions"] == 100
    assert champion["cpu_s_per_1k"] == pytest.approx(0.5)
    assert champion["usd_per_1k"] == pytest.approx(0.5 * price / 3600)
    assert canary["cpu_s_per_1k"] == pytest.approx(2.0)
    assert canary["usd_per_1k"] == pytest.approx(4 * champion["usd_per_1k"])
    assert 2.5 <= champion["p50_ms"] <= 5 and 30 <= champion["p99_ms"] <= 50
    page = render_board(Board("b", {}, [], {}, {}, versions=rows))
    assert "Serving by version" in page and "usd_per_1k" in page and "v4" in page


def test_no_cost_samples_means_no_rows():
    assert serving_by_version(ServingMetrics().render().decode()) == []
