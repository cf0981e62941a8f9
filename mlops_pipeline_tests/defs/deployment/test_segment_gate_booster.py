"""The per-segment gate with a booster (issue 27, "any model"): statsmodels `fair` trained with
`model.estimator: lightgbm.LGBMClassifier`. The candidate learnt from data where one segment's
labels were shifted (the very religious answered the other way round); on the trusted holdout,
`segment_regression` blocks it, naming that segment and its interval, while the other segments
pass. Core training and scoring on the holdout as the gate does (no model call per segment).
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare
from mlops_pipeline.defs.deployment.registered_model import _segment_result
from mlops_pipeline.defs.handoffs import CandidateVersion
from mlops_pipeline.deployment.segment_metrics import scored
from mlops_pipeline.deployment.segments import gate_segments
from mlops_pipeline.spec import load_spec
from mlops_pipeline.training.estimators import build_model
from mlops_pipeline.training.model import class_info, predict_scores
from mlops_pipeline_tests.cli.conftest import FAIR_CONFIG


@pytest.fixture(scope="module")
def fair_spec(tmp_path_factory):
    raw = {**FAIR_CONFIG, "model": {"seed": 7, "estimator": "lightgbm.LGBMClassifier",
                                    "params": {"n_estimators": 40, "num_leaves": 15}},
           "segments": {"columns": ["religious"], "min_rows": 100,
                        "tolerance": 0.03, "resamples": 200}}
    path = tmp_path_factory.mktemp("fair_booster") / "fair.yaml"
    raw["contract"] = str(path.with_name("fair_contract.yaml"))  # never read: no contract check here
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_spec(path)


def test_a_booster_trained_on_one_segment_s_shifted_labels_is_blocked_naming_it(fair_spec):
    import statsmodels.api as sm

    spec = fair_spec
    frame = prepare(sm.datasets.fair.load_pandas().data.sample(frac=1.0, random_state=0), spec).frame
    train = frame[frame[SPLIT_COLUMN] == "train"]
    hold = frame[frame[SPLIT_COLUMN] == "holdout"].reset_index(drop=True)
    X, target = list(spec.features.columns), spec.target.name

    def fit(rows):
        model = build_model(spec).fit(rows[X], rows[target])
        scores = predict_scores(model, hold[X], spec.task)
        return model, scored(spec.task, hold[target], scores, class_info(model))

    champion_model, champion = fit(train)
    shifted = train.copy()
    devout = shifted["religious"] == 4  # a concept change in one segment of the training data
    y = shifted[target].astype(bool)
    shifted[target] = (y ^ devout).astype(frame[target].dtype)
    _, candidate = fit(shifted)
    assert type(champion_model.steps[-1][1]).__name__ == "LGBMClassifier"

    report = gate_segments(hold, candidate, champion, spec)
    check = _segment_result(CandidateVersion("fair_affairs", "2", "run", "snap", {}, "1", {},
                                             segments=report), spec)

    assert not check.passed and check.severity.value == "ERROR"
    assert [r.segment for r in report.blocking] == ["religious=4.0"]
    assert check.description.startswith("segment religious=4.0 (")
    assert "95% interval [" in check.description
    assert check.metadata["blocking_segments"].value == "religious=4.0"
    rows = {r.segment: r for r in report.rows}
    assert {"religious=1.0", "religious=2.0", "religious=3.0"} <= set(rows)  # judged, not blocking
    assert np.isfinite(rows["religious=4.0"].high) and rows["religious=4.0"].high < -0.03
