"""The board reads the serving process's real Prometheus output and the captured traffic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.monitoring.board import (
    histogram_quantile,
    parse_serving_metrics,
    per_minute,
    traffic_summary,
)
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


def _requests(sizes_and_latencies: list[tuple[int, float]], start: datetime) -> pd.DataFrame:
    """A captured log as `read_window` returns it: one row per record, each repeating its
    request's (batch's) id, time and latency; requests one second apart."""
    rows = []
    for i, (size, latency) in enumerate(sizes_and_latencies):
        for record in range(size):
            rows.append({"batch_id": f"b{i}", "request_id": f"b{i}-{record}", "role": "champion",
                         "ts": start + timedelta(seconds=i), "latency_ms": latency,
                         "probability": 0.3, "prediction": 0.0, "model_version": "1"})
    return pd.DataFrame(rows)


def test_latency_percentiles_and_qps_are_per_request_and_records_per_second_separate():
    """One 1,000-record request among nine single-record ones is one request in ten, not 1,000
    samples of 1,009: it must not make p50 = p95 = p99 its latency."""
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    log = _requests([(1000, 100.0)] + [(1, 1.0)] * 9, start)
    summary = traffic_summary(log, "probability")
    assert summary["served"] == 1009 and summary["requests"] == 10
    assert summary["store_p50_ms"] == pytest.approx(1.0)
    assert summary["store_p95_ms"] == pytest.approx(float(np.percentile([100.0] + [1.0] * 9, 95)))
    assert summary["store_p99_ms"] > summary["store_p95_ms"] > summary["store_p50_ms"]
    assert summary["qps"] == pytest.approx(10 / 9)  # requests over the 9 s they span
    assert summary["records_per_second"] == pytest.approx(1009 / 9)


def test_the_per_minute_figures_count_requests_and_records_apart():
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    log = _requests([(1000, 100.0)] + [(1, 1.0)] * 9, start)
    minute = per_minute(log).iloc[0]
    assert minute["requests_per_second"] == pytest.approx(10 / 60)
    assert minute["records_per_second"] == pytest.approx(1009 / 60)
    assert minute["p99_ms"] == pytest.approx(float(np.percentile([100.0] + [1.0] * 9, 99)))
