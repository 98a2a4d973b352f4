"""`meshsim validate FILE...`: check scenario files without running them."""

from __future__ import annotations

import click

from meshsim.cli.app import Application


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.pass_obj
def validate(app: Application, files: tuple[str, ...]) -> None:
    """Check scenario FILES: exit 0 when all are valid, 2 naming the first bad key otherwise."""
    from meshsim.core.scenario import ScenarioError
    from meshsim.core.scenario_loader import load_scenario

    failed = False
    for path in files:
        try:
            scenario = load_scenario(path)
        except ScenarioError as error:
            app.display_error(str(error))
            failed = True
            continue
        replicas = sum(s.replicas for s in scenario.services)
        app.display_success(
            f"ok: {path} ({len(scenario.services)} service(s), {replicas} replica(s), "
            f"{len(scenario.clients)} client(s), {len(scenario.faults)} fault(s), "
            f"{len(scenario.assertions)} assertion(s))"
        )
    if failed:
        raise SystemExit(2)
