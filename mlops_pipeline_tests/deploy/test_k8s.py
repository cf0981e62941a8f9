"""From one machine to many: the Kubernetes manifests, the Helm values for Dagster's chart, the
Prometheus scrape config by pod annotation and the HAProxy config are valid, and agree with the
files they stand in for (the Dockerfiles, deploy/dagster.yaml, the production env list, the
serving routes). There is no cluster and no helm binary here: the manifests are checked against the
Kubernetes API schemas (kubernetes-validate, bundled), the HAProxy config by `haproxy -c`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_pipeline.spec import PROJECT_ROOT
from mlops_pipeline_tests.conftest import skip_or_fail

DEPLOY = PROJECT_ROOT / "deploy"
K8S = DEPLOY / "k8s"
MANIFESTS = [K8S / "serving.yaml", K8S / "config.example.yaml"]
KUBERNETES_VERSION = "1.30.0"  # the oldest minor still in upstream support when this was written


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for p in MANIFESTS for d in _docs(p)}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_api_schemas(path: Path) -> None:
    import kubernetes_validate

    docs = _docs(path)
    assert docs, f"{path} holds no manifest"
    errors = []
    for doc in docs:
        # strict: a misspelt field (readinesProbe) is an error, not silently ignored by the API
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {str(exc)[:300]}")
    assert errors == []


def test_strict_validation_catches_a_misspelt_field() -> None:
    import kubernetes_validate

    deployment = _objects()[("Deployment", "mlops-serving")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def _serving_source() -> str:
    return "\n".join(p.read_text() for p in (PROJECT_ROOT / "mlops_pipeline" / "serving").glob("*.py"))


def test_serving_probes_ports_and_scaling_match_the_server_and_its_image() -> None:
    objects = _objects()
    deployment = objects[("Deployment", "mlops-serving")]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    source = _serving_source()
    # Readiness is the yes/no of a loaded champion; liveness must not fail while MLflow is down.
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    for path in ("/ready", "/health", "/metrics"):
        assert f'"{path}"' in source, f"the server has no {path} route"
    port = container["ports"][0]["containerPort"]
    dockerfile = (DEPLOY / "Dockerfile.serving").read_text()
    assert f"EXPOSE {port}" in dockerfile
    assert container["args"][container["args"].index("--port") + 1] == str(port)
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001  # the image's `mlops` user
    assert "--uid 10001" in dockerfile
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert objects[("Service", "mlops-serving")]["spec"]["selector"] == selector
    assert objects[("PodDisruptionBudget", "mlops-serving")]["spec"]["selector"]["matchLabels"] == selector
    hpa = objects[("HorizontalPodAutoscaler", "mlops-serving")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] >= 2  # a replica's death is never an outage


def _env_example() -> tuple[set[str], set[str]]:
    """deploy/production.env.example: (every variable, the ones marked SECRET: in a comment on
    their line, or in a comment line heading the block of variables they belong to)."""
    names, secrets = set(), set()
    block_secret = False
    for line in (DEPLOY / "production.env.example").read_text().splitlines():
        value, _, comment = line.partition("#")
        match = re.match(r"([A-Z][A-Z0-9_]+)=", value.strip())
        if not match:
            block_secret = "SECRET" in comment
            continue
        names.add(match.group(1))
        if block_secret or "SECRET" in comment:
            secrets.add(match.group(1))
    return names, secrets


def test_the_configmap_and_secret_hold_every_client_variable_and_secrets_only_in_the_secret() -> None:
    objects = _objects()
    config = set(objects[("ConfigMap", "mlops-pipeline-env")]["data"])
    secret = set(objects[("Secret", "mlops-pipeline-secrets")]["stringData"])
    names, secrets = _env_example()
    # The MLflow server's own block and DAGSTER_HOME (set by the chart) are not client settings.
    server_only = {n for n in names if n.startswith("MLFLOW_") and n != "MLFLOW_TRACKING_URI"
                   and not n.startswith("MLFLOW_HTTP_")} | {"DAGSTER_HOME"}
    assert secrets >= {"AWS_SECRET_ACCESS_KEY", "DAGSTER_PG_PASSWORD", "MLOPS_PREDICTIONS_URL"}
    missing = (names - server_only) - config - secret
    assert not missing, f"variables of production.env.example missing on Kubernetes: {sorted(missing)}"
    assert not (secrets & config), f"secrets in the ConfigMap: {sorted(secrets & config)}"
    serving = objects[("Deployment", "mlops-serving")]["spec"]["template"]["spec"]["containers"][0]
    refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in serving["env"]}
    assert refs <= secret and "AWS_SECRET_ACCESS_KEY" not in refs  # serving gets only its own


def test_the_helm_values_run_the_code_location_image_with_the_instance_limits() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "dagster-values.yaml").read_text())
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    dockerfile = (DEPLOY / "Dockerfile.code-location").read_text()
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("-m") + 1]
    assert f'"-m", "{module}"' in dockerfile  # the same code location the image serves
    assert f"EXPOSE {deployment['port']}" in dockerfile
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == instance["run_coordinator"]["class"]
    queued = coordinator["config"]["queuedRunCoordinator"]
    runs = instance["concurrency"]["runs"]
    assert queued["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert values["postgresql"]["enabled"] is False  # the existing `dagster` database
    names = {("ConfigMap", r["name"]) for r in deployment["envConfigMaps"]}
    names |= {("Secret", r["name"]) for r in deployment["envSecrets"]}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    names |= {("Secret", r["name"]) for r in launcher["envSecrets"]}
    assert names <= set(_objects()), f"values name objects that deploy/k8s does not ship: {names}"
    assert values["telemetry"]["enabled"] is False and instance["telemetry"]["enabled"] is False


def _relabel(config: list[dict[str, Any]], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus's relabelling (keep and replace, the actions used), on one target's labels."""
    labels = dict(labels)
    for rule in config:
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        if rule.get("action", "replace") == "keep":
            if not match:
                return None
            continue
        if match:
            replacement = rule.get("replacement", "$1")
            labels[rule["target_label"]] = match.expand(re.sub(r"\$(\d+)", r"\\g<\1>", replacement))
    return labels


