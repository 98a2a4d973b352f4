"""Interop with a gRPC implementation we did not write: a Node.js grpc-js client through `meshsim live`.

The Node packages are pinned in interop/node/package-lock.json and installed by this
test (`npm ci`) when they are missing, so the test command needs nothing by hand.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

NODE_DIR = ROOT / "interop" / "node"


@pytest.fixture(scope="module")
def node_client() -> list[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "the Node interop test needs node and npm on PATH"
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True, timeout=300
        )
    return [node, str(NODE_DIR / "client.js")]


@pytest.mark.slow
def test_node_client_runs_every_pattern_and_a_health_check_through_the_proxy(
    node_client: list[str], proxy: str
) -> None:
    result = subprocess.run([*node_client, proxy], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert answers == {
        "unary": "processed 5 bytes",
        "server_stream": [0, 1, 2],
        "client_stream": 9,
        "bidi": ["echo: Message 0", "echo: Message 1", "echo: Message 2"],
        "health": 1,  # SERVING
    }
