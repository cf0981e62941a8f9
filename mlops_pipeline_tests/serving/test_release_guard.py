"""The release guard end to end: real `mlops-pipeline serve` processes, the session's MLflow server,
and the `release_guard` sensor evaluated against them.

Its own registered model (`flights_release`, a dataset config that differs from flights only in its
name, a looser quality tolerance and smaller evidence minimums), so the shared stack's aliases are
never touched: v1 is a copy of the stack's champion. A slow challenger (a soft-voting ensemble of
copies of the stack's v2: the same answers, many times the work per request, registered through the
real registry and gated by THE gate) gets canary traffic and is removed by the guard under client
traffic; a good challenger (the champion stopped early) in shadow and canary, with labels
fed back, is announced, its shadow agreement matches a direct computation from the store, and with
`auto_promote` it is promoted through the gate.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pandas as pd
import pytest
import yaml

from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.resources import AlertResource, DatasetResource, MLflowResource
from mlops_pipeline.defs.resources.predictions import PredictionStoreResource
from mlops_pipeline.defs.resources.serving import ServingResource
from mlops_pipeline.deployment import release
from mlops_pipeline.deployment.history import AliasHistory
from mlops_pipeline.deployment.tags import READY_TAG, ROLLBACK_REASON_TAG, ROLLBACK_TAG
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline_tests.serving.conftest import MODEL, TOKEN, Stack, records, start_server, stop
from mlops_pipeline_tests.webhook import Webhook

pytestmark = pytest.mark.slow

NAME = "flights_release"
POLL_SECONDS = 1.0


def _config(path: Path, **release_overrides) -> Path:
    raw = yaml.safe_load((PROJECT_ROOT / "data/configs/flights.yaml").read_text())
    raw["name"] = NAME
    raw["gate"]["roc_auc"]["tolerance"] = 0.05
    raw["release"] = {
        "latency": {"min_requests": 25}, "errors": {"min_requests": 25},
        "shift": {"min_records": 150}, "agreement": {"min_records": 150},
        "quality": {"metric": "roc_auc", "min_labelled": 150, "bootstrap_samples": 100},
        **release_overrides,
    }
    path.write_text(yaml.safe_dump(raw))
    return path


class Traffic(threading.Thread):
    """A client sending requests back to back (one at a time, as a caller waiting for each answer);
    keeps every status, and feeds back each answered record's label when one is known."""

    def __init__(self, url: str, batches: list[list[dict]], labels: list[list[float]] | None = None):
        super().__init__(daemon=True)
        self.url, self.batches, self.labels = url, batches, labels
        self.statuses: list[int] = []
        self.feedback: list[int] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = 0
            while not self.halt.is_set():
                k = i % len(self.batches)
                try:
                    r = client.post("/predict", json={"records": self.batches[k]})
                    self.statuses.append(r.status_code)
                except httpx.HTTPError:
                    self.statuses.append(0)
                    continue
                finally:
                    i += 1
                if self.labels is not None and r.status_code == 200 and i <= len(self.batches):
                    for answer, label in zip(r.json()["predictions"], self.labels[k], strict=True):
                        self.feedback.append(client.post("/feedback", json={
                            "request_id": answer["request_id"], "label": label},
                            headers={"Authorization": f"Bearer {TOKEN}"}).status_code)

    def finish(self) -> None:
        self.halt.set()
        self.join(timeout=60)
        assert not self.is_alive()


@dataclasses.dataclass
class Release:
    stack: Stack
    mlflow: MLflow
    storage: Storage
    webhook: Webhook
    root: Path


@pytest.fixture(scope="module")
def rel(stack: Stack, tmp_path_factory: pytest.TempPathFactory):
    """flights_release v1 = the stack's champion, made champion through the registry."""
    root = tmp_path_factory.mktemp("release")
    res = MLflow(tracking_uri=stack.tracking_uri)
    client = res.client()
    client.create_registered_model(NAME)
    v1 = _copy_version(res, "1")
    res.set_alias(NAME, "champion", v1, actor="test:setup", reason="release tests")
    hook = Webhook()
    yield Release(stack, res, Storage(root=str(stack.data_dir)), hook, root)
    hook.close()


def _copy_version(res: MLflow, source_version: str) -> str:
    client = res.client()
    mv = client.get_model_version(MODEL, source_version)
    import mlflow

    res.configure()
    new = mlflow.register_model(mv.source, NAME, tags=dict(mv.tags))  # the loop registers so too
    return str(new.version)


