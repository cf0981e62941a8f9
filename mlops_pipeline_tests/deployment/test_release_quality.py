"""The release's quality comparison: the bootstrap's fast metrics equal the gate's, and the paired
interval covers the difference and is narrower than the unpaired one."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_pipeline.deployment.release_quality import bootstrap_difference, metric_value


def test_fast_metrics_equal_the_gates_compute_metrics():
    from mlops_pipeline.training.model import ClassInfo, compute_metrics

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    s = np.clip(y * 0.3 + rng.uniform(0, 0.7, 500), 0, 1)
    classes = ClassInfo((0, 1), 1)
    expected = compute_metrics("classification", y, s, classes)
    for metric in ("roc_auc", "log_loss", "brier", "accuracy"):
        assert metric_value(metric, y, s, classes) == pytest.approx(expected[metric], abs=1e-9)


def test_paired_bootstrap_interval_covers_the_difference_and_shrinks_with_pairs():
    from mlops_pipeline.training.model import ClassInfo

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 600)
    a = np.clip(y * 0.3 + rng.uniform(0, 0.7, 600), 0, 1)
    b = np.clip(a + rng.normal(0, 0.02, 600), 0, 1)
    classes = ClassInfo((0, 1), 1)
    m_a, m_b, diff, lo, hi = bootstrap_difference(y, a, y, b, "roc_auc", classes, True, True, 200, 0.95)
    assert diff == pytest.approx(m_b - m_a) and lo <= diff <= hi
    _, _, _, ulo, uhi = bootstrap_difference(y, a, y, b, "roc_auc", classes, True, False, 200, 0.95)
    assert hi - lo < (uhi - ulo) / 3  # pairing removes the request-to-request variance
    # log_loss: smaller is better, so the sign-adjusted difference is champion minus challenger
    m_a, m_b, diff, _, _ = bootstrap_difference(y, a, y, b, "log_loss", classes, False, True, 50, 0.9)
    assert diff == pytest.approx(m_a - m_b)
