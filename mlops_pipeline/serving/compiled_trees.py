"""A HistGradientBoosting model's trees walked by treelite for small micro-batches: same answers.

scikit-learn calls each tree's predictor from Python, ~11 us per tree whatever the rows: 2.3 ms
for the default model's 200 trees on one record (docs/benchmarks.md §1f). Treelite (DMLC's
library for tree ensembles, which imports scikit-learn's HistGradientBoosting models) walks every
tree in one native call: ~0.3 ms for 16 records. It gives each tree's leaf value, and they are
summed in scikit-learn's order (the baseline, then tree by tree) and passed through the model's
own link function, so the answers are bit-identical to `predict_proba`/`predict`, not merely
close (`serving/test_compiled.py` shows it over random models and inputs).

Treelite's walk costs more per row than scikit-learn's, so above `MAX_ROWS` rows (a full
micro-batch at 64 connections and more) scikit-learn's own call is used. The trees split on
scikit-learn's internal codes of the categorical features (its `OrdinalEncoder` over them, placed
first), so treelite is given those codes, computed by a sorted lookup in the encoder's categories
(NaN for a missing or unseen value: missing to the trees), checked against scikit-learn's own
encoding when compiled.
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
        import copy

        import treelite

        self.estimator = estimator
        # The trees as scikit-learn's own predictors walk them: over its internal codes of the
        # categorical features (`_input` computes them), not remapped to the raw categories.
        trees = copy.copy(estimator)
        trees._preprocessor = None
        self.model = treelite.sklearn.import_model(trees)
        self.classes = len(estimator._predictors[0])
        self.baseline = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(-1)
        self.loss = estimator._loss
        self.classifier = hasattr(estimator, "classes_")
        # scikit-learn encodes categorical features itself before its trees (`_preprocessor`: an
        # OrdinalEncoder over them, placed first, the other features after), and the trees split
        # on those codes; treelite reads the trees as they are, so it is given the same codes.
        preprocessor = getattr(estimator, "_preprocessor", None)
        self.categorical: list[int] = []
        self.numerical: list[int] = []
        self.categories: list[np.ndarray] = []
        if preprocessor is not None:
            mask = np.asarray(estimator.is_categorical_, dtype=bool)
            self.categorical = [int(j) for j in np.flatnonzero(mask)]
            self.numerical = [int(j) for j in np.flatnonzero(~mask)]
            encoder = preprocessor.named_transformers_["encoder"]
            self.categories = [np.asarray(c, dtype=np.float64) for c in encoder.categories_]
            self.categories = [c[~np.isnan(c)] for c in self.categories]
        self.preprocessor = preprocessor

    def _input(self, X: np.ndarray) -> np.ndarray:
        """`X` as the trees read it: each categorical feature as its position among the
        encoder's categories (NaN for missing or unseen: missing to the trees), placed first."""
        X = np.asarray(X, dtype=np.float64)
        if self.preprocessor is None:
            return np.ascontiguousarray(X)
        out = np.empty(X.shape, dtype=np.float64)
        for k, (j, categories) in enumerate(zip(self.categorical, self.categories, strict=True)):
            values = X[:, j]
            position = np.searchsorted(categories, values)
            found = position < len(categories)
            found[found] = categories[position[found]] == values[found]
            out[:, k] = np.where(found, position, np.nan)
        out[:, len(self.categorical):] = X[:, self.numerical]
        return out

    def matches_its_preprocessor(self) -> bool:
        """Whether `_input` equals scikit-learn's own encoding on every category of every
        categorical feature, missing values and values it never saw."""
        if self.preprocessor is None:
            return True
        odd = [np.nan, -1.0, 0.5, 2.5, 255.0, 256.0, 1e6]
        cases = [np.concatenate([c, odd]) for c in self.categories]
        n = max(len(c) for c in cases)
        probe = np.zeros((n, len(self.categorical) + len(self.numerical)))
        for j, c in zip(self.categorical, cases, strict=True):
            probe[:, j] = np.resize(c, n)
        expected = np.asarray(self.preprocessor.transform(probe), dtype=np.float64)
        return bool(np.array_equal(self._input(probe), expected, equal_nan=True))

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The model's raw predictions (n, classes), summed as scikit-learn sums them."""
        from treelite import gtil

        Xc = self._input(X)
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
    compiled = CompiledTrees(estimator)
    return compiled if compiled.matches_its_preprocessor() else None
