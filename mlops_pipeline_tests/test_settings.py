"""Process settings: read once from a mapping, an isolated value that owes nothing to the environment,
and the environment a child process is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_pipeline.settings import DEFAULT_CRON, Settings
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG, PROJECT_ROOT


def test_settings_read_from_a_mapping_with_defaults_for_what_is_unset():
    s = Settings.from_env({"MLOPS_DATA_DIR": "/tmp/d", "MLFLOW_TRACKING_URI": "http://h:5000",
                           "MLOPS_RELEASE_GUARD_SECONDS": "7", "MLOPS_PROFILE": "Production"})
    assert s.data_root == Path("/tmp/d").resolve() and s.tracking_uri == "http://h:5000"
    assert s.release_guard_seconds == 7 and s.profile == "production"
    assert s.retrain_cron == DEFAULT_CRON and s.dataset_config == DEFAULT_DATASET_CONFIG
    assert s.environment == frozenset()  # a mapping is not this process's environment
    empty = Settings.from_env({})
    assert empty.data_root == (PROJECT_ROOT / "data").resolve()
    assert empty.dagster_home_dir == empty.data_root / "dagster_home"


def test_a_malformed_number_names_its_variable():
    with pytest.raises(ValueError, match="MLOPS_RELEASE_GUARD_SECONDS='soon'"):
        Settings.from_env({"MLOPS_RELEASE_GUARD_SECONDS": "soon"})


def test_the_process_environment_is_read_once_and_remembered_by_name(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://registry:5000")
    s = Settings.from_env()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    assert s.tracking_uri == "http://registry:5000" and "MLFLOW_TRACKING_URI" in s.environment
    assert "MLFLOW_TRACKING_URI" not in s.replace(tracking_uri="").environment


def test_isolated_settings_keep_everything_under_their_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://users-registry:5000")
    monkeypatch.setenv("MLOPS_STORAGE_ROOT", "s3://users-bucket")
    monkeypatch.setenv("MLOPS_PREDICTIONS_URL", "postgresql://users-store")
    s = Settings.isolated(tmp_path, "cfg.yaml")
    assert s.environment == frozenset() and s.profile == "local"
    for value in (s.data_dir, s.storage_root, s.tracking_uri, s.predictions_url, s.artifact_location,
                  s.dagster_home):
        assert str(tmp_path.resolve()) in value
    assert not s.mlflow_ui_url and not s.serving_url and not s.alert_webhook_url


def test_a_child_process_gets_the_settings_on_top_of_its_base_environment(tmp_path):
    s = Settings.from_env({}).with_dataset("data/configs/flights.yaml").replace(mlflow_ui_url="http://ui")
    env = s.child_env({"PATH": "/bin", "MLOPS_MLFLOW_UI_URL": "stale"}, EXTRA="1")
    assert env["PATH"] == "/bin" and env["EXTRA"] == "1" and env["MLOPS_MLFLOW_UI_URL"] == "http://ui"
    assert Path(env["MLOPS_DATASET_CONFIG"]).is_absolute()
