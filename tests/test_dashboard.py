"""The dashboard's numbers and pages without a browser: tallies, rates and percentiles, the view of
each process, the /events stream and the admin routes (driven as ASGI, on Trio and on asyncio), the
report page and `meshsim run --html`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import trio
from click.testing import CliRunner

from meshsim.cli import main
from meshsim.core.chaos import ChaosScope, FaultBoard
from meshsim.core.events import AttemptFinished, AttemptKind
from meshsim.core.metric_names import CLIENT, CODE, METHOD, REPLICA, REQUEST_DURATION, REQUESTS_TOTAL, SERVICE
from meshsim.core.scenario_loader import load_scenario
from meshsim.core.status import StatusCode
from meshsim.dashboard import stream
from meshsim.dashboard.load import ReplicaLoad
from meshsim.dashboard.page import live_page, report_page
from meshsim.dashboard.sampler import Sampler
from meshsim.dashboard.tally import Counts, quantile, tally
from meshsim.dashboard.view import Window, services
from meshsim.live import admin
from meshsim.live.admin import AdminApp
from meshsim.runtime.observer import Observer
from meshsim.sim.runner import run_scenario
from tests.conftest import ROOT

FAILOVER = ROOT / "scenarios" / "failover.toml"
BUCKETS = (0.001, 0.01, 0.1, 1.0)


class Metrics:
    """The two request series as a process writes them, labelled by `caller` (client or replica)."""

    def __init__(self, caller: str) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            REQUESTS_TOTAL, "calls", [caller, SERVICE, METHOD, CODE], registry=self.registry
        )
        self.duration = prometheus_client.Histogram(
            REQUEST_DURATION, "seconds", [caller, SERVICE, METHOD], buckets=BUCKETS, registry=self.registry
        )

    def calls(
        self, who: str, count: int, seconds: float, code: str = "OK", service: str = "mesh.v1.MeshService"
    ) -> None:
        for _ in range(count):
            self.requests.labels(who, service, "Process", code).inc()
            self.duration.labels(who, service, "Process").observe(seconds)


# ---- tallies and percentiles ------------------------------------------------------------------------


def test_quantiles_are_read_as_prometheus_reads_a_histogram() -> None:
    buckets = ((0.1, 10.0), (0.2, 20.0), (math.inf, 20.0))
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.75, buckets) == pytest.approx(0.15)  # linear within (0.1, 0.2]
    assert quantile(0.99, ((0.1, 5.0), (math.inf, 10.0))) == 0.1  # past the last bound: the bound
    assert quantile(0.5, ((0.1, 0.0), (math.inf, 0.0))) is None
    assert quantile(0.5, ()) is None


def test_a_tally_sums_methods_counts_failures_and_leaves_a_replicas_probes_out() -> None:
    replicas = Metrics(REPLICA)
    replicas.calls("10.0.0.1:1", 8, 0.005)
    replicas.calls("10.0.0.1:1", 2, 0.05, code="UNAVAILABLE")
    replicas.calls("10.0.0.1:1", 50, 30.0, service="grpc.health.v1.Health")  # a Watch, open for long
    counts = tally(replicas.registry)
    assert set(counts) == {("10.0.0.1:1", "mesh.v1.MeshService")}
    (only,) = counts.values()
    assert (only.calls, only.failed) == (10, 2)
    assert only.buckets == ((0.001, 0.0), (0.01, 8.0), (0.1, 10.0), (1.0, 10.0), (math.inf, 10.0))
    assert only.quantile(0.5) == pytest.approx(0.001 + 0.009 * 5 / 8)

    proxy = Metrics(CLIENT)
    proxy.calls("edge", 3, 0.005, service="grpc.health.v1.Health")  # a caller's calls are its calls
    assert tally(proxy.registry)[("edge", "grpc.health.v1.Health")].calls == 3


def test_counts_since_an_earlier_tally_and_after_a_restart() -> None:
    earlier = Counts(10, 1, ((0.1, 10.0), (math.inf, 10.0)))
    later = Counts(15, 3, ((0.1, 12.0), (math.inf, 15.0)))
    assert later.since(earlier) == Counts(5, 2, ((0.1, 2.0), (math.inf, 5.0)))
    restarted = Counts(4, 0, ((0.1, 4.0), (math.inf, 4.0)))
    assert restarted.since(later) == restarted


# ---- the sampler and the view -------------------------------------------------------------------------

SERVE = {
    "service": "api",
    "replicas": [
        {"name": "api/0", "address": "a:1", "up": True, "serving": True, "calls": 0, "faults": []},
        {"name": "api/1", "address": "a:2", "up": False, "serving": False, "calls": 0, "faults": ["f1"]},
        {"name": "api/2", "address": "a:3", "up": True, "serving": False, "calls": 0, "faults": []},
    ],
}


def _endpoint(name: str, **state: Any) -> dict[str, Any]:
    return {
        "endpoint": name,
        "healthy": True,
        "ejected": False,
        "in_rotation": True,
        "breaker": "CLOSED",
        "in_flight": 0,
        "weight": 1,
        "connected": True,
    } | state


PROXY = {
    "clusters": [
        {
            "name": "edge",
            "service": "mesh.v1.MeshService",
            "policy": "round_robin",
            "panic": False,
            "endpoints": [
                _endpoint("b:1"),
                _endpoint("b:2", healthy=False, connected=False),
                _endpoint("b:3", ejected=True, in_rotation=False),
                _endpoint("b:4", in_rotation=False),
            ],
        }
    ]
}


def test_the_first_sample_has_no_rates_and_the_next_ones_have_them_over_the_window() -> None:
    metrics = Metrics(REPLICA)
    sampler = Sampler(interval=1.0, window=5.0, keep=10)
    first = sampler.add(100.0, tally(metrics.registry), SERVE)
    assert first["window_s"] is None and first["services"][0]["rps"] is None
    metrics.calls("a:1", 30, 0.005)
    metrics.calls("a:3", 10, 0.05, code="INTERNAL")
    second = sampler.add(101.0, tally(metrics.registry), SERVE)
    (api,) = second["services"]
    assert (second["window_s"], api["rps"], api["error_rate"]) == (1.0, 40.0, 0.25)
    replicas = {r["name"]: r for r in api["replicas"]}
    assert [replicas[n]["state"] for n in ("api/0", "api/1", "api/2")] == ["healthy", "down", "not serving"]
    assert (replicas["api/0"]["share"], replicas["api/0"]["rps"], replicas["api/0"]["error_rate"]) == (0.75, 30, 0)
    assert replicas["api/1"]["share"] == 0 and replicas["api/1"]["error_rate"] is None
    assert replicas["api/1"]["faults"] == ["f1"]
    assert replicas["api/2"]["p50_ms"] == pytest.approx(55.0)  # halfway through (10 ms, 100 ms]
    for second_ in range(2, 12):
        sampler.add(100.0 + second_, tally(metrics.registry), SERVE)
    latest = sampler.latest
    assert latest is not None and latest["window_s"] == 5.0 and latest["services"][0]["rps"] == 0
    assert len(sampler.history) == 10 and sampler.history[0]["seq"] == 3


def test_a_sample_after_nobody_watched_starts_a_new_window() -> None:
    metrics = Metrics(REPLICA)
    sampler = Sampler()
    sampler.add(0.0, tally(metrics.registry), SERVE)
    metrics.calls("a:1", 600, 0.005)
    after_a_gap = sampler.add(60.0, tally(metrics.registry), SERVE)
    assert after_a_gap["window_s"] is None  # not 600 calls "per minute" as if it had been watched
    metrics.calls("a:1", 7, 0.005)
    assert sampler.add(61.0, tally(metrics.registry), SERVE)["services"][0]["rps"] == 7


def test_a_sample_is_due_about_an_interval_after_the_last() -> None:
    sampler = Sampler(interval=1.0)
    assert sampler.due(0.0)
    sampler.add(0.0, {}, SERVE)
    assert not sampler.due(0.5) and sampler.due(0.95)


def test_the_proxy_view_has_its_balancers_states_and_the_services_numbers() -> None:
    counts: dict[tuple[str, ...], Counts] = {
        ("edge", "mesh.v1.MeshService"): Counts(20, 1, ((0.01, 20.0), (math.inf, 20.0)))
    }
    (edge,) = services(PROXY, Window(counts, 2.0))
    assert (edge["name"], edge["seen_by"], edge["policy"]) == ("edge", "proxy", "round_robin")
    assert (edge["rps"], edge["error_rate"], edge["p50_ms"]) == (10, 0.05, 5)
    assert [r["state"] for r in edge["replicas"]] == ["healthy", "unhealthy", "ejected", "out of rotation"]
    assert edge["replicas"][1]["connected"] is False and edge["replicas"][0]["breaker"] == "CLOSED"
    # Without attempt series, no replica has calls; with them, each its own rate, errors and share.
    assert {r["rps"] for r in edge["replicas"]} == {0.0} and {r["share"] for r in edge["replicas"]} == {None}
    first, second = (e["endpoint"] for e in PROXY["clusters"][0]["endpoints"][:2])
    counts[("edge", "mesh.v1.MeshService", first)] = Counts(15, 3, ((0.01, 15.0), (math.inf, 15.0)))
    counts[("edge", "mesh.v1.MeshService", second)] = Counts(5, 0, ((0.01, 5.0), (math.inf, 5.0)))
    (edge,) = services(PROXY, Window(counts, 2.0))
    shown = [(r["rps"], r["error_rate"], r["share"]) for r in edge["replicas"][:2]]
    assert shown == [(7.5, 0.2, 0.75), (2.5, 0.0, 0.25)]
    assert services({"something": "else"}, None) == []


# ---- the stream's messages and the pages ---------------------------------------------------------------


def _messages(body: bytes) -> list[tuple[str, Any]]:
    found = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            found.append((fields["event"], json.loads(fields["data"])))
    return found


def test_the_stream_says_hello_with_the_history_then_one_sample_a_message() -> None:
    sampler = Sampler()
    first = sampler.add(1.0, {}, SERVE)
    hello = stream.hello(sampler)
    assert hello.startswith(b"retry: 2000\n")
    ((event, data),) = _messages(hello)
    assert event == "hello" and data["history"] == [first] and data["interval_s"] == 1.0
    second = sampler.add(2.0, {}, SERVE)
    assert _messages(stream.sample(second)) == [("sample", second)]


def _inline(page: str, tag: str) -> str:
    match = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
    assert match is not None
    return match.group(1)


def _allowed(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_the_live_page_inlines_its_assets_and_allows_only_them() -> None:
    page = live_page().decode()
    assert 'data-mode="live"' in page and "@@" not in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert csp is not None
    assert f"script-src '{_allowed(_inline(page, 'script'))}'" in csp.group(1)
    assert f"style-src '{_allowed(_inline(page, 'style'))}'" in csp.group(1)
    assert "default-src 'none'" in csp.group(1) and "http" not in csp.group(1)  # nothing from elsewhere
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # no CDN


def test_the_report_page_carries_its_data_where_no_text_can_end_the_script() -> None:
    hostile = {"scenario": "</script><script>alert(1)</script> & <!--", "nested": ["<b>"]}
    page = report_page(hostile, {"api/0": [1, 2]})
    data = re.search(r'<script type="application/json" id="meshsim-data">(.*?)</script>', page, re.DOTALL)
    assert data is not None and "<" not in data.group(1)
    assert json.loads(data.group(1)) == {"report": hostile, "replica_load": {"api/0": [1, 2]}}
    assert "<title>meshsim report: &lt;/script&gt;" in page


# ---- the report: each replica's load, and meshsim run --html -----------------------------------------


def test_each_replicas_load_adds_up_to_the_reports_attempts() -> None:
    scenario = load_scenario(FAILOVER)
    observer = Observer()
    load = ReplicaLoad()
    load.subscribe(observer)
    report = run_scenario(scenario, observer=observer)
    names = [e.name for e in report.endpoints]
    per_replica = load.buckets(names, report.bucket_width, len(report.timeline))
    assert list(per_replica) == names
    for endpoint in report.endpoints:
        assert sum(per_replica[endpoint.name]) == endpoint.counts.attempts
    assert report.unrouted.requests == 0
    for n, bucket in enumerate(report.timeline):
        assert sum(row[n] for row in per_replica.values()) == bucket.attempts
    killed = per_replica["api/1"]
    assert killed[5] > 0 and killed[15] == 0  # failover.toml kills api/1 from 10 s to 25 s


def test_listening_for_the_load_changes_nothing_in_the_run() -> None:
    scenario = load_scenario(FAILOVER)
    observer = Observer()
    ReplicaLoad().subscribe(observer)
    assert run_scenario(scenario, observer=observer).to_json() == run_scenario(scenario).to_json()


def test_buckets_wider_than_a_second_fold_the_seconds_and_the_drain_goes_last() -> None:
    load = ReplicaLoad()
    observer = Observer()
    load.subscribe(observer)
    for started in (0.5, 1.2, 2.9, 3.0, 7.5, 99.0):
        observer.emit(AttemptFinished("c", "api", "api/0", AttemptKind.FIRST, StatusCode.OK, started, started))
    observer.emit(AttemptFinished("c", "api", None, AttemptKind.FIRST, StatusCode.UNAVAILABLE, 1.0, 1.0))
    assert load.buckets(["api/0", "api/1"], 2.0, 4) == {"api/0": [2, 2, 0, 2], "api/1": [0, 0, 0, 0]}


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["run", str(FAILOVER), "--quiet", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_run_html_writes_one_page_with_the_report_and_the_same_bytes_for_the_same_seed(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.html", tmp_path / "b.html", tmp_path / "c.html"
    assert _run("--html", str(first), "--json", str(tmp_path / "a.json"))[0] == 0
    assert _run("--html", str(second))[0] == 0
    assert _run("--html", str(other), "--seed", "7")[0] == 0
    page = first.read_text(encoding="utf-8")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    data = re.search(r'id="meshsim-data">(.*?)</script>', page, re.DOTALL)
    assert data is not None
    embedded = json.loads(data.group(1))
    assert embedded["report"] == json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert list(embedded["replica_load"]) == ["api/0", "api/1", "api/2"]
    assert 'data-mode="report"' in page and "<title>meshsim report: failover</title>" in page


@pytest.mark.parametrize(
    ("where", "words"),
    [("missing/report.html", "there is no directory"), (".", "is a directory")],
)
def test_a_bad_html_path_is_one_line_naming_the_flag_before_the_run(tmp_path: Path, where: str, words: str) -> None:
    code, out, err = _run("--html", str(tmp_path / where))
    assert code == 2 and out == ""  # refused before the run: no verdict printed
    assert err.count("\n") == 1 and err.startswith("error: --html ") and words in err


# ---- the admin endpoint's routes, as ASGI --------------------------------------------------------------


class _Timer:
    def cancel(self) -> None:
        pass


class Source:
    """An admin source: `meshsim serve`'s three replicas with some calls made."""

    def __init__(self) -> None:
        metrics = Metrics(REPLICA)
        metrics.calls("a:1", 5, 0.002)
        self.metrics = metrics
        self.registry = metrics.registry
        self.board = FaultBoard(
            ChaosScope(("kill",), headers=False), lambda: 0.0, lambda d, f: _Timer(), lambda f: None, lambda f, r: None
        )

    def ready(self) -> bool:
        return True

    def clusters(self) -> dict[str, Any]:
        return SERVE

    def effective_config(self) -> dict[str, Any]:
        return {}


