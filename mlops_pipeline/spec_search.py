"""`model.search:` of a dataset spec (a section of `spec_sections.ModelSpec`): the Optuna search
space, checked at config load. Frozen, unknown keys refused, like every spec section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SearchDimension(BaseModel):
    """One `model.search.space` entry: the range or choices Optuna draws a parameter from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["int", "float", "categorical"] = Field(description="int, float or categorical.")
    low: float | None = Field(default=None, description="Lower bound (int, float).")
    high: float | None = Field(default=None, description="Upper bound, inclusive (int, float).")
    log: bool = Field(default=False, description="Draw on a log scale (int, float).")
    choices: list[bool | int | float | str | None] | None = Field(
        default=None, description="The values to choose from (categorical).")

    @model_validator(mode="after")
    def _bounds_or_choices(self) -> SearchDimension:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("model.search.space: a categorical parameter needs `choices: [...]`")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"model.search.space: an {self.type} parameter needs `low` <= `high`")
        elif self.log and self.low <= 0:
            raise ValueError("model.search.space: `log: true` needs `low` > 0")
        return self


class SearchSpec(BaseModel):
    """`model.search:` a seeded Optuna search of `model.params` (`training.search`), judged by the
    first gate metric on a validation split carved from the train split by content hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trials: int = Field(default=20, ge=1, description="Trials this process runs.")
    timeout: float | None = Field(default=None, gt=0, description="Seconds the search may take.")
    space: dict[str, SearchDimension] = Field(
        description="Parameter -> `{type: int|float|categorical, low, high, log, choices}`.")
    validation_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="Share of the train split the trials are scored on.")

    @model_validator(mode="after")
    def _not_empty(self) -> SearchSpec:
        if not self.space:
            raise ValueError("model.search.space: name at least one parameter to search")
        return self
