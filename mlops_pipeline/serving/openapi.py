"""The request bodies the OpenAPI declares, derived from the data contract.

A schema-driven client or fuzzer (the serving fuzz test is one) builds requests from
`/openapi.json`, so the /predict body is declared exactly as the server checks it: each feature's
JSON type, null where the contract allows it, and the contract's bounds and allowed values — the
schema's checks, narrowed by the domain's ranges and categories where its policy is `reject` (a
`flag` column takes any value of its type).
"""

from __future__ import annotations

import math
from typing import Any

from mlops_pipeline.data.domain import RecordRule
from mlops_pipeline.serving.inputs import RecordChecker

#: The /feedback body: a request id the server answered, and its label.
FEEDBACK_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["request_id", "label"],
    "properties": {"request_id": {"type": "string", "minLength": 1},
                   "label": {"type": ["number", "string", "boolean"]}},
}

_JSON_TYPES: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"}, "float": {"type": "number"}, "bool": {"type": "boolean"},
    "str": {"type": "string"}, "datetime": {"type": "string", "format": "date-time"},
}


def predict_schema(checker: RecordChecker, max_records: int) -> dict[str, Any]:
    """The JSON schema of a /predict body: `{"records": [...], "key": ...}` or a bare list of
    records, each record's fields typed and bounded from the contract (key fields optional)."""
    props = {}
    rejected = {r.column: r for r in checker.domain.rules if r.policy == "reject"}
    for col, kind, nullable in checker.fields:
        prop: dict[str, Any] = dict(_JSON_TYPES.get(kind, {}))
        for check in checker.schema.columns[col].checks:
            prop.update(_json_bounds(check.name, check.statistics or {}))
        if col in rejected:
            _narrow(prop, rejected[col], integer=kind == "int")
        if nullable and "type" in prop:
            prop["type"] = [prop["type"], "null"]
            if "enum" in prop:
                prop["enum"] = [*prop["enum"], None]
        props[col] = prop
    for col in checker.keep:
        props.setdefault(col, {})
    record = {"type": "object", "required": list(checker.columns), "properties": props}
    records = {"type": "array", "items": record, "minItems": 1, "maxItems": max_records}
    return {
        "anyOf": [
            {"type": "object", "required": ["records"],
             "properties": {"records": records, "key": {"type": ["string", "integer", "null"]}}},
            records,
        ],
    }


def _json_bounds(name: str, stats: dict[str, Any]) -> dict[str, Any]:
    """A pandera check as JSON-schema keywords (the ones a schema can say; others are omitted)."""
    low, high = stats.get("min_value"), stats.get("max_value")
    if name == "in_range":
        return {("minimum" if stats.get("include_min", True) else "exclusiveMinimum"): low,
                ("maximum" if stats.get("include_max", True) else "exclusiveMaximum"): high}
    if name == "greater_than":
        return {"exclusiveMinimum": low}
    if name == "greater_than_or_equal_to":
        return {"minimum": low}
    if name == "less_than":
        return {"exclusiveMaximum": high}
    if name == "less_than_or_equal_to":
        return {"maximum": high}
    if name == "isin" and isinstance(stats.get("allowed_values"), list | tuple | set | frozenset):
        return {"enum": sorted(stats["allowed_values"], key=str)}
    return {}


def _narrow(prop: dict[str, Any], rule: RecordRule, integer: bool) -> None:
    """Tighten `prop` to the domain rule `rule` (whichever bound is stricter wins)."""
    if rule.allowed is not None:
        allowed = sorted(rule.allowed)
        prop["enum"] = [v for v in prop["enum"] if str(v) in rule.allowed] if "enum" in prop else allowed
        return
    low, high = (math.ceil(rule.low), math.floor(rule.high)) if integer else (rule.low, rule.high)
    if all(prop.get(k) is None or low > prop[k] for k in ("minimum", "exclusiveMinimum")):
        prop.pop("exclusiveMinimum", None)
        prop["minimum"] = low
    if all(prop.get(k) is None or high < prop[k] for k in ("maximum", "exclusiveMaximum")):
        prop.pop("exclusiveMaximum", None)
        prop["maximum"] = high


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI `requestBody` for a JSON body of `schema` (FastAPI `openapi_extra`)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