def _scope(path: str, query: bytes = b"", headers: tuple[tuple[bytes, bytes], ...] = (), method: str = "GET") -> Any:
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": list(headers)}


async def _get(
    app: AdminApp, path: str, query: bytes = b"", token: str | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    headers = () if token is None else ((b"authorization", f"Bearer {token}".encode()),)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope(path, query, headers), receive, send)
    start, *bodies = sent
    return start["status"], dict(start["headers"]), b"".join(b.get("body", b"") for b in bodies)


async def test_the_dashboard_is_a_page_and_the_root_leads_to_it() -> None:
    app = AdminApp(Source())
    status, headers, body = await _get(app, "/dashboard")
    assert status == 200 and headers[b"content-type"].startswith(b"text/html")
    assert headers[b"referrer-policy"] == b"no-referrer" and headers[b"cache-control"] == b"no-store"
    assert body == live_page()
    status, headers, _ = await _get(app, "/", b"token=x")
    assert (status, headers[b"location"]) == (307, b"dashboard?token=x")
    status, _, body = await _get(app, "/nowhere")
    assert status == 404 and b"/dashboard, /events" in body


async def test_pages_take_the_token_from_the_query_and_nothing_else_does() -> None:
    app = AdminApp(Source(), token="s3cret")
    assert (await _get(app, "/dashboard"))[0] == 401
    assert (await _get(app, "/dashboard", b"token=wrong"))[0] == 401
    assert (await _get(app, "/dashboard", b"token=s3cret"))[0] == 200
    assert (await _get(app, "/dashboard", token="s3cret"))[0] == 200
    assert (await _get(app, "/", b"token=s3cret"))[0] == 307
    assert (await _get(app, "/events"))[0] == 401
    for path in ("/clusters", "/faults", "/metrics", "/config"):
        assert (await _get(app, path, b"token=s3cret"))[0] == 401, path
        assert (await _get(app, path, token="s3cret"))[0] == 200, path
    assert (await _get(app, "/healthz"))[0] == 200


