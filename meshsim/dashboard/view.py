"""What the dashboard shows of each service and replica: `/clusters`' states joined with the numbers.

Two processes answer `/clusters`, each from where it stands:

- the proxy (live/proxy_admin.py) lists its clusters and, for each endpoint, what its
  balancer knows: health, ejection, rotation, breaker, calls in flight, weight. Its
  request metrics give the service's rates, errors and latency, and its attempt
  metrics each replica's: attempts a second, their errors, latency and share (a
  retried call is an attempt on each replica it tried);
- `meshsim serve` (demo/admin.py) lists its replicas (up, serving, faults), and its
  metrics count each replica's calls: rates, errors, latency and share per replica.

A replica's `state` is one word the page colours: healthy; unhealthy, down or not
serving (out because it failed); ejected or out of rotation (taken out by the mesh).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from meshsim.dashboard.tally import Counts, Key, total


@attrs.frozen
class Window:
    """Each (caller, service)'s calls over the last `seconds`."""

    counts: Mapping[Key, Counts]
    seconds: float


def services(clusters: Mapping[str, Any], window: Window | None) -> list[dict[str, Any]]:
    """One entry per service, its replicas inside, in `/clusters`' order."""
    if "clusters" in clusters:
        return [_cluster(cluster, window) for cluster in clusters["clusters"]]
    if "replicas" in clusters:
        return [_replica_set(clusters, window)]
    return []


def numbers(counts: Counts | None, seconds: float | None) -> dict[str, float | None]:
    """Calls a second, the share that failed, p50 and p99 in milliseconds; None where there is nothing to tell."""
    if counts is None or seconds is None:
        return {"rps": None, "error_rate": None, "p50_ms": None, "p99_ms": None}
    calls = counts.calls
    return {
        "rps": round(calls / seconds, 3),
        "error_rate": round(counts.failed / calls, 4) if calls else None,
        "p50_ms": _ms(counts.quantile(0.5)),
        "p99_ms": _ms(counts.quantile(0.99)),
    }


def _cluster(cluster: Mapping[str, Any], window: Window | None) -> dict[str, Any]:
    name, service = cluster["name"], cluster["service"]
    seconds = None if window is None else window.seconds
    counts = None if window is None else window.counts.get((name, service), Counts())
    attempts: dict[str, Counts] = {}
    if window is not None:
        attempts = {
            e["endpoint"]: window.counts.get((name, service, e["endpoint"]), Counts()) for e in cluster["endpoints"]
        }
    every = sum(each.calls for each in attempts.values())
    return {
        "name": name,
        "service": service,
        "seen_by": "proxy",
        "policy": cluster.get("policy"),
        "panic": cluster.get("panic"),
        **numbers(counts, seconds),
        "replicas": [
            _endpoint(endpoint, attempts.get(endpoint["endpoint"]), seconds, every) for endpoint in cluster["endpoints"]
        ],
    }


def _endpoint(
    endpoint: Mapping[str, Any], attempts: Counts | None = None, seconds: float | None = None, every: float = 0.0
) -> dict[str, Any]:
    if endpoint.get("ejected"):
        state = "ejected"
    elif not endpoint.get("healthy"):
        state = "unhealthy"
    elif not endpoint.get("in_rotation", True):
        state = "out of rotation"
    else:
        state = "healthy"
    return {
        "name": endpoint["endpoint"],
        "address": endpoint["endpoint"],
        "state": state,
        "breaker": endpoint.get("breaker"),
        "in_flight": endpoint.get("in_flight"),
        "weight": endpoint.get("weight"),
        "connected": endpoint.get("connected"),
        "faults": None,
        "share": round(attempts.calls / every, 4) if attempts is not None and every else None,
        **numbers(attempts, seconds),
    }


def _replica_set(clusters: Mapping[str, Any], window: Window | None) -> dict[str, Any]:
    replicas = clusters["replicas"]
    seconds = None if window is None else window.seconds
    each: dict[str, Counts] = {}
    if window is not None:
        for replica in replicas:
            address = replica["address"]
            each[address] = total(counts for (caller, _), counts in window.counts.items() if caller == address)
    whole = total(each.values()) if window is not None else None
    rows = []
    for replica in replicas:
        counts = each.get(replica["address"])
        if not replica.get("up", True):
            state = "down"
        elif not replica.get("serving", True):
            state = "not serving"
        else:
            state = "healthy"
        share = None
        if counts is not None and whole is not None and whole.calls:
            share = round(counts.calls / whole.calls, 4)
        rows.append(
            {
                "name": replica["name"],
                "address": replica["address"],
                "state": state,
                "breaker": None,
                "in_flight": None,
                "weight": None,
                "connected": None,
                "faults": list(replica.get("faults", ())),
                "share": share,
                **numbers(counts, seconds),
            }
        )
    return {
        "name": clusters["service"],
        "service": clusters["service"],
        "seen_by": "replicas",
        "policy": None,
        "panic": None,
        **numbers(whole, seconds),
        "replicas": rows,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
