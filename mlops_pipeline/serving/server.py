"""One serving process: its parts, built and torn down in order, and what its endpoints answer.

Everything here is plain Python over payloads and dicts: the app (`serving.app`) reads requests,
checks the token and turns errors into responses; the scoring path is `serving.scoring`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import TYPE_CHECKING, Any

from mlops_pipeline.data.contract import load_contract
from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline.serving.capture import CaptureWriter
from mlops_pipeline.serving.errors import FieldError, RequestError
from mlops_pipeline.serving.inputs import RecordChecker
from mlops_pipeline.serving.loader import LoadedModel, ModelWatcher
from mlops_pipeline.serving.metrics import ServingMetrics
from mlops_pipeline.serving.scoring import Scorer, canary_eligible
from mlops_pipeline.serving.settings import ServeSettings, redact, secrets_of, state_path
from mlops_pipeline.serving.workers import WorkerGroup, remove_state, write_state
from mlops_pipeline.spec import DatasetSpec

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class Server:
    """Everything one serving process owns: settings, contract checks, metrics, the prediction
    store and its writer, the model watcher, the scorer and (with several workers) its group.

    `registry` is what the watcher reads aliases from: `deployment.tracking.MLflow`, or anything
    with its `version_by_alias` (tests pass a stand-in). Built and started in the app's lifespan,
    stopped there in order: no request in flight, no capture lost."""

    def __init__(self, settings: ServeSettings, spec: DatasetSpec, registry: Any,
                 store: PredictionStore):
        self.settings = settings
        self.spec = spec
        self.model_name = settings.model_name or spec.name
        # Never shown: the registry's password, the store's, the admin token (see `redact`).
        self.secrets = secrets_of(settings, getattr(registry, "tracking_uri", "") or "")
        if settings.contract == "signature":  # a model from outside the loop: its signature
            from mlops_pipeline.serving.signature import signature_contract

            self.spec, schema = signature_contract(registry, self.model_name, settings.alias,
                                                   settings.version)
            self.checker = RecordChecker(schema, self.spec.features.columns)
        else:
            contract = load_contract(spec)
            self.checker = RecordChecker(contract.for_columns(spec.features.columns), spec.features.columns,
                                         keep=spec.key_columns, domain=contract.domain)
        self.metrics = ServingMetrics()
        # a model served by its signature alone has no dataset config: no owner to name
        self.metrics.owner_info.labels(self.model_name, getattr(self.spec, "owner", None) or "",
                                       getattr(self.spec, "runbook_url", None) or "").set(1)
        self.store = store
        self.writer = CaptureWriter(store, settings.capture_max_rows, on_commit=self._on_commit)
        # One of several worker processes of this server (serve --workers N): see serving/workers.py.
        self.group = WorkerGroup.from_env() if settings.workers > 1 else None
        follow = settings.shadow or settings.canary_share > 0
        self.watcher = ModelWatcher(
            registry, self.model_name, alias=settings.alias, version=settings.version,
            follow_challenger=follow, poll_seconds=settings.poll_seconds,
            prepare=self._prepare_example, on_swap=self._on_swap,
            asked=self.group.reload_requested if self.group else None, on_poll=self._on_poll,
            on_load_failed=self._on_load_failed,
        )
        self.scorer = Scorer(settings, self.checker, self.watcher, self.metrics, self.writer)
        self.state = state_path(settings, self.model_name)
        self.started = time.time()

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the capture writer, the model watcher and the scorer (in the event loop)."""
        self.writer.start()
        self.watcher.start()
        self.scorer.start()

    async def ready_to_serve(self) -> None:
        """Return once this process may take connections, and record it in the state file.

        A worker (a replacement, say) waits for its first registry poll (model loaded, or the
        registry found unreachable): its siblings answer meanwhile, so it must not take a
        connection only to say "not ready". With several workers the supervisor writes the state
        file (`serving.run`)."""
        if self.settings.workers > 1:
            await asyncio.get_running_loop().run_in_executor(None, self.watcher.wait_first_poll, 120.0)
        else:
            write_state(self.state, self.settings.url, self.model_name)

    async def stop(self) -> None:
        """Answer what is queued, stop following the registry, commit every capture, leave."""
        await self.scorer.stop()
        self.watcher.stop()
        self.writer.close()
        self.store.close()
        if self.group is not None:
            self.group.leave()
        self.metrics.leave()
        remove_state(self.state)

    def _prepare_example(self, df: pd.DataFrame) -> pd.DataFrame:
        present = [c for c in self.checker.columns if c in df.columns]
        if len(present) < len(self.checker.columns):  # a model taking fewer columns than the
            from mlops_pipeline.data.contract import validate  # contract: its own, coerced

            return validate(df[present], self.checker.schema.select_columns(present))
        return self.scorer.prepare_example(df)  # the watcher is built before the scorer

    def _on_load_failed(self, failure: Any) -> None:
        self.metrics.load_failures.labels(failure.slot).inc()

    def _on_commit(self, rows: int, seconds: float) -> None:
        self.metrics.commit_rows.observe(rows)
        self.metrics.commit_seconds.observe(seconds)

    def _on_poll(self) -> None:
        w = self.watcher
        self.metrics.registry_up.set(1 if w.status.reachable else 0)
        if self.group is not None:
            self.group.publish(w.champion.version if w.champion else None,
                               w.challenger.version if w.challenger else None, w.status.last_check)

    def _on_swap(self, slot: str, old: LoadedModel | None, new: LoadedModel | None) -> None:
        # The imported stack and a loaded model are hundreds of thousands of long-lived objects;
        # moving them out of the collector's generations keeps full collections (latency spikes
        # on the request path) short.
        gc.collect()
        gc.freeze()
        if old is not None:
            self.metrics.model_info.labels(old.name, old.version, slot).set(0)
        if new is not None:
            self.metrics.model_info.labels(new.name, new.version, slot).set(1)
        log.info("%s: %s -> %s", slot, old.version if old else None, new.version if new else None)

    # ---- what the endpoints answer -------------------------------------------------------------
    def health_body(self) -> dict[str, Any]:
        """/health: `starting` until the first model is loaded (whatever the registry says: its
        error is in `registry`), then `ok`, or `degraded` while the registry is unreachable or an
        alias points at a version that failed to load (`model_load_error`, one line) and the
        loaded model keeps serving; the loaded versions, canary and shadow state, the registry's
        last check (credentials masked) and every worker's status. `/ready` is the yes/no."""
        w = self.watcher
        status = "starting" if w.champion is None else "ok" if w.status.reachable else "degraded"
        # A version the alias points at that failed to load: the loaded one answers, and why is
        # said in one line (`model_load_error`).
        load_error = redact(w.load_problem(), self.secrets)
        if load_error and status == "ok":
            status = "degraded"
        champion, challenger = w.champion, w.challenger
        return {
            "status": status,
            "model_load_error": load_error,
            "model_name": self.model_name,
            "model_version": champion.version if champion else None,
            "champion": champion.describe() if champion else None,
            "challenger": challenger.describe() if challenger else None,
            "canary_share": self.settings.canary_share,
            "canary_active": canary_eligible(challenger) and self.settings.canary_share > 0,
            "shadow": self.settings.shadow and challenger is not None,
            "registry": {
                "reachable": w.status.reachable, "last_error": redact(w.status.last_error, self.secrets),
                "last_check": w.status.last_check, "last_success": w.status.last_success,
            },
            "uptime_seconds": time.time() - self.started,
            **({"workers": self.group.statuses()} if self.group is not None else {}),
        }

    def readiness(self) -> dict[str, Any]:
        """/ready: `ready` once a model is loaded, and with several workers (the port is shared)
        once every worker has one; otherwise the reason."""
        champion = self.watcher.champion
        if champion is None:
            return {"ready": False, "reason": "no model loaded yet"}
        if self.group is not None:
            loaded = [w for w in self.group.statuses() if w.get("champion_version")]
            if len(loaded) < self.settings.workers:
                return {"ready": False, "reason": f"{len(loaded)} of {self.settings.workers} "
                        "workers have loaded a model"}
        return {"ready": True, "model_name": champion.name, "model_version": champion.version}

    def metrics_text(self) -> bytes:
        """/metrics in Prometheus' text format (every worker's, with several)."""
        self.metrics.registry_up.set(1 if self.watcher.status.reachable else 0)
        return self.metrics.render()

    async def feedback(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Store a label for an answered request (its served and shadow rows): 422 for an invalid
        label or id, 404 for an id this store never captured."""
        rid, label = payload.get("request_id"), payload.get("label")
        errs = []
        if not isinstance(rid, str) or not rid:
            errs.append(FieldError(None, "request_id", "expected a non-empty string", rid))
        label, problem = self._feedback_label(label)
        if problem:
            errs.append(FieldError(None, "label", problem, payload.get("label")))
        if errs:
            raise RequestError(422, "invalid feedback", errs)
        matched, changed = await self.writer.label(rid, label)
        if not matched:
            raise RequestError(404, f"unknown request_id {rid!r}", kind="not_found")
        return {"request_id": rid, "label": label, "rows": matched, "changed": changed}

    def _feedback_label(self, label: Any) -> tuple[Any, str | None]:
        """The label as stored, or why it is not one (`preparation.feedback_label`), judged by the
        loaded champion's classes."""
        from mlops_pipeline.data.preparation import feedback_label

        champion = self.watcher.champion
        classes = champion.classes.labels if champion is not None and champion.classes else ()
        return feedback_label(label, self.spec, classes)

    async def reload(self) -> dict[str, Any]:
        """Re-read the registry now, in this process and (with several workers) every worker;
        `polled` is False if that did not finish within a minute."""
        return {"polled": await self._reload_everywhere(), **self.health_body()}

    async def _reload_everywhere(self) -> bool:
        loop = asyncio.get_running_loop()
        asked = self.group.request_reload() if self.group is not None else 0.0
        done = await loop.run_in_executor(None, self.watcher.refresh_now, 60.0)
        if self.group is not None:  # the reload is done when every worker has polled since
            done = await loop.run_in_executor(None, self.group.wait_polled_since, asked, 60.0) and done
        return done

    async def rollback(self, payload: dict[str, Any]) -> dict[str, Any]:
        """`mlops-pipeline rollback` through the running server: the same registry move
        (`Registry.rollback`), by a process that has MLflow loaded and its registry connection
        open, followed at once by the reload; the CLI then needs only an HTTP client.

        Only for the model this server serves, and only if the CLI talks to the same registry
        (`registry_fingerprint`, keyed by the admin token): otherwise 409 `mismatch`, and the CLI
        moves the aliases itself. The moves are recorded in the alias history of this server's
        prediction store, as made by this server on behalf of the caller (its `actor`, `reason`)."""
        from mlops_pipeline.deployment.registry import Registry, RegistryError, registry_fingerprint

        if payload.get("model_name") != self.model_name:
            raise RequestError(409, f"this server serves {self.model_name!r}, not "
                               f"{payload.get('model_name')!r}", kind="mismatch")
        uri = getattr(self.watcher.registry, "resolved_tracking_uri", "")
        if not uri or payload.get("registry") != registry_fingerprint(uri, self.settings.token):
            raise RequestError(409, "this server follows another registry", kind="mismatch")
        caller = str(payload.get("actor") or "")[:200]
        actor = f"server:{self.settings.url}" + (f" for {caller}" if caller else "")
        reason = str(payload.get("reason") or "")[:2000] or "POST /admin/rollback"
        registry = Registry(self.watcher.registry.client(), history_url=self.settings.predictions_url or None)
        try:
            moves = await asyncio.get_running_loop().run_in_executor(
                None, lambda: registry.rollback(self.model_name, actor=actor, reason=reason))
        except RegistryError as exc:
            raise RequestError(409, f"cannot roll back: {exc}", kind="rollback_refused") from None
        log.info("rollback: %s", "; ".join(str(m) for m in moves))
        polled = await self._reload_everywhere()
        return {"moves": [m.as_dict() for m in moves], "polled": polled, **self.health_body()}
