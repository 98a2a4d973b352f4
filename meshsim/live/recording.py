"""A live recorder's timer: calls heard of by a quiet process still reach the file within seconds."""

from __future__ import annotations

import trio

from meshsim.core.call_log import BLOCK_SECONDS, CallRecorder


async def keep_flushing(recorder: CallRecorder) -> None:
    """Until cancelled: write the recorder's buffered calls once the oldest is `BLOCK_SECONDS` old,
    so that a process that dies after a burst and a quiet spell loses seconds of calls, not all."""
    while not recorder.closed:
        await trio.sleep(BLOCK_SECONDS / 2)
        recorder.flush_stale()
