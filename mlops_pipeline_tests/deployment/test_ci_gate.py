"""The CI gate's verdict on plain values: the regression rule against a reference, the baseline's
sample guard, and JUnit XML whose red/green agrees with the exit code (the gate end to end is
cli/test_gate.py)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

from mlops_pipeline.deployment.ci_gate import (
    CheckRow,
    GateOutcome,
    baseline_record,
    compare_row,
    judge_against_baseline,
    write_junit,
)
from mlops_pipeline.deployment.ci_sample import SamplePlan, refresh_hint
from mlops_pipeline.spec import load_spec


def test_reference_comparison_is_the_gate_policy():
    spec = load_spec("data/configs/flights.yaml")
    baseline = {"roc_auc": 0.70, "log_loss": 0.53}
    within = compare_row({"roc_auc": 0.695, "log_loss": 0.535}, baseline, spec, "baseline")
    assert within.passed and within.severity == "ERROR"
    worse = compare_row({"roc_auc": 0.68, "log_loss": 0.53}, baseline, spec, "baseline")
    assert not worse.passed and worse.blocking_failure
    assert "roc_auc=0.6800 vs baseline 0.7000 (limit 0.6900)" in worse.description


def test_a_baseline_of_another_sample_fails_instead_of_comparing(tmp_path):
    spec = load_spec("data/configs/flights.yaml")
    trained = SimpleNamespace(snapshot_id="abc", metrics={"roc_auc": 0.7, "log_loss": 0.5}, manifest={})
    plan = SamplePlan(True, [1, 2, 3], 0.12, None)
    hint = refresh_hint(None, plan)
    record = baseline_record(spec, plan.record(), trained, 100, hint)
    path = tmp_path / "flights_delay.json"
    path.write_text(json.dumps({**record, "sample": {"months": [1], "fraction": 0.5, "seed": 0}}))
    outcome = GateOutcome(run_success=True)

    judge_against_baseline(outcome, spec, record, trained.metrics, reference="auto", path=path,
                           write_baseline=False, hint=hint)

    assert not outcome.passed and "not comparable" in outcome.rows[0].description
    assert hint == "uv run mlops-pipeline gate --write-baseline"


def test_only_what_fails_the_gate_is_a_junit_failure(tmp_path):
    outcome = GateOutcome(run_success=True, run_id="r1", reference="baseline x", rows=[
        CheckRow("a", "blocking", False, "ERROR", "-", "broken"),
        CheckRow("a", "warning", False, "WARN", "-", "odd"),
        CheckRow("b", "never_ran", None, "-", "-", "not executed"),
        CheckRow("b", "fine", True, "ERROR", "x=1", "ok"),
    ])
    path = tmp_path / "gate.xml"

    write_junit(outcome, path)

    root = ET.parse(path).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("4", "1", "1")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["blocking"].find("failure") is not None
    assert cases["warning"].find("failure") is None
    assert "does not block" in cases["warning"].find("system-out").text
    assert cases["never_ran"].find("skipped") is not None
