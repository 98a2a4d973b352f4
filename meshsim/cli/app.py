"""The application object every command receives: one console, a few semantic outputs."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from rich.console import Console, RenderableType
from rich.markup import escape


class Application:
    def __init__(self) -> None:
        self.console = Console(highlight=False)
        self.errors = Console(stderr=True, highlight=False)

    def display(self, renderable: RenderableType) -> None:
        self.console.print(renderable)

    def display_error(self, message: str) -> None:
        # Messages quote user input, which must never be read as markup.
        self.errors.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)

    def abort(self, message: str, code: int = 2) -> NoReturn:
        """The one way a command gives up: one line on stderr, and the exit code (2: bad input or a
        start-up that failed; 3: meshsim itself failed)."""
        self.display_error(message)
        raise SystemExit(code)

    def display_success(self, message: str) -> None:
        self.console.print(f"[bold green]{escape(message)}[/]", soft_wrap=True)

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal and sys.stdout.isatty()


# The admin endpoint's bearer token: one flag and one variable for every process that serves one.
admin_token_option = click.option(
    "--admin-token",
    envvar="MESHSIM_ADMIN_TOKEN",
    help="Bearer token the admin endpoint asks for (required beyond loopback) [env: MESHSIM_ADMIN_TOKEN].",
)


def admin_address(value: str, flag: str) -> str:
    """An admin endpoint's "host:port" from a flag: ":9090" is the seed's way of saying port 9090 on
    this machine (loopback)."""
    from meshsim.core.addresses import split_host_port

    written = f"127.0.0.1{value}" if value.startswith(":") else value
    try:
        host, port = split_host_port(written)
    except ValueError:
        raise click.BadParameter(f'expected "host:port" or ":port", got {value!r}', param_hint=flag) from None
    return f"{host}:{port}"


class OneLineFlags(click.Command):
    """A bad flag is one line naming it and exit 2, as every other bad input is, not click's usage."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as error:
            app = ctx.find_object(Application) or Application()
            app.abort(error.format_message())
