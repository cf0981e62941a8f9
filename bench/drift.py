"""Drift report at scale: 1M rows x 20 columns per side through
`mlops_pipeline.monitoring.drift.compute_drift`
(exact PSI / Jensen-Shannon on every row + the Evidently HTML report from a 50k-row sample) against
Evidently's DataDriftPreset on the full frames, with a per-column verdict comparison.

Goal: <= 15 s and <= 1 GiB peak for ours, same per-column verdicts as Evidently on the full frames.
Each side runs in its own child process (wall time and peak RSS from os.wait4); a third child only
builds the frames, so the frames' own memory is shown separately.

Streamed (`compute_drift_chunks`, what the drift report does with a run's new rows): the same
current side fed in 10 chunks (scores must equal the whole-frame ones exactly), and a current side
of `--stream-rows` rows generated and fed 100,000 rows at a time, never whole: it holds the
numerical columns' values (8 bytes each; exact Sturges bins need both sides' range) and counts of
the rest, so its peak must stay below what its frames would take whole.

    uv run python bench/drift.py [--rows 1000000] [--stream-rows 10000000] [--skip-evidently] [--no-wait]
                                 [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import SMOKE_HELP, goal, run_measured, smoke, table, wait_quiet

CATEGORICAL = ["cat_a", "cat_b", "cat_c", "cat_d"]
NUMERICAL = [f"num_{i:02d}" for i in range(15)] + ["small_int"]
SHIFTED = {"num_00": 0.5, "num_01": 0.05, "num_02": 0.2, "cat_a": None, "small_int": None}


def make_frames(rows: int, seed: int = 0) -> tuple:
    """Reference and current with known shifts: some columns clearly drift, some barely, most not.
    Categoricals use pandas' category dtype (what a 1M-row frame of codes looks like)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)

    def side(shifted: bool) -> pd.DataFrame:
        cols: dict[str, object] = {}
        for i, c in enumerate(NUMERICAL[:-1]):
            shift = SHIFTED.get(c, 0.0) if shifted else 0.0
            x = rng.normal(shift, 1.0 + 0.1 * i, rows) if i % 3 else rng.gamma(2.0 + i, 1.0 + shift, rows)
            if i % 4 == 1:
                x[rng.random(rows) < 0.02] = np.nan
            cols[c] = x
        cols["small_int"] = rng.integers(0, 12 + (3 if shifted else 0), rows)
        for j, c in enumerate(CATEGORICAL):
            k = 5 + 10 * j
            p = np.linspace(1, 2, k) ** (4 if shifted and c == "cat_a" else 1)
            values = rng.choice([f"{c}_{v}" for v in range(k)], rows, p=p / p.sum())
            cols[c] = pd.Categorical(values)
        return pd.DataFrame(cols)

    return side(False), side(True)


STREAM_CHUNK = 100_000


