"""What `meshsim serve`'s admin endpoint shows: its replicas, its settings, and the faults on them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import prometheus_client

from meshsim.core.chaos import ChaosFault, FaultBoard
from meshsim.demo import chaos
from meshsim.live.chaos import fault_board

if TYPE_CHECKING:
    from meshsim.demo.server import Replica, ServeConfig


class ServeAdmin:
    """The admin source of one `meshsim serve` process (live/admin.py's AdminSource)."""

    def __init__(
        self, config: ServeConfig, replicas: Sequence[Replica], registry: prometheus_client.CollectorRegistry
    ) -> None:
        self.config = config
        self.replicas = list(replicas)
        self.registry = registry
        scope = chaos.scope([(r.name, r.address) for r in replicas], config.name)
        self.board: FaultBoard
        self.board, metrics = fault_board(scope, registry, self._apply, self._clear, "serve")

        def injected(kinds: list[str]) -> None:
            for kind in kinds:
                metrics.injected.labels(kind).inc()

        for replica in replicas:
            assert replica.servicer is not None
            replica.servicer.on_injected = injected

    def _targets(self, fault: ChaosFault) -> list[Replica]:
        if fault.target == self.config.name:
            return self.replicas
        return [r for r in self.replicas if fault.target in (r.name, r.address)]

    def _apply(self, fault: ChaosFault) -> None:
        for replica in self._targets(fault):
            replica.apply(fault)

    def _clear(self, fault: ChaosFault) -> None:
        for replica in self._targets(fault):
            replica.clear(fault)

    def ready(self) -> bool:
        return any(replica.serving for replica in self.replicas)

    def clusters(self) -> dict[str, Any]:
        active = self.board.active
        return {
            "service": self.config.name,
            "replicas": [
                {
                    "name": replica.name,
                    "address": replica.address,
                    "up": replica.up,
                    "serving": replica.serving,
                    "calls": 0 if replica.servicer is None else replica.servicer.calls,
                    "faults": [fault.id for fault in active if replica in self._targets(fault)],
                }
                for replica in self.replicas
            ],
        }

    def effective_config(self) -> dict[str, Any]:
        settings = attrs.asdict(self.config, filter=lambda field, _: field.name != "admin_token", recurse=True)
        settings["faults"]["error_status"] = self.config.faults.error_status.name
        settings["admin_token"] = "(set)" if self.config.admin_token else None
        return settings
