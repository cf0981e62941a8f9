"""Where a server's CPU goes under load: py-spy samples (`uvx py-spy record --format raw`) folded
into the stages of the serving path, as shares of all on-CPU samples.

A sample is given to the first stage (in the order below) whose marker appears in its stack, so
the model call is counted as the model even when it runs under the scorer, and pandera's
validation as validation wherever it is called from.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

#: (stage, markers): a sample belongs to the first stage one of whose markers is in its stack.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("model: ColumnTransformer.transform", ("_column_transformer.py", "transform (sklearn/compose")),
    ("model: the rest (trees, predict_proba)", ("predict_proba", "(sklearn/")),
    ("validation: pandera", ("(pandera/",)),
    ("validation: compiled checks (fast_validate)", ("fast_validate.py",)),
    ("validation: model input frame / typed columns", ("validate_micro_batch", "validate_batch",
                                                        "typed_frame")),
    ("domain + unseen categories", ("domain_check.py", "_unseen (")),
    ("capture: SQLite commit", ("commit (", "sqlite3")),
    ("capture: the writer's other work", ("capture.py", "(mlops_pipeline/monitoring/predictions")),
    ("request parse (msgspec typed decode)", ("parse (mlops_pipeline/serving/inputs.py",)),
    ("answer encoding (responses.py)", ("responses.py",)),
    ("metrics (prometheus_client)", ("prometheus_client", "metrics.py")),
    ("scorer thread: the rest", ("_process_batch", "process (mlops_pipeline/serving/scoring.py")),
    ("our ASGI app (app.py) + scoring.predict",
     ("serving/app.py", "predict (mlops_pipeline/serving/scoring")),
    ("event loop thread: HTTP (uvicorn, httptools), asyncio", ("uvicorn", "httptools")),
    ("thread hand-offs (futures resolved across threads)", ("_chain_future", "concurrent/futures")),
    ("other", ("",)),
]


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> subprocess.Popen:
    """Start sampling `pid` (all threads, idle ones left out) for `seconds`, in the background."""
    return subprocess.Popen(["uvx", "py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)),
                             "--rate", str(rate), "--format", "raw", "--nonblocking", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def breakdown(raw: Path) -> list[tuple[str, float, int]]:
    """(stage, share of samples, samples), largest first, from py-spy's raw (collapsed) output."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        stage = next(name for name, marks in STAGES if any(m in stack for m in marks))
        counts[stage] += int(n)
    total = sum(counts.values()) or 1
    return [(name, n / total, n) for name, n in counts.most_common()]
