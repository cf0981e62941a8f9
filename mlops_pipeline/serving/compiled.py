"""A fitted pipeline compiled for small micro-batches: its columns in numpy, its trees in treelite.

At 16 connections a micro-batch holds ~16 records, and the pipeline's `ColumnTransformer` costs
~2.5 ms per call whatever the rows (column selection, checks and `set_output` wrapping on a pandas
frame): half the model call, a quarter of the server's CPU (docs/benchmarks.md §1f). For the parts
the loop builds (`OrdinalEncoder` and dense `OneHotEncoder`, `passthrough`, `DatetimeParts`,
`SimpleImputer` with its missing-value indicators and `StandardScaler`, alone or in a `Pipeline`;
`drop`), the compiled path reads the frame's columns once and builds the same float64 matrix with
a dict lookup per category and the same numpy operations as each step's `transform`, then hands
it to the pipeline's remaining steps, which are called as `Pipeline` would (a HistGradientBoosting
model's trees through `serving.compiled_trees`).

The fitted encoders stay the definition: each category's output row is what the encoder itself
returns for it, asked once at compile time (infrequent categories, missing and unseen values and
all), so the compiled path has no second copy of their rules. A value the lookup does not know and the encoder
would refuse (`handle_unknown="error"`) sends the call through the pipeline itself, which raises
as before. `compile_model` returns None for anything else (other transformers, a `set_output`
frame, a model that is not a `Pipeline`), and for a pipeline whose compiled matrix differs from
`transform`'s, or whose answers differ from the pipeline's by a bit, on the example it is checked
on: such a model is served by the pipeline, unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: Builds one block of the matrix from the frame; None when this frame must go through the pipeline.
Block = Callable[[pd.DataFrame], np.ndarray | None]


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _passthrough(columns: list[str]) -> Block:
    def block(X: pd.DataFrame) -> np.ndarray | None:
        out = np.empty((len(X), len(columns)), dtype=np.float64)
        for j, col in enumerate(columns):
            values = X[col].to_numpy()
            if values.dtype.kind not in "biuf":  # objects, strings, timestamps: the pipeline decides
                return None
            out[:, j] = values
        return out

    return block


def _asked(encoder: Any, columns: list[str], cats: list[Any], j: int, value: Any) -> np.ndarray | None:
    """The encoder's output for one row holding `value` in column `j` (each other column its first
    category); None if the encoder refuses it."""
    import warnings

    row = {c: [value if k == j else cats[k][0]] for k, c in enumerate(columns)}
    try:
        with warnings.catch_warnings():  # `handle_unknown="warn"` says so for the unseen value
            warnings.simplefilter("ignore")
            return np.asarray(encoder.transform(pd.DataFrame(row, columns=columns)), dtype=np.float64)[0]
    except Exception:  # handle_unknown="error": such a value goes through the pipeline, which raises
        return None


def _encoder(encoder: Any, columns: list[str], widths: list[int]) -> Block | None:
    """An encoder as a table per column: category -> its row of the encoder's output (`widths[j]`
    columns for input column j), plus the rows of a missing and of an unseen value. Every row is
    what `encoder.transform` returns for it, asked once here."""
    cats = list(encoder.categories_)
    if len(cats) != len(columns) or len(widths) != len(columns) or not columns:
        return None
    size = max(len(c) for c in cats)
    # One frame holding every known category of every column (shorter columns padded with their
    # first category), encoded once by the encoder itself.
    probe = pd.DataFrame({col: [c[i % len(c)] for i in range(size)]
                          for col, c in zip(columns, cats, strict=True)}, columns=columns)
    out = np.asarray(encoder.transform(probe), dtype=np.float64)
    offsets = np.cumsum([0, *widths])
    tables, rows = [], []
    for j, c in enumerate(cats):
        block = out[:, offsets[j]:offsets[j + 1]]
        numeric = np.asarray(c).dtype.kind in "biuf"
        known = [v for v in c if not _missing(v)]
        missing = _asked(encoder, columns, cats, j, None)
        sentinel = (max(known) + 1.5 if known else 0.5) if numeric else "\x00unseen"
        unseen = _asked(encoder, columns, cats, j, sentinel)
        table = {v: i for i, v in enumerate(c) if not _missing(v)}
        absent = np.full(block.shape[1], np.nan)
        # rows: the categories, then a missing value's, then an unseen one's (NaN: refused)
        matrix = np.vstack([block[:len(c)],
                            missing[offsets[j]:offsets[j + 1]] if missing is not None else absent,
                            unseen[offsets[j]:offsets[j + 1]] if unseen is not None else absent])
        tables.append((table, len(c), missing is not None, unseen is not None))
        rows.append(matrix)

    def encode(X: pd.DataFrame) -> np.ndarray | None:
        result = np.empty((len(X), int(offsets[-1])), dtype=np.float64)
        for j, col in enumerate(columns):
            table, n, has_missing, has_unseen = tables[j]
            index = np.empty(len(X), dtype=np.intp)
            for i, value in enumerate(X[col].tolist()):
                k = table.get(value)
                if k is None:
                    if _missing(value):
                        if not has_missing:
                            return None
                        k = n
                    elif has_unseen:
                        k = n + 1
                    else:  # the encoder would raise: let it
                        return None
                index[i] = k
            result[:, offsets[j]:offsets[j + 1]] = rows[j][index]
        return result

    return encode


def _datetime_parts(step: Any, columns: list[str]) -> Block:
    parts = list(step.parts)

    def block(X: pd.DataFrame) -> np.ndarray | None:
        out = []
        for col in step.columns_:
            values = X[col].to_numpy()
            times = values if values.dtype.kind == "M" else pd.to_datetime(X[col])
            index = pd.DatetimeIndex(times)
            out.extend(np.asarray(getattr(index, part), dtype=np.float64) for part in parts)
        return np.column_stack(out)

    return block


def _block(transformer: Any, columns: Any) -> Block | None:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder

    from mlops_pipeline.training.model import DatetimeParts

    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        return None
    # "passthrough", which a fitted ColumnTransformer holds as an identity FunctionTransformer
    identity = (type(transformer) is FunctionTransformer and transformer.func is None
                and not transformer.validate)
    if identity or (isinstance(transformer, str) and transformer == "passthrough"):
        return _passthrough(columns)
    if type(transformer) is OrdinalEncoder:
        return _encoder(transformer, columns, [1] * len(columns))
    if type(transformer) is OneHotEncoder and not transformer.sparse_output:
        widths = getattr(transformer, "_n_features_outs", None)  # each input column's output width
        return None if widths is None else _encoder(transformer, columns, list(widths))
    if type(transformer) is DatetimeParts:
        return _datetime_parts(transformer, columns)
    if type(transformer) is Pipeline:
        return _pipeline(transformer, columns)
    return None


def _array_step(step: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """A fitted numeric step as a function of a float64 matrix: the same operations as its
    `transform`, so the same bits."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    if type(step) is StandardScaler:
        mean, scale = step.mean_ if step.with_mean else None, step.scale_ if step.with_std else None

        def standardize(X: np.ndarray) -> np.ndarray:
            X = np.array(X, dtype=np.float64)
            if mean is not None:
                X -= mean
            if scale is not None:
                X /= scale
            return X

        return standardize
    if type(step) is SimpleImputer:
        statistics = np.asarray(step.statistics_, dtype=np.float64)
        indicator = step.indicator_
        nan_marker = isinstance(step.missing_values, float) and np.isnan(step.missing_values)
        if not nan_marker or np.isnan(statistics).any() or (
                indicator is not None and indicator.features != "missing-only"):
            return None  # another marker, or a column empty in training (dropped): the pipeline's
        flagged = None if indicator is None else indicator.features_

        def impute(X: np.ndarray) -> np.ndarray:
            mask = np.isnan(X)
            out = np.where(mask, statistics, X)
            return out if flagged is None else np.hstack([out, mask[:, flagged]])

        return impute
    return None


