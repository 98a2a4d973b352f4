"""`meshsim top`: its arithmetic, its screen at 80 columns, and the view itself in a real terminal
(tmux, 80 and 120 columns wide) against a proxy and replicas the tests start."""

from __future__ import annotations

import concurrent.futures
import http.server
import io
import math
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import prometheus_client
import pytest
from rich.console import Console

from meshsim.cli.grpc_names import short_methods, short_services
from meshsim.cli.health_view import calls_table
from meshsim.cli.prometheus import Scrape, parse, quantile
from meshsim.cli.top_history import History, Window
from meshsim.cli.top_screen import Moment, Watched, screen
from meshsim.core.metric_names import ACTIVE_CONNECTIONS, ENDPOINT_HEALTH
from meshsim.demo.metrics import ServerMetrics
from meshsim.live.metrics import MeshMetrics, request_metrics
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.runtime.observer import Observer
from tests.conftest import meshsim, serve_replicas, start_proxy, stop
from tests.tmux import Terminal, ensure_tmux


def test_quantiles_interpolate_within_the_bucket_like_histogram_quantile() -> None:
    buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 0.5)
    assert quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 0.9)
    assert quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert quantile(0.99, [(0.1, 1.0), (math.inf, 10.0)]) == pytest.approx(0.1)  # past the last bound


def cells(table: object, containing: str) -> list[str]:
    console = Console(width=200, record=True)
    console.print(table)
    row = next(line for line in console.export_text().splitlines() if containing in line)
    return row.split()


def test_rates_and_errors_are_over_the_window_between_scrapes() -> None:
    def text(ok: int, bad: int) -> str:
        series = 'grpc_requests_total{client="proxy",code="%s",method="/s/M",service="s"} %d\n'
        return series % ("OK", ok) + series % ("UNAVAILABLE", bad)

    before = parse(text(ok=100, bad=0), at=10.0)
    now = parse(text(ok=190, bad=10), at=12.0)
    assert cells(calls_table(before, now), "s/M") == ["s/M", "50.0", "10.0%", "-", "-", "200"]


def test_a_counter_that_went_back_started_again_from_zero() -> None:
    # A proxy restarted between two scrapes: its counters began again, as Prometheus' rate() assumes.
    series = 'grpc_requests_total{client="proxy",code="OK",method="/s/M",service="s"} %d\n'
    table = calls_table(parse(series % 100, at=10.0), parse(series % 5, at=11.0))
    assert cells(table, "s/M")[:3] == ["s/M", "5.0", "0.0%"]  # before: -95 calls


def test_grpc_names_keep_the_parts_that_tell_them_apart() -> None:
    assert short_services(["mesh.v1.MeshService", "grpc.health.v1.Health"]) == {
        "mesh.v1.MeshService": "MeshService",
        "grpc.health.v1.Health": "Health",
    }
    assert short_services(["a.v1.Api", "b.v1.Api", "c.Other"]) == {
        "a.v1.Api": "a.v1.Api",
        "b.v1.Api": "b.v1.Api",
        "c.Other": "Other",
    }
    assert short_services(["a.v1.Api", "a.v2.Api"]) == {"a.v1.Api": "v1.Api", "a.v2.Api": "v2.Api"}
    assert short_methods(["/mesh.v1.MeshService/Process", "unary"]) == {
        "/mesh.v1.MeshService/Process": "MeshService/Process",
        "unary": "unary",
    }


class Metrics:
    """A meshsim /metrics endpoint's text, written by prometheus_client with meshsim's own series."""

    def __init__(self, role: str) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.role = role
        self.requests, self.duration = request_metrics(self.registry, role, "Calls.", "Seconds.")
        extra = ["endpoint"] if role == "client" else []
        self.health = prometheus_client.Gauge(
            ENDPOINT_HEALTH, "Health.", [role, "service", *extra], registry=self.registry
        )
        self.connected = (
            prometheus_client.Gauge(ACTIVE_CONNECTIONS, "Up.", [role, "service", *extra], registry=self.registry)
            if extra
            else None
        )

    def calls(self, caller: str, method: str, count: int, seconds: float, code: str = "OK") -> None:
        service = method.strip("/").split("/")[0]
        for _ in range(count):
            self.requests.labels(caller, service, method, code).inc()
            self.duration.labels(caller, service, method).observe(seconds)

    def text(self) -> str:
        return prometheus_client.generate_latest(self.registry).decode()


PROCESS = "/mesh.v1.MeshService/Process"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


