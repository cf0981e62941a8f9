"""`mlops-pipeline explain REQUEST_ID`: the whole lineage of one prediction in one answer.

And `explain --snapshot ID`: the model versions trained on a snapshot and what each served. The
joining is `mlops_pipeline.deployment.lineage`; this module only builds the clients (the same the
other commands use: `MLFLOW_TRACKING_URI`, `MLOPS_PREDICTIONS_URL`, `MLOPS_STORAGE_ROOT` /
`MLOPS_DATA_DIR` with `MLOPS_S3_ENDPOINT_URL`) and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from mlops_pipeline.cli.common import mlflow_client, storage_client
from mlops_pipeline.deployment.tags import COPIED_FROM_TAG, FIRST_RUN_CURRENT, ORIGIN_TAG
from mlops_pipeline.settings import Settings
from mlops_pipeline.spec import DEFAULT_DATASET_CONFIG


def _clients(args: argparse.Namespace, settings: Settings):
    from mlops_pipeline.deployment.history import AliasHistory
    from mlops_pipeline.monitoring.predictions import PredictionStore

    url = args.predictions_url or settings.predictions_url or None
    store = PredictionStore(url)
    history = AliasHistory(args.history_url or url)
    return store, history, mlflow_client(settings, existing=True).client(), storage_client(settings)


def _short(value: Any, n: int = 12) -> str:
    return "-" if value in (None, "") else str(value)[:n]


def _print_request(out: dict[str, Any]) -> None:
    rec, model, run, gate = out["record"], out["model"], out["run"], out["gate"]
    snap, training = out["snapshot"], out["training_run"]
    p = print
    p(f"request {rec['request_id']}  ({rec['model_name']})")
    p("  features: " + ", ".join(f"{k}={v}" for k, v in rec["features"].items()))
    for a in rec["answers"]:
        probs = a.get("probabilities")
        extra = (" " + ", ".join(f"P({k})={v:.4f}" for k, v in probs.items())) if probs else ""
        p(f"  answer [{a['role']}] v{a['model_version']}: {a['prediction']}{extra}  "
          f"latency {a['latency_ms']:.2f} ms  at {a['at']}")
    p(f"  label: {rec['label']}" + (f" (at {rec['label_at']})" if rec["label_at"] else "")
      if rec["label"] is not None else "  label: none yet")
    then = model["aliases_then"]
    p(f"model {model['name']} v{model['version']}  (registered {model['created']})")
    if "aliases" in then:
        named = ", ".join(f"{a}=v{v}" if v else f"{a}=unset" for a, v in then["aliases"].items())
        p(f"  aliases at {then['at']}: {named}")
        move = then.get("champion_move")
        if move:
            p(f"  champion since {move['at']} by {move['actor']}: {move['reason']}")
    else:
        p(f"  aliases then: {then['source']}")
    p("  aliases now: " + ", ".join(f"{a}=v{v}" if v else f"{a}=unset"
                                    for a, v in model["aliases_now"].items()))
    p("  holdout: " + ", ".join(f"{k}={v:.4f}" for k, v in model["metrics"].items()))
    m = run["manifest"] or {}
    if origin := model["tags"].get(ORIGIN_TAG):
        copied = model["tags"].get(COPIED_FROM_TAG)
        p(f"  origin: {origin}" + (f" (copied from {copied})" if copied else ""))
    p(f"run {run['run_id'] or '-'}  (experiment {run['experiment_id'] or '-'})")
    if m:
        dirty = {True: "dirty", False: "clean", None: "dirty unknown"}[m["git_dirty"]]
        p(f"  git {m['git_sha']} ({dirty})  uv.lock {_short(m['uv_lock_sha256'])}  "
          f"config {m['config_fingerprint']}  python {m['python']}")
        p("  seeds: " + ", ".join(f"{k}={v}" for k, v in m["seeds"].items())
          + "  inputs: " + ", ".join(f"{role} {f.get('path')} {_short(f.get('sha256'))}"
                                     for role, f in m["inputs"].items()))
        for path, why in m["uncommitted_inputs"].items():
            p(f"  uncommitted: {path} ({why})")
    else:
        p(f"  manifest: {run['note']}" if run.get("note") else "  manifest.yaml: not found on the run")
    vs = f"champion v{gate['champion_version']}" if gate["champion_version"] not in (None, "none") \
        else "no champion (floors only)"
    p(f"gate: {gate['status']} against {vs}" + (f": {gate['reasons']}" if gate["reasons"] else ""))
    champ = gate.get("champion")
    if champ and "tags" in champ:
        p(f"  champion v{champ['version']}: snapshot {_short(champ['tags'].get('snapshot_id'))}  "
          f"git {_short(champ['tags'].get('git_sha'))}  run {champ['run_id']}  "
          f"gate {champ['tags'].get('gate.status')}  "
          + ", ".join(f"{k}={v:.4f}" for k, v in champ["metrics"].items()))
    p(f"snapshot {snap['id']}")
    if "rows" in snap:
        p(f"  {snap['rows']:,} rows, {snap['time_start'] or '-'} to {snap['time_end'] or '-'}; "
          f"{len(snap['batches'])} landed batch file(s):")
        for b in snap["batches"]:
            flags = f"  FINDINGS: {'; '.join(b['check_findings'])}" if b.get("check_findings") else ""
            p(f"    {b['uri']}  content {b['content_id']}  {b['rows']:,} rows{flags}")
    else:
        p(f"  {snap.get('note', '')}")
    p(f"training run (Dagster) {training['dagster_run_id'] or '-'}")
    if not training["drift_reports"]:
        p("  drift reports: none logged by that run")
    for d in training["drift_reports"]:
        share = "-" if d["drift_share"] is None else f"{d['drift_share']:.2f}"
        against = (f"holdout vs v{d['champion_version']}'s training split (no champion yet)"
                   if d.get("current") == FIRST_RUN_CURRENT else f"vs champion v{d['champion_version']}")
        p(f"  drift report {d['name']}: drift share {share} {against}")
        for r in d["reports"]:
            p(f"    {r}")


def _print_snapshot(out: dict[str, Any]) -> None:
    snap = out["snapshot"]
    rows = f", {snap['rows']:,} rows" if "rows" in snap else ""
    print(f"snapshot {snap['id']}{rows}")
    for b in snap.get("batches", []):
        print(f"  {b['uri']}  content {b['content_id']}  {b['rows']:,} rows")
    if not out["versions"]:
        print(f"  no version of {out['model']} was trained on it")
    for v in out["versions"]:
        print(f"{out['model']} v{v['version']} (gate {v['gate.status']}): {v['predictions']:,} "
              f"prediction(s) served, {v['shadowed']:,} shadowed")
        for s in v["served"]:
            print(f"  {s['role']}: {s['predictions']:,} in {s['requests']:,} request(s), "
                  f"{s['first']} to {s['last']}")


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    """Print the lineage of one prediction, or what a snapshot's models served."""
    from mlops_pipeline.deployment.filters import FilterValueError, quote
    from mlops_pipeline.deployment.lineage import LineageError, explain_request, explain_snapshot
    from mlops_pipeline.ids import InvalidId, check_snapshot_prefix

    if bool(args.request_id) == bool(args.snapshot):
        print("give a REQUEST_ID or --snapshot ID (one of them)", file=sys.stderr)
        return 2
    try:
        if args.model is not None:
            quote(args.model)  # searched for in MLflow: refused now, before any client is built
        if args.snapshot:
            check_snapshot_prefix(args.snapshot)  # becomes a path under the store
    except (FilterValueError, InvalidId) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    store, history, client, storage = _clients(args, settings)
    try:
        if args.snapshot:
            from mlops_pipeline.spec import load_spec

            model = args.model or load_spec(settings.dataset_config).name
            out = explain_snapshot(args.snapshot, model=model, store=store, client=client,
                                   storage=storage)
        else:
            out = explain_request(args.request_id, store=store, client=client, storage=storage,
                                  history=history)
    except LineageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (FilterValueError, InvalidId) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
        history.close()
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    elif args.snapshot:
        _print_snapshot(out)
    else:
        _print_request(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Adds the `explain` subcommand."""
    p = sub.add_parser("explain", help="the lineage of one prediction (REQUEST_ID), or what a "
                       "snapshot's models served (--snapshot ID)")
    p.add_argument("request_id", nargs="?", metavar="REQUEST_ID",
                   help="a request id as the server returned it (X-Request-ID / request_id)")
    p.add_argument("--snapshot", metavar="ID",
                   help="a dataset snapshot id (or a unique prefix): the versions trained on it and "
                   "how many predictions each served, by role, first and last")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--model", help="registered model for --snapshot (default: the dataset's)")
    p.add_argument("--config", help=f"dataset config (default {DEFAULT_DATASET_CONFIG})")
    p.add_argument("--predictions-url",
                   help="the prediction store (default: MLOPS_PREDICTIONS_URL, else the embedded one)")
    p.add_argument("--history-url",
                   help="the alias history's database (default: --predictions-url's)")
    p.set_defaults(func=cmd_explain)
