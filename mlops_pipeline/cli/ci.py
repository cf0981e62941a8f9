"""CI commands: `gate` (asset checks as a merge gate) and `reproduce` (rebuild a registered version).

Dagster has no command that runs asset checks and exits non-zero (dagster#17606), and a failed
non-blocking check does not fail a run (#29896). `gate` therefore executes the real `mlops_loop` job
in-process on a small seeded sample, reads every check evaluation from the run, adds one comparison
against a reference (the registry's champion, or a committed baseline file), and turns all of it into
an exit code, a table and JUnit XML.

What it trains on: for the flights dataset, by default, a seeded sample of the bundled months
(`--months`, `--sample`), so CI needs no landed data; for any other dataset (or with
`--sample-rows`), a seeded sample of the configured dataset's landed batches, batch by batch.
What it compares with: the registry's champion when one answers, else the baseline file
(`data/baselines/<dataset>.json`). A dataset's first gate has neither: it passes on the metric
floors alone and says how to record the first baseline (`--write-baseline`, then commit it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG, PROJECT_ROOT

DEFAULT_MONTHS = [1, 2, 3]
DEFAULT_SAMPLE = 0.12
SAMPLE_SEED = 0
BASELINE_DIR = PROJECT_ROOT / "data" / "baselines"
# Environment the loop's resources read; the gate points them at its own sandbox while it runs.
SANDBOXED_ENV = ["MLOPS_DATA_DIR", "DAGSTER_HOME", "MLFLOW_TRACKING_URI", "MLOPS_MLFLOW_UI_URL",
                 "MLOPS_DATASET_CONFIG"]


@dataclass
class CheckRow:
    asset: str
    check: str
    passed: bool | None  # None: the check never ran (its asset was skipped)
    severity: str  # ERROR | WARN | "-" when it did not run
    key_metric: str
    description: str

    @property
    def blocking_failure(self) -> bool:
        return self.passed is False and self.severity == "ERROR"


@dataclass
class GateOutcome:
    rows: list[CheckRow] = field(default_factory=list)
    run_id: str = ""
    run_success: bool = False
    run_failures: list[str] = field(default_factory=list)
    reference: str = "none"
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.run_success and not any(r.blocking_failure for r in self.rows) and not any(
            r.passed is None and r.severity == "ERROR" for r in self.rows
        )


# ---- reading the run ---------------------------------------------------------------------------
_PREFERRED = ["drift_share", "score", "worst_null_rate", "rows", "duplicate_rows", "failing_columns"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def key_metric(metadata: dict[str, Any]) -> str:
    """The one number a reviewer wants per check, chosen from the check's own metadata."""
    table = metadata.get("metrics")
    records = getattr(getattr(table, "value", None), "records", None)
    if records:
        first = records[0].data
        text = f"{first['metric']}={_fmt(first['candidate'])}"
        return text + (f" (champion {_fmt(first['champion'])})" if first.get("champion") is not None else "")
    for key in _PREFERRED:
        if key in metadata and metadata[key].value not in ("", None):
            return f"{key}={_fmt(metadata[key].value)}"
    if "actual" in metadata:
        return f"content_id={str(metadata['actual'].value)[:12]}"
    return "-"


def rows_from_result(result, defined: list[tuple[str, str]]) -> list[CheckRow]:
    """Every defined check, in definition order; the ones that never ran are listed as such."""
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()
    }
    rows = []
    for asset, check in defined:
        e = evaluations.get((asset, check))
        if e is None:
            rows.append(CheckRow(asset, check, None, "-", "-", "not executed: an upstream step failed "
                                 "or a blocking check stopped the run"))
            continue
        rows.append(CheckRow(asset, check, bool(e.passed), e.severity.value, key_metric(e.metadata),
                             e.description or ""))
    return rows


