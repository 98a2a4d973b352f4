"""The demo replicas (`meshsim serve`): grpc.aio servers of mesh.v1.MeshService, for meshsim's callers to call.

The caller side (`meshsim.live`) never imports this package; it may use live's helpers
(TLS credentials, the metrics' HTTP config, the status conversions).
"""
