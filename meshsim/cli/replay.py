"""`meshsim replay RECORDING`: the recorded traffic simulated under each balancing policy, compared."""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from meshsim.cli.app import Application, OneLineFlags

if TYPE_CHECKING:
    from meshsim.core.call_log import CallLog
    from meshsim.core.events import RequestFinished
    from meshsim.core.replay import Derivation, Figures
    from meshsim.core.scenario import Scenario

# Replicas per table of shares: a run's label and eight columns of "100.0%" fit in 80 columns.
SHARE_COLUMNS = 7
NAMED_REPLICAS = 12  # which recorded endpoint each replica is, listed up to this many
# The largest seed, as the scenario loader's `seed` key and core.sweep.MAX_SEED (not imported: the
# command's flags are read before it runs, and that module loads much of the simulator's core).
MAX_SEED = 2**63 - 1


class _ReplayCommand(OneLineFlags):
    """Flags as sweep's (one line each); Ctrl-C, whenever it comes (reading a large recording,
    simulating, writing), is one line and exit 130, as in every command that runs for long."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BaseException as error:
            if not _is_interrupt(error):
                raise
        app = ctx.find_object(Application) or Application()
        app.abort("interrupted", 130)


def _is_interrupt(error: BaseException) -> bool:
    """Ctrl-C: KeyboardInterrupt, or inside a simulation, a group of them out of trio's nursery."""
    if isinstance(error, BaseExceptionGroup):
        return error.split(KeyboardInterrupt)[1] is None
    return isinstance(error, KeyboardInterrupt)