def _pipeline(pipeline: Any, columns: list[str]) -> Block | None:
    """A pipeline inside the ColumnTransformer: timestamp parts or the numbers as read, then
    imputation and scaling (`_array_step`)."""
    from mlops_pipeline.training.model import DatetimeParts

    steps = [step for _, step in pipeline.steps if step not in (None, "passthrough")]
    if steps and type(steps[0]) is DatetimeParts:
        head: Block = _datetime_parts(steps[0], columns)
        steps = steps[1:]
    else:
        head = _passthrough(columns)
    functions = [_array_step(step) for step in steps]
    if any(f is None for f in functions):
        return None

    def block(X: pd.DataFrame) -> np.ndarray | None:
        values = head(X)
        if values is None:
            return None
        for f in functions:
            values = f(values)  # type: ignore[misc]
        return values

    return block


class CompiledModel:
    """`predict`/`predict_proba` of a fitted `Pipeline([ColumnTransformer, ..., estimator])`, its
    first step compiled (`compile_model`). Any frame a block cannot take goes through `pipeline`."""

    def __init__(self, pipeline: Any, blocks: list[Block]):
        self.pipeline = pipeline
        self.blocks = blocks
        self.steps = [step for _, step in pipeline.steps[1:-1] if step not in (None, "passthrough")]
        from mlops_pipeline.serving.compiled_trees import compile_trees

        estimator = pipeline.steps[-1][1]
        # the trees of the default model walked natively on small micro-batches (compiled_trees)
        self.estimator = (compile_trees(estimator) if not self.steps else None) or estimator

    def features(self, X: pd.DataFrame) -> np.ndarray | None:
        """The first step's output for `X`, or None when a column needs the pipeline's own handling."""
        parts = []
        for block in self.blocks:
            part = block(X)
            if part is None:
                return None
            parts.append(part)
        return np.hstack(parts) if len(parts) > 1 else parts[0]

    def _rest(self, X: pd.DataFrame) -> Any:
        Xt = self.features(X)
        if Xt is None:
            return None
        for step in self.steps:
            Xt = step.transform(Xt)
        return Xt

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        Xt = self._rest(X)
        return self.pipeline.predict_proba(X) if Xt is None else self.estimator.predict_proba(Xt)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        Xt = self._rest(X)
        return self.pipeline.predict(X) if Xt is None else self.estimator.predict(Xt)


