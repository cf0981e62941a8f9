"""Promotion is the last thing a loop run does, and the gate hears which batches a check flagged."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from mlops_pipeline.data.features import ROW_HASH_COLUMN, FeaturesInfo, content_columns
from mlops_pipeline.data.preparation import SPLIT_COLUMN, prepare, row_hash
from mlops_pipeline.data.snapshots import canonicalize, read_landing
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.defs.definitions import build_definitions
from mlops_pipeline.defs.deployment.trusted_holdout import flagged_batches, trusted_holdout
from mlops_pipeline.defs.resources import DatasetResource, StorageResource


def _downstream(graph, key: dg.AssetKey) -> set[dg.AssetKey]:
    seen, todo = set(), [key]
    while todo:
        for child in graph.get(todo.pop()).child_keys:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def test_nothing_in_the_loop_runs_after_the_alias_moves_and_drift_runs_before():
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    job = defs.resolve_job_def("mlops_loop")
    in_job = {k for k in graph.get_all_asset_keys() if job.asset_layer.has(k)}
    champion = dg.AssetKey("champion_model")
    assert champion in in_job
    assert not _downstream(graph, champion) & in_job  # no loop asset depends on the promotion
    assert not [k for k in graph.asset_check_keys if k.asset_key == champion]  # nor any check
    upstream = graph.get(champion).parent_keys
    assert dg.AssetKey("drift_report") in upstream and dg.AssetKey("model_version") in upstream
    # The drift check is the blocking kind: its ERROR severity (drift.block_promotion) skips
    # champion_model; its default WARN severity blocks nothing.
    spec = graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey("drift_report"), "input_drift"))
    assert spec.blocking


def test_the_gate_collects_the_batches_failed_checks_of_its_run_name():
    @dg.asset
    def landed() -> int:
        return 1

    # Declared blocking so they run before the gate (only blocking checks are ordered before
    # downstream steps); failing with WARN they flag batches without stopping the run.
    @dg.asset_check(asset=landed, blocking=True)
    def warns_on_two_batches() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN,
            metadata={"batches": "landing/flights_2013_04.parquet, flights_2013_05.parquet"},
        )

    @dg.asset_check(asset=landed, blocking=True)
    def passes_naming_a_batch() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True, metadata={"batch": "flights_2013_01.parquet"})

    @dg.asset_check(asset=landed, blocking=True)
    def fails_with_a_list() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN,
            metadata={"batch": dg.MetadataValue.json(["flights_2013_06.parquet"])},
        )

    @dg.asset(deps=[landed])
    def gate(context) -> dict:  # (annotations are strings here: Dagster wants it bare)
        return flagged_batches(context)

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [landed, gate, warns_on_two_batches, passes_naming_a_batch, fails_with_a_list],
            instance=instance,
        )
        assert result.success
        assert result.output_for_node("gate") == {
            "flights_2013_04.parquet": "warns_on_two_batches",
            "flights_2013_05.parquet": "warns_on_two_batches",
            "flights_2013_06.parquet": "fails_with_a_list",
        }


def test_the_gate_compares_without_the_rows_of_a_flagged_batch_or_those_the_champion_trained_on(
        data_dir, land):
    """The candidate's holdout (prepared from the snapshot, as in a run) loses exactly the rows of
    the batch a check flagged and the rows of the champion's training split; of the rest the
    champion's snapshot counts the known rows."""
    january, february = land(months=(1, 2), sample=0.02)
    spec = DatasetResource().spec()
    prepared = prepare(canonicalize(read_landing(str(data_dir / "landing/flights/*.parquet"), "parquet")),
                       spec).frame
    prepared[SPLIT_COLUMN] = "holdout"
    # As `training_features` hands it on: the prepared rows stored as a table, each with its hash.
    prepared[ROW_HASH_COLUMN] = row_hash(prepared, content_columns(prepared))
    stored = data_dir / "features" / "all-holdout.parquet"
    stored.parent.mkdir()
    prepared.to_parquet(stored, index=False)
    features = FeaturesInfo(str(stored), "candidate-snapshot", len(prepared), 0, len(prepared), 0, "time")
    champion_rows = canonicalize(pd.read_parquet(january))
    labelled = {f.name: len(pd.read_parquet(f).dropna(subset=["arr_delay"])) for f in (january, february)}
    # The champion trained on January's train split (its first 80%, by time) and held out the rest.
    champion_frame = prepare(champion_rows, spec).frame
    champion_split = champion_frame[SPLIT_COLUMN].value_counts()
    trained_until = pd.to_datetime(champion_frame.loc[champion_frame[SPLIT_COLUMN] == "train",
                                                      "time_hour"]).max()

    class Champion:
        tags = {"snapshot_id": "champion-snapshot"}

    @dg.asset
    def landed() -> int:
        return 1

    @dg.asset_check(asset=landed, blocking=True)
    def february_looks_odd() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"batch": february.name})

    @dg.asset(deps=[landed])
    def gate(context, storage: dg.ResourceParam[Storage]) -> dict:
        storage.write_snapshot("champion-snapshot", champion_rows)
        result = trusted_holdout(context, spec, storage, features, Champion())
        compared = result.frame
        return {"compared": result.compared_rows, "excluded": result.excluded_rows,
                "known": result.known_rows, "flagged": result.flagged_batches,
                "trained": result.champion_trained_rows,
                "earliest_compared": str(pd.to_datetime(compared["time_hour"]).min())}

    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([landed, gate, february_looks_odd], instance=instance,
                                resources={"storage": StorageResource(root=str(data_dir))})
        assert result.success
        out = result.output_for_node("gate")
        # Only the champion's own holdout is left: nothing from before its time cutoff.
        assert pd.Timestamp(out.pop("earliest_compared")) >= trained_until
        assert out == {
            "compared": champion_split["holdout"], "excluded": labelled[february.name],
            "known": champion_split["holdout"], "flagged": (february.name,),
            "trained": champion_split["train"],
        }
        assert champion_split.sum() == labelled[january.name]
