"""A bad dataset config is one line naming the field and the fix, before anything lands or starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from mlops_pipeline.spec import PROJECT_ROOT

#: What starting Dagster, MLflow or the model would import: a config error must come before any.
HEAVY = {"dagster", "mlflow", "sklearn", "pandas", "pyarrow", "evidently"}
IMPORT_TIME = "import time:"


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlops_pipeline.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def _split_import_log(stderr: str) -> tuple[list[str], set[str]]:
    """stderr of a run under PYTHONPROFILEIMPORTTIME: its own lines, and the top-level packages
    the run imported (`python -X importtime`'s log)."""
    lines = stderr.splitlines()
    imported = {ln.rsplit("|", 1)[1].strip().split(".")[0] for ln in lines if ln.startswith(IMPORT_TIME)}
    return [ln for ln in lines if not ln.startswith(IMPORT_TIME)], imported


@pytest.mark.parametrize("command", [["up", "--no-ui"], ["materialize"], ["land"], ["gate"]])
def test_a_config_without_a_required_field_fails_at_once_in_one_line(tmp_path, command):
    doc = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    del doc["target"]["name"]
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump(doc))
    data = tmp_path / "data"
    env = {**os.environ, "MLOPS_DATA_DIR": str(data), "DAGSTER_HOME": str(tmp_path / "home"),
           "PYTHONPROFILEIMPORTTIME": "1"}

    done = _cli(*command, "--config", str(config), env=env)
    assert done.returncode == 2
    lines, imported = _split_import_log(done.stderr)
    assert lines == [f"error: {config}: target.name: required — name of the target column the model learns"]
    assert "Traceback" not in done.stdout + done.stderr
    # Nothing landed, no Dagster instance, no run: the check comes first, before Dagster, MLflow,
    # pandas or the model library is even imported (so it answers at once, whatever the machine).
    assert not data.exists() and not (tmp_path / "home").exists()
    assert "mlops_pipeline" in imported and "yaml" in imported  # the log is read right
    assert not imported & HEAVY, sorted(imported & HEAVY)


def test_a_missing_config_file_is_one_line_too(tmp_path):
    done = _cli("materialize", "--config", str(tmp_path / "nope.yaml"), env=dict(os.environ))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {tmp_path / 'nope.yaml'}: dataset config not found — pass --config PATH or set "
        "MLOPS_DATASET_CONFIG"
    ]


def test_a_relative_config_is_read_from_the_working_directory_by_every_command(tmp_path):
    """A user's own config beside their data, named as `--config my.yaml` from their folder: the
    up-front check, `land --from` and `segments suggest` all read that file (they once
    looked for it under the project's folder: "not found", or a traceback)."""
    import statsmodels.api as sm

    sm.datasets.fair.load_pandas().data.to_csv(tmp_path / "fair.csv", index=False)
    (tmp_path / "my.yaml").write_text((PROJECT_ROOT / "data/configs/fair.yaml").read_text())
    env = {**os.environ, "MLOPS_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("MLOPS_DATASET_CONFIG", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlops_pipeline.cli", *args, "--config", "my.yaml"],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)

    landed = run("land", "--from", "fair.csv")
    assert landed.returncode == 0, landed.stderr
    assert "landed " in landed.stdout
    suggested = run("segments", "suggest")
    assert suggested.returncode == 0, suggested.stderr
    assert "paste it into my.yaml" in suggested.stdout
    assert "religious" in yaml.safe_load(suggested.stdout)["segments"]["columns"]

    doc = yaml.safe_load((tmp_path / "my.yaml").read_text())
    del doc["target"]["name"]
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(doc))
    broken = run("materialize")
    assert broken.returncode == 2
    assert broken.stderr.splitlines() == [
        "error: my.yaml: target.name: required — name of the target column the model learns"]


def test_config_is_resolved_once_by_main_for_every_command(tmp_path, monkeypatch):
    """One home for `--config` (`cli.resolve_config`): the path as typed is kept for messages, the
    absolute one (from the working directory) is what the command and its settings read."""
    import argparse

    from mlops_pipeline.cli import build_parser, resolve_config
    from mlops_pipeline.settings import Settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLOPS_DATASET_CONFIG", raising=False)
    default = Settings.from_env()
    args = build_parser().parse_args(["labels", "import", "l.csv", "--config", "my.yaml"])
    settings = resolve_config(args, default)
    assert args.config == settings.dataset_config == str(tmp_path / "my.yaml")
    assert args.config_as_typed == "my.yaml"
    without = build_parser().parse_args(["labels", "import", "l.csv"])
    assert resolve_config(without, default) == default and without.config is None
    assert resolve_config(argparse.Namespace(), default) == default  # a command without --config