def _ensemble_version(rel: Release, members: list[str]) -> str:
    """A soft-voting ensemble of the stack's versions `members`: their answers (the mean of their
    probabilities) at the cost of all of them."""
    import mlflow
    from sklearn.ensemble import VotingClassifier
    from sklearn.preprocessing import LabelEncoder

    from mlops_pipeline.training.model import POSITIVE_ATTR

    rel.mlflow.configure()
    loaded = {v: mlflow.sklearn.load_model(f"models:/{MODEL}/{v}") for v in set(members)}
    named = [(f"m{i}_v{v}", loaded[v]) for i, v in enumerate(members)]
    model = VotingClassifier(named, voting="soft")
    model.estimators_ = [m for _, m in named]
    model.named_estimators_ = None  # not used to predict; a Bunch is not a type skops trusts
    base = loaded[members[0]]
    model.le_ = LabelEncoder().fit(base.classes_)
    model.classes_ = model.le_.classes_
    setattr(model, POSITIVE_ATTR, getattr(base, POSITIVE_ATTR, 1))
    return _register_gated(rel, model, "2")


def _early_stopped_version(rel: Release, source: str, trees: int) -> str:
    """The stack's version `source` stopped after its first `trees` boosting iterations: answers
    close to the source's but not equal, at (slightly less than) its cost."""
    import mlflow

    rel.mlflow.configure()
    model = mlflow.sklearn.load_model(f"models:/{MODEL}/{source}")
    booster = model.steps[-1][1]
    assert booster.n_iter_ > trees
    booster._predictors = booster._predictors[:trees]  # n_iter_ is their count
    return _register_gated(rel, model, source)


def _register_gated(rel: Release, model, snapshot_of: str) -> str:
    """Log and register `model` like the loop does (skops, the project's trusted types), tag it with
    the snapshot of the stack's version `snapshot_of`, and let THE gate judge it against
    flights_release's champion on that snapshot's holdout (gate.status as the loop sets it)."""
    import mlflow

    from mlops_pipeline.deployment.promotion import gate_version
    from mlops_pipeline.spec import load_spec
    from mlops_pipeline.training.model import SKOPS_TRUSTED_TYPES

    with rel.mlflow.start_run("release-test-challenger"):
        info = mlflow.sklearn.log_model(model, name="model", input_example=rel.stack.holdout.head(5),
                                        skops_trusted_types=list(SKOPS_TRUSTED_TYPES))
    source = rel.mlflow.client().get_model_version(MODEL, snapshot_of)
    mv = mlflow.register_model(info.model_uri, NAME, tags={"snapshot_id": source.tags["snapshot_id"]})
    spec = load_spec(_config(rel.root / "gate.yaml"))
    report = gate_version(rel.mlflow, rel.storage, spec, str(mv.version))
    rel.mlflow.client().set_model_version_tag(NAME, mv.version, "gate.status",
                                              "passed" if report.passed else "failed")
    assert report.passed, report.result.failures()
    return str(mv.version)


def _tick(rel: Release, config: Path, predictions_url: str, server_url: str, cursor: str | None = None):
    """One evaluation of the real sensor, on an instance with no run in progress."""
    from mlops_pipeline.defs.automation import build_release_guard
    from mlops_pipeline.settings import Settings

    resources = {
        "dataset": DatasetResource(config_path=str(config)),
        "mlflow": MLflowResource(tracking_uri=rel.stack.tracking_uri, history_url=predictions_url),
        "predictions": PredictionStoreResource(url=predictions_url),
        "serving": ServingResource(url=server_url),
        "alerts": AlertResource(webhook_url=rel.webhook.url),
        "storage": rel.storage,
    }
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
        # The token comes from MLOPS_SERVE_TOKEN, as `definitions.py` reads it for the code location.
        return build_release_guard(serve_token=Settings.from_env().serve_token).evaluate_tick(context)


def _tick_until(rel, config, srv, action: str, traffic: Traffic, timeout: float = 100.0):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        assert traffic.is_alive(), "client traffic stopped"
        result = _tick(rel, config, srv.predictions_url, srv.url)
        message = result.skip_message or ""
        seen.append(message[:600])
        if traffic.feedback:
            assert set(traffic.feedback) == {200}, "feedback refused"
        if message.startswith(f"{action}:"):
            return message
        assert not message.startswith(("remove:", "promote:", "announce:")), message
        time.sleep(1.0)
    raise AssertionError(f"no {action!r} decision within {timeout}s; last: {seen[-1]}")


