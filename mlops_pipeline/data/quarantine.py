"""Landed batches set aside and restored, on record (issue 24).

A landed batch a per-batch check blocks stops every later run until someone acts. Quarantining
moves that one file out of the snapshot's inputs, into `<landing folder>/.quarantine/` (the
landing glob never matches it there; locally a rename that keeps its bytes and file time, on S3 a
server-side copy then a delete), so the next run snapshots the other batches and proceeds.
Nothing is deleted, and snapshots already written are never touched (they are write-once files
under their content id; only landing files move). `restore` moves the file back.

Every quarantine and restore is one row of the alias history (`deployment.history`, the table that
records alias moves), so `mlops-pipeline history` shows who set which file aside, when and why:
model = the dataset's name, alias = `batch:<file name>`, from/to = `landed`/`quarantined`.

`list_batches` gives every landed and quarantined file with its check status: the per-batch
findings the last snapshot of exactly these files stored (`batch_index.save_findings`), else the
checks run now, one batch at a time. No Dagster here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.deployment.history import AliasEvent, AliasHistory
    from mlops_pipeline.spec import DatasetSpec

QUARANTINE_DIR = ".quarantine"
LANDED, QUARANTINED = "landed", "quarantined"
ALIAS_PREFIX = "batch:"
#: The command a blocked run names (`quarantine_hint`).
COMMAND = "mlops-pipeline batches quarantine"


class QuarantineError(ValueError):
    """A quarantine or restore that cannot be done (unknown file, no reason, name taken): nothing moved."""


def batch_alias(name: str) -> str:
    """The history's `alias` of a batch file's quarantine events."""
    return f"{ALIAS_PREFIX}{name}"


def quarantine_hint(batch: str) -> str:
    """What a blocked run tells the person on call to do with the batch it names."""
    return f'set the batch aside: {COMMAND} {batch} --reason "..."'


def landing_folder(spec: DatasetSpec, storage: Storage) -> str:
    """The folder (path or `s3://` prefix) the spec's batches land in."""
    return storage.landing_glob(spec).rsplit("/", 1)[0]


def quarantine_folder(spec: DatasetSpec, storage: Storage) -> str:
    """Where quarantined batches are kept: `<landing folder>/.quarantine`."""
    return f"{landing_folder(spec, storage)}/{QUARANTINE_DIR}"


def _name(location: str) -> str:
    return location.rsplit("/", 1)[-1]


def _find(file: str, locations: list[str]) -> str | None:
    """The location `file` names: the location itself, or a file name."""
    wanted = file.rstrip("/")
    for loc in locations:
        if loc == wanted or _name(loc) == _name(wanted):
            return loc
    return None


def landed_files(spec: DatasetSpec, storage: Storage) -> list[str]:
    """Every landed batch of the spec (what the next snapshot reads), sorted."""
    return storage.list_uris(storage.landing_glob(spec))


def quarantined_files(spec: DatasetSpec, storage: Storage) -> list[str]:
    """Every quarantined batch of the spec, sorted."""
    folder = quarantine_folder(spec, storage)
    return [loc for loc in storage.list_uris(f"{folder}/*") if not _name(loc).startswith(".")]


def move(storage: Storage, source: str, target: str) -> None:
    """Move the file or object at `source` to `target` in the same store, never replacing one:
    locally a hard link then an unlink (FileExistsError when `target` exists; bytes and file time
    kept); on S3 a server-side copy, checked, then the source deleted (`StorageError` naming the
    store when it fails)."""
    import os
    from pathlib import Path

    from mlops_pipeline.data.storage import StorageError, split_s3_uri

    if "://" not in source:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
        os.unlink(source)
        return
    if storage.exists(target):
        raise FileExistsError(f"{target} already exists in {storage.describe()}")
    from botocore.exceptions import BotoCoreError, ClientError

    (src_bucket, src_key), (bucket, key) = split_s3_uri(source), split_s3_uri(target)
    try:
        client = storage.s3_client()
        client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": src_bucket, "Key": src_key})
        if not storage.exists(target):
            raise StorageError(f"{storage.describe()}: copying {source} to {target} left no object")
        client.delete_object(Bucket=src_bucket, Key=src_key)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"{storage.describe()}: moving {source} to {target} failed: {exc}") from exc


def _actor(actor: str | None) -> str:
    from mlops_pipeline.deployment.history import default_actor

    return actor or default_actor()


def quarantine(spec: DatasetSpec, storage: Storage, file: str, reason: str,
               history: AliasHistory, actor: str | None = None) -> AliasEvent:
    """Move the landed batch `file` (a file name or its location) into the quarantine folder and
    record who, when and why in the alias history; the recorded event is returned. Raises
    `QuarantineError` (nothing moved) without a reason, for a file that is not landed, or when a
    quarantined file of that name exists."""
    if not reason or not reason.strip():
        raise QuarantineError("say why: --reason \"...\" is recorded in the history with who and when")
    landed = landed_files(spec, storage)
    source = _find(file, landed)
    if source is None:
        if _find(file, quarantined_files(spec, storage)) is not None:
            raise QuarantineError(f"{_name(file)} is already quarantined (restore it with "
                                  f"`mlops-pipeline batches restore {_name(file)}`)")
        shown = ", ".join(_name(loc) for loc in landed[:10]) or "none"
        raise QuarantineError(f"{file}: not a landed batch of dataset {spec.name!r} (landed: {shown})")
    name = _name(source)
    target = f"{quarantine_folder(spec, storage)}/{name}"
    if storage.exists(target):
        raise QuarantineError(f"{target} already exists: a quarantined batch has this name")
    return _move_on_record(storage, source, target, lambda: history.append(
        spec.name, batch_alias(name), LANDED, QUARANTINED, _actor(actor), reason.strip()))


