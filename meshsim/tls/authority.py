"""A private certificate authority for mTLS between meshsim's processes.

One CA signs a server certificate (for replicas and the proxy's listener) and a
client certificate (for the proxy's channels and other callers). The CA key stays
in the directory, so that `rotate` can issue new leaves that peers already trust:
rotating leaves then needs no restart of anything that only holds ca.pem.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshsim.tls.material import (
    CA_CERT,
    CA_KEY,
    TlsError,
    TlsFiles,
    check_is_ca,
    check_key_matches,
    check_validity,
    read_certificates,
    read_private_key,
)

KeyType = Literal["ecdsa", "rsa"]
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

RSA_BITS = (2048, 3072, 4096)
LEAF_DAYS = 365
CA_DAYS = 3650
# Certificates start a little in the past: a peer whose clock is behind ours would
# otherwise reject a certificate issued a moment ago as "not yet valid".
CLOCK_SKEW = timedelta(minutes=5)
# Where a local mesh's replicas listen, so that the default certificate serves them.
DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
CLIENT_NAME = "meshsim-client"

_DNS_NAME = re.compile(r"^(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$")


@attrs.frozen
class KeySpec:
    type: KeyType = "ecdsa"
    rsa_bits: int = attrs.field(default=2048, validator=attrs.validators.in_(RSA_BITS))

    @classmethod
    def matching(cls, key: SigningKey) -> KeySpec:
        """Rotation keeps the key type the CA was made with unless told otherwise."""
        if isinstance(key, rsa.RSAPrivateKey):
            return cls("rsa", key.key_size if key.key_size in RSA_BITS else 2048)
        return cls("ecdsa")

    def generate(self) -> SigningKey:
        if self.type == "rsa":
            return rsa.generate_private_key(public_exponent=65537, key_size=self.rsa_bits)
        return ec.generate_private_key(ec.SECP256R1())


ECDSA = KeySpec()


@attrs.frozen
class Validity:
    not_before: datetime
    not_after: datetime

    @classmethod
    def days_from_now(cls, days: int) -> Validity:
        now = datetime.now(UTC)
        return cls(not_before=now - CLOCK_SKEW, not_after=now + timedelta(days=days))


@attrs.frozen
class Issued:
    """A certificate with its private key, held in memory until written."""

    certificate: x509.Certificate
    key: SigningKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        # Unencrypted: grpc cannot ask for a passphrase. The file's mode protects it.
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def issue_ca(key_spec: KeySpec = ECDSA, validity: Validity | None = None) -> Issued:
    """A CA that may sign leaves but no further CAs (path length 0)."""
    key = key_spec.generate()
    # A random suffix tells CAs from two `certs init` runs apart in error messages.
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshsim"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"meshsim CA {secrets.token_hex(4)}"),
        ]
    )
    validity = validity or Validity.days_from_now(CA_DAYS)
    usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        _builder(name, name, key, validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
    )
    return Issued(builder.sign(key, hashes.SHA256()), key)


def issue_server(
    ca: Issued, hosts: Iterable[str] = (), *, key_spec: KeySpec = ECDSA, validity: Validity | None = None
) -> Issued:
    """A serving certificate for localhost and `hosts`: clients check the name they dialled against these."""
    names = x509.SubjectAlternativeName(server_names(hosts))
    return _issue_leaf(ca, "meshsim-server", ExtendedKeyUsageOID.SERVER_AUTH, key_spec, validity, names)


def issue_client(ca: Issued, *, key_spec: KeySpec = ECDSA, validity: Validity | None = None) -> Issued:
    return _issue_leaf(ca, CLIENT_NAME, ExtendedKeyUsageOID.CLIENT_AUTH, key_spec, validity)


def server_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """The default names plus `hosts`, IP addresses as IP names (a DNS name never matches an address)."""
    names: list[x509.GeneralName] = []
    for host in (*DEFAULT_SERVER_NAMES, *hosts):
        name = _general_name(host)
        if name not in names:
            names.append(name)
    return names


def load_ca(directory: str | Path) -> Issued:
    """The CA a directory already has, checked, so that new leaves are signed by what peers trust."""
    cert_path, key_path = Path(directory) / CA_CERT, Path(directory) / CA_KEY
    certificate = read_certificates(cert_path)[0]
    key = read_private_key(key_path)
    check_is_ca(cert_path, certificate)
    check_key_matches(key_path, key, cert_path, certificate)
    check_validity(cert_path, certificate)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TlsError(f"{key_path}: meshsim signs with ECDSA or RSA keys, not {type(key).__name__}")
    return Issued(certificate, key)


# Writing a certificate directory.


@attrs.frozen
class Written:
    path: Path
    what: str
    not_after: datetime | None = None  # for certificates


@attrs.frozen
class Issuance:
    written: tuple[Written, ...]
    server_names: tuple[str, ...]


class ExistingFile(TlsError):
    """A file `init` would write is there already; replacing a CA breaks every peer that trusts it."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: already exists")
        self.path = path


