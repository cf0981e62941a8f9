"""Code location load: what the Dagster UI (and every run step, which re-imports the module) waits
for. Fresh interpreters, several repetitions: `import dagster` alone vs `import dagster` +
`mlops_pipeline.defs.definitions.build_definitions()` resolved into a repository.

Goal: <= 1.0 s over the bare `import dagster` (heavy imports deferred into asset bodies).

    uv run python bench/load.py [--reps 7] [--no-wait] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _common import REPO, SMOKE_HELP, goal, smoke, table, wait_quiet

BARE = """
import time, json, os
t0 = time.perf_counter()
import dagster
print("LOAD " + json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
os._exit(0)
"""

DEFS = """
import time, json, os, sys
t0 = time.perf_counter()
import dagster
t1 = time.perf_counter()
from mlops_pipeline.defs.definitions import build_definitions
build_definitions().get_repository_def()
t2 = time.perf_counter()
heavy = [m for m in ("mlflow", "sklearn", "evidently", "pandera", "scipy") if m in sys.modules]
print("LOAD " + json.dumps({"seconds": t2 - t0, "dagster": t1 - t0, "defs": t2 - t1, "heavy": heavy}),
      flush=True)
os._exit(0)
"""


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    line = next((x for x in out.stdout.splitlines() if x.startswith("LOAD ")), None)
    if line is None:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-3000:])
    return json.loads(line[5:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = smoke(parser.parse_args(), reps=1)
    wait_quiet(args.no_wait)
    if not args.smoke:
        _run(BARE)  # warm the OS file cache once
    bare, defs = [], []
    for _ in range(args.reps):  # interleaved, so a busy moment hits both
        bare.append(_run(BARE)["seconds"])
        defs.append(_run(DEFS))
    b = statistics.median(bare)
    d = statistics.median(x["seconds"] for x in defs)
    print(f"\nmedian of {args.reps} fresh interpreters (PYTHONDONTWRITEBYTECODE="
          f"{'set' if 'PYTHONDONTWRITEBYTECODE' in __import__('os').environ else 'unset'})\n")
    print(table(["what", "median s", "min s", "max s", "x bare"], [
        ("import dagster", b, min(bare), max(bare), 1.0),
        ("import dagster + build_definitions() + repository", d, min(x["seconds"] for x in defs),
         max(x["seconds"] for x in defs), d / b),
    ]))
    print(f"heavy modules imported by loading the definitions: {defs[-1]['heavy'] or 'none'}")
    print(table(["goal", "target", "measured", "status"], [
        ("extra over import dagster", "<= 1.0 s", f"{d - b:.2f} s", goal(d - b <= 1.0)),
    ]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
