"""`mlops-pipeline labels import FILE`: labels from people back into the prediction store.

FILE is the labeling queue's CSV with its `label` column filled in (any CSV with `request_id` and
`label` columns), or a Label Studio JSON export of the queue's tasks (`data.request_id`, the last
non-cancelled annotation's first `choices`, `number` or `textarea` result). Each label is checked as
`POST /feedback` checks it and attached by the store's `set_label`: importing the same file twice
changes nothing the second time. Imports neither MLflow nor Dagster's definitions.
"""

from __future__ import annotations

import argparse
import sys

from mlops_pipeline.settings import Settings
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG

SHOWN = 20


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Attach labels from a file to the logged predictions they answer."""
    from mlops_pipeline.monitoring.labeling import import_labels, read_labels
    from mlops_pipeline.monitoring.predictions import PredictionStore
    from mlops_pipeline.spec import load_spec

    spec = load_spec(settings.dataset_config)
    try:
        rows, problems = read_labels(args.file)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = args.predictions_url or settings.predictions_url or None
    store = PredictionStore(url)
    try:
        report = import_labels(store, rows, spec)
    finally:
        store.close()
    print(f"{args.file}: {len(rows)} label(s) read — {report.summary()}")
    for title, items in (("unknown request ids", report.unknown), ("invalid labels", report.invalid),
                         ("skipped", problems)):
        if items:
            print(f"{title}:")
            for item in items[:SHOWN]:
                print(f"  {item}")
            if len(items) > SHOWN:
                print(f"  ... and {len(items) - SHOWN} more")
    return 1 if report.invalid else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the `labels import` subcommand."""
    p = sub.add_parser("labels", help="labels from people: import a filled labeling queue")
    labels = p.add_subparsers(dest="labels_command", required=True)
    imp = labels.add_parser(
        "import", help="attach labels from a CSV (request_id,label) or a Label Studio JSON export",
        description="Attach labels through the same checks as POST /feedback, idempotently; "
        "reports unknown request ids. CSV: columns request_id and label (others ignored, empty "
        "labels skipped). JSON: Label Studio export; the last non-cancelled annotation's first "
        "choices / number / textarea result is the label.")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    imp.add_argument("--predictions-url",
                     help="prediction store (default: MLOPS_PREDICTIONS_URL, else the embedded store)")
    imp.set_defaults(func=cmd_import)
