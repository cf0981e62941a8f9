"""The model card: the short Markdown a person reads as a version's description in MLflow.

Generated when a version is registered (`assets.registry.model_version`), from what the loop knows
at that moment: what the model predicts, the snapshot and period it was trained on, its holdout
metrics next to the champion's on the same rows, the gate's verdict, and the intended use and known
limits written in the dataset config. The searchable facts stay tags (snapshot id, git SHA, gate
status, run id); the full run manifest stays the run's `manifest.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops_pipeline.deployment.gate import GateResult
from mlops_pipeline.spec import DatasetSpec
from mlops_pipeline.training.metrics import COST_METRIC


@dataclass(frozen=True)
class CardFacts:
    """The card's facts beyond the spec and the gate verdict; `model_version` gathers them at registration."""

    version: str
    run_id: str
    snapshot_id: str
    snapshot_rows: int | None
    period: tuple[str, str] | None
    train_rows: int | None
    holdout_rows: int | None
    git_sha: str
    git_dirty: bool | None


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def predicts(spec: DatasetSpec) -> str:
    """One line: what the model predicts, from the config's `description` or its target."""
    if spec.description:
        return " ".join(spec.description.split())
    how = f" (`{spec.target.expression}`)" if spec.target.expression else ""
    kind = "class" if spec.task == "classification" else "value"
    return f"the {kind} of `{spec.target.name}`{how} from {len(spec.features.columns)} features"


def model_card(spec: DatasetSpec, facts: CardFacts, verdict: GateResult) -> str:
    """The Markdown card (a few hundred words at most; MLflow shows it on the version's page)."""
    champion = verdict.champion_version
    lines = [
        f"# {spec.name} v{facts.version}",
        "",
        f"**Predicts:** {predicts(spec).rstrip('.')}.",
        "",
        f"**Owner:** {spec.owner or 'not stated in the dataset config'} (trains it, is paged when it "
        "regresses)" + (f"; runbook: {spec.runbook_url}" if spec.runbook_url else "") + ".",
        "",
        "## Training data",
        f"- Snapshot `{facts.snapshot_id}`"
        + (f", {facts.snapshot_rows:,} rows" if facts.snapshot_rows is not None else ""),
    ]
    if facts.period:
        lines.append(f"- Period: {facts.period[0]} to {facts.period[1]} (`{spec.time_column}`)")
    if facts.train_rows is not None:
        lines.append(f"- Split ({spec.split_strategy}): {facts.train_rows:,} train rows, "
                     f"{facts.holdout_rows:,} holdout rows")
    dirty = {True: " (dirty tree)", False: "", None: " (dirty: unknown)"}[facts.git_dirty]
    lines += [f"- Code: git `{facts.git_sha[:12]}`{dirty}; MLflow run `{facts.run_id}`", "",
              "## Holdout metrics",
              f"| metric | v{facts.version} | {'champion v' + champion if champion else 'champion'}"
              " | limit | passed |",
              "|---|---|---|---|---|"]
    for v in verdict.verdicts:
        unit = " (CPU s / 1k rows)" if v.metric == COST_METRIC else ""
        lines.append(f"| {v.metric}{unit} | {_num(v.candidate)} | {_num(v.champion)} | "
                     f"{_num(v.limit if v.limit is not None else v.floor)} | "
                     f"{'yes' if v.passed else 'no'} |")
    status = "passed" if verdict.passed else "failed"
    against = f" against champion v{champion}" if champion else " (no champion yet: floors only)"
    lines += ["", f"**Gate:** {status}{against}."]
    lines += [f"- {reason}" for reason in verdict.failures()]
    if verdict.segments is not None:  # `deployment.segments`: the groups that fared worst
        lines += ["", f"## Worst segments ({verdict.segments.metric}, against champion v{champion})",
                  verdict.segments.markdown(limit=5)]
    lines += ["", "## Intended use",
              " ".join((spec.intended_use or "Not stated in the dataset config.").split()), "",
              "## Known limits",
              " ".join((spec.limitations or "Not stated in the dataset config.").split())]
    return "\n".join(lines) + "\n"


def external_card(spec: DatasetSpec, title: str, run_id: str | None, verdict: GateResult,
                  holdout_snapshot: str) -> str:
    """The card of a version trained outside the loop (`origin=external`, set by `promote`): the
    gate's verdict on the champion's holdout, and what the loop cannot know instead of its facts."""
    unknown = ("Unknown: trained outside the loop (`origin=external`). No snapshot and no run "
               "manifest: which rows it saw, its code, seed and environment are not on record, so "
               "`mlops-pipeline reproduce` cannot rebuild it.")
    facts = CardFacts(title.rsplit(" v", 1)[-1], run_id or "unknown", "", None, None, None, None,
                      "unknown", None)
    card = model_card(spec, facts, verdict).splitlines()
    start = card.index("## Training data") + 1
    end = card.index("## Holdout metrics")
    gated = (f"- Gated on the champion's holdout (snapshot `{holdout_snapshot}`, rows the champion "
             "never trained on); whether this model saw them is unknown.")
    body = [unknown, gated, f"- MLflow run `{run_id or 'unknown'}`", ""]
    return "\n".join([f"# {title}", *card[1:start], *body, *card[end:]]) + "\n"
