"""Quarantining a landed batch (issue 24): `batches` lists each landed file with its check status;
`batches quarantine FILE --reason` moves it out of the snapshot's inputs (never deleted, snapshots
untouched), on record in the alias history; `batches restore FILE` brings it back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from mlops_pipeline.cli import main
from mlops_pipeline.data.batch_index import CACHE_ROWS, clear_cache
from mlops_pipeline.data.landing_snapshot import take_snapshot
from mlops_pipeline.data.quarantine import (
    QuarantineError,
    list_batches,
    quarantine,
    quarantine_folder,
    restore,
)
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.deployment.history import AliasHistory
from mlops_pipeline.spec import PROJECT_ROOT, load_spec

BAD = "flights_2013_03.parquet"


def corrupt(path: Path) -> None:
    """30% of the batch's flights on a carrier and to an airport the contract has never seen."""
    df = pd.read_parquet(path)
    idx = df.sample(frac=0.3, random_state=0).index
    df.loc[idx, "carrier"] = "ZZ"
    df.loc[idx, "dest"] = "XXX"
    df.to_parquet(path, index=False)


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def landed(data_dir, land, monkeypatch) -> Path:
    monkeypatch.delenv("MLOPS_PREDICTIONS_URL", raising=False)
    monkeypatch.delenv("MLOPS_STORAGE_ROOT", raising=False)
    land(months=(1, 2, 3), sample=0.03)
    corrupt(data_dir / "landing" / "flights" / BAD)
    clear_cache()
    return data_dir


def test_a_corrupt_batch_is_quarantined_on_record_and_restored(landed, capsys):
    spec = load_spec(PROJECT_ROOT / "data/configs/flights.yaml")
    storage = Storage(root=str(landed))
    blocked = take_snapshot(spec, storage, CACHE_ROWS)
    assert {f.batch for f in blocked.findings["batch_unseen_categories"]} == {BAD}
    snapshots_before = _files(landed / "snapshots")
    assert snapshots_before

    # `batches` lists every landed file with its status, as the last snapshot found them.
    assert main(["batches"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if BAD in x)
    assert "landed" in line and "blocked" in line and "carrier" in out
    assert "flights_2013_01.parquet" in out and "as the last run found them" in out
    assert "mlops-pipeline batches quarantine FILE" in out

    # Quarantine by command: moved (same bytes), out of the snapshot's inputs, on record.
    moved_bytes = (landed / "landing" / "flights" / BAD).read_bytes()
    assert main(["batches", "quarantine", BAD, "--reason", "carrier codes garbled upstream"]) == 0
    assert "quarantined flights_2013_03.parquet" in capsys.readouterr().out
    held = Path(quarantine_folder(spec, storage)) / BAD
    assert held.read_bytes() == moved_bytes and not (landed / "landing" / "flights" / BAD).exists()
    clear_cache()
    proceeds = take_snapshot(spec, storage, CACHE_ROWS)
    assert proceeds.batches == 2 and not any(proceeds.findings.values())
    assert proceeds.id != blocked.id
    assert {k: v for k, v in _files(landed / "snapshots").items() if k in snapshots_before} \
        == snapshots_before  # snapshots already written stay untouched

    assert main(["history"]) == 0
    out = capsys.readouterr().out
    row = next(x for x in out.splitlines() if f"batch:{BAD}" in x)
    assert "landed" in row and "quarantined" in row and "carrier codes garbled upstream" in row
    assert "cli:" in row
    assert main(["batches", "--json"]) == 0
    listed = {b["name"]: b for b in json.loads(capsys.readouterr().out)["batches"]}
    assert listed[BAD]["state"] == "quarantined"
    assert listed[BAD]["event"]["reason"] == "carrier codes garbled upstream"
    assert listed["flights_2013_01.parquet"]["status"] == "ok"

    # The same content landed again by `land --from` stays out: it is quarantined.
    from mlops_pipeline.data.landing import land_files

    again_src = landed.parent / "resent.parquet"
    again_src.write_bytes(moved_bytes)
    result = land_files(again_src, spec, storage.landing_glob(spec))
    assert result.written == [] and "quarantined batch" in result.notes[-1]
    assert not list((landed / "landing" / "flights").glob("resent*"))

    # Refusals move nothing.
    assert main(["batches", "quarantine", BAD, "--reason", "again"]) == 2
    assert "already quarantined" in capsys.readouterr().err
    assert main(["batches", "quarantine", "nope.parquet", "--reason", "x"]) == 2
    assert "not a landed batch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["batches", "quarantine", "flights_2013_01.parquet"])  # --reason is required
    capsys.readouterr()

    # Restore brings it back; the next snapshot is the blocked one again.
    assert main(["batches", "restore", BAD, "--reason", "fixed upstream? no: re-checking"]) == 0
    assert f"restored {BAD}" in capsys.readouterr().out
    assert (landed / "landing" / "flights" / BAD).read_bytes() == moved_bytes and not held.exists()
    clear_cache()
    again = take_snapshot(spec, storage, CACHE_ROWS)
    assert again.id == blocked.id and not again.created
    events = [e for e in AliasHistory().events(model=spec.name) if e.alias == f"batch:{BAD}"]
    assert [(e.from_version, e.to_version) for e in events] == [("landed", "quarantined"),
                                                                 ("quarantined", "landed")]
    assert main(["batches"]) == 0
    assert "blocked" in next(x for x in capsys.readouterr().out.splitlines() if BAD in x)


def test_quarantine_needs_a_reason_and_a_landed_file(landed):
    spec = load_spec(PROJECT_ROOT / "data/configs/flights.yaml")
    storage = Storage(root=str(landed))
    history = AliasHistory()
    with pytest.raises(QuarantineError, match="reason"):
        quarantine(spec, storage, BAD, "  ", history)
    with pytest.raises(QuarantineError, match="not a quarantined batch"):
        restore(spec, storage, BAD, history)
    assert history.events(model=spec.name) == []
    # Before any run, `list_batches` checks the files itself.
    statuses, source = list_batches(spec, storage, history)
    assert source.startswith("checked now")
    assert {b.name: b.status for b in statuses}[BAD] == "blocked"
    history.close()


def test_quarantine_and_restore_on_s3(s3_storage, flights, monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    spec = load_spec(PROJECT_ROOT / "data/configs/flights.yaml")
    for month in (1, 2):
        batch = flights[flights["month"] == month].head(50)
        s3_storage.write_landing(spec, f"flights_2013_{month:02d}.parquet", batch)
    history = AliasHistory(f"sqlite:///{tmp_path / 'history.db'}")
    event = quarantine(spec, s3_storage, "flights_2013_02.parquet", "replayed feed", history)
    assert event.reason == "replayed feed"
    landed = s3_storage.list_uris(s3_storage.landing_glob(spec))
    assert [u.rsplit("/", 1)[1] for u in landed] == ["flights_2013_01.parquet"]
    held = f"{quarantine_folder(spec, s3_storage)}/flights_2013_02.parquet"
    assert pd.read_parquet(__import__("io").BytesIO(s3_storage.read_bytes(held))).shape[0] == 50
    restore(spec, s3_storage, "flights_2013_02.parquet", history)
    assert len(s3_storage.list_uris(s3_storage.landing_glob(spec))) == 2
    assert not s3_storage.exists(held)
    history.close()
