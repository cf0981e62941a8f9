"""One process of a shared search (test_search): 2 trials of LogisticRegression's C on the `fair`
rows in the Parquet file argv[2], in the study named by argv[1] of the database
`MLOPS_TEST_SEARCH_URL`; prints the manifest record."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import yaml

from mlops_pipeline.spec import DatasetSpec
from mlops_pipeline.training.search import run_search


def main() -> None:
    raw = yaml.safe_load(Path("data/configs/fair.yaml").read_text())
    raw["model"] = {"seed": 42, "estimator": "sklearn.linear_model.LogisticRegression",
                    "params": {"max_iter": 300},
                    "search": {"trials": 2, "space": {"C": {"type": "float", "low": 0.001,
                                                            "high": 10, "log": True}}}}
    spec = DatasetSpec.model_validate(raw)
    data = pd.read_parquet(sys.argv[2])
    X = data[spec.features.columns].reset_index(drop=True)
    y = pd.Series((data["affairs"] > 0).astype("int64").to_numpy())
    result = run_search(X, y, spec, 42, storage_url=os.environ["MLOPS_TEST_SEARCH_URL"],
                        study=sys.argv[1])
    print(json.dumps(result.record()))


if __name__ == "__main__":
    main()
