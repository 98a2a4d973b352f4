"""`meshsim chaos URL ...`: faults into running processes over their admin endpoints.

    meshsim chaos http://127.0.0.1:9090 add errors --target api/1 --status UNAVAILABLE --share 0.5 --for 30s
    meshsim chaos http://127.0.0.1:9090 list
    meshsim chaos http://127.0.0.1:9090 clear [ID]
    meshsim chaos http://127.0.0.1:9091,http://127.0.0.1:9090 play scenarios/failover.toml

URL may name several processes, comma-separated (replicas and a proxy): a fault goes
to the first that has its target. Every fault carries its duration and clears itself
in the process that holds it, so nothing here has to stay running for it to end.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click
from rich.table import Table

from meshsim.cli.app import Application

_TIMEOUT = 10.0


def _is_http_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (read for its check: a port that is not a number raises)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class _Admin:
    """The admin endpoints named by URL, spoken to in JSON."""

    def __init__(self, app: Application, urls: str, token: str | None) -> None:
        self.app = app
        self.urls = [url.strip().rstrip("/") for url in urls.split(",") if url.strip()]
        if not self.urls or not all(_is_http_url(url) for url in self.urls):
            raise click.BadParameter(
                f'expected "http://HOST:PORT" (comma-separated for several), got {urls!r}', param_hint="URL"
            )
        self.token = token

    def request(self, url: str, method: str, path: str, body: object = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        try:
            request = urllib.request.Request(url + path, data=data, method=method, headers=headers)
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            try:
                answer = json.loads(error.read() or b"null")
            except ValueError:
                answer = None
            if error.code == 401:
                self.app.abort(f"{url}: a bearer token is required: --token or MESHSIM_ADMIN_TOKEN")
            return error.code, answer
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
            # HTTPException: something that is not HTTP answered (a gRPC port, say).
            reason = getattr(error, "reason", None) or f"{type(error).__name__}: {error}"
            self.app.abort(f"{url}: cannot reach the admin endpoint: {reason}")

    def add(self, fault: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Add to the first process that takes the target; one line and exit 2 if none does."""
        added = self.try_add(fault)
        if isinstance(added, str):
            self.app.abort(added)
        return added

    def try_add(self, fault: dict[str, Any]) -> tuple[str, dict[str, Any]] | str:
        """(url, the fault as added) from the first process that takes the target, or why none did."""
        refused = []
        for url in self.urls:
            status, answer = self.request(url, "POST", "/faults", fault)
            if status == 201:
                return url, answer["fault"]
            error = answer if isinstance(answer, dict) else {"error": f"HTTP {status}"}
            field = error.get("field")
            problem = f"{field}: {error.get('error')}" if field else str(error.get("error"))
            if field not in ("target", "action"):  # the fault itself is wrong, not this process's choice
                return f"{url}: {problem}"
            refused.append(f"{url}: {problem}")
        return refused[0] if len(refused) == 1 else "no process takes it: " + "; ".join(refused)


@click.group()
@click.argument("url")
@click.option(
    "--token", envvar="MESHSIM_ADMIN_TOKEN", help="The admin endpoint's bearer token [env: MESHSIM_ADMIN_TOKEN]."
)
@click.pass_context
def chaos(ctx: click.Context, url: str, token: str | None) -> None:
    """Add, list and clear faults in running processes (`meshsim serve --admin`, `meshsim live`)."""
    ctx.obj = _Admin(ctx.obj, url, token)


@chaos.command()
@click.argument("action", type=click.Choice(["kill", "latency", "errors", "blackhole", "health", "partition"]))
@click.option("--target", required=True, help="A replica (api/1, or its address), a service, or * (the proxy).")
@click.option("--for", "duration", required=True, help='How long the fault lasts, e.g. "30s"; then it clears itself.')
@click.option("--method", help="Only calls of this method (Process, or /mesh.v1.MeshService/Process).")
@click.option("--header", help='Only calls carrying this header ("name" or "name=value"; the proxy).')
@click.option("--share", type=float, help="The share of matching calls it acts on (for errors: that fail).")
@click.option("--status", help="errors: the status (UNAVAILABLE...); health: NOT_SERVING or SERVICE_UNKNOWN.")
@click.option("--add", "--delay", "add", help='latency: added to each call, e.g. "200ms".')
@click.option("--multiply", type=float, help="latency: each call's time multiplied by this (replicas).")
@click.option("--client", help="partition: the client (the proxy's cluster) cut from the endpoint.")
@click.pass_obj
def add(admin: _Admin, /, action: str, **options: Any) -> None:
    """Add a fault: ACTION is kill, latency, errors, blackhole, health or partition."""
    fault: dict[str, Any] = {"action": action}
    names = {"duration": "for"}
    fault.update((names.get(key, key), value) for key, value in options.items() if value is not None)
    url, added = admin.add(fault)
    admin.app.display(f"{added['id']} added on {url}: {_describe(added)}")


