"""The `meshsim live` config: where the proxy listens, the replicas behind it, and the mesh policies.

It uses the scenario file's vocabulary ([balancer], [health]) so that a policy tried
in the simulator is copied into the proxy unchanged.

    [proxy]
    listen = "127.0.0.1:50050"
    service = "mesh.v1.MeshService"
    endpoints = ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]

    [balancer]
    policy = "least_connections"

    [health]
    interval = "1s"
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import attrs

from meshsim.core.health import HealthConfig
from meshsim.core.pickers import BalancerConfig
from meshsim.core.scenario import ScenarioError
from meshsim.core.scenario_loader import Table, read_balancer, read_health


@attrs.frozen
class LiveConfig:
    listen: str
    service: str
    endpoints: tuple[str, ...]
    balancer: BalancerConfig
    health: HealthConfig


def load_live_config(path: str | Path) -> LiveConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"{path}: cannot read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from None
    top = Table(path, data)
    proxy = top.table("proxy")
    listen = proxy.string("listen", "127.0.0.1:50050")
    if ":" not in listen:
        proxy.fail("listen", f'expected "host:port", got {listen!r}')
    service = proxy.string("service", "mesh.v1.MeshService")
    raw = proxy.raw("endpoints")
    if not isinstance(raw, list) or not raw or not all(isinstance(e, str) and ":" in e for e in raw):
        proxy.fail("endpoints", f'expected a non-empty array of "host:port" strings, got {raw!r}')
    proxy.done()
    config = LiveConfig(
        listen=listen,
        service=service,
        endpoints=tuple(raw),
        balancer=read_balancer(top.table("balancer", None)),
        health=read_health(top.table("health", None)),
    )
    top.done()
    return config
