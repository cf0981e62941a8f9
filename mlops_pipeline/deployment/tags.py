"""Every name the loop writes into MLflow, Dagster or the prediction store, defined once.

Registry aliases, serving roles, MLflow version and run tag keys, and Dagster run tags are stored
data: the UI, the registry history and stored predictions all depend on these exact strings, so
they live here as constants and no module spells them as literals. Changing a value here is a data
migration, not a rename.
"""

from __future__ import annotations

# ---- registry aliases --------------------------------------------------------------------------

#: The version the server answers with.
CHAMPION = "champion"
#: The newest registered candidate: shadowed, and given a canary share unless its gate failed.
CHALLENGER = "challenger"
#: The champion before the last promotion: where `rollback` goes back to.
PREVIOUS_CHAMPION = "previous-champion"
#: Every alias the loop moves, in the order a person reads them.
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS_CHAMPION)

# ---- serving roles (the `role` column of the prediction store) ---------------------------------

#: The challenger answering a share of requests in the champion's place (served to the client).
CANARY = "canary"
#: The challenger scoring a request the champion answered (never returned to the client).
SHADOW = "shadow"
#: Every role a captured row can have: the champion's answer, a canary answer, a shadow answer.
ROLES = (CHAMPION, CANARY, SHADOW)
#: Roles whose prediction was returned to a client (shadow answers never are).
SERVED_ROLES = (CHAMPION, CANARY)

# ---- MLflow model version tags (what a person searches versions by) ---------------------------

#: Content id of the dataset snapshot the version was trained on.
SNAPSHOT_ID_TAG = "snapshot_id"
#: Git commit of the code that trained the version.
GIT_SHA_TAG = "git_sha"
#: MLflow run that trained the version.
RUN_ID_TAG = "run_id"
#: Dagster run that trained and registered the version.
DAGSTER_RUN_ID_TAG = "dagster_run_id"
#: Who trains the version and is paged when it regresses (the dataset config's `owner`).
OWNER_TAG = "owner"
#: URI of the training-data drift reference (also a training run tag).
DRIFT_REFERENCE_TAG = "drift_reference"
#: URI of the label-free performance estimator (also a training run tag).
ESTIMATOR_TAG = "performance_estimator"
#: Prefix of the holdout metric tags (`holdout_<metric>`).
HOLDOUT_TAG_PREFIX = "holdout_"
#: The eval gate's verdict on the version: `passed` or `failed`.
GATE_STATUS_TAG = "gate.status"
#: The champion version the gate compared against (`none` for the first model).
GATE_CHAMPION_TAG = "gate.champion_version"
#: Why the gate failed the version, `; `-separated.
GATE_REASONS_TAG = "gate.reasons"
#: Who made the version champion (`dagster:<run id>`, `cli:<user>`).
PROMOTED_BY_TAG = "promoted_by"
#: `true` when `promote --force` overrode a failed gate.
FORCED_TAG = "promotion.forced"
#: The gate failures `--force` overrode.
FORCED_REASONS_TAG = "promotion.forced_reasons"
#: Who forced the promotion.
FORCED_BY_TAG = "promotion.forced_by"
#: `true` on a challenger the release guard removed.
ROLLBACK_TAG = "release.rolled_back"
#: Why the release guard removed the challenger.
ROLLBACK_REASON_TAG = "release.rollback_reason"
#: Who removed the challenger (the release guard's actor).
ROLLED_BACK_BY_TAG = "release.rolled_back_by"
#: Written when the release guard announces a challenger as ready to promote: the reason.
READY_TAG = "release.ready_to_promote"
#: Where the version was trained: absent for the loop's own versions, `external` on a version
#: registered outside the loop (a notebook's, another pipeline's) and promoted through the gate.
ORIGIN_TAG = "origin"
#: `origin` of a version the loop did not train: no snapshot, no run manifest, not reproducible.
EXTERNAL_ORIGIN = "external"
#: On an `external` version: the snapshot whose holdout the gate scored it on (it has no
#: `snapshot_id`); what the next gate and monitoring use as its holdout and reference.
GATE_SNAPSHOT_TAG = "gate.snapshot_id"
#: On a copy promoted with `promote --model-name`: the registered model and version it was copied from.
COPIED_FROM_TAG = "copied_from"

# ---- MLflow run tags ---------------------------------------------------------------------------

#: What a run is, for runs that are not training runs (values below).
KIND_TAG = "kind"
#: `kind` of a drift report run.
DRIFT_REPORT_KIND = "drift_report"
#: `kind` of a monitoring board run.
BOARD_KIND = "monitoring_board"
#: The Dagster run that logged an MLflow run (searchable, unlike the version tag's name).
RUN_DAGSTER_RUN_TAG = "dagster.run_id"
#: The dataset (spec name) a training run trained on.
DATASET_TAG = "dataset"
#: The champion version a drift report compared against.
CHAMPION_VERSION_TAG = "champion_version"
#: What a drift report's current data was (a snapshot, a day of traffic).
CURRENT_TAG = "current"
#: `current` of a first run's report (no champion yet): the candidate's holdout against its training
#: split; its `champion_version` is then the candidate whose training split is the reference.
FIRST_RUN_CURRENT = "holdout_vs_train"
#: Prefix of the run tags that copy the run manifest's searchable fields (`manifest.git_sha`...).
MANIFEST_TAG_PREFIX = "manifest."
#: The manifest tag of the training snapshot (`reproduce` checks it against manifest.yaml).
MANIFEST_SNAPSHOT_TAG = MANIFEST_TAG_PREFIX + "dataset_snapshot_id"
#: The manifest tag of the model seed (`reproduce` checks it against manifest.yaml).
MANIFEST_MODEL_SEED_TAG = MANIFEST_TAG_PREFIX + "seed.model"

# ---- Dagster run tags --------------------------------------------------------------------------

#: What started a loop run: schedule, new_data, drift, estimated_performance, simulation, manual.
TRIGGER_TAG = "mlops/trigger"
#: `true` on a run that trains: one at a time (dagster.yaml); the release guard waits for it.
TRAINING_TAG = "mlops/training"
#: Content id of the landed batches a new-data run was started for.
CONTENT_ID_TAG = "mlops/content_id"
#: How many landed batch files a new-data run was started for.
BATCHES_TAG = "mlops/batches"
#: The drift check whose failure started a run.
DRIFT_CHECK_TAG = "mlops/drift_check"
#: The Dagster run of that drift check.
DRIFT_RUN_TAG = "mlops/drift_run"
#: The estimated-performance check whose failure started a run.
ESTIMATE_CHECK_TAG = "mlops/estimate_check"
#: The Dagster run of that check.
ESTIMATE_RUN_TAG = "mlops/estimate_run"
#: The traffic partition (day) that check evaluated.
ESTIMATE_PARTITION_TAG = "mlops/estimate_partition"
#: Why: that check's description (per segment, it names the segment whose estimate fell).
ESTIMATE_REASON_TAG = "mlops/estimate_reason"