def proxy_metrics() -> Metrics:
    metrics = Metrics("client")
    for endpoint in ("127.0.0.1:50051", "[2001:db8::1]:50052"):
        metrics.health.labels("proxy", "mesh.v1.MeshService", endpoint).set(1)
        assert metrics.connected is not None
        metrics.connected.labels("proxy", "mesh.v1.MeshService", endpoint).set(1)
    return metrics


def watched_twice(metrics: Metrics, calls: list[tuple[str, str, int]]) -> Watched:
    watched = Watched("http://127.0.0.1:9090/metrics", "1s").scraped(parse(metrics.text(), at=100.0))
    for caller, method, count in calls:
        metrics.calls(caller, method, count, 0.004)
    metrics.calls(calls[0][0], calls[0][1], 3, 0.2, code="UNAVAILABLE")
    return watched.scraped(parse(metrics.text(), at=101.0))


def shown(watched: Watched, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(screen(watched, width, Moment("12:00:00", 101.5), span=120.0))
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_the_proxy_screen_fits_80_columns_and_says_each_thing_once() -> None:
    lines = shown(
        watched_twice(proxy_metrics(), [("proxy", PROCESS, 40), ("proxy", "/mesh.v1.MeshService/StreamEvents", 8)])
    )
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    assert "…" not in text
    assert re.match(r"http://127\.0\.0\.1:9090/metrics +12:00:00  ·  scraped just now  ·  q quits$", lines[0])
    assert "MeshService endpoints, as proxy sees them" in text  # the one caller and service: in the title
    assert "[2001:db8::1]:50052" in text  # label values are data, never markup
    assert "calls by proxy over the last 1.0 s" in text
    row = next(line.split() for line in lines if line.startswith(" MeshService/Process"))
    assert row == ["MeshService/Process", "43.0", "7.0%", "3.8", "228.5", "43"]  # 40 at 4 ms, 3 at 200 ms
    assert "mesh.v1" not in text and "/mesh" not in text
    spark = next(line for line in lines if line.startswith("calls/s"))
    assert spark.endswith("now 51.0  max 51.0")
    assert len(spark) <= 80


def test_replicas_each_head_their_calls() -> None:
    metrics = Metrics("replica")
    for replica in ("127.0.0.1:50051", "127.0.0.1:50052"):
        metrics.health.labels(replica, "mesh.v1.MeshService").set(1)
    watched = watched_twice(metrics, [("127.0.0.1:50051", PROCESS, 5), ("127.0.0.1:50052", REFLECTION, 1)])
    lines = shown(watched)
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines), text
    assert "MeshService replicas" in text
    assert " replica          health" in text  # the replica is its own endpoint: one column, not two
    assert " replica 127.0.0.1:50052" in lines
    assert any(line.startswith(" ServerReflection/ServerReflectionInfo ") for line in lines), text


def test_a_failed_scrape_is_said_over_the_last_view() -> None:
    watched = watched_twice(proxy_metrics(), [("proxy", PROCESS, 4)])
    watched = watched.failed("[Errno 111] Connection refused", "12:00:01").failed("timed out", "12:00:02")
    lines = shown(watched)
    assert lines[1] == "disconnected, retrying every 1s: timed out (since 12:00:01)"
    assert any("MeshService/Process" in line for line in lines)  # the last view stays
    never = shown(Watched("http://h:1/metrics", "1s").failed("[Errno 111] Connection refused", "12:00:00"))
    assert "no scrape yet" in never[0]
    assert never[1].startswith("disconnected, retrying every 1s: [Errno 111] Connection refused")


def test_large_figures_take_room_from_the_sparklines_not_from_the_screen() -> None:
    empty = Scrape(at=1.0, samples={})
    history = History().add(Window(0.0, 1.0, 1_234_567.0, 0.0, ((0.5, 1_234_567.0), (math.inf, 1_234_567.0))))
    watched = Watched("http://h:1/metrics", "1s", before=empty, now=empty, history=history)
    lines = shown(watched)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert next(line for line in lines if line.startswith("calls/s")).endswith("now 1234567.0  max 1234567.0")


def test_sparkline_columns_stay_put_and_a_missed_scrape_leaves_no_hole() -> None:
    def window(start: float, end: float, calls: float) -> Window:
        return Window(start, end, calls, 0.0, ((0.01, calls), (math.inf, calls)))

    history = History().add(window(0.0, 1.0, 10)).add(window(1.0, 4.0, 30))  # a scrape missed in between
    columns = history.columns(now=4.5, span=10.0, count=10)  # one a second, the last from 4 to 5
    assert [c is None for c in columns] == [True] * 5 + [False] * 4 + [True]
    assert [c.rate for c in columns if c is not None] == [10.0, 10.0, 10.0, 10.0]
    assert history.columns(now=4.9, span=10.0, count=10) == columns  # the same boundaries a moment later


