"""`mlops-pipeline batches`: the landed batches with their check status; `batches quarantine FILE
--reason ...` sets one aside (out of the next snapshot, never deleted, on record in `history`);
`batches restore FILE` brings it back. Argument parsing over `mlops_pipeline.data.quarantine`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from mlops_pipeline.settings import Settings
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG


def _context(args: argparse.Namespace, settings: Settings):
    from mlops_pipeline.cli.common import storage_client
    from mlops_pipeline.deployment.history import AliasHistory
    from mlops_pipeline.spec import load_spec

    spec = load_spec(settings.dataset_config)
    history = AliasHistory(args.predictions_url or settings.predictions_url or None)
    return spec, storage_client(settings), history


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli:unknown"


def cmd_batches(args: argparse.Namespace, settings: Settings) -> int:
    """List (default), quarantine or restore landed batches."""
    from mlops_pipeline.data.quarantine import QuarantineError, list_batches, quarantine, restore
    from mlops_pipeline.data.storage import StorageError

    spec, storage, history = _context(args, settings)
    try:
        action = args.action or "list"
        if action == "list":
            return _print_list(*list_batches(spec, storage, history), spec.name, args.json)
        if action == "quarantine":
            event = quarantine(spec, storage, args.file, args.reason, history, actor=_actor())
            print(f"quarantined {event.alias.split(':', 1)[1]}: moved out of the next snapshot's "
                  f"inputs (kept in the quarantine folder; snapshots already written are untouched)")
        else:
            event = restore(spec, storage, args.file, history, reason=args.reason or "",
                            actor=_actor())
            print(f"restored {event.alias.split(':', 1)[1]}: the next snapshot reads it again")
        print(f"recorded in the history (#{event.id}, {event.at.isoformat(timespec='seconds')}, "
              f"by {event.actor}): {event.reason}")
        return 0
    except QuarantineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:  # the store failed (the message names the step): nothing recorded
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        history.close()


def _print_list(batches: list, source: str, dataset: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"dataset": dataset, "checks": source,
                          "batches": [b.as_dict() for b in batches]}, indent=2))
        return 0
    if not batches:
        print(f"no landed batches for dataset {dataset!r}")
        return 0
    print(f"{dataset}: {len(batches)} batch file(s); check status {source}")
    width = max(len(b.name) for b in batches)
    for b in batches:
        line = f"  {b.name:<{width}}  {b.state:<11}  {b.status:<11}"
        if b.state == "quarantined" and b.event is not None:
            line += f"  since {b.event.at.isoformat(timespec='seconds')} by {b.event.actor}: {b.event.reason}"
        print(line.rstrip())
        for problem in b.problems[:5]:
            print(f"      {problem}")
        if len(b.problems) > 5:
            print(f"      (+{len(b.problems) - 5} more)")
    if any(b.status == "blocked" for b in batches):
        print('set a blocked batch aside: mlops-pipeline batches quarantine FILE --reason "..."')
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the `batches` subcommand (list, quarantine, restore)."""
    p = sub.add_parser("batches", help="landed batches and their check status; quarantine or "
                       "restore one")
    p.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    p.add_argument("--predictions-url",
                   help="database of the history (default: MLOPS_PREDICTIONS_URL, else the embedded store)")
    p.add_argument("--json", action="store_true", help="machine-readable list")
    p.set_defaults(func=cmd_batches, action=None)
    actions = p.add_subparsers(dest="action")
    actions.add_parser("list", help="every landed and quarantined batch with its check status")
    q = actions.add_parser("quarantine", help="move a landed batch out of the snapshot's inputs, "
                           "on record (never deleted)")
    q.add_argument("file", help="the batch's file name (as `batches` lists it) or its path")
    q.add_argument("--reason", required=True, help="why: recorded in the history with who and when")
    r = actions.add_parser("restore", help="bring a quarantined batch back among the landed ones")
    r.add_argument("file", help="the quarantined batch's file name")
    r.add_argument("--reason", default="", help="why (recorded; default 'restored')")
    for sp in (q, r, actions.choices["list"]):
        sp.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--predictions-url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
