"""What counts as "nothing changed since the champion", on plain values (the CLI and the schedule
end to end: cli/test_materialize_unchanged.py, defs/test_automation.py)."""

from __future__ import annotations

from pathlib import Path

from mlops_pipeline.deployment.unchanged import (
    RUN_TAGS,
    SinceChampion,
    TrainingIdentity,
    differences,
    recorded_identity,
)
from mlops_pipeline.training.manifest import code_digest

SAME = TrainingIdentity("snap" * 16, "cfg", "contract", "code", "lock")


def test_only_an_identical_identity_is_unchanged_and_an_unrecorded_part_counts_as_changed():
    tags = {tag: getattr(SAME, name) for name, tag in RUN_TAGS.items()}
    assert differences(SAME, recorded_identity(tags)) == []
    assert differences(SAME, recorded_identity({**tags, RUN_TAGS["contract"]: "edited"})) == ["contract"]
    # A champion trained before the code digest was recorded: cannot be shown the same, so it trains.
    assert differences(SAME, recorded_identity({k: v for k, v in tags.items() if k != RUN_TAGS["code"]})) \
        == ["code"]
    nothing_landed = TrainingIdentity(None, "cfg", "contract", "code", "lock")
    assert differences(nothing_landed, SAME) == ["snapshot"]


def test_the_reason_names_the_version_and_snapshot_only_when_nothing_changed():
    assert SinceChampion("3", SAME.snapshot, []).reason.startswith(
        f"nothing changed since v3 (snapshot {SAME.snapshot[:12]}, same config")
    assert SinceChampion("3", SAME.snapshot, ["code"]).reason is None


def test_the_code_digest_follows_the_training_code_and_nothing_else(tmp_path: Path):
    package = tmp_path / "pkg"
    (package / "training").mkdir(parents=True)
    (package / "serving").mkdir()
    (package / "training" / "fit.py").write_text("x = 1\n")
    (package / "serving" / "app.py").write_text("y = 1\n")
    before = code_digest(package)
    (package / "serving" / "app.py").write_text("y = 2\n")
    assert code_digest(package) == before
    (package / "training" / "fit.py").write_text("x = 2\n")
    assert code_digest(package) != before
