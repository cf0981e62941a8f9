"""deploy/alertmanager: amtool accepts the shipped config, and every owner a shipped dataset config
names has a route of its own (an owner without one would page the default on-call). The end to
end page — real Prometheus, real Alertmanager, a real server's canary — is in test_prometheus.py,
which owns the module's serving stack."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from mlops_pipeline.spec import PROJECT_ROOT, load_spec
from mlops_pipeline_tests.conftest import skip_or_fail

CONFIG = PROJECT_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def test_amtool_accepts_the_shipped_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        skip_or_fail("amtool not installed (Debian: apt-get install prometheus-alertmanager)")
    assert amtool is not None
    out = subprocess.run([amtool, "check-config", str(CONFIG)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_shipped_owner_is_routed_to_a_receiver_of_its_own() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    receivers = {r["name"] for r in config["receivers"]}
    routes = {m: r["receiver"] for r in config["route"]["routes"] for m in r["matchers"]}
    owners = {load_spec(p).owner for p in sorted((PROJECT_ROOT / "data" / "configs").glob("*.yaml"))}
    assert owners and None not in owners, "every shipped dataset config names its owner"
    for owner in owners:
        receiver = routes.get(f'owner="{owner}"')
        assert receiver in receivers and receiver != config["route"]["receiver"], owner
    assert config["route"]["receiver"] in receivers  # no owner: the default on-call
    assert "owner" in config["route"]["group_by"]
