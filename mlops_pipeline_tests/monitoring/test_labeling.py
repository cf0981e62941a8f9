"""The labeling queue picks the records worth a human label; labels come back exactly once.

A crafted day: champion answers with known probabilities, a shadow challenger disagreeing on some,
one key sent twice, some records already labelled. The queue must hold exactly the expected ids in
the expected order; its Label Studio tasks, annotated the way Label Studio exports them, must attach
every label once through the feedback path (and nothing on a second import).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from mlops_pipeline.cli import main
from mlops_pipeline.monitoring.labeling import (
    LEAST_CONFIDENT,
    SHADOW_DISAGREEMENT,
    LabelRow,
    confidence_scores,
    feedback_label,
    import_labels,
    label_studio_tasks,
    queue_csv,
    read_labels,
    select_queue,
    typed_label,
)
from mlops_pipeline.monitoring.predictions import PredictionBatch, PredictionStore
from mlops_pipeline.spec import load_spec

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)


def _day(store: PredictionStore) -> dict[str, str]:
    """Ten single-record requests (flight `f0`..`f9`, positive probability p) and three shadow
    answers; returns {flight: request id}."""
    probs = [0.95, 0.52, 0.10, 0.45, 0.70, 0.49, 0.02, 0.60, 0.51, 0.80]
    flights = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f1"]  # f1 sent twice
    ids: dict[str, str] = {}
    batches = []
    for i, (p, key) in enumerate(zip(probs, flights, strict=True)):
        feats = {"carrier": "AA", "distance": 100.0 + i, "flight_id": key}
        b = PredictionBatch.from_records([feats], [1.0 if p >= 0.5 else 0.0], [p], classes=(0.0, 1.0),
                                         positive=1, ts=T0 + timedelta(minutes=i), model_name="m",
                                         model_version="3")
        batches.append(b)
        ids.setdefault(key, b.request_ids[0])
        ids[f"req{i}"] = b.request_ids[0]
        if key in ("f0", "f6", "f4"):  # the challenger shadows these; it disagrees on f0 and f6
            pred = {"f0": 0.0, "f6": 1.0, "f4": 1.0}[key]
            batches.append(PredictionBatch.from_records(
                [feats], [pred], [0.5], role="shadow", classes=(0.0, 1.0), positive=1,
                ts=T0 + timedelta(minutes=i), model_name="m", model_version="4", batch_id=b.batch_id))
    store.write(batches)
    store.set_label(ids["req5"], 30.0)  # f5 (p=0.49, the least confident) is already labelled
    return ids


@pytest.fixture
def store(tmp_path):
    s = PredictionStore(f"sqlite:///{tmp_path / 'p.db'}")
    yield s
    s.close()


def _log(store):
    return store.read_window(T0, T0 + timedelta(days=1), expand_features=True, probabilities=True)


def test_margin_and_entropy():
    margin, entropy = confidence_scores([{0: 0.5, 1: 0.5}, {"a": 0.9, "b": 0.1}, None,
                                         {"a": .2, "b": .3, "c": .5}])
    assert margin[0] == pytest.approx(0.0) and margin[1] == pytest.approx(0.8)
    assert np.isnan(margin[2]) and margin[3] == pytest.approx(0.2)
    assert entropy[0] == pytest.approx(np.log(2)) and entropy[0] > entropy[1]


def test_queue_for_a_crafted_day(store):
    ids = _day(store)
    queue = select_queue(_log(store), "classification", key_columns=["flight_id"], max_per_day=5)
    # unlabelled, one per flight; disagreements (f0, f6) take up to half the cap (3 of 5), the
    # least confident fill the rest: f8 (.51), f1 (.52, its .80 repeat dropped), f3 (.45);
    # ordered by uncertainty 1 - margin, margin = |2p - 1|
    assert list(queue["request_id"]) == [ids["f8"], ids["f1"], ids["f3"], ids["f0"], ids["f6"]]
    assert list(queue["reason"]) == [LEAST_CONFIDENT] * 3 + [SHADOW_DISAGREEMENT] * 2
    assert ids["req5"] not in set(queue["request_id"])  # labelled
    assert ids["req9"] not in set(queue["request_id"])  # f1's repeat: deduplicated by key
    assert queue["key"].is_unique and list(queue["flight_id"])[:2] == ["f8", "f1"]
    assert queue.loc[3, "shadow_prediction"] == 0.0 and queue.loc[3, "prediction"] == 1.0
    assert queue["margin"].iloc[0] == pytest.approx(0.02)

    no_shadow = select_queue(_log(store), "classification", key_columns=["flight_id"], max_per_day=5,
                             shadow_disagreement=False)
    assert list(no_shadow["request_id"]) == [ids["f8"], ids["f1"], ids["f3"], ids["f7"], ids["f4"]]
    # without key columns the request id is the key: f1's repeat is a record of its own
    by_request = select_queue(_log(store), "classification", max_per_day=20)
    assert len(by_request) == 9 and ids["req9"] in set(by_request["request_id"])
    # a key labelled once is not queued again
    store.set_label(ids["f1"], 5.0)
    again = select_queue(_log(store), "classification", key_columns=["flight_id"], max_per_day=20)
    assert ids["f1"] not in set(again["request_id"]) and ids["req9"] not in set(again["request_id"])
    assert len(again) == 7


def test_regression_queue_ranks_by_estimated_loss():
    log = pd.DataFrame({
        "request_id": [f"{i:032x}" for i in range(4)] + [f"{1:032x}"],
        "role": ["champion"] * 4 + ["shadow"], "ts": pd.Timestamp("2026-03-02"),
        "model_version": "1", "prediction": [10.0, 20.0, 30.0, 40.0, 90.0],
        "label": [np.nan] * 5, "x": [1, 2, 3, 4, 2],
    })
    queue = select_queue(log, "regression", max_per_day=2, estimated_loss=np.array([1.0, 0.5, 9.0, 3.0]))
    assert list(queue["request_id"]) == [f"{2:032x}", f"{1:032x}"]  # the loss leader, the disagreement
    assert list(queue["reason"]) == [LEAST_CONFIDENT, SHADOW_DISAGREEMENT]
    only_shadow = select_queue(log, "regression", max_per_day=5)  # no loss model: disagreements only
    assert list(only_shadow["request_id"]) == [f"{1:032x}"]


def _annotate(tasks, labels):
    """The queue's tasks as Label Studio exports them once annotated (JSON export)."""
    out = []
    for i, task in enumerate(tasks):
        rid = task["data"]["request_id"]
        result = [{"id": f"r{i}", "from_name": "delay", "to_name": "text", "type": "choices",
                   "origin": "manual", "value": {"choices": [labels[rid]]}}]
        out.append({"id": 100 + i, "data": task["data"], "annotations": [
            {"id": 7, "completed_by": 1, "was_cancelled": True, "result": [], "ground_truth": False},
            {"id": 8, "completed_by": 1, "was_cancelled": False, "result": result, "ground_truth": False,
             "lead_time": 3.2, "created_at": "2026-03-03T10:00:00Z"}],
            "predictions": [], "meta": {}, "project": 1})
    return out


