"""`segments suggest`: a draft `segments:` section for the dataset config, from the landed data."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG

if TYPE_CHECKING:
    from mlops_pipeline.settings import Settings


def cmd_segments(args: argparse.Namespace, settings: Settings) -> int:
    """Print a draft `segments:` section (`deployment.segments.suggest_segments`) to paste into
    the dataset config and review; nothing is written."""
    import yaml

    from mlops_pipeline.cli.common import preflight
    from mlops_pipeline.data.snapshots import read_landing
    from mlops_pipeline.deployment.segments import draft_tolerance, suggest_segments
    from mlops_pipeline.spec import load_spec

    spec = load_spec(settings.dataset_config)
    preflight(settings)
    frame = read_landing(spec.landing_glob(settings.data_root), spec.source.format)
    tolerance, how = draft_tolerance(frame, spec)
    draft = suggest_segments(frame, spec, max_values=args.max_values, tolerance=tolerance)
    print(f"# a draft from {len(frame):,} landed rows: review it, then paste it into "
          f"{args.config_as_typed or settings.dataset_config}")
    text = yaml.safe_dump({"segments": draft}, sort_keys=False, default_flow_style=None)
    line = f"  tolerance: {yaml.safe_dump(tolerance).splitlines()[0]}\n"
    sys.stdout.write(text.replace(line, f"{line[:-1]}  # {how}\n", 1))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the `segments` subcommand (suggest)."""
    p = sub.add_parser("segments", help="groups of rows judged on their own (`segments:`)")
    actions = p.add_subparsers(dest="action", required=True)
    s = actions.add_parser("suggest", help="propose segment columns (few distinct values) and "
                           "numeric bands from the landed data")
    s.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    s.add_argument("--max-values", type=int, default=50,
                   help="most distinct values a segment column may have (default 50)")
    s.set_defaults(func=cmd_segments)
