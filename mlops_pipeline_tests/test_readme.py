"""Every command in the README's ```bash blocks is run by some test, as a subprocess.

`COVERED` maps each command (comments stripped, whitespace collapsed) to the test that runs it and
to words that test's file must contain (the command as the test spells it). A README command
missing from the table fails `test_every_readme_command_is_run_by_a_test`: add the test that runs
it (here, when no other file fits; `slow` when it materializes the loop) and its row.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline_tests.conftest import fresh_env

BIN = Path(sys.executable).parent
README = PROJECT_ROOT / "README.md"
LOOP_COMMANDS = "mlops_pipeline_tests/cli/test_loop_commands.py"
THIS = "mlops_pipeline_tests/test_readme.py"
BYOD = "mlops_pipeline_tests/test_bring_your_own_data.py"
BATCHES = "mlops_pipeline_tests/data/test_quarantine.py"
ANY_MODEL = "mlops_pipeline_tests/defs/test_any_model_loop.py"
EXPORT_FAIR = ('uv run python -c "import statsmodels.api as sm; '
               "sm.datasets.fair.load_pandas().data.to_csv('fair.csv', index=False)\"")

#: command -> (test file, test function, words the file must contain); None: run by CI itself.
COVERED: dict[str, tuple[str, str, tuple[str, ...]] | None] = {
    "uv run mlops-pipeline up": (
        LOOP_COMMANDS, "test_up_in_the_background_stops_both_servers_on_sigterm", ('"up"', "--port")),
    "uv run pytest": None,  # the suite itself: .ci/run runs exactly this
    "uv run mlops-pipeline up --profile production": (
        "mlops_pipeline_tests/production/test_topology.py",
        "test_up_production_trains_through_the_daemon_and_serves_through_haproxy",
        ('"up", "--profile", "production"',)),
    "uv run mlops-pipeline land --months 4": (
        LOOP_COMMANDS, "test_land_up_materialize_and_a_blocked_materialize_talk_like_a_tool",
        ('"land", "--months", "4"',)),
    "uv run mlops-pipeline materialize": (
        LOOP_COMMANDS, "test_land_up_materialize_and_a_blocked_materialize_talk_like_a_tool",
        ('_run("materialize", env=env)',)),
    "uv run mlops-pipeline materialize --shuffle-labels": (
        LOOP_COMMANDS, "test_land_up_materialize_and_a_blocked_materialize_talk_like_a_tool",
        ('"materialize", "--shuffle-labels"',)),
    "uv run mlops-pipeline materialize --force": (
        "mlops_pipeline_tests/cli/test_materialize_unchanged.py",
        "test_a_rerun_with_nothing_new_registers_nothing_and_force_registers_one",
        ('main(["materialize", "--force"])',)),
    "export DAGSTER_HOME=$PWD/data/dagster_home": (
        THIS, "test_headless_dagster_job_execute_runs_the_loop", ('"DAGSTER_HOME"',)),
    "uv run dagster job execute -j mlops_loop -m mlops_pipeline.defs.definitions": (
        THIS, "test_headless_dagster_job_execute_runs_the_loop",
        ('"job", "execute", "-j", "mlops_loop", "-m", "mlops_pipeline.defs.definitions"',)),
    "uv run dg check defs": (THIS, "test_dg_check_defs_loads_the_code_location", ('"check", "defs"',)),
    "uv run dagster dev -w workspace.yaml": (
        "mlops_pipeline_tests/ui/test_dagster_ui.py",
        "test_materialize_all_from_the_asset_graph_and_open_the_drift_report", ('"dev"', "workspace.yaml")),
    "uv run mlops-pipeline serve": (
        "mlops_pipeline_tests/defs/test_simulation.py",
        "test_traffic_and_feedback_flow_back_into_a_gated_retraining", ('"serve"',)),
    "uv run mlops-pipeline simulate --months 4 8 12": (
        THIS, "test_simulate_replays_a_month_through_a_server_it_starts", ('"simulate", "--months"',)),
    "uv run mlops-pipeline simulate --months 4 8 12 --label-share 0.5 --label-lag-days 1": (
        THIS, "test_simulate_replays_a_month_through_a_server_it_starts",
        ('"--label-share", "0.5", "--label-lag-days", "1"',)),
    "uv run mlops-pipeline labels import data/labeling/2013-04-01.csv": (
        "mlops_pipeline_tests/monitoring/test_labeling.py", "test_cli_imports_a_csv",
        ('main(["labels", "import", str(path)])',)),
    "uv run mlops-pipeline contract infer --config data/configs/my_data.yaml": (
        "mlops_pipeline_tests/cli/conftest.py", "fair", ('"contract", "infer", "--config"',)),
    # "Bring your own data": the walkthrough, each dataset of it run as a user would.
    EXPORT_FAIR: (BYOD, "test_a_csv_on_disk_becomes_a_served_gated_champion",
                  ("sm.datasets.fair.load_pandas().data.to_csv('fair.csv', index=False)",)),
    "uv run mlops-pipeline land --from fair.csv --config data/configs/fair.yaml": (
        BYOD, "test_a_csv_on_disk_becomes_a_served_gated_champion",
        ('"land", "--from"', '"data/configs/fair.yaml"')),
    "uv run mlops-pipeline materialize --config data/configs/fair.yaml": (
        BYOD, "test_a_csv_on_disk_becomes_a_served_gated_champion", ('"materialize", "--config"',)),
    "uv run mlops-pipeline serve --config data/configs/fair.yaml": (
        BYOD, "test_a_csv_on_disk_becomes_a_served_gated_champion", ('"serve", "--config"',)),
    "uv run mlops-pipeline gate --config data/configs/fair.yaml --sample-rows 3000": (
        BYOD, "test_a_csv_on_disk_becomes_a_served_gated_champion",
        ('"gate", "--config"', '"--sample-rows", "3000"')),
    # Quarantining a batch (issue 24).
    "uv run mlops-pipeline batches": (
        BATCHES, "test_a_corrupt_batch_is_quarantined_on_record_and_restored", ('main(["batches"])',)),
    "uv run mlops-pipeline batches quarantine flights_2013_03.parquet "
    '--reason "carrier codes garbled upstream"': (
        BATCHES, "test_a_corrupt_batch_is_quarantined_on_record_and_restored",
        ('"batches", "quarantine", BAD, "--reason", "carrier codes garbled upstream"',
         'BAD = "flights_2013_03.parquet"')),
    "uv run mlops-pipeline batches restore flights_2013_03.parquet": (
        BATCHES, "test_a_corrupt_batch_is_quarantined_on_record_and_restored",
        ('"batches", "restore", BAD',)),
    # "Bring your own model": a model trained outside the loop, through the same gate (issue 26).
    "uv run mlops-pipeline promote 1 --model-name fair_notebook --config data/configs/fair.yaml": (
        ANY_MODEL, "test_foreign_xgboost_and_pyfunc_models_pass_the_same_gate_are_served_and_not_reproduced",
        ('"promote", "1", "--model-name", "fair_notebook", "--config"',)),
    "uv run mlops-pipeline reproduce champion --config data/configs/fair.yaml": (
        ANY_MODEL, "test_foreign_xgboost_and_pyfunc_models_pass_the_same_gate_are_served_and_not_reproduced",
        ('"reproduce", "champion", "--config"',)),
    # Segments (issue 27): a draft `segments:` section from the landed data.
    "uv run mlops-pipeline segments suggest": (
        "mlops_pipeline_tests/cli/test_segments_suggest.py",
        "test_segments_suggest_proposes_columns_with_few_values_and_numeric_bands",
        ('main(["segments", "suggest"])',)),
}


def readme_commands(text: str) -> list[str]:
    """Commands of the ```bash blocks: comments dropped, continuation lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(" ".join(line.split()))
    return commands


def test_readme_commands_are_extracted_as_a_user_would_type_them():
    text = "```bash\nuv run a --x 1   # note\n# only a comment\nuv run b \\\n  --y\n```\n```yaml\nc: 1\n```"
    assert readme_commands(text) == ["uv run a --x 1", "uv run b --y"]


