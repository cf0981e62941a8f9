"""`mlops-pipeline explain`: the lineage of a prediction a real server answered, and the reverse
question for a snapshot, against the session's MLflow server, the server's prediction store and
the landed batch files.

The session stack registered v1 (Jan-Feb, champion, no champion to compare with) and v2 (Jan-Mar,
challenger, gated against v1); here a server answers with v1, sends a share of requests to v2 as a
canary and shadows v2 on the rest.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pandas as pd
import pytest

from mlops_pipeline.cli import main
from mlops_pipeline.data.snapshots import content_id
from mlops_pipeline.monitoring.predictions import PredictionStore
from mlops_pipeline.serving.scoring import canary_bucket
from mlops_pipeline_tests.serving.conftest import MODEL, TOKEN, Stack, records, start_server, stop

pytestmark = pytest.mark.slow
SHARE = 0.5


def _explain(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["explain", *args])
    return code, capsys.readouterr().out


def _wait_captured(store: PredictionStore, n: int, rid: str, timeout: float = 30.0) -> None:
    """Every answered record captured, and the shadow answer of `rid` too (shadows are scored
    after the answer is sent, so they land a moment later)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = store.read_window()
        if len(frame[frame["role"] != "shadow"]) >= n and len(store.get(rid)) == 2:
            return
        time.sleep(0.1)


