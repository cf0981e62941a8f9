"""The scoring path, with no HTTP: a /predict body in, the answer's bytes out, every answer captured.

1. per-record checks derived from the contract (`inputs.RecordChecker`): a 422 naming record and
   field; nothing is scored, nothing is captured;
2. routing: champion, or challenger for the canary share, decided by a hash of the request key so
   the same key always lands on the same model (sticky);
3. the micro-batcher validates many requests' records with the contract in one pandera call and
   scores them with one model call per model, in one dedicated thread; a batch that raises is
   bisected so only the request at fault fails (`isolation`);
4. the contract's domain, per record and column (`domain_check.apply_domain`): a value outside a
   `reject` column's range or categories refuses its request (422), outside a `flag` column it is
   answered and marked `out_of_domain` (answer, capture, `mlops_out_of_domain_total`); then unseen
   categories are counted, and refused when the policy says so;
5. capture: the request, as one row, goes to the group-commit writer and the answer waits until it
   is committed, so an acknowledged prediction is never lost;
6. shadow: the challenger scores the champion's rows in its own thread (`Shadow`); its answers are
   captured with role `shadow` and never returned or waited for.
Errors are `RequestError`s; the app turns them into responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlops_pipeline.deployment.tags import CANARY, CHAMPION, SHADOW
from mlops_pipeline.monitoring.predictions import PredictionBatch, new_batch_id, request_ids
from mlops_pipeline.serving.batching import MicroBatcher
from mlops_pipeline.serving.capture import CaptureWriter
from mlops_pipeline.serving.domain_check import apply_domain
from mlops_pipeline.serving.errors import FieldError, RequestError
from mlops_pipeline.serving.inputs import RecordChecker, validate_micro_batch
from mlops_pipeline.serving.isolation import Isolation, ScoringError
from mlops_pipeline.serving.loader import LoadedModel, ModelWatcher, Scores
from mlops_pipeline.serving.metrics import ServingMetrics
from mlops_pipeline.serving.responses import predictions_body
from mlops_pipeline.serving.settings import ServeSettings

log = logging.getLogger(__name__)

#: A body above this (some hundreds of records) is a large request: see `Scorer.predict`.
LARGE_BODY_BYTES = 256 * 1024


@dataclass
class PredictJob:
    """One /predict request on its way through the micro-batcher."""

    records: list[Any]  # RecordChecker.record_type instances
    route: str  # CHAMPION, or CANARY when its key falls in the canary share
    batch_id: str  # the request ids are derived from it (monitoring.predictions.request_ids)
    received: float
    features: bytes | None = None  # the records as captured (one JSON array), encoded once
    out_of_domain: dict[int, list[str]] | None = None  # record -> its flagged columns (apply_domain)


@dataclass
class PredictResult:
    """A request's answer: which model and role answered, its rows of the model call, and when:
    `at` is when the version was chosen (the time the capture records, so a request stamped after
    an alias move and the server reporting it was answered by the new version), `scored` when the
    model call returned (perf_counter, for latency)."""

    model: LoadedModel
    role: str
    scores: Scores
    scored: float
    at: datetime


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


def rows_of(scores: Scores, start: int, stop: int) -> Scores:
    """Rows `start:stop` of one model call's answer (views, no copy)."""
    return Scores(scores.prediction[start:stop],
                  None if scores.probability is None else scores.probability[start:stop],
                  None if scores.probabilities is None else scores.probabilities[start:stop],
                  None if scores.index is None else scores.index[start:stop])


def captured(role: str, now: datetime, job: PredictJob, model: LoadedModel, scores: Scores,
             scored: float, checker: RecordChecker) -> PredictionBatch:
    """The row the store keeps of one request's answer: a classifier's answer as class index + the
    version's classes (every class's probability too when there are more than two: a binary one
    follows from the probability). The request's features are encoded once, for every role."""
    if job.features is None:
        job.features = checker.features_json(job.records)
    classes = model.classes
    if classes is None or scores.index is None:
        return PredictionBatch(
            batch_id=job.batch_id, role=role, ts=now, model_name=model.name, model_version=model.version,
            features=job.features, prediction=scores.prediction, probability=scores.probability,
            latency_ms=(scored - job.received) * 1000.0, out_of_domain=job.out_of_domain,
        )
    return PredictionBatch(
        batch_id=job.batch_id, role=role, ts=now, model_name=model.name, model_version=model.version,
        features=job.features, prediction=scores.index, probability=scores.probability,
        latency_ms=(scored - job.received) * 1000.0, classes=classes.labels,
        positive=classes.positive, probabilities=None if classes.binary else scores.probabilities,
        out_of_domain=job.out_of_domain,
    )