@click.command(cls=_ReplayCommand)
@click.argument("recording", metavar="RECORDING", type=click.Path(dir_okay=False))
@click.option(
    "--policy",
    "policy_list",
    default="round_robin,least_connections,p2c,peak_ewma",
    show_default=True,
    metavar="NAME,...",
    help="The balancing policies to compare, comma-separated.",
)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=1, show_default=True, help="The seed of every run.")
@click.option("--step", metavar="DURATION", help="The arrival schedule's step (default 1s).")
@click.option(
    "--emit",
    "emit_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the derived scenario here (- for stdout), to edit and `meshsim run`.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the comparison as JSON here (- for stdout).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    help="Policies simulated at once, each in a process of its own (default: one per core).",
)
@click.pass_obj
def replay(
    app: Application,
    recording: str,
    policy_list: str,
    seed: int,
    step: str | None,
    emit_path: str | None,
    json_path: str | None,
    jobs: int | None,
) -> None:
    """Build a scenario from RECORDING (a `meshsim live --record` or GrpcClient(record=) file): each
    replica's measured latency and statuses, the recorded arrivals; simulate it under each policy
    with the same seed, and compare success, latency, each replica's share and attempts per call."""
    from meshsim.core.call_log import read_call_log
    from meshsim.core.errors import ConfigError
    from meshsim.core.pickers import POLICIES
    from meshsim.core.replay import best_p99, compare_policies, default_path, derive, recorded_figures
    from meshsim.core.scenario import ScenarioError
    from meshsim.core.scenario_loader import parse_scenario
    from meshsim.core.units import parse_duration

    policies = list(dict.fromkeys(name.strip() for name in policy_list.split(",") if name.strip()))
    unknown = [name for name in policies if name not in POLICIES]
    if unknown or not policies:
        app.abort(f"--policy: expected names from {', '.join(POLICIES)}, got {policy_list!r}")
    step_seconds = None
    if step is not None:
        try:
            step_seconds = parse_duration(step)
        except ValueError:
            app.abort(f'--step: expected a duration like "1s", got {step!r}')
        if step_seconds < 0.001:
            app.abort(f"--step: must be at least 1ms, got {step!r}")
    if emit_path == "-" and json_path == "-":
        app.abort("--emit - and --json - would both write to stdout: give one a file name")
    if json_path not in (None, "-") and not Path(json_path).parent.is_dir():
        # Before the runs, so that they are not spent on a comparison with nowhere to go.
        app.abort(f"--json {json_path}: there is no directory {Path(json_path).parent}")

    began = time.perf_counter()
    log = read_call_log(recording)
    derivation = derive(log, seed=seed, step=step_seconds, policy=policies[0])
    source = Path(emit_path) if emit_path not in (None, "-") else default_path(Path(recording))
    try:
        scenario = parse_scenario(derivation.text, source)
    except ScenarioError as error:
        # A recording too large to simulate (the cost limits), never a file of the user's.
        raise ConfigError(f"{recording}: the scenario it makes cannot run: {error}") from None
    if emit_path == "-":
        click.echo(derivation.text, nl=False)
    elif emit_path is not None:
        try:
            Path(emit_path).write_text(derivation.text, encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{emit_path}: cannot write the scenario: {error.strerror or error}") from None

    replicas = [name for name, _, _ in derivation.replicas]
    show = app.errors if "-" in (emit_path, json_path) else app.console
    jobs = min(jobs or os.cpu_count() or 1, len(policies))
    spinner = show.status(f"simulating {len(policies)} policies", spinner="dots") if show.is_terminal else _Quiet()
    try:
        with spinner:
            if jobs == 1:
                rows = compare_policies(scenario, replicas, policies, _simulate)
            else:
                rows = _side_by_side(scenario, replicas, policies, jobs)
    except BrokenExecutor as error:
        app.abort(f"a worker process died while simulating the policies (killed, or out of memory?): {error}", 3)
    recorded = recorded_figures(log, derivation)
    best = best_p99(rows)
    took = time.perf_counter() - began
    if json_path is not None:
        document = _document(recording, log, derivation, recorded, rows, best, seed)
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        if json_path == "-":
            click.echo(text, nl=False)
        else:
            try:
                Path(json_path).write_text(text, encoding="utf-8")
            except OSError as error:
                raise ConfigError(f"{json_path}: cannot write the JSON: {error.strerror or error}") from None
    show.print(render(recording, log, derivation, [recorded, *rows], best, seed, took))
    if emit_path not in (None, "-"):
        show.print(f"wrote the scenario to {emit_path}; `meshsim run {emit_path}` runs it", soft_wrap=True)


def _simulate(scenario: Scenario, listener: Callable[[RequestFinished], None]) -> None:
    from meshsim.core.events import RequestFinished
    from meshsim.runtime.observer import Observer
    from meshsim.sim.runner import run_scenario

    observer = Observer()
    observer.subscribe(RequestFinished, listener)
    run_scenario(scenario, observer=observer)


def _side_by_side(scenario: Scenario, replicas: list[str], policies: list[str], jobs: int) -> list[Figures]:
    """Each policy's run in a worker process of its own. Each run is deterministic on its own, so
    running them side by side changes nothing but the wait."""
    from meshsim.sweep.pool import simulation_pool

    with simulation_pool(jobs) as pool:
        return list(pool.map(_one_policy, itertools.repeat(scenario), itertools.repeat(replicas), policies))


def _one_policy(scenario: Scenario, replicas: list[str], policy: str) -> Figures:
    """One policy's run, in a worker process."""
    from meshsim.core.replay import compare_policies

    (row,) = compare_policies(scenario, replicas, [policy], _simulate)
    return row


class _Quiet:
    """No spinner (not a terminal): a context that gives no status to update."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _document(
    recording: str,
    log: CallLog,
    derivation: Derivation,
    recorded: Figures,
    rows: Sequence[Figures],
    best: Figures | None,
    seed: int,
) -> dict[str, Any]:
    from meshsim.core.replay import REPLAY_SCHEMA

    replicas = [name for name, _, _ in derivation.replicas]
    return {
        "schema": REPLAY_SCHEMA,
        "recording": {
            "path": recording,
            "calls": len(log),
            "replayed_calls": derivation.calls,
            "span_s": round(derivation.span, 6),
            "wall_start": log.wall_start,
            "source": log.source,
            "complete": log.complete,
            "dropped": log.dropped,
        },
        "scenario": {
            "seed": seed,
            "rate_step_s": derivation.step,
            "replicas": {name: recorded for name, recorded, _ in derivation.replicas},
        },
        "notes": list(derivation.notes),
        "recorded": recorded.to_dict(replicas),
        "runs": [row.to_dict(replicas) for row in rows],
        "lowest_p99": None if best is None else best.label,
    }


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _share(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1%}"


def render(
    recording: str,
    log: CallLog,
    derivation: Derivation,
    rows: Sequence[Figures],
    best: Figures | None,
    seed: int,
    took: float,
) -> RenderableType:
    """The comparison in 80 columns: the figures of each run, then each replica's share of the calls."""
    when = ""
    if log.wall_start is not None:
        from datetime import UTC, datetime

        when = f"  (recorded from {datetime.fromtimestamp(log.wall_start, tz=UTC):%Y-%m-%d %H:%M:%S} UTC)"
    header = Text.assemble(("replay ", "bold"), (recording, "bold"), when)
    summary = Text(
        f"{derivation.calls:,} calls over {derivation.span:.1f} s  ·  seed {seed}  ·  replayed in {took:.1f} s"
    )
    named = [f"{name} = {recorded}" for name, recorded, _ in derivation.replicas]
    if len(named) > NAMED_REPLICAS:
        named[NAMED_REPLICAS:] = [f"and {len(named) - NAMED_REPLICAS} more (--json names them all)"]
    replicas = Text("replicas: " + ", ".join(named), style="dim")
    figures = Table(
        show_edge=False, title="The recorded calls, and each policy simulated on them", title_justify="left"
    )
    for column in ("run", "success", "p50 ms", "p99 ms", "p99.9 ms", "attempts/call"):
        figures.add_column(column, justify="left" if column == "run" else "right")
    for row in rows:
        style = "bold green" if best is not None and row is best else ("dim" if row.label == "recorded" else "")
        figures.add_row(
            row.label,
            _success(row.success_rate),
            _ms(row.p50),
            _ms(row.p99),
            _ms(row.p999),
            "-" if math.isnan(row.amplification) else f"{row.amplification:.3f}",
            style=style,
        )
    parts: list[RenderableType] = [header, summary, replicas, figures]
    names = [name for name, _, _ in derivation.replicas]
    for first in range(0, len(names), SHARE_COLUMNS):
        chunk = names[first : first + SHARE_COLUMNS]
        shares = Table(show_edge=False, title="Share of the calls each replica answered", title_justify="left")
        shares.add_column("run")
        for name in chunk:
            shares.add_column(name, justify="right", overflow="fold")
        for row in rows:
            shares.add_row(row.label, *(_share(s) for s in row.shares[first : first + SHARE_COLUMNS]))
        parts.append(shares)
    if best is not None:
        # Against the first policy asked for (the one in use, typically), unless that is the best.
        baseline = next((row for row in rows if row.label not in ("recorded", best.label)), None)
        versus = f" (vs {baseline.label} {_ms(baseline.p99)} ms)" if baseline is not None else ""
        parts.append(Text.assemble("lowest p99: ", (best.label, "bold green"), f" {_ms(best.p99)} ms{versus}"))
    parts += [Text(f"note: {note}", style="yellow") for note in derivation.notes]
    return Group(*parts)


def _success(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2%}"
