"""The holdout the gate may trust in this run: the candidate's holdout without the rows of batches
a check of this run flagged (`deployment.holdout.comparison_holdout`), read from this run's check
evaluations, and without the rows the champion trained on. A helper of `model_version`; no asset
here.
"""

import dagster as dg
import pandas as pd

from mlops_pipeline.data.features import FeaturesInfo
from mlops_pipeline.data.storage import Storage
from mlops_pipeline.deployment.holdout import ComparisonHoldout
from mlops_pipeline.deployment.tags import SNAPSHOT_ID_TAG


def flagged_batches(context: dg.AssetExecutionContext) -> dict[str, str]:
    """Batch file name -> the check of this run that failed naming it (metadata `batch`, or
    `batches` as a list or comma-separated text). Only checks declared blocking are sure to have
    run before the gate; failing with ERROR they stop the run, so what is found here are batches
    that blocking checks flagged with WARN severity."""
    records = context.instance.get_records_for_run(
        context.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ).records
    flagged: dict[str, str] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event else None
        if evaluation is None or evaluation.passed:
            continue
        for key in ("batch", "batches"):
            entry = evaluation.metadata.get(key)
            value = getattr(entry, "value", entry)
            names = value if isinstance(value, list | tuple) else str(value or "").split(",")
            for batch in (str(n).strip().rsplit("/", 1)[-1] for n in names):
                if batch:
                    flagged.setdefault(batch, evaluation.check_name)
    return flagged


def trusted_holdout(context, spec, storage: Storage, training_features: FeaturesInfo,
                    champion) -> ComparisonHoldout:
    """The Dagster side of `trusted_comparison`: reads the flagged batches' rows from the landing
    area; the champion's training rows come from its snapshot (`deployment.holdout`)."""
    from mlops_pipeline.data.features import read_features
    from mlops_pipeline.deployment.holdout import comparison_holdout, trusted_comparison

    holdout = read_features(storage, training_features, spec, "holdout")
    flagged = flagged_batches(context)
    rows: dict[str, pd.DataFrame] = {}
    if flagged:
        landed = {uri.rsplit("/", 1)[-1]: uri for uri in storage.list_uris(storage.landing_glob(spec))}
        for batch, check in flagged.items():
            if batch in landed:
                rows[batch] = storage.read_table(landed[batch], spec.source.format)
                context.log.warning(f"holdout rows of {batch} left out of the comparison ({check})")
    snapshot_id = champion.tags.get(SNAPSHOT_ID_TAG) if champion is not None else None
    try:
        comparison = trusted_comparison(storage, spec, holdout, snapshot_id, rows)
    except (FileNotFoundError, KeyError) as exc:
        # Without it nobody can say which rows the champion trained on: the comparison keeps them,
        # which can only favour the champion (a candidate is blocked, never waved through).
        context.log.warning(f"champion's snapshot {str(snapshot_id)[:12]} cannot be read ({exc}): "
                            "rows it trained on cannot be left out of the comparison")
        comparison = comparison_holdout(holdout, None, rows)
    if comparison.champion_trained_rows:
        context.log.info(f"{comparison.champion_trained_rows} holdout rows the champion trained on "
                         "left out of the comparison")
    return comparison
