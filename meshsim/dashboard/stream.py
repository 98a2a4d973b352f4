"""The messages of the dashboard's `/events` stream, as server-sent events (the EventSource format).

    event: hello    once, first: the pace, the window and the history the page draws at once
    event: sample   then one a second: the process now (sampler.py)

Each message is one `data:` line of compact JSON. `retry` asks the browser to reconnect
within two seconds when the stream breaks (a restarted process, a dropped connection):
it then gets a new hello with the history it missed.
"""

from __future__ import annotations

import json
from typing import Any

from meshsim.dashboard.sampler import Sampler

RETRY_MS = 2000


def hello(sampler: Sampler) -> bytes:
    data = {"interval_s": sampler.interval, "window_s": sampler.window, "history": list(sampler.history)}
    return f"retry: {RETRY_MS}\n".encode() + message("hello", data)


def sample(data: dict[str, Any]) -> bytes:
    return message("sample", data)


def message(event: str, data: object) -> bytes:
    # Compact JSON has no newline, which would end the data line; NaN is not JSON, so none is allowed.
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return f"event: {event}\ndata: {text}\n\n".encode()
