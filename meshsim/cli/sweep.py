"""`meshsim sweep SCENARIO --seeds 1-1000 [--set KEY=V1,V2 ...]`: every combination of the `--set`
values times every seed, on a local process pool or a Dask cluster; a summary of the verdicts and
of how the key figures spread across seeds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from meshsim.cli.app import Application, OneLineFlags

if TYPE_CHECKING:
    from rich.console import Console

    from meshsim.core.sweep import Combination, SweepResult
    from meshsim.sweep.engines import Engine
    from meshsim.sweep.job import ScenarioSource


@click.command(cls=OneLineFlags)
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.option(
    "--seeds", default="1-100", show_default=True, help="The seeds to run: 1-1000, or 1,5,9, or both (1-10,20)."
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Sweep a scenario key, by its dotted path in the TOML (balancer.policy=round_robin,p2c); repeatable.",
)
@click.option("--workers", type=click.IntRange(min=1, max=1024), help="Local worker processes [default: one per core].")
@click.option(
    "--cluster", metavar="tcp://HOST:8786", help="Run on the workers of this Dask scheduler instead of locally."
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write every run's figures and the summary as JSON here (- for stdout).",
)
@click.option("--until-fail", is_flag=True, help="Stop at the first failing run, in (combination, seed) order.")
@click.pass_obj
def sweep(
    app: Application,
    scenario_path: str,
    seeds: str,
    sets: tuple[str, ...],
    workers: int | None,
    cluster: str | None,
    json_path: str | None,
    until_fail: bool,
) -> None:
    """Run SCENARIO once per seed for every combination of the --set values; print which runs
    failed (with the command that reproduces each) and how the figures spread across seeds. Exit 0
    when every run passes its assertions, 1 when one fails, 2 on bad input, 3 when the simulator
    itself fails."""
    from meshsim.core.config import read_text
    from meshsim.core.overrides import parse_set
    from meshsim.core.scenario import ScenarioError
    from meshsim.core.sweep import combinations, parse_seeds
    from meshsim.sweep.driver import check
    from meshsim.sweep.job import ScenarioSource

    try:
        seed_list = parse_seeds(seeds)
    except ValueError as error:
        app.abort(f"--seeds: {error}")
    try:
        expanded = combinations([parse_set(argument) for argument in sets])
    except ValueError as error:
        app.abort(f"--set: {error}")
    if cluster is not None and workers is not None:
        app.abort("--workers: a cluster's workers are its own; give --workers or --cluster, not both")
    if json_path not in (None, "-") and not Path(json_path).parent.is_dir():
        # Before the sweep, so that hours of runs are not spent on a result with nowhere to go.
        app.abort(f"--json {json_path}: there is no directory {Path(json_path).parent}")
    engine = _engine(app, workers, cluster)
    source = ScenarioSource(scenario_path, read_text(Path(scenario_path), ScenarioError))
    try:
        scenario = check(source, expanded, seed_list)
    except ScenarioError:
        raise  # a bad value, file or --set: one line from the root command
    except ValueError as error:  # too many runs
        app.abort(f"--seeds: {error}")
    show = app.errors if json_path == "-" else app.console
    result, seconds = _run(app, source, scenario.name, seed_list, expanded, engine, until_fail, show)
    if json_path == "-":
        click.echo(result.to_json(), nl=False)
    elif json_path is not None:
        try:
            Path(json_path).write_text(result.to_json(), encoding="utf-8")
        except OSError as error:
            app.abort(f"--json {json_path}: cannot write: {error.strerror or error}")
    from meshsim.cli.sweep_view import render

    # Not cropped: the reproducing commands run past 80 columns rather than be cut or wrapped.
    show.print(render(result, seconds, engine.description), crop=False)
    if result.failed:
        raise SystemExit(1)


def _engine(app: Application, workers: int | None, cluster: str | None) -> Engine:
    from meshsim.sweep.engines import DaskCluster, LocalPool

    if cluster is None:
        return LocalPool(workers)
    try:
        return DaskCluster(cluster)
    except ValueError as error:
        app.abort(f"--cluster: {error}")


def _run(
    app: Application,
    source: ScenarioSource,
    name: str,
    seeds: tuple[int, ...],
    expanded: tuple[Combination, ...],
    engine: Engine,
    until_fail: bool,
    show: Console,
) -> tuple[SweepResult, float]:
    from meshsim.cli.sweep_view import SweepProgress
    from meshsim.sweep.driver import SweepCrashed, run_sweep
    from meshsim.sweep.engines import EngineFailed

    progress = SweepProgress(show, len(seeds) * len(expanded)) if show.is_terminal else None
    started = time.perf_counter()
    try:
        result = run_sweep(source, name, seeds, expanded, engine, until_fail, progress)
    except SweepCrashed as crash:
        from meshsim.core.sweep import reproduce

        command = reproduce(source.path, crash.run.seed, crash.combination)
        app.abort(
            f"{source.path}: the simulator failed (seed {crash.run.seed}): {crash.run.error}; this is a bug in "
            f"meshsim, please report it with the scenario file; reproduce with: {command}",
            3,
        )
    except EngineFailed as failure:
        app.abort(str(failure), failure.code)
    except KeyboardInterrupt:
        app.abort("interrupted", 130)
    finally:
        if progress is not None:
            progress.close()
    return result, time.perf_counter() - started