def test_prometheus_finds_the_serving_pods_by_their_annotations() -> None:
    config = yaml.safe_load((K8S / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        assert (K8S / rule_file).resolve().is_file(), rule_file
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "mlops-serving"]
    pod = _objects()[("Deployment", "mlops-serving")]["spec"]["template"]["metadata"]
    meta = {"__address__": "10.1.2.3:8080", "__metrics_path__": "/metrics",
            "__meta_kubernetes_namespace": "mlops", "__meta_kubernetes_pod_name": "mlops-serving-abc"}
    meta |= {f"__meta_kubernetes_pod_annotation_{re.sub(r'[^a-z0-9]', '_', k)}": v
             for k, v in pod["annotations"].items()}
    meta |= {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-z0-9]', '_', k)}": v
             for k, v in pod["labels"].items()}
    target = _relabel(job["relabel_configs"], meta)
    assert target is not None
    assert target["__address__"] == f"10.1.2.3:{pod['annotations']['prometheus.io/port']}"
    assert target["__metrics_path__"] == "/metrics" and target["pod"] == "mlops-serving-abc"
    # The alerts select the job by name: the pods must land in it.
    alerts = (DEPLOY / "prometheus" / "rules" / "alerts.yml").read_text()
    assert f'job="{job["job_name"]}"' in alerts
    other = meta | {"__meta_kubernetes_pod_label_app_kubernetes_io_name": "something-else"}
    assert _relabel(job["relabel_configs"], other) is None


def test_haproxy_accepts_the_load_balancer_config_and_checks_readiness() -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        skip_or_fail("haproxy not installed (Debian: apt-get install haproxy)")
    assert haproxy is not None
    cfg = DEPLOY / "haproxy" / "haproxy.cfg"
    env = {"MLOPS_LB_BIND": "127.0.0.1:1", "MLOPS_REPLICA_1": "127.0.0.1:2",
           "MLOPS_REPLICA_2": "127.0.0.1:3", "MLOPS_LB_STATS": "127.0.0.1:4"}
    check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True,
                           env=env, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "option httpchk GET /ready" in cfg.read_text()
    broken = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True,
                            env={k: v for k, v in env.items() if k != "MLOPS_REPLICA_2"}, timeout=30)
    assert broken.returncode != 0  # an unset address is refused, not silently bound anywhere
