"""The benchmarks are not tests (speed goals never live in timed tests), but they must keep
importing, and their pure helpers must keep working on tiny inputs."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_pipeline.spec import PROJECT_ROOT

BENCH = PROJECT_ROOT / "bench"


@pytest.fixture(autouse=True)
def _bench_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))


@pytest.mark.parametrize("name", ["_common", "_loadgen", "serving", "batch", "loop", "drift", "load",
                                  "rollback"])
def test_bench_module_imports(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__


def test_drift_bench_frames_and_fast_scores_on_tiny_inputs() -> None:
    drift_bench = importlib.import_module("drift")
    from mlops_pipeline.monitoring.drift import compute_drift
    from mlops_pipeline.spec_sections import DriftSpec

    ref, cur = drift_bench.make_frames(400)
    assert list(ref.columns) == list(cur.columns) and len(ref) == 400
    result = compute_drift(ref, cur, drift_bench.CATEGORICAL, drift_bench.NUMERICAL, DriftSpec())
    by_col = {c.column: c for c in result.columns}
    assert by_col["small_int"].drifted and not by_col["num_05"].drifted


def test_table_formatting() -> None:
    common = importlib.import_module("_common")
    out = common.table(["a", "b"], [("x", 1.5), ("yy", 1234.5)])
    assert out.splitlines()[0].startswith("| a ") and "1,234.5" in out
    assert common.goal(True) == "met" and sys.executable


def test_loop_bench_resets_to_the_landed_files_only(tmp_path) -> None:
    """Neither side of the loop benchmark may find the other's work (a written snapshot, a model)."""
    loop = importlib.import_module("loop")
    (tmp_path / "data" / "landing" / "flights").mkdir(parents=True)
    (tmp_path / "data" / "landing" / "flights" / "b.parquet").write_bytes(b"x")
    (tmp_path / "data" / "snapshots").mkdir()
    (tmp_path / "data" / "snapshots" / "s.parquet").write_bytes(b"x")
    (tmp_path / "data" / "stray.txt").write_text("x")
    (tmp_path / "dagster_home" / "storage").mkdir(parents=True)
    loop.reset(tmp_path)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["landing"]
    assert (tmp_path / "data" / "landing" / "flights" / "b.parquet").exists()
    assert list((tmp_path / "dagster_home").iterdir()) == []


def test_loop_bench_measures_the_set_up_deployment_on_the_stores_init_created() -> None:
    """Every run resets to the landed files, except the one after "init": it must find init's
    (empty) stores, or the "Dagster" row measures creating them too."""
    loop = importlib.import_module("loop")
    steps = loop.plan(first=True, worker=True)
    assert [m for m, _, _ in steps] == ["plain", "dagster", "init", "worker", "init", "dagster"]
    for (mode, _, _), (_, label, fresh) in zip(steps, steps[1:], strict=False):
        assert fresh == (mode != "init"), label
    assert steps[0][2] and [s[1] for s in steps if s[1]][-1] == "Dagster"
    later = loop.plan(first=False, worker=True)
    assert [(m, fresh) for m, _, fresh in later] == [("plain", True), ("init", True), ("dagster", False)]


def test_loop_bench_smoke_runs_the_plain_baseline_without_dagster_or_mlflow() -> None:
    """`bench/loop.py --smoke`: the plain side on a 2% sample, its figures printed. The baseline is
    what a script without either framework does, model file included: it raises if anything it
    calls imported Dagster or MLflow (so the comparison stays honest)."""
    import json
    import shutil

    proc = _run_smoke("loop", "--keep")
    kept = next((line[5:] for line in proc.stdout.splitlines() if line.startswith("kept ")), None)
    assert kept, proc.stdout[-3000:]
    root = Path(kept)
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        for label in ("| 0.02x ", "| plain ", "Wall and peak RSS of each run"):
            assert label in proc.stdout, proc.stdout[-3000:]
        run_dir = root / "data" / "models" / "flights_delay" / "plain"
        assert sorted(p.name for p in run_dir.iterdir()) == [
            "manifest.yaml", "metrics.json", "model.skops", "reference.parquet",
        ]
        assert (root / "data" / "reports" / "plain_drift.html").stat().st_size > 0
        assert json.loads((root / "plain.json").read_text())["auc"] > 0.55
    finally:
        shutil.rmtree(root, ignore_errors=True)


