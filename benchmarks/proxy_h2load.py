"""Proxy overhead: h2load against one demo replica directly, through `meshsim live`, and through nginx grpc_pass.

One `meshsim serve` replica (a Python grpc.aio server) is the backend of all three
targets, and the same h2load command sends unary `/mesh.v1.MeshService/Process` calls
to each (a gRPC length-prefixed ProcessRequest, `content-type: application/grpc`,
`te: trailers`). Two measurements, each taken in rounds that visit the targets in turn
(direct, meshsim, nginx, direct, ...) so that a neighbour's burst on the shared machine
hits all of them alike; each figure is the median over rounds:

1. Throughput: closed loop (`-c` connections, `-m` streams each) for a fixed time;
   requests per second. Targets: meshsim/direct >= 0.8, and meshsim/nginx > 1.
2. Latency at half load: h2load's rate mode at half of the direct target's median
   throughput; p50 and p99 from h2load's per-request log, and what meshsim and nginx
   add to direct's. h2load sends at the rate only while it has streams free, so the
   achieved rate is printed too: a target that cannot keep up shows it there.

h2load counts a gRPC error (HTTP 200 with a grpc-status other than 0) as a success,
so every target answers real gRPC calls (status OK, from the replica behind it) before
the first h2load run and after each one; any other answer stops the benchmark with exit 1.

nginx (one worker by default, as the proxy is one process) runs in the foreground as
a child process, with its config, pid, logs and temp files in a temp directory. h2load
and nginx come from `benchmarks/install-tools` (`just bench-tools`).

    .venv/bin/python benchmarks/proxy_h2load.py                              # 3 rounds of 5 s per phase and target
    .venv/bin/python benchmarks/proxy_h2load.py --rounds 1 --duration 2     # a smoke run
    .venv/bin/python benchmarks/proxy_h2load.py --rounds 5 --duration 10    # a longer run

Figures and how to read them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import re
import resource
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import attrs
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from meshsim.pb.v1 import mesh_pb2, mesh_pb2_grpc

SERVICE = "mesh.v1.MeshService"
METHOD = f"/{SERVICE}/Process"
REQUEST = mesh_pb2.ProcessRequest(request_id="bench", data="x" * 64)
# "traced": a second proxy with OpenTelemetry on at full sampling, exporting every span over
# OTLP/gRPC to a receiver in this process, so the cost of tracing is read against "meshsim".
TARGETS = ("direct", "meshsim", "traced", "nginx")
THROUGHPUT_TARGET = 0.8  # meshsim / direct
STARTUP_TIMEOUT = 20.0  # seconds for a server to be ready


class BenchError(Exception):
    """A target did not start, answered a gRPC call with an error, or h2load failed."""


# --- child processes ------------------------------------------------------------------------


class Child:
    """A server run as a child process; its output (stdout and stderr) is collected by a thread."""

    def __init__(self, name: str, argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    def output(self) -> str:
        return "\n".join(f"    {line}" for line in self.lines[-20:]) or "    (no output)"

    def wait_for_line(self, prefix: str, timeout: float = STARTUP_TIMEOUT) -> str:
        """The first line of output that starts with `prefix`; BenchError if the child exits or is too slow."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise BenchError(f"{self.name} exited with {self.process.wait()}:\n{self.output()}")
            if line.startswith(prefix):
                return line.strip()
        raise BenchError(f"{self.name} printed no line starting with {prefix!r} in {timeout:g} s:\n{self.output()}")

    def wait_for_port(self, port: int, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"{self.name} did not accept connections on port {port} in {timeout:g} s:\n{self.output()}")

    def stop(self) -> None:
        """SIGTERM, then wait; kill if it will not stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)


def process_tree(pid: int) -> list[int]:
    """`pid` and its children (nginx's workers), from /proc; just `pid` where there is no /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return [pid, *children]


def cpu_seconds(pids: Sequence[int]) -> float:
    """User and system CPU time used so far by these processes (Linux /proc); nan elsewhere."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SpanSink(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC receiver that counts the spans it is sent and keeps none."""

    def __init__(self) -> None:
        self.spans = 0

    def Export(self, request: Any, context: Any) -> Any:
        self.spans += sum(len(scope.spans) for spans in request.resource_spans for scope in spans.scope_spans)
        return trace_service_pb2.ExportTraceServiceResponse()


def start_span_sink() -> tuple[grpc.Server, SpanSink, str]:
    sink = SpanSink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, sink, f"127.0.0.1:{port}"


def meshsim(*args: str) -> list[str]:
    return [sys.executable, "-m", "meshsim", *args]


def start_replica(workdir: Path) -> tuple[Child, str]:
    child = Child("meshsim serve", meshsim("serve", "--port", "0", "--replicas", "1", "--grace", "0s"), workdir)
    line = child.wait_for_line(f"serving {SERVICE} on ")
    return child, line.rsplit(" ", 1)[1]


def start_proxy(workdir: Path, replica: str, traces_to: str | None = None) -> tuple[Child, str]:
    """`meshsim live` in front of `replica`; with `traces_to`, tracing every call to that OTLP receiver."""
    config = workdir / "live.toml"
    config.write_text(
        f'[proxy]\nlisten = "127.0.0.1:0"\nservice = "{SERVICE}"\nendpoints = ["{replica}"]\n', encoding="utf-8"
    )
    env = None
    if traces_to is not None:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{traces_to}", "OTEL_TRACES_SAMPLER": "always_on"}
    child = Child("meshsim live" + (" (traced)" if traces_to else ""), meshsim("live", str(config)), workdir, env)
    # "proxying SERVICE on ADDRESS to ENDPOINTS"
    line = child.wait_for_line("proxying ")
    return child, line.split(" on ", 1)[1].split(" to ", 1)[0]


def nginx_config(prefix: Path, port: int, replica: str, workers: int) -> str:
    # `listen ... http2` is the syntax of nginx before 1.25.1 (Debian 12 ships 1.22), which later
    # versions still accept with a warning. keepalive_requests: h2load's connections would be
    # closed after 1,000 calls (the default) and h2load stalls; likewise on the upstream side.
    return f"""\
daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream replica {{
        server {replica};
        keepalive 32;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} http2;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
        location / {{
            grpc_pass grpc://replica;
        }}
    }}
}}
"""


def start_nginx(workdir: Path, nginx: str, replica: str, workers: int) -> tuple[Child, str]:
    prefix = workdir / "nginx"
    prefix.mkdir()
    if os.geteuid() == 0:
        # nginx's workers drop to `nobody`; they must reach the temp paths the master creates for them.
        for path in (workdir, prefix):
            path.chmod(0o755)
    port = free_port()
    config = prefix / "nginx.conf"
    config.write_text(nginx_config(prefix, port, replica, workers), encoding="utf-8")
    argv = [nginx, "-p", f"{prefix}/", "-e", str(prefix / "error.log"), "-c", str(config)]
    child = Child("nginx", argv, workdir)
    try:
        child.wait_for_port(port)
    except BenchError as error:
        log = prefix / "error.log"
        raise BenchError(f"{error}\n  {log}:\n{log.read_text() if log.exists() else '(none)'}") from None
    return child, f"127.0.0.1:{port}"


# --- gRPC status check ----------------------------------------------------------------------


def check_grpc(name: str, address: str, replica: str, calls: int = 1) -> None:
    """Real unary calls through a target; each must end OK with the replica's answer."""
    with grpc.insecure_channel(address) as channel:
        stub = mesh_pb2_grpc.MeshServiceStub(channel)
        for _ in range(calls):
            try:
                reply = stub.Process(REQUEST, timeout=10.0)
            except grpc.RpcError as error:
                raise BenchError(f"{name} ({address}): gRPC call failed: {error.code()} {error.details()}") from None
            if reply.request_id != REQUEST.request_id or reply.replica != replica:
                raise BenchError(f"{name} ({address}): unexpected reply {reply}")


# --- h2load ---------------------------------------------------------------------------------


@attrs.frozen
class Load:
    """One h2load run's results."""

    done: int
    rate: float  # requests per second over the measured period
    latencies_us: tuple[int, ...]  # sorted
    # Cores used over the whole h2load run (warm-up included), by role: "replica", "proxy" (meshsim
    # live or nginx's master and workers; absent for direct) and "h2load".
    cores: dict[str, float] = attrs.field(factory=dict)

    def percentile_ms(self, pct: float) -> float:
        """Nearest-rank percentile, as meshsim's report computes it."""
        if not self.latencies_us:
            return math.nan
        return self.latencies_us[max(1, math.ceil(pct / 100.0 * len(self.latencies_us))) - 1] / 1e3


REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
FINISHED = re.compile(r"finished in [\d.]+s, ([\d.]+) req/s")


@attrs.frozen
class H2load:
    binary: str
    body: Path
    workdir: Path
    duration: float
    warm_up: float
    clients: int

    def run(
        self, name: str, address: str, streams: int, watch: dict[str, list[int]], rps_per_client: float | None = None
    ) -> Load:
        log = self.workdir / f"h2load-{name}.log"
        log.unlink(missing_ok=True)  # h2load appends to its log file
        argv = [
            self.binary,
            f"--data={self.body}",
            "--header=content-type: application/grpc",
            "--header=te: trailers",
            f"--clients={self.clients}",
            f"--max-concurrent-streams={streams}",
            f"--duration={round(self.duration * 1000)}ms",
            f"--warm-up-time={round(self.warm_up * 1000)}ms",
            f"--log-file={log}",
        ]
        if rps_per_client is not None:
            argv.append(f"--rps={rps_per_client:g}")
        argv.append(f"http://{address}{METHOD}")
        cpu_before = {role: cpu_seconds(pids) for role, pids in watch.items()}
        h2load_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=self.duration * 3 + 60)
        wall = time.perf_counter() - began
        h2load_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cores = {role: (cpu_seconds(pids) - cpu_before[role]) / wall for role, pids in watch.items()}
        h2load_cpu = h2load_after.ru_utime + h2load_after.ru_stime - h2load_before.ru_utime - h2load_before.ru_stime
        cores["h2load"] = h2load_cpu / wall
        out = result.stdout + result.stderr
        requests, finished = REQUESTS.search(out), FINISHED.search(out)
        if result.returncode != 0 or not (requests and finished):
            raise BenchError(f"h2load against {name} failed (exit {result.returncode}):\n{out}")
        _total, _started, done, succeeded, failed, errored, timeouts = map(int, requests.groups())
        if failed or errored or timeouts or succeeded != done:
            raise BenchError(f"h2load against {name}: not every request succeeded:\n{out}")
        # The HTTP status of each request measured is in the log, except that h2load records a status
        # only when the response's headers arrive in the measured period: a request whose headers came
        # in the warm-up is logged with status 0 (and missing from the "status codes" line).
        latencies, unseen = [], 0
        for line in log.read_text(encoding="utf-8").splitlines():
            _start, status, micros = line.split("\t")[:3]
            if status == "0":
                unseen += 1
            elif status != "200":
                raise BenchError(f"h2load against {name}: a request ended with status {status}")
            latencies.append(int(micros))
        if unseen > self.clients * streams:
            raise BenchError(f"h2load against {name}: {unseen} requests were logged with no status")
        if len(latencies) != done:
            raise BenchError(f"h2load against {name}: {done} requests done but {len(latencies)} in its log")
        log.unlink()
        return Load(done=done, rate=float(finished.group(1)), latencies_us=tuple(sorted(latencies)), cores=cores)


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed, 4-byte big-endian length, the message."""
    return struct.pack(">BI", 0, len(message)) + message


# --- the run --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def find_tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path is None:
        sys.exit(f"error: {name} not found; run benchmarks/install-tools (or `just bench-tools`)")
    return path


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per phase; medians are reported")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per h2load run")
    parser.add_argument("--warm-up", type=float, default=1.0, help="seconds of warm-up before each h2load run")
    parser.add_argument("--clients", type=int, default=4, help="h2load connections")
    parser.add_argument("--streams", type=int, default=10, help="concurrent streams per connection (throughput)")
    parser.add_argument(
        "--rate-streams", type=int, default=100, help="stream limit per connection in rate mode (keep it high)"
    )
    parser.add_argument("--load", type=float, default=0.5, help="latency phase rate as a share of direct throughput")
    parser.add_argument("--rate", type=float, help="latency phase rate in requests/s (overrides --load)")
    parser.add_argument("--nginx-workers", type=int, default=1, help="nginx worker processes")
    args = parser.parse_args(argv)
    if min(args.rounds, args.clients, args.streams, args.rate_streams, args.nginx_workers) < 1:
        parser.error("--rounds, --clients, --streams, --rate-streams and --nginx-workers must be at least 1")
    if args.duration <= 0 or args.warm_up < 0 or args.load <= 0 or (args.rate is not None and args.rate <= 0):
        parser.error("--duration, --load and --rate must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    h2load_bin, nginx_bin = find_tool("h2load"), find_tool("nginx")
    versions = subprocess.run([h2load_bin, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    nginx_version = subprocess.run([nginx_bin, "-v"], capture_output=True, text=True, check=False).stderr.strip()
    children: list[Child] = []
    sink_server, sink, sink_address = start_span_sink()
    with tempfile.TemporaryDirectory(prefix="meshsim-proxy-bench-") as tmp:
        workdir = Path(tmp)
        try:
            replica_child, replica = start_replica(workdir)
            children.append(replica_child)
            proxy_child, proxy = start_proxy(workdir, replica)
            children.append(proxy_child)
            traced_child, traced = start_proxy(workdir, replica, traces_to=sink_address)
            children.append(traced_child)
            nginx_child, nginx = start_nginx(workdir, nginx_bin, replica, args.nginx_workers)
            children.append(nginx_child)
            addresses = {"direct": replica, "meshsim": proxy, "traced": traced, "nginx": nginx}
            replica_pids = [replica_child.process.pid]
            watch = {
                "direct": {"replica": replica_pids},
                "meshsim": {"replica": replica_pids, "proxy": [proxy_child.process.pid]},
                "traced": {"replica": replica_pids, "proxy": [traced_child.process.pid]},
                "nginx": {"replica": replica_pids, "proxy": process_tree(nginx_child.process.pid)},
            }
            for name, address in addresses.items():
                check_grpc(name, address, replica, calls=3)

            body = workdir / "request.bin"
            body.write_bytes(grpc_frame(REQUEST.SerializeToString()))
            h2load = H2load(h2load_bin, body, workdir, args.duration, args.warm_up, args.clients)
            print(f"{versions}; {nginx_version} ({args.nginx_workers} worker); {os.cpu_count()} CPUs")
            print(f"replica {replica}, meshsim live {proxy}, nginx {nginx}; unary {METHOD}, {len(body.read_bytes())} B")
            print(f"{args.rounds} rounds per phase, {args.duration:g} s measured per run after {args.warm_up:g} s")

            def measure(phase: str, streams: int, rps: float | None) -> dict[str, list[Load]]:
                loads: dict[str, list[Load]] = {name: [] for name in TARGETS}
                for round_ in range(1, args.rounds + 1):
                    for name in TARGETS:
                        load = h2load.run(name, addresses[name], streams, watch[name], rps)
                        check_grpc(name, addresses[name], replica)
                        loads[name].append(load)
                        detail = "cores: " + ", ".join(f"{role} {used:.2f}" for role, used in load.cores.items())
                        if rps is not None:
                            detail += f"; p50 {load.percentile_ms(50):.2f} ms, p99 {load.percentile_ms(99):.2f} ms"
                        print(f"  {phase} round {round_} {name:<8} {load.rate:>9,.0f} req/s  {detail}", flush=True)
                return loads

            print(f"\nthroughput: closed loop, {args.clients} connections x {args.streams} streams")
            closed = measure("throughput", args.streams, None)
            best = {name: median([load.rate for load in closed[name]]) for name in TARGETS}

            offered = args.rate if args.rate is not None else best["direct"] * args.load
            per_client = max(1, round(offered / args.clients))
            offered = per_client * args.clients
            share = f" ({offered / best['direct']:.0%} of direct)"
            print(f"\nlatency: {offered:,.0f} req/s offered{share}, {args.clients} connections x {per_client} req/s")
            paced = measure("latency", args.rate_streams, per_client)
        finally:
            for child in reversed(children):
                child.stop()
            sink_server.stop(0)

    print(render(closed, paced, offered))
    print(f"spans received from the traced proxy: {sink.spans:,}")
    return 0


def render(closed: dict[str, list[Load]], paced: dict[str, list[Load]], offered: float) -> str:
    best = {name: median([load.rate for load in closed[name]]) for name in TARGETS}
    p50 = {name: median([load.percentile_ms(50) for load in paced[name]]) for name in TARGETS}
    p99 = {name: median([load.percentile_ms(99) for load in paced[name]]) for name in TARGETS}
    achieved = {name: median([load.rate for load in paced[name]]) for name in TARGETS}

    def cores(name: str, role: str) -> str:
        used = median([load.cores[role] for load in closed[name] if role in load.cores])
        return "-" if math.isnan(used) else f"{used:.2f}"

    lines = [
        "",
        f"{'target':<9}{'max req/s':>11}{'/ direct':>10}{'at load req/s':>15}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'+p50 ms':>9}{'+p99 ms':>9}   cores at max: replica / proxy / h2load",
    ]
    for name in TARGETS:
        added = (
            f"{p50[name] - p50['direct']:>+9.2f}{p99[name] - p99['direct']:>+9.2f}" if name != "direct" else " " * 18
        )
        lines.append(
            f"{name:<9}{best[name]:>11,.0f}{best[name] / best['direct']:>10.2f}{achieved[name]:>15,.0f}"
            f"{p50[name]:>9.2f}{p99[name]:>9.2f}{added}   "
            f"{cores(name, 'replica')} / {cores(name, 'proxy')} / {cores(name, 'h2load')}"
        )
    proxy_direct, nginx_direct = best["meshsim"] / best["direct"], best["nginx"] / best["direct"]
    proxy_nginx = best["meshsim"] / best["nginx"]
    traced_proxy = best["traced"] / best["meshsim"]
    lines += [
        "",
        f"ratio meshsim / direct = {proxy_direct:.2f} "
        f"(target >= {THROUGHPUT_TARGET:g}: {'met' if proxy_direct >= THROUGHPUT_TARGET else 'NOT met'})",
        f"ratio nginx / direct   = {nginx_direct:.2f}",
        f"ratio meshsim / nginx  = {proxy_nginx:.2f} (target > 1: {'met' if proxy_nginx > 1 else 'NOT met'})",
        f"ratio traced / meshsim = {traced_proxy:.2f} (tracing every call: a server span and an attempt span each)",
        f"added at {offered:,.0f} req/s: meshsim p50 {p50['meshsim'] - p50['direct']:+.2f} ms, "
        f"p99 {p99['meshsim'] - p99['direct']:+.2f} ms; nginx p50 {p50['nginx'] - p50['direct']:+.2f} ms, "
        f"p99 {p99['nginx'] - p99['direct']:+.2f} ms",
    ]
    for name in TARGETS:
        if achieved[name] < 0.95 * offered:
            lines.append(f"note: {name} did not keep up with the offered rate ({achieved[name]:,.0f} req/s achieved)")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
