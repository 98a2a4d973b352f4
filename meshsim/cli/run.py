"""`meshsim run SCENARIO`: simulate a scenario in virtual time, print the report, judge it."""

from __future__ import annotations

import math
import shlex
import time
from pathlib import Path

import click

from meshsim.cli.app import Application


@click.command()
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option("--seed", type=click.IntRange(min=0), help="Override the scenario's seed.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the JSON report here (- for stdout).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no report, only the verdict.")
@click.pass_obj
def run(app: Application, scenario_path: str, seed: int | None, json_path: str | None, quiet: bool) -> None:
    """Run SCENARIO deterministically; exit 0 when its assertions pass, 1 when one fails, 2 on bad input,
    3 when the simulator itself fails."""
    from rich.markup import escape

    from meshsim.cli.progress import VirtualTimeProgress
    from meshsim.cli.render import render_report
    from meshsim.core import cost
    from meshsim.core.scenario_loader import load_scenario
    from meshsim.sim.runner import run_scenario

    scenario = load_scenario(scenario_path)
    if seed is not None:
        scenario = scenario.with_seed(seed)

    estimate = cost.estimate(scenario)
    if estimate.large and not quiet:
        app.errors.print(f"simulating {escape(estimate.describe())}", soft_wrap=True)
    progress = None if quiet or not app.interactive else VirtualTimeProgress(app.console, scenario.duration)
    started = time.monotonic()
    try:
        report = run_scenario(scenario, progress=progress)
    except Exception as error:
        # Not the file's fault and not a failed assertion: a bug in meshsim, told apart by its code.
        cause = _innermost(error)
        app.abort(
            f"{scenario_path}: the simulator failed (seed {scenario.seed}): {type(cause).__name__}: {cause}; "
            "this is a bug in meshsim, please report it with the scenario file",
            3,
        )
    finally:
        if progress is not None:
            progress.close()
    wall = time.monotonic() - started

    if json_path == "-":
        click.echo(report.to_json(), nl=False)
    elif json_path is not None:
        try:
            Path(json_path).write_text(report.to_json(), encoding="utf-8")
        except OSError as error:
            app.abort(f"{json_path}: cannot write the JSON report: {error.strerror or error}")

    show = app.console if json_path != "-" else app.errors
    if not quiet:
        show.print(render_report(report, wall_seconds=wall))
    failed = [a for a in report.assertions if not a.passed]
    if failed:
        command = f"meshsim run {shlex.quote(scenario_path)} --seed {scenario.seed}"
        for result in failed:
            show.print(
                f"[bold red]FAILED[/] {escape(result.config.name)}: observed {_observed(result.observed)}, "
                f"expected {result.expected}",
                soft_wrap=True,
            )
        # Never wrapped: people copy this line.
        show.print(f"reproduce with: [bold]{escape(command)}[/]", soft_wrap=True)
        raise SystemExit(1)
    show.print(
        f"[bold green]PASSED[/] {escape(scenario.name)} (seed {scenario.seed}, {len(report.assertions)} assertion(s))"
    )


def _innermost(error: BaseException) -> BaseException:
    """The first exception inside Trio's groups, which says what broke (an ActorFailed names the actor)."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _observed(value: float) -> str:
    return "nothing (no calls in scope)" if math.isnan(value) else f"{value:.6g}"
