"""The dashboard and the HTML report in a real browser: headless Chromium driven by selenium.

`meshsim serve --replicas 3` behind `meshsim live`, calls flowing through the proxy: the proxy's
dashboard loads and draws, a replica killed over the admin API shows unhealthy there within a few
seconds, the replicas' own dashboard (behind a token carried by `?token=`) shows it down and its
share gone to the others, then back; and `meshsim run --html`'s page draws its charts and tables.

Chromium and its driver are Debian's packages (`chromium`, `chromium-driver`), installed with
apt-get by the `chromium` fixture when they are missing, so a clean clone's test command needs
nothing by hand; selenium comes with the dev extra. Screenshots go under pytest's temporary
directory; the test prints where.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import grpc
import pytest
from click.testing import CliRunner

from meshsim.cli import main
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from tests.conftest import ROOT
from tests.mesh import FAST_HEALTH, Mesh, running_mesh

pytestmark = pytest.mark.slow

PACKAGES = ("chromium", "chromium-driver")
TOKEN = "dashboard-s3cret"
# Long enough for a health check to see it (interval 200 ms) and a page to show it; short enough to wait out.
KILL_FOR = 4.0


@attrs.frozen
class Browser:
    chromium: str
    driver: str


@pytest.fixture(scope="session")
def chromium() -> Browser:
    """Debian's chromium and chromium-driver, installed with apt-get if they are missing."""
    found = Browser(shutil.which("chromium") or "", shutil.which("chromedriver") or "")
    if found.chromium and found.driver:
        return found
    apt = shutil.which("apt-get")
    assert apt, f"the browser test needs {' and '.join(PACKAGES)}, and there is no apt-get to install them"
    command = [apt] if os.geteuid() == 0 else ["sudo", "-n", apt]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["update", "-q"], ["install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
        done = subprocess.run(
            [*command, *step], capture_output=True, text=True, timeout=900, env=environment, check=False
        )
        assert done.returncode == 0, f"apt-get {step[0]} failed: {done.stderr[-2000:]}"
    installed = Browser(shutil.which("chromium") or "", shutil.which("chromedriver") or "")
    assert installed.chromium and installed.driver, "apt-get installed chromium, yet it is not on PATH"
    return installed


@pytest.fixture(scope="module")
def browser(chromium: Browser) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # pragma: no cover - the dev extra brings it
        pytest.fail("selenium is missing: pip install -e '.[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium.chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1300,1100"):
        options.add_argument(argument)
    # The driver named outright: selenium would otherwise look for one to download, and there is no internet.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromium.driver))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]) -> Path:
    """One folder for the run's screenshots, under pytest's temporary directory, said on the terminal."""
    folder = tmp_path_factory.getbasetemp() / "dashboard-screenshots"
    folder.mkdir(exist_ok=True)
    with capsys.disabled():
        print(f"\nscreenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    retry = """\
[retry]
max_attempts = 3
initial_backoff = "10ms"
max_backoff = "50ms"
retryable_status_codes = ["UNAVAILABLE"]
"""
    directory = tmp_path_factory.mktemp("dashboard")
    with running_mesh(directory, FAST_HEALTH + retry, "--admin-token", TOKEN) as running:
        yield running


@pytest.fixture
def traffic(mesh: Mesh) -> Iterator[None]:
    """Calls through the proxy from two threads (a few hundred a second at most) while the test runs."""
    done = threading.Event()
    channel = grpc.insecure_channel(mesh.proxy)
    stub = mesh_pb2_grpc.MeshServiceStub(channel)

    def work() -> None:
        while not done.is_set():
            with contextlib.suppress(grpc.RpcError):
                stub.Process(mesh_pb2.ProcessRequest(request_id="dashboard"), timeout=2)
            done.wait(0.005)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=5)
        channel.close()


def _post(url: str, body: object, token: str | None = None) -> Any:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def _until(seconds: float, what: str, check: Callable[[], Any]) -> Any:
    """Poll `check` until it returns something truthy; that, or an AssertionError saying `what` did not happen."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.1)


def _state(browser: Any, address: str) -> str | None:
    """The state the page shows for the replica at `address` (the row's data-state), None before it shows it."""
    script = (
        "const row = document.querySelector(`tr[data-address='${arguments[0]}']`); return row && row.dataset.state;"
    )
    state: str | None = browser.execute_script(script, address)
    return state


def _seq(browser: Any) -> int:
    """The number of the last sample the page drew (0 before the first)."""
    return int(browser.execute_script("return Number(document.body.dataset.seq || 0);"))


def test_the_dashboard_shows_the_mesh_live_and_a_killed_replica_within_seconds(
    browser: Any, mesh: Mesh, traffic: None, screenshots: Path
) -> None:
    killed = mesh.replicas[1]
    try:
        browser.get(f"{mesh.proxy_admin}/dashboard")
        first = _until(5, "a first sample drawn", lambda: _seq(browser))
        _until(5, "the page updating by itself", lambda: _seq(browser) > first)
        assert _until(5, "the replica's row", lambda: _state(browser, killed)) == "healthy"
        rate = browser.find_element("css selector", ".service .fact-value").text  # requests/s
        assert float(rate.replace(",", "")) > 0, rate
        assert len(browser.find_elements("css selector", "figure.chart path.line")) >= 3
        browser.save_screenshot(str(screenshots / "proxy-dashboard.png"))

        fault = _post(f"{mesh.serve_admin}/faults", {"action": "kill", "target": "api/1", "for": f"{KILL_FOR}s"}, TOKEN)
        killed_at = time.monotonic()
        _until(4, "the killed replica unhealthy", lambda: _state(browser, killed) == "unhealthy")
        seen_after = time.monotonic() - killed_at
        browser.save_screenshot(str(screenshots / "proxy-dashboard-killed.png"))

        # The replicas' own dashboard: behind the token, which the page takes from its address into its stream.
        browser.get(f"{mesh.serve_admin}/dashboard?token={TOKEN}")
        _until(3, "the killed replica down", lambda: _state(browser, killed) == "down")
        assert fault["fault"]["id"] in browser.find_element("css selector", f"tr[data-address='{killed}']").text

        def others_share() -> list[float]:
            cells = browser.find_elements("css selector", "tr[data-state='healthy'] .share .num")
            return [float(cell.text.rstrip("%")) for cell in cells]

        _until(4, "the others taking its share", lambda: len(others_share()) == 2 and min(others_share()) > 30)
        browser.save_screenshot(str(screenshots / "replicas-dashboard-killed.png"))
        # The fault ends by itself: the replica serves again and the page says so.
        _until(KILL_FOR + 4, "the replica back", lambda: _state(browser, killed) == "healthy")
        browser.save_screenshot(str(screenshots / "replicas-dashboard-back.png"))
    finally:
        browser.save_screenshot(str(screenshots / "dashboard-last.png"))
        browser.get("about:blank")  # closes the stream, so the processes stop at once
    assert seen_after < 4, seen_after


def test_the_html_report_draws_its_charts_and_tables(browser: Any, tmp_path: Path, screenshots: Path) -> None:
    page = tmp_path / "failover.html"
    result = CliRunner().invoke(main, ["run", str(ROOT / "scenarios" / "failover.toml"), "-q", "--html", str(page)])
    assert result.exit_code == 0, result.output
    try:
        browser.get(page.as_uri())
        rows = "table.assertions tbody tr"
        _until(5, "the assertion table", lambda: browser.find_elements("css selector", rows))
        passed = browser.find_elements("css selector", "table.assertions tr[data-passed='yes']")
        assert len(passed) == 4
        charts = {
            figure.get_attribute("data-chart"): len(figure.find_elements("css selector", "path.line"))
            for figure in browser.find_elements("css selector", "figure.chart")
        }
        assert charts == {"latency": 2, "replica-load": 3, "success": 1}
        spans = browser.find_elements("css selector", "figure.chart rect.span")
        assert len(spans) == 3  # the kill, on each chart
        assert len(browser.find_elements("css selector", "figure.chart line.mark-bad")) == 3
        events = browser.find_element("css selector", "table.events").text
        assert "fault 0: kill on api/1" in events and "api/1 unhealthy for frontend" in events
        assert browser.find_element("id", "status").text == "PASSED"
    finally:
        browser.save_screenshot(str(screenshots / "report.png"))
