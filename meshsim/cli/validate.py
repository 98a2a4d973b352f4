"""`meshsim validate FILE...`: check scenario files and proxy configs without running them."""

from __future__ import annotations

from pathlib import Path

import click

from meshsim.cli.app import Application


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.pass_obj
def validate(app: Application, files: tuple[str, ...]) -> None:
    """Check scenario FILES and proxy configs (TOML or YAML): exit 0 when all are valid, 2 naming
    the first bad key of each bad one otherwise."""
    from meshsim.core.errors import ConfigError

    failed = False
    for path in files:
        try:
            summary = _proxy_summary(path) if _is_proxy_config(Path(path)) else _scenario_summary(path)
        except ConfigError as error:
            app.display_error(str(error))
            failed = True
            continue
        app.display_success(f"ok: {path} ({summary})")
    if failed:
        raise SystemExit(2)


def _is_proxy_config(path: Path) -> bool:
    """YAML is the proxy's seed layout; a TOML file is a proxy config when it has a [proxy] table and
    no schema (a scenario always names its schema). Anything unreadable is left to the scenario reader
    to report."""
    if path.suffix in (".yaml", ".yml"):
        return True
    from meshsim.core.config import read_text, toml_table
    from meshsim.core.errors import ConfigError

    try:
        top = toml_table(path, read_text(path))
    except ConfigError:
        return False
    return "proxy" in top.data and "schema" not in top.data


def _scenario_summary(path: str) -> str:
    from meshsim.core import cost
    from meshsim.core.scenario_loader import load_scenario

    scenario = load_scenario(path)
    replicas = sum(s.replicas for s in scenario.services)
    return (
        f"{len(scenario.services)} service(s), {replicas} replica(s), "
        f"{len(scenario.clients)} client(s), {len(scenario.faults)} fault(s), "
        f"{len(scenario.assertions)} assertion(s); about {cost.count(cost.estimate(scenario).calls)} calls"
    )


def _proxy_summary(path: str) -> str:
    from meshsim.live.config import load_live_config

    config = load_live_config(path)
    services = ", ".join(cluster.service for cluster in config.clusters)
    return f"proxy config: listens on {config.listen}, for {services}"
