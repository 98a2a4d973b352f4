"""`meshsim serve`: demo replicas of mesh.v1.MeshService with health checks and reflection."""

from __future__ import annotations

import click

from meshsim.cli.app import Application


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
) -> None:
    """Serve mesh.v1.MeshService, grpc.health.v1 and reflection until SIGINT or SIGTERM."""
    import asyncio

    from meshsim.core.status import StatusCode
    from meshsim.core.units import parse_duration
    from meshsim.live.server import Replica, ServeConfig, ServeError
    from meshsim.live.server import serve as run_replicas
    from meshsim.live.servicer import ServerFaults

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
    config = ServeConfig(
        host=host,
        port=port,
        replicas=replicas,
        grace=duration("--grace", grace),
        faults=ServerFaults(duration("--latency", latency), error_rate, status),
    )

    def announce(replica: Replica) -> None:
        click.echo(f"serving mesh.v1.MeshService on {replica.address}", nl=True)

    try:
        asyncio.run(run_replicas(config, announce))
    except ServeError as error:
        app.display_error(str(error))
        raise SystemExit(2) from None
    click.echo("stopped")
