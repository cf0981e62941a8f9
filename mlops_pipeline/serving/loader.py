"""Which model answers: the alias watcher and the atomic swap.

The server never reads "the current model" from the registry on the request path. A background
thread polls the aliases (`champion`, and `challenger` when shadow or canary is on), loads a new
version completely (download, deserialize, one warm-up prediction), and only then replaces the
reference the request path reads. Replacing one Python reference is atomic, and a micro-batch
holds on to the `LoadedModel` it started with, so a swap never fails or mixes a request. When the
registry is unreachable, or a version fails to load (never swapped in), the last loaded models keep
serving and /health says "degraded". Any flavor loads: see `serving.flavors`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from mlops_pipeline.deployment.tags import CHALLENGER, CHAMPION, GATE_STATUS_TAG

if TYPE_CHECKING:
    from mlops_pipeline.deployment.tracking import MLflow

log = logging.getLogger(__name__)


class Scores(NamedTuple):
    """One model call's answer for n records."""

    prediction: np.ndarray  # class labels in the dataset's own type, or values (regression)
    probability: np.ndarray | None  # positive class's (binary) or predicted class's (multi-class)
    probabilities: np.ndarray | None  # (n, k) in `classes.labels` order (classification)
    index: np.ndarray | None  # the predicted class's column (classification)


@dataclass(frozen=True)
class LoadedModel:
    """One registered version, loaded and warmed up; immutable so it can be shared by threads."""

    name: str
    version: str
    model: Any
    task: str
    tags: dict[str, str] = field(default_factory=dict)
    categories: dict[str, frozenset] = field(default_factory=dict)
    loaded_at: float = field(default_factory=time.time)
    classes: Any = None  # model.ClassInfo of a classifier (derived from the model when omitted)
    flavor: str = "sklearn"  # how it was loaded (serving.flavors): sklearn, or the pyfunc'd flavor
    compiled: Any = None  # serving.compiled.CompiledModel: the same answers, its preprocessing in numpy

    def __post_init__(self) -> None:
        if self.classes is None and self.task == "classification" and hasattr(self.model, "classes_"):
            from mlops_pipeline.training.model import class_info

            object.__setattr__(self, "classes", class_info(self.model))
        if self.classes is not None:
            object.__setattr__(self, "_labels", np.asarray(self.classes.labels, dtype=object)
                               if any(isinstance(c, str | bool) for c in self.classes.labels)
                               else np.asarray(self.model.classes_))

    @property
    def gate_status(self) -> str:
        """The eval gate's verdict on this version (`passed`, `failed`), `unknown` if untagged."""
        return self.tags.get(GATE_STATUS_TAG, "unknown")

    def score(self, X: pd.DataFrame) -> Scores:
        """Labels, the answer's probability and every class's probability: one model call."""
        model = self.compiled or self.model
        if self.task == "classification":
            proba = np.asarray(model.predict_proba(X))
            index = proba.argmax(axis=1)
            labels = getattr(self, "_labels", None)
            if labels is None:
                labels = np.asarray(self.model.classes_)
            if proba.shape[1] == 2:
                positive = 1 if self.classes is None else self.classes.positive
                probability = proba[:, positive]
                if self.classes is not None and self.classes.threshold is not None:
                    # The version's chosen threshold (`model.threshold`); probabilities unchanged.
                    index = np.where(probability >= self.classes.threshold, positive, 1 - positive)
            else:
                probability = proba[np.arange(len(proba)), index]
            return Scores(labels[index], probability, proba, index)
        return Scores(np.asarray(model.predict(X), dtype="float64"), None, None, None)

    def describe(self) -> dict[str, Any]:
        """What /health shows of the version (`compiled`: answered through `serving.compiled`)."""
        return {"name": self.name, "version": self.version, "gate_status": self.gate_status,
                "flavor": self.flavor, "compiled": self.compiled is not None, "loaded_at": self.loaded_at}


def known_categories(model: Any) -> dict[str, frozenset]:
    """Categories each encoder inside the pipeline was fitted on (for the unseen-category policy)."""
    out: dict[str, frozenset] = {}
    steps = getattr(model, "steps", [])
    for _, step in steps:
        for _, transformer, cols in getattr(step, "transformers_", []):
            cats = getattr(transformer, "categories_", None)
            if cats is None or isinstance(cols, str):
                continue
            for col, values in zip(cols, cats, strict=False):
                out[str(col)] = frozenset(v for v in values if isinstance(v, str))
    return out