def defined_checks() -> list[tuple[str, str]]:
    """The checks of the `mlops_loop` job's assets (not of other jobs' assets in the location)."""
    from mlops_pipeline.definitions import build_definitions

    defs = build_definitions()
    selected = defs.resolve_job_def("mlops_loop").asset_layer.selected_asset_keys
    graph = defs.resolve_asset_graph()
    order = {key.to_user_string(): i for i, key in enumerate(graph.toposorted_asset_keys)}
    keys = [(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys if k.asset_key in selected]
    return sorted(keys, key=lambda k: (order.get(k[0], 99), k[1]))


# ---- the reference -----------------------------------------------------------------------------
def registry_champion(tracking_uri: str, name: str):
    """(resource, champion version or None, why) for a registry that answers; (None, None, why) if not.

    Probed with no retries and a short timeout: an unreachable server must make the gate fall back
    to the baseline in seconds, not after MLflow's default minutes of retrying.
    """
    if not tracking_uri:
        return None, None, "MLFLOW_TRACKING_URI is not set"
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).exists():
        return None, None, f"{tracking_uri} does not exist"
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    from mlops_pipeline.defs.resources import MLflowResource
    from mlops_pipeline.defs.resources.mlflow import CHAMPION

    res = MLflowResource(tracking_uri=tracking_uri)
    try:
        res.client().search_registered_models(max_results=1)
        champion = res.version_by_alias(name, CHAMPION)
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable" here
        return None, None, f"registry {tracking_uri} is not reachable: {str(exc).splitlines()[0][:120]}"
    if champion is None:
        return res, None, f"registry {tracking_uri} has no {name}@{CHAMPION}"
    return res, champion, f"champion v{champion.version} of {tracking_uri}"


def baseline_path(name: str, override: str | None) -> Path:
    return Path(override).resolve() if override else BASELINE_DIR / f"{name}.json"


def compare_row(candidate: dict[str, float], reference: dict[str, float], spec, label: str) -> CheckRow:
    """THE gate's regression rule (`evaluate_gate`), applied to the candidate against `reference`."""
    from mlops_pipeline.deployment.gate import evaluate_gate

    verdict = evaluate_gate(candidate, reference, spec.gate, champion_version=label)
    parts, failed = [], []
    for v in verdict.verdicts:
        limit = v.champion - v.tolerance if v.greater_is_better else v.champion + v.tolerance
        text = f"{v.metric}={v.candidate:.4f} vs {label} {v.champion:.4f} (limit {limit:.4f})"
        (parts if v.no_regression else failed).append(text)
    first = verdict.verdicts[0]
    return CheckRow(
        asset="model_version",
        check=f"no_regression_vs_{'baseline' if label == 'baseline' else 'champion'}",
        passed=verdict.no_regression,
        severity="ERROR",
        key_metric=f"{first.metric}={first.candidate:.4f} ({label} {first.champion:.4f})",
        description=("regresses: " + "; ".join(failed)) if failed else "no regression: " + "; ".join(parts),
    )


# ---- output ------------------------------------------------------------------------------------
def print_table(rows: list[CheckRow]) -> None:
    widths = (max(len(r.asset) for r in rows), max(len(r.check) for r in rows))
    print(f"{'asset':<{widths[0]}}  {'check':<{widths[1]}}  {'passed':<7} {'severity':<8} key metric")
    for r in rows:
        passed = "skipped" if r.passed is None else str(r.passed)
        print(f"{r.asset:<{widths[0]}}  {r.check:<{widths[1]}}  {passed:<7} {r.severity:<8} {r.key_metric}")


def write_junit(outcome: GateOutcome, path: Path) -> None:
    """One testcase per check. Only what fails the gate is a <failure>: a failed WARN check is a
    passing testcase with the finding in <system-out>, so the CI's red/green agrees with the exit code."""
    import xml.etree.ElementTree as ET

    cases = list(outcome.rows)
    if not outcome.run_success and not any(r.blocking_failure for r in cases):
        cases.append(CheckRow("mlops_loop", "run", False, "ERROR", "-",
                              "; ".join(outcome.run_failures) or "the run failed"))
    failures = sum(r.blocking_failure for r in cases)
    skipped = sum(r.passed is None for r in cases)
    attrs = {"tests": str(len(cases)), "failures": str(failures), "errors": "0", "skipped": str(skipped),
             "time": f"{outcome.seconds:.1f}"}
    suites = ET.Element("testsuites", {"name": "mlops-pipeline gate", **attrs})
    suite = ET.SubElement(suites, "testsuite", {"name": "mlops_loop", **attrs})
    props = ET.SubElement(suite, "properties")
    for key, value in [("dagster_run_id", outcome.run_id), ("reference", outcome.reference)]:
        ET.SubElement(props, "property", {"name": key, "value": value})
    for r in cases:
        case = ET.SubElement(suite, "testcase", {"classname": r.asset, "name": r.check, "time": "0"})
        if r.blocking_failure:
            failure = ET.SubElement(case, "failure", {"message": r.description[:500], "type": r.severity})
            failure.text = f"{r.description}\nkey metric: {r.key_metric}"
        elif r.passed is None:
            ET.SubElement(case, "skipped", {"message": r.description})
        elif r.passed is False:
            ET.SubElement(case, "system-out").text = (
                f"{r.severity} (does not block): {r.description}\nkey metric: {r.key_metric}"
            )
        else:
            ET.SubElement(case, "system-out").text = f"{r.description}\nkey metric: {r.key_metric}"
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


