"""Call recordings (core/call_log.py): written by a bus listener, capped, read back exactly, and
refused with one line when damaged; `[record]` in the proxy config and GrpcClient(record=)."""

from __future__ import annotations

import contextlib
import io
import random
import time
from pathlib import Path
from typing import Any

import pytest

from meshsim import live
from meshsim.core import call_log
from meshsim.core.call_log import CallLogError, CallRecorder, RecordConfig, parse_size, read_call_log
from meshsim.core.calls import Pattern
from meshsim.core.events import RequestFinished
from meshsim.core.status import StatusCode
from meshsim.live import bridge
from meshsim.live.config import ProxyConfigError, load_live_config
from meshsim.runtime.observer import Observer

ENDPOINTS = ("10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051", None)
METHODS = ("/shop.v1.Cart/Get", "/shop.v1.Cart/Put")


def synthetic(count: int, seed: int = 1, rate: float = 2000.0) -> list[RequestFinished]:
    """Calls as a busy client makes them, in the order they end (which is how a recorder hears them)."""
    rng = random.Random(seed)
    now, events = 100.0, []
    for _ in range(count):
        now += rng.expovariate(rate)
        endpoint = rng.choice(ENDPOINTS)
        took = rng.lognormvariate(-5.0 if endpoint != ENDPOINTS[1] else -3.0, 0.5)
        status = StatusCode.OK if rng.random() > 0.02 else rng.choice([StatusCode.UNAVAILABLE, StatusCode.INTERNAL])
        events.append(
            RequestFinished(
                client=rng.choice(("web", "batch")),
                service="shop.v1.Cart",
                endpoint=endpoint,
                pattern=rng.choice(list(Pattern)),
                status=status,
                started=now,
                finished=now + took,
                attempts=rng.choice((0, 1, 1, 1, 2, 300)),
                method=rng.choice(METHODS),
            )
        )
    events.sort(key=lambda e: e.finished)
    return events


def record(path: Path, events: list[RequestFinished], **options: Any) -> CallRecorder:
    recorder = CallRecorder.open(path, **options)
    bus = Observer()
    recorder.listen(bus)
    for event in events:
        bus.emit(event)
    recorder.close()
    return recorder


def as_tuples(events: list[RequestFinished], origin: float) -> list[tuple[Any, ...]]:
    """What a recording keeps of each call (times in whole µs from the first call heard), sorted."""
    return sorted(
        (
            round(e.started * 1e6) - round(origin * 1e6),
            round((e.finished - e.started) * 1e6),
            e.status,
            min(e.attempts, 255),
            e.pattern,
            e.endpoint,
            e.method,
            e.client,
            e.service,
        )
        for e in events
    )


def read_tuples(path: Path) -> list[tuple[Any, ...]]:
    log = read_call_log(path)
    calls = [log.call(i) for i in range(len(log))]
    return sorted(
        (
            round(c.start * 1e6),
            round(c.duration * 1e6),
            c.status,
            c.attempts,
            c.pattern,
            c.endpoint,
            c.method,
            c.client,
            c.service,
        )
        for c in calls
    )


def test_every_call_is_read_back_as_it_was_heard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call_log, "BLOCK_CALLS", 1000)  # several blocks, names spread over them
    events = synthetic(5000)
    path = tmp_path / "calls.rec"
    recorder = record(path, events)
    assert (recorder.recorded, recorder.dropped, recorder.reason) == (5000, 0, None)
    assert read_tuples(path) == as_tuples(events, events[0].started)
    log = read_call_log(path)
    assert log.complete and log.dropped == 0 and log.wall_start is None
    assert set(log.endpoints) == set(ENDPOINTS) - {None}
    assert 0 in log.start.tolist()  # the call heard first starts the recording's time


def test_the_header_holds_the_wall_time_of_the_first_call(tmp_path: Path) -> None:
    events = synthetic(10)
    first = events[0]
    # The wall clock reads 1.7e9 when the run's clock reads first.finished + 2.
    recorder = CallRecorder.open(
        tmp_path / "calls.rec", wall_clock=lambda: 1.7e9, clock=lambda: first.finished + 2, source="test"
    )
    for event in events:
        recorder.record(event)
    recorder.close()
    log = read_call_log(tmp_path / "calls.rec")
    assert log.wall_start == pytest.approx(1.7e9 - 2 - (first.finished - first.started))
    assert log.source == "test"


def test_a_recording_of_no_calls_reads_as_empty(tmp_path: Path) -> None:
    record(tmp_path / "calls.rec", [])
    log = read_call_log(tmp_path / "calls.rec")
    assert len(log) == 0 and log.complete


def test_max_calls_stops_the_recording_and_counts_the_rest(tmp_path: Path) -> None:
    recorder = record(tmp_path / "calls.rec", synthetic(300), max_calls=120)
    assert (recorder.recorded, recorder.dropped, recorder.reason) == (120, 180, "max_calls")
    log = read_call_log(tmp_path / "calls.rec")
    assert (len(log), log.dropped, log.reason) == (120, 180, "max_calls")


