"""The CI gate's verdict: every check of a run of the loop, plus one comparison against a reference
(the registry's champion, or a committed baseline file), turned into pass/fail and JUnit XML.

Dagster has no command that runs asset checks and exits non-zero (dagster#17606), and a failed
non-blocking check does not fail a run (#29896), so the gate judges the run itself: only a failed
ERROR check, an ERROR check that never ran, or a failed run fails it. The comparison is THE gate's
regression rule, `deployment.gate.evaluate_gate`. No Dagster here: `cli/gate_run.py` runs the loop
and reads the run into `CheckRow`s.

A dataset's first gate has no reference: it passes on the metric floors alone and says how to
record the first baseline (`--write-baseline`, then commit it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_pipeline.spec import PROJECT_ROOT, DatasetSpec

BASELINE_DIR = PROJECT_ROOT / "data" / "baselines"


@dataclass
class CheckRow:
    """One check's outcome, as a table row and a JUnit testcase."""

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
    """Everything the gate found; `passed` is its verdict (and the exit code's)."""

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


def baseline_path(name: str, override: str | None) -> Path:
    """`override`, else the committed `data/baselines/<dataset>.json`."""
    return Path(override).resolve() if override else BASELINE_DIR / f"{name}.json"


def compare_row(candidate: dict[str, float], reference: dict[str, float], spec: DatasetSpec,
                label: str) -> CheckRow:
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


def baseline_record(spec: DatasetSpec, sample: dict[str, Any], trained, holdout_rows: int,
                    hint: str) -> dict[str, Any]:
    """What a baseline file records of a run that trained `trained` (a `TrainedModel`)."""
    return {
        "dataset": spec.name,
        "config_fingerprint": spec.fingerprint(),
        "sample": sample,
        "snapshot_id": trained.snapshot_id,
        "holdout_rows": holdout_rows,
        "metrics": {k: float(v) for k, v in trained.metrics.items()},
        "recorded_with": {
            "git_sha": trained.manifest.get("git", {}).get("sha"),
            "packages": {k: v for k, v in trained.manifest.get("packages", {}).items()
                         if k in ("scikit-learn", "numpy", "pandas")},
        },
        "refresh": hint,
    }


def judge_against_baseline(outcome: GateOutcome, spec: DatasetSpec, record: dict[str, Any],
                           candidate: dict[str, float], *, reference: str, path: Path,
                           write_baseline: bool, hint: str) -> None:
    """Add the baseline comparison (or say why there is none) to `outcome`, when no champion was.

    `reference` is the `--reference` choice. A baseline recorded on another sample is a failure, not
    a comparison: metrics of different samples say nothing about a regression.
    """
    if reference == "none":
        outcome.reference = "none (--reference none)"
        return
    if write_baseline:
        outcome.reference = f"none (--write-baseline: recording {path})"
        outcome.notes.append(f"--write-baseline: not comparing with the old baseline {path}")
        return
    if not path.exists():
        if reference == "baseline":
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
    outcome.rows.append(compare_row(candidate, baseline["metrics"], spec, "baseline"))


def write_baseline(record: dict[str, Any], path: Path) -> None:
    """Write a passing run's record as the baseline later gates compare with."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")


# ---- reporting ---------------------------------------------------------------------------------
def table_lines(rows: list[CheckRow]) -> list[str]:
    """The checks as an aligned table: asset, check, passed (or skipped), severity, key metric."""
    widths = (max(len(r.asset) for r in rows), max(len(r.check) for r in rows))
    lines = [f"{'asset':<{widths[0]}}  {'check':<{widths[1]}}  {'passed':<7} {'severity':<8} key metric"]
    for r in rows:
        passed = "skipped" if r.passed is None else str(r.passed)
        lines.append(f"{r.asset:<{widths[0]}}  {r.check:<{widths[1]}}  {passed:<7} {r.severity:<8} "
                     f"{r.key_metric}")
    return lines


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