class FakeMetrics:
    """A /metrics endpoint that counts its scrapes and can be stopped and started again on its port."""

    def __init__(self, port: int = 0) -> None:
        self.scrapes = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.scrapes += 1
                body = (
                    'grpc_endpoint_health{client="proxy",endpoint="10.9.9.9:50051",service="s"} 1\n'
                    f'grpc_requests_total{{client="proxy",code="OK",method="/s/M",service="s"}} {outer.scrapes}\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the test's output is the view's

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()


@pytest.fixture(scope="session")
def tmux() -> str:
    """tmux, installed with apt-get if this machine lacks it (tests/tmux.py)."""
    return ensure_tmux()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Two `meshsim serve --admin` replicas behind `meshsim live`, and calls flowing through the proxy
    until the module's tests end: yields the proxy's /metrics URL and the replicas'."""
    serve, replicas = serve_replicas(2, "--admin", "127.0.0.1:0")
    live = None
    stopping = threading.Event()
    caller = None
    try:
        assert serve.stdout is not None
        replica_metrics = serve.stdout.readline().removeprefix("metrics on ").strip()
        config = tmp_path_factory.mktemp("top") / "mesh.toml"
        endpoints = ", ".join(f'"{r}"' for r in replicas)
        config.write_text(
            f'[proxy]\nlisten = "127.0.0.1:0"\nendpoints = [{endpoints}]\n[metrics]\nlisten = "127.0.0.1:0"\n',
            encoding="utf-8",
        )
        live, address = start_proxy(config)
        assert live.stdout is not None
        proxy_metrics_url = live.stdout.readline().removeprefix("metrics on ").strip()

        def call() -> None:
            with grpc.insecure_channel(address) as channel:
                stub = mesh_pb2_grpc.MeshServiceStub(channel)
                n = 0
                while not stopping.wait(0.02):
                    stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=5)
                    if n % 4 == 0:
                        list(stub.StreamEvents(mesh_pb2.StreamRequest(count=2), timeout=5))
                    n += 1

        caller = threading.Thread(target=call)
        caller.start()
        yield proxy_metrics_url, replica_metrics
    finally:
        stopping.set()
        if caller is not None:
            caller.join(timeout=10)
        for process in (live, serve):
            if process is not None:
                stop(process)


def top_in(tmux: str, tmp_path: Path, width: int, *args: str, height: int = 30) -> Terminal:
    return Terminal(tmux, [sys.executable, "-m", "meshsim", "top", *args], width, height, tmp_path)


def rates_shown(screen: str) -> bool:
    """Whether the sparkline of calls a second has a figure yet (two scrapes have been made)."""
    return re.search(r"^calls/s .* now \d", screen, re.MULTILINE) is not None


def quit_cleanly(terminal: Terminal, key: str = "q") -> None:
    """The key (q, or Ctrl-C) ends the view with status 0, nothing on stderr, the terminal given back."""
    terminal.press(key)
    assert terminal.exit_status() == 0
    assert terminal.stderr() == ""
    assert "Traceback" not in terminal.screen()


@pytest.mark.slow
@pytest.mark.parametrize("width", [80, 120])
def test_top_watches_a_running_proxy_in_a_terminal(
    tmux: str, mesh: tuple[str, str], tmp_path: Path, width: int
) -> None:
    url = mesh[0]
    terminal = top_in(tmux, tmp_path, width, url.removeprefix("http://").removesuffix("/metrics"), "--interval", "0.2s")
    try:
        view = terminal.wait_for(lambda s: "MeshService/StreamEvents" in s and rates_shown(s), "view with rates")
        lines = view.splitlines()
        assert re.match(rf"{re.escape(url)} +\d\d:\d\d:\d\d  ·  scraped (just now|\d+ s ago)  ·  q quits$", lines[0])
        assert "MeshService endpoints, as proxy sees them" in view
        spark = next(line for line in lines if line.startswith("calls/s"))
        assert re.search(r"[▁▂▃▄▅▆▇█]+ now \d+\.\d  max \d+\.\d$", spark), spark
        assert any(line.startswith("p99 ms ") for line in lines)
        row = next(line.split() for line in lines if line.startswith(" MeshService/Process "))
        assert len(row) == 6 and float(row[1]) > 0  # method, calls/s, errors, p50, p99, total: none cut
        assert "…" not in view
        assert max(len(line) for line in lines) <= width
    finally:
        try:
            quit_cleanly(terminal)
        finally:
            terminal.close()