def test_max_bytes_is_never_exceeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call_log, "BLOCK_CALLS", 2000)
    path = tmp_path / "calls.rec"
    recorder = record(path, synthetic(60_000), max_bytes=call_log.MIN_MAX_BYTES)
    assert path.stat().st_size <= call_log.MIN_MAX_BYTES
    assert recorder.reason == "max_bytes" and recorder.recorded + recorder.dropped == 60_000
    log = read_call_log(path)
    assert len(log) == recorder.recorded > 0 and log.reason == "max_bytes" and log.complete


def test_a_quiet_client_writes_a_block_every_few_seconds(tmp_path: Path) -> None:
    """So that a process that dies loses seconds of calls, not a block's worth."""
    path = tmp_path / "calls.rec"
    with CallRecorder.open(path) as recorder:
        for event in synthetic(40, rate=2.0):  # 20 s of calls
            recorder.record(event)
        log = read_call_log(path)  # no end record: the recorder is still writing
        assert not log.complete and 30 <= len(log) <= 40
    log = read_call_log(path)
    assert log.complete and len(log) == 40


def test_a_file_cut_off_mid_block_gives_the_calls_before_the_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(call_log, "BLOCK_CALLS", 500)
    path = tmp_path / "calls.rec"
    record(path, synthetic(2000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 700])  # the end record and part of the last block
    log = read_call_log(path)
    assert not log.complete and len(log) == 1500


def test_a_write_that_fails_stops_the_recording_not_the_calls(tmp_path: Path) -> None:
    class Full(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    recorder = CallRecorder(Full(), tmp_path / "calls.rec")
    for event in synthetic(20_000):
        recorder.record(event)  # never raises
    recorder.close()
    assert recorder.recorded == 0 and recorder.dropped == 20_000
    assert recorder.failure == f"{tmp_path / 'calls.rec'}: cannot write the recording: No space left on device"


def test_names_past_the_limit_are_recorded_as_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(call_log, "MAX_NAMES", 4)
    events = [
        RequestFinished("c", "s", f"10.0.0.{n}:1", Pattern.UNARY, StatusCode.OK, float(n), n + 0.5) for n in range(6)
    ]
    record(tmp_path / "calls.rec", events)
    log = read_call_log(tmp_path / "calls.rec")
    assert log.endpoints == ("10.0.0.0:1", "10.0.0.1:1", "10.0.0.2:1", "(other)")
    assert [log.call(i).endpoint for i in range(6)][-3:] == ["(other)"] * 3


def test_a_million_calls_take_a_few_bytes_each(tmp_path: Path) -> None:
    """The format's point (docs/replay.md gives the figure for a million calls): measured here on a
    tenth of that, with the same mix of replicas, statuses, methods and latencies."""
    path = tmp_path / "calls.rec"
    record(path, synthetic(100_000))
    assert path.stat().st_size / 100_000 < 6.0


# --------------------------------------------------------------------------- bad files


def damaged(tmp_path: Path, change: Any) -> str:
    path = tmp_path / "calls.rec"
    record(path, synthetic(100))
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(CallLogError) as caught:
        read_call_log(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message.removeprefix(f"{path}: ")


def test_a_file_that_is_not_a_recording(tmp_path: Path) -> None:
    assert damaged(tmp_path, lambda _: b"schema = 1\n") == (
        "not a meshsim call recording (it does not start with meshsim-calls/1)"
    )
    assert damaged(tmp_path, lambda _: b"") == "not a meshsim call recording (it does not start with meshsim-calls/1)"
    assert damaged(tmp_path, lambda _: call_log.MAGIC) == "the recording has no header"


def test_a_flipped_byte_is_found(tmp_path: Path) -> None:
    def flip(data: bytes) -> bytes:
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]

    assert "is damaged (its checksum does not match)" in damaged(tmp_path, flip)


def test_a_block_that_claims_too_much_is_refused(tmp_path: Path) -> None:
    import struct
    import zlib

    def huge(data: bytes) -> bytes:
        head = data[: data.index(b"C", len(call_log.MAGIC) + 9)]
        body = zlib.compress(struct.pack("<II", 1 << 30, 0))
        return head + struct.pack("<cII", b"C", len(body), zlib.crc32(body)) + body

    assert damaged(tmp_path, huge).endswith("is larger than a recorder writes")


def test_a_block_that_names_nobody_is_refused(tmp_path: Path) -> None:
    import struct
    import zlib

    def nameless(data: bytes) -> bytes:
        head = data[: data.index(b"C", len(call_log.MAGIC) + 9)]
        columns = b"".join(bytes(size) for size in (8, 4, 1, 1, 1)) + struct.pack("<HHHH", 0, 0, 0, 0)
        body = zlib.compress(struct.pack("<II", 1, 0) + columns)
        return head + struct.pack("<cII", b"C", len(body), zlib.crc32(body)) + body

    assert damaged(tmp_path, nameless).endswith("has a call of an unknown method")


def test_missing_and_unwritable_files(tmp_path: Path) -> None:
    with pytest.raises(CallLogError, match=r"nowhere\.rec: no such file$"):
        read_call_log(tmp_path / "nowhere.rec")
    with pytest.raises(CallLogError, match=r"calls\.rec: cannot write the recording: No such file or directory$"):
        CallRecorder.open(tmp_path / "missing" / "calls.rec")
    with pytest.raises(CallLogError, match=r"needs max_bytes of at least 65,536$"):
        CallRecorder.open(tmp_path / "calls.rec", max_bytes=1000)


# --------------------------------------------------------------------------- [record]


def test_sizes() -> None:
    assert [parse_size(v) for v in (4096, "64KiB", "512 MiB", "2GB", "10mb")] == [
        4096,
        65536,
        512 * 2**20,
        2 * 10**9,
        10 * 10**6,
    ]
    for bad in ("", "MiB", "1.5GiB", "-5MB", "12 parsecs", 2.5, True, "\u0661\u0662MB"):
        with pytest.raises(ValueError):
            parse_size(bad)


PROXY = """\
[proxy]
endpoints = ["127.0.0.1:50051"]

[record]
"""


def test_the_proxy_config_reads_record(tmp_path: Path) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text(PROXY + 'path = "calls.rec"\nmax_bytes = "1GiB"\nmax_calls = 1000000\n', encoding="utf-8")
    assert load_live_config(path).record == RecordConfig(tmp_path / "calls.rec", 2**30, 1_000_000)
    path.write_text(PROXY + 'path = "/var/tmp/calls.rec"\n', encoding="utf-8")
    assert load_live_config(path).record == RecordConfig(Path("/var/tmp/calls.rec"))
    path.write_text(PROXY.replace("[record]\n", ""), encoding="utf-8")
    assert load_live_config(path).record is None
    yaml = tmp_path / "mesh.yaml"
    yaml.write_text(
        "services:\n  - port: 50051\nrecord:\n  path: out/calls.rec\n  max_bytes: 64MiB\n", encoding="utf-8"
    )
    assert load_live_config(yaml).record == RecordConfig(tmp_path / "out" / "calls.rec", 64 * 2**20)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("max_bytes = 1000000\n", "record.path: is required"),
        (
            'path = "c.rec"\nmax_bytes = "lots"\n',
            "record.max_bytes: expected a number of bytes or a size like \"512MiB\", got 'lots'",
        ),
        (
            'path = "c.rec"\nmax_bytes = 1000\n',
            "record.max_bytes: must be from 64KiB to 1TiB (65,536 to 1,099,511,627,776 bytes)",
        ),
        ('path = "c.rec"\nmax_calls = 0\n', "record.max_calls: must be at least 1, got 0"),
        ('path = "c.rec"\nmax_call = 5\n', "record.max_call: unknown key (did you mean 'max_calls'?)"),
    ],
)
def test_bad_record_tables(tmp_path: Path, lines: str, message: str) -> None:
    path = tmp_path / "mesh.toml"
    path.write_text(PROXY + lines, encoding="utf-8")
    with pytest.raises(ProxyConfigError) as caught:
        load_live_config(path)
    assert str(caught.value) == f"{path}: {message}"


