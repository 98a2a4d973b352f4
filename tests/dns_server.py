"""A small authoritative DNS server on 127.0.0.1 for the discovery tests: real UDP, real DNS messages.

Its zone is a dict the test changes while the server runs: {("name.", "A"): ["127.0.0.1"], ...}.
"""

from __future__ import annotations

import socket

import attrs
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import trio


@attrs.define
class DnsServer:
    zone: dict[tuple[str, str], list[str]] = attrs.Factory(dict)
    address: str = ""
    queries: int = 0

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.bind(("127.0.0.1", 0))
            host, port = sock.getsockname()
            self.address = f"{host}:{port}"
            task_status.started()
            while True:
                data, peer = await sock.recvfrom(4096)
                await sock.sendto(self.answer(data), peer)

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        self.queries += 1
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            name = question.name.to_text()
            kind = dns.rdatatype.to_text(question.rdtype)
            records = self.zone.get((name, kind))
            if records:
                response.answer.append(dns.rrset.from_text_list(name, 5, dns.rdataclass.IN, kind, records))
            elif not any(key[0] == name for key in self.zone):
                response.set_rcode(dns.rcode.NXDOMAIN)
        return bytes(response.to_wire())
