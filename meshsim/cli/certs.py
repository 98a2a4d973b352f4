"""`meshsim certs`: a private CA with server and client certificates for mTLS, and their rotation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from meshsim.cli.app import Application

if TYPE_CHECKING:
    from meshsim.tls.authority import Issuance, KeySpec

KEY_TYPES = ("ecdsa", "rsa")
RSA_BITS = ("2048", "3072", "4096")

directory_argument = click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
days_option = click.option(
    "--days", type=click.IntRange(min=1), default=365, show_default=True, help="Validity of the leaf certificates."
)
rsa_bits_option = click.option(
    "--rsa-bits", type=click.Choice(RSA_BITS), help="RSA key size, with --key-type rsa.  [default: 2048]"
)
host_option = click.option(
    "--host",
    "hosts",
    multiple=True,
    metavar="NAME",
    help="Another name for the server certificate (DNS name or IP address); repeatable.",
)


@click.group()
def certs() -> None:
    """Certificates for mTLS: a private CA, a server and a client certificate."""


@certs.command()
@directory_argument
@click.option(
    "--key-type", type=click.Choice(KEY_TYPES), default="ecdsa", show_default=True, help="ECDSA P-256 or RSA keys."
)
@rsa_bits_option
@days_option
@host_option
@click.option(
    "--force",
    is_flag=True,
    help="Replace existing files, the CA too: peers that trust the old CA will refuse the new certificates.",
)
@click.pass_obj
def init(
    app: Application,
    directory: str,
    key_type: str,
    rsa_bits: str | None,
    days: int,
    hosts: tuple[str, ...],
    force: bool,
) -> None:
    """Make a new CA and the certificates it signs in DIR.

    DIR gets ca.pem, server.pem and client.pem, each with its *-key.pem.

    The server certificate is for localhost, 127.0.0.1 and ::1, and each --host.
    Private keys (*-key.pem) are written with mode 0600; never commit them.
    """
    from meshsim.tls.authority import ExistingFile, init_directory

    spec = key_spec(key_type, rsa_bits)
    try:
        issuance = init_directory(directory, key_spec=spec, days=days, hosts=hosts, overwrite=force)
    except ExistingFile as error:
        app.abort(f"{error}; --force replaces it")
    report(issuance)


@certs.command()
@directory_argument
@click.option("--key-type", type=click.Choice(KEY_TYPES), help="ECDSA P-256 or RSA keys.  [default: the CA's key type]")
@rsa_bits_option
@days_option
@host_option
@click.pass_obj
def rotate(
    app: Application, directory: str, key_type: str | None, rsa_bits: str | None, days: int, hosts: tuple[str, ...]
) -> None:
    """Reissue the server and client certificates in DIR from its CA.

    The CA is unchanged, so peers that trust ca.pem accept the new certificates. The
    server certificate keeps its names, plus each --host. Each file is replaced in one
    step (a key before its certificate), so a process watching them never reads half a file.
    """
    from meshsim.tls.authority import rotate_directory

    if key_type is None and rsa_bits is not None:
        raise click.BadParameter("needs --key-type rsa", param_hint="--rsa-bits")
    spec = None if key_type is None else key_spec(key_type, rsa_bits)
    report(rotate_directory(directory, key_spec=spec, days=days, hosts=hosts))


def key_spec(key_type: str, rsa_bits: str | None) -> KeySpec:
    from meshsim.tls.authority import KeySpec

    if key_type == "rsa":
        return KeySpec("rsa", int(rsa_bits or 2048))
    if rsa_bits is not None:
        raise click.BadParameter("applies only to --key-type rsa", param_hint="--rsa-bits")
    return KeySpec("ecdsa")


def report(issuance: Issuance) -> None:
    width = max(len(str(written.path)) for written in issuance.written)
    for written in issuance.written:
        until = f", valid until {written.not_after:%Y-%m-%d}" if written.not_after else " (mode 0600)"
        click.echo(f"wrote {written.path!s:<{width}}  {written.what}{until}")
    click.echo(f"server certificate names: {', '.join(issuance.server_names)}")