def load_version(
    name: str, version: str, prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None
) -> LoadedModel:
    """Load a registered model of any flavor (`serving.flavors`: sklearn natively, so
    predict_proba is there; any other through `mlflow.pyfunc`) and score its input example once.

    The warm-up runs the model's logged input example through the same contract coercion as a
    request, so the first real request after a swap is not the one paying for lazy
    initialisation, and a version that cannot score contract-shaped input never gets swapped in.
    The same example checks the compiled form of the model (`serving.compiled`), which then
    answers small micro-batches with the same bits.
    """
    import mlflow
    from mlflow.models import Model

    from mlops_pipeline.serving.flavors import load_local

    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}")
    model, task, flavor = load_local(local)
    loaded = LoadedModel(name=name, version=str(version), model=model, task=task,
                         categories=known_categories(model), flavor=flavor)
    try:
        example = Model.load(local).load_input_example(local)
    except Exception:  # no example logged: skip the warm-up rather than refuse the model
        example = None
    if isinstance(example, pd.DataFrame) and len(example):
        from mlops_pipeline.serving.compiled import compile_model

        example = prepare(example) if prepare else example
        loaded.score(example)
        compiled = compile_model(model, example)
        if compiled is not None:
            loaded = replace(loaded, compiled=compiled)
            loaded.score(example)
    return loaded


@dataclass
class RegistryStatus:
    """The last registry poll, as /health reports it (times are epoch seconds)."""

    reachable: bool = False
    last_error: str | None = None
    last_check: float | None = None
    last_success: float | None = None


@dataclass(frozen=True)
class LoadFailure:
    """A version the alias points at that could not be loaded (or warmed up): never swapped in."""

    slot: str
    version: str
    error: str  # one line: the exception's type and message
    at: float

    def line(self, serving: str | None) -> str:
        """What /health says about it, in one line."""
        kept = f"still serving v{serving}" if serving else "nothing loaded"
        return f"{self.slot} v{self.version} failed to load ({self.error}); {kept}"


