"""Batch scoring: rows/s of the server's /predict on 10,000-record requests against in-process
`model.predict_proba` on the same rows (goal >= 0.8x).

The server's per-request limits are raised for this benchmark through its environment:
MLOPS_SERVE_MAX_RECORDS=10000, MLOPS_SERVE_MAX_BODY_BYTES=50000000 (a 10k-record body is ~4 MB),
MLOPS_SERVE_CAPTURE_MAX_ROWS=20000 (one group commit per request instead of five).

    uv run python bench/batch.py [--seconds 20] [--connections 2] [--rows 10000] [--no-wait]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _common import (
    MODEL,
    bench_env,
    goal,
    load,
    register_versions,
    start_serve,
    stop,
    table,
    temp_root,
    tracking_uri,
    wait_quiet,
)

SERVER_LIMITS = {"MLOPS_SERVE_MAX_RECORDS": "10000", "MLOPS_SERVE_MAX_BODY_BYTES": "50000000",
                 "MLOPS_SERVE_CAPTURE_MAX_ROWS": "20000"}


def in_process(records_path: Path, model_uri: str, reps: int) -> None:
    """Child mode: the baseline, timed in its own process (its own OpenMP setting)."""
    import mlflow
    import pandas as pd

    from mlops_pipeline.contract import load_contract, validate
    from mlops_pipeline.settings import load_spec

    spec = load_spec()
    records = json.loads(records_path.read_text())
    frame = validate(pd.DataFrame.from_records(records)[spec.features.columns],
                     load_contract(spec).for_columns(spec.features.columns))
    model = mlflow.sklearn.load_model(model_uri)
    model.predict_proba(frame)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model.predict_proba(frame)
        times.append(time.perf_counter() - t0)
    times.sort()
    print("BASELINE " + json.dumps({"rows": len(frame), "median_s": times[len(times) // 2]}), flush=True)


def _baseline(root: Path, records_path: Path, omp: str | None, reps: int) -> float:
    env = {**bench_env(root), "MLFLOW_TRACKING_URI": tracking_uri(root)}
    if omp:
        env["OMP_NUM_THREADS"] = omp
    else:
        env.pop("OMP_NUM_THREADS", None)
    out = subprocess.run([sys.executable, __file__, "--child", str(records_path), f"models:/{MODEL}/1",
                          "--reps", str(reps)], env=env, capture_output=True, text=True, timeout=600)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BASELINE ")), None)
    if line is None:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
    d = json.loads(line[9:])
    return d["rows"] / d["median_s"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=2, help="concurrent 10k-record requests")
    parser.add_argument("--rows", type=int, default=10_000, help="records per request")
    parser.add_argument("--sample", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=15, help="in-process predict_proba repetitions")
    parser.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("RECORDS", "MODEL_URI"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        in_process(Path(args.child[0]), args.child[1], args.reps)
        return 0

    with temp_root("batch", args.keep) as root:
        print("training and registering v1/v2 through the pipeline...", flush=True)
        holdout = register_versions(root, args.sample)
        records = (holdout * (args.rows // len(holdout) + 1))[: args.rows]
        records_path = root / "records.json"
        records_path.write_text(json.dumps(records))
        body = json.dumps({"records": records})
        wait_quiet(args.no_wait)

        base_default = _baseline(root, records_path, None, args.reps)
        base_omp1 = _baseline(root, records_path, "1", args.reps)

        env = {**bench_env(root), **SERVER_LIMITS}
        srv = start_serve(root, "ours", "--version", "1", env=env)
        try:
            r = httpx.post(f"{srv.url}/predict", content=body, timeout=60,
                           headers={"content-type": "application/json"})
            r.raise_for_status()
            assert len(r.json()["predictions"]) == args.rows
            result = load(srv.url, "/predict", [body], args.connections, args.seconds, root / "load",
                          threads=min(2, args.connections), tool=args.tool)
        finally:
            stop(srv.proc)

    served = result.rps * args.rows
    best = max(base_default, base_omp1)
    print(f"\n{args.rows:,}-record requests, {args.connections} concurrent, {args.seconds:.0f} s, "
          f"load generator: {result.tool}; server limits raised: "
          + ", ".join(f"{k}={v}" for k, v in SERVER_LIMITS.items()) + "\n")
    print(table(["path", "rows/s", "p50 ms/request", "p99 ms/request", "errors", "x in-process"], [
        ("in-process predict_proba (default OpenMP threads)", base_default, "-", "-", "-", 1.0),
        ("in-process predict_proba (OMP_NUM_THREADS=1)", base_omp1, "-", "-", "-", base_omp1 / base_default),
        ("mlops-pipeline serve /predict (capture on)", served, result.p50_ms, result.p99_ms, result.errors,
         served / base_default),
    ]))
    print(table(["goal", "target", "measured", "status"], [
        ("server rows/s vs best in-process", ">= 0.8x", f"{served / best:.2f}x", goal(served / best >= 0.8)),
        ("errors", "0", str(result.errors), goal(result.errors == 0)),
    ]))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
