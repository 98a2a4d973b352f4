"""The dashboard page: assets/dashboard.html with its CSS and JS inlined, live or with a report in it.

One page for both uses: `data-mode="live"` draws the process behind it from the
/events stream; `data-mode="report"` draws the JSON embedded in the page. Inlining
makes the report one file that opens anywhere, and the live page one request.

The page's Content-Security-Policy allows its own script and style by their hashes
and nothing else: no other script runs, no resource loads, and the live page
connects only to where it came from.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import re
from importlib import resources
from typing import Any

_MARKER = re.compile(r"@@([A-Z]+)@@")
_TITLE = "meshsim dashboard"


@functools.cache
def _asset(name: str) -> str:
    return (resources.files("meshsim.dashboard") / "assets" / name).read_text(encoding="utf-8")


def live_page() -> bytes:
    """The page of a running process (served at /dashboard)."""
    return _live_page()


@functools.cache
def _live_page() -> bytes:
    return page("live", _TITLE, None).encode()


def report_page(report: dict[str, Any], replica_load: dict[str, list[int]] | None) -> str:
    """A finished run's page: `report` as its JSON has it, and attempts per replica per timeline bucket."""
    title = f"meshsim report: {report['scenario']}"
    return page("report", title, {"report": report, "replica_load": replica_load})


def page(mode: str, title: str, data: object) -> str:
    style, script = _asset("dashboard.css"), _asset("dashboard.js")
    csp = (
        "default-src 'none'; "
        f"script-src '{_hash(script)}'; style-src '{_hash(style)}'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
    )
    parts = {
        "CSP": csp,
        "TITLE": html.escape(title),
        "MODE": mode,
        "STYLE": style,
        "SCRIPT": script,
        "DATA": _script_json(data),
    }
    # One pass over the template: what is put in is not read for markers again.
    return _MARKER.sub(lambda marker: parts[marker.group(1)], _asset("dashboard.html"))


def _hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def _script_json(data: object) -> str:
    """JSON safe inside <script>: no `</script>` or `<!--` can end the element early (JSON reads the escapes back)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