def init_directory(
    directory: str | Path,
    *,
    key_spec: KeySpec = ECDSA,
    days: int = LEAF_DAYS,
    hosts: Sequence[str] = (),
    overwrite: bool = False,
) -> Issuance:
    """A new CA with a server and a client certificate; nothing is written if any file is in the way."""
    server_names(hosts)  # before touching anything: a bad host name fails fast
    directory = _make_directory(directory)
    server, client = TlsFiles.in_dir(directory, "server"), TlsFiles.in_dir(directory, "client")
    if not overwrite:
        for path in (directory / CA_CERT, directory / CA_KEY, server.cert, server.key, client.cert, client.key):
            if path.exists() or path.is_symlink():
                raise ExistingFile(path)
    ca = issue_ca(key_spec)
    written = _write_pair(ca, directory / CA_CERT, directory / CA_KEY, "CA")
    return _write_leaves(ca, directory, key_spec, days, hosts, written)


def rotate_directory(
    directory: str | Path, *, key_spec: KeySpec | None = None, days: int = LEAF_DAYS, hosts: Sequence[str] = ()
) -> Issuance:
    """New server and client keys and certificates from the existing CA, which stays byte for byte.

    The server certificate keeps the names of the one it replaces, plus `hosts`.
    """
    directory = Path(directory)
    ca = load_ca(directory)
    hosts = [*_current_server_hosts(TlsFiles.in_dir(directory, "server").cert), *hosts]
    server_names(hosts)  # before writing anything: a bad host name leaves the old files in place
    return _write_leaves(ca, directory, key_spec or KeySpec.matching(ca.key), days, hosts)


def write_atomically(path: Path, data: bytes, *, private: bool) -> None:
    """Replace `path` in one step, so that a process watching it never reads half a file.

    A private key is created with mode 0600, never readable by others even for a moment.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)
    except OSError as error:
        raise TlsError(f"{path}: cannot write: {error.strerror or error}") from None


def _write_leaves(
    ca: Issued, directory: Path, key_spec: KeySpec, days: int, hosts: Iterable[str], written: Sequence[Written] = ()
) -> Issuance:
    validity = _leaf_validity(ca, days)
    server = issue_server(ca, hosts, key_spec=key_spec, validity=validity)
    client = issue_client(ca, key_spec=key_spec, validity=validity)
    server_files, client_files = TlsFiles.in_dir(directory, "server"), TlsFiles.in_dir(directory, "client")
    written = [
        *written,
        *_write_pair(server, server_files.cert, server_files.key, "server"),
        *_write_pair(client, client_files.cert, client_files.key, "client"),
    ]
    return Issuance(tuple(written), tuple(_alternative_names(server.certificate)))


def _write_pair(issued: Issued, cert_path: Path, key_path: Path, what: str) -> list[Written]:
    # The key first: a watcher that reloads when the certificate changes then finds its key in place.
    write_atomically(key_path, issued.key_pem, private=True)
    write_atomically(cert_path, issued.cert_pem, private=False)
    return [
        Written(cert_path, f"{what} certificate", issued.certificate.not_valid_after_utc),
        Written(key_path, f"{what} private key"),
    ]


def _leaf_validity(ca: Issued, days: int) -> Validity:
    # A leaf cannot outlive the CA that vouches for it; peers would reject it from then on anyway.
    validity = Validity.days_from_now(days)
    return attrs.evolve(validity, not_after=min(validity.not_after, ca.certificate.not_valid_after_utc))


def _issue_leaf(
    ca: Issued,
    common_name: str,
    purpose: x509.ObjectIdentifier,
    key_spec: KeySpec,
    validity: Validity | None,
    names: x509.SubjectAlternativeName | None = None,
) -> Issued:
    key = key_spec.generate()
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        # TLS 1.2's RSA key exchange encrypts to the certificate's key.
        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca.certificate.subject, key, validity or Validity.days_from_now(LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(_authority_key_identifier(ca), critical=False)
    )
    if names is not None:
        builder = builder.add_extension(names, critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _builder(subject: x509.Name, issuer: x509.Name, key: SigningKey, validity: Validity) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _authority_key_identifier(ca: Issued) -> x509.AuthorityKeyIdentifier:
    try:
        identifier = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(identifier)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if not _DNS_NAME.fullmatch(host) or len(host) > 253:
        raise TlsError(f"{host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(host.lower())


def _current_server_hosts(path: Path) -> list[str]:
    if not path.exists():
        return []
    try:
        return _alternative_names(read_certificates(path)[0])
    except TlsError as error:
        raise TlsError(f"{error} (rotate keeps its host names; delete it to start from the defaults)") from None


def _alternative_names(certificate: x509.Certificate) -> list[str]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in names if isinstance(name, x509.DNSName | x509.IPAddress)]


def _make_directory(directory: str | Path) -> Path:
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TlsError(f"{directory}: exists and is not a directory") from None
    except OSError as error:
        raise TlsError(f"{directory}: cannot create: {error.strerror or error}") from None
    return directory


def _fsync_directory(directory: Path) -> None:
    # The rename itself must survive a crash, or a restart could find the old file again.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
