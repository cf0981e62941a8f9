"""What one asset of the loop hands the next: small records the IO manager stores between steps.

Each names where the data lives (a snapshot id, an MLflow run and model URI, a registered
version) instead of carrying it, so a step's output stays a few hundred bytes whatever the data
size. They live apart from the assets that make them so that no asset module imports another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlops_pipeline.deployment.gate import GateResult, evaluate_gate


@dataclass(frozen=True)
class SnapshotRef:
    """What downstream stages need to find a snapshot; the data stays in the store."""

    id: str
    path: str
    rows: int
    columns: int
    batches: int
    #: Per-batch check findings (`mlops_pipeline.data.batch_checks`), computed from the very
    #: frames this snapshot was built from: {check name: [Finding, ...]}.
    batch_findings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainedModel:
    """One training run: the logged model, its holdout metrics and what it was trained from."""

    run_id: str
    model_uri: str
    snapshot_id: str
    metrics: dict[str, float]
    seed: int
    manifest: dict = field(default_factory=dict)
    reference_uri: str = ""  # the drift reference: the train split scored by this model
    estimator_uri: str = ""  # the performance estimator fitted on the holdout (before labels)


@dataclass(frozen=True)
class CandidateVersion:
    """A registered candidate and the numbers the gate judges it on: its metrics and the
    champion's, on the same holdout."""

    name: str
    version: str
    run_id: str
    snapshot_id: str
    metrics: dict[str, float]
    champion_version: str | None
    champion_metrics: dict[str, float] | None
    #: Which holdout rows both were scored on, and how many were left out why (`ComparisonHoldout`).
    comparison: str = ""
    comparison_counts: dict[str, int] = field(default_factory=dict)
    #: Every segment judged against the champion (`deployment.segments.SegmentReport`), or None.
    segments: Any = None

    def gate(self, policy) -> GateResult:
        """THE gate on these numbers; `inference_cost` is among them when the spec's cost rule is
        on (measured for both versions in `model_version`, same step, same holdout), the
        per-segment verdict when the spec has segments."""
        return evaluate_gate(self.metrics, self.champion_metrics, policy, self.champion_version,
                             segments=self.segments)


@dataclass(frozen=True)
class ChampionRecord:
    """Who is champion after the loop's last step, and who was before (for rollback)."""

    name: str
    version: str
    previous_version: str | None
    snapshot_id: str
