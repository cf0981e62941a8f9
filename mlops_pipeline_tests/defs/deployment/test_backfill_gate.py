"""After a backfill the gate still compares like with like: no row either model trained on.

March lands first and is promoted (v1 trained on March's first 80%). January and February land
later, so the time split's cutoff moves into March and part of the new holdout is v1's training
data — on which v1 scores far better than on anything it never saw. The pipeline's gate and
`promote` both leave those rows out, count them, and a clean candidate passes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.data.features import read_features
from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.deployment.holdout import content_keys
from mlops_pipeline.deployment.promotion import promote_version
from mlops_pipeline.deployment.tags import CHAMPION, SNAPSHOT_ID_TAG
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.spec import load_spec
from mlops_pipeline_tests.conftest import check_results

pytestmark = pytest.mark.slow

UP_TO_THE_GATE = ["dataset_snapshot", "training_features", "trained_model", "model_version"]


def test_after_a_backfill_the_gate_compares_only_rows_neither_model_trained_on(data_dir, land, run_loop):
    land(months=(3,))
    assert run_loop().success
    registry, spec, storage = MLflow(), load_spec(), Storage(root=str(data_dir))
    v1 = registry.version_by_alias(spec.name, CHAMPION)
    assert v1 is not None

    land(months=(1, 2))
    result = run_loop(assets=UP_TO_THE_GATE)

    assert result.success
    checks = check_results(result)
    assert checks["no_regression"].passed, checks["no_regression"].description
    meta = result.asset_materializations_for_node("model_version")[0].metadata
    # Recomputed apart from the gate: which of the candidate's holdout rows were in v1's train split.
    keys = list(spec.key_columns)
    v1_prepared = prepare(storage.read_snapshot(v1.tags[SNAPSHOT_ID_TAG]), spec).frame
    v1_trained = content_keys(v1_prepared[v1_prepared[SPLIT_COLUMN] == "train"], keys)
    holdout = read_features(storage, result.output_for_node("training_features"), spec, "holdout")
    seen_by_v1 = int(np.isin(content_keys(holdout, keys), v1_trained).sum())
    assert seen_by_v1 > 0.1 * len(holdout)  # the backfill really moved the cutoff into v1's training
    assert meta["excluded_champion_trained_rows"].value == seen_by_v1
    assert meta["compared_rows"].value == len(holdout) - seen_by_v1
    assert f"{seen_by_v1} rows champion v1 trained on left out" in meta["comparison_holdout"].value
    assert checks["no_regression"].metadata["excluded_champion_trained_rows"].value == seen_by_v1
    compared_from = pd.to_datetime(holdout["time_hour"])[~np.isin(content_keys(holdout, keys), v1_trained)]
    assert compared_from.min() >= pd.to_datetime(v1_prepared.loc[v1_prepared[SPLIT_COLUMN] == "train",
                                                                 "time_hour"]).max()

    # `promote` (and the release guard, which promotes through it) compares on the same rows.
    candidate = result.output_for_node("model_version")
    report, moves = promote_version(registry, storage, spec, candidate.version, actor="test")
    assert report is not None and report.passed, report.result.failures() if report else None
    assert f"{seen_by_v1} rows champion v1 trained on left out" in report.comparison
    # ... and judges the same segments the same way (`deployment.segments`, seeded).
    assert report.result.segments is not None
    assert ({(r.segment, r.rows, r.verdict) for r in report.result.segments.rows}
            == {(r.segment, r.rows, r.verdict) for r in candidate.segments.rows})
    assert registry.version_by_alias(spec.name, CHAMPION).version == int(candidate.version)