def test_label_studio_export_round_trip(store, tmp_path, data_dir):
    spec = load_spec()  # flights: the label is the observed arr_delay (a number)
    ids = _day(store)
    queue = select_queue(_log(store), spec.task, key_columns=["flight_id"], max_per_day=5)
    tasks = json.loads(json.dumps(label_studio_tasks(queue)))
    assert len(tasks) == 5 and set(tasks[0]["data"]) >= {"request_id", "carrier", "distance", "flight_id"}
    labels = {t["data"]["request_id"]: str(10 * i + 1) for i, t in enumerate(tasks)}
    exported = _annotate(tasks, labels)
    exported.append({"id": 999, "data": {"request_id": "f" * 32}, "annotations": [
        {"was_cancelled": False, "result": [{"type": "number", "value": {"number": 12}}]}]})
    path = tmp_path / "export.json"
    path.write_text(json.dumps(exported))

    rows, problems = read_labels(path)
    assert not problems and len(rows) == 6
    first = import_labels(store, rows, spec)
    assert sorted(first.changed) == sorted(labels) and first.unknown == ["f" * 32] and not first.invalid
    log = _log(store)
    served = log[log["role"] == "champion"].set_index("request_id")
    for rid, label in labels.items():
        assert served.loc[rid, "label"] == float(label)
        assert log.loc[log["request_id"] == rid, "label"].notna().all()  # shadow rows too
    second = import_labels(store, read_labels(path)[0], spec)
    assert not second.changed and sorted(second.unchanged) == sorted(labels)
    assert "nothing changed" in second.summary()
    assert ids["req5"] not in labels


def test_labels_are_parsed_and_validated_like_feedback(data_dir):
    spec = load_spec()  # derived target: a number
    assert typed_label("12", spec) == 12 and typed_label("12.5", spec) == 12.5
    assert feedback_label(typed_label("late", spec), spec)[1].startswith("expected a number")
    string_spec = spec.model_copy(update={"target": spec.target.model_copy(update={"expression": None})})
    assert typed_label("late", string_spec, ("late", "on_time")) == "late"
    assert feedback_label("late", string_spec, ("late", "on_time")) == ("late", None)
    assert feedback_label(3, string_spec, ("late", "on_time"))[1].startswith("expected a string class")
    assert typed_label("TRUE", string_spec, (False, True)) is True
    assert typed_label("2", string_spec, (0, 1, 2)) == 2


