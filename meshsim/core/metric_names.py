"""The Prometheus metric and label names meshsim exports, in one place.

    grpc_requests_total{CALLER, service, method, code}     calls that ended (counter)
    grpc_request_duration_seconds{CALLER, service, method} how long they took (histogram)
    grpc_endpoint_health{client, service, endpoint}        1 while a caller's balancer counts it healthy
    grpc_endpoint_health{replica, service}                 1 while a replica reports SERVING
    grpc_active_connections{client, service, endpoint}     1 while a caller's channel to it is READY
    grpc_client_attempts_total{client, service, endpoint, code}      a caller's attempts, by replica
    grpc_client_attempt_duration_seconds{client, service, endpoint}  how long each took (histogram)
    meshsim_faults_applied_total{action}                   chaos faults applied (counter)
    meshsim_faults_cleared_total{action, reason}           ... and cleared: expired, deleted, cleared
    meshsim_faults_active{action}                          chaos faults active now
    meshsim_faults_injected_total{action}                  calls a chaos fault acted on (Envoy's
                                                           fault.aborts_injected, delays_injected)

CALLER is `client` in a caller's metrics (the proxy, GrpcClient: `live/metrics.py`)
and `replica` in a demo replica's (`demo/metrics.py`); `meshsim top` reads both
back (`cli/health_view.py`). Dashboards and alerts are written against these names,
so the writers and the reader take them from here. The module is in core, not live,
so that `meshsim top`, a plain HTTP client, reads them without loading grpc.

The assertion metrics of a scenario report (`core/scenario.py`) are another thing.
"""

from __future__ import annotations

# Metric names, as a scrape shows them.
REQUESTS_TOTAL = "grpc_requests_total"
REQUEST_DURATION = "grpc_request_duration_seconds"
REQUEST_DURATION_BUCKET = REQUEST_DURATION + "_bucket"  # the histogram's bucket series
ENDPOINT_HEALTH = "grpc_endpoint_health"
ACTIVE_CONNECTIONS = "grpc_active_connections"
# Per attempt, per replica: gRFC A66's grpc.client.attempt.* in Prometheus' naming.
ATTEMPTS_TOTAL = "grpc_client_attempts_total"
ATTEMPT_DURATION = "grpc_client_attempt_duration_seconds"
ATTEMPT_DURATION_BUCKET = ATTEMPT_DURATION + "_bucket"
FAULTS_APPLIED = "meshsim_faults_applied_total"
FAULTS_CLEARED = "meshsim_faults_cleared_total"
FAULTS_ACTIVE = "meshsim_faults_active"
FAULTS_INJECTED = "meshsim_faults_injected_total"

# Label names.
CLIENT = "client"
REPLICA = "replica"
SERVICE = "service"
METHOD = "method"
CODE = "code"
ENDPOINT = "endpoint"
ACTION = "action"  # a chaos fault's kind
REASON = "reason"  # why a chaos fault was cleared
BUCKET_BOUND = "le"  # Prometheus' own: a histogram bucket's upper bound
