"""`mlops-pipeline segments suggest`: a draft `segments:` section from the landed data, its tolerance
in the gate metric's units (a share of the baseline's error for MAE/RMSE, 0.02 for unit-free metrics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mlops_pipeline.cli import main
from mlops_pipeline.deployment.segment_metrics import Scored
from mlops_pipeline.deployment.segments import compare_segments, gate_segments
from mlops_pipeline.spec import PROJECT_ROOT, load_spec
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


def _drafted(name: str, data_dir: Path, tmp_path: Path, capsys) -> tuple[pd.DataFrame, Path, str]:
    """statsmodels' `name` table landed as one CSV, `segments suggest` run on its config (randhie's
    gate judging visits by their mean absolute error first); returns the table, a copy of the
    config with the draft pasted in, and the drafted tolerance's line."""
    import statsmodels.api as sm

    frame = getattr(sm.datasets, name).load_pandas().data
    config = yaml.safe_load((PROJECT_ROOT / f"data/configs/{name}.yaml").read_text())
    if name == "randhie":  # an error in the target's units (visits) first
        config["gate"] = {"mae": {"tolerance": 0.1}, "r2": {"floor": 0.02}}
    config["contract"] = str(PROJECT_ROOT / config["contract"])
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    (data_dir / "landing" / name).mkdir(parents=True)
    frame.to_csv(data_dir / "landing" / name / f"{name}.csv", index=False)

    assert main(["segments", "suggest", "--config", str(path)]) == 0

    out = capsys.readouterr().out
    draft = yaml.safe_load(out)["segments"]
    (line,) = [x for x in out.splitlines() if x.startswith("  tolerance: ")]
    path.write_text(yaml.safe_dump({**config, "segments": {**draft, "resamples": 50}}, sort_keys=False))
    return frame, path, line


def test_a_drafted_tolerance_for_an_error_metric_is_a_share_of_its_baseline_in_the_targets_units(
        data_dir, tmp_path, capsys):
    frame, path, line = _drafted("randhie", data_dir, tmp_path, capsys)
    spec = load_spec(path)  # the drafted section loads
    tolerance = spec.segments.tolerance
    # 5% of what predicting the median visits costs (about 2.4 visits), to two digits: not 0.02
    baseline = float((frame["mdvis"] - frame["mdvis"].median()).abs().mean())
    assert 0.04 * baseline <= tolerance <= 0.06 * baseline and tolerance != 0.02
    assert line == f"  tolerance: {tolerance}  # 5% of the baseline's mae " + line.split(" mae ")[1]
    assert "mdvis on the holdout (median of the training rows as every answer)" in line

    # It gates, in visits: a segment 0.06 visits worse passes (0.02 would have blocked it), one
    # 0.6 visits worse blocks.
    y = frame["mdvis"].to_numpy(float)
    hit = frame["idp"].to_numpy() == 1
    champion = Scored("regression", y, y.copy())
    for shift, blocks in ((0.06, False), (0.6, True)):
        report = gate_segments(frame, Scored("regression", y, y + shift * hit), champion, spec)
        assert report is not None and report.metric == "mae" and report.tolerance == tolerance
        idp = next(r for r in report.rows if r.column == "idp" and r.value.startswith("1"))
        assert idp.blocks is blocks, (shift, idp)
    strict = spec.segments.model_copy(update={"tolerance": 0.02})
    assert compare_segments(frame, Scored("regression", y, y + 0.06 * hit), champion, strict,
                            "mae").blocking


def test_a_drafted_tolerance_for_a_unit_free_metric_stays_002_and_gates(data_dir, tmp_path, capsys):
    frame, path, line = _drafted("fair", data_dir, tmp_path, capsys)
    spec = load_spec(path)
    assert spec.segments.tolerance == 0.02
    assert line == "  tolerance: 0.02  # roc_auc has no units: 0.02"
    y = (frame["affairs"] > 0).to_numpy(int)
    rng = np.random.default_rng(3)
    good = np.clip(0.35 * y + 0.65 * rng.random(len(y)), 0, 1)
    hit = frame["religious"].to_numpy() == 2
    worse = np.where(hit, rng.random(len(y)), good)
    report = gate_segments(frame, Scored("classification", y, worse), Scored("classification", y, good),
                           spec)
    assert report is not None and report.metric == "roc_auc"
    assert any(r.column == "religious" and r.value.startswith("2") for r in report.blocking)