def observe(metrics: ServingMetrics, role: str, model: LoadedModel, scores: Scores) -> None:
    """Count a model's answers and add them to the prediction (or value) histogram of `role`."""
    metrics.predictions.labels(model.version, role).inc(len(scores.prediction))
    if scores.probability is not None:
        metrics.observe_many(metrics.probability.labels(role), scores.probability)
    else:
        metrics.observe_many(metrics.value.labels(role), scores.prediction)


class Scorer:
    """Answers /predict bodies with the models `watcher` has loaded; captures through `writer`.

    `start()` and `stop()` run in the event loop (the micro-batcher is an asyncio task); the
    models are called only in the batcher's one thread and the shadow's one thread."""

    def __init__(self, settings: ServeSettings, checker: RecordChecker, watcher: ModelWatcher,
                 metrics: ServingMetrics, writer: CaptureWriter):
        self.settings = settings
        self.checker = checker
        self.watcher = watcher
        self.metrics = metrics
        self.writer = writer
        self.isolation = Isolation()
        self.shadow = Shadow(settings, checker, metrics, writer)
        self.batcher: MicroBatcher[PredictJob] = MicroBatcher(
            self.process, size=lambda j: len(j.records), max_rows=settings.max_batch_rows,
            max_wait=settings.max_wait_ms / 1000.0,
        )
        self._large: asyncio.Semaphore | None = None

    def start(self) -> None:
        if self.settings.workers > 1:
            self._large = asyncio.Semaphore(1)
        self.batcher.start()

    async def stop(self) -> None:
        """Answer what is queued, then let pending shadow scoring finish (its captures queued)."""
        await self.batcher.stop()
        self.shadow.close()

    def prepare_example(self, df: pd.DataFrame) -> pd.DataFrame:
        """A model's input example through the contract, as a request's rows would be: the watcher
        warms a version up with it, and `isolation` keeps it as known-good input."""
        from mlops_pipeline.data.contract import validate

        return self.isolation.remember_example(validate(df[self.checker.columns], self.checker.schema))

    def route(self, key: str | None) -> str:
        """Sticky when the client sends a key; a request without one gets a random position."""
        share = self.settings.canary_share
        if share <= 0:
            return CHAMPION
        return CANARY if canary_bucket(key or uuid.uuid4().hex) < share else CHAMPION

    # ---- one request -------------------------------------------------------------------------
    async def predict(self, body: bytes, key: Any, received: float) -> bytes:
        """The answer to one /predict body, returned once its capture is committed.

        `key` (the client's routing key header, else the body's `key`) decides canary routing.
        With several workers, a process parses and scores one large request at a time: with one
        worker per core there is no idle core for a second one, so two would only take turns on
        the GIL; capture and the answer still overlap the next request."""
        large = self._large is not None and len(body) > LARGE_BODY_BYTES
        async with self._large if large else contextlib.nullcontext():
            records, sent_key = self.checker.parse(body, self.settings.max_records)
            key = key or sent_key
            job = PredictJob(records, self.route(str(key) if key is not None else None), new_batch_id(),
                             received)
            result: PredictResult = await self.batcher.submit(job)
            model, scores = result.model, result.scores
            rows = [captured(result.role, result.at, job, model, scores, result.scored, self.checker)]
        try:
            await self.writer.write(rows)
        except Exception as exc:
            raise RequestError(503, f"prediction could not be captured: {type(exc).__name__}",
                               kind="capture") from None
        observe(self.metrics, result.role, model, scores)
        self.metrics.requests.labels(model.version, result.role).inc()
        if job.out_of_domain:
            self.metrics.count_out_of_domain(job.out_of_domain)
        head = {"model_name": model.name, "model_version": model.version, "role": result.role,
                "batch_id": job.batch_id}
        classes = model.classes
        return predictions_body(head, request_ids(job.batch_id, len(records)), scores.prediction,
                                scores.probability, scores.probabilities,
                                None if classes is None else classes.labels, job.out_of_domain)

    # ---- the scoring thread ------------------------------------------------------------------
    def process(self, jobs: list[PredictJob]) -> list[PredictResult | Exception]:
        """One result per job (the micro-batcher's callback). A micro-batch that raises anywhere
        (validation, the model) is split in halves and each half processed again, so only the
        request that causes a failure fails, in about 2 log2(n) extra calls; every other request
        of its batch is answered (and captured) as if it had come alone."""
        try:
            return self._process_batch(jobs)
        except Exception as exc:
            if len(jobs) > 1:
                mid = len(jobs) // 2
                return self.process(jobs[:mid]) + self.process(jobs[mid:])
            return [self.isolation.failure(exc)]

    def _process_batch(self, jobs: list[PredictJob]) -> list[PredictResult | Exception]:
        at = datetime.now(UTC)  # before the versions are read: never later than a swap they miss
        champion, challenger = self.watcher.champion, self.watcher.challenger
        if champion is None:
            return [RequestError(503, "no model loaded yet", kind="not_ready") for _ in jobs]
        X, columns, errors, found = validate_micro_batch(self.checker, [j.records for j in jobs])
        results: list[Any] = [None] * len(jobs)
        spans: dict[int, tuple[int, int]] = {}
        pos = 0
        for i, job in enumerate(jobs):
            if errors[i]:
                results[i] = RequestError(422, "request violates the data contract", errors[i])
            else:
                spans[i] = (pos, pos + len(job.records))
                pos += len(job.records)
        if X is None or columns is None or not spans:
            return results
        apply_domain(found or [], columns, spans, results, jobs)
        self._unseen(columns, spans, results, champion)
        groups: dict[str, list[int]] = {CHAMPION: [], CANARY: []}
        use_canary = canary_eligible(challenger)
        for i in spans:
            if results[i] is None:
                groups[CANARY if jobs[i].route == CANARY and use_canary else CHAMPION].append(i)
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
                scores = model.score(Xg)
            except Exception as exc:
                raise ScoringError(model, Xg) from exc
            self.isolation.remember(model, Xg)
            scored = time.perf_counter()
            self.metrics.scored(model.version, role, len(rows), time.thread_time() - cpu0, scored - wall0,
                                self.settings.cost_per_core_hour)
            self.metrics.batch_rows.labels(role).observe(len(rows))
            latency = self.metrics.scoring_latency.labels(model.version, role)
            start = 0
            for i in members:
                latency.observe(scored - jobs[i].received)
                n = len(jobs[i].records)
                results[i] = PredictResult(model, role, rows_of(scores, start, start + n), scored, at)
                start += n
            if role == CHAMPION and self.settings.shadow and challenger is not None:
                shadows.append((Xg, [jobs[i] for i in members]))
        for Xg, members in shadows:  # only once the whole batch scored: a retried half never
            self.shadow.submit(challenger, Xg, members)  # shadows twice
        return results

    def _unseen(self, columns: dict[str, np.ndarray], spans: dict[int, tuple[int, int]], results: list[Any],
                model: LoadedModel) -> None:
        """Count the categories `model` never saw in training, per column; with the policy
        `reject`, refuse each request holding one (422 naming record, field and value)."""
        for col, known in model.categories.items():
            values = columns.get(col)
            if values is None or not known:
                continue
            # The distinct values first: far fewer than the rows.
            unseen = {v for v in set(values.tolist()) if isinstance(v, str) and v not in known}
            if not unseen:
                continue
            mask = np.fromiter((v in unseen for v in values.tolist()), bool, len(values))
            self.metrics.unseen.labels(col).inc(int(mask.sum()))
            if self.settings.unseen_categories != "reject":
                continue
            hits = np.flatnonzero(mask)
            for i, (lo, hi) in spans.items():
                mine = hits[(hits >= lo) & (hits < hi)]
                if not len(mine):
                    continue
                errs = [FieldError(int(k - lo), col, "category not seen in training (policy: reject)",
                                   values[k]) for k in mine]
                if isinstance(results[i], RequestError):
                    results[i].errors.extend(errs)
                else:
                    results[i] = RequestError(422, "request violates the data contract", errs)


