"""`meshsim serve`: demo replicas of mesh.v1.MeshService with health checks and reflection."""

from __future__ import annotations

import click

from meshsim.cli.app import Application, admin_address, admin_token_option


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=50051, show_default=True, help="First port (0: any free ports)."
)
@click.option(
    "--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Replicas, on consecutive ports."
)
@click.option("--latency", default="0ms", show_default=True, help='Latency added to every call, e.g. "50ms".')
@click.option(
    "--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Share of calls failed."
)
@click.option("--error-status", default="UNAVAILABLE", show_default=True, help="Status of the failed calls.")
@click.option("--grace", default="5s", show_default=True, help="How long calls in flight may finish at shutdown.")
@click.option(
    "--cert-dir",
    type=click.Path(file_okay=False),
    help="Serve mTLS with the files `meshsim certs init DIR` wrote (ca.pem, server.pem, server-key.pem).",
)
@click.option("--ca", "ca_file", type=click.Path(dir_okay=False), help="The CA whose clients are accepted.")
@click.option("--cert", "cert_file", type=click.Path(dir_okay=False), help="The server certificate.")
@click.option("--key", "key_file", type=click.Path(dir_okay=False), help="The server's private key.")
@click.option(
    "--admin",
    "--metrics",
    "metrics_listen",
    metavar="HOST:PORT",
    help="Serve the admin endpoint here (e.g. :9090): /metrics, /ready, /healthz, /clusters, /config, /faults.",
)
@admin_token_option
@click.option(
    "--name",
    default="api",
    show_default=True,
    help="The service the replicas are named after in chaos targets (api/0, api/1, ...).",
)
@click.option(
    "--keepalive-min-time",
    default="1s",
    show_default=True,
    help="Accept HTTP/2 keepalive pings this often (a gRPC server's default is 5m).",
)
@click.option("--reuse-port", is_flag=True, help="Share the ports with other servers already on them (SO_REUSEPORT).")
@click.pass_obj
def serve(
    app: Application,
    host: str,
    port: int,
    replicas: int,
    latency: str,
    error_rate: float,
    error_status: str,
    grace: str,
    cert_dir: str | None,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    metrics_listen: str | None,
    admin_token: str | None,
    name: str,
    keepalive_min_time: str,
    reuse_port: bool,
) -> None:
    """Serve mesh.v1.MeshService, grpc.health.v1 and reflection until SIGINT or SIGTERM.

    With --admin, faults can be added to single replicas while they serve (`meshsim chaos`)."""
    import asyncio

    from meshsim.core.status import StatusCode
    from meshsim.core.units import parse_duration
    from meshsim.demo.process import serve as run_replicas
    from meshsim.demo.server import Replica, ServeConfig
    from meshsim.demo.servicer import ServerFaults
    from meshsim.live.admin import check_listen

    def duration(option: str, value: str) -> float:
        try:
            return parse_duration(value)
        except ValueError:
            raise click.BadParameter(f'expected a duration like "50ms", got {value!r}', param_hint=option) from None

    try:
        status = StatusCode.parse(error_status)
    except ValueError:
        raise click.BadParameter(f"unknown gRPC status {error_status!r}", param_hint="--error-status") from None
    if status is StatusCode.OK:
        raise click.BadParameter("an injected error cannot be OK", param_hint="--error-status")
    tls = None
    if cert_dir is not None or ca_file or cert_file or key_file:
        from pathlib import Path

        from meshsim.tls.material import TlsFiles

        base = TlsFiles.in_dir(cert_dir or ".", "server")
        if cert_dir is None and not (ca_file and cert_file and key_file):
            raise click.UsageError("mTLS needs --cert-dir, or all of --ca, --cert and --key")
        tls = TlsFiles(
            ca=Path(ca_file) if ca_file else base.ca,
            cert=Path(cert_file) if cert_file else base.cert,
            key=Path(key_file) if key_file else base.key,
        )
    listen = None if metrics_listen is None else admin_address(metrics_listen, "--admin/--metrics")
    if listen is not None:
        check_listen(listen, admin_token, "--admin")
    if "/" in name or not name:
        raise click.BadParameter(f"expected a name without '/', got {name!r}", param_hint="--name")
    config = ServeConfig(
        host=host,
        port=port,
        replicas=replicas,
        grace=duration("--grace", grace),
        faults=ServerFaults(duration("--latency", latency), error_rate, status),
        tls=tls,
        metrics_listen=listen,
        admin_token=admin_token or None,
        name=name,
        keepalive_min_time=duration("--keepalive-min-time", keepalive_min_time),
        reuse_port=reuse_port,
    )

    def announce(replica: Replica) -> None:
        secure = " (mTLS)" if replica.tls is not None else ""
        click.echo(f"serving mesh.v1.MeshService on {replica.address}{secure}", nl=True)

    def announce_metrics(address: str) -> None:
        click.echo(f"metrics on http://{address}/metrics")
        names = f"{config.name}/0" + (f" to {config.name}/{replicas - 1}" if replicas > 1 else "")
        click.echo(f"admin on http://{address}/ (chaos targets {names}, in the order above)")

    asyncio.run(run_replicas(config, announce, announce_metrics))
    click.echo("stopped")
