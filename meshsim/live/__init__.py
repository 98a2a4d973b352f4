"""Live mode: real grpc.aio servers and (later) channels, driven from the same mesh logic."""
