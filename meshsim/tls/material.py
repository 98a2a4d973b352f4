"""Certificate files for mTLS, read and checked before grpc sees them.

grpc reports a bad certificate as a failed handshake on the *other* side, long after
startup and without naming a file. Every check here fails at load time instead, with
one line that names the file and what is wrong with it. The material is returned as
the PEM bytes read, which is what grpc's credentials take.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from meshsim.core.errors import ConfigError

Role = Literal["server", "client"]

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"

_PURPOSES: dict[Role, x509.ObjectIdentifier] = {
    "server": ExtendedKeyUsageOID.SERVER_AUTH,
    "client": ExtendedKeyUsageOID.CLIENT_AUTH,
}
_USAGE_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
_PEM_LABEL = re.compile(rb"^-----BEGIN ([A-Z0-9 ]+)-----\s*$", re.MULTILINE)


class TlsError(ConfigError):
    """A certificate or key file cannot be used (the message names the file and why)."""


@attrs.frozen
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: str | Path, role: Role) -> TlsFiles:
        """The layout `meshsim certs init` writes, so that one directory configures both ends."""
        directory = Path(directory)
        return cls(ca=directory / CA_CERT, cert=directory / f"{role}.pem", key=directory / f"{role}-key.pem")


@attrs.frozen
class PemMaterial:
    ca: bytes
    cert: bytes
    key: bytes
    # When the certificate stops working, so that a long-running process can warn ahead of it.
    not_after: datetime


def load_server_material(files: TlsFiles) -> PemMaterial:
    """Material for a TLS server: clients will reject a certificate not meant for serving."""
    return _load(files, "server")


def load_client_material(files: TlsFiles) -> PemMaterial:
    """Material for an mTLS client: servers will reject a certificate not meant for clients."""
    return _load(files, "client")


def read_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in order (a leaf first, then any intermediates; or a CA bundle)."""
    return _parse_certificates(path, read_bytes(path))


def read_private_key(path: Path) -> PrivateKeyTypes:
    return _parse_private_key(path, read_bytes(path))


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TlsError(f"{path}: is a directory, expected a PEM file") from None
    except OSError as error:
        raise TlsError(f"{path}: cannot read: {error.strerror or error}") from None


def check_is_ca(path: Path, certificate: x509.Certificate) -> None:
    """Without CA=true, peers refuse every certificate it signed, whatever its signature."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise TlsError(f"{path}: {_name(certificate)} is not a CA certificate (no BasicConstraints)") from None
    if not constraints.ca:
        raise TlsError(f"{path}: {_name(certificate)} is not a CA certificate (BasicConstraints CA is false)")


def check_validity(path: Path, certificate: x509.Certificate, now: datetime | None = None) -> None:
    """A wrong clock looks like a bad certificate to TLS; the dates in the message tell the two apart."""
    now = now or datetime.now(UTC)
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now > end:
        raise TlsError(f"{path}: {_name(certificate)} expired on {_date(end)} (valid {_date(start)} to {_date(end)})")
    if now < start:
        raise TlsError(
            f"{path}: {_name(certificate)} is not valid until {_date(start)} (valid {_date(start)} to {_date(end)};"
            " is this machine's clock right?)"
        )


def check_key_matches(key_path: Path, key: PrivateKeyTypes, cert_path: Path, certificate: x509.Certificate) -> None:
    if key.public_key().public_bytes(*_SPKI) != certificate.public_key().public_bytes(*_SPKI):
        raise TlsError(f"{key_path}: this private key does not belong to the certificate in {cert_path}")


def _load(files: TlsFiles, role: Role) -> PemMaterial:
    ca_pem, cert_pem, key_pem = read_bytes(files.ca), read_bytes(files.cert), read_bytes(files.key)
    authorities = _parse_certificates(files.ca, ca_pem)
    chain = _parse_certificates(files.cert, cert_pem)
    key = _parse_private_key(files.key, key_pem)
    for authority in authorities:
        check_is_ca(files.ca, authority)
    leaf = chain[0]
    check_key_matches(files.key, key, files.cert, leaf)
    now = datetime.now(UTC)
    for certificate in chain:
        check_validity(files.cert, certificate, now)
    issuer = _issuing_authority(files, chain, authorities)
    check_validity(files.ca, issuer, now)
    _check_purpose(files.cert, leaf, role)
    return PemMaterial(ca=ca_pem, cert=cert_pem, key=key_pem, not_after=leaf.not_valid_after_utc)


def _issuing_authority(
    files: TlsFiles, chain: Sequence[x509.Certificate], authorities: Sequence[x509.Certificate]
) -> x509.Certificate:
    # Intermediates may follow the leaf in the certificate file, as TLS sends them.
    for child, parent in itertools.pairwise(chain):
        if not _signed_by(child, parent):
            raise TlsError(f"{files.cert}: {_name(child)} is not signed by the next certificate, {_name(parent)}")
    top = chain[-1]
    for authority in authorities:
        if _signed_by(top, authority):
            return authority
    raise TlsError(
        f"{files.cert}: {_name(top)} is not signed by the CA in {files.ca}"
        f" (issuer {top.issuer.rfc4514_string() or 'empty'})"
    )


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _check_purpose(path: Path, certificate: x509.Certificate, role: Role) -> None:
    # No ExtendedKeyUsage means any purpose (RFC 5280), and TLS stacks accept it so.
    try:
        usages = certificate.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    except x509.ExtensionNotFound:
        return
    assert isinstance(usages, x509.ExtendedKeyUsage)
    purpose = _PURPOSES[role]
    if purpose not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
        found = ", ".join(_USAGE_NAMES.get(oid, oid.dotted_string) for oid in usages) or "none"
        raise TlsError(
            f"{path}: not a {role} certificate: its extended key usage lacks {_USAGE_NAMES[purpose]} (it has {found})"
        )


def _parse_certificates(path: Path, data: bytes) -> list[x509.Certificate]:
    labels = _pem_labels(data)
    if not labels:
        raise TlsError(f"{path}: not a PEM file (expected -----BEGIN CERTIFICATE-----)")
    if b"CERTIFICATE" not in labels:
        raise TlsError(f"{path}: holds a {labels[0].decode()}, not a certificate")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise TlsError(f"{path}: not a valid PEM certificate: {_first_sentence(error)}") from None


def _parse_private_key(path: Path, data: bytes) -> PrivateKeyTypes:
    labels = _pem_labels(data)
    if not labels:
        raise TlsError(f"{path}: not a PEM file (expected -----BEGIN PRIVATE KEY-----)")
    if b"ENCRYPTED PRIVATE KEY" in labels or b"Proc-Type: 4,ENCRYPTED" in data:
        # grpc has no way to ask for a passphrase; file permissions protect the key instead.
        raise TlsError(f"{path}: the private key is encrypted; meshsim needs it unencrypted (and the file mode 0600)")
    if not any(label.endswith(b"PRIVATE KEY") for label in labels):
        raise TlsError(f"{path}: holds a {labels[0].decode()}, not a private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise TlsError(f"{path}: not a valid private key: {_first_sentence(error)}") from None


def _pem_labels(data: bytes) -> list[bytes]:
    return _PEM_LABEL.findall(data)


def _name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return f'certificate "{names[0].value!s}"' if names else "the certificate"


def _date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _first_sentence(error: Exception) -> str:
    return str(error).split(". ")[0].rstrip(".")
