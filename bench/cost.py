"""Cost per 1,000 predictions of the flights champion, from the server's own cost metrics.

Trains and registers the champion through the pipeline, serves it (`mlops-pipeline serve`, one
process), sends requests of 1 and of 100 records from a few client threads, and reads
`/metrics`: CPU seconds of the model calls per 1,000 scored records, priced at
MLOPS_COST_PER_CORE_HOUR (default 0.05 USD). For context it also prints the whole server
process's CPU per 1,000 records (parsing, validation, capture, HTTP), which the metric leaves out.

    uv run python bench/cost.py [--sample 1.0] [--requests 2000] [--no-wait] [--keep] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
from _common import bench_args, bench_env, cpu_seconds, serving, smoke, table, trained

PRICE = 0.05


def _counters(url: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        m = re.match(r'(mlops_scor\w+_total)\{[^}]*role="champion"[^}]*\} (\S+)', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per request size")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    args = smoke(bench_args(parser, sample=1.0).parse_args(), sample=0.12, requests=20, threads=2)

    rows = []
    with trained("cost", args, "the champion") as (root, holdout):
        records = holdout[:2000]
        env = {**bench_env(root), "MLOPS_COST_PER_CORE_HOUR": str(PRICE)}
        with serving(root, "cost", env=env) as srv, httpx.Client(base_url=srv.url, timeout=60) as http:
            for size in (1, 100):
                bodies = [json.dumps({"records": [records[(i * size + k) % len(records)]
                                                  for k in range(size)]})
                          for i in range(args.requests)]

                def post(body: str, client: httpx.Client = http) -> None:
                    client.post("/predict", content=body,
                                headers={"content-type": "application/json"}).raise_for_status()

                with ThreadPoolExecutor(args.threads) as pool:
                    list(pool.map(post, bodies[:100]))  # warm up
                    before, cpu0 = _counters(srv.url), cpu_seconds(srv.proc.pid)
                    list(pool.map(post, bodies))
                after, cpu1 = _counters(srv.url), cpu_seconds(srv.proc.pid)
                d = {k: after[k] - before.get(k, 0.0) for k in after}
                n = d["mlops_scored_records_total"]
                server = 1000 * (cpu1 - cpu0) / n
                rows.append((
                    f"{size} record(s) per request", int(n),
                    f"{1000 * d['mlops_scoring_cpu_seconds_total'] / n:.4f}",
                    f"{1000 * d['mlops_scoring_cost_usd_total'] / n:.2e}",
                    f"{server:.4f}", f"{server * PRICE / 3600:.2e}",
                ))
    print(f"\nflights champion, one serving process, {args.threads} client threads, "
          f"price {PRICE} USD per core-hour\n")
    print(table(["requests", "records", "model CPU s / 1k", "model USD / 1k (metric)",
                 "server CPU s / 1k", "server USD / 1k"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
