"""`meshsim top URL`: a terminal health view of a running proxy or of replicas, from their /metrics."""

from __future__ import annotations

import errno
import math
from typing import TYPE_CHECKING

import click

from meshsim.cli.app import Application

if TYPE_CHECKING:
    import queue

    from rich.console import RenderableType

    from meshsim.cli.prometheus import Scrape
    from meshsim.cli.top_screen import Watched

# Said when something answered, but not as a metrics endpoint does: a gRPC port, a web page, a typo.
NOT_METRICS = "(is this a /metrics endpoint?)"


class ScrapeFailed(Exception):
    """Why a scrape found no metrics, in a few words for one line."""


@click.command("top")
@click.argument("url", metavar="URL")
@click.option("--interval", default="1s", show_default=True, help="Time between scrapes.")
@click.option("--span", default="2m", show_default=True, help="How far back the sparklines reach.")
@click.option("--once", is_flag=True, help="Print one view (two scrapes an interval apart) and exit.")
@click.pass_obj
def top(app: Application, url: str, interval: str, span: str, once: bool) -> None:
    """Watch endpoint health, call rates, errors and latency at URL (e.g. 127.0.0.1:9090, a proxy's
    or replicas' /metrics); q quits. A scrape that fails is retried, never the end of the view."""
    import time

    from meshsim.cli.top_history import History
    from meshsim.cli.top_screen import Watched

    every = _duration(interval, "--interval", 0.0)
    reach = _duration(span, "--span", 1.0)
    if "://" not in url:
        url = f"http://{url}"
    if url.rstrip("/").count("/") < 3:
        url = url.rstrip("/") + "/metrics"
    watched = Watched(url, interval, history=History(keep=reach))  # nothing older is ever drawn
    try:
        if once:
            # A script's question: one answer and an exit code, so a failure is one line and exit 2.
            try:
                watched = watched.scraped(scrape(url))
                time.sleep(every)
                watched = watched.scraped(scrape(url))
            except ScrapeFailed as failed:
                app.abort(f"{url}: cannot read metrics: {failed}")
            app.display(_draw(app, watched, reach, watching=False))
            return
        watch(app, watched, every, reach)
    except KeyboardInterrupt:
        pass
    except OSError as error:
        if error.errno not in _TERMINAL_GONE:
            raise
        # The terminal closed under the view (a window shut, a pipe's reader gone): nobody is left
        # to read a traceback, and Python's last flush of stdout must not write one either.
        _silence_stdout()


def _silence_stdout() -> None:
    import os
    import sys

    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), sys.stdout.fileno())


def _duration(text: str, option: str, least: float) -> float:
    from meshsim.core.units import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError:
        raise click.BadParameter(f'expected a duration like "1s", got {text!r}', param_hint=option) from None
    if seconds < least:
        raise click.BadParameter(f"at least {least:g} s, got {text!r}", param_hint=option)
    return seconds


def _draw(app: Application, watched: Watched, span: float, watching: bool = True) -> RenderableType:
    import time

    from meshsim.cli.top_screen import Moment, screen

    return screen(watched, app.console.width, Moment(time.strftime("%H:%M:%S"), time.monotonic()), span, watching)


_TERMINAL_GONE = (errno.EIO, errno.EPIPE)
_REDRAW = 0.5  # seconds between redraws without news: the scrape's age moves on
_KEY_WAIT = 0.1  # how long a key is waited for at a time: how soon a finished scrape is shown
_FASTEST = 0.1  # the shortest time between two scrapes of a view that keeps watching


def watch(app: Application, watched: Watched, every: float, span: float) -> None:
    """Redraw the view as scrapes come in and as their age grows, until q (or Ctrl-C, or SIGTERM).

    Scrapes run on a thread of their own, so a peer that takes seconds to answer delays neither
    the key that quits nor the age the header shows."""
    import queue
    import signal
    import threading
    import time

    from rich.live import Live

    from meshsim.cli.keyboard import END, keys
    from meshsim.cli.top_screen import QUIT_KEY

    results: queue.Queue[Scrape | ScrapeFailed] = queue.Queue()
    # Watching is never a reason to scrape a peer in a tight loop, whatever --interval says.
    pace = max(every, _FASTEST)
    threading.Thread(target=_scrape_forever, args=(watched.url, pace, results), daemon=True).start()
    if threading.current_thread() is threading.main_thread():
        # SIGTERM ends the view as q does, so the terminal is given back as it was found.
        signal.signal(signal.SIGTERM, _interrupt)
    with keys() as read_key, Live(console=app.console, auto_refresh=False, screen=True) as live:
        drawn = -math.inf
        while True:
            key = read_key(_KEY_WAIT)
            if key is not None and key.lower() in (QUIT_KEY, END):
                return
            news = False
            while not results.empty():
                result = results.get_nowait()
                if isinstance(result, ScrapeFailed):
                    watched = watched.failed(str(result), time.strftime("%H:%M:%S"))
                else:
                    watched = watched.scraped(result)
                news = True
            if news or time.monotonic() - drawn >= _REDRAW:
                live.update(_draw(app, watched, span), refresh=True)
                drawn = time.monotonic()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _scrape_forever(url: str, every: float, results: queue.Queue[Scrape | ScrapeFailed]) -> None:
    """Scrape every `every` seconds (from the start of one to the next), handing each result over."""
    import time

    while True:
        started = time.monotonic()
        try:
            results.put(scrape(url))
        except ScrapeFailed as failed:
            results.put(failed)
        except Exception as error:  # on this thread a traceback would tear the screen: it is a failure too
            results.put(ScrapeFailed(f"{type(error).__name__}: {error}"))
        time.sleep(max(0.0, every - (time.monotonic() - started)))


def scrape(url: str) -> Scrape:
    """The metrics at `url` now; ScrapeFailed says why not, whatever the peer did."""
    import http.client
    import time
    import urllib.error
    import urllib.request

    from meshsim.cli.prometheus import parse

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
