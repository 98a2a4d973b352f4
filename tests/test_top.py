"""`meshsim top`: the health view read from a real /metrics endpoint, and its arithmetic."""

from __future__ import annotations

import concurrent.futures
import http.server
import math
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from rich.console import Console

from meshsim.cli.health_view import calls_table, parse, quantile
from meshsim.demo.metrics import ServerMetrics
from meshsim.live.metrics import MeshMetrics
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.runtime.observer import Observer
from tests.conftest import ROOT, meshsim, serve_replicas, start_proxy, stop


def test_quantiles_interpolate_within_the_bucket_like_histogram_quantile() -> None:
    buckets = [(0.01, 50.0), (0.1, 90.0), (1.0, 100.0), (math.inf, 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.7, buckets) == pytest.approx(0.01 + 0.09 * 0.5)
    assert quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 0.9)
    assert quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert quantile(0.99, [(0.1, 1.0), (math.inf, 10.0)]) == pytest.approx(0.1)  # past the last bound


def test_rates_and_errors_are_over_the_window_between_scrapes() -> None:
    def text(ok: int, bad: int) -> str:
        series = 'grpc_requests_total{client="proxy",code="%s",method="/s/M",service="s"} %d\n'
        return series % ("OK", ok) + series % ("UNAVAILABLE", bad)

    before = parse(text(ok=100, bad=0), at=10.0)
    now = parse(text(ok=190, bad=10), at=12.0)
    console = Console(width=200, record=True)
    console.print(calls_table(before, now))
    row = next(line for line in console.export_text().splitlines() if "/s/M" in line)
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells[3:6] == ["100", "50.0", "10.0 %"]  # calls in the window, per second, errors


def test_a_counter_that_went_back_started_again_from_zero() -> None:
    # A proxy restarted between two scrapes: its counters began again, as Prometheus' rate() assumes.
    series = 'grpc_requests_total{client="proxy",code="OK",method="/s/M",service="s"} %d\n'
    console = Console(width=200, record=True)
    console.print(calls_table(parse(series % 100, at=10.0), parse(series % 5, at=11.0)))
    row = next(line for line in console.export_text().splitlines() if "/s/M" in line)
    cells = [cell.strip() for cell in row.split("│") if cell.strip()]
    assert cells[3:5] == ["5", "5.0"]  # before: -95 calls


@pytest.mark.slow
def test_top_shows_a_running_proxy(tmp_path: Path) -> None:
    serve, replicas = serve_replicas(2)
    live = None
    try:
        config = tmp_path / "mesh.toml"
        endpoints = ", ".join(f'"{r}"' for r in replicas)
        config.write_text(
            f'[proxy]\nlisten = "127.0.0.1:0"\nendpoints = [{endpoints}]\n[metrics]\nlisten = "127.0.0.1:0"\n',
            encoding="utf-8",
        )
        live, address = start_proxy(config)
        assert live.stdout is not None
        metrics = live.stdout.readline().removeprefix("metrics on ").strip()
        with grpc.insecure_channel(address) as channel:
            stub = mesh_pb2_grpc.MeshServiceStub(channel)
            for n in range(4):
                stub.Process(mesh_pb2.ProcessRequest(request_id=str(n)), timeout=5)
        shown = meshsim(
            "top",
            metrics.removesuffix("/metrics"),
            "--once",
            "--interval",
            "0.2s",
            env={**os.environ, "COLUMNS": "200"},  # wide enough that no cell wraps
        )
        assert shown.returncode == 0, shown.stderr
        for replica in replicas:
            assert replica in shown.stdout
        assert shown.stdout.count("healthy") >= 2
        assert "/mesh.v1.MeshService/Process" in shown.stdout
    finally:
        for process in (live, serve):
            if process is not None:
                stop(process)


@pytest.mark.slow
def test_top_says_when_there_is_nothing_to_read() -> None:
    shown = meshsim("top", "127.0.0.1:1", "--once", "--interval", "0s")
    assert shown.returncode == 2
    assert "http://127.0.0.1:1/metrics: cannot read metrics" in shown.stderr
    assert len(shown.stderr.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("once", [["--once"], []], ids=["once", "watching"])
def test_top_pointed_at_a_grpc_port_says_so_in_one_line(once: list[str]) -> None:
    # A gRPC server answers an HTTP/1.1 request with HTTP/2 frames: before, a 54-line BadStatusLine traceback.
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        shown = meshsim("top", f"127.0.0.1:{port}", *once, "--interval", "0s")
    finally:
        server.stop(None)
    assert shown.returncode == 2
    assert shown.stderr.splitlines() == [
        f"error: http://127.0.0.1:{port}/metrics: cannot read metrics: the answer is not HTTP/1 "
        "(is this a /metrics endpoint?)"
    ]


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


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} in {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_top_outlives_a_metrics_endpoint_that_goes_away_and_comes_back() -> None:
    metrics = FakeMetrics()
    port = metrics.port
    screen: list[bytes] = []
    terminal, their_end = pty.openpty()  # rich redraws the view only on a terminal
    top = subprocess.Popen(
        [sys.executable, "-m", "meshsim", "top", f"127.0.0.1:{port}", "--interval", "0.1s"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=their_end,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "120", "LINES": "40"},
    )
    os.close(their_end)

    def read() -> None:
        while True:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # EIO: the process closed the terminal
                return
            if not chunk:
                return
            screen.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()

    def shown() -> str:
        return b"".join(screen).decode(errors="replace")

    again: FakeMetrics | None = None
    try:
        wait_for(lambda: metrics.scrapes >= 3 and "10.9.9.9:50051" in shown(), "first views")
        metrics.stop()
        wait_for(lambda: "no metrics since" in shown() or top.poll() is not None, "failure in the view")
        assert top.poll() is None, top.communicate()[1]
        assert "Connection refused" in shown()
        again = FakeMetrics(port)
        wait_for(lambda: again.scrapes >= 2, "scrapes of the endpoint back on its port")
        assert top.poll() is None
    finally:
        top.send_signal(signal.SIGINT)
        _, err = top.communicate(timeout=15)
        reader.join()
        os.close(terminal)
        for server in (metrics, again):
            if server is not None:
                server.stop()
    assert top.returncode == 0, err
    assert err == b""


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
