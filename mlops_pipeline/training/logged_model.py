"""A fitted pipeline (or a `model.train` function's `PythonModel`) logged as an MLflow model, the
form serving and the gate load it in."""

from __future__ import annotations

from typing import Any

import pandas as pd


def log_model(model: Any, X: pd.DataFrame, scores: Any, trust_dumped_types: bool = False) -> str:
    """Log a fitted pipeline in the active MLflow run as `model` and return its URI: serialized
    with skops (MLflow's safe default) trusting only the types our pipelines are made of, with
    a signature and input example from `X` and `scores`, and our own conda env.
    `trust_dumped_types`: a model `model.train`'s function returned also trusts the types it is
    made of, listed from its own dump (the team's code built it in this process).
    A `PythonModel` (behind `python_model.PythonModelFace`) is logged with `mlflow.pyfunc`, its
    signature from `X` and its own `predict` answers, pickled by reference to its class."""
    import platform
    import warnings

    import mlflow
    from mlflow.models import infer_signature

    from mlops_pipeline.training.estimators import runtime_packages, skops_trusted_types
    from mlops_pipeline.training.model import pip_requirements
    from mlops_pipeline.training.python_model import PythonModelFace

    # Our own conda env instead of `pip_requirements=`: pip is not installed in a uv venv, and
    # MLflow, asked to pin it in conda.yaml, warns on every run. pip is listed unpinned on purpose;
    # requirements.txt is the same pins either way.
    conda_env = {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={platform.python_version()}", "pip",
                         {"pip": pip_requirements(runtime_packages(model) + (
                             ("cloudpickle",) if isinstance(model, PythonModelFace) else ()))}],
    }
    with warnings.catch_warnings():
        # MLflow's hint that int columns cannot carry NaN at inference: serving coerces every
        # request to the contract's dtypes before predicting, so it never applies here.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        if isinstance(model, PythonModelFace):
            sample = X.head(100)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=model.python_model,
                signature=infer_signature(sample, model.predict(sample)),
                input_example=X.head(5), conda_env=conda_env,
            )
            return info.model_uri
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X.head(100), scores[:100]),
            input_example=X.head(5),
            skops_trusted_types=skops_trusted_types(model, dumped=trust_dumped_types),
            conda_env=conda_env,
        )
    return info.model_uri
