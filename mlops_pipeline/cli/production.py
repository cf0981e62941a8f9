"""`mlops-pipeline up --profile production`: the production topology on one machine
(`topology.production`), every URL printed, everything stopped on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from mlops_pipeline.settings import Settings


def cmd_up_production(args: argparse.Namespace, settings: Settings) -> int:
    from mlops_pipeline.processes import stop_group, stop_on_signals, watch_children
    from mlops_pipeline.topology import production
    from mlops_pipeline.topology.servers import MissingServer

    stop_on_signals()
    # Not under data/: as root, PostgreSQL runs as `nobody`, who must be able to enter the folder.
    root = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="mlops-production-"))
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    top = None
    watchers: list = []
    try:
        top = production.start(root, replicas=args.replicas, land_sample=args.land_sample,
                               dataset_config=args.config, ports={"dagster": args.port})
        watchers.append(watch_children(top.all_procs()))  # stops it all even if `up` gets kill -9
        width = max(map(len, top.urls))
        print("\nproduction topology up (every process on 127.0.0.1):")
        for name, url in top.urls.items():
            print(f"  {name:<{width}}  {url}")
        print(f"\nstate, logs and the client environment: {root} (production.env, logs/)")
        print(f"  set -a; . {root / 'production.env'}; set +a   # then any mlops-pipeline command")
        print("the new_data_sensor (daemon) trains the first champion; the replicas answer once "
              "it is promoted. A process that exits is restarted; Ctrl-C (or SIGTERM) stops "
              "everything.", flush=True)

        def rewatch() -> None:  # a restarted process has a new group: watch the new set
            watchers.append(watch_children(top.all_procs()))

        production.supervise(top, say=lambda line: print(line, flush=True), on_restart=rewatch)
        return 1
    except MissingServer as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopping the production topology", flush=True)
        return 0
    finally:
        if top is not None:
            top.stop()
        for watcher in watchers:
            stop_group(watcher, timeout=5)