def restore(spec: DatasetSpec, storage: Storage, file: str, history: AliasHistory,
            reason: str = "", actor: str | None = None) -> AliasEvent:
    """Move the quarantined batch `file` back among the landed batches and record it; the next
    run snapshots it again. Raises `QuarantineError` (nothing moved) for a file that is not
    quarantined, or when a landed batch of that name exists."""
    held = quarantined_files(spec, storage)
    source = _find(file, held)
    if source is None:
        shown = ", ".join(_name(loc) for loc in held[:10]) or "none"
        raise QuarantineError(f"{file}: not a quarantined batch of dataset {spec.name!r} "
                              f"(quarantined: {shown})")
    name = _name(source)
    target = f"{landing_folder(spec, storage)}/{name}"
    if storage.exists(target):
        raise QuarantineError(f"{target} already exists: a landed batch has this name")
    return _move_on_record(storage, source, target, lambda: history.append(
        spec.name, batch_alias(name), QUARANTINED, LANDED, _actor(actor), reason.strip() or "restored"))


# ---- listing ------------------------------------------------------------------------------------
@dataclass
class BatchStatus:
    """One landed or quarantined file: its state, its check status and what the checks found."""

    name: str
    location: str
    state: str  # landed | quarantined
    #: ok | blocked | warn | not checked (landed); quarantined
    status: str
    problems: list[str] = field(default_factory=list)
    #: The last quarantine or restore of this file on record (None: never).
    event: AliasEvent | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "location": self.location, "state": self.state,
                "status": self.status, "problems": self.problems,
                "event": None if self.event is None else self.event.as_dict()}


def landed_findings(spec: DatasetSpec, storage: Storage,
                    log: Callable[[str], None] | None = None) -> tuple[dict[str, list], str]:
    """({batch name: [Finding, ...]}, where they come from) for the landed batches: stored by the
    last snapshot of exactly these files under this contract, spec and code, else checked now
    (one batch at a time, as the snapshot step does). Raises FileNotFoundError without a contract."""
    import pandas as pd

    from mlops_pipeline.data import batch_checks, batch_index
    from mlops_pipeline.data.batch_duplicates import CrossBatchDuplicates
    from mlops_pipeline.data.contract import load_contract
    from mlops_pipeline.data.landing_snapshot import checks_digest
    from mlops_pipeline.data.snapshots import _read, read_batch

    fmt = spec.source.format
    index = batch_index.index_landing(storage.landing_glob(spec), fmt, storage=storage)
    by_batch: dict[str, list] = {e.name: [] for e in index.entries}
    snapshot_id = index.snapshot_id()
    stored = (batch_index.load_findings(index, snapshot_id, checks_digest(spec), storage)
              if snapshot_id else None)
    if stored is not None:
        for found in stored.values():
            for f in found:
                by_batch.setdefault(f.batch, []).append(f)
        return by_batch, "as the last run found them"
    contract = load_contract(spec)
    others = batch_checks.other_columns([set(e.columns) for e in index.entries])
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    repeats = CrossBatchDuplicates(spec)
    for e, rest in zip(index.entries, others, strict=True):
        batch = read_batch(e.location, fmt, storage)
        by_batch[e.name] += batch_checks.check_batch(batch, contract, spec, rest, now)
        repeats.add(e.name, e.location, batch.frame, batch.landed_at)
        del batch
    for f in repeats.findings(lambda loc, cols: _read(loc, fmt, storage, cols)):
        by_batch[f.batch].append(f)
    return by_batch, "checked now (no run has checked these files yet)"


def _problem(f) -> str:
    column = f", column '{f.column}'" if f.column else ""
    ex = f" (e.g. {', '.join(f.examples)})" if f.examples else ""
    return f"{f.check}{column}: {f.message}{ex}"


def list_batches(spec: DatasetSpec, storage: Storage,
                 history: AliasHistory | None = None) -> tuple[list[BatchStatus], str]:
    """(every landed then every quarantined file with its status, where the statuses come from).
    A landed batch is `blocked` when a blocking check found something in it, `warn` when only
    the keyless duplicates check did, `ok` otherwise; `not checked` without a contract."""
    landed = landed_files(spec, storage)
    events: dict[str, AliasEvent] = {}
    if history is not None:
        for e in history.events(model=spec.name):
            if e.alias.startswith(ALIAS_PREFIX):
                events[e.alias.removeprefix(ALIAS_PREFIX)] = e
    out: list[BatchStatus] = []
    source = "no landed batches"
    if landed:
        try:
            found, source = landed_findings(spec, storage)
        except FileNotFoundError as exc:
            found, source = {}, f"not checked: {str(exc).splitlines()[0]}"
        keyless = not spec.key_columns
        for loc in landed:
            name = _name(loc)
            problems = found.get(name)
            if problems is None:
                status = "not checked"
            elif any(not (keyless and f.check == "batch_duplicates") for f in problems):
                status = "blocked"
            else:
                status = "warn" if problems else "ok"
            out.append(BatchStatus(name, loc, LANDED, status,
                                   [_problem(f) for f in problems or []],
                                   events.get(name)))
    for loc in quarantined_files(spec, storage):
        name = _name(loc)
        out.append(BatchStatus(name, loc, QUARANTINED, QUARANTINED, [], events.get(name)))
    return out, source


def _move_on_record(storage: Storage, source: str, target: str, record) -> AliasEvent:
    """Move `source` to `target`, then `record()` it; a move that cannot be recorded is undone
    (a batch is quarantined or restored only on record)."""
    move(storage, source, target)
    try:
        return record()
    except Exception:
        move(storage, target, source)
        raise
