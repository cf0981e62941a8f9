"""`clone_tree`, which the shared trained-loop fixtures rely on: a copy names only itself."""

from __future__ import annotations

import pickle
import sqlite3
import zipfile
from pathlib import Path

import pytest

from mlops_pipeline_tests.clone import clone_tree


def _tree(src: Path) -> None:
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "batches.json").write_text(f'{{"uri": "{src}/landing/a.parquet"}}')
    (src / "out.pkl").write_bytes(pickle.dumps({"path": str(src / "snapshots" / "x.parquet"), "n": 3}))
    (src / "untouched.bin").write_bytes(b"\x00\x01no path here")
    (src / "link").symlink_to(src / "sub")
    con = sqlite3.connect(src / "store.db")
    con.execute("CREATE TABLE versions (id INTEGER PRIMARY KEY, source TEXT, size INTEGER, raw BLOB)")
    con.execute("INSERT INTO versions (source, size, raw) VALUES (?, 7, x'00ff')",
                (f"file://{src}/mlflow/artifacts/1",))
    con.commit()
    con.close()


def test_a_clone_names_its_own_path_everywhere_and_leaves_the_original_alone(tmp_path: Path):
    src, dst = tmp_path / "aaaa", tmp_path / "bbbb"
    _tree(src)
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}

    clone_tree(src, dst)

    assert (dst / "sub" / "batches.json").read_text() == f'{{"uri": "{dst}/landing/a.parquet"}}'
    assert pickle.loads((dst / "out.pkl").read_bytes()) == {"path": str(dst / "snapshots" / "x.parquet"),
                                                            "n": 3}
    assert (dst / "untouched.bin").read_bytes() == b"\x00\x01no path here"
    assert (dst / "link").resolve() == dst / "sub"
    con = sqlite3.connect(dst / "store.db")
    assert con.execute("SELECT source, size, raw FROM versions").fetchall() == [
        (f"file://{dst}/mlflow/artifacts/1", 7, b"\x00\xff")]
    con.close()
    for path in dst.rglob("*"):
        if path.is_file():
            assert str(src).encode() not in path.read_bytes(), path
    assert {p: p.read_bytes() for p in src.rglob("*") if p.is_file()} == before


def test_a_path_of_another_length_or_an_archive_naming_the_source_is_refused(tmp_path: Path):
    src = tmp_path / "aaaa"
    _tree(src)
    with pytest.raises(ValueError, match="same length"):
        clone_tree(src, tmp_path / "longer")
    with zipfile.ZipFile(src / "model.zip", "w", zipfile.ZIP_STORED) as z:
        z.writestr("path.txt", str(src))  # patched, its CRC would no longer match
    with pytest.raises(ValueError, match="zip archive"):
        clone_tree(src, tmp_path / "cccc")
