"""The status seam: every grpc status and health state converts to meshsim's and back unchanged."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2

from meshsim.core.status import HealthStatus, StatusCode
from meshsim.live.status import PUSHBACK_KEY, from_grpc, health_from_grpc, pushback_in, serving_to_grpc, to_grpc


def test_every_code_round_trips_with_its_number_and_name() -> None:
    for code in grpc.StatusCode:
        status = from_grpc(code)
        assert (status.value, status.name) == (code.value[0], code.name)
        assert to_grpc(status) is code
    assert len(StatusCode) == len(grpc.StatusCode)


def test_health_states_and_pushback() -> None:
    answer = health_pb2.HealthCheckResponse
    assert health_from_grpc(answer.SERVING) is HealthStatus.SERVING
    assert health_from_grpc(answer.SERVICE_UNKNOWN) is HealthStatus.SERVICE_UNKNOWN
    assert health_from_grpc(answer.NOT_SERVING) is HealthStatus.NOT_SERVING
    assert health_from_grpc(answer.UNKNOWN) is HealthStatus.NOT_SERVING  # anything else is no
    assert (serving_to_grpc(True), serving_to_grpc(False)) == (answer.SERVING, answer.NOT_SERVING)
    assert pushback_in(((PUSHBACK_KEY, "250"),)) == 250
    assert pushback_in(((PUSHBACK_KEY, "soon"),)) == -1  # A6: unreadable means do not retry
    assert pushback_in((("other", "1"),)) is None and pushback_in(None) is None
