"""The committed generated code is exactly what `just proto` makes from proto/."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

GENERATED = ("mesh_pb2.py", "mesh_pb2.pyi", "mesh_pb2_grpc.py")


@pytest.mark.slow
def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "proto",
            "--python_out=.",
            "--pyi_out=.",
            "--grpc_python_out=.",
            "proto/meshsim/pb/v1/mesh.proto",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    for name in GENERATED:
        fresh = (tmp_path / "meshsim/pb/v1" / name).read_bytes()
        committed = (ROOT / "meshsim/pb/v1" / name).read_bytes()
        assert fresh == committed, f"meshsim/pb/v1/{name} is stale: run `just proto`"


def test_the_service_has_the_name_users_expect() -> None:
    from meshsim.pb.v1 import mesh_pb2

    service = mesh_pb2.DESCRIPTOR.services_by_name["MeshService"]
    assert service.full_name == "mesh.v1.MeshService"
    assert [m.name for m in service.methods] == ["Process", "StreamEvents", "CollectMetrics", "Chat"]
    shapes = [(m.client_streaming, m.server_streaming) for m in service.methods]
    assert shapes == [(False, False), (False, True), (True, False), (True, True)]
