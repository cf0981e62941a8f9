"""`segments:` of the dataset spec, its own module beside `spec_sections` (one section, one file):
which groups of rows `deployment.segments` judges on their own, and how."""

from __future__ import annotations

from pydantic import Field, model_validator

from mlops_pipeline.spec_sections import StrictModel


class SegmentsSpec(StrictModel):
    """`segments:` groups of rows judged on their own (`deployment.segments`): a candidate better
    on average but clearly worse for one airport or carrier is blocked, in production the group
    that quietly got worse is named."""

    columns: list[str] = Field(default_factory=list, description="Categorical feature or key "
                               "columns: one segment per value (the `max_values` largest).")
    bins: dict[str, list[float]] = Field(default_factory=dict, description="Numeric columns with "
                                         "ascending bin edges, e.g. `distance: [500, 1000, 2000]`.")
    crossings: list[tuple[str, str]] = Field(default_factory=list, description="Pairs of the "
                                             "columns above crossed, e.g. `[carrier, origin]`.")
    min_rows: int = Field(default=200, ge=1, description="Rows a segment needs before it may "
                          "decide; smaller ones are shown, never block.")
    tolerance: float = Field(default=0.02, ge=0, description="segment_tolerance: the largest "
                             "regression of the first gate metric a segment may show, in its units.")
    resamples: int = Field(default=200, ge=20, le=5000, description="Paired bootstrap resamples.")
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Interval level: a segment "
                              "blocks when the whole interval lies beyond the tolerance.")
    seed: int = Field(default=0, description="Seeds the bootstrap: the same rows, the same verdict.")
    max_values: int = Field(default=50, ge=1, description="Segments per column at most (the "
                            "largest by rows).")

    @model_validator(mode="after")
    def _well_formed(self) -> SegmentsSpec:
        for column, edges in self.bins.items():
            if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise ValueError(f"segments.bins.{column}: edges must be ascending, e.g. [500, 1000]")
        known = {*self.columns, *self.bins}
        for pair in self.crossings:
            unknown = [c for c in pair if c not in known]
            if unknown or pair[0] == pair[1]:
                raise ValueError(f"segments.crossings: {list(pair)} must cross two different columns "
                                 "listed in segments.columns or segments.bins")
        return self

    @property
    def dimensions(self) -> list[str]:
        """Every column a segment is defined on."""
        return list(dict.fromkeys([*self.columns, *self.bins]))

    @property
    def enabled(self) -> bool:
        return bool(self.dimensions)
