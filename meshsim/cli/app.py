"""The application object every command receives: one console, a few semantic outputs."""

from __future__ import annotations

import sys

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

    def display_success(self, message: str) -> None:
        self.console.print(f"[bold green]{escape(message)}[/]", soft_wrap=True)

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal and sys.stdout.isatty()
