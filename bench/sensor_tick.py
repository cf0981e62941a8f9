"""The new-data sensor's tick when one batch lands on top of many: through the batch index (reads
only the new batch, then every batch's stored row hashes: 8 bytes a row) against the old tick,
measured in the same run: the same sensor with the content named as before the index (re-read and
re-hash the whole landing area: `content_id(read_landing())`).

Batches are months of the flights year (copy k of the year shifted by k years, as bench/loop.py
lands its replicas). For each landing size N: N-1 batches are landed and indexed by a first tick,
then one more lands and the tick that notices it is timed (the real `new_data_sensor`, evaluated
in-process), twice: as Dagster's code server runs it (the process remembers the previous tick's
merged row hashes: it reads the new batch only) and as a fresh process would (it also reads every
batch's index file). Between repeats the new batch's index file is removed, so each repeat pays
for indexing it again. Bytes read are the process's read() bytes (/proc/self/io `rchar`, page cache
included) during the tick; the files were just written, so both sides read from the page cache.

Goal (issue 19): a tick at 100 batches costs about what it costs at 10.

    uv run python bench/sensor_tick.py [--batches 10 100] [--repeat 3] [--rows-per-batch N] [--no-wait]
                                       [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from _common import SMOKE_HELP, bench_env, smoke, table, temp_root, use_env, wait_quiet


def rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def months(rows_per_batch: int | None) -> list:
    """The flights year as 12 monthly frames (a seeded sample of each when `rows_per_batch`)."""
    from mlops_pipeline.data.landing import load_flights_with_weather

    df = load_flights_with_weather()
    out = [m for _, m in df.groupby("month")]
    if rows_per_batch:
        out = [m.sample(n=min(rows_per_batch, len(m)), random_state=0) for m in out]
    return out


def batch(monthly: list, i: int):
    """Batch i: month i % 12 of copy i // 12 of the year, shifted by that many years."""
    import pandas as pd

    k, m = divmod(i, 12)
    copy = monthly[m].copy()
    copy["year"] = copy["year"] + k
    copy["time_hour"] = copy["time_hour"] + pd.DateOffset(years=k)
    return copy, f"flights_{2013 + k}_{m + 1:02d}.parquet"


