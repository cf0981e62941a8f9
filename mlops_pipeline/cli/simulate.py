"""`mlops-pipeline simulate`: replay later months through the serving API and watch the loop close."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlops_pipeline.cli.common import (
    RegistryUnreachable,
    check_registry,
    execute_job,
    open_instance,
    tracking_uri,
)
from mlops_pipeline.cli.run_output import print_summary
from mlops_pipeline.processes import stop_group
from mlops_pipeline.settings import Settings
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout: float = 120.0, process: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    """Return once the serving process at `url` answers /ready; raise RuntimeError after `timeout`
    seconds, or at once if `process` (the one we started) has exited, with the tail of its `log`."""
    import httpx

    def failed(why: str) -> RuntimeError:
        tail = f":\n{log.read_text()[-3000:]}" if log is not None and log.exists() else ""
        return RuntimeError(f"the serving process at {url} {why}{tail}")

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise failed(f"exited with code {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise failed(f"did not become ready in {timeout:.0f} s")


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Replay months through a serving process and print what the loop did each month."""
    from mlops_pipeline.data.landing import load_flights_with_weather
    from mlops_pipeline.defs.definitions import build_definitions
    from mlops_pipeline.defs.simulation import run_simulation
    from mlops_pipeline.spec import load_spec

    try:
        check_registry(tracking_uri(settings), data_root=settings.data_root)
    except RegistryUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    spec = load_spec(settings.dataset_config)

    def execute(job, instance, **kwargs):
        """Each run as one line per step; a retraining also gets its metrics table and decision."""
        print(f"   run of {job.name}:")
        result = execute_job(job, instance, verbose=args.verbose, say=print, **kwargs)
        if job.name == "mlops_loop":
            print_summary(result)
        return result
    server = None
    url = args.server_url
    if not url:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cli = str(Path(sys.executable).parent / "mlops-pipeline")
        server = subprocess.Popen(
            [cli, "serve", "--port", str(port), "--poll-seconds", "1"],
            env=settings.child_env(OMP_NUM_THREADS="1"), start_new_session=True,
        )
        print(f"started a serving process at {url} (pid {server.pid})")
    try:
        wait_ready(url, process=server)
        reports = run_simulation(
            build_definitions(settings), load_flights_with_weather(), spec, url, months=args.months,
            sample=args.sample,
            label_share=args.label_share, label_delay=args.label_delay,
            label_lag_days=args.label_lag_days,
            token=settings.serve_token, execute=execute, instance=open_instance(settings),
        )
    finally:
        if server is not None:
            stop_group(server, timeout=20)
    print_table(reports, spec, args.label_lag_days)
    return 0


def print_table(reports, spec, label_lag_days: int = 0) -> None:
    """One line per replayed month: traffic, labels, drift, retrainings, champion, and the gate's
    first metric estimated before labels next to the realized one."""
    from mlops_pipeline.defs.simulation import month_metric

    metric = month_metric(reports, spec)
    shown = (f"  est. {metric}  realized" if metric else "")
    print("\nmonth  sent  labelled  drift  retrained(trigger: gate)            "
          + (f"{'champion':<12}{shown}" if metric else "champion"))
    for r in reports:
        runs = ", ".join(f"{x['trigger']}: {'passed' if x['gate_passed'] else 'blocked'}"
                         for x in r.retrain_runs) or "no"
        drift = "—" if r.drift_share is None else f"{r.drift_share:.0%}"
        metrics = ""
        if metric:
            est, real = r.estimated.get(metric), r.realized.get(metric)
            metrics = (f"  {'—' if est is None else f'{est:.3f}':>{len(metric) + 5}}"
                       f"  {'—' if real is None else f'{real:.3f}':>8}")
        print(f"{r.month:>5}  {r.sent:>4}  {r.labelled:>8}  {drift:>5}  {runs:<33}  "
              f"{f'v{r.champion_before} -> v{r.champion_after}':<12}{metrics}")
    if reports and reports[-1].labels_pending:
        print(f"{reports[-1].labels_pending} labels still to come (--label-lag-days {label_lag_days})")
    if metric:
        print(f"est. {metric}: estimated before labels on the day's served traffic so far; realized: "
              "on the labels that had arrived")


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the `simulate` subcommand."""
    sim = sub.add_parser("simulate", help="replay later months through the serving API; watch the loop react")
    sim.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    sim.add_argument("--months", type=int, nargs="+", default=[4, 8, 12])
    sim.add_argument("--sample", type=float, default=0.05, help="fraction of each month's flights to replay")
    sim.add_argument("--label-share", type=float, default=1.0, help="share of predictions that get a label")
    sim.add_argument("--label-delay", type=float, default=2.0, help="seconds before labels are posted")
    sim.add_argument("--label-lag-days", type=int, default=0, metavar="N",
                     help="delayed labels: a month's labels are posted when the month N steps later "
                     "is replayed (default 0: at once); the estimated-performance sensor then runs too")
    sim.add_argument("--server-url", help="a running `mlops-pipeline serve` (default: start one)")
    sim.add_argument("--verbose", action="store_true", help="show Dagster's full event log of each run")
    sim.set_defaults(func=cmd_simulate)
