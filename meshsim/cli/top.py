"""`meshsim top URL`: a terminal health view of a running proxy or of replicas, from their /metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import click

from meshsim.cli.app import Application

if TYPE_CHECKING:
    from rich.console import Group

    from meshsim.cli.health_view import Scrape

# Said when something answered, but not as a metrics endpoint does: a gRPC port, a web page, a typo.
NOT_METRICS = "(is this a /metrics endpoint?)"


class ScrapeFailed(Exception):
    """Why a scrape found no metrics, in a few words for one line."""


@click.command("top")
@click.argument("url", metavar="URL")
@click.option("--interval", default="1s", show_default=True, help="Time between scrapes.")
@click.option("--once", is_flag=True, help="Show one view (two scrapes an interval apart) and exit.")
@click.pass_obj
def top(app: Application, url: str, interval: str, once: bool) -> None:
    """Watch endpoint health and call rates, errors and latency at URL (e.g. http://127.0.0.1:9090/metrics)."""
    import time

    from meshsim.cli.health_view import health_view
    from meshsim.core.units import parse_duration

    try:
        every = parse_duration(interval)
    except ValueError:
        raise click.BadParameter(f'expected a duration like "1s", got {interval!r}', param_hint="--interval") from None
    if "://" not in url:
        url = f"http://{url}"
    if url.rstrip("/").count("/") < 3:
        url = url.rstrip("/") + "/metrics"

    def give_up(failed: ScrapeFailed) -> NoReturn:
        app.display_error(f"{url}: cannot read metrics: {failed}")
        raise SystemExit(2)

    try:
        # The first scrape decides whether there is anything to watch at all.
        try:
            first = scrape(url)
        except ScrapeFailed as failed:
            give_up(failed)
        time.sleep(every)
        if once:
            try:
                app.display(health_view(first, scrape(url)))
            except ScrapeFailed as failed:
                give_up(failed)
            return
        watch(app, url, every, interval, first)
    except KeyboardInterrupt:
        pass


def watch(app: Application, url: str, every: float, interval: str, first: Scrape) -> None:
    """Redraw the view after every scrape until interrupted."""
    import time

    from rich.live import Live

    watched = _Watched(url, interval, first)
    watched.refresh()
    with Live(watched.view(), console=app.console, auto_refresh=False) as screen:
        while True:
            time.sleep(every)
            watched.refresh()
            screen.update(watched.view(), refresh=True)


class _Watched:
    """The two latest scrapes that worked, and why the ones since failed: a proxy restarting or a
    network hiccup must not end the view, so a failure is shown over them and the next scrape
    is tried as usual."""

    def __init__(self, url: str, interval: str, first: Scrape) -> None:
        self.url = url
        self.interval = interval
        self.before = self.now = first
        self.trouble: str | None = None
        self._since = ""

    def refresh(self) -> None:
        import time

        try:
            latest = scrape(self.url)
        except ScrapeFailed as failed:
            self._since = self._since or time.strftime("%H:%M:%S")
            self.trouble = f"no metrics since {self._since}: {failed} (trying every {self.interval})"
        else:
            self.before, self.now, self.trouble, self._since = self.now, latest, None, ""

    def view(self) -> Group:
        from meshsim.cli.health_view import health_view

        return health_view(self.before, self.now, self.trouble)


def scrape(url: str) -> Scrape:
    """The metrics at `url` now; ScrapeFailed says why not, whatever the peer did."""
    import http.client
    import time
    import urllib.error
    import urllib.request

    from meshsim.cli.health_view import parse

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        raise ScrapeFailed(f"HTTP {error.code} {error.reason} {NOT_METRICS}") from None
    except urllib.error.URLError as error:
        raise ScrapeFailed(str(error.reason)) from None  # nothing answered: refused, unknown host, TLS
    except http.client.RemoteDisconnected:
        raise ScrapeFailed(f"the connection closed without an answer {NOT_METRICS}") from None
    except http.client.BadStatusLine:
        # Its text is the peer's first bytes: from a gRPC port, HTTP/2 frames, unprintable.
        raise ScrapeFailed(f"the answer is not HTTP/1 {NOT_METRICS}") from None
    except http.client.InvalidURL as error:
        raise ScrapeFailed(str(error)) from None
    except http.client.HTTPException as error:
        raise ScrapeFailed(f"a broken HTTP answer ({type(error).__name__}) {NOT_METRICS}") from None
    except ConnectionResetError:
        raise ScrapeFailed(f"the connection was reset {NOT_METRICS}") from None
    except TimeoutError:
        raise ScrapeFailed("no answer in 5 s") from None
    except (OSError, ValueError) as error:  # ValueError: a URL urllib cannot open
        raise ScrapeFailed(str(error)) from None
    try:
        return parse(body.decode(), time.monotonic())
    except ValueError:  # UnicodeDecodeError too
        raise ScrapeFailed(f"the answer is not Prometheus' text format {NOT_METRICS}") from None
