"""What the training tests share: a dataset config with its `model:` section replaced, loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture
def spec_with(tmp_path: Path) -> Callable[..., Any]:
    """`spec_with(config, **model)`: the dataset config at `config` (its contract path made
    absolute) with `model: {seed: 42, **model}`, written under `tmp_path` and loaded by `load_spec`
    (which raises `ConfigError` in one line for a wrong section)."""
    from mlops_pipeline.spec import load_spec

    def make(config: Path, **model: object) -> Any:
        raw = yaml.safe_load(Path(config).read_text())
        raw["contract"] = str(Path(raw["contract"]).resolve())
        raw["model"] = {"seed": 42, **model}
        path = tmp_path / Path(config).name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return load_spec(path)

    return make


@pytest.fixture
def config_error(spec_with: Callable[..., Any]) -> Callable[..., str]:
    """`config_error(config, **model)`: the `ConfigError` that `spec_with` raises, checked to be one
    line, as its text."""
    from mlops_pipeline.spec import ConfigError

    def error(config: Path, **model: object) -> str:
        with pytest.raises(ConfigError) as err:
            spec_with(config, **model)
        text = str(err.value)
        assert "\n" not in text, text
        return text

    return error
