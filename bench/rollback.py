"""Rollback under traffic: from starting `mlops-pipeline rollback` to the running server answering
with the previous version, while a client keeps posting single-record requests.

Two ways the server can learn of the move, measured in the same run:
- with MLOPS_SERVE_TOKEN set, the CLI asks the running server to do it (authenticated POST
  /admin/rollback: the server, which has MLflow loaded, moves the aliases and re-reads the
  registry at once, loads and warms the version, then swaps it atomically);
- without a token (baseline), the CLI moves the aliases itself and the server notices at its next
  alias poll (`--poll-seconds`, default 5; 1 in the smoke run).

Goal: <= 2 s and no failed request.

    uv run python bench/rollback.py [--rounds 3] [--sample 1.0] [--poll-seconds 5] [--no-wait] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx
from _common import BIN, MODEL, bench_args, bench_env, goal, serving, smoke, table, trained

TOKEN = "bench-token-0123456789abcdefghijklmnop"  # the server requires 32+ characters


class Client(threading.Thread):
    """Closed-loop single-record traffic; remembers when each version was first answered."""

    def __init__(self, url: str, body: str):
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.sent = self.failed = 0
        self.first_seen: dict[str, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as c:
            while not self._halt.is_set():
                try:
                    r = c.post("/predict", content=self.body, headers={"content-type": "application/json"})
                    self.sent += 1
                    if r.status_code != 200:
                        self.failed += 1
                        continue
                    self.first_seen.setdefault(r.json()["model_version"], time.perf_counter())
                except httpx.HTTPError:
                    self.sent += 1
                    self.failed += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)


def _promote_v2(url: str) -> None:
    from mlops_pipeline.deployment.tracking import MLflow

    MLflow().promote(MODEL, "2")
    deadline = time.time() + 60
    while httpx.get(f"{url}/health").json().get("model_version") != "2":
        if time.time() > deadline:
            raise TimeoutError("server never answered with v2")
        time.sleep(0.1)


def _round(root: Path, url: str, body: str, token: str) -> tuple[float, float, int, int, str]:
    _promote_v2(url)
    env = {**bench_env(root), "MLOPS_SERVE_TOKEN": token} if token else bench_env(root)
    client = Client(url, body)
    client.start()
    time.sleep(1.0)
    client.first_seen.pop("1", None)
    started = time.perf_counter()
    out = subprocess.run([str(BIN / "mlops-pipeline"), "rollback", "--server-url", url, "--timeout", "60"],
                         env=env, capture_output=True, text=True, timeout=120)
    cli_done = time.perf_counter()
    deadline = time.time() + 30
    while "1" not in client.first_seen and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)
    client.stop()
    if out.returncode != 0:
        raise RuntimeError(out.stdout + out.stderr)
    answered = client.first_seen.get("1", float("nan")) - started
    said = next((x for x in out.stdout.splitlines() if x.startswith("server ")), "")
    return answered, cli_done - started, client.sent, client.failed, said


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll-seconds", type=float, default=5.0,
                        help="the server's alias poll (`serve --poll-seconds`), the baseline's delay")
    args = smoke(bench_args(parser, sample=1.0).parse_args(), rounds=1, sample=0.12, poll_seconds=1.0)

    with trained("rollback", args) as (root, holdout):
        import json

        body = json.dumps({"records": holdout[:1]})
        results = {"token": [], "poll": []}
        with serving(root, "ours", "--poll-seconds", f"{args.poll_seconds:g}",
                     env={**bench_env(root), "MLOPS_SERVE_TOKEN": TOKEN}) as srv:
            for _ in range(args.rounds):
                for mode in results:
                    results[mode].append(_round(root, srv.url, body, TOKEN if mode == "token" else ""))

    rows = []
    for mode, label in (("token", "rollback via /admin/rollback (MLOPS_SERVE_TOKEN set)"),
                        ("poll", f"rollback, server polls ({args.poll_seconds:g} s; baseline)")):
        rs = results[mode]
        rows.append((label, statistics.median(r[0] for r in rs), max(r[0] for r in rs),
                     statistics.median(r[1] for r in rs), sum(r[2] for r in rs), sum(r[3] for r in rs)))
    print(f"\n{args.rounds} rounds each; times from starting the CLI process\n")
    print(table(["how the server learns", "to v1 answers (median s)", "worst s", "CLI exits (median s)",
                 "requests", "failed"], rows))
    print("CLI said: " + " | ".join(r[4] for r in results["token"]))
    worst, failed = rows[0][2], rows[0][5] + rows[1][5]
    print(table(["goal", "target", "measured", "status"], [
        ("rollback -> previous version answering", "<= 2 s", f"{worst:.2f} s (worst)", goal(worst <= 2.0)),
        ("failed requests", "0", str(failed), goal(failed == 0)),
        ("vs polling baseline", "-", f"{rows[1][1] / rows[0][1]:.1f}x faster", "-"),
    ]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
