"""gRPC status codes, as the simulator and the live runtime both record them."""

from __future__ import annotations

import enum


class StatusCode(enum.IntEnum):
    """The canonical gRPC status codes (same numbers as grpc.StatusCode)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @classmethod
    def parse(cls, text: str) -> StatusCode:
        """Accept `UNAVAILABLE`, `unavailable` or `14`; raise ValueError otherwise."""
        cleaned = text.strip()
        if cleaned.isascii() and cleaned.isdigit() and int(cleaned) in cls._value2member_map_:
            return cls(int(cleaned))
        try:
            return cls[cleaned.upper()]
        except KeyError:
            raise ValueError(f"unknown gRPC status {text!r}") from None


# What counts as the server failing, for breakers and outlier detection: not OK, not
# CANCELLED (a hedge the client called off), and not the caller's own mistakes.
SERVER_FAILURES = frozenset(
    {
        StatusCode.UNAVAILABLE,
        StatusCode.DEADLINE_EXCEEDED,
        StatusCode.INTERNAL,
        StatusCode.UNKNOWN,
        StatusCode.RESOURCE_EXHAUSTED,
        StatusCode.DATA_LOSS,
    }
)


class HealthStatus(enum.Enum):
    """grpc.health.v1 serving states; a probe that times out is TIMEOUT, never SERVING."""

    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    SERVICE_UNKNOWN = "SERVICE_UNKNOWN"
    UNREACHABLE = "UNREACHABLE"
    TIMEOUT = "TIMEOUT"

    @property
    def ok(self) -> bool:
        return self is HealthStatus.SERVING
