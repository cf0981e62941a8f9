"""How the suite is shared between pytest-xdist workers (`-n auto` in pyproject's addopts).

A work unit is one test file, except under the folders whose conftest starts an expensive
session-wide stack (a trained loop, an MLflow server with registered versions, the production
servers): all of such a folder's tests go to one worker, so each stack is started once per run,
not once per worker. Units with the most tests go first (xdist's default order), so the big
folders start early and the short files fill in around them.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

#: Folders under mlops_pipeline_tests/ whose session fixtures are worth starting only once.
SHARED_STACK_FOLDERS = ("cli", "defs", "production", "serving")


def work_unit(nodeid: str) -> str:
    """The unit a test belongs to: its shared-stack folder, or else its file."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    if len(parts) > 2 and parts[0] == "mlops_pipeline_tests" and parts[1] in SHARED_STACK_FOLDERS:
        return "/".join(parts[:2])
    return path


class SharedStackScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with `work_unit` as the scope."""

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)
