"""meshsim's own exceptions: one tree, so that each seam translates errors once and the command
line maps each kind to its exit code in one place.

    MeshsimError
    ├── ConfigError      bad input: a file, a key or a flag (exit 2); one line naming it
    │   ├── ScenarioError    a scenario file (core.scenario)
    │   ├── ProxyConfigError a proxy config (live.config)
    │   └── TlsError         a certificate or key file (tls.material)
    ├── StartupError     a server, proxy or metrics endpoint could not start (exit 2): a port in use, ...
    ├── RpcError         a call through the mesh ended with a status other than OK (live.client)
    └── ActorFailed      an actor crashed past its restarts: a bug in meshsim (exit 3)
"""

from __future__ import annotations


class MeshsimError(Exception):
    """Anything meshsim raises on purpose."""


class ConfigError(MeshsimError, ValueError):
    """Invalid input; the message is one line that names the file (or flag) and the key. A
    ValueError too, as bad values are to Python code that catches those."""


class StartupError(MeshsimError):
    """Something that had to start could not (the message names the address and why)."""
