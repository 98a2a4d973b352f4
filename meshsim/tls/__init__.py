"""Certificates for mTLS: a private CA that issues them, and a loader that checks them.

This layer reads files and the wall clock but knows nothing of grpc: live mode turns
the PEM bytes it returns into credentials.
"""

from __future__ import annotations

from meshsim.tls.material import PemMaterial as PemMaterial
from meshsim.tls.material import TlsError as TlsError
from meshsim.tls.material import TlsFiles as TlsFiles
from meshsim.tls.material import load_client_material as load_client_material
from meshsim.tls.material import load_server_material as load_server_material

__all__ = ["PemMaterial", "TlsError", "TlsFiles", "load_client_material", "load_server_material"]
