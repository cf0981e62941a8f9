"""`mlops-pipeline segments suggest`: a draft `segments:` section from the landed data."""

from __future__ import annotations

import yaml

from mlops_pipeline.cli import main
from mlops_pipeline.spec import load_spec
from mlops_pipeline.spec_segments import SegmentsSpec


def test_segments_suggest_proposes_columns_with_few_values_and_numeric_bands(data_dir, land, capsys):
    land(months=(1,))

    assert main(["segments", "suggest"]) == 0

    out = capsys.readouterr().out
    assert out.startswith("# a draft from ") and "landed rows" in out
    draft = yaml.safe_load(out)["segments"]
    assert {"carrier", "origin", "hour"} <= set(draft["columns"])
    assert "dest" not in draft["columns"]  # ~100 destinations: more than --max-values 50
    assert "distance" in draft["bins"] and draft["bins"]["distance"] == sorted(draft["bins"]["distance"])
    # It is a valid section of the flights config as it stands.
    spec = load_spec()
    assert spec.model_validate({**spec.model_dump(), "segments": SegmentsSpec(**draft).model_dump()})
