"""The layer rule: core and runtime know nothing of grpc, asyncio or the wall clock."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "meshsim"

# What each layer may import from meshsim (besides itself).
ALLOWED = {
    "core": set(),
    "runtime": {"core"},
    "sim": {"core", "runtime"},
    "tls": {"core"},
    # The web dashboard and the HTML run report: figures from a registry or a report, no server.
    "dashboard": {"core"},
    # Seed sweeps: simulations on a local pool or a Dask cluster.
    "sweep": {"core", "sim"},
    "live": {"core", "runtime", "pb", "tls", "dashboard"},
    # The demo replicas (`meshsim serve`): servers, which callers never import.
    "demo": {"core", "live", "pb", "tls"},
    # A scenario played live: real replicas and callers, never the simulator.
    "stage": {"core", "runtime", "live", "pb"},
    "cli": {"core", "runtime", "sim", "live", "demo", "stage", "tls", "dashboard", "sweep"},
}
# Layers that must stay free of grpc, asyncio and the wall clock.
PURE = {"core", "runtime", "sim", "dashboard"}
FORBIDDEN_IN_PURE_LAYERS = {"grpc", "asyncio", "trio_asyncio", "time", "datetime"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_the_layers_below(layer: str) -> None:
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in imports_of(path):
            parts = name.split(".")
            if parts[0] == "meshsim" and len(parts) > 1 and parts[1] in {*ALLOWED, "pb"}:
                assert parts[1] in ALLOWED[layer] | {layer}, f"{path.relative_to(ROOT)} imports {name}"
            if layer in PURE:
                assert parts[0] not in FORBIDDEN_IN_PURE_LAYERS, f"{path.relative_to(ROOT)} imports {name}"


def test_the_caller_side_imports_no_demo_replica() -> None:
    """live (client, proxy) and runtime are the caller's side: the demo servers are not part of them."""
    for layer in ("live", "runtime"):
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            demo = {name for name in imports_of(path) if name == "meshsim.demo" or name.startswith("meshsim.demo.")}
            assert not demo, f"{path.relative_to(ROOT)} imports {', '.join(sorted(demo))}"


@pytest.mark.slow
def test_importing_the_caller_side_loads_no_demo_replica() -> None:
    code = (
        "import sys, pkgutil, importlib, meshsim\n"
        "for layer in ('live', 'runtime'):\n"
        "    package = importlib.import_module('meshsim.' + layer)\n"
        "    for info in pkgutil.walk_packages(package.__path__, 'meshsim.' + layer + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('meshsim.demo'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == ""


@pytest.mark.slow
def test_importing_core_runtime_and_sim_loads_neither_grpc_nor_asyncio() -> None:
    code = (
        "import sys, pkgutil, importlib, meshsim\n"
        "for layer in ('core', 'runtime', 'sim'):\n"
        "    package = importlib.import_module('meshsim.' + layer)\n"
        "    for info in pkgutil.walk_packages(package.__path__, 'meshsim.' + layer + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'asyncio', 'trio_asyncio'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == ""


@pytest.mark.slow
def test_the_top_level_names_load_live_mode_only_when_asked() -> None:
    code = (
        "import sys, meshsim\n"
        "assert 'grpc' not in sys.modules, 'import meshsim loaded grpc'\n"
        "from meshsim import GrpcClient, RetryPolicy, RpcError\n"
        "from meshsim.live import GrpcClient as Live\n"
        "assert GrpcClient is Live and 'grpc' in sys.modules\n"
        "print(RetryPolicy(max_attempts=3).max_attempts, RpcError.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "RpcError"]
