"""`meshsim serve` as a process: its replicas, their admin endpoint and traces, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import hypercorn.asyncio

from meshsim.demo.admin import ServeAdmin
from meshsim.demo.metrics import ServerMetrics
from meshsim.demo.server import Replica, ServeConfig, ServeError, start_replicas, stop_replicas
from meshsim.live.admin import AdminApp, check_listen, http_config
from meshsim.live.tracing import Tracing

logger = logging.getLogger(__name__)


async def serve(
    config: ServeConfig, announce: Callable[[Replica], None], announce_admin: Callable[[str], None] | None = None
) -> None:
    """Run replicas (and their admin endpoint) until SIGINT or SIGTERM, then shut them down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics = None if config.metrics_listen is None else ServerMetrics()
    serving_admin = None
    try:
        http = None
        if config.metrics_listen is not None:
            check_listen(config.metrics_listen, config.admin_token, "the admin endpoint")
            try:  # bound before the replicas start: a port in use is an error before anything runs
                http, address = http_config(config.metrics_listen)
            except OSError as error:
                where = config.metrics_listen
                raise ServeError(f"cannot serve the admin endpoint on {where}: {error.strerror}") from None
        tracing = Tracing.from_environment(config.name)
        replicas = await start_replicas(config, metrics, tracing)
        try:
            for replica in replicas:
                announce(replica)
            logger.info(
                f"{len(replicas)} replica{'s' if len(replicas) != 1 else ''} of {config.name} serving "
                f"on {', '.join(r.address for r in replicas)}; tracing {'on' if tracing else 'off'}",
                extra={
                    "fields": {"event": "started", "replicas": {r.name: r.address for r in replicas}},
                    "on_stdout": True,
                },
            )
            if http is not None and metrics is not None:
                admin = AdminApp(ServeAdmin(config, replicas, metrics.registry), config.admin_token)
                serving_admin = asyncio.create_task(hypercorn.asyncio.serve(admin, http, shutdown_trigger=stop.wait))
                if announce_admin is not None:
                    announce_admin(address)
            await stop.wait()
        finally:
            await stop_replicas(replicas, config.grace)
            if tracing is not None:
                tracing.shutdown()
            logger.info(f"replicas of {config.name} stopped", extra={"fields": {"event": "stopped"}, "on_stdout": True})
    finally:
        stop.set()
        if serving_admin is not None:
            await serving_admin
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
