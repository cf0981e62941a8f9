"""Real data for the per-segment tests: a flights holdout scored by a simple real model."""

from __future__ import annotations

import pandas as pd

from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare
from mlops_pipeline.deployment.segment_metrics import Scored, scored
from mlops_pipeline.spec import load_spec

FLIGHTS = "data/configs/flights.yaml"


def scored_flights_holdout(flights: pd.DataFrame) -> tuple[pd.DataFrame, Scored]:
    """A real holdout (flights, Jan-Mar sample, time split) scored by a simple real model: the
    delay rate of the training rows with the same origin, carrier and hour (smoothed)."""
    spec = load_spec(FLIGHTS)
    frame = prepare(flights[flights["month"].isin([1, 2, 3])].sample(frac=0.3, random_state=0),
                    spec).frame
    train = frame[frame[SPLIT_COLUMN] == "train"]
    hold = frame[frame[SPLIT_COLUMN] == "holdout"].reset_index(drop=True)
    keys = ["origin", "carrier", "hour"]
    prior = train["delayed"].mean()
    rates = train.groupby(keys)["delayed"].agg(["sum", "count"])
    rate = (rates["sum"] + 20 * prior) / (rates["count"] + 20)
    p = hold.join(rate.rename("p"), on=keys)["p"].fillna(prior).to_numpy()
    return hold, scored("classification", hold["delayed"].astype(int), p)
