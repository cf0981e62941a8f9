"""The challenger on live traffic: shadow and canary analysed against the release policy.

Thin wiring over `mlops_pipeline.deployment.challenger`: read the rolling window of captured
traffic and the server's `/metrics`, analyse, and report a verdict per check as an asset check.
The `release_guard` sensor (automation.py) acts on the same analysis.
"""

import dagster as dg

from mlops_pipeline.defs.resources import DatasetResource
from mlops_pipeline.defs.resources.predictions import PredictionStoreResource
from mlops_pipeline.deployment.tracking import MLflow
from mlops_pipeline.monitoring.serving_process import ServingProcess

#: A failed SLO a client feels (slow or failing answers) is an ERROR; a challenger that answers
#: differently (shift, disagreement, worse quality) is a WARN: the guard removes it either way.
SEVERITY = {"latency": dg.AssetCheckSeverity.ERROR, "errors": dg.AssetCheckSeverity.ERROR,
            "shift": dg.AssetCheckSeverity.WARN, "agreement": dg.AssetCheckSeverity.WARN,
            "quality": dg.AssetCheckSeverity.WARN}
#: The asset check named for each policy check (unique across the code location).
CHECK_NAMES = {"latency": "canary_latency", "errors": "challenger_errors",
               "shift": "challenger_prediction_shift", "agreement": "shadow_agreement",
               "quality": "challenger_quality"}
DESCRIPTIONS = {
    "latency": "Canary p99 latency within the policy's ratio of the champion's (same window).",
    "errors": "Challenger error rate within the policy (the server's /metrics).",
    "shift": "Challenger's prediction distribution close to the champion's (PSI / Jensen-Shannon).",
    "agreement": "Shadow answers agree with the champion's on the same requests.",
    "quality": "On labelled requests, not worse than the champion beyond the gate's tolerance "
    "(bootstrap interval).",
}


@dg.asset(
    group_name="deployment",
    kinds={"python"},
    description="The challenger on live traffic (rolling window): per role requests, errors, "
    "latency p50/p95/p99, prediction distribution, shadow agreement, quality on labelled "
    "requests, and the release policy's verdict per check.",
    check_specs=[dg.AssetCheckSpec(CHECK_NAMES[name], asset="challenger_analysis", description=text)
                 for name, text in DESCRIPTIONS.items()],
)
def challenger_analysis(
    context: dg.AssetExecutionContext,
    dataset: DatasetResource,
    mlflow: dg.ResourceParam[MLflow],
    predictions: PredictionStoreResource,
    serving: dg.ResourceParam[ServingProcess],
) -> dg.MaterializeResult:
    """The current challenger's analysis reported: one check per release-policy check (passing, with
    the reason, when there is no challenger), the decision the guard would take, and the per-role
    numbers it rests on."""
    from mlops_pipeline.deployment import release
    from mlops_pipeline.deployment.challenger import analyse_challenger

    spec = dataset.spec()
    analysis = analyse_challenger(spec, mlflow, predictions.store(), serving.metrics_text())
    decision = release.decide(analysis, spec.release)
    verdicts = {v.check: v for v in analysis.verdicts}
    results = []
    for name in DESCRIPTIONS:
        v = verdicts.get(name)
        if v is None:
            results.append(dg.AssetCheckResult(check_name=CHECK_NAMES[name], passed=True,
                                               description="no challenger to judge"))
            continue
        status_text = {release.INSUFFICIENT: "not enough evidence yet", release.NA: "not applicable"}
        results.append(dg.AssetCheckResult(
            check_name=CHECK_NAMES[name], passed=v.status != release.FAIL, severity=SEVERITY[name],
            description=f"{status_text.get(v.status, v.status)}: {v.detail}"[:1000],
            metadata={"verdict": v.status, "threshold": v.threshold, "evidence": v.evidence,
                      "needed": v.needed, **({"value": float(v.value)} if v.value is not None else {})},
        ))
    rows = [dg.TableRecord({"check": v.check, "verdict": v.status,
                            "value": "" if v.value is None else f"{v.value:.4g}",
                            "threshold": v.threshold, "evidence": f"{v.evidence}/{v.needed}",
                            "detail": v.detail[:300]}) for v in analysis.verdicts]
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in
                                     ("check", "verdict", "value", "threshold", "evidence", "detail")])
    metadata = {
        "champion": f"v{analysis.champion_version}" if analysis.champion_version else "none",
        "challenger": f"v{analysis.challenger_version}" if analysis.challenger_version else "none",
        "window": f"{analysis.window_start:%Y-%m-%d %H:%M} to {analysis.window_end:%Y-%m-%d %H:%M} UTC",
        "decision": decision.action,
        "decision_reason": decision.reason[:1000],
        "verdict_table": dg.MetadataValue.table(rows, schema=schema),
        "verdicts": dg.MetadataValue.json([v.as_dict() for v in analysis.verdicts]),
        "roles": dg.MetadataValue.md(analysis.roles_table()),
        **{f"{r.role}_requests": r.requests for r in analysis.roles.values()},
    }
    if analysis.agreement is not None and analysis.agreement.records:
        metadata["shadow_shared_records"] = analysis.agreement.records
        if analysis.agreement.agreement is not None:
            metadata["shadow_agreement"] = float(analysis.agreement.agreement)
        if analysis.agreement.mean_abs_diff is not None:
            metadata["shadow_mean_abs_score_diff"] = float(analysis.agreement.mean_abs_diff)
    context.log.info("challenger analysis: %s (%s)", decision.action, decision.reason)
    return dg.MaterializeResult(metadata=metadata, check_results=results)
