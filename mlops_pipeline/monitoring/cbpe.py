"""Confidence-based performance estimation (CBPE): the gate's metrics expected from calibrated
probabilities, before any label. Pure numpy; `estimation` calls it with the calibrator's output.

Calibrated probability `p_i` is the chance row i is positive, so the expected confusion matrix is
`TP = sum p_i [yhat_i = 1]`, `FP = sum (1 - p_i) [yhat_i = 1]`, ... and accuracy and F1 follow from
it. ROC AUC is the expected-count ROC curve: rows ranked by the served score (the ranking the
realized AUC uses; NannyML ranks by the calibrated score, whose isotonic steps would tie rows the
model separates), TPR and FPR accumulated from `p_i` and `1 - p_i`; it equals
`sum_ij p_i (1 - p_j) ([s_i > s_j] + [s_i = s_j] / 2) / (P N)`. The log loss and Brier score are
their expectations under `p`. The band comes from label draws `y_i ~ p_i`, each scored with the
realized metric's own formula.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def cbpe_roc_auc(p: np.ndarray, scores: np.ndarray) -> float:
    """Expected-count ROC AUC: rows ranked by the served score, TPR/FPR accumulated from the
    calibrated `p` and `1 - p`, tied scores forming one step (trapezoid)."""
    p = np.asarray(p, dtype="float64")
    scores = np.asarray(scores, dtype="float64")
    pos, neg = p.sum(), (1 - p).sum()
    if pos <= 0 or neg <= 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, pp = scores[order], p[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last row of each tied group
    tps = np.r_[0.0, np.cumsum(pp)[last]]
    fps = np.r_[0.0, np.cumsum(1 - pp)[last]]
    return float(np.trapezoid(tps / pos, fps / neg))


def expected_confusion(p: np.ndarray, hard: np.ndarray, k: int) -> np.ndarray:
    """Expected confusion matrix C[true, predicted] from calibrated probabilities: binary `p` is
    the positive class's probability (classes 0 = negative, 1 = positive), multi-class `p` (n, k)."""
    if p.ndim == 1:
        p = np.column_stack([1 - p, p])
    onehot = np.eye(k)[hard]
    return p.T @ onehot


def _f1_from_confusion(c: np.ndarray) -> np.ndarray:
    tp = np.diag(c)
    denom = 2 * tp + (c.sum(axis=0) - tp) + (c.sum(axis=1) - tp)
    return np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)


def _point_binary(p: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    hard = (s >= threshold).astype(int)
    c = expected_confusion(p, hard, 2)
    f1 = _f1_from_confusion(c)
    sc = np.clip(s, EPS, 1 - EPS)
    return {
        "roc_auc": cbpe_roc_auc(p, s),
        "accuracy": float(np.trace(c) / len(p)),
        "f1": float(f1[1]),
        "macro_f1": float(f1.mean()),
        "log_loss": float(np.mean(-(p * np.log(sc) + (1 - p) * np.log(1 - sc)))),
        "brier": float(np.mean(p * (1 - s) ** 2 + (1 - p) * s ** 2)),
    }


def _point_multiclass(p: np.ndarray, s: np.ndarray) -> dict[str, float]:
    k = s.shape[1]
    hard = s.argmax(axis=1)
    c = expected_confusion(p, hard, k)
    sc = np.clip(s, EPS, 1.0)
    sc = sc / sc.sum(axis=1, keepdims=True)
    return {
        "roc_auc": float(np.mean([cbpe_roc_auc(p[:, j], s[:, j]) for j in range(k)])),
        "accuracy": float(np.trace(c) / len(p)),
        "macro_f1": float(_f1_from_confusion(c).mean()),
        "log_loss": float(np.mean(-(p * np.log(sc)).sum(axis=1))),
    }


def _avg_ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, method="average")


