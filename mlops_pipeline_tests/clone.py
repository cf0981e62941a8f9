"""Copies of a data dir (and Dagster home) that behave as if they had been made where they land.

A loop run writes absolute paths into what it leaves behind: the MLflow SQLite store (artifact
locations, model version sources, tags), Dagster's run and event databases, pickled asset outputs,
snapshot batch lists. `clone_tree` copies such a tree and rewrites every occurrence of the source
path to the destination path, so a test can start from one trained loop (made once per session)
and change its own copy freely: nothing it writes reaches the original or another test's copy.

The destination path must have the same length as the source: pickles and other binary files are
patched in place, byte for byte. SQLite databases are rewritten through SQL and vacuumed. A zip
archive naming the source (its checksums forbid patching), or a file still naming it afterwards,
fails the copy loudly instead of leaving a copy that silently reads the original.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

SQLITE_MAGIC = b"SQLite format 3\x00"
ZIP_MAGIC = b"PK\x03\x04"


def clone_tree(src: Path, dst: Path) -> Path:
    """Copy `src` to `dst` (which must not exist and whose path has the same length) and rewrite
    the absolute path of `src` to that of `dst` in every file of the copy. Returns `dst`."""
    old, new = str(src), str(dst)
    if len(old) != len(new):
        raise ValueError(f"{dst} and {src} must have paths of the same length")
    shutil.copytree(src, dst, symlinks=True)
    for path in sorted(dst.rglob("*")):
        if path.is_symlink():
            target = os.readlink(path)
            if target.startswith(old):
                path.unlink()
                path.symlink_to(new + target[len(old):])
            continue
        if not path.is_file() or path.name.endswith(("-wal", "-shm", "-journal")):
            continue
        data = path.read_bytes()
        if data.startswith(SQLITE_MAGIC):  # always: a -wal beside it may hold the path
            _rewrite_sqlite(path, old, new)
            data = path.read_bytes()
        elif old.encode() in data:
            if data.startswith(ZIP_MAGIC):
                raise ValueError(f"{path} is a zip archive naming {src}: its checksums forbid patching")
            data = data.replace(old.encode(), new.encode())
            path.write_bytes(data)
        if old.encode() in data:
            raise ValueError(f"{path} still names {src} after rewriting (compressed or archived?)")
    return dst


def _rewrite_sqlite(path: Path, old: str, new: str) -> None:
    """Replace `old` by `new` in every text value of every table, then vacuum, so that no page of
    the file (free pages included) keeps the old path."""
    con = sqlite3.connect(path)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            for column in [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]:
                con.execute(
                    f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                    f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                    (old, new, old),
                )
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()
