"""The loop at scale: the full `mlops_loop` materialization through Dagster (in-process execution,
MLflow embedded) against the same steps as a plain Python script without Dagster or MLflow, on the
whole flights year (337k rows) and on 3x / 10x replicas (each copy shifted back by whole years, so keys
and dates stay unique). Wall time and peak RSS per run come from os.wait4 on a child process.

Both sides start from the landed files only: every output of the previous run (snapshots, MLflow,
reports, the Dagster instance) is removed first, so neither finds work already done. The Dagster
run is measured on a set-up deployment: the MLflow store and the Dagster instance exist (empty),
as they do for every scheduled or sensor-triggered retraining; creating them (MLflow runs all its
schema migrations, ~1.5 s) is a one-time install cost, shown separately at the first scale as
"Dagster, fresh stores".

A scale below 1 (e.g. `--scales 0.1 1 3`) lands a seeded sample of the year instead: on a tenth
of the rows both sides do little work, so Dagster's time minus the plain script's is the fixed cost
of the framework (imports, stores, run and step events, model logging), which every scale pays once.

Goals: Dagster/plain <= 1.25x; cost grows no worse than linearly; peak memory <= 2 GiB at 1x and
<= 12 GiB at 30x and 100x (34M rows: every step streams or samples, see the README).

    uv run python bench/loop.py [--scales 0.1 1 3] [--repeat 3] [--worker] [--no-wait]
    uv run python bench/loop.py --scales 30 100 [--sides dagster]   # slow: 100x is ~20 min a side
    uv run python bench/loop.py --smoke   # CI: the plain side on a 2% sample (the loop's tests run Dagster's)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from _common import (
    BIN,
    REPO,
    SMOKE_HELP,
    bench_env,
    goal,
    run_measured,
    smoke,
    table,
    temp_root,
    use_env,
    wait_quiet,
)


def land_replicas(landing: Path, scale: float) -> int:
    """The 2013 year `scale` times, copy k shifted k years back (past years: no batch lands "in the
    future"), one Parquet file per month and copy; below 1, a seeded sample of that share of the
    year. Above 1x the flights config is copied with a contract whose `year` range and time window
    also cover the copies (`bench_config`), so the domain checks judge the replicas as they judge
    2013."""
    import pandas as pd

    from mlops_pipeline.data.landing import load_flights_with_weather

    df = load_flights_with_weather()
    if scale < 1:
        df = df.sample(frac=scale, random_state=0)
    landing.mkdir(parents=True, exist_ok=True)
    copies = max(1, int(scale))
    for k in range(copies):
        copy = df.copy()
        copy["year"] = copy["year"] - k
        copy["time_hour"] = copy["time_hour"] - pd.DateOffset(years=k)
        for month, batch in copy.groupby("month"):
            batch.to_parquet(landing / f"flights_{2013 - k}_{month:02d}.parquet", index=False)
    if copies > 1:
        bench_config(landing.parents[2], copies)
    return len(df) * copies


def bench_config(root: Path, copies: int) -> Path:
    """The flights config and contract, the contract's `year` range and time window widened to the
    `copies` years landed (2013 back to 2014 - copies); used through MLOPS_DATASET_CONFIG."""
    import yaml

    from mlops_pipeline.spec import load_spec

    spec = load_spec()
    contract = yaml.safe_load(spec.contract_path().read_text())
    first = 2013 - copies + 1
    contract["domain"]["ranges"]["year"]["min"] = float(first - 1)
    window = contract["domain"]["time_window"]["time_hour"]
    window["start"] = f"{first - 1}-11-25 00:00:00"
    folder = root / "config"
    folder.mkdir(exist_ok=True)
    (folder / "contract.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    config = yaml.safe_load(spec.config_file.read_text())
    config["contract"] = str(folder / "contract.yaml")
    (folder / "flights.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder / "flights.yaml"


def loop_env(root: Path) -> dict[str, str]:
    """`bench_env`, with the widened config when the landed replicas need one."""
    env = bench_env(root)
    config = root / "config" / "flights.yaml"
    return {**env, "MLOPS_DATASET_CONFIG": str(config)} if config.exists() else env


def scale_name(scale: float) -> str:
    return f"{scale:g}x"


def plain(root: Path) -> dict:
    """The loop's steps as one script without Dagster or MLflow (neither is imported), through the
    same core functions the assets call, with every check and write the Dagster run makes that is
    neither's own: the snapshot (streamed, per-batch checks, re-hashed), the prepared features and
    their checks, training on the bounded sample + holdout metrics and the gate's verdict, the model
    kept the way a script without a registry keeps it (a skops file beside its run manifest and
    metrics), the drift reference scored and stored, the newest batch's drift against it with the
    HTML report."""
    import json

    import skops.io
    import yaml

    from mlops_pipeline.data.contract import load_contract, validate
    from mlops_pipeline.data.feature_checks import check_features
    from mlops_pipeline.data.features import prepare_features, read_features, training_rows
    from mlops_pipeline.data.landing_snapshot import take_snapshot
    from mlops_pipeline.data.snapshots import newest_batch, stored_content_id
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.deployment.gate import evaluate_gate
    from mlops_pipeline.monitoring.drift import PREDICTION_COLUMN, compute_drift
    from mlops_pipeline.settings import Settings
    from mlops_pipeline.spec import load_spec
    from mlops_pipeline.training.fit import drift_reference, fit_parts
    from mlops_pipeline.training.manifest import build_manifest
    from mlops_pipeline.training.model import predict_scores

    spec = load_spec()
    storage = Storage()
    data = root / "data"
    taken = take_snapshot(spec, storage, Settings.from_env().batch_index_cache_rows)
    assert not any(taken.findings.values()), taken.findings
    assert stored_content_id(storage, taken.id) == taken.id
    info = prepare_features(storage, taken.id, spec)
    contract = load_contract(spec)
    checked = check_features(storage, info, spec, contract)
    assert checked.contract_error is None and not checked.null_violations
    assert all(o.passed for o in checked.outcomes), [o for o in checked.outcomes if not o.passed]
    seed = spec.model.seed
    columns = list(dict.fromkeys([*spec.features.columns, spec.target.name]))
    train, sample = training_rows(storage, info, spec, seed, columns)
    holdout = read_features(storage, info, spec, "holdout", columns)
    fitted = fit_parts(train, holdout, spec, seed, sample=sample)
    del train, holdout
    verdict = evaluate_gate(fitted.metrics, None, spec.gate)
    run_dir = data / "models" / spec.name / "plain"
    run_dir.mkdir(parents=True)
    skops.io.dump(fitted.model, run_dir / "model.skops")
    manifest = build_manifest(snapshot_id=taken.id, seeds={"model": seed, "split": 0},
                              config={"dataset": spec.model_dump(mode="json"),
                                      "fingerprint": spec.fingerprint()},
                              dagster_run_id="", extra={"holdout": {"metrics": fitted.metrics},
                                                        "training_sample": sample.record})
    (run_dir / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    (run_dir / "metrics.json").write_text(json.dumps({**fitted.metrics, "gate_passed": verdict.passed}))
    reference = drift_reference(fitted.model, fitted.X_train, spec.task)
    reference.to_parquet(run_dir / "reference.parquet", index=False)
    features = contract.for_columns(spec.features.columns)
    _, current = newest_batch(storage.landing_glob(spec), spec.source.format, spec.time_column, storage)
    current = validate(current[spec.features.columns], features)
    current[PREDICTION_COLUMN] = predict_scores(fitted.model, current, spec.task)
    result = compute_drift(reference, current, spec.features.categorical,
                           [*spec.features.numerical, PREDICTION_COLUMN], spec.drift, spec.model.seed)
    (data / "reports").mkdir(exist_ok=True)
    result.save_html(data / "reports" / "plain_drift.html")
    loaded = [m for m in ("dagster", "mlflow") if m in sys.modules]
    if loaded:
        raise RuntimeError(f"the plain baseline imported {loaded}: it must run without them")
    return {"auc": fitted.metrics.get("roc_auc"), "drift_share": result.drift_share,
            "train_rows": sample.rows, "of": sample.of}


def dagster_run(root: Path) -> dict:
    from mlops_pipeline.cli.common import run_loop

    result = run_loop({"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    if not result.success:
        raise RuntimeError("the loop failed")
    return {"success": result.success}


def init_stores(root: Path) -> dict:
    """An installed deployment: the Dagster instance and the MLflow store exist, empty."""
    import dagster as dg

    from mlops_pipeline.cli.common import ensure_dagster_home
    from mlops_pipeline.deployment.tracking import MLflow

    ensure_dagster_home()
    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)
    MLflow().experiment_id()
    return {}


def reset(root: Path) -> None:
    """Back to the landed files only."""
    import shutil

    for path in [*(root / "data").iterdir(), root / "dagster_home"]:
        if path.name != "landing":
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    (root / "dagster_home").mkdir()


def plan(first: bool, worker: bool, sides: tuple[str, ...] = ("plain", "dagster")
         ) -> list[tuple[str, str, bool]]:
    """(mode, row label, reset first) per process of one repetition. Every run starts from the
    landed files only, except a run right after "init", which finds the stores init created.
    `sides` without "plain" or "dagster" leaves that side out (a scale too slow to run twice)."""
    steps = [("plain", "plain")] if "plain" in sides else []
    if "dagster" not in sides:
        return [(mode, label, True) for mode, label in steps]
    if first:
        steps.append(("dagster", "Dagster, fresh stores"))
        if worker:
            steps += [("init", ""), ("worker", "Dagster run worker (job's executor)")]
    steps += [("init", ""), ("dagster", "Dagster")]
    return [(mode, label, i == 0 or steps[i - 1][0] != "init") for i, (mode, label) in enumerate(steps)]


def child(mode: str, root: Path) -> None:
    use_env(loop_env(root))
    started = time.perf_counter()
    info = {"plain": plain, "dagster": dagster_run, "init": init_stores}[mode](root)
    (root / f"{mode}.json").write_text(json.dumps({"seconds": time.perf_counter() - started, **info}))
    os._exit(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 3],
                        help="multiples of the flights year; below 1, a sample (fixed cost)")
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side and scale (median)")
    parser.add_argument("--worker", action="store_true",
                        help="also time `dagster job execute` (the job's own executor, as a run "
                             "worker started by the daemon runs it) at the first scale")
    parser.add_argument("--sides", nargs="+", choices=["plain", "dagster"], default=["plain", "dagster"],
                        help="run only one side (its peak memory and wall; ratios need both)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "ROOT"), help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = smoke(parser.parse_args(), scales=[0.02], repeat=1, worker=False, sides=["plain"])
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return 0

    # Each scale's runs are repeated `--repeat` times, interleaved (plain, Dagster, plain, ...), and
    # the median is reported: this VM moves by 5-10% from run to run, more than the effects measured.
    samples: dict[tuple[float, str], list] = {}
    sizes: dict[float, int] = {}
    for scale in args.scales:
        with temp_root(f"loop{scale_name(scale)}", args.keep) as root:
            sizes[scale] = land_replicas(root / "data" / "landing" / "flights", scale)
            wait_quiet(args.no_wait)
            for rep in range(args.repeat):
                for mode, label, fresh in plan(scale == args.scales[0] and rep == 0, args.worker,
                                                 tuple(args.sides)):
                    if fresh:
                        reset(root)
                    cmd = ([str(BIN / "dagster"), "job", "execute", "-m", "mlops_pipeline.defs.definitions",
                            "-j", "mlops_loop"] if mode == "worker"
                           else [sys.executable, __file__, "--child", mode, str(root)])
                    m = run_measured(cmd, env=loop_env(root), cwd=REPO)
                    if m.returncode != 0:
                        raise RuntimeError(f"{mode} at {scale_name(scale)} failed:\n{m.output[-3000:]}")
                    if label:
                        sample = (m.seconds, m.max_rss / 1024**3, m.cpu_seconds)
                        samples.setdefault((scale, label), []).append(sample)
    wall, cpu, peak = {}, {}, {}
    for key, runs in samples.items():
        wall[key] = statistics.median(s for s, _, _ in runs)
        cpu[key] = statistics.median(c for _, _, c in runs)
        peak[key] = max(g for _, g, _ in runs)
    # the goals are about the year and its replicas, with both sides measured
    full = [s for s in args.scales if s >= 1 and (s, "plain") in wall and (s, "Dagster") in wall]
    out, nan = [], float("nan")
    for (scale, label), runs in samples.items():
        spread = f"{min(s for s, _, _ in runs):.1f}-{max(s for s, _, _ in runs):.1f}" if len(runs) > 1 else ""
        growth = (wall[(scale, label)] / wall[(full[0], label)] / (scale / full[0])
                  if full and scale >= 1 and (full[0], label) in wall else float("nan"))
        out.append((scale_name(scale), f"{sizes[scale]:,}", label, len(runs), wall[(scale, label)], spread,
                    peak[(scale, label)], wall[(scale, label)] / wall.get((scale, "plain"), nan),
                    growth, cpu[(scale, label)], cpu[(scale, label)] / cpu.get((scale, "plain"), nan)))
    print(table(["scale", "rows", "run", "runs", "median wall s", "range s", "peak GiB", "x plain",
                 "cost/row vs first full scale", "CPU s", "x plain (CPU)"], out))
    print("Wall and peak RSS of each run's whole process (interpreter start and imports included).\n")
    goals = [
        (f"Dagster (set-up deployment) vs plain at {scale_name(s)}", "<= 1.25x",
         f"{wall[(s, 'Dagster')] / wall[(s, 'plain')]:.2f}x",
         goal(wall[(s, "Dagster")] / wall[(s, "plain")] <= 1.25))
        for s in full
    ]
    if len(full) > 1:  # growth needs two full scales
        growth = max(r[8] for r in out if r[2] == "Dagster" and r[8] == r[8])
        goals.append((f"growth from {scale_name(full[0])}", "cost/row <= 1.1x", f"{growth:.2f}",
                      goal(growth <= 1.1)))
    if (1.0, "Dagster") in peak:
        peak1 = peak[(1.0, "Dagster")]
        goals.append(("peak memory at 1x", "<= 2 GiB", f"{peak1:.2f} GiB", goal(peak1 <= 2.0)))
    for (scale, label), gib in sorted(peak.items()):
        if scale >= 30:  # issue 19: the loop at 30x and 100x on one 24 GiB machine
            goals.append((f"peak memory at {scale_name(scale)} ({label})", "<= 12 GiB", f"{gib:.2f} GiB",
                          goal(gib <= 12.0)))
    if goals:
        print(table(["goal", "target", "measured", "status"], goals))
    for small in (s for s in args.scales if s < 1 and (s, "plain") in wall and (s, "Dagster") in wall):
        fixed = wall[(small, "Dagster")] - wall[(small, "plain")]
        budget = ", ".join(f"{0.25 * wall[(s, 'plain')]:.1f} s at {scale_name(s)}" for s in full)
        print(f"\nFixed cost (Dagster - plain at {scale_name(small)}): {fixed:.1f} s, paid once per run."
              + (f" The 1.25x goal allows 0.25 x plain: {budget}." if budget else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
