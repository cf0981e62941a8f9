"""The serving app: one FastAPI process (or one per core, `serve --workers N`, see `workers.py`)
that can serve any registered model of a dataset spec.

Request path of POST /predict, and why it is shaped like this:
1. body read with a hard size limit (413 before any parsing work);
2. per-record checks derived from the contract (422 naming record and field; nothing is scored,
   nothing is captured);
3. routing: champion, or challenger for the canary share, decided by a hash of the request key
   so the same key always lands on the same model (sticky);
4. the micro-batcher validates many requests' records with the contract in one pandera call and
   scores them with one model call per model, in one dedicated thread;
5. capture: the request, as one row, goes to the group-commit writer and the response waits
   until it is committed, so an acknowledged prediction is never lost;
6. shadow: the challenger scores the champion's rows in its own thread with a bounded queue; its
   answers are captured with role `shadow` and never returned or waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from mlops_pipeline.data.contract import load_contract
from mlops_pipeline.defs.resources.predictions import (
    PredictionBatch,
    PredictionStore,
    new_batch_id,
    request_ids,
)
from mlops_pipeline.serving.batching import MicroBatcher
from mlops_pipeline.serving.capture import CaptureWriter
from mlops_pipeline.serving.inputs import (
    FieldError,
    RecordChecker,
    RequestError,
    finite_object,
    loads,
    validate_batch,
)
from mlops_pipeline.serving.loader import LoadedModel, ModelWatcher
from mlops_pipeline.serving.metrics import ServingMetrics
from mlops_pipeline.serving.settings import (
    ServeSettings,
    check_exposure,
    configure_logging,
    redact,
    secrets_of,
    state_path,
)
from mlops_pipeline.serving.workers import (
    GROUP_ENV,
    METRICS_ENV,
    SETTINGS_ENV,
    WorkerGroup,
    check_port_free,
    create_group_dir,
    supervise,
    write_json,
)
from mlops_pipeline.spec import DatasetSpec, load_spec

log = logging.getLogger(__name__)

CHAMPION, CANARY, SHADOW = "champion", "canary", "shadow"
#: A body above this (~600 flight records) is a large request: see `Server.predict`.
LARGE_BODY_BYTES = 256 * 1024


@dataclass
class PredictJob:
    records: list[Any]  # RecordChecker.record_type instances
    route: str
    batch_id: str  # the request ids are derived from it (resources.predictions.request_ids)
    received: float
    features: bytes | None = None  # the records as captured (one JSON array), encoded once


@dataclass
class PredictResult:
    model: LoadedModel
    role: str
    prediction: np.ndarray
    probability: np.ndarray | None
    scored: float
    probabilities: np.ndarray | None = None  # (n, k), classification
    index: np.ndarray | None = None  # the predicted class's column, classification


def canary_bucket(key: str) -> float:
    """A stable position in [0, 1) for a request key: the same key always routes the same way."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def canary_eligible(challenger: LoadedModel | None) -> bool:
    """Only a challenger that did not fail the eval gate may answer real traffic.

    Shadow is different: a shadow answer is never returned, so any challenger may shadow (that is
    how one looks at a rejected model on live traffic); a canary answer is returned to a client,
    so a version whose gate.status is "failed" never gets canary traffic.
    """
    return challenger is not None and challenger.gate_status != "failed"


class _Prediction(msgspec.Struct, gc=False):
    request_id: str
    prediction: Any


class _PredictionProba(msgspec.Struct, gc=False):
    request_id: str
    prediction: Any
    probability: float


class _PredictionProbas(msgspec.Struct, gc=False):
    request_id: str
    prediction: Any
    probability: float
    probabilities: Any  # a `_probabilities_struct` instance: {class: p}


_encode = msgspec.json.Encoder().encode
_PROBA_STRUCTS: dict[tuple, type] = {}


def _class_key(label: Any) -> str:
    """A class as a JSON object key: strings as they are, numbers and booleans as JSON writes them."""
    return label if isinstance(label, str) else json.dumps(label.item() if hasattr(label, "item") else label)


