"""The model call of a micro-batch: the pipeline's `predict_proba` vs the compiled model serving uses.

The default flights pipeline (ColumnTransformer + 200-tree HistGradientBoosting, the config's own
parameters) is fitted in-process on a sample of Jan-Feb, and both paths score the same holdout
rows at micro-batch sizes, back to back, one OpenMP thread (as `serve` runs): the pipeline
(baseline) and `serving.compiled.compile_model`'s form of it (its columns in numpy, its trees in
treelite up to `compiled_trees.MAX_ROWS` rows). Prints the median time per call of each, the ratio,
and whether every answer is bit-identical (it must be). `--estimator` measures the team's own
model instead (`model.estimator`, behind the preprocessing the loop builds for it).

    uv run python bench/model_call.py --no-wait [--fit-rows 40000] [--repeat 200]
                                      [--estimator sklearn.linear_model.LogisticRegression] [--smoke]

`--smoke` (CI): 3,000 rows fitted, 5 calls per size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from _common import REPO, SMOKE_HELP, smoke, table, wait_quiet

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SIZES = (1, 4, 16, 64, 128, 256, 1024)


def _median_ms(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit-rows", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--estimator", help="a `model.estimator` class path (default: the config's model)")
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = smoke(parser.parse_args(), fit_rows=3_000, repeat=5)
    wait_quiet(args.no_wait)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np

    from mlops_pipeline.data.landing import load_flights_with_weather
    from mlops_pipeline.data.preparation import prepare, xy
    from mlops_pipeline.serving.compiled import compile_model
    from mlops_pipeline.spec import load_spec
    from mlops_pipeline.training.estimators import build_model

    spec = load_spec()
    if args.estimator:
        spec = spec.model_copy(update={"model": spec.model.model_copy(update={"estimator": args.estimator,
                                                                            "params": {}})})
    flights = load_flights_with_weather()
    frame = prepare(flights[flights["month"] <= 2].sample(args.fit_rows * 5 // 4, random_state=0), spec).frame
    X, y = xy(frame, spec, "train")
    holdout, _ = xy(frame, spec, "holdout")
    holdout = holdout.reset_index(drop=True)
    pipeline = build_model(spec).fit(X, y)
    compiled = compile_model(pipeline, holdout.head(5))
    assert compiled is not None, "the pipeline did not compile"
    rows, identical = [], True
    for n in SIZES:
        batch = holdout.sample(n, replace=n > len(holdout), random_state=n).reset_index(drop=True)
        identical &= bool(np.array_equal(compiled.predict_proba(batch), pipeline.predict_proba(batch)))
        theirs = _median_ms(lambda b=batch: pipeline.predict_proba(b), args.repeat)
        ours = _median_ms(lambda b=batch: compiled.predict_proba(b), args.repeat)
        rows.append((n, f"{theirs:.3f}", f"{ours:.3f}", f"{theirs / ours:.1f}x"))
    model = args.estimator or "the default model"
    print(f"\nflights pipeline ({model}) fitted on {len(X):,} rows, median of {args.repeat} calls per size, "
          "one thread")
    print(table(["rows", "pipeline predict_proba ms", "compiled ms", "speed-up"], rows))
    print(f"every answer bit-identical: {identical}")
    if not identical:
        raise SystemExit("the compiled model's answers differ from the pipeline's")


if __name__ == "__main__":
    main()