# --------------------------------------------------------------------------- GrpcClient


def test_grpc_client_records_its_calls(tmp_path: Path) -> None:
    from meshsim.demo.server import ServeConfig, start_replicas, stop_replicas
    from meshsim.pb.v1 import mesh_pb2

    path = tmp_path / "calls.rec"
    began = time.time()

    async def main() -> list[str]:
        replicas = await bridge.wait(start_replicas(ServeConfig(port=0, replicas=2)))
        try:
            replicas[1].faults.error_rate = 1.0
            async with live.GrpcClient(endpoints=[r.address for r in replicas], record=path, name="shop") as client:
                for n in range(10):
                    with contextlib.suppress(live.RpcError):
                        await client.Process(mesh_pb2.ProcessRequest(request_id=str(n)))
                assert not path.stat().st_size  # still buffered: written when the client closes
            return [r.address for r in replicas]
        finally:
            await bridge.wait(stop_replicas(replicas, 0))

    addresses = live.run(main)
    log = read_call_log(path)
    calls = [log.call(i) for i in range(len(log))]
    assert len(calls) == 10 and log.complete and log.source == "GrpcClient shop"
    assert {(c.endpoint, c.status) for c in calls} == {
        (addresses[0], StatusCode.OK),
        (addresses[1], StatusCode.UNAVAILABLE),
    }
    assert {(c.method, c.client, c.service, c.pattern) for c in calls} == {
        ("/mesh.v1.MeshService/Process", "shop", "mesh.v1.MeshService", Pattern.UNARY)
    }
    assert log.wall_start is not None and began - 1 < log.wall_start < time.time()
    assert sorted(c.start for c in calls) == [c.start for c in calls] and calls[0].start >= 0
