"""Why a replica cannot be reached, said once in words an operator acts on.

gRPC keeps trying a replica it cannot reach and tells only the calls, in details
written for its own developers ("failed to connect to all addresses; last error:
UNKNOWN: ipv4:...: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: ...
WRONG_VERSION_NUMBER"). A name that does not resolve, a port nobody listens on, or a
TLS setting that does not match the replica's would otherwise show only as "no
replica available". The health checks see each failure; this turns it into one log
line per replica and problem, and one more when the replica is reached again.
"""

from __future__ import annotations

import logging
import re

_log = logging.getLogger(__name__)

# The longest piece of gRPC's own words kept in a line.
_DETAILS = 160
_ADDRESS = re.compile(r"(?:ipv4|ipv6|unix):\S+?:\s")


def problem_of(details: str, secure: bool, reached_before: bool = False) -> str:
    """What gRPC's details of a failed connection mean, for a channel with TLS (`secure`) or without,
    to a replica that was (`reached_before`) or never was reached."""
    text = details.lower()
    if "errors resolving" in text or "domain name not found" in text or "dns resolution failed" in text:
        return "its name does not resolve"
    if "connection refused" in text:
        return "nothing listens on that port (connection refused)"
    if "wrong_version_number" in text:
        return "it does not speak TLS, and meshsim is set to (TLS to the replicas: use_tls, [mtls] upstream)"
    if "http1" in text or "http/1" in text:
        return "it answers HTTP/1, not gRPC"
    if "handshake" in text or "certificate" in text or "ssl_error" in text:
        return f"the TLS handshake failed: {_short(details)}"
    if "socket closed" in text and not secure and not reached_before:
        # A TLS server hangs up on a plaintext client's first bytes without a word.
        return "it closes the connection at once: does it expect TLS? (meshsim speaks plaintext to it)"
    return _short(details) or "unreachable"


def _short(details: str) -> str:
    # gRPC's wording repeats its own framing; the last clause is the cause. Addresses go: a name
    # that resolves to several may fail on a different one each time, and it is one problem.
    cause = _ADDRESS.sub("", details.rsplit("last error: ", 1)[-1]).strip()
    return cause if len(cause) <= _DETAILS else cause[: _DETAILS - 1] + "…"


class Reachability:
    """Per replica: the problem last said about it, so that each is said once."""

    def __init__(self, secure: bool) -> None:
        self.secure = secure
        self._said: dict[str, str] = {}
        self._reached: set[str] = set()

    def failed(self, endpoint: str, details: str) -> None:
        problem = problem_of(details, self.secure, endpoint in self._reached)
        if self._said.get(endpoint) != problem:
            self._said[endpoint] = problem
            _log.warning("replica %s cannot be reached: %s; trying again", endpoint, problem)

    def reached(self, endpoint: str) -> None:
        self._reached.add(endpoint)
        if self._said.pop(endpoint, None) is not None:
            _log.info("replica %s is reachable again", endpoint)

    def forget(self, endpoint: str) -> None:
        """Discovery removed the replica."""
        self._said.pop(endpoint, None)
        self._reached.discard(endpoint)

    def problem(self, endpoint: str) -> str | None:
        """What was last said about `endpoint`, while it is unreachable."""
        return self._said.get(endpoint)
