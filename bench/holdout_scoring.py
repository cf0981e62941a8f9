"""Scoring a 100x-sized holdout: the whole frame in one model call vs `PREDICT_CHUNK_ROWS` slices.

The flights year is prepared, a model fitted on 200k train rows, and its holdout copied `--copies`
times (100: ~6.5M rows, the 100x loop's holdout). Each mode runs in its own process; the figures
are the memory scoring needs above the frame it scores (peak RSS less RSS before the call), the
wall time of the call and a checksum of the scores (equal: slicing changes no score).

    uv run python bench/holdout_scoring.py --no-wait [--copies 100] [--smoke]

`--smoke` (CI): 2 copies of the holdout of an 8,000-row sample, the model fitted on 2,000 rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from _common import REPO, SMOKE_HELP, smoke, table, wait_quiet

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _child(mode: str, copies: int, sample_rows: int | None, fit_rows: int) -> None:
    import pandas as pd

    from mlops_pipeline.data.landing import load_flights_with_weather
    from mlops_pipeline.data.preparation import prepare, xy
    from mlops_pipeline.spec import load_spec
    from mlops_pipeline.training.model import build_pipeline, predict_scores

    spec = load_spec(REPO / "data/configs/flights.yaml")
    year = load_flights_with_weather()
    if sample_rows:
        year = year.sample(n=sample_rows, random_state=0)
    prepared = prepare(year, spec)
    X, y = xy(prepared.frame, spec, "train")
    model = build_pipeline(spec, seed=0).fit(X.head(fit_rows), y.head(fit_rows))
    holdout, _ = xy(prepared.frame, spec, "holdout")
    holdout = pd.concat([holdout] * copies, ignore_index=True)
    del prepared, X, y
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    scores = predict_scores(model, holdout, spec.task, chunk_rows=len(holdout) if mode == "whole" else None)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"rows": len(holdout), "seconds": seconds, "frame": before, "peak": peak,
                      "checksum": float(scores.sum())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--no-wait", action="store_true", help="measure even if pytest is running")
    parser.add_argument("--sample-rows", type=int, default=0, help="a seeded sample of the year (0: all)")
    parser.add_argument("--fit-rows", type=int, default=200_000)
    parser.add_argument("--child", choices=["whole", "sliced"], help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = smoke(parser.parse_args(), copies=2, sample_rows=8_000, fit_rows=2_000)
    if args.child:
        _child(args.child, args.copies, args.sample_rows, args.fit_rows)
        return
    import subprocess

    wait_quiet(args.no_wait)
    runs = {}
    for mode in ("whole", "sliced"):
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--copies", str(args.copies),
                              "--sample-rows", str(args.sample_rows), "--fit-rows", str(args.fit_rows)],
                             capture_output=True, text=True, check=True, cwd=REPO)
        runs[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    gib = 2 ** 30
    print(table(["scoring", "rows", "seconds", "frame GiB", "peak GiB", "over the frame GiB", "checksum"],
                [[mode, f"{r['rows']:,}", r["seconds"], r["frame"] / gib, r["peak"] / gib,
                  (r["peak"] - r["frame"]) / gib, f"{r['checksum']:.6f}"] for mode, r in runs.items()]))
    whole, sliced = runs["whole"], runs["sliced"]
    memory = (sliced["peak"] - sliced["frame"]) / max(whole["peak"] - whole["frame"], 1)  # 0 on tiny frames
    equal = sliced["checksum"] == whole["checksum"]
    print(f"sliced / whole: memory over the frame {memory:.3f}x, "
          f"time {sliced['seconds'] / whole['seconds']:.2f}x; scores equal: {equal}")


if __name__ == "__main__":
    main()
