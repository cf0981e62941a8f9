"""Fallback load generator when wrk is not installed: N concurrent httpx clients for a fixed time,
in its own process (so it does not share a core's GIL with the server it measures).

usage: python bench/_loadgen.py URL BODIES_JSON CONNECTIONS SECONDS  -> prints one `BENCH {json}` line
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx


async def _worker(client: httpx.AsyncClient, url: str, bodies: list[str], start: int, until: float,
                  latencies: list[float], errors: list[int]) -> None:
    i = start
    headers = {"content-type": "application/json"}
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        try:
            r = await client.post(url, content=bodies[i % len(bodies)], headers=headers)
            if r.status_code >= 400:
                errors.append(r.status_code)
        except httpx.HTTPError:
            errors.append(0)
        latencies.append(time.perf_counter() - t0)
        i += 1


async def main(url: str, bodies: list[str], connections: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(_worker(client, url, bodies, k, until, latencies, errors)
                               for k in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0.0

    return {"requests": len(latencies), "errors": len(errors), "seconds": elapsed,
            "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99)}


if __name__ == "__main__":
    target, bodies_path, conns, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    result = asyncio.run(main(target, json.loads(Path(bodies_path).read_text()), conns, secs))
    print("BENCH " + json.dumps(result), flush=True)
