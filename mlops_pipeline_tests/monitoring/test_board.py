"""The board reads the serving process's real Prometheus output and the captured traffic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from mlops_pipeline.monitoring.board import histogram_quantile, parse_serving_metrics, traffic_summary
from mlops_pipeline.serving.metrics import ServingMetrics


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = [(0.01, 50.0), (0.02, 90.0), (0.05, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.015)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.035)
    assert histogram_quantile(0.5, []) is None


def test_serving_metrics_are_parsed_into_latency_quantiles_and_error_rate():
    metrics = ServingMetrics()
    for _ in range(90):
        metrics.latency.labels("predict").observe(0.004)
    for _ in range(10):
        metrics.latency.labels("predict").observe(0.045)
    metrics.requests.labels("3", "champion").inc(95)
    metrics.requests.labels("4", "canary").inc(5)
    metrics.errors.labels("validation").inc(25)
    parsed = parse_serving_metrics(metrics.render().decode())
    assert parsed["requests"] == 100
    assert parsed["errors"] == {"validation": 25}
    assert parsed["error_rate"] == pytest.approx(0.2)
    assert 2.5 <= parsed["p50_ms"] <= 5.0
    assert 40 <= parsed["p99_ms"] <= 50


def test_traffic_summary_counts_served_rows_only():
    now = datetime.now(UTC)
    log = pd.DataFrame({
        "role": ["champion"] * 8 + ["canary", "shadow"],
        "ts": [now + timedelta(seconds=i) for i in range(10)],
        "latency_ms": [1.0] * 9 + [500.0],
        "probability": [0.2] * 10,
        "model_version": ["1"] * 8 + ["2", "2"],
    })
    summary = traffic_summary(log, "probability")
    assert summary["served"] == 9 and summary["by_version"] == {"1": 8, "2": 1}
    assert summary["store_p99_ms"] == pytest.approx(1.0)  # the shadow's slow answer is not ours
    assert summary["qps"] == pytest.approx(9 / 8)
