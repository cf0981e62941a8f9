"""`mlops-pipeline land` with the storage root on S3 (the production profile) lands in the S3 store
the sensors watch, never on a local disk; own files are refused with the place to upload them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlops_pipeline.cli import main


def test_land_writes_flights_months_to_the_s3_store_once(s3_storage, data_dir: Path, monkeypatch,
                                                         capsys) -> None:
    monkeypatch.setenv("MLOPS_STORAGE_ROOT", s3_storage.location)
    monkeypatch.setenv("MLOPS_S3_ENDPOINT_URL", s3_storage.endpoint_url)
    assert main(["land", "--months", "1", "2", "--sample", "0.01"]) == 0
    landed = s3_storage.list_uris(s3_storage.uri("landing/flights/*.parquet"))
    assert [u.rsplit("/", 1)[1] for u in landed] == ["flights_2013_01.parquet", "flights_2013_02.parquet"]
    assert not (data_dir / "landing").exists()  # nothing on the local disk
    assert len(s3_storage.read_table(landed[0])) > 0
    capsys.readouterr()
    assert main(["land", "--months", "1", "2", "--sample", "0.01"]) == 0  # again: nothing new
    assert "already landed" in capsys.readouterr().out

    own = data_dir / "mine.csv"
    pd.DataFrame({"a": [1]}).to_csv(own, index=False)
    assert main(["land", "--from", str(own)]) == 2
    err = capsys.readouterr().err
    assert "upload your files to s3://" in err and "landing/flights" in err
    assert len(s3_storage.list_uris(s3_storage.uri("landing/flights/*"))) == 2