class ModelWatcher:
    """Follows the aliases in a background thread and swaps loaded models atomically.

    `registry` is a `deployment.tracking.MLflow` (anything with its `version_by_alias` and
    `client()`); `champion` and `challenger` are the loaded versions the request path reads."""

    def __init__(
        self,
        registry: MLflow,
        name: str,
        alias: str = CHAMPION,
        version: str = "",
        follow_challenger: bool = False,
        poll_seconds: float = 5.0,
        prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
        on_swap: Any = None,
        asked: Callable[[], bool] | None = None,
        on_poll: Callable[[], None] | None = None,
        on_load_failed: Callable[[LoadFailure], None] | None = None,
        retry_seconds: float = 60.0,
    ):
        """`asked()` is checked every 50 ms between polls (another worker of the same server
        asking for a reload); `on_poll()` runs after every poll (publishing this worker's status).

        A version that fails to load is never swapped in: the loaded one keeps answering, the
        failure is kept in `failures` (per slot, for /health) and reported to `on_load_failed`,
        and the same version is tried again only after `retry_seconds` or on `refresh_now`."""
        self.registry = registry
        self.name = name
        self.alias = alias
        self.pinned = version
        self.follow_challenger = follow_challenger
        self.poll_seconds = poll_seconds
        self.prepare = prepare
        self.on_swap = on_swap
        self.asked = asked
        self.on_poll = on_poll
        self.on_load_failed = on_load_failed
        self.retry_seconds = retry_seconds
        self.failures: dict[str, LoadFailure] = {}
        self._retry_now = False
        self.champion: LoadedModel | None = None
        self.challenger: LoadedModel | None = None
        self.status = RegistryStatus()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._started = 0
        self._done = 0
        self._polled = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start polling: the first poll right away, then every `poll_seconds`."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (waits for a poll in progress, up to 10 s)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def refresh_now(self, timeout: float = 30.0) -> bool:
        """Ask for an immediate poll and wait until a poll that started after the ask completed."""
        with self._polled:
            target = self._started + 1
            self._retry_now = True  # an explicit reload tries a failed version again at once
            self._wake.set()
            return self._polled.wait_for(lambda: self._done >= target, timeout=timeout)

    def wait_first_poll(self, timeout: float = 120.0) -> bool:
        """Until the first poll (started by `start`) has completed, successful or not."""
        with self._polled:
            return self._polled.wait_for(lambda: self._done >= 1, timeout=timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before polling, so an ask that arrives mid-poll is not lost
            with self._polled:
                self._started += 1
                current = self._started
            self.poll()
            if self.on_poll is not None:
                try:
                    self.on_poll()
                except Exception:
                    log.exception("publishing the worker status failed")
            with self._polled:
                self._done = current
                self._polled.notify_all()
            self._sleep()

    def _sleep(self) -> None:
        """Until the next poll is due, refresh_now() is called, or another worker asks."""
        if self.asked is None:
            self._wake.wait(self.poll_seconds)
            return
        deadline = time.monotonic() + self.poll_seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._wake.wait(min(left, 0.05)) or self.asked():
                return

    # ---- one poll ----------------------------------------------------------------------------
    def _resolve(self, alias: str) -> tuple[str, dict[str, str]] | None:
        mv = self.registry.version_by_alias(self.name, alias)
        return None if mv is None else (str(mv.version), dict(mv.tags or {}))

    def poll(self) -> None:
        """Resolve the aliases (or the pinned version) and load what changed; on any registry
        failure keep what is loaded and record the error."""
        self.status.last_check = time.time()
        try:
            if self.pinned:
                mv = self.registry.client().get_model_version(self.name, self.pinned)
                target: tuple[str, dict[str, str]] | None = (str(mv.version), dict(mv.tags or {}))
            else:
                target = self._resolve(self.alias)
            challenger = self._resolve(CHALLENGER) if self.follow_challenger else None
            self.status.reachable = True
            self.status.last_error = None
            self.status.last_success = time.time()
        except Exception as exc:  # any registry failure: keep serving what is loaded
            self.status.reachable = False
            self.status.last_error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("registry unreachable, serving the loaded model: %s", self.status.last_error)
            return
        retry, self._retry_now = self._retry_now, False
        try:
            self.champion = self._maybe_load(self.champion, target, CHAMPION, retry)
            if challenger is not None and target is not None and challenger[0] == target[0]:
                challenger = None  # a challenger that is already champion is not a second opinion
            self.challenger = self._maybe_load(self.challenger, challenger, CHALLENGER, retry)
        except Exception:  # a failing swap callback: log it, keep polling
            log.exception("swapping a model version failed")

    def load_problem(self) -> str | None:
        """One line per slot whose alias points at a version that could not be loaded, or None."""
        serving = {CHAMPION: self.champion, CHALLENGER: self.challenger}
        lines = [f.line(serving[slot].version if serving.get(slot) else None)
                 for slot, f in sorted(self.failures.items())]
        return "; ".join(lines) or None

    def _maybe_load(
        self, current: LoadedModel | None, target: tuple[str, dict[str, str]] | None, slot: str,
        retry: bool = False,
    ) -> LoadedModel | None:
        failed = self.failures.get(slot)
        if failed is not None and (target is None or target[0] != failed.version):
            del self.failures[slot]  # the alias moved on: that failure no longer matters
            failed = None
        if target is None:
            if slot == CHAMPION:
                return current  # alias deleted: keep answering rather than going dark
            if current is not None and self.on_swap:
                self.on_swap(slot, current, None)
            return None
        version, tags = target
        if current is not None and current.version == version:
            if current.tags != tags:  # e.g. gate.status changed: cheap, no reload
                return replace(current, tags=tags)
            return current
        if failed is not None and not retry and time.time() - failed.at < self.retry_seconds:
            return current  # tried moments ago: not again on every poll
        started = time.perf_counter()
        try:
            loaded = load_version(self.name, version, self.prepare)
        except Exception as exc:  # any failure to download, deserialize or warm up: keep `current`
            error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            failure = LoadFailure(slot, version, error, time.time())
            self.failures[slot] = failure
            log.exception("%s: %s v%s failed to load; keeping v%s", slot, self.name, version,
                          current.version if current else None)
            if self.on_load_failed is not None:
                self.on_load_failed(failure)
            return current
        self.failures.pop(slot, None)
        loaded = replace(loaded, tags=tags, loaded_at=time.time())
        log.info("%s: loaded %s v%s in %.2fs", slot, self.name, version, time.perf_counter() - started)
        if self.on_swap:
            self.on_swap(slot, current, loaded)
        return loaded