class Shadow:
    """The challenger's opinion on champion traffic, off the request path.

    One thread and a bounded queue (`shadow_queue` pending batches; beyond it a batch is dropped
    and counted), so a slow or failing challenger never delays or fails an answer. Its answers are
    captured with role `shadow`, under the request ids the client got, and never returned."""

    def __init__(self, settings: ServeSettings, checker: RecordChecker, metrics: ServingMetrics,
                 writer: CaptureWriter):
        self.settings = settings
        self.checker = checker
        self.metrics = metrics
        self.writer = writer
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._pending = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        """Wait for the queued shadow batches (their captures are submitted before the writer closes)."""
        self._pool.shutdown(wait=True)

    def submit(self, challenger: LoadedModel, X: pd.DataFrame, jobs: list[PredictJob]) -> None:
        """Queue `jobs` (whose validated rows are `X`) for the challenger, or drop them if full."""
        with self._lock:
            if self._pending >= self.settings.shadow_queue:
                self.metrics.shadow_dropped.inc()
                return
            self._pending += 1
        self._pool.submit(self._score, challenger, X, jobs)

    def _score(self, challenger: LoadedModel, X: pd.DataFrame, jobs: list[PredictJob]) -> None:
        try:
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            scores = challenger.score(X)
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
                rows.append(captured(SHADOW, now, job, challenger, rows_of(scores, k, k + n), done,
                                     self.checker))
                k += n
            observe(self.metrics, SHADOW, challenger, scores)
            self.metrics.batch_rows.labels(SHADOW).observe(len(X))
            self.writer.submit(rows, self._written)
        except Exception:
            log.exception("shadow scoring failed")
            self.metrics.errors.labels("shadow").inc()
        finally:
            with self._lock:
                self._pending -= 1

    def _written(self, _result: Any, exc: BaseException | None) -> None:
        if exc is not None:
            self.metrics.errors.labels("capture_shadow").inc()