def test_cli_imports_a_csv(store, tmp_path, monkeypatch, capsys, data_dir):
    ids = _day(store)
    monkeypatch.setenv("MLOPS_PREDICTIONS_URL", store.url)
    queue = select_queue(_log(store), "classification", key_columns=["flight_id"], max_per_day=3)
    csv_text = queue_csv(queue)
    assert csv_text.splitlines()[0].startswith("request_id,label,")
    filled = pd.read_csv(pd.io.common.StringIO(csv_text), dtype=str)
    filled["label"] = ["25", "3.5", ""]  # the third left for later
    filled.loc[len(filled)] = {"request_id": "0" * 32, "label": "7"}
    path = tmp_path / "labels.csv"
    filled.to_csv(path, index=False)

    assert main(["labels", "import", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 label(s) attached" in out and "1 unknown request id(s)" in out and "0" * 32 in out
    got = store.get(ids["f8"])
    assert got["label"].iloc[0] == 25.0
    assert main(["labels", "import", str(path)]) == 0
    assert "nothing changed" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text(f"request_id,label\n{ids['f3']},late\n")
    assert main(["labels", "import", str(bad)]) == 1
    assert "expected a number" in capsys.readouterr().out


def test_import_validates_labels_exactly_like_post_feedback(data_dir):
    """`labels import` must accept and store what `POST /feedback` accepts and stores: the server's
    own `_feedback_label` and `feedback_label` agree on every label for every kind of class list."""
    from types import SimpleNamespace

    from mlops_pipeline.serving.server import Server

    derived = load_spec()
    column = derived.model_copy(update={"target": derived.target.model_copy(update={"expression": None})})
    regression = column.model_copy(update={"task": "regression"})
    labels = ["late", "", 3, 3.5, 0, True, False, None, [1]]
    for spec in (derived, column, regression):
        for classes in ((), ("late", "on_time"), (False, True), (0, 1, 2), (0.0, 1.0)):
            champion = SimpleNamespace(classes=SimpleNamespace(labels=classes) if classes else None)
            server = SimpleNamespace(spec=spec, watcher=SimpleNamespace(champion=champion))
            for label in labels:
                want = Server._feedback_label(server, label)
                got = feedback_label(label, spec, classes)
                assert (got[0], got[1] is None) == (want[0], want[1] is None), (spec.task, classes, label)
                assert type(got[0]) is type(want[0])


def test_a_label_the_model_does_not_know_is_refused_naming_the_classes(data_dir):
    """Issue 24 item 10: "maybe" for a good/bad target is not a label, nor 3 for classes 0/1/2."""
    spec = load_spec()
    column = spec.model_copy(update={"target": spec.target.model_copy(update={"expression": None})})
    assert feedback_label("bad", column, ("bad", "good")) == ("bad", None)
    label, problem = feedback_label("maybe", column, ("good", "bad"))
    assert label is None
    assert problem == "'maybe' is not a class of 'delayed': use one of 'bad', 'good'"
    assert feedback_label(3, column, (0, 1, 2))[1] == (
        "3 is not a class of 'delayed': use one of 0, 1, 2")
    assert feedback_label(2.0, column, (0, 1, 2)) == (2.0, None)  # JSON 2 and 2.0 are one class
    assert feedback_label(1, column, (False, True))[1].startswith("expected true or false")
    assert feedback_label(True, column, (False, True)) == (True, None)
    # Without the model's classes (none loaded yet) nothing is known to compare with.
    assert feedback_label("maybe", column, ()) == ("maybe", None)


def test_labels_import_refuses_an_unknown_class(store, data_dir):
    spec = load_spec()
    column = spec.model_copy(update={"target": spec.target.model_copy(update={"expression": None})})
    b = PredictionBatch.from_records([{"carrier": "AA", "distance": 100.0}], ["good"], [0.7],
                                     classes=("bad", "good"), positive=1, ts=T0, model_name="m",
                                     model_version="3")
    store.write([b])
    rid = b.request_ids[0]
    rows = [LabelRow(rid, "maybe", "labels.csv:2"), LabelRow(rid, "good", "labels.csv:3")]

    report = import_labels(store, rows, column)

    assert report.invalid == [f"labels.csv:2 {rid}: 'maybe' is not a class of 'delayed': use one "
                              "of 'bad', 'good' (got 'maybe')"]
    assert report.changed == [rid]
    assert store.get(rid)["label"].iloc[0] == "good"
