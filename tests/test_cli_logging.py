"""What the long-running commands print on stderr: meshsim's own lines, not gRPC core's.

gRPC core logs on its own (an ERROR line for a port it cannot bind, an INFO line for
every refused TLS handshake) unless GRPC_VERBOSITY says otherwise before grpc is
imported; meshsim's own warnings go through Python's logging. Each test runs the
command as a real process, with no GRPC_VERBOSITY or GRPC_TRACE of the caller's.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from meshsim.cli.logs import configure_logging
from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc
from meshsim.tls import authority
from tests.conftest import ROOT

GRPC_SETTINGS = ("GRPC_VERBOSITY", "GRPC_TRACE")


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without the caller's gRPC logging settings, plus `settings`."""
    clean = {name: value for name, value in os.environ.items() if name not in GRPC_SETTINGS}
    return {**clean, "PYTHONUNBUFFERED": "1", **settings}


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """`meshsim ARGS` (serve or live): the process and the address its first line announces."""
    process = subprocess.Popen(
        [sys.executable, "-m", "meshsim", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or environment(),
    )
    assert process.stdout is not None
    announced = process.stdout.readline()
    assert " on " in announced, process.communicate(timeout=15)
    return process, announced.split(" on ")[1].split(" ")[0].strip()


def serve(*options: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    return start("serve", "--port", "0", "--grace", "0s", *options, env=env)


def stderr_at_exit(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return err


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    authority.init_directory(tmp_path / "certs")
    return tmp_path / "certs"


def call(address: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.StatusCode:
    channel = grpc.insecure_channel(address) if credentials is None else grpc.secure_channel(address, credentials)
    with channel:
        try:
            mesh_pb2_grpc.MeshServiceStub(channel).Process(mesh_pb2.ProcessRequest(request_id="r"), timeout=5)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def mtls(certs: Path) -> grpc.ChannelCredentials:
    ca, key, cert = ((certs / name).read_bytes() for name in ("ca.pem", "client-key.pem", "client.pem"))
    return grpc.ssl_channel_credentials(ca, key, cert)


@pytest.mark.slow
def test_a_taken_port_is_one_line_of_error_and_nothing_from_grpc_core() -> None:
    # Bound without SO_REUSEPORT and listening: grpc (which sets SO_REUSEPORT) cannot bind beside it.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = subprocess.run(
            [sys.executable, "-m", "meshsim", "serve", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=environment(),
        )
    assert refused.returncode == 2
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, refused.stderr  # before: gRPC core's "E... add_port.cc:83] Failed to add port" first
    assert lines[0].startswith("error: ")
    assert f"127.0.0.1:{port}" in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["serve", "live"])
def test_a_refused_handshake_prints_nothing_on_the_servers_stderr(command: str, certs: Path, tmp_path: Path) -> None:
    if command == "serve":
        process, address = serve("--cert-dir", str(certs))
    else:
        config = tmp_path / "mesh.toml"  # the mTLS proxy, in front of no replica: only its listener matters
        config.write_text(
            f'[proxy]\nlisten = "127.0.0.1:0"\nendpoints = ["127.0.0.1:1"]\n'
            f'[mtls]\ncert_dir = "{certs}"\nupstream = false\n',
            encoding="utf-8",
        )
        process, address = start("live", str(config))
    try:
        assert call(address) == grpc.StatusCode.UNAVAILABLE  # plaintext against mTLS: refused
        assert call(address, grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes())) == (
            grpc.StatusCode.UNAVAILABLE  # TLS without a client certificate: refused too
        )
        if command == "serve":
            assert call(address, mtls(certs)) == grpc.StatusCode.OK  # and it went on serving
    finally:
        err = stderr_at_exit(process)
    assert "ssl_transport_security" not in err
    assert "Handshake failed" not in err
    assert all(line.startswith("meshsim: ") for line in err.splitlines()), err


@pytest.mark.slow
def test_the_users_own_grpc_verbosity_is_kept(certs: Path) -> None:
    process, address = serve("--cert-dir", str(certs), env=environment(GRPC_VERBOSITY="INFO"))
    try:
        assert call(address) == grpc.StatusCode.UNAVAILABLE
        assert call(address, mtls(certs)) == grpc.StatusCode.OK
    finally:
        err = stderr_at_exit(process)
    assert "Handshake failed" in err


@pytest.mark.slow
def test_meshsims_own_warning_is_one_line_on_stderr(certs: Path) -> None:
    process, address = serve("--cert-dir", str(certs))
    try:
        # A key that is not the certificate's: the server keeps the pair it has, and says so.
        shutil.copyfile(certs / "client-key.pem", certs / "server-key.pem.new")
        (certs / "server-key.pem.new").replace(certs / "server-key.pem")
        assert call(address, mtls(certs)) == grpc.StatusCode.OK
    finally:
        err = stderr_at_exit(process)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("meshsim: warning: keeping the certificates in use: ")


def test_every_meshsim_logger_writes_one_plain_line(capsys: pytest.CaptureFixture[str]) -> None:
    meshsim_logger = logging.getLogger("meshsim.live.anything")  # as a module of meshsim.live names its own
    with configure_logging():
        meshsim_logger.debug("not shown: news and worse are")
        meshsim_logger.info("replica %s is reachable again", "a:1")
        meshsim_logger.warning("the files %s and %s disagree", "a.pem", "b.pem")
        try:
            raise ValueError("bad\nbytes")
        except ValueError:
            meshsim_logger.exception("cannot send a request")
    assert capsys.readouterr().err.splitlines() == [
        "meshsim: info: replica a:1 is reachable again",
        "meshsim: warning: the files a.pem and b.pem disagree",
        "meshsim: error: cannot send a request: ValueError: bad bytes",  # no traceback, one line
    ]


def test_configuring_twice_prints_once_and_leaves_nothing_behind(capsys: pytest.CaptureFixture[str]) -> None:
    handlers = list(logging.getLogger("meshsim").handlers)
    with configure_logging(), configure_logging():
        logging.getLogger("meshsim.cli").warning("once")
    assert capsys.readouterr().err == "meshsim: warning: once\n"
    assert logging.getLogger("meshsim").handlers == handlers


@pytest.mark.parametrize(
    ("given", "during"),
    [
        ({}, {"GRPC_VERBOSITY": "NONE"}),
        ({"GRPC_VERBOSITY": "DEBUG"}, {"GRPC_VERBOSITY": "DEBUG"}),
        # Traces asked for are shown: grpc's own default verbosity prints them, NONE would not.
        ({"GRPC_TRACE": "handshaker"}, {"GRPC_TRACE": "handshaker"}),
    ],
)
def test_grpc_core_is_quiet_unless_the_user_says_otherwise(
    given: dict[str, str], during: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in GRPC_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    with configure_logging():
        assert {name: os.environ[name] for name in GRPC_SETTINGS if name in os.environ} == during
    assert {name: os.environ[name] for name in GRPC_SETTINGS if name in os.environ} == given


def test_json_lines_carry_a_lines_facts_and_the_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("meshsim.test")
    with configure_logging("json", "warning"):
        logger.info("not shown at warning")
        logger.warning("api/1 is out", extra={"fields": {"endpoint": "api/1", "trace_id": "ab" * 16}})
    with configure_logging("text", "info"):
        logger.info("said on stdout already", extra={"on_stdout": True})
        logger.info("news")
    lines = capsys.readouterr().err.splitlines()

    first = json.loads(lines[0])
    assert {k: first[k] for k in ("level", "logger", "message", "endpoint", "trace_id")} == {
        "level": "warning",
        "logger": "meshsim.test",
        "message": "api/1 is out",
        "endpoint": "api/1",
        "trace_id": "ab" * 16,
    }
    assert first["time"].endswith("+00:00")
    assert lines[1:] == ["meshsim: info: news"]
