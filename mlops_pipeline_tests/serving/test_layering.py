"""Serving stands on the core alone: importing the app (what every serving process imports) loads
neither Dagster nor the Dagster layer (`mlops_pipeline.defs`, its resources included). Dagster's
import costs seconds of a server's start and memory in every worker, for nothing serving uses."""

from __future__ import annotations

import json
import subprocess
import sys


def _loaded_after(module: str) -> list[str]:
    code = (f"import json, sys, {module}; print(json.dumps(sorted(m for m in sys.modules "
            "if m.startswith(('dagster', 'mlops_pipeline.defs')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_the_serving_app_imports_no_dagster():
    assert _loaded_after("mlops_pipeline.serving.app") == []


def test_running_a_server_imports_no_dagster():
    assert _loaded_after("mlops_pipeline.serving.run") == []