@pytest.mark.slow
def test_top_watches_replicas_in_a_terminal(tmux: str, mesh: tuple[str, str], tmp_path: Path) -> None:
    terminal = top_in(tmux, tmp_path, 80, mesh[1], "--interval", "0.2s")
    try:
        view = terminal.wait_for(
            lambda s: s.count("replica 127.0.0.1:") == 2 and rates_shown(s), "both replicas' calls"
        )
        assert "MeshService replicas" in view
        assert view.count(" MeshService/Process ") == 2  # the proxy balances over both
        assert "…" not in view
    finally:
        try:
            quit_cleanly(terminal)
        finally:
            terminal.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_top_says_disconnected_and_carries_on_when_the_endpoint_comes(tmux: str, tmp_path: Path) -> None:
    port = free_port()
    terminal = top_in(tmux, tmp_path, 80, f"127.0.0.1:{port}", "--interval", "0.2s")
    metrics = None
    try:
        view = terminal.wait_for(lambda s: "disconnected" in s, "disconnection")
        assert "disconnected, retrying every 0.2s: [Errno 111] Connection refused (since" in view
        assert "no scrape yet" in view.splitlines()[0]
        metrics = FakeMetrics(port)
        view = terminal.wait_for(lambda s: "10.9.9.9:50051" in s and rates_shown(s), "the view once it answers")
        assert "disconnected" not in view
        metrics.stop()
        view = terminal.wait_for(lambda s: "disconnected" in s, "disconnection again")
        assert "10.9.9.9:50051" in view  # the last view stays under the news
    finally:
        try:
            quit_cleanly(terminal)
        finally:
            terminal.close()
            if metrics is not None:
                metrics.stop()


@pytest.mark.slow
def test_top_pointed_at_a_grpc_port_says_what_it_found(tmux: str, tmp_path: Path) -> None:
    # A gRPC server answers an HTTP/1.1 request with HTTP/2 frames: once a 54-line BadStatusLine traceback.
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    terminal = top_in(tmux, tmp_path, 80, f"127.0.0.1:{port}", "--interval", "0.2s")
    try:
        view = terminal.wait_for(lambda s: "disconnected" in s, "disconnection")
        assert "the answer is not HTTP/1 (is this a /metrics" in view
        once = meshsim("top", f"127.0.0.1:{port}", "--once", "--interval", "0s")
        assert once.returncode == 2
        assert once.stderr.splitlines() == [
            f"error: http://127.0.0.1:{port}/metrics: cannot read metrics: the answer is not HTTP/1 "
            "(is this a /metrics endpoint?)"
        ]
    finally:
        try:
            quit_cleanly(terminal, "C-c")
        finally:
            terminal.close()
            server.stop(None)


@pytest.mark.slow
def test_top_once_prints_one_view_of_a_running_proxy(mesh: tuple[str, str]) -> None:
    shown = meshsim("top", mesh[0], "--once", "--interval", "0.2s", env={**os.environ, "COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    assert "MeshService endpoints, as proxy sees them" in shown.stdout
    assert " MeshService/Process " in shown.stdout
    assert "q quits" not in shown.stdout  # nothing to press: it has already exited
    assert max(len(line) for line in shown.stdout.splitlines()) <= 80


@pytest.mark.slow
def test_top_once_says_when_there_is_nothing_to_read() -> None:
    shown = meshsim("top", f"127.0.0.1:{free_port()}", "--once", "--interval", "0s")
    assert shown.returncode == 2
    assert shown.stderr.startswith("error: http://127.0.0.1:")
    assert "cannot read metrics: [Errno 111] Connection refused" in shown.stderr
    assert len(shown.stderr.splitlines()) == 1


def help_lines(exposition: bytes) -> dict[str, str]:
    return {
        line.split(" ", 3)[2]: line.split(" ", 3)[3]
        for line in exposition.decode().splitlines()
        if line.startswith("# HELP ")
    }


def test_every_help_line_reads_as_a_sentence_for_callers_and_replicas() -> None:
    callers = help_lines(MeshMetrics(Observer()).exposition())
    replicas = help_lines(ServerMetrics().exposition())
    assert callers["grpc_requests_total"] == "Calls made, by the status they ended with."
    assert callers["grpc_request_duration_seconds"] == "Seconds from a call's start to its end, every attempt included."
    assert replicas["grpc_requests_total"] == "Calls this replica answered, by the status it gave."
    assert replicas["grpc_request_duration_seconds"] == "Seconds this replica took to answer a call."
    for text in (*callers.values(), *replicas.values()):
        assert text[0].isupper() or text[0].isdigit()
        assert text.endswith(".")
        assert not re.search(r"\b(\w+) \1\b", text, re.IGNORECASE), text  # "Calls calls made"