# ---- the command -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplePlan:
    """Where the gate's rows come from, as recorded in a baseline (two plans compare only if equal)."""

    bundled_flights: bool
    months: list[int]
    fraction: float | None
    rows: int | None
    source_glob: str = ""

    def record(self) -> dict[str, Any]:
        if self.bundled_flights:
            return {"months": self.months, "fraction": self.fraction, "seed": SAMPLE_SEED}
        return {"source": "landed", "rows": self.rows, "fraction": self.fraction, "seed": SAMPLE_SEED}

    def describe(self) -> str:
        if self.bundled_flights:
            return (f"months {self.months} of the bundled flights, sample {self.fraction:g} "
                    f"(seed {SAMPLE_SEED})")
        size = (f"{self.rows} rows" if self.rows else f"fraction {self.fraction:g}" if self.fraction
                else "every row")
        return f"{size} of the landed batches {self.source_glob} (seed {SAMPLE_SEED})"

    def cli_args(self) -> str:
        if self.bundled_flights:
            return f"--months {' '.join(map(str, self.months))} --sample {self.fraction:g}"
        return (f"--sample-rows {self.rows}" if self.rows else f"--sample {self.fraction:g}" if self.fraction
                else "")


def plan_sample(args: argparse.Namespace, spec, user_root: Path) -> SamplePlan:
    """Bundled flights months for the flights dataset (unless `--sample-rows`); landed data otherwise."""
    from mlops_pipeline.spec import load_spec

    flights_glob = load_spec(DEFAULT_DATASET_CONFIG).landing_glob(user_root)
    is_flights = spec.landing_glob(user_root) == flights_glob
    months = sorted(set(args.months))
    if is_flights and args.sample_rows is None:
        return SamplePlan(True, months, DEFAULT_SAMPLE if args.sample is None else args.sample, None)
    return SamplePlan(False, months, args.sample, args.sample_rows, spec.landing_glob(user_root))


def sample_landed(plan: SamplePlan, spec, landing: Path) -> list[Path]:
    """Copy a seeded sample of every landed batch into `landing` (same file names and format).

    `rows` is split across batches in proportion to their size, so the newest batch (what drift
    compares) and the per-batch checks keep their meaning. Nothing to sample: the files are copied.
    """
    import glob
    import shutil

    import pandas as pd

    files = sorted(glob.glob(plan.source_glob))
    if not files:
        raise GateSetupError(
            f"no data landed for dataset {spec.name!r}: nothing matches {plan.source_glob}; land it first "
            f"(`uv run mlops-pipeline land --from FILE --config CONFIG`)")
    landing.mkdir(parents=True, exist_ok=True)
    if not plan.rows and not plan.fraction:
        for f in files:
            shutil.copyfile(f, landing / Path(f).name)
        return [landing / Path(f).name for f in files]
    read = pd.read_parquet if spec.source.format == "parquet" else pd.read_csv
    frames = {f: read(f) for f in files}
    total = sum(len(df) for df in frames.values())
    written = []
    for f, df in frames.items():
        n = round(plan.rows * len(df) / total) if plan.rows else round(plan.fraction * len(df))
        part = df.sample(n=min(max(n, 1), len(df)), random_state=SAMPLE_SEED).sort_index()
        out = landing / Path(f).name
        if spec.source.format == "parquet":
            part.to_parquet(out, index=False)
        else:
            part.to_csv(out, index=False)
        written.append(out)
    return written


class GateSetupError(RuntimeError):
    """The gate cannot start (no data, registry required but absent): exit 2, before training."""


