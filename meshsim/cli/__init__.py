"""The `meshsim` command: a click group whose commands live one per module."""

from __future__ import annotations

import click

from meshsim import __version__
from meshsim.cli.app import Application
from meshsim.cli.certs import certs
from meshsim.cli.chaos import chaos
from meshsim.cli.compare import compare
from meshsim.cli.live import live_command
from meshsim.cli.logs import FORMATS, LEVELS, configure_logging
from meshsim.cli.replay import replay
from meshsim.cli.run import run
from meshsim.cli.serve import serve
from meshsim.cli.sweep import sweep
from meshsim.cli.top import top
from meshsim.cli.validate import validate
from meshsim.core.errors import ConfigError, StartupError


class _Meshsim(click.Group):
    """The root group: meshsim's own errors become one line and their exit code here, once, rather
    than in each command (which catches only to add what it alone knows)."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (ConfigError, StartupError) as error:
            app = ctx.obj if isinstance(ctx.obj, Application) else Application()
            app.abort(str(error), 2)


@click.group(cls=_Meshsim, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="meshsim")
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    default="text",
    envvar="MESHSIM_LOG_FORMAT",
    show_default=True,
    help="Log lines on stderr as text for a terminal or JSON lines for machines [env: MESHSIM_LOG_FORMAT].",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS),
    default="info",
    envvar="MESHSIM_LOG_LEVEL",
    show_default=True,
    help="The least important lines logged [env: MESHSIM_LOG_LEVEL].",
)
@click.pass_context
def main(ctx: click.Context, log_format: str, log_level: str) -> None:
    """Simulate and run gRPC service meshes: load balancing, health checks and failures."""
    ctx.obj = Application()
    # Here, before any command imports grpc: gRPC core reads its logging settings only then.
    ctx.with_resource(configure_logging(log_format, log_level))


main.add_command(run)
main.add_command(validate)
main.add_command(serve)
main.add_command(live_command)
main.add_command(certs)
main.add_command(top)
main.add_command(compare)
main.add_command(replay)
main.add_command(chaos)
main.add_command(sweep)

__all__ = ["main"]
