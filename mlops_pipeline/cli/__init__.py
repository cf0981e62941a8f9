"""`mlops-pipeline`: the command line around the loop.

Each module here registers its own subcommands; `mlops-pipeline --help` lists them all.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

# One module per area, each with `register(subparsers)`.
COMMAND_MODULES = [
    "mlops_pipeline.cli.loop",
    "mlops_pipeline.cli.ci",
    "mlops_pipeline.cli.deploy",
    "mlops_pipeline.cli.history",
    "mlops_pipeline.cli.simulate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops-pipeline",
        description="A production MLOps loop on Dagster: data snapshots, gated MLflow models, "
        "drift reports.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