class _Stream:
    """A browser on /events: reads `wanted` messages, then goes away."""

    def __init__(self, wanted: int, gone: Any) -> None:
        self.wanted = wanted
        self.gone = gone
        self.start: dict[str, Any] = {}
        self.body = b""
        self.chunks = 0
        self.asked = 0

    async def receive(self) -> dict[str, Any]:
        self.asked += 1
        if self.asked == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        assert message.get("more_body") is True  # a stream never ends from the app's side
        self.body += message["body"]
        self.chunks += 1
        if self.chunks >= self.wanted:
            self.gone.set()


def _check_stream(app: AdminApp, watched: _Stream) -> None:
    assert watched.start["status"] == 200
    assert dict(watched.start["headers"])[b"content-type"].startswith(b"text/event-stream")
    messages = _messages(watched.body)
    assert [event for event, _ in messages] == ["hello", "sample", "sample"]
    seqs = [sample["seq"] for sample in [*messages[0][1]["history"], *(data for _, data in messages[1:])]]
    assert seqs == sorted(set(seqs))  # each sample once, in order
    assert messages[-1][1]["services"][0]["name"] == "api"
    assert app.sampler.latest is not None


async def test_events_stream_samples_on_trio_until_the_page_goes() -> None:
    app = AdminApp(Source(), sampler=Sampler(interval=0.02))
    watched = _Stream(3, trio.Event())
    with trio.fail_after(5):
        await app(_scope("/events"), watched.receive, watched.send)
    _check_stream(app, watched)


