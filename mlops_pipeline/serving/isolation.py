"""Who is to blame when scoring raises: the request's values (422, naming the fields) or the model (500).

The scoring path bisects a micro-batch that raises until the request at fault is alone
(`Scorer.process`); this module judges that request. A model that still scores an input it scored
before, but not this request, cannot take this request's values; a model that fails on known-good
input too is broken.
"""

from __future__ import annotations

import logging

import pandas as pd

from mlops_pipeline.serving.errors import FieldError, RequestError
from mlops_pipeline.serving.loader import LoadedModel

log = logging.getLogger(__name__)


class ScoringError(Exception):
    """The model raised on a micro-batch: carries the model and its input for isolation."""

    def __init__(self, model: LoadedModel, X: pd.DataFrame):
        super().__init__(f"model v{model.version} failed to score {len(X)} rows")
        self.model = model
        self.X = X


class Isolation:
    """Known-good input per model version, and the verdict on a request that failed alone.

    `remember` is called by the scoring thread after every successful model call (a reference,
    no copy); `remember_example` with each version's warm-up example, the reference before any
    request has been scored."""

    def __init__(self) -> None:
        self._good: dict[str, pd.DataFrame] = {}
        self._example: pd.DataFrame | None = None

    def remember(self, model: LoadedModel, X: pd.DataFrame) -> None:
        self._good[model.version] = X

    def remember_example(self, example: pd.DataFrame) -> pd.DataFrame:
        self._example = example
        return example

    def failure(self, exc: Exception) -> RequestError:
        """The answer to one request whose processing raised on its own: 422 naming the fields
        whose values the model cannot take, or 500 `model` when the model fails on known-good
        input too. Anything but a model failure (the contract check raising) is a 422."""
        if not isinstance(exc, ScoringError):
            log.warning("request refused, processing it raised %s: %s", type(exc).__name__, exc)
            return RequestError(422, f"request could not be checked against the contract: "
                                f"{type(exc).__name__}", [FieldError(None, None, str(exc)[:300])])
        cause = exc.__cause__ or exc
        reference = self._good.get(exc.model.version, self._example)
        if reference is None or not _scores(exc.model, reference):
            log.error("model v%s failed to score", exc.model.version, exc_info=cause)
            return RequestError(500, f"model failed: {type(cause).__name__}", kind="model")
        fields = blame(exc.model, exc.X, reference)
        log.warning("model v%s cannot score a request (%s: %s); fields %s", exc.model.version,
                    type(cause).__name__, cause, [f.field for f in fields])
        return RequestError(422, f"the model cannot score this request: {type(cause).__name__}",
                            fields or [FieldError(None, None, str(cause)[:300])], kind="model_input")


def _scores(model: LoadedModel, X: pd.DataFrame) -> bool:
    try:
        model.score(X.iloc[:1])
    except Exception:
        return False
    return True


def blame(model: LoadedModel, X: pd.DataFrame, reference: pd.DataFrame) -> list[FieldError]:
    """The columns (and, for a small request, the records) whose values make `model` raise: a
    column is to blame when putting the reference row's value in its place lets the request score.
    Runs only for a request that failed alone: a few model calls on its own rows."""
    out = []
    for col in X.columns:
        trial = X.copy()
        trial[col] = reference[col].iloc[0]
        try:
            model.score(trial)
        except Exception:
            continue
        rows = [None] if len(X) > 32 else [k for k in range(len(X)) if not _scores(model, X.iloc[k:k + 1])]
        out += [FieldError(k, str(col), "the model cannot take this value",
                           None if k is None else X[col].iloc[k]) for k in rows or [None]]
    return out
