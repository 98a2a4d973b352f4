"""`meshsim live CONFIG`: the proxy in front of real replicas, until SIGINT or SIGTERM."""

from __future__ import annotations

import click

from meshsim.cli.app import Application


@click.command("live")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--listen", metavar="HOST:PORT", help="Listen here instead of where CONFIG says.")
@click.pass_obj
def live_command(app: Application, config_path: str, listen: str | None) -> None:
    """Run a gRPC proxy that balances any method over the replicas in CONFIG (TOML, or YAML)."""
    import signal

    import attrs
    import trio

    from meshsim.core.live_config import is_address, load_live_config
    from meshsim.core.scenario import ScenarioError
    from meshsim.live import run
    from meshsim.live.proxy import Proxy
    from meshsim.tls.material import TlsError

    try:
        config = load_live_config(config_path)
    except ScenarioError as error:
        app.display_error(str(error))
        raise SystemExit(2) from None
    if listen is not None:
        if not is_address(listen):
            raise click.BadParameter(f'expected "host:port", got {listen!r}', param_hint="--listen")
        config = attrs.evolve(config, listen=listen)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with Proxy(config) as proxy:
                for cluster in config.clusters:
                    where = ", ".join(cluster.endpoints) or (cluster.discovery.source if cluster.discovery else "")
                    click.echo(f"proxying {cluster.service} on {proxy.address} to {where}")
                if proxy.metrics_address:
                    click.echo(f"metrics on http://{proxy.metrics_address}/metrics")
                async for _ in signals:
                    break

    try:
        run(main)
    except (ValueError, TlsError) as error:
        app.display_error(f"{config_path}: {error}")
        raise SystemExit(2) from None
    click.echo("stopped")