def _wait_health(srv, key: str, timeout: float = 60.0) -> None:
    """Until the server's /health says `key` (it has loaded the challenger in that role)."""
    deadline = time.monotonic() + timeout
    while not httpx.get(f"{srv.url}/health").json()[key]:
        assert time.monotonic() < deadline, srv.log.read_text()[-3000:]
        time.sleep(0.2)


def _last_event(srv, alias: str):
    """The latest move of `alias` in the server's alias history."""
    history = AliasHistory(srv.predictions_url)
    try:
        return history.events(model=NAME, alias=alias)[-1]
    finally:
        history.close()


def _labelled_batches(stack: Stack, size: int, count: int) -> tuple[list[list[dict]], list[list[float]]]:
    """Requests of `size` records from the landed March flights that have an arr_delay, and those
    arr_delays (the label source feedback carries)."""
    frame = pd.read_parquet(next((stack.data_dir / "landing" / "flights").glob("*03*.parquet")))
    frame = frame[frame["arr_delay"].notna()].head(size * count).reset_index(drop=True)
    rows = json.loads(frame[stack.features].to_json(orient="records", date_format="iso"))
    delays = frame["arr_delay"].astype(float).tolist()
    return ([rows[i:i + size] for i in range(0, len(rows), size)],
            [delays[i:i + size] for i in range(0, len(delays), size)])


def test_slow_challenger_is_removed_by_the_guard_under_traffic_with_no_failed_request(rel, monkeypatch):
    monkeypatch.setenv("MLOPS_SERVE_TOKEN", TOKEN)  # the guard's reload is authenticated
    version = _ensemble_version(rel, ["2"] * 40)  # v2's answers at 40 times the work
    rel.mlflow.set_alias(NAME, "challenger", version, actor="test:setup", reason="slow challenger")
    config = _config(rel.root / "slow.yaml")
    srv = start_server(rel.stack, "release_slow", "--config", str(config), "--canary-share", "0.5",
                       "--poll-seconds", str(POLL_SECONDS))
    traffic = Traffic(srv.url, [records(rel.stack, 1, offset=i) for i in range(40)])
    try:
        _wait_health(srv, "canary_active")
        traffic.start()
        message = _tick_until(rel, config, srv, "remove", traffic)
        decided = datetime.now(UTC)
        assert "latency" in message
        deadline = time.monotonic() + 2 * POLL_SECONDS + 5
        while httpx.get(f"{srv.url}/health").json()["challenger"] is not None:
            assert time.monotonic() < deadline, "the server still routes to the removed challenger"
            time.sleep(0.1)
        settled, until = len(traffic.statuses), time.monotonic() + POLL_SECONDS + 2.0
        while len(traffic.statuses) < settled + 30 or time.monotonic() < until:  # clients go on
            time.sleep(0.05)
    finally:
        if traffic.is_alive():
            traffic.finish()
        stop(srv.proc)
    assert traffic.statuses and set(traffic.statuses) == {200}, "a client request failed"

    event = _last_event(srv, "challenger")
    assert (event.from_version, event.to_version) == (version, None)
    assert event.actor == release.GUARD_ACTOR and "latency" in event.reason
    assert event.at <= decided
    tags = rel.mlflow.client().get_model_version(NAME, version).tags
    assert tags[ROLLBACK_TAG] == "true" and "latency" in tags[ROLLBACK_REASON_TAG]
    alerts = [a for a in rel.webhook.received if a.get("kind") == "release_rollback"]
    assert alerts and alerts[-1]["version"] == version

    rows = PredictionStore(srv.predictions_url).read_window(model_name=NAME)
    canary = rows[rows["role"] == "canary"]
    assert len(canary) >= 25 and set(canary["model_version"]) == {version}
    last_canary = pd.Timestamp(canary["ts"].max()).tz_localize(UTC).to_pydatetime()
    assert last_canary <= event.at + timedelta(seconds=POLL_SECONDS + 0.5), (last_canary, event.at)
    settled_at = event.at + timedelta(seconds=POLL_SECONDS + 0.5)
    after = rows[pd.to_datetime(rows["ts"]).dt.tz_localize(UTC) > settled_at]
    assert len(after) >= 10 and set(after["role"]) == {"champion"}


