"""What a client is told when the server refuses a request: a status, a message, and the records
and fields at fault.

Raised anywhere on the request path (parsing, contract checks, scoring, capture, the admin calls)
and turned into a response in one place, the app's error handler (`serving.app`). Nothing here
knows HTTP beyond the status number, so the scoring path raises these without importing FastAPI.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One thing wrong with a request: which record (None: the whole body) and which field."""

    record: int | None
    field: str | None
    error: str
    value: Any = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe whatever the client sent: a non-finite number is echoed as its JSON literal
        (`Infinity`, `NaN`) and a string that is not valid Unicode (a lone surrogate) escaped, so
        the 4xx that names the value can always be encoded."""
        out: dict[str, Any] = {"record": self.record, "field": self.field,
                               "error": _printable(self.error)}
        if self.value is not None:
            out["value"] = _echo(self.value)
        return out


def _printable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _echo(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bool | int | float):
        return value
    return _printable(value if isinstance(value, str) else str(value))


#: Every `kind` a serving process counts in `mlops_errors_total`. Each series is created at zero
#: when the server starts (`ServingMetrics`): Prometheus' `rate()`/`increase()` see no increase in
#: a series whose first sample already holds the errors, so a first burst (a capture failure
#: after a restart, say) would never reach the recording rules or the alerts.
ERROR_KINDS = (
    "validation", "bad_json", "bad_request", "body_too_large", "unsupported_media_type", "unauthorized",
    "forbidden", "not_found", "mismatch", "rollback_refused", "model", "model_input", "capture",
    "not_ready", "internal", "client_disconnect", "shadow", "capture_shadow",
)


class RequestError(Exception):
    """A request the server refuses: HTTP status, a message and the per-field errors.

    `kind` labels the refusal in `mlops_errors_total` (validation, bad_json, model, capture, ...),
    so every refusal, 5xx included, is counted by what went wrong."""

    def __init__(self, status: int, message: str, errors: list[FieldError] | None = None,
                 kind: str = "validation"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.kind = kind

    def body(self) -> dict[str, Any]:
        """The JSON answer: `{"detail": message, "errors": [FieldError.as_dict(), ...]}`."""
        return {"detail": _printable(self.message), "errors": [e.as_dict() for e in self.errors]}


def loads(body: bytes) -> Any:
    """`json.loads`, or the 400 a client gets for a body that is not JSON: not UTF-8, not JSON
    syntax, or nested deeper than the parser's recursion limit."""
    try:
        return json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError included
        raise RequestError(400, f"body is not valid JSON: {exc}", kind="bad_json") from None
    except RecursionError:
        raise RequestError(400, "body is not valid JSON: nested too deeply", kind="bad_json") from None


def finite_object(payload: dict[str, Any]) -> list[FieldError]:
    """The fields of a small JSON object (feedback, admin calls) holding a non-finite number
    (`NaN`, `Infinity`, `1e400`): JSON has no such numbers, so no endpoint stores one."""
    return [FieldError(None, str(k), "must be a finite number", v) for k, v in payload.items()
            if isinstance(v, float) and not math.isfinite(v)]


def read_object(body: bytes, expected: str) -> dict[str, Any]:
    """A small JSON object body (feedback, admin calls), or the 4xx that names what was expected."""
    payload = loads(body)
    if not isinstance(payload, dict):
        raise RequestError(422, "body must be an object", [FieldError(None, None, f"expected {expected}")])
    if errors := finite_object(payload):
        raise RequestError(422, "body has numbers JSON cannot hold", errors)
    return payload
