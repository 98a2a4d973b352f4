"""mTLS for grpc.aio: credentials from checked certificate files, and their rotation without a restart.

Servers take `grpc.dynamic_ssl_server_credentials`: grpc asks `ServerCertificates`
for the current configuration at each new handshake, so rotated files are served
from the next connection on while connections already open keep theirs. Clients
cannot swap credentials on a channel, so `ClientCertificates.reload()` tells the
caller to open new channels (and let the old ones drain, see LiveTransport.reconnect).

A set of files caught half-way through a rotation (a new key beside the old
certificate) fails the checks and the last good set stays in use until the files
agree again; `meshsim certs rotate` writes the key first, then the certificate.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import grpc
import trio

from meshsim.live.transport import LiveTransport
from meshsim.tls.material import PemMaterial, TlsError, TlsFiles, load_client_material, load_server_material

_log = logging.getLogger(__name__)

# How long calls in flight may go on over connections opened with certificates since rotated.
ROTATION_DRAIN = 30.0

Stamp = tuple[tuple[int, int, int] | None, ...]


def _stamp(files: TlsFiles) -> Stamp:
    """What changes when any of the files is replaced or rewritten (cheap enough for every handshake)."""
    stamps: list[tuple[int, int, int] | None] = []
    for path in (files.ca, files.cert, files.key):
        try:
            info = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((info.st_ino, info.st_mtime_ns, info.st_size))
    return tuple(stamps)


class _CertificateFiles:
    """A certificate set loaded and checked now (TlsError names what is wrong), and again when it changes."""

    def __init__(self, files: TlsFiles, load: Callable[[TlsFiles], PemMaterial]) -> None:
        self.files = files
        self._load = load
        self._stamp = _stamp(files)
        self._refused: Stamp | None = None
        self.material = load(files)
        self.loads = 1

    def reload(self) -> bool:
        """Load the files again if they changed and now agree with each other; True when there is new material."""
        stamp = _stamp(self.files)
        if stamp in (self._stamp, self._refused):
            return False  # unchanged, or the same files that were refused (checked once, logged once)
        try:
            material = self._load(self.files)
        except TlsError as error:
            self._refused = stamp
            _log.warning("keeping the certificates in use: %s", error)
            return False
        self._stamp = stamp
        self.material = material
        self.loads += 1
        _log.info(
            "certificates reloaded from %s (load %d)",
            self.files.cert,
            self.loads,
            extra={"fields": {"event": "certificates_reloaded", "cert": str(self.files.cert), "loads": self.loads}},
        )
        return True


class ServerCertificates(_CertificateFiles):
    """A server's pair and the CA whose clients it accepts."""

    def __init__(self, files: TlsFiles) -> None:
        super().__init__(files, load_server_material)

    def credentials(self) -> grpc.ServerCredentials:
        """Credentials that require a client certificate signed by the CA (mutual TLS)."""
        return grpc.dynamic_ssl_server_credentials(
            _configuration(self.material), self._current, require_client_authentication=True
        )

    def _current(self) -> grpc.ServerCertificateConfiguration | None:
        # grpc asks at each new handshake; None means "keep the configuration you have".
        return _configuration(self.material) if self.reload() else None


class ClientCertificates(_CertificateFiles):
    """A client's own pair and the CA it trusts; after a rotation, connections opened with the old
    pair carry their calls in flight for at most `drain` seconds."""

    def __init__(self, files: TlsFiles, drain: float = ROTATION_DRAIN) -> None:
        super().__init__(files, load_client_material)
        self.drain = drain

    def credentials(self) -> grpc.ChannelCredentials:
        material = self.material
        return grpc.ssl_channel_credentials(
            root_certificates=material.ca, private_key=material.key, certificate_chain=material.cert
        )


def _configuration(material: PemMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(material.key, material.cert)], root_certificates=material.ca)


class CertificateWatcher:
    """An actor: when a client's certificate files change, its transport reconnects with them."""

    def __init__(
        self,
        name: str,
        certificates: ClientCertificates,
        transport: LiveTransport,
        interval: float = 1.0,
    ) -> None:
        self.name = name
        self._certificates = certificates
        self._transport = transport
        self._interval = interval

    async def run(self) -> None:
        while True:
            await trio.sleep(self._interval)
            if self._certificates.reload():
                self._transport.reconnect(self._certificates.drain)
