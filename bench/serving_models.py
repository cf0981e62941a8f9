"""Serving a LightGBM champion vs the default HistGradientBoosting one (issue 26): the same
`mlops-pipeline serve` (one process, capture and metrics on), single-record JSON requests at
concurrency 16, on the same flights holdout records. Both versions are trained and registered by
the pipeline on the same snapshot; the LightGBM one through `model.estimator` with the default
model's size (200 trees of 31 leaves, learning rate 0.1, native categoricals). Each server is
pinned to its version (`serve --version N`); the two are measured in alternating rounds so machine
load hits them alike, and each one's best round is kept (noise only ever slows a run down).

The figure of merit is CPU ms per request (what a model costs to serve) next to req/s and p50/p99.

    uv run python bench/serving_models.py [--seconds 15] [--rounds 2] [--sample 0.5] [--no-wait]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import httpx
import yaml
from _common import (
    MODEL,
    QUIET,
    REPO,
    SMOKE_HELP,
    Load,
    bench_env,
    cpu_seconds,
    load,
    run_assets,
    smoke,
    start_serve,
    stop,
    table,
    temp_root,
    tracking_uri,
    use_env,
    wait_quiet,
)

LIGHTGBM = {"estimator": "lightgbm.LGBMClassifier",
            "params": {"n_estimators": 200, "num_leaves": 31, "learning_rate": 0.1}}
ASSETS = ["dataset_snapshot", "training_features", "trained_model", "model_version"]


def _registered_whatever_the_gate(assets: list[str]) -> None:
    """`run_assets`, but a gate that fails v2 (e.g. a segment regressing) does not stop the bench:
    the version is registered before its checks run, and serving cost is what is measured here."""
    import dagster as dg

    from mlops_pipeline.defs.definitions import build_definitions

    job = build_definitions().resolve_job_def("mlops_loop")
    job = job.get_subset(asset_selection={dg.AssetKey(a) for a in assets})
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET)
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    print(f"v2 registered{'; its gate failed: ' + ', '.join(failed) if failed else ''}", flush=True)


def register_both(root: Path, sample: float) -> tuple[list[dict], dict[str, str]]:
    """v1 the default model (champion), v2 LightGBM, on the same Jan-Feb snapshot; returns the
    holdout records (as a client sends them) and the two configs by label."""
    import pandas as pd

    from mlops_pipeline.data.landing import land_months
    from mlops_pipeline.data.preparation import SPLIT_COLUMN
    from mlops_pipeline.spec import load_spec

    env = bench_env(root)
    default = str(REPO / "data" / "configs" / "flights.yaml")
    raw = yaml.safe_load(Path(default).read_text())
    raw["contract"] = str(REPO / raw["contract"])
    raw["model"] = {"seed": raw["model"].get("seed", 42), **LIGHTGBM}
    lgbm = root / "flights_lightgbm.yaml"
    lgbm.write_text(yaml.safe_dump(raw, sort_keys=False))
    use_env({**env, "MLOPS_DATASET_CONFIG": default})
    land_months(root / "data" / "landing" / "flights", (1, 2), sample)
    result = run_assets([*ASSETS, "champion_model"])
    use_env({**env, "MLOPS_DATASET_CONFIG": str(lgbm)})
    _registered_whatever_the_gate(ASSETS)
    import mlflow

    from mlops_pipeline.training.estimators import final_estimator

    mlflow.set_tracking_uri(tracking_uri(root))
    mlflow.set_registry_uri(tracking_uri(root))
    kinds = [type(final_estimator(mlflow.sklearn.load_model(f"models:/{MODEL}/{v}"))).__name__
             for v in (1, 2)]
    assert kinds == ["HistGradientBoostingClassifier", "LGBMClassifier"], kinds
    spec = load_spec(default)
    frame = pd.read_parquet(result.output_for_node("training_features").location)
    holdout = frame[frame[SPLIT_COLUMN] == "holdout"][spec.features.columns].reset_index(drop=True)
    use_env(env)
    return json.loads(holdout.to_json(orient="records", date_format="iso")), {
        "default (HistGradientBoosting) v1": default, "LightGBM v2": str(lgbm)}


def measure(root: Path, version: str, config: str, bodies: list[str],
            args: argparse.Namespace) -> tuple[Load, float, str]:
    """One server pinned to `version`: a checked answer, a warm-up, one timed run; its CPU seconds
    per wall second and the flavor/estimator it reports."""
    env = {**bench_env(root), "MLOPS_DATASET_CONFIG": config}
    srv = start_serve(root, f"v{version}", "--version", version, env=env)
    try:
        r = httpx.post(f"{srv.url}/predict", content=bodies[0], headers={"content-type": "application/json"})
        r.raise_for_status()
        assert r.json()["model_version"] == version, r.text
        warm, work = min(3.0, args.seconds), root / "load"
        load(srv.url, "/predict", bodies, args.connections, warm, work, tool=args.tool)
        cpu0 = cpu_seconds(srv.proc.pid)
        result = load(srv.url, "/predict", bodies, args.connections, args.seconds, work, tool=args.tool)
        cpu = (cpu_seconds(srv.proc.pid) - cpu0) / result.seconds
    finally:
        stop(srv.proc)
    return result, cpu, result.tool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="timed load per server and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; each server's best kept")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sample", type=float, default=0.5, help="share of each month used to train")
    parser.add_argument("--records", type=int, default=2000, help="distinct holdout records cycled")
    parser.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = smoke(parser.parse_args(), seconds=1.0, rounds=1, sample=0.05, records=20)
    with temp_root("serving-models", args.keep) as root:
        print("training and registering v1 (default) and v2 (LightGBM) through the pipeline...", flush=True)
        records, configs = register_both(root, args.sample)
        bodies = [json.dumps({"records": [r]}) for r in records[: args.records]]
        wait_quiet(args.no_wait)
        best: dict[str, tuple[Load, float]] = {}
        tool = "?"
        for _ in range(args.rounds):
            for i, (label, config) in enumerate(configs.items(), start=1):
                result, cpu, tool = measure(root, str(i), config, bodies, args)
                if label not in best or result.rps > best[label][0].rps:
                    best[label] = (result, cpu)
    print(f"\nsingle-record POST /predict, {args.connections} connections, {args.seconds:.0f} s x "
          f"{args.rounds} alternating rounds (best kept), load generator: {tool}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end\n")
    print(table(["champion", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "server CPU (cores)",
                 "CPU ms/req"],
                [(label, r.rps, r.p50_ms, r.p95_ms, r.p99_ms, r.errors, cpu,
                  1000 * cpu / r.rps if r.rps else 0.0) for label, (r, cpu) in best.items()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