def child(mode: str, rows: int, out: Path, stream_rows: int) -> None:
    from mlops_pipeline.monitoring.drift import compute_drift, compute_drift_chunks
    from mlops_pipeline.spec_sections import DriftSpec

    if mode == "stream":  # the current side is never whole: generated a chunk at a time
        ref = make_frames(rows)[0]
        chunks = (make_frames(STREAM_CHUNK, seed=1 + i)[1] for i in range(stream_rows // STREAM_CHUNK))
    else:
        ref, cur = make_frames(rows)
    if mode == "data":
        return
    spec = DriftSpec()
    started = time.perf_counter()
    if mode in ("ours", "chunks", "stream"):
        if mode == "chunks":
            step = -(-rows // 10)
            chunks = iter([cur[i:i + step] for i in range(0, rows, step)])
        result = (compute_drift(ref, cur, CATEGORICAL, NUMERICAL, spec) if mode == "ours"
                  else compute_drift_chunks(ref, chunks, CATEGORICAL, NUMERICAL, spec))
        result.save_html(out.with_suffix(".html"))
        cols = {c.column: (c.score, c.drifted) for c in result.columns}
    else:
        from mlops_pipeline.monitoring.drift import _evidently_columns, _evidently_report

        snap = _evidently_report(ref, cur, CATEGORICAL, NUMERICAL, spec)
        snap.save_html(str(out.with_suffix(".html")))
        cols = {c.column: (c.score, c.drifted) for c in _evidently_columns(snap)}
    out.write_text(json.dumps({"seconds": time.perf_counter() - started, "columns": cols,
                               "current_rows": result.current_rows if mode != "evidently" else rows}))
    os._exit(0)  # skip the ~2 s of garbage collection at exit; the result is written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side")
    parser.add_argument("--stream-rows", type=int, default=10_000_000,
                        help="current rows streamed 100,000 at a time (0: skip)")
    parser.add_argument("--skip-evidently", action="store_true", help="no full-frame baseline (~65 s, 2 GiB)")
    parser.add_argument("--no-wait", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = smoke(parser.parse_args(), rows=3000, stream_rows=STREAM_CHUNK, skip_evidently=True)
    if args.child:
        child(args.child[0], args.rows, Path(args.child[1]), args.stream_rows)
        return 0

    wait_quiet(args.no_wait)
    modes = (["data", "ours", "chunks"] + (["stream"] if args.stream_rows else [])
             + ([] if args.skip_evidently else ["evidently"]))
    measured, results = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        for mode in modes:
            out = Path(tmp) / f"{mode}.json"
            m = run_measured([sys.executable, __file__, "--rows", str(args.rows), "--stream-rows",
                              str(args.stream_rows), "--child", mode, str(out)])
            if m.returncode != 0:
                raise RuntimeError(f"{mode} failed:\n{m.output[-3000:]}")
            measured[mode] = m
            if mode != "data":
                results[mode] = json.loads(out.read_text())

    gib = 1024**3
    data_rss = measured["data"].max_rss
    rows = []
    for mode in modes[1:]:
        m, r = measured[mode], results[mode]
        rows.append((mode, f"{r['current_rows']:,}", r["seconds"], m.seconds, m.max_rss / gib,
                     (m.max_rss - data_rss) / gib))
    print(f"\n{args.rows:,} rows x {len(CATEGORICAL) + len(NUMERICAL)} columns per side; frames alone: "
          f"{data_rss / gib:.2f} GiB peak RSS\n")
    print(table(["drift computation", "current rows", "compute s", "process wall s", "peak GiB",
                 "peak over frames GiB"], rows))
    ours = results["ours"]
    chunked_equal = results["chunks"]["columns"] == ours["columns"]
    print(f"10 chunks: every score equal to the whole frame's: {chunked_equal}")
    if "evidently" in results:
        ev = results["evidently"]["columns"]
        comp = [(c, f"{s:.5f}", "drift" if d else "-", f"{ev[c][0]:.5f}", "drift" if ev[c][1] else "-",
                 d == ev[c][1]) for c, (s, d) in ours["columns"].items()]
        print(table(["column", "ours score", "ours", "evidently score", "evidently", "same verdict"], comp))
        same = all(row[-1] for row in comp)
        print(f"speed-up {results['evidently']['seconds'] / ours['seconds']:.1f}x, "
              f"verdicts identical: {same}")
    else:
        same = None
    # What the streamed sides' frames would take whole: the frames child holds 1 + 1 sides of --rows.
    whole = data_rss / 2 * (1 + args.stream_rows / args.rows)
    print(table(["goal", "target", "measured", "status"], [
        ("time", "<= 15 s", f"{ours['seconds']:.1f} s", goal(ours["seconds"] <= 15)),
        ("peak memory", "<= 1 GiB", f"{measured['ours'].max_rss / gib:.2f} GiB",
         goal(measured["ours"].max_rss <= gib)),
        ("verdicts = Evidently full frames", "all columns", "-" if same is None else str(same),
         "not run" if same is None else goal(same)),
        ("streamed scores = whole-frame scores", "all columns, exactly", str(chunked_equal),
         goal(chunked_equal)),
        *([("streamed peak, current never whole", f"< its frames whole ({whole / gib:.2f} GiB)",
            f"{measured['stream'].max_rss / gib:.2f} GiB ({measured['stream'].max_rss / whole:.2f}x)",
            goal(measured["stream"].max_rss < whole))] if "stream" in measured else []),
    ]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
