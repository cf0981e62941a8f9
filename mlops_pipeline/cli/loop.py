"""The loop's own commands: up, land, materialize, contract."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from mlops_pipeline.cli.common import (
    RegistryUnreachable,
    check_registry,
    ensure_dagster_home,
    mlflow_client,
    preflight,
    quiet_libraries,
    run_loop,
    storage_client,
    tracking_uri,
)
from mlops_pipeline.cli.run_output import print_summary
from mlops_pipeline.processes import default_signals, stop_group
from mlops_pipeline.settings import Settings
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG, PROJECT_ROOT


def cmd_land(args: argparse.Namespace, settings: Settings) -> int:
    """`--from PATH` lands your own files into the configured dataset's landing area; without it,
    NYC flights months, and only when the configured dataset lands where flights land."""
    from mlops_pipeline.data.landing import LandingInputError, land_files, land_months
    from mlops_pipeline.spec import load_spec

    source = getattr(args, "from_", None)
    spec = load_spec(settings.dataset_config)
    root = settings.data_root
    store = storage_client(settings)
    if store.is_s3:
        return _land_on_store(args, spec, store)
    if source:
        try:
            result = land_files(Path(source), spec, spec.landing_glob(root))
        except LandingInputError as exc:
            print(f"error: {exc} (nothing was landed)", file=sys.stderr)
            return 2
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        for path in result.written:
            print(f"landed {path}")
        for src, batch in result.already_landed:
            print(f"{src} is already landed as {batch}: nothing written")
        return 0
    landing = root / "landing" / "flights"
    if Path(spec.landing_glob(root)).parent != landing:
        print(f"error: {spec.name} lands in {Path(spec.landing_glob(root)).parent}, not the flights "
              f"area: land your files with `mlops-pipeline land --from PATH`", file=sys.stderr)
        return 2
    from mlops_pipeline.data.columns import check_frame
    from mlops_pipeline.data.landing import load_flights_with_weather

    flights = load_flights_with_weather()
    check_frame(spec, flights, "the NYC flights data")  # a ConfigError: one line, nothing landed
    written = land_months(landing, months=args.months, sample_fraction=args.sample, frame=flights)
    for path in written:
        print(f"landed {path}")
    if not written:
        print(f"months {args.months} already landed in {landing}")
    return 0


def _land_on_store(args: argparse.Namespace, spec, store) -> int:
    """`land` with the storage root on S3 (the production profile): flights months land in the
    store's landing area, each batch once (an existing object is never replaced). Own files are
    uploaded by the producer's own S3 tool; saying so beats landing them on a local disk that no
    sensor watches."""
    import tempfile

    from mlops_pipeline.data.landing import land_months, load_flights_with_weather

    folder = store.landing_glob(spec).rsplit("/", 1)[0]
    if getattr(args, "from_", None):
        print(f"error: the storage root is {store.location}: upload your files to {folder}/ with "
              "your S3 tool (aws s3 cp ...); `land --from` lands on local storage only", file=sys.stderr)
        return 2
    if spec.source.path.rsplit("/", 1)[0] != "landing/flights":
        print(f"error: {spec.name} lands in {folder}, not the flights area", file=sys.stderr)
        return 2
    from mlops_pipeline.data.columns import check_frame

    flights = load_flights_with_weather()
    check_frame(spec, flights, "the NYC flights data")
    relative = folder.removeprefix(store.location + "/")
    with tempfile.TemporaryDirectory() as tmp:
        written = land_months(Path(tmp), months=args.months, sample_fraction=args.sample, frame=flights)
        landed = [store.write_bytes(f"{relative}/{p.name}", p.read_bytes()) for p in written
                  if not store.exists(f"{folder}/{p.name}")]
    for uri in landed:
        print(f"landed {uri}")
    if not landed:
        print(f"months {args.months} already landed in {folder}")
    return 0


NEW_REGISTRY_HELP = ("promote a first champion into a registry this data dir's alias history does not "
                     "know (otherwise refused: a mistyped MLFLOW_TRACKING_URI)")


def _registry_or_exit(settings: Settings, new_registry: bool = False) -> bool:
    """Check, before anything trains, that the registry answers and is the one this data dir's
    alias history knows (`Registry.check_not_forgotten`, unless `new_registry`); say why not on
    stderr."""
    from mlops_pipeline.deployment.registry import RegistryError
    from mlops_pipeline.spec import load_spec

    try:
        check_registry(tracking_uri(settings), data_root=settings.data_root)
        if not new_registry:
            with quiet_libraries(False):  # MLflow's INFO lines on opening a new store
                mlflow_client(settings).registry().check_not_forgotten(
                    load_spec(settings.dataset_config).name)
    except (RegistryUnreachable, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def _promotion_config(new_registry: bool) -> dict:
    """The run config that lets `champion_model` promote into a registry the history does not know."""
    return {"ops": {"champion_model": {"config": {"new_registry": True}}}} if new_registry else {}


def registry_champion_lookup(settings: Settings):
    """A callable answering the registry's champion version for the configured dataset (None when
    there is none or the registry does not answer), asked only when a summary needs it."""

    def lookup() -> str | None:
        from mlops_pipeline.deployment.tags import CHAMPION
        from mlops_pipeline.spec import load_spec

        try:
            found = mlflow_client(settings).version_by_alias(load_spec(settings.dataset_config).name,
                                                             CHAMPION)
        except Exception:  # noqa: BLE001 - the summary then says "no champion", as before
            return None
        return None if found is None else str(found.version)

    return lookup


def _unchanged(settings: Settings) -> str | None:
    """`deployment.unchanged`'s reason to train nothing, for the configured dataset and registry;
    when something changed since the champion, says what before the run trains."""
    from mlops_pipeline.cli.common import storage_client
    from mlops_pipeline.deployment.unchanged import since_champion
    from mlops_pipeline.spec import load_spec

    found = since_champion(load_spec(settings.dataset_config), storage_client(settings),
                           mlflow_client(settings), settings.batch_index_cache_rows)
    if found is not None and found.changed:
        print(f"changed since champion v{found.version}: {', '.join(found.changed)}")
    return None if found is None else found.reason


def cmd_materialize(args: argparse.Namespace, settings: Settings) -> int:
    """Run the loop once, headless; exit 1 when it failed or a blocking check stopped it."""
    preflight(settings)  # a column the data lacks: one line (ConfigError), before anything is written
    if not _registry_or_exit(settings, args.new_registry):
        return 2
    run_config = _promotion_config(args.new_registry)
    if args.shuffle_labels:
        run_config.setdefault("ops", {})["trained_model"] = {"config": {"shuffle_labels": True}}
    elif not args.force:
        reason = _unchanged(settings)
        if reason:
            print(f"{reason}; --force retrains")
            return 0
    result = run_loop(run_config, verbose=args.verbose, say=print, settings=settings, checked=True)
    return 0 if print_summary(result, champion_lookup=registry_champion_lookup(settings)) else 1


def cmd_contract(args: argparse.Namespace, settings: Settings) -> int:
    """Draft a data contract from the landed data (`contract infer`)."""
    from mlops_pipeline.data.contract import ContractError, infer_contract, left_as_object, write_contract
    from mlops_pipeline.data.snapshots import read_landing
    from mlops_pipeline.spec import load_spec

    spec = load_spec(settings.dataset_config)
    out = Path(args.out) if args.out else spec.contract_path()
    if out.exists() and not args.force:
        print(f"{out} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    preflight(settings)  # the config's columns, before reading it all
    df = read_landing(spec.landing_glob(settings.data_root), spec.source.format)
    try:
        doc = infer_contract(df, spec, range_margin=args.range_margin, horizon_days=args.horizon_days)
    except ContractError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_contract(doc, out)
    loose = left_as_object(doc)
    if loose:
        print(f"warning: columns left as `object` (any text passes): {', '.join(loose)}; if one is "
              "a date or a number, fix the data or its dtype in the contract", file=sys.stderr)
    print(f"wrote a draft contract to {out}: review it (domain: categories, ranges, time window; "
          "null limits) and commit it")
    return 0


def _free_port(preferred: int) -> int:
    import socket

    for port in [preferred, 0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise RuntimeError("no free port")


def _missing_data_hint(spec, config: str, root: Path) -> str | None:
    """None when the configured dataset has landed data under `root`; else what to land and how."""
    import glob

    if glob.glob(spec.landing_glob(root)):
        return None
    return (f"no data landed for dataset {spec.name!r}: nothing matches {spec.landing_glob(root)}\n"
            f"land your file first, then run `up` again:\n"
            f"  uv run mlops-pipeline land --from FILE --config {config}\n"
            f"  uv run mlops-pipeline up --config {config}")


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    """Land (flights, when nothing is landed), run the loop once, start the Dagster and MLflow UIs."""
    from mlops_pipeline.processes import stop_on_signals, watch_children
    from mlops_pipeline.spec import load_spec

    if args.profile == "production":
        from mlops_pipeline.cli.production import cmd_up_production

        return cmd_up_production(args, settings)
    stop_on_signals()  # SIGTERM (and SIGINT, even if inherited ignored) ends `up` and its servers
    config = settings.dataset_config
    try:
        spec = load_spec(config)
    except (FileNotFoundError, ValueError) as exc:  # ConfigError is a ValueError naming file and field
        print(f"error: {exc}", file=sys.stderr)
        return 2
    preflight(settings)  # what is landed already must have the config's columns
    if not _registry_or_exit(settings, args.new_registry):
        return 2
    home = ensure_dagster_home(settings)
    mlflow_port = _free_port(args.mlflow_port)
    if not args.no_ui and not settings.mlflow_ui_url:
        settings = settings.replace(mlflow_ui_url=f"http://127.0.0.1:{mlflow_port}")
    root = settings.data_root
    hint = _missing_data_hint(spec, config, root)
    if hint and spec.landing_glob(root) == load_spec(DEFAULT_DATASET_CONFIG).landing_glob(root):
        print("no flights landed yet: landing January-March 2013")
        cmd_land(argparse.Namespace(months=[1, 2, 3], sample=1.0), settings)
    elif hint:
        print(hint, file=sys.stderr)
        return 2
    print("materializing the loop once (snapshot -> features -> model -> registry -> drift)")
    result = run_loop(_promotion_config(args.new_registry), verbose=args.verbose, say=print,
                      settings=settings)
    ok = print_summary(result, champion_lookup=registry_champion_lookup(settings))
    if args.no_ui:
        return 0 if ok else 1

    mlflow_res = mlflow_client(settings)
    bin_dir = Path(sys.executable).parent
    # The servers get this command's settings (dataset, UI links, instance) through their environment.
    env = settings.child_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                             MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", DAGSTER_HOME=str(home))
    procs: list[subprocess.Popen] = []
    watcher = None
    try:
        procs.append(subprocess.Popen(
            [str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port),
             "--backend-store-uri", mlflow_res.resolved_tracking_uri, "--workers", "1"],
            env=env, start_new_session=True, preexec_fn=default_signals,
        ))
        # `dg dev -w` (not the superseded `dagster dev`), started in DAGSTER_HOME so that no
        # dagster.yaml in the working directory competes with the instance's own.
        procs.append(subprocess.Popen(
            [str(bin_dir / "dg"), "dev", "-h", "127.0.0.1", "-p", str(args.port), "--log-level", "warning",
             "-w", str(PROJECT_ROOT / "workspace.yaml")],
            env=env, cwd=home, start_new_session=True, preexec_fn=default_signals,
        ))
        watcher = watch_children(procs)  # stops both servers even if `up` is killed with -9
        print(f"\nDagster UI: http://127.0.0.1:{args.port}   (pid {procs[1].pid}, DAGSTER_HOME={home})")
        print(f"MLflow UI:  http://127.0.0.1:{mlflow_port}   (pid {procs[0].pid})")
        print("Ctrl-C (or SIGTERM) stops both.", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        for p in procs:
            if p.returncode is not None:
                print(f"server pid {p.pid} exited with {p.returncode}; stopping the other", file=sys.stderr)
    except KeyboardInterrupt:
        print("stopping the servers", flush=True)
    finally:
        stop_group(*procs)
        if watcher is not None:
            stop_group(watcher, timeout=5)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the `up`, `land`, `materialize` and `contract infer` subcommands."""
    up = sub.add_parser("up", help="land data, materialize the loop once, start the UIs")
    up.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    up.add_argument("--port", type=int, default=3000, help="Dagster UI port (127.0.0.1)")
    up.add_argument("--mlflow-port", type=int, default=5000, help="MLflow UI port (127.0.0.1)")
    up.add_argument("--no-ui", action="store_true", help="materialize only; start no server")
    up.add_argument("--verbose", action="store_true", help="show Dagster's full event log of the run")
    up.add_argument("--new-registry", action="store_true", help=NEW_REGISTRY_HELP)
    up.add_argument("--profile", choices=["embedded", "production"], default="embedded",
                    help="production: PostgreSQL, S3, the MLflow server, a code server, the Dagster "
                    "daemon and webserver, serving replicas behind HAProxy and Prometheus, each its "
                    "own process (docs/production.md)")
    up.add_argument("--replicas", type=int, default=2, help="production: serving replicas (default 2)")
    up.add_argument("--land-sample", type=float, default=1.0,
                    help="production: fraction of each flights month landed on S3 (default 1.0)")
    up.add_argument("--state-dir", help="production: where servers keep their data and logs "
                    "(default: a new temporary folder)")
    up.set_defaults(func=cmd_up)

    land = sub.add_parser(
        "land", help="land your own CSV/Parquet files (--from), or monthly batches of NYC flights 2013"
    )
    land.add_argument("--from", dest="from_", metavar="PATH",
                      help="a CSV/Parquet file or a folder of them, landed as new batches of the "
                      "configured dataset (converted to its source.format; the same content lands once)")
    land.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    land.add_argument("--months", type=int, nargs="+", default=[1, 2, 3],
                      help="flights only (without --from): months of 2013 to land")
    land.add_argument("--sample", type=float, default=1.0,
                      help="flights only (without --from): fraction of each month to land")
    land.set_defaults(func=cmd_land)

    mat = sub.add_parser("materialize", help="run the whole loop headless through Dagster")
    mat.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    mat.add_argument("--shuffle-labels", action="store_true",
                     help="train on shuffled labels: watch the gate block a bad model")
    mat.add_argument("--force", action="store_true",
                     help="train even when the snapshot, config, contract, training code and libraries "
                     "are the champion's (otherwise: nothing changed, nothing is trained)")
    mat.add_argument("--verbose", action="store_true", help="show Dagster's full event log of the run")
    mat.add_argument("--new-registry", action="store_true", help=NEW_REGISTRY_HELP)
    mat.set_defaults(func=cmd_materialize)

    contract = sub.add_parser("contract", help="data contract tools")
    csub = contract.add_subparsers(dest="action", required=True)
    infer = csub.add_parser("infer", help="draft a contract from the landed data")
    infer.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    infer.add_argument("--out", help="where to write it (default: the config's `contract` path)")
    infer.add_argument("--force", action="store_true")
    infer.add_argument("--range-margin", type=float, default=0.1,
                       help="widen each numeric range by this share of its observed span (default 0.1)")
    infer.add_argument("--horizon-days", type=float, default=365.0,
                       help="time window ends this many days after the last timestamp (default 365)")
    infer.set_defaults(func=cmd_contract)
