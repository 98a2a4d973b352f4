"""meshsim: a deterministic simulator and live runtime for gRPC service meshes."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