def _probabilities_struct(labels: tuple) -> type:
    """A struct type whose fields are the classes (renamed to their JSON keys), built once per class
    list: `{class: p}` objects are then built column-wise, like the rest of the answer."""
    key = tuple((type(c), c) for c in labels)
    struct = _PROBA_STRUCTS.get(key)
    if struct is None:
        fields = [f"c{i}" for i in range(len(labels))]
        struct = msgspec.defstruct("_Probabilities", [(f, float) for f in fields], gc=False,
                                   rename={f: _class_key(c) for f, c in zip(fields, labels, strict=True)})
        _PROBA_STRUCTS[key] = struct
    return struct


def predictions_body(head: dict[str, Any], ids: list[str], prediction: np.ndarray,
                     probability: np.ndarray | None, probabilities: np.ndarray | None = None,
                     classes: tuple | None = None) -> bytes:
    """The /predict response: `{**head, "predictions": [{request_id, prediction[, probability,
    probabilities]}]}` as compact JSON, from typed structs built column-wise (a 10k-record answer
    in ~1 ms instead of ~10 ms of dicts through `json.dumps`). A NaN is written as null.

    `prediction` is the class label in the dataset's own type (or the value); `probability` the
    positive class's (binary) or the predicted class's (multi-class); `probabilities`, given the
    (n, k) matrix and the model's `classes`, every class's probability keyed by class."""
    preds = prediction.tolist()
    if probability is None:
        items = list(map(_Prediction, ids, preds))
    elif probabilities is None or classes is None:
        items = list(map(_PredictionProba, ids, preds, probability.astype(np.float64).tolist()))
    else:
        struct = _probabilities_struct(tuple(classes))
        columns = np.asarray(probabilities, dtype=np.float64).T.tolist()
        items = list(map(_PredictionProbas, ids, preds, probability.astype(np.float64).tolist(),
                         map(struct, *columns)))
    return _encode({**head, "predictions": items})