def test_good_challenger_is_announced_then_promoted_and_its_shadow_agreement_matches_the_store(
        rel, monkeypatch):
    monkeypatch.setenv("MLOPS_SERVE_TOKEN", TOKEN)
    # The champion stopped early: close to its answers, not equal to them, at no extra cost (the
    # Jan-Mar retrain alone shifts this small-sample model's scores far: PSI ~1, and is refused).
    version = _early_stopped_version(rel, "1", trees=150)
    rel.mlflow.set_alias(NAME, "challenger", version, actor="test:setup", reason="good challenger")
    latency = {"min_requests": 60, "slack_ms": 25.0}  # p99 of a few dozen requests: allow jitter
    quality = {"metric": "roc_auc", "min_labelled": 100, "bootstrap_samples": 100}
    config = _config(rel.root / "good.yaml", latency=latency, quality=quality)
    srv = start_server(rel.stack, "release_good", "--config", str(config), "--shadow",
                       "--canary-share", "0.4", "--poll-seconds", str(POLL_SECONDS))
    batches, labels = _labelled_batches(rel.stack, size=4, count=150)  # labels for the first pass
    traffic = Traffic(srv.url, batches, labels)
    try:
        _wait_health(srv, "shadow")
        traffic.start()
        message = _tick_until(rel, config, srv, "announce", traffic)
        traffic.finish()
        assert set(traffic.statuses) == {200} and set(traffic.feedback) == {200}
        assert f"v{version} ready to promote" in message
        tags = rel.mlflow.client().get_model_version(NAME, version).tags
        assert "ready to promote" in tags[READY_TAG]
        assert any(a.get("kind") == "release_ready" and a["version"] == version
                   for a in rel.webhook.received)
        assert str(rel.mlflow.version_by_alias(NAME, "champion").version) == "1"  # announced only
        # The decision is in the history: a row that moves nothing, with who and why.
        said = _last_event(srv, "challenger")
        assert (said.from_version, said.to_version) == (version, version)
        assert said.actor == release.GUARD_ACTOR and said.reason.startswith("ready to promote")

        # Shadow analysis against a direct computation from the store (traffic stopped; wait for
        # the shadow queue to drain: every champion record has its shadow answer).
        store = PredictionStore(srv.predictions_url)
        deadline = time.monotonic() + 30
        while True:
            rows = store.read_window(model_name=NAME)
            champ = rows[(rows["role"] == "champion") & (rows["model_version"] == "1")]
            shadow = rows[(rows["role"] == "shadow") & (rows["model_version"] == version)]
            if len(shadow) == len(champ):
                break
            assert time.monotonic() < deadline, (len(champ), len(shadow))
            time.sleep(0.2)
        pairs = champ.merge(shadow, on="request_id", suffixes=("_c", "_s"))
        assert len(pairs) == len(champ) >= 150
        assert (pairs["batch_id_c"] == pairs["batch_id_s"]).all()  # the same requests
        expected_agreement = float((pairs["prediction_c"] == pairs["prediction_s"]).mean())
        expected_diff = float((pairs["probability_c"] - pairs["probability_s"]).abs().mean())
        result = dg.materialize(
            [_analysis_asset()],
            resources={"dataset": DatasetResource(config_path=str(config)),
                       "mlflow": MLflowResource(tracking_uri=rel.stack.tracking_uri),
                       "predictions": PredictionStoreResource(url=srv.predictions_url),
                       "serving": ServingResource(url=srv.url)},
        )
        assert result.success
        meta = result.asset_materializations_for_node("challenger_analysis")[0].metadata
        assert meta["shadow_shared_records"].value == len(pairs)
        assert meta["shadow_agreement"].value == pytest.approx(expected_agreement)
        assert meta["shadow_mean_abs_score_diff"].value == pytest.approx(expected_diff)
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert all(e.passed for e in checks.values()), {k: e.description for k, e in checks.items()}
        assert checks["shadow_agreement"].metadata["verdict"].value == "pass"

        # The same evidence with auto_promote: the guard promotes through the gate.
        auto = _config(rel.root / "auto.yaml", auto_promote=True, latency=latency, quality=quality)
        result = _tick(rel, auto, srv.predictions_url, srv.url)
        assert (result.skip_message or "").startswith("promote:"), result.skip_message
        deadline = time.monotonic() + 30
        while httpx.get(f"{srv.url}/health").json()["model_version"] != version:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        if traffic.is_alive():
            traffic.finish()
        stop(srv.proc)
    event = _last_event(srv, "champion")
    assert (event.from_version, event.to_version) == ("1", version)
    assert event.actor == release.GUARD_ACTOR
    assert event.reason.startswith("gate passed") and "release checks passed" in event.reason
    assert any(a.get("kind") == "release_promoted" for a in rel.webhook.received)


def _analysis_asset():
    from mlops_pipeline.defs.deployment.challenger_analysis import challenger_analysis

    return challenger_analysis
