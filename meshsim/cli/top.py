"""`meshsim top URL`: a terminal health view of a running proxy or of replicas, from their /metrics."""

from __future__ import annotations

import click

from meshsim.cli.app import Application


@click.command("top")
@click.argument("url", metavar="URL")
@click.option("--interval", default="1s", show_default=True, help="Time between scrapes.")
@click.option("--once", is_flag=True, help="Show one view (two scrapes an interval apart) and exit.")
@click.pass_obj
def top(app: Application, url: str, interval: str, once: bool) -> None:
    """Watch endpoint health and call rates, errors and latency at URL (e.g. http://127.0.0.1:9090/metrics)."""
    import time
    import urllib.error
    import urllib.request

    from rich.console import Group
    from rich.live import Live

    from meshsim.cli.health_view import Scrape, calls_table, endpoints_table, parse
    from meshsim.core.units import parse_duration

    try:
        every = parse_duration(interval)
    except ValueError:
        raise click.BadParameter(f'expected a duration like "1s", got {interval!r}', param_hint="--interval") from None
    if "://" not in url:
        url = f"http://{url}"
    if url.rstrip("/").count("/") < 3:
        url = url.rstrip("/") + "/metrics"

    def scrape() -> Scrape:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return parse(response.read().decode(), time.monotonic())
        except (urllib.error.URLError, OSError, ValueError) as error:
            app.display_error(f"{url}: cannot read metrics: {getattr(error, 'reason', error)}")
            raise SystemExit(2) from None

    def view(before: Scrape, now: Scrape) -> Group:
        return Group(endpoints_table(now), calls_table(before, now))

    before = scrape()
    time.sleep(every)
    now = scrape()
    if once:
        app.display(view(before, now))
        return
    try:
        with Live(view(before, now), console=app.console, auto_refresh=False) as screen:
            while True:
                time.sleep(every)
                before, now = now, scrape()
                screen.update(view(before, now), refresh=True)
    except KeyboardInterrupt:
        pass
