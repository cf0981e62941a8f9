"""Pydantic validation errors as one line a user can act on: `<field>: <problem> — <fix>`.

`load_spec` prefixes the file name and raises `spec.ConfigError` with it, so the CLI prints one
line before landing or launching anything. Hints come from the fields' own descriptions; the
models are passed in (`root`), so this module knows no spec class.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError


def _field(root: type[BaseModel], loc: tuple) -> Any:
    """The pydantic FieldInfo at `loc` (None when `loc` does not name a declared field)."""
    owner = _owner(root, loc[:-1])
    return owner.model_fields.get(loc[-1]) if owner is not None and loc else None


def _owner(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class that declares the fields under `loc` (None past a non-model field)."""
    model: Any = root
    for part in loc:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        inner = info.annotation if info is not None else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model


_UNION_TAG = re.compile(r"^(bool|int|float|str|none|list\[.*\]|dict\[.*\])$")


def _untagged(root: type[BaseModel], error: Any) -> dict:
    """A union's per-member errors (loc `...x.bool`, `...x.int`) become one 'wrong type' error."""
    loc = tuple(error.get("loc", ()))
    if loc and isinstance(loc[-1], str) and _UNION_TAG.match(loc[-1]) and _field(root, loc) is None:
        return {"loc": loc[:-1], "type": "union", "input": error.get("input"),
                "msg": "has the wrong type — use a number, string, true/false or null"}
    return dict(error)


def _describe(root: type[BaseModel], error: dict) -> str:
    """One pydantic error as `field: problem — fix`."""
    loc = tuple(error.get("loc", ()))
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "missing":
        info = _field(root, loc)
        hint = (info.description or "").split(";")[0].rstrip(".") if info is not None else ""
        hint = hint[:1].lower() + hint[1:] if hint else "add it"
        return f"{where}: required — {hint}"
    if kind == "extra_forbidden":
        owner = _owner(root, loc[:-1])
        allowed = ", ".join(owner.model_fields) if owner is not None else ""
        return f"{where}: unknown key — " + (f"allowed here: {allowed}" if allowed else "remove it")
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"{where}: {error.get('input')!r} is not allowed — use one of {expected}"
    if kind == "value_error":
        msg = str(ctx.get("error", error.get("msg", "")))
        return f"{where}: {msg}" if where else msg
    msg = str(error.get("msg", "invalid")).removeprefix("Input should").rstrip(".")
    msg = f"should{msg}" if msg != error.get("msg") else msg
    return f"{where}: {msg} (got {error.get('input')!r})"


def validation_message(exc: ValidationError, root: type[BaseModel], limit: int = 3) -> str:
    """The first `limit` distinct problems of `exc` (validating `root`), joined on one line, and
    how many more there are."""
    problems = list(dict.fromkeys(_describe(root, _untagged(root, e)) for e in exc.errors()))
    more = f" (and {len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more
