"""Where snapshots and reports live. Snapshots are immutable: a content id is written once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from mlops_pipeline.settings import data_dir


class SnapshotExistsError(FileExistsError):
    pass


class StorageResource(dg.ConfigurableResource):
    """Local data directory (embedded default). Empty `root` means `MLOPS_DATA_DIR` or `data/`."""

    root: str = ""

    @property
    def base(self) -> Path:
        return Path(self.root).resolve() if self.root else data_dir()

    @property
    def landing_dir(self) -> Path:
        return self.base / "landing"

    @property
    def reports_dir(self) -> Path:
        path = self.base / "reports"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def snapshot_path(self, snapshot_id: str) -> Path:
        return self.base / "snapshots" / f"{snapshot_id}.parquet"

    def has_snapshot(self, snapshot_id: str) -> bool:
        return self.snapshot_path(snapshot_id).exists()

    def write_snapshot(self, snapshot_id: str, df: pd.DataFrame) -> bool:
        """Write once; returns False (and touches nothing) when the id is already stored.

        The file is written under a temporary name and hard-linked into place: `link` fails if the
        name exists, so two writers cannot clobber each other and a reader never sees half a file.
        """
        final = self.snapshot_path(snapshot_id)
        if final.exists():
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".incoming-", suffix=".parquet")
        os.close(fd)
        try:
            df.to_parquet(tmp, index=False)
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, final)
            except FileExistsError:
                return False
        finally:
            os.unlink(tmp)
        return True

    def read_snapshot(self, snapshot_id: str) -> pd.DataFrame:
        path = self.snapshot_path(snapshot_id)
        if not path.exists():
            raise FileNotFoundError(f"snapshot {snapshot_id} not found at {path}")
        return pd.read_parquet(path)
