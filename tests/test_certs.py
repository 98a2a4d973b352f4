"""mTLS certificates: `meshsim certs init` and `rotate`, and the loader's refusals, on real files."""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshsim.cli import main
from meshsim.tls import TlsError, TlsFiles, load_client_material, load_server_material
from meshsim.tls.authority import (
    Validity,
    init_directory,
    issue_ca,
    issue_client,
    issue_server,
    load_ca,
    write_atomically,
)

Extension = TypeVar("Extension", bound=x509.ExtensionType)

CERTS = ("ca.pem", "server.pem", "client.pem")
KEYS = ("ca-key.pem", "server-key.pem", "client-key.pem")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def extension(cert: x509.Certificate, kind: type[Extension]) -> Extension:
    return cert.extensions.get_extension_for_class(kind).value


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """A directory as `meshsim certs init` leaves it."""
    directory = tmp_path / "certs"
    init_directory(directory, hosts=["mesh.internal"])
    return directory


# meshsim certs init


def test_init_writes_a_ca_and_leaves_signed_by_it(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "certs"
    code, out, err = invoke("certs", "init", str(directory))
    assert (code, err) == (0, "")
    assert sorted(p.name for p in directory.iterdir()) == sorted(CERTS + KEYS)
    for name in CERTS + KEYS:
        assert f"wrote {directory / name}" in out
    assert all(mode(directory / key) == 0o600 for key in KEYS)

    ca, server, client = (certificate(directory / name) for name in CERTS)
    server.verify_directly_issued_by(ca)
    client.verify_directly_issued_by(ca)
    assert extension(ca, x509.BasicConstraints) == x509.BasicConstraints(ca=True, path_length=0)
    ca_usage = extension(ca, x509.KeyUsage)
    assert ca_usage.key_cert_sign and ca_usage.crl_sign and not ca_usage.digital_signature
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > timedelta(days=3600)
    for leaf, purpose in ((server, ExtendedKeyUsageOID.SERVER_AUTH), (client, ExtendedKeyUsageOID.CLIENT_AUTH)):
        assert list(extension(leaf, x509.ExtendedKeyUsage)) == [purpose]
        assert not extension(leaf, x509.BasicConstraints).ca
        assert extension(leaf, x509.KeyUsage).digital_signature
        assert not extension(leaf, x509.KeyUsage).key_encipherment  # only RSA keys encipher
        identifier = extension(leaf, x509.AuthorityKeyIdentifier).key_identifier
        assert identifier == extension(ca, x509.SubjectKeyIdentifier).digest
        assert leaf.not_valid_before_utc < datetime.now(UTC) - timedelta(minutes=1)  # clock skew
        assert timedelta(days=364) < leaf.not_valid_after_utc - datetime.now(UTC) <= timedelta(days=365)
        assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey) and leaf.public_key().curve.name == "secp256r1"
    assert client.subject.rfc4514_string() == "CN=meshsim-client"
    assert server.serial_number != client.serial_number


def test_the_server_certificate_names_localhost_and_each_host(tmp_path: Path) -> None:
    code, out, _ = invoke("certs", "init", str(tmp_path), "--host", "mesh.internal", "--host", "10.0.0.7")
    assert code == 0
    names = extension(certificate(tmp_path / "server.pem"), x509.SubjectAlternativeName)
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "mesh.internal"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.0.0.7"),
    ]
    assert "server certificate names: localhost, 127.0.0.1, ::1, mesh.internal, 10.0.0.7" in out


def test_init_makes_rsa_keys_of_the_size_asked(tmp_path: Path) -> None:
    code, _, _ = invoke("certs", "init", str(tmp_path), "--key-type", "rsa", "--rsa-bits", "3072", "--days", "30")
    assert code == 0
    for name in KEYS:
        key = serialization.load_pem_private_key((tmp_path / name).read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    server = certificate(tmp_path / "server.pem")
    assert extension(server, x509.KeyUsage).key_encipherment
    assert server.not_valid_after_utc - datetime.now(UTC) <= timedelta(days=30)
    server.verify_directly_issued_by(certificate(tmp_path / "ca.pem"))


def test_rsa_bits_without_rsa_keys_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = invoke("certs", "init", str(tmp_path), "--rsa-bits", "4096")
    assert code == 2
    assert "--rsa-bits" in err
    assert list(tmp_path.iterdir()) == []


def test_init_refuses_to_overwrite_without_force(certs: Path) -> None:
    before = {name: (certs / name).read_bytes() for name in CERTS + KEYS}
    code, out, err = invoke("certs", "init", str(certs))
    assert (code, out) == (2, "")
    assert err.strip() == f"error: {certs / 'ca.pem'}: already exists; --force replaces it"
    assert {name: (certs / name).read_bytes() for name in CERTS + KEYS} == before

    code, _, _ = invoke("certs", "init", str(certs), "--force")
    assert code == 0
    assert all((certs / name).read_bytes() != before[name] for name in CERTS + KEYS)


def test_init_writes_nothing_when_any_one_file_is_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "client-key.pem").write_text("mine")
    code, _, err = invoke("certs", "init", str(tmp_path))
    assert code == 2
    assert f"{tmp_path / 'client-key.pem'}: already exists" in err
    assert [p.name for p in tmp_path.iterdir()] == ["client-key.pem"]


