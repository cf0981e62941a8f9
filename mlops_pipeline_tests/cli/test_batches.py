"""Issue 24, end to end: a corrupt landed batch blocks the loop, the run names the command that
sets it aside, `batches quarantine` does, the next run promotes, `history` shows who set what
aside and why, and `batches restore` brings the batch back (the next run is blocked again)."""

from __future__ import annotations

import pandas as pd
import pytest

from mlops_pipeline.cli import main
from mlops_pipeline.cli.run_output import summarize
from mlops_pipeline.data.batch_index import clear_cache

pytestmark = pytest.mark.slow

BAD = "flights_2013_03.parquet"


def _corrupt(path) -> None:
    df = pd.read_parquet(path)
    idx = df.sample(frac=0.3, random_state=0).index
    df.loc[idx, "carrier"] = "ZZ"  # a carrier the contract has never seen, in 30% of the flights
    df.to_parquet(path, index=False)


def test_a_quarantined_batch_lets_the_next_run_promote_on_record_and_restore_undoes_it(
    data_dir, land, run_loop, capsys, monkeypatch
):
    monkeypatch.delenv("MLOPS_PREDICTIONS_URL", raising=False)
    land(months=(1, 2, 3))
    landing = data_dir / "landing" / "flights"
    _corrupt(landing / BAD)
    clear_cache()

    blocked = summarize(run_loop())
    assert not blocked.ok and "blocked by check dataset_snapshot:batch_unseen_categories" in blocked.decision
    assert f'next: set the batch aside: mlops-pipeline batches quarantine {BAD} --reason "..."' \
        in blocked.lines
    snapshots = {p.name: p.read_bytes() for p in (data_dir / "snapshots").glob("*.parquet")}
    assert len(snapshots) == 1

    assert main(["batches"]) == 0
    out = capsys.readouterr().out
    assert "blocked" in next(line for line in out.splitlines() if BAD in line)
    assert main(["batches", "quarantine", BAD, "--reason", "carrier codes garbled upstream"]) == 0
    capsys.readouterr()
    assert not (landing / BAD).exists()

    clear_cache()
    promoted = summarize(run_loop())
    assert promoted.ok and promoted.decision.startswith("promoted v1 to champion"), promoted.lines
    # The blocked run's snapshot is still there, byte for byte, beside the new one.
    after = {p.name: p.read_bytes() for p in (data_dir / "snapshots").glob("*.parquet")}
    assert len(after) == 2 and all(after[name] == data for name, data in snapshots.items())

    assert main(["history"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if f"batch:{BAD}" in line)
    assert "quarantined" in row and "cli:" in row and "carrier codes garbled upstream" in row
    assert "flights_delay@champion" in out  # the same history as the alias moves

    assert main(["batches", "restore", BAD]) == 0
    assert (landing / BAD).exists()
    assert main(["batches"]) == 0
    out = capsys.readouterr().out
    assert "blocked" in next(line for line in out.splitlines() if BAD in line and "landed" in line)