def _run_sandboxed(data_root: Path, config: str, plan: SamplePlan, spec, shuffle: bool, verbose: bool):
    """Land the sample (unless already there) and run `mlops_loop` with every resource pointed at
    `data_root`: its own landing, snapshots, SQLite MLflow and Dagster instance."""
    from mlops_pipeline.cli.common import run_loop
    from mlops_pipeline.data.landing import land_months

    landing = Path(spec.landing_glob(data_root)).parent
    if not any(landing.glob("*")):
        if plan.bundled_flights:
            land_months(landing, plan.months, plan.fraction, seed=SAMPLE_SEED)
        else:
            sample_landed(plan, spec, landing)
    os.environ["MLOPS_DATA_DIR"] = str(data_root)
    os.environ["DAGSTER_HOME"] = str(data_root / "dagster_home")
    os.environ["MLOPS_DATASET_CONFIG"] = config
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLOPS_MLFLOW_UI_URL", None)
    run_config = {"ops": {"trained_model": {"config": {"shuffle_labels": True}}}} if shuffle else None
    seed_mlflow_db(data_root / "mlflow" / "mlflow.db")
    from threadpoolctl import threadpool_limits

    # One OpenMP thread: on a gate-sized sample HistGradientBoosting's threads mostly wait for each
    # other, and on a busy CI machine they spin (6,366 rows of `fair`: 22 s with two threads on a
    # loaded 2-core box, 0.6 s with one). Histograms are summed per feature, so the model is the same.
    with threadpool_limits(limits=1, user_api="openmp"):
        return run_loop(run_config, verbose=verbose, say=print)


def seed_mlflow_db(target: Path) -> None:
    """Start the sandbox's SQLite registry from an empty, already-migrated copy.

    Creating an MLflow SQLite store runs every schema migration (seconds, more on a busy machine);
    the empty store is made once per MLflow version under ~/.cache and copied from then on.
    """
    import shutil
    from importlib import metadata

    if target.exists():
        return
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops-pipeline"
    template = cache / f"mlflow-{metadata.version('mlflow')}-empty.db"
    try:
        if not template.exists():
            import mlflow

            cache.mkdir(parents=True, exist_ok=True)
            fresh = cache / f"{template.name}.{os.getpid()}.tmp"
            mlflow.MlflowClient(f"sqlite:///{fresh}").search_experiments()
            os.replace(fresh, template)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, target)
    except OSError:
        return  # no cache dir: the run creates the store itself, only slower


def refresh_hint(config_arg: str | None, plan: SamplePlan) -> str:
    config = f" --config {config_arg}" if config_arg else ""
    sample = f" {plan.cli_args()}" if plan.cli_args() and not (
        plan.bundled_flights and plan.months == DEFAULT_MONTHS and plan.fraction == DEFAULT_SAMPLE) else ""
    return f"uv run mlops-pipeline gate{config}{sample} --write-baseline"


def run_gate(args: argparse.Namespace) -> tuple[GateOutcome, dict[str, Any] | None]:
    """Returns the outcome and, when the run trained a model, what a baseline file would record."""
    from mlops_pipeline.cli.common import error_summary
    from mlops_pipeline.spec import data_dir, load_spec, resolve_path

    started = time.monotonic()
    config_arg = args.config or os.environ.get("MLOPS_DATASET_CONFIG") or DEFAULT_DATASET_CONFIG
    config = str(resolve_path(config_arg))
    spec = load_spec(config)
    user_root = data_dir()
    plan = plan_sample(args, spec, user_root)
    hint = refresh_hint(args.config, plan)
    user_tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    outcome = GateOutcome()

    # The reference is looked up before anything trains: a registry that must answer and does not
    # fails the gate in seconds.
    reference = None
    if args.reference in ("auto", "champion"):
        res, champion, why = registry_champion(user_tracking_uri, spec.name)
        if champion is not None:
            reference = (res, champion, why)
        elif args.reference == "champion":
            raise GateSetupError(f"--reference champion, but {why}")
        else:
            outcome.notes.append(f"no registry champion to compare with ({why})")

    saved = {k: os.environ.get(k) for k in SANDBOXED_ENV}
    tmp = None if args.data_dir else tempfile.TemporaryDirectory(prefix="mlops-gate-")
    try:
        root = Path(args.data_dir or tmp.name).resolve()  # type: ignore[union-attr]
        root.mkdir(parents=True, exist_ok=True)
        print(f"gate: {plan.describe()}, in {root}", flush=True)
        result = _run_sandboxed(root, config, plan, spec, args.shuffle_labels, args.verbose)
        outcome.run_id = result.run_id
        outcome.run_success = result.success
        outcome.run_failures = [
            f"{e.step_key}: {error_summary(e.event_specific_data.error)}"
            for e in result.all_events
            if e.event_type_value == "STEP_FAILURE" and e.event_specific_data and e.event_specific_data.error
        ]
        outcome.rows = rows_from_result(result, defined_checks())
        try:
            trained = result.output_for_node("trained_model")
            features = result.output_for_node("training_features")
        except Exception:  # noqa: BLE001 - the run stopped before training: nothing to compare
            trained = features = None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if tmp is not None:
            tmp.cleanup()

    record = None
    if trained is not None:
        record = {
            "dataset": spec.name,
            "config_fingerprint": spec.fingerprint(),
            "sample": plan.record(),
            "snapshot_id": trained.snapshot_id,
            "holdout_rows": int((features["_split"] == "holdout").sum()),
            "metrics": {k: float(v) for k, v in trained.metrics.items()},
            "recorded_with": {
                "git_sha": trained.manifest.get("git", {}).get("sha"),
                "packages": {k: v for k, v in trained.manifest.get("packages", {}).items()
                             if k in ("scikit-learn", "numpy", "pandas")},
            },
            "refresh": hint,
        }
        _add_reference_row(args, outcome, spec, trained, features, reference, record, hint)
    else:
        outcome.notes.append("no model was trained, so there is nothing to compare with a reference")
    outcome.seconds = time.monotonic() - started
    return outcome, record