def test_force_leaves_no_key_readable_by_others(tmp_path: Path) -> None:
    key = tmp_path / "server-key.pem"
    key.write_text("old")
    key.chmod(0o644)
    code, _, _ = invoke("certs", "init", str(tmp_path), "--force")
    assert code == 0
    assert mode(key) == 0o600


def test_init_rejects_a_host_that_is_no_name(tmp_path: Path) -> None:
    code, _, err = invoke("certs", "init", str(tmp_path / "certs"), "--host", "not a host")
    assert code == 2
    assert err.strip() == "error: 'not a host' is neither an IP address nor a DNS name"
    assert not (tmp_path / "certs").exists()


# meshsim certs rotate


def test_rotate_reissues_the_leaves_from_the_same_ca(certs: Path) -> None:
    before = {name: (certs / name).read_bytes() for name in CERTS + KEYS}
    old_serials = {name: certificate(certs / name).serial_number for name in ("server.pem", "client.pem")}
    code, out, err = invoke("certs", "rotate", str(certs), "--host", "10.1.2.3")
    assert (code, err) == (0, "")
    assert "ca.pem" not in out

    assert (certs / "ca.pem").read_bytes() == before["ca.pem"]
    assert (certs / "ca-key.pem").read_bytes() == before["ca-key.pem"]
    ca = certificate(certs / "ca.pem")
    for name in ("server.pem", "client.pem", "server-key.pem", "client-key.pem"):
        assert (certs / name).read_bytes() != before[name]
    for name in ("server.pem", "client.pem"):
        renewed = certificate(certs / name)
        assert renewed.serial_number != old_serials[name]
        renewed.verify_directly_issued_by(ca)
    assert all(mode(certs / key) == 0o600 for key in KEYS)
    assert sorted(p.name for p in certs.iterdir()) == sorted(CERTS + KEYS)  # no temporary files left
    # The names of the certificate it replaced, plus the new one.
    names = extension(certificate(certs / "server.pem"), x509.SubjectAlternativeName)
    assert "mesh.internal" in names.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.1.2.3") in names.get_values_for_type(x509.IPAddress)
    load_server_material(TlsFiles.in_dir(certs, "server"))
    load_client_material(TlsFiles.in_dir(certs, "client"))


def test_rotate_keeps_the_key_type_of_the_ca_unless_told(tmp_path: Path) -> None:
    assert invoke("certs", "init", str(tmp_path), "--key-type", "rsa")[0] == 0
    assert invoke("certs", "rotate", str(tmp_path))[0] == 0
    assert isinstance(certificate(tmp_path / "server.pem").public_key(), rsa.RSAPublicKey)
    assert invoke("certs", "rotate", str(tmp_path), "--key-type", "ecdsa")[0] == 0
    assert isinstance(certificate(tmp_path / "server.pem").public_key(), ec.EllipticCurvePublicKey)
    load_server_material(TlsFiles.in_dir(tmp_path, "server"))


def test_rotate_without_a_ca_fails_naming_the_file(tmp_path: Path) -> None:
    code, out, err = invoke("certs", "rotate", str(tmp_path))
    assert (code, out) == (2, "")
    assert err.strip() == f"error: {tmp_path / 'ca.pem'}: no such file"


def test_rotate_with_a_broken_ca_key_fails_naming_the_file(certs: Path) -> None:
    (certs / "ca-key.pem").write_text("not a key")
    before = (certs / "server.pem").read_bytes()
    code, _, err = invoke("certs", "rotate", str(certs))
    assert code == 2
    assert err.strip() == f"error: {certs / 'ca-key.pem'}: not a PEM file (expected -----BEGIN PRIVATE KEY-----)"
    assert (certs / "server.pem").read_bytes() == before


# Loading: what grpc will be given, and what is refused before it sees it


def test_loaded_material_is_the_files_bytes(certs: Path) -> None:
    files = TlsFiles.in_dir(certs, "server")
    assert files == TlsFiles(certs / "ca.pem", certs / "server.pem", certs / "server-key.pem")
    material = load_server_material(files)
    assert material.ca == (certs / "ca.pem").read_bytes()
    assert material.cert == (certs / "server.pem").read_bytes()
    assert material.key == (certs / "server-key.pem").read_bytes()
    assert material.not_after == certificate(certs / "server.pem").not_valid_after_utc
    client = load_client_material(TlsFiles.in_dir(certs, "client"))
    assert client.cert == (certs / "client.pem").read_bytes()


def replace(path: Path, data: bytes) -> None:
    write_atomically(path, data, private=path.name.endswith("-key.pem"))


def expired(certs: Path) -> None:
    now = datetime.now(UTC)
    leaf = issue_server(load_ca(certs), validity=Validity(now - timedelta(days=30), now - timedelta(days=1)))
    replace(certs / "server-key.pem", leaf.key_pem)
    replace(certs / "server.pem", leaf.cert_pem)


