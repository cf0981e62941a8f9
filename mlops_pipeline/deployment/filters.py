"""MLflow search filters built from values that may come from a user: every value quoted here.

MLflow's filter strings (`search_runs(filter_string=...)`, `search_model_versions(...)`) are SQL-ish
text, and MLflow strips a value's surrounding quotes without unescaping anything inside. A value
interpolated as `f"name = '{value}'"` can therefore close its quote and add a clause
(`x' or name LIKE '%`). `quote` writes a value as one string literal, or refuses it
(`FilterValueError`, a one-line message) when no literal MLflow reads back unchanged can hold it.
"""

from __future__ import annotations

import re

#: Control characters and backslashes: MLflow's tokenizer reads `\\'` as an escaped quote, and
#: MLflow never unescapes, so neither can be written inside a literal that reads back unchanged.
_UNQUOTABLE = re.compile(r"[\\\x00-\x1f\x7f]")
#: Keys (`name`, `tags.kind`, ``tags.`dagster.run_id` ``): plain identifiers, dotted, backticked.
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z0-9_]+|`[A-Za-z0-9_.\-]+`))*")


class FilterValueError(ValueError):
    """A value that cannot be placed in an MLflow filter string as one literal."""


def quote(value: object) -> str:
    """`value` as one MLflow string literal: single-quoted, or double-quoted when it holds a single
    quote. Refused (FilterValueError) when it holds both quote kinds, a backslash or a control
    character, or is empty."""
    text = str(value)
    if not text:
        raise FilterValueError("an empty value cannot be searched for")
    if _UNQUOTABLE.search(text):
        raise FilterValueError(f"{text!r} holds a backslash or control character: not searchable")
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise FilterValueError(f"{text!r} holds both quote characters: not searchable")


def equals(key: str, value: object) -> str:
    """`key = <value quoted>`; the key must be a plain (dotted, backticked) identifier."""
    if not _KEY.fullmatch(key):
        raise FilterValueError(f"{key!r} is not a filter key")
    return f"{key} = {quote(value)}"


def all_of(*clauses: str) -> str:
    """Clauses joined with `and` (MLflow's filters have no `or`)."""
    return " and ".join(clauses)