# ---- a config naming a column the data lacks (issue 24 item 3) -----------------------------------
def _config(tmp_path, change, base: str = "data/configs/flights.yaml"):
    doc = yaml.safe_load((PROJECT_ROOT / base).read_text())
    change(doc)
    config = tmp_path / "wrong.yaml"
    config.write_text(yaml.safe_dump(doc))
    return config


def _env(tmp_path, data) -> dict:
    return {**os.environ, "MLOPS_DATA_DIR": str(data), "DAGSTER_HOME": str(tmp_path / "home"),
            "MLFLOW_TRACKING_URI": ""}


def _written(data) -> set[str]:
    return {str(p.relative_to(data)) for p in data.rglob("*") if p.is_file()}


def _rename_target(doc: dict) -> None:
    doc["target"]["name"] = "arr_dely"


def _rename_feature(doc: dict) -> None:
    doc["features"]["categorical"] = ["carrier", "origin", "dset"]


@pytest.mark.parametrize("command", [["materialize"], ["contract", "infer", "--force"], ["gate"]])
@pytest.mark.parametrize("change, expected", [
    (_rename_target, "target.name: 'arr_dely' is not a column of the landed data"),
    (_rename_feature, "features.categorical: 'dset' is not a column of the landed data"),
], ids=["target", "feature"])
def test_a_column_the_landed_data_lacks_fails_at_once_in_one_line(tmp_path, land, data_dir, command,
                                                                  change, expected):
    land(months=(1,), sample=0.02)
    before = _written(data_dir)
    config = _config(tmp_path, change, "data/configs/flights_regression.yaml")
    if command[0] == "contract":
        command = [*command, "--out", str(tmp_path / "contract.yaml")]

    done = _cli(*command, "--config", str(config), env=_env(tmp_path, data_dir))

    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr
    assert expected in lines[0] and f"{config}:" in lines[0]
    closest = "closest: 'arr_delay'" if change is _rename_target else "closest: 'dest'"
    assert closest in lines[0]
    # Nothing written: no run, no registry, no contract, nothing new in the data dir.
    assert _written(data_dir) == before
    assert not (tmp_path / "home").exists() and not (tmp_path / "contract.yaml").exists()


def test_land_refuses_a_config_whose_feature_the_data_lacks_before_landing(tmp_path):
    data = tmp_path / "data"
    config = _config(tmp_path, _rename_feature)

    done = _cli("land", "--months", "1", "--config", str(config), env=_env(tmp_path, data))

    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {config}: features.categorical: 'dset' is not a column of the NYC flights data "
        f"(closest: 'dest') — its columns: " + done.stderr.split("— its columns: ", 1)[1].strip()]
    assert not data.exists() or not _written(data)


def test_f1_on_a_multi_class_target_fails_before_anything_runs(tmp_path):
    data = tmp_path / "data"
    (data / "landing" / "grades").mkdir(parents=True)
    rows = 60
    frame = "x,size,grade\n" + "".join(f"{i},{i % 7},{'abc'[i % 3]}\n" for i in range(rows))
    (data / "landing" / "grades" / "b1.csv").write_text(frame)
    config = tmp_path / "grades.yaml"
    config.write_text(yaml.safe_dump({
        "name": "grades", "task": "classification",
        "source": {"path": "landing/grades/*.csv", "format": "csv"},
        "target": {"name": "grade"}, "features": {"numerical": ["x", "size"]},
        "contract": str(tmp_path / "grades_contract.yaml"),
        "gate": {"f1": {"floor": 0.1}},
    }))
    before = _written(data)

    for command in (["materialize"], ["contract", "infer"]):
        done = _cli(*command, "--config", str(config), env=_env(tmp_path, data))
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.splitlines() == [
            f"error: {config}: gate.f1: gate metric 'f1' needs a binary target; this one has 3 "
            "classes: use log_loss, macro_f1, accuracy or roc_auc (one-vs-rest) (counted in the "
            f"landed data ({data / 'landing' / 'grades' / '*.csv'}))"]
        assert _written(data) == before and not (tmp_path / "home").exists()
        assert not (tmp_path / "grades_contract.yaml").exists()
