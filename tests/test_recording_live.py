"""A live recorder writes what it has heard of within seconds, even when no further call comes."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from meshsim import live
from meshsim.core.call_log import BLOCK_SECONDS, read_call_log
from meshsim.demo.server import ServeConfig, start_replicas, stop_replicas
from meshsim.live import bridge
from meshsim.pb.v1.mesh_pb2 import ProcessRequest

pytestmark = pytest.mark.slow


def test_a_quiet_clients_calls_reach_the_file_while_it_is_open(tmp_path: Path) -> None:
    path = tmp_path / "quiet.rec"

    async def main() -> int:
        (replica,) = await bridge.wait(start_replicas(ServeConfig(port=0, replicas=1)))
        try:
            async with live.GrpcClient(endpoints=[replica.address], record=path) as client:
                for index in range(3):
                    await client.Process(ProcessRequest(request_id=str(index)))
                await trio.sleep(BLOCK_SECONDS * 1.6)  # a burst, then quiet: no call would flush it
                return len(read_call_log(path))  # read while the client is still open
        finally:
            await bridge.wait(stop_replicas([replica], 0))

    assert live.run(main) == 3
