"""`materialize` on the champion's own snapshot, config, contract, code and libraries trains nothing;
`--force` trains one version."""

from __future__ import annotations

import mlflow
import pytest

from mlops_pipeline.cli import main
from mlops_pipeline_tests.cli.conftest import Registry
from mlops_pipeline_tests.clone import clone_tree


@pytest.mark.slow
def test_a_rerun_with_nothing_new_registers_nothing_and_force_registers_one(registry, monkeypatch, capsys):
    parent = registry.root.parent
    clone = clone_tree(parent, parent.with_name("r" + "0" * (len(parent.name) - 1)))  # same length
    copy = Registry(clone / "data", registry.config, registry.snapshot_id, registry.run_id)
    copy.use(monkeypatch)
    # Both URIs: the registry URI would otherwise default to whatever `mlflow` was last pointed at.
    client = mlflow.MlflowClient(copy.tracking_uri, registry_uri=copy.tracking_uri)

    def versions() -> list[int]:
        return sorted(int(v.version) for v in client.search_model_versions("name='flights_delay'"))

    before = versions()
    assert main(["materialize"]) == 0
    out = capsys.readouterr().out
    assert f"nothing changed since v1 (snapshot {registry.snapshot_id[:12]}" in out, out
    assert "--force retrains" in out
    assert versions() == before

    assert main(["materialize", "--force"]) == 0, capsys.readouterr().out
    assert versions() == [*before, max(before) + 1]