def _add_reference_row(args, outcome: GateOutcome, spec, trained, features, reference,
                       record: dict[str, Any], hint: str) -> None:
    if reference is not None:
        from mlops_pipeline.defs.deployment.registered_model import score_version

        res, champion, why = reference
        # Scored on the candidate's holdout, as the in-pipeline no_regression check does.
        champ_metrics = score_version(res, spec.name, str(champion.version), features, spec)
        outcome.reference = why
        outcome.rows.append(compare_row(trained.metrics, champ_metrics, spec, f"v{champion.version}"))
        return
    if args.reference == "none":
        outcome.reference = "none (--reference none)"
        return
    path = baseline_path(spec.name, args.baseline)
    if args.write_baseline:
        outcome.reference = f"none (--write-baseline: recording {path})"
        outcome.notes.append(f"--write-baseline: not comparing with the old baseline {path}")
        return
    if not path.exists():
        if args.reference == "baseline":
            outcome.rows.append(CheckRow("model_version", "no_regression_vs_baseline", False, "ERROR", "-",
                                         f"no baseline at {path}; record one with `{hint}`"))
            return
        outcome.reference = "none: first gate of this dataset, the metric floors decide"
        outcome.notes.append(
            f"no baseline at {path} and no registry champion: the candidate was judged by the "
            f"floors in its config only. Record the first baseline with `{hint}` and commit it; "
            "later gates fail when a candidate regresses against it beyond the config's tolerances")
        return
    baseline = json.loads(path.read_text())
    outcome.reference = f"baseline {path}"
    if baseline.get("sample") != record["sample"]:
        outcome.rows.append(CheckRow(
            "model_version", "no_regression_vs_baseline", False, "ERROR", "-",
            f"baseline {path} was recorded on sample {baseline.get('sample')}, this run used "
            f"{record['sample']}: metrics of different samples are not comparable; run with the baseline's "
            f"sample options or refresh it with `{hint}`"))
        return
    if baseline.get("snapshot_id") != record["snapshot_id"]:
        outcome.notes.append("the sample's snapshot id differs from the baseline's: the landed data changed")
    if baseline.get("config_fingerprint") != record["config_fingerprint"]:
        outcome.notes.append("the dataset spec changed since the baseline was recorded")
    outcome.rows.append(compare_row(trained.metrics, baseline["metrics"], spec, "baseline"))


def cmd_gate(args: argparse.Namespace) -> int:
    if args.sample_rows is not None and args.sample is not None:
        print("error: --sample-rows and --sample are alternatives; give one", file=sys.stderr)
        return 2
    try:
        outcome, record = run_gate(args)
    except (GateSetupError, FileNotFoundError, ValueError) as exc:
        print(f"gate cannot start: {exc}", file=sys.stderr)
        return 2
    print()
    print_table(outcome.rows)
    print(f"\nreference: {outcome.reference}")
    for note in outcome.notes:
        print(f"note: {note}")
    problems = [r for r in outcome.rows if r.blocking_failure]
    for r in problems:
        print(f"FAILED {r.asset}/{r.check}: {r.description}")
    for r in outcome.rows:
        if r.passed is False and not r.blocking_failure:
            print(f"warning {r.asset}/{r.check} ({r.severity}, does not block): {r.description}")
    for failure in outcome.run_failures:
        print(f"step failed: {failure}")
    if args.junit_xml:
        write_junit(outcome, Path(args.junit_xml))
        print(f"JUnit XML: {args.junit_xml}")
    verdict = "PASSED" if outcome.passed else "FAILED"
    print(f"gate {verdict} in {outcome.seconds:.0f}s (dagster run {outcome.run_id})")
    if args.write_baseline:
        if not outcome.passed or record is None:
            print("not writing a baseline from a failing run", file=sys.stderr)
            return 1
        path = baseline_path(record["dataset"], args.baseline)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote baseline {path}: commit it; later gates compare with it")
    return 0 if outcome.passed else 1


