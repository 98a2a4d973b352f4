"""Client library overhead: unary calls per second through GrpcClient against a bare grpc.aio stub.

Both sides call the same in-process demo replica on 127.0.0.1 with the same number of
calls and the same concurrency, taking turns (bare, client, bare, client, ...) in one
process; each side's best round is compared, so that a neighbour's burst on the shared
machine does not decide the ratio (GrpcClient / bare stub, target >= 0.9).

    .venv/bin/python benchmarks/client_overhead.py                          # 5 rounds of 5,000 calls, 16 at a time
    .venv/bin/python benchmarks/client_overhead.py --calls 1000 --rounds 2  # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
import trio

from meshsim import live
from meshsim.core.health import HealthConfig
from meshsim.demo.server import ServeConfig, start_replicas, stop_replicas
from meshsim.live import bridge
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc

REQUEST = mesh_pb2.ProcessRequest(request_id="bench", data="x" * 64)


async def bare(address: str, calls: int, concurrency: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = mesh_pb2_grpc.MeshServiceStub(channel)
        await stub.Process(REQUEST)  # connect before the clock starts
        remaining = calls

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await stub.Process(REQUEST)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def through_client(address: str, calls: int, concurrency: int) -> float:
    # Health checks on (the default) but slow, as a real client would run them.
    health = HealthConfig(interval=5.0, timeout=1.0)
    async with live.GrpcClient(endpoints=[address], health=health) as client:
        await client.Process(REQUEST)
        remaining = calls

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await client.Process(REQUEST)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5_000, help="calls per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    async def run_both() -> tuple[list[float], list[float]]:
        replicas = await bridge.wait(start_replicas(ServeConfig(port=0)))
        address = replicas[0].address
        bare_walls, client_walls = [], []
        try:
            for _ in range(args.rounds):
                bare_walls.append(await bridge.wait(bare(address, args.calls, args.concurrency)))
                client_walls.append(await through_client(address, args.calls, args.concurrency))
        finally:
            await bridge.wait(stop_replicas(replicas, 0))
        return bare_walls, client_walls

    bare_walls, client_walls = live.run(run_both)
    bare_rate, client_rate = args.calls / min(bare_walls), args.calls / min(client_walls)
    print(f"{args.rounds} rounds of {args.calls:,} unary calls per side, {args.concurrency} at a time, one replica")
    print(f"{'client':<12}{'best s':>10}{'worst s':>10}{'best calls/s':>14}")
    print(f"{'bare stub':<12}{min(bare_walls):>10.2f}{max(bare_walls):>10.2f}{bare_rate:>14,.0f}")
    print(f"{'GrpcClient':<12}{min(client_walls):>10.2f}{max(client_walls):>10.2f}{client_rate:>14,.0f}")
    ratio = client_rate / bare_rate
    print(f"\nratio GrpcClient / bare stub = {ratio:.2f} (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")


if __name__ == "__main__":
    main()
