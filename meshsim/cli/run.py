"""`meshsim run SCENARIO`: simulate a scenario in virtual time (or play it live), print the report, judge it."""

from __future__ import annotations

import math
import shlex
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from meshsim.cli.app import Application

if TYPE_CHECKING:
    from rich.console import Console

    from meshsim.core.overrides import Assignment
    from meshsim.core.report import Report
    from meshsim.core.scenario import Scenario
    from meshsim.dashboard.load import ReplicaLoad
    from meshsim.runtime.observer import Observer


@click.command()
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option("--seed", type=click.IntRange(min=0), help="Override the scenario's seed.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario key by its dotted path in the TOML (balancer.policy=p2c); repeatable.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the JSON report here (- for stdout; with --both, NAME.sim.json and NAME.live.json).",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(allow_dash=False),
    help="Write the report as one HTML page with its charts here (with --both, NAME.sim.html and NAME.live.html).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no report, only the verdict.")
@click.option("--live", is_flag=True, help="Play it for real: replicas on loopback, in wall time.")
@click.option("--both", is_flag=True, help="Simulate it, play it live, and compare the two.")
@click.option("--force", is_flag=True, help="Play it live even when it asks for more calls than this machine carries.")
@click.pass_obj
def run(
    app: Application,
    scenario_path: str,
    seed: int | None,
    sets: tuple[str, ...],
    json_path: str | None,
    html_path: str | None,
    quiet: bool,
    live: bool,
    both: bool,
    force: bool,
) -> None:
    """Run SCENARIO deterministically, or --live against real replicas, or --both and compare; exit 0
    when its assertions pass, 1 when one fails (or, with --both, the runs differ), 2 on bad input, 3
    when the simulator itself fails."""
    from meshsim.core.scenario_loader import load_scenario

    overrides = _overrides(app, sets)
    scenario = load_scenario(scenario_path, overrides)
    if seed is not None:
        scenario = scenario.with_seed(seed)
    if both and json_path == "-":
        raise click.UsageError("--both writes two reports: give --json a file name")
    if html_path is not None:
        for mode in ("sim", "live") if both else (None,):
            _check_html_path(app, _html_path(html_path, mode))
    if live or both:
        from meshsim.stage.runner import check_load

        if not force:
            check_load(scenario)
    runs = []
    loads = []
    if both or not live:
        loads.append(_replica_load(html_path))
        runs.append(_simulate(app, scenario, scenario_path, quiet, loads[-1]))
    if live or both:
        loads.append(_replica_load(html_path))
        runs.append(_play_live(app, scenario, scenario_path, quiet, loads[-1]))
    reports = [report for report, _ in runs]
    for report, load in zip(reports, loads, strict=True):
        _write_json(app, report, json_path, both)
        if html_path is not None and load is not None:
            _write_html(app, report, load, html_path, both)
    show = app.console if json_path != "-" else app.errors
    verdicts = [_judge(report, wall, scenario, scenario_path, quiet, show, overrides) for report, wall in runs]
    if any(report.interrupted for report in reports):
        show.print("[bold yellow]INTERRUPTED[/]: the report covers the run until it was stopped")
        raise SystemExit(130)
    if both:
        from meshsim.cli.compare import render
        from meshsim.core.compare import compare

        sim, played = (report.to_dict() for report in reports)
        comparison = compare(sim, played, paths=("sim", "live"))
        show.print(render(comparison))
        if comparison.differences:
            raise SystemExit(1)
    if not all(verdicts):
        raise SystemExit(1)


def _replica_load(html_path: str | None) -> ReplicaLoad | None:
    """A listener counting each replica's attempts over time, for the HTML report's chart (only with --html)."""
    if html_path is None:
        return None
    from meshsim.dashboard.load import ReplicaLoad

    return ReplicaLoad()


def _observer(load: ReplicaLoad | None) -> Observer | None:
    if load is None:
        return None
    from meshsim.runtime.observer import Observer

    observer = Observer()
    load.subscribe(observer)
    return observer


def _simulate(
    app: Application, scenario: Scenario, scenario_path: str, quiet: bool, load: ReplicaLoad | None = None
) -> tuple[Report, float]:
    from rich.markup import escape

    from meshsim.cli.progress import VirtualTimeProgress
    from meshsim.core import cost
    from meshsim.sim.runner import run_scenario

    estimate = cost.estimate(scenario)
    if estimate.large and not quiet:
        app.errors.print(f"simulating {escape(estimate.describe())}", soft_wrap=True)
    progress = None if quiet or not app.interactive else VirtualTimeProgress(app.console, scenario.duration)
    started = time.monotonic()
    try:
        report = run_scenario(scenario, progress=progress, observer=_observer(load))
    except Exception as error:
        _failed(app, "the simulator", scenario, scenario_path, error)
    finally:
        if progress is not None:
            progress.close()
    return report, time.monotonic() - started


