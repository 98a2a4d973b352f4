"""Discovery sources for the membership actor: DNS (A/AAAA, SRV) and a watched endpoints file.

A/AAAA without nameservers go through the system resolver (getaddrinfo: /etc/hosts,
then DNS), as a gRPC `dns:///` target does. With nameservers, and always for SRV,
queries go to them with dnspython, which runs on Trio directly.
"""

from __future__ import annotations

import socket

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import trio

from meshsim.core.addresses import is_address, join_host_port
from meshsim.live.config import Discovery, DnsDiscovery, FileDiscovery
from meshsim.runtime.membership import Resolver


def resolver_for(discovery: Discovery) -> Resolver:
    if isinstance(discovery, FileDiscovery):
        return FileResolver(discovery)
    return DnsResolver(discovery)


class DnsResolver:
    def __init__(self, discovery: DnsDiscovery) -> None:
        self.discovery = discovery
        self.source = discovery.source
        self._dns: dns.asyncresolver.Resolver | None = None
        if discovery.nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [_nameserver(n) for n in discovery.nameservers]
            resolver.lifetime = min(5.0, discovery.interval)
            self._dns = resolver

    async def resolve(self) -> tuple[str, ...]:
        discovery = self.discovery
        if discovery.srv:
            return await self._srv(discovery.name)
        assert discovery.port is not None
        return tuple(join_host_port(address, discovery.port) for address in await self._addresses(discovery.name))

    async def _srv(self, name: str) -> tuple[str, ...]:
        assert self._dns is not None
        answer = await self._dns.resolve(name, "SRV")
        # RFC 2782: lower priority first; within a priority, heavier first (the balancer spreads the load).
        records = sorted(answer, key=lambda r: (r.priority, -r.weight, str(r.target)))
        found: list[str] = []
        for record in records:
            target = str(record.target).rstrip(".")
            found.extend(join_host_port(address, record.port) for address in await self._addresses(target))
        return tuple(found)

    async def _addresses(self, name: str) -> list[str]:
        if self._dns is None:
            infos = await trio.socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            return list(dict.fromkeys(str(info[4][0]) for info in infos))
        addresses: list[str] = []
        missing = 0
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self._dns.resolve(name, rdtype)
            except dns.resolver.NoAnswer:
                missing += 1  # a name with only IPv4 (or only IPv6) addresses
                continue
            addresses.extend(record.address for record in answer)
        if missing == 2:
            raise LookupError(f"{name} has no A or AAAA records")
        return addresses


def _nameserver(text: str) -> dns.nameserver.Do53Nameserver:
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = int(number)
    return dns.nameserver.Do53Nameserver(host, port)


class FileResolver:
    def __init__(self, discovery: FileDiscovery) -> None:
        self.path = discovery.path
        self.source = discovery.source

    async def resolve(self) -> tuple[str, ...]:
        text = await trio.Path(self.path).read_text(encoding="utf-8")
        found = []
        for number, line in enumerate(text.splitlines(), start=1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            if not is_address(entry):
                raise ValueError(f"{self.path}:{number}: expected host:port, got {entry!r}")
            found.append(entry)
        return tuple(found)
