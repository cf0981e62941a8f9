"""`explain --snapshot ID`: the id becomes a path under the store, so it is checked first; a bad
one is a one-line error (exit 2), never a file from outside the data dir, never a traceback."""

from __future__ import annotations

import json

import pytest

from mlops_pipeline.cli import main


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """A data dir, and beside it a JSON file a traversal would reach: `<data>/snapshots/../../x`."""
    data = tmp_path / "data"
    (data / "snapshots").mkdir(parents=True)
    (tmp_path / "secret.batches.json").write_text(json.dumps({"rows": 1, "secret": "outside"}))
    monkeypatch.setenv("MLOPS_DATA_DIR", str(data))
    monkeypatch.delenv("MLOPS_STORAGE_ROOT", raising=False)
    monkeypatch.delenv("MLOPS_PREDICTIONS_URL", raising=False)
    (tmp_path / "mlflow.db").touch()  # a registry is there (explain refuses to read a missing one)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


@pytest.mark.parametrize("json_flag", [["--json"], []])
@pytest.mark.parametrize("snapshot", ["../../secret", "../secret", "/etc/passwd", "ABC", "x" * 65])
def test_explain_refuses_a_snapshot_id_that_is_not_one(outside, capsys, snapshot, json_flag):
    assert main(["explain", "--snapshot", snapshot, *json_flag]) == 2
    out, err = capsys.readouterr()
    assert "outside" not in out + err and out == ""
    assert err.startswith("error: snapshot id") and err.count("\n") == 1, err
    assert "hex" in err