def _sampled_binary(y: np.ndarray, s: np.ndarray, ranks: np.ndarray,
                    threshold: float = 0.5) -> dict[str, np.ndarray]:
    """The realized metrics of label draws `y` (B, n) of 0/1 against the served scores `s`."""
    n = y.shape[1]
    hard = (s >= threshold).astype(float)
    npos = y.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (y @ ranks - npos * (npos + 1) / 2) / (npos * (n - npos))
    tp, fp = y @ hard, (1 - y) @ hard
    fn, tn = y @ (1 - hard), (1 - y) @ (1 - hard)
    f1_pos = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0)
    f1_neg = np.where(2 * tn + fp + fn > 0, 2 * tn / np.maximum(2 * tn + fp + fn, 1e-12), 0.0)
    sc = np.clip(s, EPS, 1 - EPS)
    return {
        "roc_auc": auc,
        "accuracy": (tp + tn) / n,
        "f1": f1_pos,
        "macro_f1": (f1_pos + f1_neg) / 2,
        "log_loss": -(y @ np.log(sc) + (1 - y) @ np.log(1 - sc)) / n,
        "brier": (y @ (1 - s) ** 2 + (1 - y) @ s ** 2) / n,
    }


def _sampled_multiclass(codes: np.ndarray, s: np.ndarray, ranks: list[np.ndarray]) -> dict[str, np.ndarray]:
    b, n = codes.shape
    k = s.shape[1]
    hard = s.argmax(axis=1)
    sc = np.clip(s, EPS, 1.0)
    logs = np.log(sc / sc.sum(axis=1, keepdims=True))
    aucs, f1s = [], []
    for j in range(k):
        y = (codes == j).astype(float)
        h = (hard == j).astype(float)
        npos = y.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs.append((y @ ranks[j] - npos * (npos + 1) / 2) / (npos * (n - npos)))
        tp, fp, fn = y @ h, (1 - y) @ h, y @ (1 - h)
        f1s.append(np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0))
    return {
        "roc_auc": np.mean(aucs, axis=0),
        "accuracy": (codes == hard).mean(axis=1),
        "macro_f1": np.mean(f1s, axis=0),
        "log_loss": -np.take_along_axis(np.broadcast_to(logs, (b, n, k)), codes[..., None],
                                        axis=2)[..., 0].mean(axis=1),
    }


def band(draws: np.ndarray) -> tuple[float, float]:
    """The 95 % band of a metric's finite bootstrap draws (NaN, NaN when none is finite)."""
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return float(lo), float(hi)


def expected_metrics(p: np.ndarray, s: np.ndarray, binary: bool, metrics: list[str], bootstrap: int,
                     seed: int = 0, threshold: float = 0.5) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Each metric's expectation under the calibrated probabilities `p` of the served scores `s`,
    and `bootstrap` realized values of it on labels drawn `y_i ~ p_i` (the parametric bootstrap
    the band is read from). Draws are made in chunks of at most ~2 million labels. A binary
    model's hard answers are `s >= threshold` (the version's chosen threshold, else 0.5)."""
    n = len(s)
    rng = np.random.default_rng(seed)
    chunks = []
    step = max(1, min(bootstrap, 2_000_000 // max(n, 1)))
    if binary:
        point = _point_binary(p, s, threshold)
        ranks = _avg_ranks(s)
        for start in range(0, bootstrap, step):
            y = (rng.random((min(step, bootstrap - start), n)) < p).astype(float)
            chunks.append(_sampled_binary(y, s, ranks, threshold))
    else:
        point = _point_multiclass(p, s)
        ranks = [_avg_ranks(s[:, j]) for j in range(s.shape[1])]
        cum = np.cumsum(p, axis=1)
        cum[:, -1] = 1.0
        for start in range(0, bootstrap, step):
            u = rng.random((min(step, bootstrap - start), n, 1))
            codes = (u > cum[None, :, :]).sum(axis=2)
            chunks.append(_sampled_multiclass(codes, s, ranks))
    return point, {m: np.concatenate([c[m] for c in chunks]) for m in metrics}
