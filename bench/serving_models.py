"""Serving a LightGBM champion vs the default HistGradientBoosting one (issue 26): the same
`mlops-pipeline serve` (one process, capture and metrics on), single-record JSON requests at
concurrency 16, on the same flights holdout records. Both versions are trained and registered by
the pipeline on the same Jan-Mar snapshot: the default one is `register_versions`' v2 (the data dir
the other serving benchmarks start from, shared with them in the smoke tests), the LightGBM one the
next version, through `model.estimator` with the default model's size (200 trees of 31 leaves,
learning rate 0.1, native categoricals). Each server is pinned to its version (`serve --version N`);
the two are measured in alternating rounds so machine load hits them alike, and each one's best
round is kept (noise only ever slows a run down).

The figure of merit is CPU ms per request (what a model costs to serve) next to req/s and p50/p99.

    uv run python bench/serving_models.py [--seconds 15] [--rounds 2] [--sample 0.5] [--no-wait] [--smoke]
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
    Load,
    bench_args,
    bench_env,
    measure_load,
    serving,
    smoke,
    table,
    tracking_uri,
    trained,
    use_env,
)

LIGHTGBM = {"estimator": "lightgbm.LGBMClassifier",
            "params": {"n_estimators": 200, "num_leaves": 31, "learning_rate": 0.1}}
ASSETS = ["dataset_snapshot", "training_features", "trained_model", "model_version"]
DEFAULT = REPO / "data" / "configs" / "flights.yaml"


def _registered_whatever_the_gate(assets: list[str]) -> None:
    """`run_assets`, but a gate that fails the version (e.g. a segment regressing) does not stop the bench:
    the version is registered before its checks run, and serving cost is what is measured here."""
    import dagster as dg

    from mlops_pipeline.defs.definitions import build_definitions

    job = build_definitions().resolve_job_def("mlops_loop")
    job = job.get_subset(asset_selection={dg.AssetKey(a) for a in assets})
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET)
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    print(f"LightGBM registered{'; its gate failed: ' + ', '.join(failed) if failed else ''}", flush=True)


def register_lightgbm(root: Path) -> tuple[str, str]:
    """The LightGBM version, trained and registered by the pipeline on the snapshot of what is landed
    (v2's); returns its version and its dataset config. A data dir that already holds it (the smoke
    tests' shared one) is reused as it is."""
    import mlflow

    from mlops_pipeline.training.estimators import final_estimator

    env = bench_env(root)
    lgbm = root / "flights_lightgbm.yaml"
    done = root / "lightgbm_version.txt"
    if not done.exists():
        raw = yaml.safe_load(DEFAULT.read_text())
        raw["contract"] = str(REPO / raw["contract"])
        raw["model"] = {"seed": raw["model"].get("seed", 42), **LIGHTGBM}
        lgbm.write_text(yaml.safe_dump(raw, sort_keys=False))
        use_env({**env, "MLOPS_DATASET_CONFIG": str(lgbm)})
        _registered_whatever_the_gate(ASSETS)
        use_env(env)
        client = mlflow.MlflowClient(tracking_uri(root), registry_uri=tracking_uri(root))
        versions = client.search_model_versions(f"name='{MODEL}'")
        done.write_text(str(max(int(v.version) for v in versions)))
    version = done.read_text()
    mlflow.set_tracking_uri(tracking_uri(root))
    mlflow.set_registry_uri(tracking_uri(root))
    kinds = [type(final_estimator(mlflow.sklearn.load_model(f"models:/{MODEL}/{v}"))).__name__
             for v in ("2", version)]
    assert kinds == ["HistGradientBoostingClassifier", "LGBMClassifier"], kinds
    return version, str(lgbm)


def measure(root: Path, version: str, config: str, bodies: list[str],
            args: argparse.Namespace) -> tuple[Load, float, str]:
    """One server pinned to `version`: a checked answer, a warm-up, one timed run; its CPU seconds
    per wall second and the load generator used."""
    env = {**bench_env(root), "MLOPS_DATASET_CONFIG": config}
    with serving(root, f"v{version}", "--version", version, env=env) as srv:
        r = httpx.post(f"{srv.url}/predict", content=bodies[0], headers={"content-type": "application/json"})
        r.raise_for_status()
        assert r.json()["model_version"] == version, r.text
        result, cpu = measure_load(srv, "/predict", bodies, args.connections, args.seconds, root / "load",
                                   args.tool)
    return result, cpu, result.tool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="timed load per server and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; each server's best kept")
    args = smoke(bench_args(parser, sample=0.5, connections=16, records=2000, tool=True).parse_args(),
                 seconds=1.0, rounds=1, sample=0.12, records=20)
    with trained("serving-models", args, "v1/v2 (default), then LightGBM,") as (root, holdout):
        lgbm_version, lgbm_config = register_lightgbm(root)
        pinned = {"default (HistGradientBoosting) v2": ("2", str(DEFAULT)),
                  f"LightGBM v{lgbm_version}": (lgbm_version, lgbm_config)}
        bodies = [json.dumps({"records": [r]}) for r in holdout[: args.records]]
        best: dict[str, tuple[Load, float]] = {}
        tool = "?"
        for _ in range(args.rounds):
            for label, (version, config) in pinned.items():
                result, cpu, tool = measure(root, version, config, bodies, args)
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
