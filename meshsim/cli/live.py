"""`meshsim live CONFIG`: the proxy in front of real replicas, until SIGINT or SIGTERM."""

from __future__ import annotations

import click

from meshsim.cli.app import Application


@click.command("live")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.pass_obj
def live_command(app: Application, config_path: str) -> None:
    """Run a gRPC proxy that balances any method over the replicas in CONFIG (TOML)."""
    import signal

    import trio

    from meshsim.core.live_config import load_live_config
    from meshsim.core.scenario import ScenarioError
    from meshsim.live import run
    from meshsim.live.proxy import Proxy, ProxyConfig

    try:
        config = load_live_config(config_path)
    except ScenarioError as error:
        app.display_error(str(error))
        raise SystemExit(2) from None
    proxy_config = ProxyConfig(
        service=config.service,
        endpoints=config.endpoints,
        listen=config.listen,
        balancer=config.balancer,
        health=config.health,
    )

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with Proxy(proxy_config) as proxy:
                click.echo(f"proxying {config.service} on {proxy.address} to {', '.join(config.endpoints)}")
                async for _ in signals:
                    break

    try:
        run(main)
    except ValueError as error:
        app.display_error(f"{config_path}: {error}")
        raise SystemExit(2) from None
    click.echo("stopped")
