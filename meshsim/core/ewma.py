"""Peak-EWMA latency estimates (Finagle, Linkerd): quick to rise, slow to forget."""

from __future__ import annotations

import math

import attrs


@attrs.frozen
class PeakEwmaConfig:
    """`decay` is the time constant of the moving average; `default_rtt` the estimate
    an endpoint starts with before its first answer (Linkerd's default is 30 ms)."""

    decay: float = 10.0
    default_rtt: float = 0.030


class PeakEwma:
    """A latency estimate that jumps to any sample above its last recorded value and
    otherwise moves toward recent samples, and reads as decaying toward zero while idle,
    with time constant `decay` (the update rule of Finagle's and tower's PeakEwma)."""

    __slots__ = ("_decay", "_estimate", "_stamp")

    def __init__(self, config: PeakEwmaConfig, now: float) -> None:
        self._decay = config.decay
        self._estimate = config.default_rtt
        self._stamp = now

    def estimate(self, now: float) -> float:
        elapsed = now - self._stamp
        if elapsed <= 0:
            return self._estimate
        return self._estimate * math.exp(-elapsed / self._decay)

    def observe(self, rtt: float, now: float) -> None:
        if rtt > self._estimate:
            self._estimate = rtt
        else:
            weight = math.exp(-max(0.0, now - self._stamp) / self._decay)
            self._estimate = self._estimate * weight + rtt * (1.0 - weight)
        self._stamp = now
