"""`mlops-pipeline`: the command line around the loop.

Each module here registers its own subcommands; `mlops-pipeline --help` lists them all. A command
is `cmd(args, settings)`: argument parsing over core functions, with the process settings read once
by `main`, `--config` already resolved in them (`settings.dataset_config`; see `resolve_config`).
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops_pipeline.settings import Settings

# One module per area, each with `register(subparsers)`.
COMMAND_MODULES = [
    "mlops_pipeline.cli.loop",
    "mlops_pipeline.cli.ci",
    "mlops_pipeline.cli.deploy",
    "mlops_pipeline.cli.history",
    "mlops_pipeline.cli.explain",
    "mlops_pipeline.cli.simulate",
    "mlops_pipeline.cli.labels",
    "mlops_pipeline.cli.batches",
    "mlops_pipeline.cli.segments",
]


def build_parser() -> argparse.ArgumentParser:
    """The `mlops-pipeline` parser, with the subcommands of every module in `COMMAND_MODULES`."""
    parser = argparse.ArgumentParser(
        prog="mlops-pipeline",
        description="A production MLOps loop on Dagster: data snapshots, gated MLflow models, "
        "drift reports.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        import_module(name).register(sub)
    return parser


def resolve_config(args: argparse.Namespace, settings: Settings) -> Settings:
    """THE home of `--config`: a relative path is read from the working directory, resolved here
    once to an absolute `args.config`, and the returned settings read it (`dataset_config`), so
    every command uses both as given. What the user typed stays in `args.config_as_typed`, for
    what commands print."""
    if not hasattr(args, "config"):
        return settings
    args.config_as_typed = args.config
    settings = settings.with_dataset(args.config)  # the one resolution (absolute, from the cwd)
    args.config = settings.dataset_config if args.config else None
    return settings


def _config_problem(args: argparse.Namespace, settings: Settings) -> str | None:
    """Validate the dataset config of a command that takes `--config` before it lands or launches
    anything; the one-line problem, or None when the config is fine."""
    from mlops_pipeline.spec import ConfigError, load_spec

    if not hasattr(args, "config"):
        return None
    try:
        load_spec(settings.dataset_config)
    except (ConfigError, FileNotFoundError) as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None) -> int:
    """Parse, read the process settings (once: every command gets them), check the dataset config,
    run the command. An invalid config is one line on stderr (`<file>: <field>: <problem> — <fix>`)
    and exit code 2, never a traceback."""
    from mlops_pipeline.cli.common import RegistryUnreachable
    from mlops_pipeline.redaction import install
    from mlops_pipeline.settings import Settings
    from mlops_pipeline.spec import ConfigError

    install()  # before anything can print: credentials masked in every line and log record
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    install(settings.secrets())
    settings = resolve_config(args, settings)
    problem = _config_problem(args, settings)
    if problem is None:
        try:
            return int(args.func(args, settings) or 0)
        except ConfigError as exc:
            problem = str(exc)
        except RegistryUnreachable as exc:  # `common.require_registry`: bounded, URI masked
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"error: {' '.join(problem.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
