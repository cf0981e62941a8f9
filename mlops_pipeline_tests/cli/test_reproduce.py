"""`mlops-pipeline reproduce`: a registered version is rebuilt from its manifest, or we say why not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_pipeline.cli import main
from mlops_pipeline.spec import PROJECT_ROOT, load_spec
from mlops_pipeline.training.reproduce import compare_predictions, environment_warnings

pytestmark = pytest.mark.slow


def _manifest_file(registry) -> Path:
    matches = list(registry.root.glob(f"mlflow/artifacts/**/{registry.run_id}/artifacts/manifest.yaml"))
    assert len(matches) == 1, matches
    return matches[0]


def test_registered_version_reproduces_identically(registry, monkeypatch, capsys):
    registry.use(monkeypatch)
    assert main(["reproduce", "champion"]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED flights_delay v1" in out
    assert "bit-identical" in out
    assert f"snapshot {registry.snapshot_id[:12]}" in out and "seed 42" in out
    assert "WARNING: package" not in out and "uv.lock" not in out  # same environment as training


def test_a_different_seed_in_the_manifest_is_detected(registry, monkeypatch, capsys):
    registry.use(monkeypatch)
    path = _manifest_file(registry)
    original = path.read_text()
    manifest = yaml.safe_load(original)
    manifest["seeds"]["model"] = 7
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    try:
        code = main(["reproduce", "1"])
    finally:
        path.write_text(original)
    out = capsys.readouterr().out
    assert code == 1
    assert "NOT REPRODUCED flights_delay v1" in out
    differing = int(out.split("NOT REPRODUCED flights_delay v1: ")[1].split(" of ")[0])
    assert differing > 0
    assert "max abs diff" in out
    # The run's own tag still says 42: the edited manifest is called out, not only its effect.
    assert "manifest.seed.model=42 disagrees with manifest.yaml seed 7" in out


@pytest.mark.parametrize("damage", ["replaced", "missing"])
def test_a_changed_or_missing_snapshot_is_refused(registry, monkeypatch, capsys, damage):
    registry.use(monkeypatch)
    snapshot = registry.root / "snapshots" / f"{registry.snapshot_id}.parquet"
    backup = snapshot.with_suffix(".bak")
    shutil.move(snapshot, backup)
    try:
        if damage == "replaced":
            df = pd.read_parquet(backup)
            df.drop(index=df.index[:10]).to_parquet(snapshot, index=False)
        code = main(["reproduce", "1"])
    finally:
        snapshot.unlink(missing_ok=True)
        shutil.move(backup, snapshot)
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot reproduce" in err
    expected = "hashes to" if damage == "replaced" else "is missing from storage"
    assert expected in err and registry.snapshot_id[:12] in err


def test_unknown_version_is_an_error(registry, monkeypatch, capsys):
    registry.use(monkeypatch)
    assert main(["reproduce", "99"]) == 2
    assert "not found" in capsys.readouterr().err


def test_environment_differences_are_one_warning_each():
    from mlops_pipeline.training.manifest import file_sha256, git_state, package_versions

    manifest = {
        "uv_lock_sha256": "0" * 64,
        "packages": {**package_versions(["numpy", "pandas"]), "scikit-learn": "0.0.1"},
        "git": {"sha": "f" * 40, "dirty": False},
    }
    warnings = environment_warnings(manifest)
    assert len(warnings) == 3, warnings
    assert any("uv.lock" in w and file_sha256(PROJECT_ROOT / "uv.lock")[:12] in w for w in warnings)
    assert any(w.startswith("package scikit-learn: recorded 0.0.1, installed 1.") for w in warnings)
    assert any("git SHA" in w and git_state()["sha"] in w for w in warnings)


def test_compare_predictions_measures_the_difference():
    same = compare_predictions([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert same.identical and same.max_abs_diff == 0.0
    diff = compare_predictions([0.1, 0.2, 0.3, 0.4], [0.1, 0.25, 0.3, 0.4])
    assert not diff.identical
    assert diff.differing_rows == 1 and diff.share_differing == 0.25
    assert diff.max_abs_diff == pytest.approx(0.05)
    assert compare_predictions([0.1, 0.2], [0.1, 0.2000001], atol=1e-3).identical


def test_seed_matters_only_when_the_model_draws_random_numbers(flights, seeded_config):
    """What docs/ci.md claims: the committed spec trains the same model whatever the seed."""
    from mlops_pipeline.data.preparation import prepare
    from mlops_pipeline.data.snapshots import canonicalize
    from mlops_pipeline.training.fit import fit_and_score

    df = canonicalize(flights[flights["month"] == 1].sample(frac=0.1, random_state=0))
    for config, seed_matters in [(PROJECT_ROOT / "data/configs/flights.yaml", False), (seeded_config, True)]:
        spec = load_spec(str(config))
        frame = prepare(df, spec).frame
        a, b, c = (fit_and_score(frame, spec, seed).scores for seed in (42, 42, 7))
        assert compare_predictions(a, b).identical  # same seed, same data: bit-identical
        assert compare_predictions(a, c).identical is (not seed_matters), config
