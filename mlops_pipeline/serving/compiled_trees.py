"""A HistGradientBoosting model's trees walked by treelite for small micro-batches: same answers.

scikit-learn calls each tree's predictor from Python, ~11 us per tree whatever the rows: 2.3 ms
for the default model's 200 trees on one record (docs/benchmarks.md §1f). Treelite (DMLC's
library for tree ensembles, which imports scikit-learn's HistGradientBoosting models) walks every
tree in one native call: ~0.3 ms for 16 records. It gives each tree's leaf value, and they are
summed in scikit-learn's order (the baseline, then tree by tree) and passed through the model's
own link function, so the answers are bit-identical to `predict_proba`/`predict`, not merely
close (`serving/test_compiled.py` shows it over random models and inputs).

Treelite's walk costs more per row than scikit-learn's, so above `MAX_ROWS` rows (a full
micro-batch at 64 connections and more) scikit-learn's own call is used. A categorical value
scikit-learn treats as missing (negative, or a category the trees never saw) is passed as NaN,
which is what it means there; a value it would truncate (non-integer, beyond 255) sends the call
to scikit-learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Rows up to which treelite walks the trees; above it scikit-learn does (treelite costs ~15 us
#: per row for 200 trees against scikit-learn's ~2.2 ms per call + ~5 us per row: §1f).
MAX_ROWS = 128


class CompiledTrees:
    """`predict_proba`/`predict` of a fitted HistGradientBoosting model on a float64 matrix."""

    def __init__(self, estimator: Any):
        import warnings

        import treelite

        self.estimator = estimator
        with warnings.catch_warnings():  # its importer casts the NaN it pads category lists with
            warnings.simplefilter("ignore", RuntimeWarning)
            self.model = treelite.sklearn.import_model(estimator)
        self.classes = len(estimator._predictors[0])
        self.baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1)
        self.loss = estimator._loss
        self.classifier = hasattr(estimator, "classes_")
        # per categorical feature: which codes the trees know (the others mean "missing" there)
        known, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
        mask = estimator.is_categorical_
        self.categorical = [] if mask is None else [int(j) for j in np.flatnonzero(mask)]
        codes = np.arange(256, dtype=np.uint32)
        self.known = {j: ((known[f_idx_map[j], codes >> 5] >> (codes & 31)) & 1).astype(bool)
                      for j in self.categorical}

    def _input(self, X: np.ndarray) -> np.ndarray | None:
        """`X` as the trees read it, or None when scikit-learn must take it."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if not self.categorical:
            return X
        X = X.copy()
        for j in self.categorical:
            col = X[:, j]
            present = ~np.isnan(col)
            values = col[present]
            if np.any((values >= 256) | (values != np.floor(values))):
                return None
            codes = np.where(values < 0, 0, values).astype(np.int64)
            unknown = (values < 0) | ~self.known[j][codes]
            col[np.flatnonzero(present)[unknown]] = np.nan
        return X

    def raw(self, X: np.ndarray) -> np.ndarray | None:
        """The model's raw predictions (n, classes), summed as scikit-learn sums them."""
        from treelite import gtil

        Xc = self._input(X)
        if Xc is None:
            return None
        n = len(Xc)
        leaves = gtil.predict_per_tree(self.model, Xc, nthread=1).reshape(n, -1)
        raw = np.empty((n, self.classes), dtype=np.float64)
        for k in range(self.classes):  # trees interleave the classes: tree i is class i % classes
            parts = np.concatenate([np.full((n, 1), self.baseline[k]), leaves[:, k::self.classes]], axis=1)
            raw[:, k] = np.cumsum(parts, axis=1)[:, -1]  # left to right, as sklearn adds tree by tree
        return raw

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if not self.classifier:
            raise AttributeError("a regressor has no predict_proba")
        raw = self.raw(X) if len(X) <= MAX_ROWS else None
        return self.estimator.predict_proba(X) if raw is None else self.loss.predict_proba(raw)

    def predict(self, X: np.ndarray) -> np.ndarray:
        raw = None if self.classifier or len(X) > MAX_ROWS else self.raw(X)
        return self.estimator.predict(X) if raw is None else self.loss.link.inverse(raw.ravel())


def compile_trees(estimator: Any) -> CompiledTrees | None:
    """`estimator`'s compiled trees when it is a fitted HistGradientBoosting model, else None."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if type(estimator) not in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
        return None
    if not hasattr(estimator, "_predictors"):
        return None
    return CompiledTrees(estimator)