def _build(model: Any) -> CompiledModel | None:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) or len(model.steps) < 2:
        return None
    first = model.steps[0][1]
    if type(first) is not ColumnTransformer:
        return None
    blocks: list[Block] = []
    for _name, transformer, columns in first.transformers_:
        dropped = isinstance(transformer, str) and transformer == "drop"
        if dropped or (isinstance(columns, list) and not columns):
            continue
        block = _block(transformer, columns)
        if block is None:
            return None
        blocks.append(block)
    return CompiledModel(model, blocks) if blocks else None


def compile_model(model: Any, example: pd.DataFrame | None) -> CompiledModel | None:
    """`model`'s compiled form when every part of its first step compiles, and its matrix and
    answers on `example` are the pipeline's bit for bit; None otherwise (served as it is). Never
    raises: a model that cannot be compiled is still served, by its pipeline."""
    if example is None or not len(example):
        return None
    try:
        compiled = _build(model)
        if compiled is None:
            return None
        expected = model.steps[0][1].transform(example)
        ours = compiled.features(example)
        same = (isinstance(expected, np.ndarray) and ours is not None and ours.shape == expected.shape
                and np.array_equal(ours, np.asarray(expected, dtype=np.float64), equal_nan=True))
        method = "predict_proba" if hasattr(model, "predict_proba") else "predict"
        if same:
            same = np.array_equal(getattr(compiled, method)(example), getattr(model, method)(example),
                                  equal_nan=True)
    except Exception as exc:  # the pipeline's own path stays
        log.warning("model not compiled: %s: %s", type(exc).__name__, exc)
        return None
    if not same:
        log.warning("model not compiled: it differs from the pipeline on the input example")
        return None
    return compiled