def test_explain_a_served_prediction_and_what_a_snapshot_served(stack: Stack, capsys, monkeypatch):
    history_db = f"sqlite:///{stack.data_dir / 'predictions' / 'predictions.db'}"
    srv = start_server(stack, "explain", "--shadow", "--canary-share", str(SHARE))
    try:
        served: Counter = Counter()
        answers = []
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            # /ready means the champion answers; the challenger (canary, shadow) loads just after
            deadline = time.monotonic() + 60
            while str((client.get("/health").json().get("challenger") or {}).get("version")) != "2":
                assert time.monotonic() < deadline, client.get("/health").json()
                time.sleep(0.1)
            for i in range(12):
                batch = records(stack, 1 + i % 3, offset=i * 3)
                body = client.post("/predict", json={"records": batch},
                                   headers={"X-Request-Key": f"explain-{i}"}).json()
                served[(body["model_version"], body["role"])] += len(batch)
                answers.append((body, batch))
            champion_answer, champion_record = next(
                (b, r) for b, r in answers if b["role"] == "champion")
            rid = champion_answer["predictions"][0]["request_id"]
            assert client.post("/feedback", json={"request_id": rid, "label": 1},
                               headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert {role for _, role in served} == {"champion", "canary"}, served
        store = PredictionStore(srv.predictions_url)
        _wait_captured(store, sum(served.values()), rid)
    finally:
        stop(srv.proc)
    frame = store.read_window()  # all the server captured, read after it stopped

    # ---- one prediction, in words and as JSON ----------------------------------------------------
    args = ["--predictions-url", srv.predictions_url, "--history-url", history_db]
    code, text = _explain(capsys, rid, *args)
    assert code == 0, text
    code, raw = _explain(capsys, rid, "--json", *args)
    assert code == 0
    out = json.loads(raw)
    rec = out["record"]
    assert rec["request_id"] == rid and rec["features"]["carrier"] == champion_record[0]["carrier"]
    answer = next(a for a in rec["answers"] if a["role"] == "champion")
    assert answer["model_version"] == "1" and answer["latency_ms"] > 0
    assert answer["prediction"] == champion_answer["predictions"][0]["prediction"]
    assert {a["role"] for a in rec["answers"]} == {"champion", "shadow"}  # v2 shadowed it
    assert rec["label"] == 1
    model = out["model"]
    assert model["version"] == "1" and model["aliases_then"]["aliases"]["champion"] == "1"
    # (the shared stack's earlier tests may have parked other aliases on v1 too)
    assert "champion" in model["aliases_then"]["version_held"]
    # The move that made v1 champion before this request, as the history recorded it (the loop's
    # run, or an earlier test on the shared stack that put v1 back): the same row the history gives.
    from mlops_pipeline.deployment.history import AliasHistory

    move = model["aliases_then"]["champion_move"]
    assert move["to_version"] == "1" and move["actor"]
    history = AliasHistory(history_db)
    try:
        then = history.event_at(MODEL, "champion", pd.Timestamp(answer["at"]).to_pydatetime())
    finally:
        history.close()
    assert then is not None and then.actor == move["actor"] and then.to_version == "1"
    assert model["aliases_now"]["challenger"] == "2"
    assert model["description"].startswith(f"# {MODEL} v1")  # the model card
    manifest = out["run"]["manifest"]
    assert out["run"]["run_id"] == model["run_id"] == model["tags"]["run_id"]
    assert len(manifest["git_sha"]) == 40 and manifest["git_dirty"] in (True, False)
    assert len(manifest["uv_lock_sha256"]) == 64 and manifest["seeds"]["model"] == 42
    assert manifest["config_fingerprint"] and manifest["inputs"]["config"]["sha256"]
    assert out["gate"]["status"] == "passed" and out["gate"]["champion_version"] == "none"
    snap = out["snapshot"]
    assert snap["id"] == model["tags"]["snapshot_id"] == manifest["dataset_snapshot_id"]
    names = [b["name"] for b in snap["batches"]]
    assert len(names) == 2 and snap["rows"] == sum(b["rows"] for b in snap["batches"])
    for batch in snap["batches"]:  # each landed file re-hashes to the id explain printed
        assert content_id(pd.read_parquet(batch["uri"])) == batch["content_id"]
    assert out["training_run"]["dagster_run_id"] == manifest["dagster_run_id"]
    assert out["training_run"]["drift_reports"] == []  # v1 had no champion to compare with
    for item in [rid, "answer [champion] v1", "answer [shadow] v2", "label: 1", "aliases at",
                 "champion=v1", manifest["git_sha"], manifest["uv_lock_sha256"][:12],
                 f"config {manifest['config_fingerprint']}", "seeds: model=42", "gate: passed",
                 snap["id"], f"{snap['rows']:,} rows", *(b["content_id"] for b in snap["batches"]),
                 manifest["dagster_run_id"], "drift reports: none"]:
        assert item in text, f"{item!r} missing from:\n{text}"

    # v2 was gated against v1: explain names that champion and its tags
    canary_rid = next(b for b, _ in answers if b["role"] == "canary")["predictions"][0]["request_id"]
    code, raw = _explain(capsys, canary_rid, "--json", *args)
    v2 = json.loads(raw)
    assert v2["model"]["version"] == "2" and "challenger" in v2["model"]["aliases_then"]["version_held"]
    assert v2["gate"]["champion_version"] == "1"
    assert v2["gate"]["champion"]["tags"]["snapshot_id"] == snap["id"]
    assert len(v2["snapshot"]["batches"]) == 3
    assert v2["snapshot"]["id"] != snap["id"]

    # ---- the reverse question: what did each snapshot's models serve? ---------------------------
    shadowed = Counter(frame[frame["role"] == "shadow"]["model_version"])
    for version, snapshot_id in (("1", snap["id"]), ("2", v2["snapshot"]["id"])):
        code, raw = _explain(capsys, "--snapshot", snapshot_id[:16], "--json",
                             "--predictions-url", srv.predictions_url)
        assert code == 0
        found = json.loads(raw)
        assert [v["version"] for v in found["versions"]] == [version]
        entry = found["versions"][0]
        by_role = {s["role"]: s["predictions"] for s in entry["served"]}
        expected = {role: n for (v, role), n in served.items() if v == version}
        if shadowed.get(version):
            expected["shadow"] = shadowed[version]
        assert by_role == expected, (by_role, expected)
        assert entry["predictions"] == sum(n for (v, _), n in served.items() if v == version)
        for s in entry["served"]:
            times = frame[(frame["model_version"] == version) & (frame["role"] == s["role"])]["ts"]
            assert pd.Timestamp(s["first"]).tz_localize(None) == times.min()
            assert pd.Timestamp(s["last"]).tz_localize(None) == times.max()
    code, text = _explain(capsys, "--snapshot", snap["id"], "--predictions-url", srv.predictions_url)
    assert f"{MODEL} v1 (gate passed): {served[('1', 'champion')]:,} prediction(s) served" in text
    code, _ = _explain(capsys, "no-such-request", *args)
    assert code == 1


def test_keys_reach_both_routes():
    """The canary share above routes some of the test's keys each way (a sanity check of the setup)."""
    buckets = [canary_bucket(f"explain-{i}") < SHARE for i in range(12)]
    assert any(buckets) and not all(buckets)
