"""`meshsim live CONFIG`: the proxy in front of real replicas, until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import click

from meshsim.cli.app import Application, admin_address, admin_token_option

if TYPE_CHECKING:
    from meshsim.live.proxy import Proxy


@click.command("live")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--listen", metavar="HOST:PORT", help="Listen here instead of where CONFIG says.")
@click.option(
    "--admin",
    "admin_listen",
    metavar="HOST:PORT",
    help="Serve the admin endpoint (/metrics, /ready, /clusters, /config, /faults) here, not where [metrics] says.",
)
@admin_token_option
@click.option(
    "--record",
    "record_path",
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="Record every call to PATH for `meshsim replay` (as [record] in CONFIG; its limits apply).",
)
@click.option(
    "--access-log",
    "access_share",
    type=click.FloatRange(0, 1),
    default=0.0,
    metavar="SHARE",
    help="Log this share of the calls one line each, with their trace ids (default 0: none).",
)
@click.pass_obj
def live_command(
    app: Application,
    config_path: str,
    listen: str | None,
    admin_listen: str | None,
    admin_token: str | None,
    record_path: str | None,
    access_share: float,
) -> None:
    """Run a gRPC proxy that balances any method over the replicas in CONFIG (TOML, or YAML).

    Its admin endpoint takes faults while it runs (`meshsim chaos`)."""
    import signal

    import attrs
    import trio

    from meshsim.core.addresses import is_address
    from meshsim.core.errors import ConfigError, StartupError
    from meshsim.live import run
    from meshsim.live.admin import check_listen
    from meshsim.live.config import load_live_config
    from meshsim.live.proxy import Proxy

    config = load_live_config(config_path)
    if listen is not None:
        if not is_address(listen):
            raise click.BadParameter(f'expected "host:port", got {listen!r}', param_hint="--listen")
        config = attrs.evolve(config, listen=listen)
    if record_path is not None:
        from pathlib import Path

        from meshsim.core.call_log import RecordConfig

        limits = config.record or RecordConfig(Path(record_path))
        config = attrs.evolve(config, record=attrs.evolve(limits, path=Path(record_path)))
    if admin_listen is not None:
        config = attrs.evolve(config, metrics_listen=admin_address(admin_listen, "--admin"))
    if config.metrics_listen is not None:
        flag = "--admin" if admin_listen is not None else f"{config_path}: [metrics] listen"
        check_listen(config.metrics_listen, admin_token, flag)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with Proxy(config, admin_token=admin_token or None, access_log=access_share) as proxy:
                _log_start(proxy)
                for cluster in config.clusters:
                    where = ", ".join(cluster.endpoints) or (cluster.discovery.source if cluster.discovery else "")
                    click.echo(f"proxying {cluster.service} on {proxy.address} to {where}")
                if proxy.recorder is not None:
                    click.echo(f"recording calls to {proxy.recorder.path}")
                if proxy.metrics_address:
                    click.echo(f"metrics on http://{proxy.metrics_address}/metrics")
                    click.echo(f"admin on http://{proxy.metrics_address}/ (faults: meshsim chaos URL list)")
                async for _ in signals:
                    break

    try:
        run(main)
    except (ConfigError, StartupError) as error:
        app.abort(f"{config_path}: {error}")  # which config the proxy could not start from
    logging.getLogger("meshsim.live").info("proxy stopped", extra={"fields": {"event": "stopped"}, "on_stdout": True})
    click.echo("stopped")


def _log_start(proxy: Proxy) -> None:
    """One line with the settings the proxy runs with (the whole of them at /config)."""
    config = proxy.config
    retry = config.policies.retry
    fields = {
        "event": "started",
        "listen": proxy.address,
        "clusters": [f"{c.service}: {', '.join(c.endpoints) or 'discovered'}" for c in config.clusters],
        "policy": config.balancer.policy,
        "health_interval_s": config.health.interval if config.health.enabled else None,
        "retry_max_attempts": None if retry is None else retry.max_attempts,
        "outlier_detection": config.outlier is not None,
        "mtls": config.mtls is not None,
        "tracing": proxy.tracing is not None,
        "admin": proxy.metrics_address or None,
    }
    logging.getLogger("meshsim.live").info(
        f"proxy started on {proxy.address}: {config.balancer.policy}, "
        f"retries {'off' if retry is None else f'up to {retry.max_attempts} attempts'}, "
        f"tracing {'on' if proxy.tracing is not None else 'off'}",
        extra={"fields": fields, "on_stdout": True},
    )