def not_yet_valid(certs: Path) -> None:
    now = datetime.now(UTC)
    leaf = issue_server(load_ca(certs), validity=Validity(now + timedelta(days=1), now + timedelta(days=30)))
    replace(certs / "server-key.pem", leaf.key_pem)
    replace(certs / "server.pem", leaf.cert_pem)


def from_another_ca(certs: Path) -> None:
    leaf = issue_server(issue_ca())
    replace(certs / "server-key.pem", leaf.key_pem)
    replace(certs / "server.pem", leaf.cert_pem)


def mismatched_key(certs: Path) -> None:
    replace(certs / "server-key.pem", (certs / "client-key.pem").read_bytes())


def encrypted_key(certs: Path) -> None:
    key = serialization.load_pem_private_key((certs / "server-key.pem").read_bytes(), password=None)
    encryption = serialization.BestAvailableEncryption(b"secret")
    replace(
        certs / "server-key.pem",
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption),
    )


def client_certificate(certs: Path) -> None:
    replace(certs / "server.pem", (certs / "client.pem").read_bytes())
    replace(certs / "server-key.pem", (certs / "client-key.pem").read_bytes())


def directory_in_place(certs: Path) -> None:
    (certs / "server.pem").unlink()
    (certs / "server.pem").mkdir()


def leaf_as_ca(certs: Path) -> None:
    replace(certs / "ca.pem", (certs / "client.pem").read_bytes())


REFUSALS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing key": (lambda certs: (certs / "server-key.pem").unlink(), "server-key.pem: no such file"),
    "missing ca": (lambda certs: (certs / "ca.pem").unlink(), "ca.pem: no such file"),
    "unreadable": (
        directory_in_place,
        "server.pem: is a directory, expected a PEM file",
    ),
    "garbage": (
        lambda certs: replace(certs / "server.pem", b"\x00\x01garbage"),
        "server.pem: not a PEM file (expected -----BEGIN CERTIFICATE-----)",
    ),
    "key in the certificate's place": (
        lambda certs: replace(certs / "server.pem", (certs / "server-key.pem").read_bytes()),
        "server.pem: holds a PRIVATE KEY, not a certificate",
    ),
    "corrupt certificate": (
        lambda certs: replace(certs / "server.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        "server.pem: not a valid PEM certificate",
    ),
    "certificate in the key's place": (
        lambda certs: replace(certs / "server-key.pem", (certs / "server.pem").read_bytes()),
        "server-key.pem: holds a CERTIFICATE, not a private key",
    ),
    "encrypted key": (encrypted_key, "server-key.pem: the private key is encrypted"),
    "mismatched key": (mismatched_key, "server-key.pem: this private key does not belong to the certificate in"),
    "expired": (expired, 'server.pem: certificate "meshsim-server" expired on '),
    "not yet valid": (not_yet_valid, 'server.pem: certificate "meshsim-server" is not valid until '),
    "another CA": (from_another_ca, 'server.pem: certificate "meshsim-server" is not signed by the CA in'),
    "client certificate": (
        client_certificate,
        "server.pem: not a server certificate: its extended key usage lacks serverAuth (it has clientAuth)",
    ),
    "not a CA": (
        leaf_as_ca,
        'ca.pem: certificate "meshsim-client" is not a CA certificate (BasicConstraints CA is false)',
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_the_server_loader_refuses_with_one_line_naming_the_file(certs: Path, case: str) -> None:
    break_files, message = REFUSALS[case]
    break_files(certs)
    with pytest.raises(TlsError) as caught:
        load_server_material(TlsFiles.in_dir(certs, "server"))
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(str(certs))
    assert message in text


def test_expiry_names_the_dates(certs: Path) -> None:
    expired(certs)
    end = certificate(certs / "server.pem").not_valid_after_utc
    with pytest.raises(TlsError, match=f"expired on {end:%Y-%m-%d %H:%M:%S} UTC"):
        load_server_material(TlsFiles.in_dir(certs, "server"))


def test_the_client_loader_refuses_a_server_certificate(certs: Path) -> None:
    files = TlsFiles(certs / "ca.pem", certs / "server.pem", certs / "server-key.pem")
    with pytest.raises(TlsError, match=r"server\.pem: not a client certificate: .* lacks clientAuth"):
        load_client_material(files)


def test_a_certificate_without_extended_key_usage_serves_any_purpose(certs: Path) -> None:
    ca = load_ca(certs)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "plain")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(minutes=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
    )
    plain = builder.sign(ca.key, hashes.SHA256())
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    replace(certs / "server-key.pem", pkcs8)
    replace(certs / "server.pem", plain.public_bytes(serialization.Encoding.PEM))
    load_server_material(TlsFiles.in_dir(certs, "server"))
    load_client_material(TlsFiles(certs / "ca.pem", certs / "server.pem", certs / "server-key.pem"))


def test_a_leaf_issued_with_explicit_dates_keeps_them(certs: Path) -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    leaf = issue_client(load_ca(certs), validity=Validity(start, start + timedelta(days=2)))
    assert leaf.certificate.not_valid_before_utc == start
    assert leaf.certificate.not_valid_after_utc == start + timedelta(days=2)
