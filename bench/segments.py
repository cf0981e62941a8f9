"""The gate per segment on a large holdout: what ~120 segments add to the gate's time.

The flights year is prepared, a champion and a candidate fitted (two seeds, `--fit-rows` train
rows each), and the holdout copied `--copies` times (100: ~6.5M rows, the 100x loop's holdout).
The gate without segments is what `model_version` does: both models score the holdout
(`deployment.scoring.score_model_rows`: contract coercion, predict, metrics). With segments, the
same answers are then judged per segment (`deployment.segments.gate_segments`: carrier, origin,
destination and five distance bands, ~120 segments, 200 paired resamples each) — no model call.
Goal: the segments add at most 20% to the gate's time, both measured in the same run.

    uv run python bench/segments.py --no-wait [--copies 100] [--smoke]

`--smoke` (CI): an 8,000-row sample, 2 copies of its holdout, models of 20 rounds fitted on
2,000 rows.
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import REPO, SMOKE_HELP, goal, smoke, table, wait_quiet

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--no-wait", action="store_true", help="measure even if pytest is running")
    parser.add_argument("--sample-rows", type=int, default=0, help="a seeded sample of the year (0: all)")
    parser.add_argument("--fit-rows", type=int, default=50_000)
    parser.add_argument("--max-iter", type=int, default=0, help="boosting rounds (0: the config's)")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = smoke(parser.parse_args(), copies=2, sample_rows=8_000, fit_rows=2_000, max_iter=20)
    wait_quiet(skip=args.no_wait)

    import pandas as pd

    from mlops_pipeline.data.landing import load_flights_with_weather
    from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare, xy
    from mlops_pipeline.deployment.scoring import score_model_rows
    from mlops_pipeline.deployment.segments import gate_segments
    from mlops_pipeline.spec import load_spec
    from mlops_pipeline.training.model import build_pipeline

    spec = load_spec(REPO / "data/configs/flights.yaml")
    segments = spec.segments.model_copy(update={"columns": ["carrier", "origin", "dest"],
                                                "max_values": 100})
    spec = spec.model_copy(update={"segments": segments})
    if args.max_iter:
        params = {**spec.model.params, "max_iter": args.max_iter}
        spec = spec.model_copy(update={"model": spec.model.model_copy(update={"params": params})})
    year = load_flights_with_weather()
    if args.sample_rows:
        year = year.sample(n=args.sample_rows, random_state=0)
    frame = prepare(year, spec).frame
    X, y = xy(frame, spec, "train")
    models = [build_pipeline(spec, seed=seed).fit(X.sample(n=min(args.fit_rows, len(X)), random_state=seed),
                                                  y.sample(n=min(args.fit_rows, len(y)), random_state=seed))
              for seed in (0, 1)]
    holdout = frame[frame[SPLIT_COLUMN] == "holdout"]
    holdout = pd.concat([holdout] * args.copies, ignore_index=True)
    del frame, X, y, year

    started = time.perf_counter()
    (_, champion), (metrics, candidate) = (score_model_rows(m, holdout, spec) for m in models)
    gate_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = gate_segments(holdout, candidate, champion, spec)
    segment_seconds = time.perf_counter() - started

    ratio = segment_seconds / gate_seconds
    print(f"holdout rows: {len(holdout):,}; segments: {len(report.rows)} "
          f"({sum(r.verdict != 'too few rows' for r in report.rows)} deciding); "
          f"candidate roc_auc {metrics['roc_auc']:.4f}")
    print(table(["step", "seconds", "vs the gate"], [
        ["gate: both models score the holdout", f"{gate_seconds:.2f}", "1.00x"],
        ["per segment: ~120 segments, paired bootstrap", f"{segment_seconds:.2f}", f"{ratio:.2f}x"],
    ]))
    print(f"segments add {ratio:.1%} to the gate's time (goal <= 20%): {goal(ratio <= 0.2)}")
    worst = report.worst(3)
    print("worst segments: " + "; ".join(f"{r.segment} {r.difference:+.4f}" for r in worst))


if __name__ == "__main__":
    main()
