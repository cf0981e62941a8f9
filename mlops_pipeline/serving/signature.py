"""The serving contract of a model served without a dataset config: its MLflow signature.

`mlops-pipeline serve --model-name NAME` with no `--config` serves a model registered outside the
loop (from a notebook, say). Its signature's inputs become the contract: every named column, its
type (integer and long as int64, float and double as float64, boolean, string, datetime) and
whether it may be null (a float input always, as NaN; any other when `required: false`). The
same checks, capture, metrics, shadow, canary and rollback then apply as to a model of the loop;
a model without a signature (or with unnamed tensor inputs) is refused at start, naming the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandera.pandas as pa

#: MLflow signature type -> the contract's pandas dtype.
DTYPES = {"integer": "int64", "long": "int64", "float": "float64", "double": "float64",
          "boolean": "bool", "string": "str", "datetime": "datetime64[ns]"}


class SignatureError(ValueError):
    """The model's signature cannot serve as a contract."""


@dataclass(frozen=True)
class _Features:
    columns: list[str]


@dataclass(frozen=True)
class _Target:
    name: str = "label"
    expression: str | None = None


@dataclass(frozen=True)
class SignatureSpec:
    """What the server needs of a dataset spec, for a model served by its signature alone: its
    name, feature columns and (for /feedback) a target whose type the model's classes decide."""

    name: str
    columns: list[str]
    task: str = "classification"
    key_columns: list[str] = field(default_factory=list)
    target: _Target = field(default_factory=_Target)
    label_source: str = "label"

    @property
    def features(self) -> _Features:
        return _Features(self.columns)


def schema_from_signature(signature: Any) -> pa.DataFrameSchema:
    """The pandera schema of a signature's named inputs (SignatureError when it has none)."""
    import pandera.pandas as pa

    inputs = None if signature is None else signature.inputs
    if inputs is None or not inputs.has_input_names():
        raise SignatureError(
            "the model has no signature with named input columns to serve as its contract: log it "
            "with one (mlflow.models.infer_signature(X, y), or an input_example), or serve it with "
            "--config naming a dataset config")
    columns: dict[str, pa.Column] = {}
    for spec in inputs.inputs:
        kind = getattr(getattr(spec, "type", None), "name", None)
        if kind not in DTYPES:
            raise SignatureError(f"input {spec.name!r} has type {spec.type}: serving takes "
                                 f"{', '.join(DTYPES)} columns")
        # A float input takes NaN (null in JSON) as MLflow's own enforcement does; any other type
        # is nullable only when the signature says the input is optional (`required: false`).
        nullable = kind in ("float", "double") or not getattr(spec, "required", True)
        columns[str(spec.name)] = pa.Column(DTYPES[kind], nullable=nullable, coerce=True)
    return pa.DataFrameSchema(columns, coerce=True)


def signature_contract(registry: Any, name: str, alias: str, version: str = "") -> tuple[SignatureSpec,
                                                                                      pa.DataFrameSchema]:
    """The spec stand-in and schema of `name`'s version at `alias` (or the pinned `version`),
    read from the registry once at start: later versions are checked against it when they load
    (a version whose signature does not fit fails its warm-up and is never swapped in)."""
    from mlflow.models import get_model_info

    if version:
        mv = registry.client().get_model_version(name, version)
    else:
        mv = registry.version_by_alias(name, alias)
        if mv is None:
            raise SignatureError(f"registered model {name!r} has no version at alias {alias!r}")
    info = get_model_info(f"models:/{name}/{mv.version}")
    schema = schema_from_signature(info.signature)
    outputs = info.signature.outputs
    numeric = outputs is not None and all(
        getattr(getattr(o, "type", None), "name", "") in ("float", "double") for o in outputs.inputs)
    return SignatureSpec(name, list(schema.columns), "regression" if numeric else "classification"), schema