#: Each script's smoke run and the labels its report must print (its figures, tiny sizes).
SMOKE = {
    "serving": ["mlops-pipeline serve (1 process)", "every prediction captured", "CPU ms/req"],
    "batch": ["in-process predict_proba (OMP_NUM_THREADS=1)", "/predict (capture on)",
              "every answer captured"],
    "cost": ["1 record(s) per request", "100 record(s) per request", "model CPU s / 1k"],
    "rollback": ["rollback via /admin/rollback", "rollback, server polls", "failed requests"],
    # the streamed rows (chunks of the same frame) score what the whole frame scores
    "drift": ["10 chunks: every score equal to the whole frame's: True", "| stream "],
    "holdout_scoring": ["| whole ", "| sliced ", "scores equal: True"],
    "load": ["import dagster + build_definitions() + repository", "extra over import dagster"],
    "sensor_tick": ["3 batches: tick", "old tick: tick at 3 vs 2 batches"],
    # the default model's v2 and the LightGBM version registered next, on v2's snapshot
    "serving_models": ["default (HistGradientBoosting) v2", "| LightGBM v", "CPU ms/req"],
    # the compiled model against the pipeline, in-process
    "model_call": ["| pipeline predict_proba ms ", "every answer bit-identical: True"],
}


@pytest.fixture(scope="module")
def shared_trained_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The scripts that train v1/v2 through the pipeline share one trained data dir."""
    return str(tmp_path_factory.mktemp("bench-trained"))


def test_every_bench_script_has_a_smoke_mode() -> None:
    """A new benchmark comes with `--smoke`, so CI runs it (and a refactor cannot silently break it)."""
    scripts = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))
    assert scripts and [p.name for p in scripts if "--smoke" not in p.read_text()] == []
    # ... and CI runs every one of them (segments and loop have their own tests).
    assert set(SMOKE) | {"segments", "loop"} == {p.stem for p in scripts}


def _run_smoke(name: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python bench/<name>.py --smoke` in a clean environment, as a person runs a script: earlier
    tests leave MLflow's process-wide registry URI (and the like) exported, which would point the
    script at their servers. OpenMP gets one thread: on a loaded 2-core machine its spinning threads
    make even a 2,000-row fit take tens of seconds (the smoke figures mean nothing anyway)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_", "DAGSTER_"))}
    clean |= {"PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--smoke", *extra], capture_output=True,
                          text=True, timeout=900, cwd=PROJECT_ROOT, env=clean)


@pytest.mark.parametrize("name", list(SMOKE))
def test_bench_script_runs_end_to_end_in_smoke_mode(name: str, shared_trained_root: str) -> None:
    """`python bench/<name>.py --smoke` takes its real code path (servers, pipeline, load
    generator) on tiny sizes, exits 0 and prints its figures."""
    proc = _run_smoke(name, env={"MLOPS_BENCH_SHARED_ROOT": shared_trained_root})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    missing = [label for label in SMOKE[name] if label not in proc.stdout]
    assert missing == [], proc.stdout[-3000:]


def test_segments_bench_runs_in_smoke_mode() -> None:
    """`bench/segments.py --smoke`: the gate with and without ~120 segments on a tiny holdout,
    both timed in the same run, the ratio printed against the 20% goal."""
    proc = _run_smoke("segments")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for label in ("| gate: both models score the holdout ", "| per segment: ~120 segments",
                  "to the gate's time (goal <= 20%)", "worst segments: "):
        assert label in proc.stdout, proc.stdout[-3000:]
    assert "segments: 1" in proc.stdout  # over a hundred segments even on the tiny sample
