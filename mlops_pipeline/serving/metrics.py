"""Prometheus metrics, one registry per app (no process-global state, so tests can build many apps).

Latency buckets are fine-grained below 100 ms because the target is p99 <= 50 ms: Prometheus
interpolates quantiles inside a bucket, and wide buckets there would make p95/p99 meaningless.

With several workers (`serve --workers N`) the values live in Prometheus' multiprocess files
(`PROMETHEUS_MULTIPROC_DIR`, set by the supervisor before the workers start) and `/metrics`
aggregates every worker: counters and histograms are summed; of the gauges, a model counts as
loaded when any live worker has it, and the registry as reachable only when every worker reached it.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from mlops_pipeline.serving.errors import ERROR_KINDS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0)
PROBABILITY_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


class ServingMetrics:
    """Every metric a serving process exposes on /metrics, on a registry of its own."""

    def __init__(self, regression_buckets: tuple[float, ...] | None = None):
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "mlops_request_latency_seconds", "Server-side latency of a request, capture included.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.requests = Counter(
            "mlops_predict_requests", "Answered /predict requests by model version and role.",
            ["model_version", "role"], registry=r,
        )
        self.predictions = Counter(
            "mlops_predictions", "Scored records by model version and role (shadow included).",
            ["model_version", "role"], registry=r,
        )
        self.errors = Counter("mlops_errors", "Errors by kind.", ["kind"], registry=r)
        for kind in ERROR_KINDS:  # at zero from the start, so rates see the first errors
            self.errors.labels(kind)
        self.probability = Histogram(
            "mlops_prediction_probability",
            "Probability of the answer: positive class (binary), predicted class (multi-class).",
            ["role"], buckets=PROBABILITY_BUCKETS, registry=r,
        )
        self.value = Histogram(
            "mlops_prediction_value", "Predicted value (regression).",
            ["role"], buckets=regression_buckets or (0, 1, 5, 10, 15, 30, 60, 120, 240), registry=r,
        )
        self.batch_rows = Histogram(
            "mlops_batch_rows", "Rows per model call (micro-batch size).", ["role"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r,
        )
        self.commit_rows = Histogram(
            "mlops_capture_commit_rows", "Rows per group commit of the prediction store.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024), registry=r,
        )
        self.commit_seconds = Histogram(
            "mlops_capture_commit_seconds", "Duration of one group commit.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.unseen = Counter(
            "mlops_unseen_categories", "Categories the model was not trained on, by column.",
            ["column"], registry=r,
        )
        self.out_of_domain = Counter(
            "mlops_out_of_domain",
            "Answered values outside the contract's domain in a column whose policy is flag, by column.",
            ["column"], registry=r,
        )
        self.model_info = Gauge(
            "mlops_model_info", "1 for each loaded model version and its slot.",
            ["model_name", "model_version", "slot"], registry=r, multiprocess_mode="livemax",
        )
        # Who is paged for the served model (the dataset config's owner and runbook): the alerts
        # join it on `job` (deploy/prometheus/rules: mlops:model_owner:info).
        self.owner_info = Gauge(
            "mlops_model_owner_info", "1, labelled with the served model's owner and runbook.",
            ["model_name", "owner", "runbook_url"], registry=r, multiprocess_mode="livemax",
        )
        self.load_failures = Counter(
            "mlops_model_load_failures",
            "Versions an alias pointed at that failed to load (never swapped in), by slot.",
            ["slot"], registry=r,
        )
        self.registry_up = Gauge(
            "mlops_registry_reachable", "1 when the last registry poll succeeded.", registry=r,
            multiprocess_mode="livemin",
        )
        self.shadow_dropped = Counter(
            "mlops_shadow_dropped", "Shadow batches dropped because the shadow queue was full.",
            registry=r,
        )
        # Cost per prediction: CPU seconds of the scoring thread inside the model call, wall time of
        # that call, and the records it scored, by version and role; the cost counter is the CPU
        # seconds at the configured price per core-hour (ServeSettings.cost_per_core_hour).
        self.scoring_cpu = Counter(
            "mlops_scoring_cpu_seconds", "CPU seconds of the scoring thread inside model calls.",
            ["model_version", "role"], registry=r,
        )
        self.scoring_wall = Counter(
            "mlops_scoring_wall_seconds", "Wall-clock seconds inside model calls.",
            ["model_version", "role"], registry=r,
        )
        self.scored_records = Counter(
            "mlops_scored_records", "Records scored by model calls (answered or not, shadow included).",
            ["model_version", "role"], registry=r,
        )
        self.scoring_cost = Counter(
            "mlops_scoring_cost_usd", "Scoring CPU seconds priced at the configured USD per core-hour.",
            ["model_version", "role"], registry=r,
        )
        self.core_hour_price = Gauge(
            "mlops_cost_per_core_hour_usd", "The configured price of one core-hour (USD).",
            registry=r, multiprocess_mode="livemax",
        )
        self.scoring_latency = Histogram(
            "mlops_scoring_latency_seconds",
            "Per request: receipt to prediction (the prediction store's latency_ms), capture excluded.",
            ["model_version", "role"], buckets=LATENCY_BUCKETS, registry=r,
        )

    def scored(self, version: str, role: str, rows: int, cpu_seconds: float, wall_seconds: float,
               cost_per_core_hour: float) -> None:
        """Account one model call: its CPU and wall seconds, the records it scored, and their cost
        (CPU seconds at `cost_per_core_hour` USD), so cost per 1,000 predictions is a ratio of two
        counters (deploy/prometheus/rules/recording.yml)."""
        self.scoring_cpu.labels(version, role).inc(cpu_seconds)
        self.scoring_wall.labels(version, role).inc(wall_seconds)
        self.scored_records.labels(version, role).inc(rows)
        self.scoring_cost.labels(version, role).inc(cpu_seconds * cost_per_core_hour / 3600.0)
        self.core_hour_price.set(cost_per_core_hour)

    def count_out_of_domain(self, marks: dict[int, list[str]]) -> None:
        """Count one answered request's flagged values ({record: columns}) per column."""
        per_column: dict[str, int] = {}
        for columns in marks.values():
            for c in columns:
                per_column[c] = per_column.get(c, 0) + 1
        for c, n in per_column.items():
            self.out_of_domain.labels(c).inc(n)

    @staticmethod
    def observe_many(hist: Any, values: np.ndarray, loop_below: int = 64) -> None:
        """`hist.observe(v)` for every value, with one count per bucket for large batches (one
        observe() call per record is a real share of a large request's cost). Same bucket rule as
        observe(): the first bucket whose upper bound is >= the value. Small batches, and a client
        library without these internals, use observe() itself."""
        bounds = getattr(hist, "_upper_bounds", None)
        buckets = getattr(hist, "_buckets", None)
        total = getattr(hist, "_sum", None)
        if len(values) < loop_below or bounds is None or buckets is None or total is None:
            for v in values:
                hist.observe(float(v))
            return
        arr = np.asarray(values, dtype=np.float64)
        idx = np.searchsorted(np.asarray(bounds, dtype=np.float64), arr, side="left")
        counts = np.bincount(idx[idx < len(bounds)], minlength=len(bounds))
        total.inc(float(arr.sum()))
        for bucket, n in zip(buckets, counts.tolist(), strict=True):
            if n:
                bucket.inc(n)

    def render(self) -> bytes:
        """The Prometheus text exposition: this process's, or every worker's (multiprocess mode)."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        return generate_latest(registry)

    def leave(self) -> None:
        """This process is stopping: its live gauges no longer count."""
        if self.multiprocess_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
