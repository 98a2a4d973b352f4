"""A small real mesh for tests: `meshsim serve` replicas behind `meshsim live`, both with admin endpoints."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs

from tests.conftest import serve_replicas, start, stop

# Health checks fast enough that a test sees a replica leave and come back within a second.
FAST_HEALTH = """\
[health]
interval = "200ms"
timeout = "150ms"
unhealthy_threshold = 1
healthy_threshold = 1
"""


@attrs.frozen
class Mesh:
    proxy: str  # the proxy's gRPC address
    proxy_admin: str  # http://host:port
    serve_admin: str
    replicas: tuple[str, ...]  # api/0, api/1, ...'s addresses


def admin_url(process: subprocess.Popen[str]) -> str:
    """Where a process that has just started says its admin endpoint is (http://host:port)."""
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        assert line, "the process ended before it said where its admin endpoint is"
        if line.startswith("metrics on "):
            return line.removeprefix("metrics on ").strip().removesuffix("/metrics")


@contextlib.contextmanager
def running_mesh(directory: Path, tables: str, *serve_options: str, replicas: int = 3) -> Iterator[Mesh]:
    """`replicas` replicas (`meshsim serve --admin`, with `serve_options`) behind a proxy whose config
    has `tables` (TOML: [health], [retry], ...) besides its listener, endpoints and admin endpoint."""
    serve, addresses = serve_replicas(replicas, "--admin", "127.0.0.1:0", *serve_options)
    live = None
    try:
        serve_admin = admin_url(serve)
        config = directory / "mesh.toml"
        endpoints = ", ".join(f'"{address}"' for address in addresses)
        config.write_text(
            f'[proxy]\nlisten = "127.0.0.1:0"\nservice = "mesh.v1.MeshService"\nendpoints = [{endpoints}]\n\n'
            f'{tables}\n[metrics]\nlisten = "127.0.0.1:0"\n',
            encoding="utf-8",
        )
        live = start("live", str(config))
        assert live.stdout is not None
        proxy = live.stdout.readline().split(" on ")[1].split(" to ")[0]
        yield Mesh(proxy, admin_url(live), serve_admin, tuple(addresses))
    finally:
        for process in (live, serve):
            if process is not None:
                stop(process)
