"""What the CI gate trains on: a small, seeded sample, so that CI needs no landed data for flights and
two runs of the gate on the same plan see the same rows.

For the flights dataset, by default, a seeded sample of the bundled months (`--months`,
`--sample`); for any other dataset (or with `--sample-rows`), a seeded sample of the configured
dataset's landed batches, batch by batch. A baseline records its plan: two plans compare only if
equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG, DatasetSpec

DEFAULT_MONTHS = [1, 2, 3]
DEFAULT_SAMPLE = 0.12
SAMPLE_SEED = 0


class GateSetupError(RuntimeError):
    """The gate cannot start (no data, registry required but absent): exit 2, before training."""


@dataclass(frozen=True)
class SamplePlan:
    """Where the gate's rows come from, as recorded in a baseline (two plans compare only if equal)."""

    bundled_flights: bool
    months: list[int]
    fraction: float | None
    rows: int | None
    source_glob: str = ""

    def record(self) -> dict[str, Any]:
        """The plan as a baseline stores it."""
        if self.bundled_flights:
            return {"months": self.months, "fraction": self.fraction, "seed": SAMPLE_SEED}
        return {"source": "landed", "rows": self.rows, "fraction": self.fraction, "seed": SAMPLE_SEED}

    def describe(self) -> str:
        """One line for the gate's first output line."""
        if self.bundled_flights:
            return (f"months {self.months} of the bundled flights, sample {self.fraction:g} "
                    f"(seed {SAMPLE_SEED})")
        size = (f"{self.rows} rows" if self.rows else f"fraction {self.fraction:g}" if self.fraction
                else "every row")
        return f"{size} of the landed batches {self.source_glob} (seed {SAMPLE_SEED})"

    def cli_args(self) -> str:
        """The `gate` options that give this plan again."""
        if self.bundled_flights:
            return f"--months {' '.join(map(str, self.months))} --sample {self.fraction:g}"
        return (f"--sample-rows {self.rows}" if self.rows else f"--sample {self.fraction:g}" if self.fraction
                else "")

    @property
    def is_default(self) -> bool:
        """The plan `gate` uses without sample options (so its refresh hint needs none)."""
        return self.bundled_flights and self.months == DEFAULT_MONTHS and self.fraction == DEFAULT_SAMPLE


def plan_sample(spec: DatasetSpec, user_root: Path, months: list[int], fraction: float | None,
                rows: int | None) -> SamplePlan:
    """Bundled flights months for the flights dataset (unless `rows`); the landed data under
    `user_root` (the user's data dir, only read) otherwise."""
    from mlops_pipeline.spec import load_spec

    flights_glob = load_spec(DEFAULT_DATASET_CONFIG).landing_glob(user_root)
    is_flights = spec.landing_glob(user_root) == flights_glob
    months = sorted(set(months))
    if is_flights and rows is None:
        return SamplePlan(True, months, DEFAULT_SAMPLE if fraction is None else fraction, None)
    return SamplePlan(False, months, fraction, rows, spec.landing_glob(user_root))


def refresh_hint(config_arg: str | None, plan: SamplePlan) -> str:
    """The command that records a baseline for this config and plan."""
    config = f" --config {config_arg}" if config_arg else ""
    sample = f" {plan.cli_args()}" if plan.cli_args() and not plan.is_default else ""
    return f"uv run mlops-pipeline gate{config}{sample} --write-baseline"


def land_sample(plan: SamplePlan, spec: DatasetSpec, landing: Path) -> None:
    """Land the plan's rows into `landing` unless something is already there (a kept `--data-dir`)."""
    from mlops_pipeline.data.landing import land_months

    if any(landing.glob("*")):
        return
    if plan.bundled_flights:
        land_months(landing, plan.months, plan.fraction, seed=SAMPLE_SEED)
    else:
        sample_landed(plan, spec, landing)


def sample_landed(plan: SamplePlan, spec: DatasetSpec, landing: Path) -> list[Path]:
    """Copy a seeded sample of every landed batch into `landing` (same file names and format).

    `rows` is split across batches in proportion to their size, so the newest batch (what drift
    compares) and the per-batch checks keep their meaning. Nothing to sample: the files are copied.
    """
    import glob
    import shutil

    import pandas as pd

    files = sorted(glob.glob(plan.source_glob))
    if not files:
        raise GateSetupError(
            f"no data landed for dataset {spec.name!r}: nothing matches {plan.source_glob}; land it first "
            f"(`uv run mlops-pipeline land --from FILE --config CONFIG`)")
    landing.mkdir(parents=True, exist_ok=True)
    if not plan.rows and not plan.fraction:
        for f in files:
            shutil.copyfile(f, landing / Path(f).name)
        return [landing / Path(f).name for f in files]
    read = pd.read_parquet if spec.source.format == "parquet" else pd.read_csv
    frames = {f: read(f) for f in files}
    total = sum(len(df) for df in frames.values())
    written = []
    for f, df in frames.items():
        n = round(plan.rows * len(df) / total) if plan.rows else round(plan.fraction * len(df))
        part = df.sample(n=min(max(n, 1), len(df)), random_state=SAMPLE_SEED).sort_index()
        out = landing / Path(f).name
        if spec.source.format == "parquet":
            part.to_parquet(out, index=False)
        else:
            part.to_csv(out, index=False)
        written.append(out)
    return written
