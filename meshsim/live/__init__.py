"""Live mode: real grpc.aio servers and channels, driven by the same mesh logic as the simulator."""

from __future__ import annotations

from meshsim.live.bridge import run as run
from meshsim.live.client import GrpcClient as GrpcClient
from meshsim.live.client import RpcError as RpcError

__all__ = ["GrpcClient", "RpcError", "run"]
