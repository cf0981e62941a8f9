"""`mlops-pipeline gate`: the loop's own checks, run through Dagster, as a CI exit code and JUnit XML."""

from __future__ import annotations

import json
import os
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import mlflow
import pytest

from mlops_pipeline.cli import main
from mlops_pipeline.data.batch_checks import BATCH_CHECKS
from mlops_pipeline.data.domain import OVERALL_CHECKS
from mlops_pipeline.deployment.ci_gate import BASELINE_DIR

LOOP_CHECKS = {
    ("dataset_snapshot", "snapshot_matches_content_id"),
    ("training_features", "contract_schema"), ("training_features", "null_rates"),
    ("training_features", "min_rows"), ("training_features", "unique_keys"),
    ("model_version", "eval_floor"), ("model_version", "no_regression"),
    ("model_version", "segment_regression"),
    ("drift_report", "input_drift"), ("drift_report", "prediction_drift"),
    *(("dataset_snapshot", name) for name in BATCH_CHECKS),
    *(("training_features", name) for name in OVERALL_CHECKS),
}


def _cases(path: Path) -> dict[tuple[str, str], ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}


def _loop_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(("MLOPS_", "MLFLOW_", "DAGSTER_"))}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gate_passes_against_the_committed_baseline(tmp_path, monkeypatch, capsys):
    """What CI runs. No registry answers, so the committed baseline is the reference."""
    user_data = tmp_path / "user_data"
    user_data.mkdir()
    monkeypatch.setenv("MLOPS_DATA_DIR", str(user_data))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("MLOPS_DATASET_CONFIG", raising=False)
    junit = tmp_path / "gate.xml"
    environment = _loop_environment()

    code = main(["gate", "--junit-xml", str(junit)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "gate PASSED" in out
    assert "is not reachable" in out
    assert f"reference: baseline {BASELINE_DIR / 'flights_delay.json'}" in out
    cases = _cases(junit)
    assert set(cases) == LOOP_CHECKS | {("model_version", "no_regression_vs_baseline")}
    assert not [c for c in cases.values() if c.find("failure") is not None or c.find("skipped") is not None]
    for asset, check in LOOP_CHECKS:  # the table names every check with its severity
        assert any(line.split()[:2] == [asset, check] for line in out.splitlines()), check
    assert "roc_auc=" in out and "(baseline 0." in out
    assert list(user_data.iterdir()) == []  # the user's data dir was never touched
    assert mlflow.get_tracking_uri() != f"sqlite:///{user_data}"
    assert _loop_environment() == environment  # its sandbox was a configuration, not the environment


@pytest.mark.slow
def test_gate_blocks_a_bad_model_and_reports_it_in_junit(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLOPS_DATASET_CONFIG", raising=False)
    junit = tmp_path / "gate.xml"

    code = main(["gate", "--shuffle-labels", "--junit-xml", str(junit), "--data-dir", str(tmp_path / "d")])

    out = capsys.readouterr().out
    assert code == 1
    assert "gate FAILED" in out and "FAILED model_version/eval_floor" in out
    cases = _cases(junit)
    floor = cases[("model_version", "eval_floor")].find("failure")
    assert floor is not None and floor.get("type") == "ERROR" and "roc_auc" in floor.get("message")
    reference = cases[("model_version", "no_regression_vs_baseline")].find("failure")
    assert reference is not None and "regresses" in reference.get("message")
    # The blocked candidate's downstream never ran: its checks are reported, as skipped.
    for check in ("input_drift", "prediction_drift"):
        assert cases[("drift_report", check)].find("skipped") is not None
    assert cases[("training_features", "contract_schema")].find("failure") is None
    root = ET.parse(junit).getroot()
    assert int(root.get("failures")) == 2 and int(root.get("skipped")) == 2


@pytest.mark.slow
def test_gate_compares_with_the_registry_champion_and_refreshes_a_baseline(
    registry, tmp_path, monkeypatch, capsys
):
    registry.use(monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    baseline = tmp_path / "baseline.json"
    client = mlflow.MlflowClient(registry.tracking_uri)
    before = sorted(int(v.version) for v in client.search_model_versions("name='flights_delay'"))

    code = main(["gate", "--config", str(registry.config), "--write-baseline", "--baseline", str(baseline)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert f"reference: champion v1 of {registry.tracking_uri}" in out
    row = next(line for line in out.splitlines() if "no_regression_vs_champion" in line)
    assert row.split()[2] == "True"
    # Same sample, seed and code as the champion: the candidate scores exactly what it scored.
    written = json.loads(baseline.read_text())
    champion_metrics = mlflow.MlflowClient(registry.tracking_uri).get_run(registry.run_id).data.metrics
    assert written["metrics"]["roc_auc"] == champion_metrics["holdout_roc_auc"]
    assert written["snapshot_id"] == registry.snapshot_id
    assert written["sample"] == {"months": [1, 2, 3], "fraction": 0.12, "seed": 0}
    # The gate trained in its sandbox: the user's registry holds what it held before (the session's
    # registry is shared: other tests may have registered versions beside the champion).
    versions = client.search_model_versions("name='flights_delay'")
    assert sorted(int(v.version) for v in versions) == before


@pytest.mark.slow
def test_gate_on_a_new_dataset_without_a_time_column_first_run_baseline_then_comparison(
    fair, tmp_path, monkeypatch, capsys
):
    """`fair` (statsmodels), no time column, CSV batches landed by the user: the first gate passes on
    the floors and says how to record a baseline; --write-baseline records it; the next gate compares."""
    monkeypatch.setenv("MLOPS_DATA_DIR", str(fair.root))
    for key in ("MLFLOW_TRACKING_URI", "MLOPS_DATASET_CONFIG", "DAGSTER_HOME"):
        monkeypatch.delenv(key, raising=False)
    baseline = tmp_path / "fair_baseline.json"
    args = ["gate", "--config", str(fair.config), "--sample-rows", "4000", "--baseline", str(baseline)]

    assert main(args) == 0
    out = capsys.readouterr().out
    assert "4000 rows of the landed batches" in out and str(fair.root / "landing" / "fair") in out
    assert "reference: none: first gate of this dataset, the metric floors decide" in out
    assert f"--config {fair.config} --sample-rows 4000 --write-baseline" in out
    assert "gate PASSED" in out
    assert not baseline.exists()

    assert main([*args, "--write-baseline"]) == 0
    written = json.loads(baseline.read_text())
    assert written["dataset"] == "fair_affairs"
    assert written["sample"] == {"source": "landed", "rows": 4000, "fraction": None, "seed": 0}
    assert 0.6 <= written["metrics"]["roc_auc"] <= 1
    capsys.readouterr()

    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"reference: baseline {baseline}" in out
    row = next(ln for ln in out.splitlines() if ln.startswith("model_version") and "vs_baseline" in ln)
    assert row.split()[2] == "True"
    # The sample is seeded: the same rows give the same model and the same metrics as recorded.
    auc = written["metrics"]["roc_auc"]
    assert f"roc_auc={auc:.4f} (baseline {auc:.4f})" in row
    assert sorted(p.name for p in (fair.root / "landing" / "fair").iterdir()) == ["fair_1.csv", "fair_2.csv"]
    assert not (fair.root / "mlflow").exists()  # the user's data dir only lent its landed files


def test_gate_needs_landed_data_for_a_new_dataset_and_says_how_to_land_it(fair, monkeypatch, capsys):
    empty = fair.root.parent / "empty_data"
    monkeypatch.setenv("MLOPS_DATA_DIR", str(empty))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    assert main(["gate", "--config", str(fair.config), "--sample-rows", "100"]) == 2
    err = capsys.readouterr().err
    assert "no data landed for dataset 'fair_affairs'" in err
    assert "mlops-pipeline land --from FILE --config" in err


def test_gate_fails_in_seconds_when_the_required_registry_does_not_answer(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("MLOPS_DATASET_CONFIG", raising=False)
    started = time.monotonic()

    code = main(["gate", "--reference", "champion"])

    assert code == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert "--reference champion, but registry" in err and "is not reachable" in err
    assert not (tmp_path / "data").exists()  # nothing landed, nothing trained


@pytest.mark.slow
def test_a_sample_gate_compares_with_the_champion_config_retrained_on_that_sample(
    registry, monkeypatch, capsys
):
    """`gate --sample-rows N` against a champion trained on every landed row, in the default
    registry `materialize` uses (no MLFLOW_TRACKING_URI): the reference is the champion's own
    config retrained on the gate's sample, so a healthy candidate passes and shuffled labels fail."""
    registry.use(monkeypatch)  # MLFLOW_TRACKING_URI unset: the embedded SQLite registry
    args = ["gate", "--config", str(registry.config), "--sample-rows", "3000"]

    assert main(args) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert (f"reference: champion v1 of {registry.tracking_uri}: its recorded config retrained on "
            "this sample") in out
    assert f"trained on snapshot {registry.snapshot_id[:12]}, other rows" in out
    row = next(ln for ln in out.splitlines() if "no_regression_vs_champion" in ln)
    assert row.split()[2] == "True" and "(v1 retrained 0." in row
    assert "gate PASSED" in out

    assert main([*args, "--shuffle-labels"]) == 1
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if "no_regression_vs_champion" in ln)
    assert row.split()[2] == "False"
    assert "FAILED model_version/no_regression_vs_champion: regresses" in out and "gate FAILED" in out


def test_gate_reads_the_registry_materialize_uses_when_mlflow_tracking_uri_is_unset(
    monkeypatch, capsys, tmp_path
):
    data = tmp_path / "data"
    monkeypatch.setenv("MLOPS_DATA_DIR", str(data))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLOPS_DATASET_CONFIG", raising=False)

    assert main(["gate", "--reference", "champion"]) == 2

    err = capsys.readouterr().err
    assert f"--reference champion, but sqlite:///{data / 'mlflow' / 'mlflow.db'} does not exist" in err
    assert "MLFLOW_TRACKING_URI is not set" not in err
    assert not data.exists()  # looked up, not created
