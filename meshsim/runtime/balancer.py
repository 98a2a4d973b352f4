"""The balancer actor: owns endpoint state for one client and service, publishes pickers."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import attrs
import trio

from meshsim.core.endpoint import Endpoint
from meshsim.core.events import EndpointEjected, EndpointReturned, HealthChanged, MembershipChanged, PanicChanged
from meshsim.core.ewma import PeakEwma
from meshsim.core.health import HealthConfig, HealthTracker
from meshsim.core.outlier import Ejection, OutlierConfig, OutlierDetector
from meshsim.core.pickers import REGISTERED, BalancerConfig, Picker, build_picker
from meshsim.core.status import HealthStatus, StatusCode
from meshsim.runtime.actor import Mailbox
from meshsim.runtime.observer import Observer


@attrs.frozen
class HealthProbed:
    """Message: a health probe of `endpoint` came back with `status`."""

    endpoint: str
    status: HealthStatus


@attrs.frozen
class HealthReported:
    """Message: the endpoint pushed a serving status (a Watch update): no thresholds apply."""

    endpoint: str
    status: HealthStatus


@attrs.frozen
class SweepOutliers:
    """Message: an outlier-detection interval has passed."""


@attrs.frozen
class EndpointsResolved:
    """Message: discovery says these are the endpoints now (in the order it found them)."""

    endpoints: tuple[str, ...]


BalancerMessage = HealthProbed | HealthReported | SweepOutliers | EndpointsResolved


class Balancer:
    """Control plane in the mailbox, data plane in `picker`.

    Calls read `self.picker` synchronously; every change to which endpoints are
    pickable (a health verdict, an ejection, a return) publishes a new picker.
    Call outcomes arrive through `record_outcome`, synchronously from the call path,
    the way A50's per-endpoint call counters are bumped by the data plane; only
    verdicts drawn from them change state.
    """

    def __init__(
        self,
        name: str,
        client: str,
        service: str,
        config: BalancerConfig,
        health: HealthConfig,
        endpoints: Sequence[Endpoint],
        rng: random.Random,
        observer: Observer,
        outlier: OutlierConfig | None = None,
        now: Callable[[], float] = trio.current_time,
        outlier_rng: random.Random | None = None,
    ) -> None:
        """`rng` is the picker's stream; `outlier_rng` outlier detection's (the picker's when not given)."""
        self.name = name
        self.client = client
        self.service = service
        self.config = config
        self.endpoints = tuple(endpoints)
        self._by_name = {e.name: e for e in self.endpoints}
        self._health = health
        # Without health checks a replica is in rotation from the start: nothing would ever put it in.
        self._start_healthy = health.initial_healthy or not health.enabled
        self._trackers = {e.name: self._tracker() for e in self.endpoints}
        # Endpoints that have not answered a first check (counted, not scanned: it is asked per verdict).
        self._unchecked = 0 if self._start_healthy else len(self.endpoints)
        self._schedule: Callable[[Callable[[], None]], object] | None = None
        self._publish_due = False
        for endpoint in self.endpoints:
            endpoint.healthy = self._start_healthy
        # Calls that found no usable endpoint while some are not yet checked (gRPC's CONNECTING):
        # they wait for the first verdicts instead of failing.
        self._waiting: list[Callable[[], None]] = []
        self._waiting_for_all: list[Callable[[], None]] = []
        self.warming = False
        self._next_index = max((e.index for e in self.endpoints), default=-1) + 1
        self._rng = rng
        self._observer = observer
        # Trio's clock, or a reading of it that also works outside Trio (a live proxy's call path
        # runs on its host loop and reports outcomes from there).
        self.now = now
        self.outlier = (
            None
            if outlier is None
            else OutlierDetector(
                outlier, [e.name for e in self.endpoints], outlier_rng if outlier_rng is not None else rng
            )
        )
        self.panic = False
        # A policy that reads latency estimates gets them kept for every endpoint.
        self._keeps_latency = REGISTERED[config.policy].latency
        if self._keeps_latency:
            start = now()
            for endpoint in self.endpoints:
                endpoint.latency = PeakEwma(config.ewma, start)
        self.mailbox: Mailbox[BalancerMessage] = Mailbox()
        self.picker: Picker = build_picker(config, self.pickable(), rng, self.now, self.endpoints)
        self.warming = not self._start_healthy and bool(self.endpoints)

    def _tracker(self) -> HealthTracker:
        return HealthTracker(self._health, healthy=self._start_healthy, checked=self._start_healthy)

    def wait_for_picker(self, resume: Callable[[], None]) -> None:
        """A call found no usable endpoint while the balancer is `warming`: `resume()` is called
        once a picker with an endpoint is published, or once every endpoint has been checked and
        none passed (then the call fails as it would have)."""
        self._waiting.append(resume)

    def when_all_checked(self, checked: Callable[[], None]) -> None:
        """`checked()` once every endpoint has answered a first check (at once if they have), as
        Envoy initialises a cluster only after the first round of health checks."""
        if self.all_checked:
            checked()
        else:
            self._waiting_for_all.append(checked)

    @property
    def all_checked(self) -> bool:
        return self._unchecked == 0

    def usable(self, endpoint: Endpoint) -> bool:
        ejected = self.outlier is not None and self.outlier.is_ejected(endpoint.name)
        return endpoint.healthy and endpoint.weight > 0 and not ejected

    def pickable(self) -> list[Endpoint]:
        usable = [e for e in self.endpoints if self.usable(e)]
        threshold = self.config.panic_threshold
        panic = threshold > 0 and len(usable) * 100.0 < threshold * len(self.endpoints)
        if panic != self.panic:
            self.panic = panic
            self._observer.emit(PanicChanged(self.now(), self.client, self.service, panic))
        if panic:
            # Envoy's panic mode: too few usable endpoints, so spread over all of them.
            return [e for e in self.endpoints if e.weight > 0]
        return usable

    def publish(self) -> None:
        pickable = self.pickable()
        self.picker = build_picker(self.config, pickable, self._rng, self.now, self.endpoints)
        # As gRPC's channel: CONNECTING (picks wait) while no replica is usable and some have not yet
        # answered a first check; TRANSIENT_FAILURE (calls fail fast) once all have, and failed.
        self.warming = not pickable and self._unchecked > 0
        if self._waiting and not self.warming:
            waiting, self._waiting = self._waiting, []
            for resume in waiting:
                resume()

    def handle(self, message: BalancerMessage) -> None:
        if isinstance(message, SweepOutliers):
            self._sweep()
            return
        if isinstance(message, EndpointsResolved):
            self._resolved(message.endpoints)
            return
        self._on_health(message.endpoint, message.status, pushed=isinstance(message, HealthReported))

    def health_probed(self, endpoint: str, status: HealthStatus) -> None:
        """A health probe of `endpoint` came back (HealthProbed, without the mailbox)."""
        self._on_health(endpoint, status, pushed=False)

    def health_reported(self, endpoint: str, status: HealthStatus) -> None:
        """`endpoint` pushed a serving status (HealthReported, without the mailbox)."""
        self._on_health(endpoint, status, pushed=True)

    def publish_later(self, schedule: Callable[[Callable[[], None]], object]) -> None:
        """Health verdicts publish through `schedule(fn)` (fn runs later at the same instant), once
        however many verdicts came meanwhile: a thousand replicas passing their first check together
        then build one picker, not a thousand pickers of up to a thousand endpoints each."""
        self._schedule = schedule

    def _publish_health(self) -> None:
        if self._schedule is None:
            self.publish()
        elif not self._publish_due:
            self._publish_due = True
            self._schedule(self._publish_scheduled)

    def _publish_scheduled(self) -> None:
        self._publish_due = False
        self.publish()

    def _on_health(self, name: str, status: HealthStatus, pushed: bool) -> None:
        endpoint = self._by_name.get(name)
        if endpoint is None:
            return  # a probe of an endpoint discovery has since removed
        tracker = self._trackers[endpoint.name]
        first = not tracker.checked
        verdict = tracker.report(status) if pushed else tracker.observe(status)
        if first:
            self._unchecked -= 1
        if first and self._waiting_for_all and self.all_checked:
            waiting, self._waiting_for_all = self._waiting_for_all, []
            for checked in waiting:
                checked()
        if verdict is None:
            if first and self.warming:
                self._publish_health()  # one fewer to wait for: all checked and failed ends the warming
            return
        endpoint.healthy = verdict
        self._observer.emit(HealthChanged(self.now(), self.client, endpoint.name, verdict, status))
        self._publish_health()

    def record_outcome(self, endpoint: Endpoint, status: StatusCode, rtt: float, now: float) -> None:
        """An attempt on `endpoint` ended (called by the call path)."""
        if endpoint.latency is not None and status is not StatusCode.CANCELLED:
            endpoint.latency.observe(rtt, now)
        if self.outlier is not None and status is not StatusCode.CANCELLED:
            ejection = self.outlier.record(endpoint.name, status, now)
            if ejection is not None:
                self._ejected([ejection], now)
                self.publish()

    def _resolved(self, names: tuple[str, ...]) -> None:
        """Take discovery's endpoint list: new endpoints join (healthy, as at start), removed ones
        leave the picker at once; calls already on them finish where they are."""
        unique = tuple(dict.fromkeys(names))
        added = tuple(n for n in unique if n not in self._by_name)
        removed = tuple(e.name for e in self.endpoints if e.name not in unique)
        if not added and not removed:
            return
        kept = {e.name: e for e in self.endpoints if e.name in unique}
        start = self.now()
        for name in added:
            endpoint = Endpoint(name, index=self._next_index)
            self._next_index += 1
            if self._keeps_latency:
                endpoint.latency = PeakEwma(self.config.ewma, start)
            endpoint.healthy = self._start_healthy
            kept[name] = endpoint
            self._trackers[name] = self._tracker()
            self._unchecked += not self._start_healthy
        for name in removed:
            self._unchecked -= not self._trackers.pop(name).checked
        self.endpoints = tuple(kept[n] for n in unique)
        self._by_name = {e.name: e for e in self.endpoints}
        if self.outlier is not None:
            self.outlier.track(unique)
        self._observer.emit(MembershipChanged(self.now(), self.client, added, removed))
        self.publish()

    def endpoint(self, name: str) -> Endpoint | None:
        return self._by_name.get(name)

    def _sweep(self) -> None:
        assert self.outlier is not None
        now = self.now()
        ejections, returned = self.outlier.sweep(now)
        self._ejected(ejections, now)
        for name in returned:
            self._observer.emit(EndpointReturned(now, self.client, name))
        if ejections or returned:
            self.publish()

    def _ejected(self, ejections: list[Ejection], now: float) -> None:
        for ejection in ejections:
            self._observer.emit(
                EndpointEjected(now, self.client, ejection.endpoint, ejection.detector, ejection.duration)
            )

    async def run(self) -> None:
        while True:
            self.handle(await self.mailbox.receive())


class OutlierSweeper:
    """Tells a balancer each time an outlier-detection interval has passed."""

    def __init__(self, name: str, interval: float, balancer: Mailbox[BalancerMessage]) -> None:
        self.name = name
        self._interval = interval
        self._balancer = balancer

    async def run(self) -> None:
        while True:
            await trio.sleep(self._interval)
            await self._balancer.send(SweepOutliers())
