"""A fitted pipeline compiled for small micro-batches: its columns in numpy, its trees in treelite.

At 16 connections a micro-batch holds ~16 records, and the pipeline's `ColumnTransformer` costs
~2.5 ms per call whatever the rows (column selection, checks and `set_output` wrapping on a pandas
frame): half the model call, a quarter of the server's CPU (docs/benchmarks.md §1f). For the parts
the loop builds (`OrdinalEncoder`, `passthrough`, `DatetimeParts`; `drop`), the compiled path reads
the frame's columns once and builds the same float64 matrix with a dict lookup per category and
numpy casts, then hands it to the pipeline's remaining steps, which are called as `Pipeline` would
(a HistGradientBoosting model's trees through `serving.compiled_trees`).

The fitted encoders stay the definition: each category's code is what the encoder itself returns
for it, asked once at compile time (infrequent categories, missing values and all), so the
compiled path has no second copy of their rules. A value the lookup does not know and the encoder
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


def _ordinal(encoder: Any, columns: list[str]) -> Block | None:
    """Each column's category -> code, as `encoder.transform` gives it."""
    cats = list(encoder.categories_)
    if len(cats) != len(columns) or not len(columns):
        return None
    size = max(len(c) for c in cats)
    # One frame holding every known category of every column (shorter columns padded with their
    # first category), encoded once by the encoder itself.
    probe = pd.DataFrame({col: [c[i % len(c)] for i in range(size)]
                          for col, c in zip(columns, cats, strict=True)}, columns=columns)
    codes = encoder.transform(probe)
    tables: list[dict[Any, float]] = []
    missing_codes: list[float | None] = []
    for j, c in enumerate(cats):
        table = {}
        missing_code = None
        for i, category in enumerate(c):
            if _missing(category):
                missing_code = float(codes[i, j])
            else:
                table[category] = float(codes[i, j])
        if missing_code is None and getattr(encoder, "handle_unknown", "error") == "use_encoded_value":
            # a missing value the encoder never saw is encoded as missing (`encoded_missing_value`)
            missing_code = float(getattr(encoder, "encoded_missing_value", np.nan))
        tables.append(table)
        missing_codes.append(missing_code)
    lenient = getattr(encoder, "handle_unknown", "error") == "use_encoded_value"
    unknown = float(encoder.unknown_value) if lenient else None

    def block(X: pd.DataFrame) -> np.ndarray | None:
        out = np.empty((len(X), len(columns)), dtype=np.float64)
        for j, col in enumerate(columns):
            table, missing_code = tables[j], missing_codes[j]
            for i, value in enumerate(X[col].tolist()):
                code = table.get(value)
                if code is None:
                    if _missing(value):
                        code = missing_code
                    elif unknown is not None:
                        code = unknown
                    if code is None:  # the encoder would raise: let it
                        return None
                out[i, j] = code
        return out

    return block


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
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    from mlops_pipeline.training.model import DatetimeParts

    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        return None
    # "passthrough", which a fitted ColumnTransformer holds as an identity FunctionTransformer
    identity = (type(transformer) is FunctionTransformer and transformer.func is None
                and not transformer.validate)
    if identity or (isinstance(transformer, str) and transformer == "passthrough"):
        return _passthrough(columns)
    if type(transformer) is OrdinalEncoder:
        return _ordinal(transformer, columns)
    if type(transformer) is DatetimeParts:
        return _datetime_parts(transformer, columns)
    return None


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


def compile_model(model: Any, example: pd.DataFrame | None) -> CompiledModel | None:
    """`model`'s compiled form when every part of its first step compiles and the compiled matrix
    equals `transform`'s on `example` (NaNs in the same places); None otherwise (served as it is)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) or len(model.steps) < 2 or example is None or not len(example):
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
    if not blocks:
        return None
    compiled = CompiledModel(model, blocks)
    try:
        expected = first.transform(example)
        ours = compiled.features(example)
    except Exception as exc:  # the pipeline's own path stays; nothing to compile
        log.info("model not compiled: %s", exc)
        return None
    same = (isinstance(expected, np.ndarray) and ours is not None and ours.shape == expected.shape
            and np.array_equal(ours, np.asarray(expected, dtype=np.float64), equal_nan=True))
    if not same:
        log.warning("model not compiled: its features differ from the pipeline's on the input example")
        return None
    method = "predict_proba" if hasattr(model, "predict_proba") else "predict"
    if not np.array_equal(getattr(compiled, method)(example), getattr(model, method)(example),
                          equal_nan=True):
        log.warning("model not compiled: its answers differ from the pipeline's on the input example")
        return None
    return compiled
