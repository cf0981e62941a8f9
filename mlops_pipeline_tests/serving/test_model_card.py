"""Each registered version's description in MLflow is its model card, read through MLflow's API
from the session's tracking server: what it predicts, the training snapshot and period, holdout
metrics next to the champion's, the gate verdict, intended use and known limits; the version keeps
only the tags it is searched by (the manifest's flat tags stay on the training run)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.serving.conftest import MODEL, Stack

pytestmark = pytest.mark.slow


def test_versions_carry_a_model_card_and_only_the_searched_tags(stack: Stack):
    client = MlflowClient(tracking_uri=stack.tracking_uri, registry_uri=stack.tracking_uri)
    spec = load_spec()
    v1, v2 = client.get_model_version(MODEL, "1"), client.get_model_version(MODEL, "2")
    for mv in (v1, v2):
        card = mv.description
        assert card.startswith(f"# {MODEL} v{mv.version}\n")
        assert " ".join(spec.description.split()) in card
        assert f"Snapshot `{mv.tags['snapshot_id']}`" in card
        assert "- Period: 2013-01-01" in card
        assert f"git `{mv.tags['git_sha'][:12]}`" in card and mv.run_id in card
        assert " ".join(spec.intended_use.split()) in card
        assert " ".join(spec.limitations.split()) in card
        assert not [k for k in mv.tags if k.startswith("manifest.")]
        assert {"snapshot_id", "git_sha", "run_id", "gate.status"} <= set(mv.tags)
        # who is paged: on every version and its card, with the runbook
        assert mv.tags["owner"] == spec.owner and f"**Owner:** {spec.owner} (" in card
        assert f"runbook: {spec.runbook_url}" in card
        assert client.get_run(mv.run_id).data.tags["manifest.git_sha"] == mv.tags["git_sha"]
    assert "(no champion yet: floors only)" in v1.description
    assert "**Gate:** passed against champion v1." in v2.description
    assert "| metric | v2 | champion v1 | limit | passed |" in v2.description
    roc = next(line for line in v2.description.splitlines() if line.startswith("| roc_auc |"))
    cells = [c.strip() for c in roc.strip("|").split("|")]
    assert float(cells[1]) == pytest.approx(float(v2.tags["holdout_roc_auc"]), abs=1e-3)
    assert float(cells[2]) > 0.5 and cells[4] == "yes"  # the champion's score on the same rows
    assert v2.tags["gate.champion_version"] == "1" and v1.tags["gate.champion_version"] == "none"
