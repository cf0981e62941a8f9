"""Deploy commands: serve a registered model, promote a version through the gate, roll back.

A new model never needs a code deploy: the server follows the `champion` alias, so promote and
rollback are registry moves, and these commands report when a running server has picked them up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from mlops_pipeline.cli.common import mlflow_client, require_registry, storage_client
from mlops_pipeline.settings import Settings
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG, load_spec


def cmd_serve(args: argparse.Namespace, process: Settings) -> int:
    """Serve a registered model until stopped (`mlops_pipeline.serving`, which reads its own knobs)."""
    # Before numpy/sklearn load: HistGradientBoosting's OpenMP threads only burn the second core
    # on small batches, and a fast failing registry call is what makes /health say "degraded"
    # instead of hanging in MLflow's default retry loop.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if args.config:  # the serving processes read the dataset from their environment
        os.environ["MLOPS_DATASET_CONFIG"] = process.dataset_config
    from mlops_pipeline.serving.run import serve
    from mlops_pipeline.serving.settings import ServeSettings

    # A model of another name, served with no dataset config: its MLflow signature is the contract.
    by_signature = (args.model_name and not args.config and process.dataset_config == DEFAULT_DATASET_CONFIG
                    and args.model_name != load_spec(process.dataset_config).name)
    settings = ServeSettings.from_env(
        host=args.host, port=args.port, workers=args.workers, model_name=args.model_name, alias=args.alias,
        version=args.version, poll_seconds=args.poll_seconds, shadow=args.shadow,
        canary_share=args.canary_share, unseen_categories=args.unseen_categories,
        predictions_url=args.predictions_url, contract="signature" if by_signature else None,
    )
    from mlops_pipeline.serving.settings import ExposureError, check_exposure
    from mlops_pipeline.serving.workers import PortInUse

    try:
        check_exposure(settings)
    except ExposureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not settings.loopback:
        print(f"warning: binding {settings.host}: the server is reachable from other machines "
              "(/feedback and /admin/* require the token)", file=sys.stderr)
    name = settings.model_name or load_spec(process.dataset_config).name
    print(f"serving {name}@{settings.version or settings.alias} "
          f"on {settings.url}", flush=True)
    try:
        serve(settings)
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cli_actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def _print_moves(moves) -> None:
    if not moves:
        print("nothing moved")
    for move in moves:
        print(f"moved {move}")
        _warn_unrecorded(str(move), move.history_error)


def _warn_unrecorded(move: str, error: str | None) -> None:
    if error:
        print(f"WARNING: {move} is NOT in the alias history ({error}); the registry did move",
              file=sys.stderr)


def _find_server(name: str, explicit: str | None, settings: Settings) -> str | None:
    """The server URL: --server-url, MLOPS_SERVE_URL / MLOPS_SERVING_URL, or the state file a live
    server wrote under the data dir."""
    if explicit:
        return explicit
    if settings.serve_url or settings.serving_url:
        return settings.serve_url or settings.serving_url
    from mlops_pipeline.serving.settings import ServeSettings, state_path

    path: Path = state_path(ServeSettings.from_env(), name)
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
        return str(state["url"])
    except (OSError, ValueError, KeyError):
        return None


def _serves(health: dict, version: str) -> bool:
    """The whole server answers with `version`: every worker process, when it has several."""
    workers = health.get("workers")
    if workers:
        return all(str(w.get("champion_version")) == version for w in workers)
    return str(health.get("model_version")) == version


def wait_for_version(url: str, version: str, timeout: float, token: str = "") -> float | None:
    """Seconds until `url` answers with `version` as champion (None on timeout).

    With a token, the server is asked to re-read the registry at once instead of at its next poll.
    """
    import httpx

    started = time.perf_counter()
    with httpx.Client(base_url=url.rstrip("/"), timeout=5.0) as client:
        if token:
            with contextlib.suppress(httpx.HTTPError):
                client.post("/admin/reload", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        while time.perf_counter() - started < timeout:
            try:
                if _serves(client.get("/health").json(), str(version)):
                    return time.perf_counter() - started
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.05)
    return None


def _report_server(name: str, version: str, args: argparse.Namespace, settings: Settings) -> int:
    url = _find_server(name, args.server_url, settings)
    if url is None:
        print("no running server found (pass --server-url or set MLOPS_SERVE_URL to wait for one)")
        return 0
    seconds = wait_for_version(url, version, args.timeout, settings.serve_token)
    if seconds is None:
        print(f"server {url} did not answer with v{version} within {args.timeout:.0f}s", file=sys.stderr)
        return 1
    print(f"server {url} answers with v{version} after {seconds:.2f}s")
    return 0


def cmd_promote(args: argparse.Namespace, settings: Settings) -> int:
    """Promote a version through the eval gate (or `--force`) and wait for a running server."""
    from mlops_pipeline.deployment.promotion import PromotionRefused, promote_version
    from mlops_pipeline.deployment.registry import RegistryError

    spec = load_spec(settings.dataset_config)
    mlflow = mlflow_client(settings, existing=True)
    try:
        report, moves = promote_version(mlflow, storage_client(settings), spec, args.version,
                                        force=args.force, actor=_cli_actor(), reason=args.reason or "",
                                        new_registry=args.new_registry, model_name=args.model_name)
    except RegistryError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except PromotionRefused as exc:
        _print_gate(exc.report)
        print(f"refused: v{args.version} did not pass the gate ({exc}); --force overrides it "
              "(recorded on the version)", file=sys.stderr)
        return 1
    if report is not None:
        _print_gate(report)
    if report is not None and report.external:
        print(f"{report.name} v{report.version} tagged origin=external: its card says what is unknown")
    if args.force and (report is None or not report.passed):
        print("forced: recorded as tags promotion.forced / promotion.forced_reasons on the version")
    _print_moves(moves)
    from mlops_pipeline.deployment.tags import CHAMPION

    champion = next((m.to_version for m in moves if m.alias == CHAMPION), str(args.version))
    return _report_server(spec.name, str(champion), args, settings) if moves else 0


def _print_gate(report) -> None:
    champ = f"champion v{report.champion_version}" if report.champion_version else "no champion"
    whose = " (the champion's holdout: trained outside the loop, no snapshot of its own)" \
        if report.external else ""
    print(f"gate for {report.name} v{report.version} vs {champ} on snapshot {report.snapshot_id[:12]}"
          f"{whose}:")
    if report.comparison:
        print(f"  holdout: {report.comparison}")
    for v in report.result.verdicts:
        champion = "-" if v.champion is None else f"{v.champion:.4f}"
        print(f"  {v.metric:<10} candidate {v.candidate:.4f}  champion {champion}  "
              f"{'passed' if v.passed else 'FAILED'}")
    print(f"gate: {'passed' if report.passed else 'failed'}")


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    """Champion back to previous-champion: through a running server when one can, else here."""
    spec = load_spec(settings.dataset_config)
    token = settings.serve_token
    url = _find_server(spec.name, args.server_url, settings) if token else None
    if url is not None:
        done = _rollback_through(url, spec.name, token, args.timeout, settings, args.reason or "")
        if done is not None:
            return done
    return _rollback_here(spec.name, args, settings)


def _rollback_through(url: str, name: str, token: str, timeout: float, settings: Settings,
                      reason: str = "") -> int | None:
    """Ask the running server to move the aliases and reload (`POST /admin/rollback`): it has MLflow
    loaded already, so this costs an HTTP client instead of MLflow's imports and store set-up.
    None when the server cannot do it for us (another registry or model, an older server, not
    reachable): the caller then moves the aliases itself."""
    import httpx

    from mlops_pipeline.deployment.registry import registry_fingerprint
    from mlops_pipeline.deployment.tags import CHAMPION

    started = time.perf_counter()
    body = {"model_name": name,
            "registry": registry_fingerprint(settings.tracking_uri, token),
            "actor": _cli_actor(), "reason": reason}
    try:
        r = httpx.post(f"{url.rstrip('/')}/admin/rollback", json=body, timeout=timeout,
                       headers={"Authorization": f"Bearer {token}"})
        payload = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"server {url} could not roll back ({type(exc).__name__}): moving the aliases here")
        return None
    if r.status_code == 409 and payload.get("kind") == "rollback_refused":
        print(payload.get("detail", "cannot roll back"), file=sys.stderr)
        return 1
    if r.status_code != 200:
        print(f"server {url} did not roll back ({r.status_code}: {payload.get('detail', '')}): "
              "moving the aliases here")
        return None
    for move in payload["moves"]:
        src = f"v{move['from_version']}" if move["from_version"] else "(none)"
        print(f"moved {move['model']}@{move['alias']}: {src} -> v{move['to_version']}")
        _warn_unrecorded(f"{move['model']}@{move['alias']}", move.get("history_error"))
    new = next(str(m["to_version"]) for m in payload["moves"] if m["alias"] == CHAMPION)
    if not _serves(payload, new):
        return _report_server(name, new, argparse.Namespace(server_url=url, timeout=timeout), settings)
    print(f"server {url} answers with v{new} after {time.perf_counter() - started:.2f}s")
    return 0


def _rollback_here(name: str, args: argparse.Namespace, settings: Settings) -> int:
    # The plain registry, not the Dagster resource: rollback is a hot path (seconds count), and
    # importing Dagster would add most of a second before the alias moves.
    from mlops_pipeline.deployment.registry import Registry, RegistryError, client_for
    from mlops_pipeline.deployment.tags import CHAMPION

    require_registry(settings)
    registry = Registry(client_for(settings.tracking_uri))
    try:
        moves = registry.rollback(name, actor=_cli_actor(), reason=args.reason or "")
    except RegistryError as exc:
        print(f"cannot roll back: {exc}", file=sys.stderr)
        return 1
    _print_moves(moves)
    new = next(m for m in moves if m.alias == CHAMPION).to_version
    return _report_server(name, new, args, settings)


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the `serve`, `promote` and `rollback` subcommands."""
    serve = sub.add_parser("serve", help="serve the champion (or any alias/version) over HTTP")
    serve.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--workers", type=int,
                       help="serving processes on the port, e.g. one per core (default 1)")
    serve.add_argument("--model-name", help="registered model (default: the dataset's name); another "
                       "model's name without --config: its MLflow signature is the contract")
    serve.add_argument("--alias", help="alias to follow (default champion)")
    serve.add_argument("--version", help="pin one version instead of following an alias")
    serve.add_argument("--poll-seconds", type=float, help="how often the alias is re-read (default 5)")
    serve.add_argument("--shadow", action=argparse.BooleanOptionalAction, default=None,
                       help="score champion traffic with the challenger too (logged, never returned)")
    serve.add_argument("--canary-share", type=float, help="share of traffic the challenger answers")
    serve.add_argument("--unseen-categories", choices=["accept", "reject"],
                       help="policy for categories the model never saw (default accept)")
    serve.add_argument("--predictions-url", help="SQLAlchemy URL of the prediction store")
    serve.set_defaults(func=cmd_serve)

    promote = sub.add_parser("promote", help="make VERSION champion if it passes the eval gate")
    promote.add_argument("version")
    promote.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    promote.add_argument("--force", action="store_true",
                         help="promote even if the gate fails (recorded as a tag on the version)")
    promote.add_argument("--server-url", help="a running server to wait for (default: found)")
    promote.add_argument("--timeout", type=float, default=60.0)
    promote.add_argument("--reason", help="why, recorded in the alias history with the gate verdict")
    promote.add_argument("--model-name", help="VERSION of this registered model (e.g. a notebook's): "
                         "gated against the dataset's champion, then copied into the dataset's model")
    promote.add_argument("--new-registry", action="store_true",
                         help="allow a first champion in a registry the alias history does not know")
    promote.set_defaults(func=cmd_promote)

    rollback = sub.add_parser("rollback", help="champion back to previous-champion in one step")
    rollback.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    rollback.add_argument("--server-url", help="a running server to wait for (default: found)")
    rollback.add_argument("--timeout", type=float, default=60.0)
    rollback.add_argument("--reason", help="why, recorded in the alias history")
    rollback.set_defaults(func=cmd_rollback)