def _play_live(
    app: Application, scenario: Scenario, scenario_path: str, quiet: bool, load: ReplicaLoad | None = None
) -> tuple[Report, float]:
    from rich.markup import escape

    from meshsim.cli.progress import LiveProgress
    from meshsim.core.errors import MeshsimError
    from meshsim.stage.runner import run_live

    def playing(replicas: dict[str, list[str]]) -> None:
        if not quiet:
            app.errors.print(f"playing {scenario_path} live for {scenario.duration:g} s", soft_wrap=True)
            for service, addresses in replicas.items():
                line = textwrap.fill(" ".join(addresses), 78, initial_indent=f"  {service}: ", subsequent_indent="    ")
                app.errors.print(escape(line), soft_wrap=True)

    progress = None if quiet or not app.interactive else LiveProgress(app.console, scenario.duration)
    started = time.monotonic()
    try:
        report = run_live(scenario, progress=progress, observer=_observer(load), on_start=playing)
    except MeshsimError:
        raise  # the user's to fix (a port, a file): one line, from the root command
    except Exception as error:
        _failed(app, "the live run", scenario, scenario_path, error)
    finally:
        if progress is not None:
            progress.close()
    return report, time.monotonic() - started


def _write_json(app: Application, report: Report, json_path: str | None, both: bool) -> None:
    if json_path is None:
        return
    if json_path == "-":
        click.echo(report.to_json(), nl=False)
        return
    path = Path(json_path)
    if both:
        path = path.with_name(f"{path.stem}.{report.mode}{path.suffix or '.json'}")
    try:
        path.write_text(report.to_json(), encoding="utf-8")
    except OSError as error:
        app.abort(f"{path}: cannot write the JSON report: {error.strerror or error}")


def _html_path(html_path: str, mode: str | None) -> Path:
    """Where --html writes; with --both (a `mode`), NAME.MODE.html beside it, as --json does."""
    path = Path(html_path)
    if mode is None:
        return path
    return path.with_name(f"{path.stem}.{mode}{path.suffix or '.html'}")


def _check_html_path(app: Application, path: Path) -> None:
    """Before the run, so that a long run is not spent on a report with nowhere to go."""
    if path.is_dir():
        app.abort(f"--html {path}: is a directory; give a file name")
    if not path.parent.is_dir():
        app.abort(f"--html {path}: there is no directory {path.parent}")


def _write_html(app: Application, report: Report, load: ReplicaLoad, html_path: str, both: bool) -> None:
    from meshsim.dashboard.page import report_page

    path = _html_path(html_path, report.mode if both else None)
    names = [endpoint.name for endpoint in report.endpoints]
    per_replica = load.buckets(names, report.bucket_width, len(report.timeline))
    try:
        path.write_text(report_page(report.to_dict(), per_replica), encoding="utf-8")
    except OSError as error:
        app.abort(f"--html {path}: cannot write the HTML report: {error.strerror or error}")


def _overrides(app: Application, sets: tuple[str, ...]) -> tuple[Assignment, ...]:
    """`--set KEY=VALUE`, one value each (a list of values is `meshsim sweep`'s)."""
    from meshsim.core.overrides import parse_set

    overrides: list[Assignment] = []
    for argument in sets:
        try:
            values = parse_set(argument)
        except ValueError as error:
            app.abort(f"--set: {error}")
        if len(values) > 1:
            app.abort(f"--set {argument}: one value per key (meshsim sweep runs several)")
        if any(o.key == values[0].key for o in overrides):
            app.abort(f"--set: {values[0].key} is set twice")
        overrides.append(values[0])
    return tuple(overrides)


def _judge(
    report: Report,
    wall: float,
    scenario: Scenario,
    scenario_path: str,
    quiet: bool,
    show: Console,
    overrides: tuple[Assignment, ...] = (),
) -> bool:
    """Print the report and its verdict; whether every assertion passed."""
    from rich.markup import escape

    from meshsim.cli.render import render_report

    if not quiet:
        show.print(render_report(report, wall_seconds=wall))
    mode = " --live" if report.mode == "live" else ""
    failed = [a for a in report.assertions if not a.passed]
    if failed:
        flags = "".join(f" {o.flag}" for o in overrides)
        command = f"meshsim run {shlex.quote(scenario_path)} --seed {scenario.seed}{flags}{mode}"
        for result in failed:
            show.print(
                f"[bold red]FAILED[/] {escape(result.config.name)}: observed {_observed(result.observed)}, "
                f"expected {result.expected}",
                soft_wrap=True,
            )
        # Never wrapped: people copy this line.
        show.print(f"reproduce with: [bold]{escape(command)}[/]", soft_wrap=True)
        return False
    where = "live, " if report.mode == "live" else ""
    interrupted = ", interrupted" if report.interrupted else ""
    show.print(
        f"[bold green]PASSED[/] {escape(scenario.name)} ({where}seed {scenario.seed}, "
        f"{len(report.assertions)} assertion(s){interrupted})"
    )
    return True


def _failed(app: Application, what: str, scenario: Scenario, scenario_path: str, error: Exception) -> NoReturn:
    """Not the file's fault and not a failed assertion: a bug in meshsim, told apart by its code."""
    cause = _innermost(error)
    app.abort(
        f"{scenario_path}: {what} failed (seed {scenario.seed}): {type(cause).__name__}: {cause}; "
        "this is a bug in meshsim, please report it with the scenario file",
        3,
    )


def _innermost(error: BaseException) -> BaseException:
    """The first exception inside Trio's groups, which says what broke (an ActorFailed names the actor)."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _observed(value: float) -> str:
    return "nothing (no calls in scope)" if math.isnan(value) else f"{value:.6g}"
