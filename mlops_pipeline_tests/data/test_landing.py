"""Landing your own files: checked before anything is written, converted, content-named, once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.data.landing import LandingInputError, land_files
from mlops_pipeline.data.snapshots import content_id, read_landing
from mlops_pipeline.spec import DatasetSpec


def _spec(fmt: str = "parquet") -> DatasetSpec:
    return DatasetSpec.model_validate({
        "name": "toy",
        "task": "classification",
        "source": {"path": f"landing/toy/*.{fmt}", "format": fmt},
        "target": {"name": "label"},
        "features": {"numerical": ["x"]},
        "contract": "data/contracts/toy.yaml",
        "gate": {"roc_auc": {"floor": 0.5}},
    })


def _toy(n: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "label": rng.integers(0, 2, n)})


def _landed(root: Path, fmt: str) -> list[Path]:
    return sorted((root / "landing" / "toy").glob(f"*.{fmt}"))


def test_a_csv_lands_as_a_parquet_batch_named_by_content_and_only_once(
    data_dir, tmp_path, capsys, monkeypatch
):
    from mlops_pipeline.cli import main

    src = tmp_path / "mine.csv"
    _toy().to_csv(src, index=False)
    spec = _spec("parquet")
    first = land_files(src, spec)
    [batch] = first.written
    assert batch.name == f"mine-{content_id(pd.read_csv(src))[:12]}.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(batch), pd.read_csv(src))  # converted, same rows
    second = land_files(src, spec)
    assert second.written == [] and second.already_landed == [(src, batch)]
    assert _landed(data_dir, "parquet") == [batch]
    # The same content under another file name is still the same batch.
    copy = tmp_path / "copy.csv"
    copy.write_bytes(src.read_bytes())
    assert land_files(copy, spec).already_landed == [(copy, batch)]

    import yaml

    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(config))  # `land --config` sets it; undone after
    assert main(["land", "--config", str(config), "--from", str(src)]) == 0
    assert "already landed" in capsys.readouterr().out and _landed(data_dir, "parquet") == [batch]


def test_a_folder_lands_every_file_and_the_loop_reads_them_as_one_table(data_dir, tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    _toy(30, 1).to_parquet(folder / "a.parquet", index=False)
    _toy(20, 2).to_csv(folder / "b.csv", index=False)
    result = land_files(folder, _spec("csv"))
    assert len(result.written) == 2 and all(p.suffix == ".csv" for p in result.written)
    # a CSV input in a CSV dataset is landed byte for byte
    assert (folder / "b.csv").read_bytes() in [p.read_bytes() for p in result.written]
    table = read_landing(_spec("csv").landing_glob(), "csv")
    assert len(table) == 50


@pytest.mark.parametrize("bad", ["empty.csv", "garbage.parquet", "notes.txt"])
def test_one_bad_input_lands_nothing_and_names_the_file(data_dir, tmp_path, bad):
    folder = tmp_path / "drop"
    folder.mkdir()
    _toy().to_csv(folder / "a_good.csv", index=False)
    path = folder / bad
    if bad == "empty.csv":
        path.write_text("x,label\n")
    elif bad == "garbage.parquet":
        path.write_bytes(b"this is not parquet")
    else:
        path.write_text("hello")
    with pytest.raises(LandingInputError, match=bad.replace(".", r"\.")):
        land_files(folder, _spec())
    assert not (data_dir / "landing" / "toy").exists() or _landed(data_dir, "parquet") == []
    with pytest.raises(LandingInputError, match="no such file"):
        land_files(tmp_path / "missing.csv", _spec())


def test_land_without_from_refuses_a_dataset_that_is_not_flights(data_dir, tmp_path, capsys, monkeypatch):
    import yaml

    from mlops_pipeline.cli import main

    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(_spec().model_dump(mode="json")))
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(config))
    assert main(["land", "--config", str(config)]) == 2
    assert "land --from PATH" in capsys.readouterr().err
    assert not (data_dir / "landing").exists()


@pytest.mark.parametrize("case", ["no-common-column", "missing-feature", "missing-target"])
def test_land_from_refuses_a_file_that_cannot_belong_before_writing_anything(
    data_dir, tmp_path, capsys, monkeypatch, flights, case
):
    """Issue 24: a file without the config's required columns (or with none of its columns) is
    refused by `land --from`, naming the file and the columns, and nothing lands — not even the
    good file beside it."""
    import yaml

    from mlops_pipeline.cli import main
    from mlops_pipeline.spec import PROJECT_ROOT, load_spec

    spec = load_spec(PROJECT_ROOT / "data/configs/flights.yaml")
    real = flights[flights["month"] == 4].head(200)
    folder = tmp_path / "drop"
    folder.mkdir()
    real.to_csv(folder / "a_good.csv", index=False)
    bad = {"no-common-column": pd.DataFrame({"name": ["ann", "bo"], "age": [3, 4]}),
           "missing-feature": real.drop(columns=["distance"]),
           "missing-target": real.drop(columns=["arr_delay"])}[case]
    bad.to_csv(folder / "b_bad.csv", index=False)
    expected = {"no-common-column": "no column in common with dataset 'flights_delay'",
                "missing-feature": "features.numerical: 'distance' is not a column",
                "missing-target": "'arr_delay' is not a column"}[case]
    with pytest.raises(LandingInputError, match="b_bad.csv") as refused:
        land_files(folder, spec)
    assert expected in str(refused.value)
    landing = data_dir / "landing" / "flights"
    assert not landing.exists() or list(landing.glob("*.parquet")) == []

    config = tmp_path / "flights.yaml"
    doc = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    doc["contract"] = str(PROJECT_ROOT / doc["contract"])
    config.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("MLOPS_DATASET_CONFIG", str(config))
    assert main(["land", "--config", str(config), "--from", str(folder / "b_bad.csv")]) == 2
    err = capsys.readouterr().err
    assert "b_bad.csv" in err and expected in err and "nothing was landed" in err
    assert not landing.exists() or list(landing.glob("*.parquet")) == []
    # The good file alone lands.
    assert main(["land", "--config", str(config), "--from", str(folder / "a_good.csv")]) == 0
    assert len(list(landing.glob("*.parquet"))) == 1