@chaos.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the faults as JSON.")
@click.pass_obj
def list_faults(admin: _Admin, as_json: bool) -> None:
    """List the active faults, with the time each has left."""
    found = []
    for url in admin.urls:
        status, answer = admin.request(url, "GET", "/faults")
        if status != 200:
            admin.app.abort(f"{url}: HTTP {status}: {answer}")
        found += [{"url": url, **fault} for fault in answer["faults"]]
    if as_json:
        click.echo(json.dumps(found, indent=1))
        return
    if not found:
        admin.app.display("no active faults")
        return
    table = Table(show_edge=False)
    several = len(admin.urls) > 1  # ids are per process: say whose each is
    for column in ("process", "id", "action", "target", "effect", "left")[0 if several else 1 :]:
        table.add_column(column, overflow="fold", max_width=30)
    for fault in found:
        narrowed = ", ".join(f"{key} {fault[key]}" for key in ("method", "header") if fault.get(key) is not None) + (
            f" {fault['share']:.0%}" if fault.get("share", 1.0) < 1.0 else ""
        )
        effect = " ".join(part for part in (fault["effect"], narrowed) if part)
        row = [fault["id"], fault["action"], fault["target"], effect, f"{fault['remaining_s']:.1f}s"]
        table.add_row(*([urllib.parse.urlsplit(fault["url"]).netloc] if several else []), *row)
    admin.app.display(table)


@chaos.command()
@click.argument("fault_id", metavar="[ID]", required=False)
@click.pass_obj
def clear(admin: _Admin, fault_id: str | None) -> None:
    """Clear one fault (by ID: the first process that has one so numbered; give one URL to say
    which), or every fault."""
    cleared = 0
    for url in admin.urls:
        status, answer = admin.request(url, "DELETE", "/faults" + ("" if fault_id is None else f"/{fault_id}"))
        if status == 200:
            cleared += len(answer["cleared"])
            if fault_id is not None:
                break  # ids are per process: the same id elsewhere is another fault
        elif status != 404 or fault_id is None:
            admin.app.abort(f"{url}: HTTP {status}: {answer}")
    if fault_id is not None and not cleared:
        admin.app.abort(f"no active fault {fault_id!r}")
    admin.app.display(f"cleared {cleared} fault{'s' if cleared != 1 else ''}")


@chaos.command()
@click.argument("scenario_path", metavar="SCENARIO", type=click.Path(dir_okay=False))
@click.pass_obj
def play(admin: _Admin, scenario_path: str) -> None:
    """Play SCENARIO's [[fault]] timeline against the running processes, in wall time.

    A fault without `for` lasts to the end of the scenario. A fault no process takes (a
    partition on replicas, say) is skipped, saying why, and the play exits 1 at its end.
    Ctrl-C stops the play and clears the faults it added."""
    from meshsim.core.chaos import fault_request
    from meshsim.core.scenario_loader import load_scenario
    from meshsim.core.units import format_duration

    scenario = load_scenario(scenario_path)
    faults = sorted(scenario.faults, key=lambda fault: fault.at)
    if not faults:
        admin.app.abort(f"{scenario_path}: the scenario has no [[fault]] to play")
    app = admin.app
    app.display(
        f"playing {len(faults)} fault{'s' if len(faults) != 1 else ''} of {scenario.name} "
        f"over {format_duration(scenario.duration)}"
    )
    start = time.monotonic()
    added: list[tuple[str, str, float]] = []  # (url, id, ends at)
    ends: list[tuple[float, str]] = []
    skipped = 0
    try:
        for fault in faults:
            ends = _report_ends(app, start, ends)
            time.sleep(max(0.0, start + fault.at - time.monotonic()))
            ends = _report_ends(app, start, ends)
            duration = fault.duration if fault.duration is not None else scenario.duration - fault.at
            taken = admin.try_add(fault_request(fault.action, fault.target, fault.effect, duration))
            if isinstance(taken, str):
                skipped += 1
                app.display(f"{_clock(time.monotonic() - start)}  skipped {fault.action} on {fault.target}: {taken}")
                continue
            url, applied = taken
            added.append((url, applied["id"], fault.at + duration))
            ends.append((fault.at + duration, f"{applied['id']} ended: {fault.action} on {fault.target}"))
            app.display(f"{_clock(time.monotonic() - start)}  {applied['id']} {_describe(applied)}")
        last = max((at for _, _, at in added), default=0.0)
        while ends:
            time.sleep(max(0.0, min(start + at for at, _ in ends) - time.monotonic()))
            ends = _report_ends(app, start, ends)
        time.sleep(max(0.0, start + last - time.monotonic()))
    except KeyboardInterrupt:
        left = [(url, fault_id) for url, fault_id, at in added if start + at > time.monotonic()]
        for url, fault_id in left:
            with contextlib.suppress(SystemExit):  # one process gone: the others' faults still go
                admin.request(url, "DELETE", f"/faults/{fault_id}")
        app.display(f"stopped: cleared {len(left)} fault{'s' if len(left) != 1 else ''} still active")
        raise SystemExit(130) from None
    app.display(f"played {len(added)} fault{'s' if len(added) != 1 else ''}; all have ended")
    if skipped:
        app.display(f"skipped {skipped}: no process took {'them' if skipped > 1 else 'it'}")
        raise SystemExit(1)


def _report_ends(app: Application, start: float, ends: list[tuple[float, str]]) -> list[tuple[float, str]]:
    now = time.monotonic() - start
    for at, line in sorted(ends):
        if at <= now:
            app.display(f"{_clock(at)}  {line}")
    return [(at, line) for at, line in ends if at > now]


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def _describe(fault: dict[str, Any]) -> str:
    effect = f" {fault['effect']}" if fault.get("effect") else ""
    return f"{fault['action']}{effect} on {fault['target']} for {fault['for_s']:g}s"
