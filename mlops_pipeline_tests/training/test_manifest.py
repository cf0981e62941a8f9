"""An honest manifest: the config and contract a run used are hashed, and count as dirty when git
does not pin them; reproduce names one that changed since."""

from __future__ import annotations

import uuid

import pytest

from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline.training.manifest import (
    build_manifest,
    file_sha256,
    git_state,
    manifest_tags,
    uncommitted,
)
from mlops_pipeline.training.reproduce import environment_warnings

COMMITTED = PROJECT_ROOT / "data/configs/flights.yaml"


@pytest.fixture
def untracked_config():
    """A config inside the checkout that git does not track (a user's new dataset)."""
    path = PROJECT_ROOT / "data/configs" / f"_untracked_{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(COMMITTED.read_text())
    yield path
    path.unlink(missing_ok=True)


def test_an_untracked_or_outside_input_makes_the_tree_dirty(untracked_config, tmp_path):
    if git_state()["sha"] == "unknown":
        pytest.fail("these tests need the git checkout the project lives in")
    assert uncommitted(COMMITTED) is None
    assert uncommitted(untracked_config) == "untracked"
    outside = tmp_path / "mine.yaml"
    outside.write_text("name: x\n")
    assert uncommitted(outside) == "outside the checkout"

    state = git_state((COMMITTED, untracked_config))
    assert state["dirty"] is True
    assert state["uncommitted_inputs"] == {f"data/configs/{untracked_config.name}": "untracked"}


def test_the_manifest_records_each_input_file_by_hash(untracked_config):
    manifest = build_manifest(
        snapshot_id="s" * 64, seeds={"model": 1}, config={}, dagster_run_id="r",
        inputs={"config": untracked_config, "contract": PROJECT_ROOT / "data/contracts/flights.yaml"},
    )
    assert manifest["inputs"]["config"] == {
        "path": f"data/configs/{untracked_config.name}", "sha256": file_sha256(untracked_config),
    }
    assert manifest["inputs"]["contract"]["path"] == "data/contracts/flights.yaml"
    assert manifest["git"]["dirty"] is True
    tags = manifest_tags(manifest)
    assert tags["manifest.config_sha256"] == file_sha256(untracked_config)
    assert tags["manifest.git_dirty"] == "true"


def test_reproduce_warns_when_the_config_changed_since_training(untracked_config):
    manifest = build_manifest(snapshot_id="s" * 64, seeds={"model": 1}, config={},
                              dagster_run_id="r", inputs={"config": untracked_config})
    assert not [w for w in environment_warnings(manifest) if "config file" in w]
    untracked_config.write_text(untracked_config.read_text() + "# edited\n")
    [line] = [w for w in environment_warnings(manifest) if "config file" in w]
    assert f"config file data/configs/{untracked_config.name} changed since training" in line
    untracked_config.unlink()
    [line] = [w for w in environment_warnings(manifest) if "config file" in w]
    assert line.endswith("is missing now")