class Server:
    """Everything one serving process owns; built in the app's lifespan, torn down in order."""

    def __init__(self, settings: ServeSettings, spec: DatasetSpec, registry: Any,
                 store: PredictionStore):
        self.settings = settings
        self.spec = spec
        self.model_name = settings.model_name or spec.name
        # Never shown: the registry's password, the store's, the admin token (see `redact`).
        self.secrets = secrets_of(settings, getattr(registry, "tracking_uri", "") or "")
        schema = load_contract(spec).for_columns(spec.features.columns)
        self.checker = RecordChecker(schema, spec.features.columns, keep=spec.key_columns)
        self.metrics = ServingMetrics()
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
        )
        self.batcher: MicroBatcher[PredictJob] = MicroBatcher(
            self._process, size=lambda j: len(j.records), max_rows=settings.max_batch_rows,
            max_wait=settings.max_wait_ms / 1000.0,
        )
        self._shadow_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._shadow_pending = 0
        self._shadow_lock = threading.Lock()
        self._large: asyncio.Semaphore | None = None
        # The last input each model version scored (or its warm-up example): a request the model
        # fails on alone is blamed only if the model still scores this (see `_failure`).
        self._good: dict[str, pd.DataFrame] = {}
        self._example: pd.DataFrame | None = None
        self.started = time.time()

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.workers > 1:
            self._large = asyncio.Semaphore(1)
        self.writer.start()
        self.watcher.start()
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.watcher.stop()
        self._shadow_pool.shutdown(wait=True)
        self.writer.close()
        self.store.close()
        if self.group is not None:
            self.group.leave()
        self.metrics.leave()

    def _prepare_example(self, df: pd.DataFrame) -> pd.DataFrame:
        from mlops_pipeline.data.contract import validate

        self._example = validate(df[self.checker.columns], self.checker.schema)
        return self._example

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

    # ---- the scoring thread ------------------------------------------------------------------
    def _process(self, jobs: list[PredictJob]) -> list[PredictResult | Exception]:
        """One result per job. A micro-batch that raises anywhere (validation, the model) is split
        in halves and each half processed again, so only the request that causes a failure fails:
        one poisoned request among n costs ~2 log2(n) extra calls, and every other request of its
        batch is answered (and captured) as if it had come alone."""
        try:
            return self._process_batch(jobs)
        except Exception as exc:
            if len(jobs) > 1:
                mid = len(jobs) // 2
                return self._process(jobs[:mid]) + self._process(jobs[mid:])
            return [self._failure(jobs[0], exc)]

    def _failure(self, job: PredictJob, exc: Exception) -> RequestError:
        """The answer to one request whose processing raised on its own. The model failing on it
        while it still scores a request it scored before means the request's values are the cause:
        422, naming the fields whose values the model cannot take. A model that fails on known-good
        input too is broken: 500."""
        if not isinstance(exc, ScoringError):
            log.warning("request refused, processing it raised %s: %s", type(exc).__name__, exc)
            return RequestError(422, f"request could not be checked against the contract: "
                                f"{type(exc).__name__}", [FieldError(None, None, str(exc)[:300])])
        cause = exc.__cause__ or exc
        reference = self._good.get(exc.model.version, self._example)
        if reference is None or not _scores(exc.model, reference):
            log.error("model v%s failed to score", exc.model.version, exc_info=cause)
            return RequestError(500, f"model failed: {type(cause).__name__}", kind="model")
        fields = _blame(exc.model, exc.X, reference)
        log.warning("model v%s cannot score a request (%s: %s); fields %s", exc.model.version,
                    type(cause).__name__, cause, [f.field for f in fields])
        return RequestError(422, f"the model cannot score this request: {type(cause).__name__}",
                            fields or [FieldError(None, None, str(cause)[:300])], kind="model_input")

    def _process_batch(self, jobs: list[PredictJob]) -> list[PredictResult | Exception]:
        champion, challenger = self.watcher.champion, self.watcher.challenger
        if champion is None:
            return [RequestError(503, "no model loaded yet", kind="not_ready") for _ in jobs]
        X, errors = validate_batch(self.checker, [j.records for j in jobs])
        results: list[Any] = [None] * len(jobs)
        spans: dict[int, tuple[int, int]] = {}
        pos = 0
        for i, job in enumerate(jobs):
            if errors[i]:
                results[i] = RequestError(422, "request violates the data contract", errors[i])
            else:
                spans[i] = (pos, pos + len(job.records))
                pos += len(job.records)
        if X is None or not spans:
            return results
        self._unseen(X, jobs, spans, results, champion)
        groups: dict[str, list[int]] = {CHAMPION: [], CANARY: []}
        use_canary = canary_eligible(challenger)
        for i in spans:
            if results[i] is None:
                groups[CANARY if job_route(jobs[i], use_canary) else CHAMPION].append(i)
        shadows = []
        for role, members in groups.items():
            if not members:
                continue
            model = challenger if role == CANARY else champion
            assert model is not None
            rows = np.concatenate([np.arange(*spans[i]) for i in members])
            Xg = X if len(rows) == len(X) else X.iloc[rows]  # one group with every row: no copy
            cpu0, wall0 = time.thread_time(), time.perf_counter()  # cost per prediction: metrics.scored
            try:
                pred, proba, probas, index = model.score(Xg)
            except Exception as exc:
                raise ScoringError(model, Xg) from exc
            self._good[model.version] = Xg  # known-good input: see `_failure`
            scored = time.perf_counter()
            self.metrics.scored(model.version, role, len(rows), time.thread_time() - cpu0, scored - wall0,
                                self.settings.cost_per_core_hour)
            self.metrics.batch_rows.labels(role).observe(len(rows))
            latency = self.metrics.scoring_latency.labels(model.version, role)
            start = 0
            for i in members:
                latency.observe(scored - jobs[i].received)
                n = len(jobs[i].records)
                results[i] = PredictResult(model, role, pred[start:start + n],
                                           None if proba is None else proba[start:start + n], scored,
                                           None if probas is None else probas[start:start + n],
                                           None if index is None else index[start:start + n])
                start += n
            if role == CHAMPION and self.settings.shadow and challenger is not None:
                shadows.append((Xg, [jobs[i] for i in members]))
        for Xg, members in shadows:  # only once the whole batch scored: a retried half never
            self._shadow(challenger, Xg, members)  # shadows twice
        return results

    def _unseen(self, X: pd.DataFrame, jobs: list[PredictJob], spans: dict[int, tuple[int, int]],
                results: list[Any], model: LoadedModel) -> None:
        for col, known in model.categories.items():
            if col not in X.columns or not known:
                continue
            values = X[col]
            # Distinct values first (0.4 ms for 10k records against 1.1 ms for isin + notna).
            unseen = [v for v in pd.unique(values.to_numpy()) if isinstance(v, str) and v not in known]
            if not unseen:
                continue
            mask = values.isin(unseen)
            self.metrics.unseen.labels(col).inc(int(mask.sum()))
            if self.settings.unseen_categories != "reject":
                continue
            hits = np.flatnonzero(mask.to_numpy())
            for i, (lo, hi) in spans.items():
                mine = hits[(hits >= lo) & (hits < hi)]
                if not len(mine):
                    continue
                errs = [FieldError(int(k - lo), col, "category not seen in training (policy: reject)",
                                   values.iloc[k]) for k in mine]
                if isinstance(results[i], RequestError):
                    results[i].errors.extend(errs)
                else:
                    results[i] = RequestError(422, "request violates the data contract", errs)

    def _shadow(self, challenger: LoadedModel, X: pd.DataFrame, jobs: list[PredictJob]) -> None:
        with self._shadow_lock:
            if self._shadow_pending >= self.settings.shadow_queue:
                self.metrics.shadow_dropped.inc()
                return
            self._shadow_pending += 1
        self._shadow_pool.submit(self._shadow_score, challenger, X, jobs)

    def _shadow_score(self, challenger: LoadedModel, X: pd.DataFrame, jobs: list[PredictJob]) -> None:
        try:
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            pred, proba, probas, index = challenger.score(X)
            now = datetime.now(UTC)
            done = time.perf_counter()
            self.metrics.scored(challenger.version, SHADOW, len(X), time.thread_time() - cpu0, done - wall0,
                                self.settings.cost_per_core_hour)
            latency = self.metrics.scoring_latency.labels(challenger.version, SHADOW)
            for job in jobs:
                latency.observe(done - job.received)
            rows = []
            k = 0
            for job in jobs:
                n = len(job.records)
                rows.append(self._batch(SHADOW, now, job, challenger, pred[k:k + n],
                                        None if proba is None else proba[k:k + n], done,
                                        None if probas is None else probas[k:k + n],
                                        None if index is None else index[k:k + n]))
                k += n
            self._observe(SHADOW, challenger, pred, proba)
            self.metrics.batch_rows.labels(SHADOW).observe(len(X))
            self.writer.submit(rows, self._shadow_written)
        except Exception:
            log.exception("shadow scoring failed")
            self.metrics.errors.labels("shadow").inc()
        finally:
            with self._shadow_lock:
                self._shadow_pending -= 1

    def _shadow_written(self, _result: Any, exc: BaseException | None) -> None:
        if exc is not None:
            self.metrics.errors.labels("capture_shadow").inc()

    # ---- helpers -----------------------------------------------------------------------------
    def _batch(self, role: str, now: datetime, job: PredictJob, model: LoadedModel, pred: np.ndarray,
               proba: np.ndarray | None, scored: float, probas: np.ndarray | None = None,
               index: np.ndarray | None = None) -> PredictionBatch:
        """The captured row: a classifier's answer as class index + the version's classes (every
        class's probability too when there are more than two: a binary one follows from `proba`)."""
        if job.features is None:
            job.features = self.checker.features_json(job.records)
        classes = model.classes
        if classes is None or index is None:
            return PredictionBatch(
                batch_id=job.batch_id, role=role, ts=now, model_name=model.name,
                model_version=model.version, features=job.features, prediction=pred, probability=proba,
                latency_ms=(scored - job.received) * 1000.0,
            )
        return PredictionBatch(
            batch_id=job.batch_id, role=role, ts=now, model_name=model.name, model_version=model.version,
            features=job.features, prediction=index, probability=proba,
            latency_ms=(scored - job.received) * 1000.0, classes=classes.labels,
            positive=classes.positive, probabilities=None if classes.binary else probas,
        )

    def _observe(self, role: str, model: LoadedModel, pred: np.ndarray, proba: np.ndarray | None) -> None:
        self.metrics.predictions.labels(model.version, role).inc(len(pred))
        if proba is not None:
            self.metrics.observe_many(self.metrics.probability.labels(role), proba)
        else:
            self.metrics.observe_many(self.metrics.value.labels(role), pred)

    def route(self, key: str | None) -> str:
        """Sticky when the client sends a key; a request without one gets a random position."""
        share = self.settings.canary_share
        if share <= 0:
            return CHAMPION
        return CANARY if canary_bucket(key or uuid.uuid4().hex) < share else CHAMPION

    def check_token(self, request: Request, required: bool) -> None:
        token = self.settings.token
        if not token:
            if required:
                raise RequestError(403, "admin endpoints are disabled: set MLOPS_SERVE_TOKEN",
                                   kind="forbidden")
            return
        header = request.headers.get("authorization", "")
        if not hmac.compare_digest(header.encode("utf-8", "surrogateescape"),
                                   f"Bearer {token}".encode("utf-8", "surrogateescape")):
            raise RequestError(401, "missing or wrong bearer token", kind="unauthorized")

    async def read_body(self, request: Request) -> bytes:
        """The body, refused with 413 before any parsing work once it passes the limit."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"request body is larger than {limit} bytes", kind="body_too_large")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"request body is larger than {limit} bytes",
                                   kind="body_too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read_json(self, request: Request) -> Any:
        return loads(await self.read_body(request))

    async def read_object(self, request: Request, expected: str) -> dict[str, Any]:
        """A JSON object body, or the 422 that names what was expected."""
        payload = await self.read_json(request)
        if not isinstance(payload, dict):
            raise RequestError(422, "body must be an object",
                               [FieldError(None, None, f"expected {expected}")])
        if errors := finite_object(payload):
            raise RequestError(422, "body has numbers JSON cannot hold", errors)
        return payload

    def error_response(self, exc: RequestError) -> Response:
        """The one place a refused request becomes a response: counted by kind (every 5xx too)."""
        self.metrics.errors.labels(exc.kind).inc()
        return JSONResponse(exc.body(), status_code=exc.status)

    def unexpected(self, exc: Exception) -> Response:
        """A failure nothing anticipated: logged with its traceback, counted, a JSON 500."""
        log.error("unhandled %s", type(exc).__name__, exc_info=exc)
        return self.error_response(RequestError(500, f"internal error: {type(exc).__name__}",
                                                kind="internal"))

    # ---- endpoints ---------------------------------------------------------------------------
    async def predict(self, request: Request) -> Response:
        received = time.perf_counter()
        try:
            body = await self.read_body(request)
            # With one worker per core there is no idle core for a second large request: two of
            # them in one process only take turns on the GIL (measured: ~5% more CPU each). So
            # with several workers, a process parses and scores one large request at a time (the
            # next one's body is already read); capture and the answer overlap the next request.
            large = self._large is not None and len(body) > LARGE_BODY_BYTES
            async with self._large if large else contextlib.nullcontext():
                job, result = await self._score(body, request, received)
                rows = [self._batch(result.role, datetime.now(UTC), job, result.model, result.prediction,
                                    result.probability, result.scored, result.probabilities,
                                    result.index)]
            batch_id = job.batch_id
            try:
                await self.writer.write(rows)
            except Exception as exc:
                raise RequestError(503, f"prediction could not be captured: {type(exc).__name__}",
                                   kind="capture") from None
            self._observe(result.role, result.model, result.prediction, result.probability)
            self.metrics.requests.labels(result.model.version, result.role).inc()
            head = {"model_name": result.model.name, "model_version": result.model.version,
                    "role": result.role, "batch_id": batch_id}
            classes = result.model.classes
            return Response(predictions_body(head, request_ids(batch_id, len(job.records)), result.prediction,
                                             result.probability, result.probabilities,
                                             None if classes is None else classes.labels),
                            media_type="application/json")
        except RequestError as exc:
            return self.error_response(exc)
        finally:
            self.metrics.latency.labels("predict").observe(time.perf_counter() - received)

    async def _score(self, body: bytes, request: Request,
                     received: float) -> tuple[PredictJob, PredictResult]:
        records, sent_key = self.checker.parse(body, self.settings.max_records)
        key = request.headers.get("x-request-key") or sent_key
        job = PredictJob(records, self.route(str(key) if key is not None else None), new_batch_id(), received)
        return job, await self.batcher.submit(job)

    async def feedback(self, request: Request) -> Response:
        received = time.perf_counter()
        try:
            self.check_token(request, required=False)
            payload = await self.read_object(request, "{request_id, label}")
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
            return JSONResponse({"request_id": rid, "label": label, "rows": matched, "changed": changed})
        except RequestError as exc:
            self.metrics.errors.labels(exc.kind).inc()
            return JSONResponse(exc.body(), status_code=exc.status)
        finally:
            self.metrics.latency.labels("feedback").observe(time.perf_counter() - received)

    def _feedback_label(self, label: Any) -> tuple[Any, str | None]:
        """The label as stored, or why it is not one (`preparation.feedback_label`), judged by the
        loaded champion's classes."""
        from mlops_pipeline.data.preparation import feedback_label

        champion = self.watcher.champion
        classes = champion.classes.labels if champion is not None and champion.classes else ()
        return feedback_label(label, self.spec, classes)

    async def reload(self, request: Request) -> Response:
        try:
            self.check_token(request, required=True)
        except RequestError as exc:
            return self.error_response(exc)
        return JSONResponse({"polled": await self._reload_everywhere(), **self.health_body()})

    async def _reload_everywhere(self) -> bool:
        """Re-read the registry now, in this process and (with several workers) every worker."""
        loop = asyncio.get_running_loop()
        asked = self.group.request_reload() if self.group is not None else 0.0
        done = await loop.run_in_executor(None, self.watcher.refresh_now, 60.0)
        if self.group is not None:  # the reload is done when every worker has polled since
            done = await loop.run_in_executor(None, self.group.wait_polled_since, asked, 60.0) and done
        return done

    async def rollback(self, request: Request) -> Response:
        """`mlops-pipeline rollback` through the running server: the same registry move
        (`Registry.rollback`), by a process that has MLflow loaded and its registry connection
        open, followed at once by the reload; the CLI then needs only an HTTP client (its own
        MLflow import and store set-up are most of the ~2 s a local rollback takes).

        Only for the model this server serves, and only if the CLI talks to the same registry
        (`registry_fingerprint`, keyed by the admin token): otherwise 409 `mismatch`, and the CLI
        moves the aliases itself.

        The moves are recorded in the alias history of this server's prediction store, as made by
        this server on behalf of the caller (the `actor` and `reason` it sends)."""
        from mlops_pipeline.deployment.registry import Registry, RegistryError, registry_fingerprint

        try:
            self.check_token(request, required=True)
            payload = await self.read_object(request, "{model_name, registry}")
            if payload.get("model_name") != self.model_name:
                raise RequestError(409, f"this server serves {self.model_name!r}, not "
                                   f"{payload.get('model_name')!r}", kind="mismatch")
            uri = getattr(self.watcher.registry, "resolved_tracking_uri", "")
            if not uri or payload.get("registry") != registry_fingerprint(uri, self.settings.token):
                raise RequestError(409, "this server follows another registry", kind="mismatch")
            caller = str(payload.get("actor") or "")[:200]
            actor = f"server:{self.settings.url}" + (f" for {caller}" if caller else "")
            reason = str(payload.get("reason") or "")[:2000] or "POST /admin/rollback"
            registry = Registry(self.watcher.registry.client(),
                                history_url=self.settings.predictions_url or None)
            try:
                moves = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: registry.rollback(self.model_name, actor=actor, reason=reason))
            except RegistryError as exc:
                raise RequestError(409, f"cannot roll back: {exc}", kind="rollback_refused") from None
        except RequestError as exc:
            self.metrics.errors.labels(exc.kind).inc()
            return JSONResponse({**exc.body(), "kind": exc.kind}, status_code=exc.status)
        log.info("rollback: %s", "; ".join(str(m) for m in moves))
        polled = await self._reload_everywhere()
        return JSONResponse({"moves": [m.as_dict() for m in moves], "polled": polled, **self.health_body()})

    def health_body(self) -> dict[str, Any]:
        w = self.watcher
        if w.champion is None:
            status = "starting" if w.status.reachable or w.status.last_check is None else "degraded"
        else:
            status = "ok" if w.status.reachable else "degraded"
        champion, challenger = w.champion, w.challenger
        return {
            "status": status,
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


def job_route(job: PredictJob, canary_ok: bool) -> bool:
    return job.route == CANARY and canary_ok


class ScoringError(Exception):
    """The model raised on a micro-batch: carries the model and its input for isolation."""

    def __init__(self, model: LoadedModel, X: pd.DataFrame):
        super().__init__(f"model v{model.version} failed to score {len(X)} rows")
        self.model = model
        self.X = X


def _scores(model: LoadedModel, X: pd.DataFrame) -> bool:
    try:
        model.score(X.iloc[:1])
    except Exception:
        return False
    return True


def _blame(model: LoadedModel, X: pd.DataFrame, reference: pd.DataFrame) -> list[FieldError]:
    """The columns (and, for a small request, the records) whose values make `model` raise: a
    column is to blame when putting the reference row's value in its place lets the request score.
    Runs only for a request that failed alone: a few model calls on its own rows."""
    out = []
    for col in X.columns:
        trial = X.copy()
        trial[col] = reference[col].iloc[0]
        try:
            model.score(trial)
        except Exception:
            continue
        rows = [None] if len(X) > 32 else [k for k in range(len(X)) if not _scores(model, X.iloc[k:k + 1])]
        out += [FieldError(k, str(col), "the model cannot take this value",
                           None if k is None else X[col].iloc[k]) for k in rows or [None]]
    return out


def _write_state(path: Path, settings: ServeSettings, model_name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"url": settings.url, "pid": os.getpid(), "model_name": model_name})