# ---- reproduce ---------------------------------------------------------------------------------
def cmd_reproduce(args: argparse.Namespace) -> int:
    from mlops_pipeline.defs.resources import MLflowResource, StorageResource
    from mlops_pipeline.spec import load_spec
    from mlops_pipeline.training.reproduce import ReproduceError, reproduce

    name = args.model or load_spec(args.config or os.environ.get("MLOPS_DATASET_CONFIG")
                                   or DEFAULT_DATASET_CONFIG).name
    try:
        rep = reproduce(MLflowResource(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "")),
                        StorageResource(), name, args.version, atol=args.atol)
    except ReproduceError as exc:
        print(f"cannot reproduce: {exc}", file=sys.stderr)
        return 2
    diff = rep.diff
    assert diff is not None
    for metric, value in rep.metrics.items():
        then = rep.recorded_metrics.get(metric)
        print(f"  holdout {metric}: rebuilt {value:.6f}, recorded {'-' if then is None else f'{then:.6f}'}")
    if diff.identical:
        exact = "bit-identical" if args.atol == 0 else f"within {args.atol:g}"
        print(f"REPRODUCED {rep.name} v{rep.version}: {diff.rows} holdout predictions {exact}"
              + (f" ({len(rep.warnings)} environment warning(s))" if rep.warnings else ""))
        return 0
    print(f"NOT REPRODUCED {rep.name} v{rep.version}: {diff.differing_rows} of {diff.rows} holdout "
          f"predictions differ ({diff.share_differing:.1%}), max abs diff {diff.max_abs_diff:.3g}")
    return 1


def register(sub: argparse._SubParsersAction) -> None:
    gate = sub.add_parser(
        "gate",
        help="CI gate: run the loop through Dagster on a small sample, fail on any ERROR check or a "
        "regression against the champion/baseline",
    )
    gate.add_argument("--config",
                      help=f"dataset config (default $MLOPS_DATASET_CONFIG or {DEFAULT_DATASET_CONFIG})")
    gate.add_argument("--months", type=int, nargs="+", default=DEFAULT_MONTHS,
                      help="flights only: bundled months to sample (default 1 2 3)")
    gate.add_argument("--sample", type=float, default=None,
                      help=f"fraction to sample: of each bundled flights month (default {DEFAULT_SAMPLE}), "
                      "or of each landed batch of another dataset (default: every row)")
    gate.add_argument("--sample-rows", type=int, default=None,
                      help="a seeded sample of this many rows of the configured dataset's landed batches "
                      "(any dataset; for flights it replaces the bundled months)")
    gate.add_argument("--data-dir", help="sandbox data dir to use and keep (default: a temporary one)")
    gate.add_argument("--reference", choices=["auto", "champion", "baseline", "none"], default="auto",
                      help="auto: the champion of $MLFLOW_TRACKING_URI when reachable, else the baseline")
    gate.add_argument("--baseline", help="baseline metrics file (default data/baselines/<dataset>.json)")
    gate.add_argument("--write-baseline", action="store_true",
                      help="record this run's holdout metrics as the new baseline (only if it passes)")
    gate.add_argument("--shuffle-labels", action="store_true",
                      help="train on shuffled labels: see the gate fail")
    gate.add_argument("--junit-xml", help="write the checks as JUnit XML to this path")
    gate.add_argument("--verbose", action="store_true", help="show Dagster's full event log of the run")
    gate.set_defaults(func=cmd_gate)

    rep = sub.add_parser(
        "reproduce",
        help="retrain a registered version from its manifest and compare its holdout predictions",
    )
    rep.add_argument("version", help="version number (7 or v7) or alias (champion)")
    rep.add_argument("--model", help="registered model name (default: the dataset config's name)")
    rep.add_argument("--config", help="dataset config, only to find the model name")
    rep.add_argument("--atol", type=float, default=0.0,
                     help="largest accepted absolute difference per prediction (default 0: bit-identical)")
    rep.set_defaults(func=cmd_reproduce)
