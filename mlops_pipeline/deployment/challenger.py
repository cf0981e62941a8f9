"""The current challenger analysed on live traffic: the registry says who is champion and who is
challenger, the release policy says over which window, and `release.analyse` judges the traffic.
Shared by the `challenger_analysis` asset (report) and the `release_guard` sensor (act).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from mlops_pipeline.deployment.tags import CHALLENGER, CHAMPION

if TYPE_CHECKING:
    from mlops_pipeline.deployment.release import ReleaseAnalysis
    from mlops_pipeline.deployment.tracking import MLflow
    from mlops_pipeline.spec import DatasetSpec


def analyse_challenger(spec: DatasetSpec, mlflow: MLflow, store: Any,
                       metrics_text: str | None) -> ReleaseAnalysis:
    """The analysis of the current challenger over the policy's window, from the prediction
    store's captured traffic and the server's `/metrics` text. Without a challenger the window is
    not read at all and the analysis has no verdicts to act on."""
    from mlops_pipeline.deployment import release

    champion = mlflow.version_by_alias(spec.name, CHAMPION)
    challenger = mlflow.version_by_alias(spec.name, CHALLENGER)
    start, end = release.window(spec.release)
    rows = release.read_traffic(store, spec.name, start, end) if challenger else pd.DataFrame()
    return release.analyse(rows, spec, str(champion.version) if champion else None,
                           str(challenger.version) if challenger else None, metrics_text, start, end)
