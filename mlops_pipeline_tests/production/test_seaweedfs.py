"""Two test runs can share a machine: two SeaweedFS servers side by side, each listening only on
the free loopback ports it was given (no fixed Iceberg or Lance port), both serving S3."""

from __future__ import annotations

import psutil

from mlops_pipeline_tests.production.conftest import BUCKET, LOOPBACK, SeaweedFS


def _listeners(pid: int) -> set[tuple[str, int]]:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {(c.laddr.ip, c.laddr.port) for p in procs for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN}


def test_two_seaweedfs_servers_run_side_by_side_on_their_own_ports(tmp_path):
    first, second = SeaweedFS(tmp_path / "a"), SeaweedFS(tmp_path / "b")
    try:
        first.start()
        second.start()
        for s3 in (first, second):
            s3.client().put_object(Bucket=BUCKET, Key="side-by-side", Body=s3.endpoint.encode())
            body = s3.client().get_object(Bucket=BUCKET, Key="side-by-side")["Body"].read()
            assert body == s3.endpoint.encode()
            given = {port + offset for port in s3.ports.values() for offset in (0, 10000)}
            listening = _listeners(s3.proc.pid)
            assert listening, "the server lists no listener"
            assert {ip for ip, _ in listening} == {LOOPBACK}
            assert {port for _, port in listening} <= given, sorted(listening)
        assert not set(first.ports.values()) & set(second.ports.values())
    finally:
        first.stop()
        second.stop()
