"""deploy/grafana stays in step with deploy/prometheus and the serving metrics: every query of the
dashboard names recording rules or metrics that exist, every recording rule is on the dashboard,
and the files carry what Grafana's file provisioning needs."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from mlops_pipeline.spec import PROJECT_ROOT

GRAFANA = PROJECT_ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "mlops.json"
RECORDING = PROJECT_ROOT / "deploy" / "prometheus" / "rules" / "recording.yml"
# PromQL words that look like names: functions, aggregations, keywords.
PROMQL = {"sum", "max", "min", "count", "avg", "by", "without", "rate", "increase", "scalar", "on",
          "histogram_quantile", "label_values", "or", "and", "unless", "group_left", "ignoring", "bool"}
PROMETHEUS_OWN = {"up"}  # written by Prometheus for every target


def _recording_rules() -> set[str]:
    groups = yaml.safe_load(RECORDING.read_text())["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}


def _serving_metrics() -> set[str]:
    """Every series name the serving process can expose (ServingMetrics' families and suffixes)."""
    from mlops_pipeline.serving.metrics import ServingMetrics

    names: set[str] = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    for family in ServingMetrics().registry.collect():
        names.update(family.name + s for s in suffixes[family.type])
    return names


def _panels(panels: list[dict]) -> list[dict]:
    out = []
    for p in panels:
        out.append(p)
        out += _panels(p.get("panels", []))
    return out


def _names(expr: str) -> set[str]:
    """The metric and rule names in a PromQL expression (label matchers, strings, ranges and
    Grafana's $variables removed)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\$\w+", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL and not re.fullmatch(r"e\d*", w)}


def test_every_dashboard_query_names_a_rule_or_metric_that_exists() -> None:
    dash = json.loads(DASHBOARD.read_text())
    known = _recording_rules() | _serving_metrics() | PROMETHEUS_OWN
    used: set[str] = set()
    queries = 0
    for panel in _panels(dash["panels"]):
        for target in panel.get("targets", []):
            names = _names(target["expr"])
            assert names, (panel["title"], target["expr"])
            unknown = names - known
            assert not unknown, f"panel {panel['title']!r} queries {sorted(unknown)}, which nothing records"
            used |= names
            queries += 1
    assert queries >= 15
    # ... and the board is built on the recording rules: every one of them is on it.
    assert _recording_rules() - used == set()


def test_the_dashboard_parser_sees_names_and_rejects_made_up_ones() -> None:
    expr = 'max by (model_version) (mlops:scoring_latency_seconds:p99{job=~"$job", role="canary"})'
    assert _names(expr) == {"mlops:scoring_latency_seconds:p99"}
    assert _names("sum(rate(mlops_made_up_total[5m]))") - (_recording_rules() | _serving_metrics()) == {
        "mlops_made_up_total"}


def _provisioned_datasource() -> dict[str, Any]:
    spec = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert spec["apiVersion"] == 1
    (ds,) = spec["datasources"]
    assert ds["type"] == "prometheus" and ds["url"].startswith("http") and ds["access"] == "proxy"
    return ds


def test_the_files_have_what_grafana_provisioning_needs() -> None:
    ds = _provisioned_datasource()
    spec = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mlops.yml").read_text())
    assert spec["apiVersion"] == 1
    (provider,) = spec["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] and provider["name"]

    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    assert "id" not in dash or dash["id"] is None  # provisioning assigns ids; a fixed one collides
    panels = _panels(dash["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        assert p["type"] and p["title"], p
        grid = p["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys() and grid["x"] + grid["w"] <= 24, p["title"]
        for target in p.get("targets", []):
            assert target["refId"] and target["expr"], p["title"]
            # every query goes to the provisioned datasource, by uid (names may be renamed)
            assert target["datasource"]["uid"] == ds["uid"], p["title"]
        if p.get("targets"):
            assert p["datasource"]["uid"] == ds["uid"], p["title"]
    for var in dash["templating"]["list"]:
        assert var["datasource"]["uid"] == ds["uid"]
    # the on-call view: latency, errors, traffic, cost and canary vs champion are all there
    titles = " ".join(p["title"].lower() for p in panels)
    for word in ("latency", "error", "requests", "cost", "canary"):
        assert word in titles, word


def test_the_dashboard_opens_with_the_verdict_row_and_who_is_paged() -> None:
    """The same first line as the monitoring board: the verdict (mlops:verdict:level, its values
    mapped to words and the command) and the owner, on top, from rules promtool checks
    (mlops_pipeline_tests/deploy/alerts_test.yml tests mlops:verdict:level: 0 healthy, 2 a slow canary)."""
    dash = json.loads(DASHBOARD.read_text())
    row, verdict, owner = dash["panels"][:3]
    assert row["type"] == "row" and row["title"].startswith("Verdict") and row["gridPos"]["y"] == 0
    assert all(p["gridPos"]["y"] > 4 for p in dash["panels"][3:])  # everything else below it
    assert _names(verdict["targets"][0]["expr"]) == {"mlops:verdict:level"} <= _recording_rules()
    words = verdict["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert words["0"]["text"].startswith("OK") and "mlops-pipeline rollback" in words["2"]["text"]
    assert _names(owner["targets"][0]["expr"]) == {"mlops:model_owner:info"} <= _recording_rules()
    assert "{{owner}}" in owner["targets"][0]["legendFormat"]