def measure(root: Path, monthly: list, n: int, repeat: int) -> dict:
    import dagster as dg

    from mlops_pipeline.data import batch_index
    from mlops_pipeline.data.batch_index import INDEX_DIR
    from mlops_pipeline.data.snapshots import content_id, read_landing
    from mlops_pipeline.defs import automation
    from mlops_pipeline.defs.definitions import build_definitions
    from mlops_pipeline.defs.resources import DatasetResource, StorageResource

    def old_way(pattern, fmt, storage=None, log=None, cache_rows=None):
        """The tick before the index: re-read and re-hash every landed batch."""
        return content_id(read_landing(pattern, fmt, storage=storage)), None

    new_way = batch_index.landing_content_id
    landing = root / "data" / "landing" / "flights"
    landing.mkdir(parents=True, exist_ok=True)
    rows = 0
    for i in range(n - 1):
        frame, name = batch(monthly, i)
        frame.to_parquet(landing / name, index=False)
        rows += len(frame)
    storage = StorageResource(root=str(root / "data"))
    resources = {"dataset": DatasetResource(), "storage": storage}
    defs = build_definitions()

    with dg.DagsterInstance.ephemeral() as instance:
        def tick(cursor):
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources,
                                              definitions=defs)
            return automation.new_data_sensor.evaluate_tick(context)

        started = time.perf_counter()
        before = tick(None)
        first_tick = time.perf_counter() - started
        frame, name = batch(monthly, n - 1)
        frame.to_parquet(landing / name, index=False)
        rows += len(frame)
        new_size = (landing / name).stat().st_size

        remembered = (batch_index._merged, dict(batch_index._headers))  # the code server's, after it
        warm_times, warm_bytes, new_times, new_bytes, old_times, old_bytes = [], [], [], [], [], []
        run_key = None
        for _ in range(repeat):
            for cold in (False, True):
                for f in (landing / INDEX_DIR).glob(f"{name}.*"):
                    f.unlink()
                batch_index.clear_cache()
                if not cold:  # the code server remembers the previous tick's landing state
                    batch_index._merged = remembered[0]
                    batch_index._headers.update(remembered[1])
                read0, t0 = rchar(), time.perf_counter()
                result = tick(before.cursor)
                (new_times if cold else warm_times).append(time.perf_counter() - t0)
                (new_bytes if cold else warm_bytes).append(rchar() - read0)
                assert len(result.run_requests) == 1, result.skip_message
                assert run_key in (None, result.run_requests[0].run_key)
                run_key = result.run_requests[0].run_key

            batch_index.landing_content_id = old_way  # the same sensor, naming content as before
            try:
                read0, t0 = rchar(), time.perf_counter()
                old = tick(before.cursor)
                old_times.append(time.perf_counter() - t0)
                old_bytes.append(rchar() - read0)
            finally:
                batch_index.landing_content_id = new_way
            assert old.run_requests[0].run_key == run_key, "the index named other content"
    index_bytes = sum(f.stat().st_size for f in (landing / INDEX_DIR).glob("*.rowindex"))
    landing_bytes = sum(f.stat().st_size for f in landing.glob("*.parquet"))
    return {"batches": n, "rows": rows, "landing_mb": landing_bytes / 2**20, "new_batch_mb": new_size / 2**20,
            "index_mb": index_bytes / 2**20, "first_tick_s": first_tick,
            "new_s": statistics.median(new_times), "new_mb": statistics.median(new_bytes) / 2**20,
            "warm_s": statistics.median(warm_times), "warm_mb": statistics.median(warm_bytes) / 2**20,
            "old_s": statistics.median(old_times), "old_mb": statistics.median(old_bytes) / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows-per-batch", type=int, default=None,
                        help="sample each month to this many rows (default: whole months, ~28k rows)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    args = smoke(parser.parse_args(argv), batches=[2, 3], repeat=1, rows_per_batch=200)
    wait_quiet(args.no_wait)
    monthly = months(args.rows_per_batch)
    results = []
    for n in args.batches:
        with temp_root(f"sensor-{n}") as root:
            use_env(bench_env(root))
            results.append(measure(root, monthly, n, args.repeat))
        r = results[-1]
        print(f"{n} batches: tick {r['warm_s']:.3f}s / {r['warm_mb']:.1f} MiB read (code server), "
              f"{r['new_s']:.3f}s / {r['new_mb']:.1f} MiB (fresh process); "
              f"old tick {r['old_s']:.3f}s / {r['old_mb']:.1f} MiB", flush=True)
    print(table(
        ["batches", "rows", "landing MiB", "new batch MiB", "index MiB",
         "tick s / read MiB (code server)", "tick s / read MiB (fresh process)",
         "tick s / read MiB (old: full re-hash)", "old/index time"],
        [[r["batches"], f"{r['rows']:,}", r["landing_mb"], r["new_batch_mb"], r["index_mb"],
          f"{r['warm_s']:.3f} / {r['warm_mb']:.1f}", f"{r['new_s']:.3f} / {r['new_mb']:.1f}",
          f"{r['old_s']:.3f} / {r['old_mb']:.1f}",
          f"{r['old_s'] / r['warm_s']:.0f}x / {r['old_s'] / r['new_s']:.0f}x"] for r in results]))
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        for label, t, b in (("code server", "warm_s", "warm_mb"), ("fresh process", "new_s", "new_mb"),
                            ("old tick", "old_s", "old_mb")):
            print(f"{label}: tick at {hi['batches']} vs {lo['batches']} batches costs "
                  f"{hi[t] / lo[t]:.2f}x the time, {hi[b] / max(lo[b], 1e-9):.2f}x the bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