def _remove_state(path: Path) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def create_app(
    settings: ServeSettings,
    spec: DatasetSpec | None = None,
    registry: Any = None,
    store: PredictionStore | None = None,
) -> FastAPI:
    """Build the app; the registry and the store are injected (defaults: env / embedded)."""
    bodies: dict[str, dict[str, Any]] = {"predict": {}, "feedback": {}}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from mlops_pipeline.defs.resources.mlflow import MLflowResource

        ds = spec or load_spec()
        reg = registry or MLflowResource(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", ""))
        server = Server(settings, ds, reg, store or PredictionStore(settings.predictions_url or None))
        server.start()
        app.state.server = server
        # The request bodies, declared from the contract (read when /openapi.json is first built).
        bodies["predict"].update(json_body(server.checker.json_schema(settings.max_records)))
        bodies["feedback"].update(json_body(FEEDBACK_SCHEMA))
        if settings.workers > 1:
            # A worker (a replacement, say) accepts connections only once its first registry poll
            # is done (model loaded, or the registry found unreachable): its siblings can answer
            # meanwhile, so it must not take a connection only to say "not ready".
            await asyncio.get_running_loop().run_in_executor(None, server.watcher.wait_first_poll, 120.0)
        state = state_path(settings, server.model_name)
        if settings.workers == 1:  # with several workers, the supervisor writes it
            _write_state(state, settings, server.model_name)
        try:
            yield
        finally:
            await server.stop()
            _remove_state(state)

    app = FastAPI(title="mlops-pipeline serving", lifespan=lifespan, docs_url=None, redoc_url=None)

    def srv(request: Request) -> Server:
        return request.app.state.server

    async def guard(request: Request, handler: Any) -> Response:
        """Every endpoint's errors become responses here: a RequestError its JSON answer, anything
        else a counted JSON 500 (never a bare traceback page)."""
        server = srv(request)
        try:
            return await handler(server, request)
        except RequestError as exc:
            return server.error_response(exc)
        except Exception as exc:
            return server.unexpected(exc)

    @app.post("/predict", openapi_extra=bodies["predict"])
    async def predict(request: Request) -> Response:
        return await guard(request, Server.predict)

    @app.post("/feedback", openapi_extra=bodies["feedback"])
    async def feedback(request: Request) -> Response:
        return await guard(request, Server.feedback)

    @app.post("/admin/reload")
    async def reload(request: Request) -> Response:
        return await guard(request, Server.reload)

    @app.post("/admin/rollback")
    async def rollback(request: Request) -> Response:
        return await guard(request, Server.rollback)

    async def _health(server: Server, request: Request) -> Response:
        return JSONResponse(server.health_body())

    @app.get("/health")
    async def health(request: Request) -> Response:
        return await guard(request, _health)

    @app.get("/ready")
    async def ready(request: Request) -> Response:
        s = srv(request)
        champion = s.watcher.champion
        if champion is None:
            return JSONResponse({"ready": False, "reason": "no model loaded yet"}, status_code=503)
        if s.group is not None:  # the port is shared: ready once every worker can answer
            loaded = [w for w in s.group.statuses() if w.get("champion_version")]
            if len(loaded) < s.settings.workers:
                return JSONResponse({"ready": False, "reason": f"{len(loaded)} of {s.settings.workers} "
                                     "workers have loaded a model"}, status_code=503)
        return JSONResponse({"ready": True, "model_name": champion.name, "model_version": champion.version})

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        s = srv(request)
        s.metrics.registry_up.set(1 if s.watcher.status.reachable else 0)
        return Response(s.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


FEEDBACK_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["request_id", "label"],
    "properties": {"request_id": {"type": "string", "minLength": 1},
                   "label": {"type": ["number", "string", "boolean"]}},
}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI `requestBody` for a JSON body of `schema` (FastAPI `openapi_extra`)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def app_from_env() -> FastAPI:
    """The app of one worker process (`serve --workers N`): settings from the supervisor."""
    settings = ServeSettings.model_validate_json(os.environ[SETTINGS_ENV])
    configure_logging(settings)
    return create_app(settings)


def serve(settings: ServeSettings) -> None:
    """Run the app with uvicorn: in this process, or as `settings.workers` worker processes on one
    port (`workers.supervise`), which share a reload signal, their status and metrics.

    Refuses to start (ExposureError, PortInUse; both name the fix) beyond loopback without a
    token, or when the port is taken. Every log line masks credentials (`RedactingFormatter`)."""
    import shutil

    import uvicorn

    check_exposure(settings)
    configure_logging(settings)
    check_port_free(settings.host, settings.port)
    if settings.workers == 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                    access_log=False, timeout_graceful_shutdown=10, log_config=None)
        return
    name = settings.model_name or load_spec().name
    PredictionStore(settings.predictions_url or None).close()  # its tables, before the workers race
    group = create_group_dir(name)
    os.environ.update({GROUP_ENV: str(group), METRICS_ENV: str(group / "metrics"),
                       SETTINGS_ENV: settings.model_dump_json()})
    state = state_path(settings, name)
    _write_state(state, settings, name)
    try:
        status = supervise(settings.host, settings.port, settings.workers,
                           "mlops_pipeline.serving.app:app_from_env")
    finally:
        _remove_state(state)
        shutil.rmtree(group, ignore_errors=True)
    if status:
        raise SystemExit(status)
