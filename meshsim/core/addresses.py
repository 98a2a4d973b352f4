"""`host:port` as every file, flag and discovery source writes it: read in one place.

A port is ASCII digits up to 65535 (no "١٢٣", no "²"), and a host is required: gRPC
takes "localhost" alone as port 443, which nobody means. IPv6 hosts are written in
brackets ("[::1]:50051").
"""

from __future__ import annotations

import ipaddress


def split_host_port(text: str) -> tuple[str, int]:
    """("host", port) from "host:port"; ValueError when it is not one."""
    host, _, port = text.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f'expected "host:port", got {text!r}')
    return host, int(port)


def is_address(value: object) -> bool:
    """Whether `value` is a "host:port" string."""
    if not isinstance(value, str):
        return False
    try:
        split_host_port(value)
    except ValueError:
        return False
    return True


def is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.strip("[]")).version == 6
    except ValueError:
        return False


def join_host_port(host: str, port: int) -> str:
    """ "host:port", with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if is_ipv6(host) and not host.startswith("[") else f"{host}:{port}"
