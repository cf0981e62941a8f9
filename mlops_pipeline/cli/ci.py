"""CI commands: `gate` (asset checks as a merge gate) and `reproduce` (rebuild a registered version).

`gate` runs the real `mlops_loop` job on a small seeded sample in a configuration of its own
(`cli/gate_run.py`), judges every check plus one comparison against the registry's champion or a
committed baseline (`deployment/ci_gate.py`), and prints a table, writes JUnit XML and exits 0
(passed), 1 (failed) or 2 (cannot start). What it samples: `deployment/ci_sample.py`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlops_pipeline.deployment.ci_gate import baseline_path, table_lines, write_baseline, write_junit
from mlops_pipeline.deployment.ci_sample import DEFAULT_MONTHS, DEFAULT_SAMPLE, GateSetupError
from mlops_pipeline.settings import Settings
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG


def cmd_gate(args: argparse.Namespace, settings: Settings) -> int:
    """Run the gate and say what it found; the exit code is its verdict."""
    from mlops_pipeline.cli.gate_run import GateOptions, run_gate

    if args.sample_rows is not None and args.sample is not None:
        print("error: --sample-rows and --sample are alternatives; give one", file=sys.stderr)
        return 2
    opts = GateOptions(
        config=args.config_as_typed, months=tuple(args.months), sample=args.sample,
        sample_rows=args.sample_rows,
        data_dir=args.data_dir, reference=args.reference, baseline=args.baseline,
        write_baseline=args.write_baseline, shuffle_labels=args.shuffle_labels, verbose=args.verbose,
    )
    try:
        outcome, record = run_gate(opts, settings)
    except (GateSetupError, FileNotFoundError, ValueError) as exc:
        print(f"gate cannot start: {exc}", file=sys.stderr)
        return 2
    print()
    for line in table_lines(outcome.rows):
        print(line)
    print(f"\nreference: {outcome.reference}")
    for note in outcome.notes:
        print(f"note: {note}")
    for r in outcome.rows:
        if r.blocking_failure:
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
        write_baseline(record, path)
        print(f"wrote baseline {path}: commit it; later gates compare with it")
    return 0 if outcome.passed else 1


# ---- reproduce ---------------------------------------------------------------------------------
def cmd_reproduce(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild a registered version from its manifest; exit 0 when its holdout predictions match."""
    from mlops_pipeline.cli.common import mlflow_client, storage_client
    from mlops_pipeline.spec import load_spec
    from mlops_pipeline.training.reproduce import ReproduceError, reproduce

    name = args.model or load_spec(settings.dataset_config).name
    try:
        rep = reproduce(mlflow_client(settings, existing=True), storage_client(settings), name,
                        args.version, atol=args.atol)
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
    """Adds the `gate` and `reproduce` subcommands."""
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
                      help="auto: the champion of the registry materialize uses ($MLFLOW_TRACKING_URI, "
                      "else the data dir's SQLite) when reachable, else the baseline")
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
