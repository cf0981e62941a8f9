"""`mlops-pipeline history`: every alias move on record, and which version an alias named at a time.
Batches quarantined or restored (`mlops-pipeline batches`) are on the same record, as the alias
`batch:<file>` of the dataset, from/to `landed`/`quarantined`.

Reads the alias history (`mlops_pipeline.deployment.history`) from the prediction store's database;
imports neither MLflow nor Dagster, so it answers in well under a second.
"""

from __future__ import annotations

import argparse
import json
import sys

from mlops_pipeline.deployment.tags import CHAMPION
from mlops_pipeline.settings import Settings
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG


def _model_name(args: argparse.Namespace, settings: Settings) -> str:
    if args.model:
        return args.model
    from mlops_pipeline.spec import load_spec

    return load_spec(settings.dataset_config).name


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    """Print the alias moves on record, or which version an alias named at `--at`."""
    from mlops_pipeline.deployment.history import AliasHistory, parse_time

    try:
        at = parse_time(args.at) if args.at else None
    except ValueError as exc:
        print(f"--at: {exc}", file=sys.stderr)
        return 2
    history = AliasHistory(args.predictions_url or settings.predictions_url or None)
    try:
        if at is not None:
            return _at(history, _model_name(args, settings), args.alias or CHAMPION, at, args.json)
        model = args.model or (_model_name(args, settings) if args.config else None)
        events = history.events(model=model, alias=args.alias, limit=args.limit)
    finally:
        history.close()
    if args.json:
        print(json.dumps({"events": [e.as_dict() for e in events]}, indent=2))
        return 0
    if not events:
        print("no alias moves on record" + (f" for {model}" if model else ""))
        return 0
    rows = [(str(e.id), e.at.isoformat(timespec="milliseconds"), f"{e.model}@{e.alias}",
             *_states(e), e.actor, e.reason) for e in events]
    head = ("id", "at (UTC)", "alias", "from", "to", "by", "why")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0


def _states(e) -> tuple[str, str]:
    """The event's from and to: versions of an alias move; `landed`/`quarantined` of a batch
    quarantined or restored (`data.quarantine`, alias `batch:<file>`)."""
    if e.alias.startswith("batch:"):
        return e.from_version or "-", e.to_version or "-"
    return (f"v{e.from_version}" if e.from_version else "-",
            f"v{e.to_version}" if e.to_version else "(removed)")


def _at(history, model: str, alias: str, at, as_json: bool) -> int:
    found = history.event_at(model, alias, at)
    version = None if found is None else found.to_version
    if as_json:
        print(json.dumps({"model": model, "alias": alias, "at": at.isoformat(), "version": version,
                          "event": None if found is None else found.as_dict()}, indent=2))
        return 0
    if found is None:
        print(f"{model}@{alias} at {at.isoformat()}: no move on record by then")
    elif version is None:
        print(f"{model}@{alias} at {at.isoformat()}: unset (removed {found.at.isoformat()} by "
              f"{found.actor}: {found.reason})")
    else:
        print(f"{model}@{alias} at {at.isoformat()}: v{version} (since {found.at.isoformat()}, by "
              f"{found.actor}: {found.reason})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the `history` subcommand."""
    p = sub.add_parser("history", help="alias moves (and batch quarantines) on record; --at TIME: "
                       "which version an alias named")
    p.add_argument("--model", help="registered model (default: every model; with --at, the dataset's)")
    p.add_argument("--alias", help="one alias (default: all; with --at, champion)")
    p.add_argument("--at", metavar="TIME",
                   help="ISO 8601 time (naive = UTC) or 'now': which version the alias named then")
    p.add_argument("--limit", type=int, help="only the newest N events")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    p.add_argument("--predictions-url",
                   help="database of the history (default: MLOPS_PREDICTIONS_URL, else the embedded store)")
    p.set_defaults(func=cmd_history)