def test_every_readme_command_is_run_by_a_test():
    commands = readme_commands(README.read_text())
    assert "uv run dagster job execute -j mlops_loop -m mlops_pipeline.defs.definitions" in commands
    assert not any("asset materialize --select" in c for c in commands)  # fails on partitioned assets
    missing = [c for c in commands if c not in COVERED]
    assert not missing, f"README commands no test runs (add a test and a COVERED row): {missing}"
    stale = [c for c in COVERED if c not in commands]
    assert not stale, f"COVERED rows for commands the README no longer has: {stale}"
    for command, where in COVERED.items():
        if where is None:
            continue
        path, test, words = where
        source = (PROJECT_ROOT / path).read_text()
        assert re.search(rf"^def {test}\(", source, flags=re.M), f"{command}: no {test} in {path}"
        for word in words:
            assert word in source, f"{command}: {path} does not contain {word!r}"


# ---- commands no other test runs --------------------------------------------------------------
def _run(argv: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=timeout)


def test_dg_check_defs_loads_the_code_location(tmp_path):
    proc = _run([str(BIN / "dg"), "check", "defs"], fresh_env(tmp_path / "data"), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


@pytest.mark.slow
def test_headless_dagster_job_execute_runs_the_loop(tmp_path):
    """`export DAGSTER_HOME=...` then `dagster job execute -j mlops_loop -m mlops_pipeline.defs.definitions`
    on a fresh data dir: the whole loop, recorded in that instance."""
    import dagster as dg

    data = tmp_path / "data"
    home = data / "dagster_home"
    env = fresh_env(data, DAGSTER_HOME=str(home))
    landed = _run([str(BIN / "mlops-pipeline"), "land", "--months", "1", "2", "--sample", "0.06"], env)
    assert landed.returncode == 0, landed.stderr
    home.mkdir(parents=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")  # what `up` sets up

    dagster = str(BIN / "dagster")
    proc = _run([dagster, "job", "execute", "-j", "mlops_loop", "-m", "mlops_pipeline.defs.definitions"], env)

    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    old = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            assert [(r.job_name, r.status) for r in runs] == [("mlops_loop", dg.DagsterRunStatus.SUCCESS)]
            assert instance.get_latest_materialization_event(dg.AssetKey("champion_model")) is not None
    finally:
        if old is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old


@pytest.mark.slow
def test_simulate_replays_a_month_through_a_server_it_starts(tmp_path):
    """`mlops-pipeline simulate --months ...` after `up`: it starts a server, replays, prints its table."""
    env = fresh_env(tmp_path / "data")
    cli = str(BIN / "mlops-pipeline")
    assert _run([cli, "land", "--months", "1", "2", "3", "--sample", "0.06"], env).returncode == 0
    up = _run([cli, "up", "--no-ui"], env)
    assert up.returncode == 0, up.stdout + up.stderr[-3000:]

    # With the delayed-label flags of the README's second simulate line: half the answers get a
    # label, a month late (so none within this one month: the estimate stands alone).
    argv = [cli, "simulate", "--months", "4", "--sample", "0.01", "--label-delay", "0",
            "--label-share", "0.5", "--label-lag-days", "1"]
    proc = _run(argv, env, timeout=900)

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "started a serving process at http://127.0.0.1:" in proc.stdout
    table = proc.stdout[proc.stdout.index("month  sent"):].splitlines()
    row = table[1].split()
    assert row[0] == "4" and int(row[1]) > 0 and row[2] == "0"  # sent; labelled: not yet
    assert table[0].split()[-3:] == ["est.", "roc_auc", "realized"]
    assert 0.4 < float(row[-2]) < 1.0 and row[-1] == "—"  # an estimate, no realized metric yet
    assert "labels still to come (--label-lag-days 1)" in proc.stdout
    assert " - DEBUG - " not in proc.stdout + proc.stderr  # Dagster's event log only with --verbose
