"""Training/serving skew: does production send each feature the way training had it?

Drift asks whether the distribution moved; skew asks whether the *representation* did — a number
arriving as text, a datetime that is no longer a string, categories the model never saw. Those
break the model silently (an unseen category is encoded as unknown), so they are checked on their
own against the champion's training data (the `training_serving_skew` check of `prediction_log`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

#: Above this share of values never seen in training, a categorical column is reported.
MAX_UNSEEN_CATEGORY_SHARE = 0.05


def kind_of_values(values: pd.Series) -> str:
    """What JSON gave us for a column: `numeric`, `string`, `empty`, or pandas' inferred kind."""
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "numeric"
    if inferred == "empty":
        return "empty"
    return "string" if inferred == "string" else inferred


def training_serving_skew(
    production: pd.DataFrame, training: pd.DataFrame, spec: Any
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per feature of `spec`: one row (column, training dtype, production kind, unseen share), and
    the problems found — a missing column, a kind training did not have, or more than
    `MAX_UNSEEN_CATEGORY_SHARE` unseen categories. No problem means no skew."""
    rows, problems = [], []
    for col in spec.features.columns:
        if col not in production.columns:
            rows.append({"column": col, "training": str(training[col].dtype), "production": "missing",
                         "unseen_share": 0.0})
            problems.append(f"column '{col}' is missing from production inputs")
            continue
        got = kind_of_values(production[col])
        if col in spec.features.datetime_parts:
            ok = got in ("string", "empty", "datetime", "datetime64")
        elif pd.api.types.is_numeric_dtype(training[col]):
            ok = got in ("numeric", "empty")
        else:
            ok = got in ("string", "empty")
        unseen = 0.0
        if col in spec.features.categorical and got == "string":
            known = set(training[col].dropna().astype(str))
            values = production[col].dropna().astype(str)
            unseen = float((~values.isin(known)).mean()) if len(values) else 0.0
            if unseen > MAX_UNSEEN_CATEGORY_SHARE:
                problems.append(f"column '{col}': {unseen:.1%} of values never seen in training")
        if not ok:
            problems.append(f"column '{col}' arrives as {got}, trained as {training[col].dtype}")
        rows.append({"column": col, "training": str(training[col].dtype), "production": got,
                     "unseen_share": unseen})
    return rows, problems
