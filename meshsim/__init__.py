"""meshsim: a deterministic simulator and live runtime for gRPC service meshes.

`from meshsim import GrpcClient, RetryPolicy` works as in the seed description; the
live names are loaded on first use, so that `import meshsim` (and the simulator)
never loads grpc or asyncio.
"""

from __future__ import annotations

import importlib
from typing import Any

from meshsim.core.retry import HedgingPolicy, RetryPolicy

__version__ = "0.1.0"

_LIVE = frozenset({"GrpcClient", "RpcError"})

__all__ = ["GrpcClient", "HedgingPolicy", "RetryPolicy", "RpcError", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LIVE:
        return getattr(importlib.import_module("meshsim.live"), name)
    raise AttributeError(f"module 'meshsim' has no attribute {name!r}")
