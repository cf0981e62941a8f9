"""Profile switching: production refuses to load with anything left on a local default."""

from __future__ import annotations

import pytest

from mlops_pipeline.profile import ProfileError, check_profile

PRODUCTION = {
    "MLOPS_PROFILE": "production",
    "MLOPS_STORAGE_ROOT": "s3://mlops/pipeline",
    "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    "MLOPS_PREDICTIONS_URL": "postgresql+psycopg2://u:p@db/predictions",
}


def test_production_profile_refuses_local_fallbacks():
    check_profile(PRODUCTION)
    check_profile({})  # local default needs nothing
    with pytest.raises(ProfileError) as exc:
        check_profile({**PRODUCTION, "MLOPS_STORAGE_ROOT": "/data", "MLFLOW_TRACKING_URI": ""})
    assert "MLOPS_STORAGE_ROOT='/data' should start with s3://" in str(exc.value)
    assert "MLFLOW_TRACKING_URI is not set" in str(exc.value)
    with pytest.raises(ProfileError, match="expected 'local' or 'production'"):
        check_profile({"MLOPS_PROFILE": "prod"})
