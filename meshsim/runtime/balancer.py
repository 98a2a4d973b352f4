"""The balancer actor: owns endpoint state for one client and service, publishes pickers."""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs
import trio

from meshsim.core.endpoint import Endpoint
from meshsim.core.events import HealthChanged
from meshsim.core.health import HealthConfig, HealthTracker
from meshsim.core.pickers import BalancerConfig, Picker, build_picker
from meshsim.core.status import HealthStatus
from meshsim.runtime.actor import Mailbox
from meshsim.runtime.observer import Observer


@attrs.frozen
class HealthProbed:
    """Message: a health probe of `endpoint` came back with `status`."""

    endpoint: str
    status: HealthStatus


BalancerMessage = HealthProbed


class Balancer:
    """Control plane in the mailbox, data plane in `picker`.

    Calls read `self.picker` synchronously; every message that changes which
    endpoints are pickable publishes a new picker.
    """

    def __init__(
        self,
        name: str,
        client: str,
        config: BalancerConfig,
        health: HealthConfig,
        endpoints: Sequence[Endpoint],
        rng: random.Random,
        observer: Observer,
    ) -> None:
        self.name = name
        self.client = client
        self.config = config
        self.endpoints = tuple(endpoints)
        self._by_name = {e.name: e for e in self.endpoints}
        self._trackers = {e.name: HealthTracker(health) for e in self.endpoints}
        self._rng = rng
        self._observer = observer
        self.mailbox: Mailbox[BalancerMessage] = Mailbox()
        self.picker: Picker = build_picker(config, self.pickable(), rng)

    def pickable(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.healthy and e.weight > 0]

    def publish(self) -> None:
        self.picker = build_picker(self.config, self.pickable(), self._rng)

    def handle(self, message: BalancerMessage) -> None:
        endpoint = self._by_name[message.endpoint]
        verdict = self._trackers[endpoint.name].observe(message.status)
        if verdict is None:
            return
        endpoint.healthy = verdict
        self._observer.emit(HealthChanged(trio.current_time(), self.client, endpoint.name, verdict, message.status))
        self.publish()

    async def run(self) -> None:
        while True:
            self.handle(await self.mailbox.receive())
