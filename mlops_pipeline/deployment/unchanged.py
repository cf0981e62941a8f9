"""Would a run train anything new? A rerun on the champion's own inputs trains nothing.

A run is identified by what decides its model: the snapshot it would take (the landing area's
content id, from the batch index), the dataset spec (its fingerprint), the data contract's file, the
training code (`training.manifest.code_digest`) and the locked libraries (`uv.lock`). The champion's
identity is what its training run recorded (the `manifest.*` run tags). When every part is equal,
training again would register a copy of the champion: `materialize` says so and launches nothing
(`--force` trains anyway), and the retraining schedule skips its tick with the same sentence.

A part the champion did not record (a version trained before it was recorded) counts as changed:
nothing is skipped that cannot be shown to be the same.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from mlops_pipeline.deployment.tags import CHAMPION, MANIFEST_SNAPSHOT_TAG, MANIFEST_TAG_PREFIX

if TYPE_CHECKING:
    from mlops_pipeline.data.storage import Storage
    from mlops_pipeline.deployment.tracking import MLflow
    from mlops_pipeline.spec import DatasetSpec


@dataclass(frozen=True)
class TrainingIdentity:
    """What decides a trained model, besides the seed: equal identities train the same model."""

    snapshot: str | None
    config: str | None
    contract: str | None
    code: str | None
    libraries: str | None


#: Each identity field's `manifest.*` run tag on a training run.
RUN_TAGS = {
    "snapshot": MANIFEST_SNAPSHOT_TAG,
    "config": MANIFEST_TAG_PREFIX + "config_fingerprint",
    "contract": MANIFEST_TAG_PREFIX + "contract_sha256",
    "code": MANIFEST_TAG_PREFIX + "code_sha256",
    "libraries": MANIFEST_TAG_PREFIX + "uv_lock_sha256",
}


def identity_now(spec: DatasetSpec, storage: Storage, cache_rows: int) -> TrainingIdentity:
    """The identity a run would train with now; `snapshot` is None when nothing is landed.
    Only batches not indexed yet are read (`batch_index.landing_content_id`)."""
    from mlops_pipeline.data.batch_index import landing_content_id
    from mlops_pipeline.data.snapshots import LandingError
    from mlops_pipeline.spec import PROJECT_ROOT
    from mlops_pipeline.training.manifest import code_digest, file_sha256

    try:
        snapshot, _ = landing_content_id(storage.landing_glob(spec), spec.source.format, storage=storage,
                                         cache_rows=cache_rows)
    except LandingError:
        snapshot = None
    return TrainingIdentity(snapshot, spec.fingerprint(), file_sha256(spec.contract_path()), code_digest(),
                            file_sha256(PROJECT_ROOT / "uv.lock"))


def recorded_identity(run_tags: dict[str, str]) -> TrainingIdentity:
    """The identity a training run recorded in its `manifest.*` tags (None where it did not)."""
    return TrainingIdentity(**{name: (run_tags.get(tag) or None) for name, tag in RUN_TAGS.items()})


def differences(now: TrainingIdentity, then: TrainingIdentity) -> list[str]:
    """The identity fields that differ, or that either side does not know."""
    return [f.name for f in fields(TrainingIdentity)
            if getattr(now, f.name) is None or getattr(now, f.name) != getattr(then, f.name)]


@dataclass(frozen=True)
class SinceChampion:
    """A run's identity now against the champion's: which parts `changed` (empty: none)."""

    version: str
    snapshot: str | None
    changed: list[str]

    @property
    def reason(self) -> str | None:
        """The sentence a skipped run is reported with; None when something changed."""
        if self.changed:
            return None
        return (f"nothing changed since v{self.version} (snapshot {str(self.snapshot)[:12]}, same config, "
                "contract, training code and libraries): no new version")


def since_champion(spec: DatasetSpec, storage: Storage, mlflow: MLflow,
                   cache_rows: int) -> SinceChampion | None:
    """What changed since the champion was trained; None when there is no champion or its
    training run cannot be read."""
    champion = mlflow.version_by_alias(spec.name, CHAMPION)
    if champion is None:
        return None
    try:
        tags = mlflow.client().get_run(champion.run_id).data.tags
    except Exception:  # noqa: BLE001 - an unreadable run proves nothing: train
        return None
    now = identity_now(spec, storage, cache_rows)
    return SinceChampion(str(champion.version), now.snapshot, differences(now, recorded_identity(tags)))


def unchanged_since_champion(spec: DatasetSpec, storage: Storage, mlflow: MLflow,
                             cache_rows: int) -> str | None:
    """"nothing changed since vN (snapshot …)" when the champion was trained on the snapshot,
    config, contract, code and libraries a run would train on now; None when anything differs,
    there is no champion, or its training run cannot be read (then a run trains, as always)."""
    found = since_champion(spec, storage, mlflow, cache_rows)
    return None if found is None else found.reason