def test_events_stream_samples_on_asyncio_until_the_page_goes() -> None:
    app = AdminApp(Source(), sampler=Sampler(interval=0.02))

    async def watch() -> _Stream:
        watched = _Stream(3, asyncio.Event())
        await asyncio.wait_for(app(_scope("/events"), watched.receive, watched.send), 5)
        return watched

    _check_stream(app, asyncio.run(watch()))


async def test_events_refuses_past_its_limit_and_takes_only_get(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin, "MAX_STREAMS", 1)
    app = AdminApp(Source(), sampler=Sampler(interval=0.02))
    watched = _Stream(1000, trio.Event())
    refused: list[tuple[int, dict[bytes, bytes], bytes]] = []

    async def second_page() -> None:
        await trio.sleep(0.1)
        refused.append(await _get(app, "/events"))
        watched.gone.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(second_page)
            await app(_scope("/events"), watched.receive, watched.send)
    ((status, _, body),) = refused
    assert status == 503 and b"dashboards are watching already" in body
    again = _Stream(1, trio.Event())
    with trio.fail_after(5):
        await app(_scope("/events"), again.receive, again.send)
    assert again.start["status"] == 200  # the first page has gone: its place is free
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(_scope("/events", method="POST"), receive, send)
    assert sent[0]["status"] == 405


async def test_the_app_samples_in_its_lifespan_so_a_page_opened_later_has_the_minutes_before() -> None:
    app = AdminApp(Source(), sampler=Sampler(interval=0.02))
    inbox_send, inbox = trio.open_memory_channel[dict[str, Any]](4)
    said: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        said.append(message["type"])

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, {"type": "lifespan"}, inbox.receive, send)
            await inbox_send.send({"type": "lifespan.startup"})
            await trio.sleep(0.2)
            await inbox_send.send({"type": "lifespan.shutdown"})
    assert said == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert len(app.sampler.history) >= 3
    watched = _Stream(1, trio.Event())
    with trio.fail_after(5):
        await app(_scope("/events"), watched.receive, watched.send)
    ((event, hello),) = _messages(watched.body)
    assert event == "hello" and len(hello["history"]) >= 3
