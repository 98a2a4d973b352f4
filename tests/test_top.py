"""`meshsim top`: the health view read from a real /metrics endpoint, and its arithmetic."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import grpc
import pytest
from rich.console import Console

from meshsim.cli.health_view import calls_table, parse, quantile
from meshsim.live.metrics import MeshMetrics
from meshsim.live.server_metrics import ServerMetrics
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.runtime.observer import Observer
from tests.conftest import meshsim, serve_replicas, start_proxy, stop


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


def test_top_says_when_there_is_nothing_to_read() -> None:
    shown = meshsim("top", "127.0.0.1:1", "--once", "--interval", "0s")
    assert shown.returncode == 2
    assert "http://127.0.0.1:1/metrics: cannot read metrics" in shown.stderr


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
