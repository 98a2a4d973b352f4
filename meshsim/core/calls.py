"""What a call is, independent of whether a simulator or a real channel carries it."""

from __future__ import annotations

import enum

import attrs


class Pattern(enum.Enum):
    """The four gRPC call shapes."""

    UNARY = "unary"
    SERVER_STREAM = "server_stream"
    CLIENT_STREAM = "client_stream"
    BIDI = "bidi"


# The service the simulator simulates, and the demo replicas serve: one method per pattern.
MESH_SERVICE = "mesh.v1.MeshService"
METHOD_OF_PATTERN = {
    Pattern.UNARY: "Process",
    Pattern.SERVER_STREAM: "StreamEvents",
    Pattern.CLIENT_STREAM: "CollectMetrics",
    Pattern.BIDI: "Chat",
}
MESH_METHODS = tuple(METHOD_OF_PATTERN.values())


@attrs.frozen
class CallSpec:
    """One call a client makes: what it sends, where, and how long it may take.

    `deadline` is relative (seconds from the call's start), as a gRPC client sets a
    timeout; None means no deadline. `messages` counts the streamed messages
    (requests for client streaming, responses for server streaming, exchanges for
    bidi; 1 for unary). `key` feeds consistent hashing.
    """

    client: str
    service: str
    pattern: Pattern = Pattern.UNARY
    key: str | None = None
    deadline: float | None = None
    messages: int = 1
    # The gRPC method ("/package.Service/Method"), where the caller knows it (live mode).
    method: str = ""
    # What a live transport sends (the simulator ignores it): opaque to the mesh logic.
    payload: object = attrs.field(default=None, eq=False, repr=False)
