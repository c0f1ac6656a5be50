"""Connection lifecycle limits on the real binary (issue #22 items 3-5, issue #14 pipelining):

- idle and half-sent connections on the Kafka, Pulsar and HTTP ports are closed after their
  timeouts and counted in magnetar_server_connections_closed_total by reason;
- 200 Pulsar connections that announce a 5 MiB frame and send 8 bytes of it before CONNECT leave
  the broker's RSS and VmSize bounded (the frame buffer grows with the bytes received);
- a confluent-kafka idempotent producer with max.in.flight=5 on a pipelined connection stores
  every message exactly once and in order.

Every wait is bounded; nothing asserts how long anything took.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
import requests
from confluent_kafka import Producer

from kafka_util import consume, create_topic, producer_conf, unique_topic

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("connection limits"), pytest.mark.timeout(180)]

SHORT = {
    "MAGNETAR_KAFKA__CONNECTIONS_MAX_IDLE_MS": "1000",
    "MAGNETAR_KAFKA__REQUEST_READ_TIMEOUT_MS": "500",
    "MAGNETAR_PULSAR__CONNECT_TIMEOUT_MS": "500",
    "MAGNETAR_HTTP__HEADER_READ_TIMEOUT_MS": "500",
    "MAGNETAR_HTTP__IDLE_TIMEOUT_MS": "1000",
}


def host_port(addr: str):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def connect(addr: str) -> socket.socket:
    s = socket.create_connection(host_port(addr), timeout=10)
    s.settimeout(30)
    return s


def closed_by_server(s: socket.socket) -> bool:
    """Reads until the server closes the connection (bounded by the socket timeout)."""
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


def closed_total(http: str) -> dict:
    text = requests.get(f"http://{http}/metrics", timeout=10).text
    counts = {}
    for line in text.splitlines():
        if line.startswith("magnetar_server_connections_closed_total{"):
            labels, value = line.rsplit(" ", 1)
            protocol = labels.split('protocol="', 1)[1].split('"', 1)[0]
            reason = labels.split('reason="', 1)[1].split('"', 1)[0]
            counts[(protocol, reason)] = float(value)
    return counts


def test_idle_and_half_sent_connections_are_closed(broker_factory):
    b = broker_factory(env=SHORT)
    kafka_idle = connect(b.kafka)
    kafka_half = connect(b.kafka)
    kafka_half.sendall(struct.pack(">i", 1000) + b"\x00" * 10)  # 10 of 1000 bytes
    pulsar_silent = connect(b.pulsar)
    pulsar_half = connect(b.pulsar)
    pulsar_half.sendall(struct.pack(">II", 1000, 4))  # a frame started, never CONNECT
    http_half = connect(b.http)
    http_half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never end
    http_idle = connect(b.http)
    http_keepalive = connect(b.http)
    http_keepalive.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert http_keepalive.recv(4096).startswith(b"HTTP/1.1 ")
    for name, s in [
        ("kafka idle", kafka_idle),
        ("kafka half frame", kafka_half),
        ("pulsar silent", pulsar_silent),
        ("pulsar half frame", pulsar_half),
        ("http half headers", http_half),
        ("http idle", http_idle),
        ("http idle after a request", http_keepalive),
    ]:
        assert closed_by_server(s), f"{name}: still open"
    counts = closed_total(b.http)
    assert counts.get(("kafka", "idle_timeout"), 0) >= 1, counts
    assert counts.get(("kafka", "request_read_timeout"), 0) >= 1, counts
    assert counts.get(("pulsar", "connect_timeout"), 0) >= 2, counts
    assert counts.get(("http", "request_read_timeout"), 0) >= 1, counts
    assert counts.get(("http", "idle_timeout"), 0) >= 2, counts
    # The broker still serves.
    assert requests.get(f"http://{b.http}/health", timeout=10).status_code == 200


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmSize"):
                out[key] = int(value.split()[0]) * 1024
    return out


def pulsar_active(http: str) -> float:
    text = requests.get(f"http://{http}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith('magnetar_server_connections_active{protocol="pulsar"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_200_pre_connect_half_frames_leave_memory_bounded(broker_factory):
    # Long timeouts: the connections stay open while memory is measured.
    b = broker_factory(env={"MAGNETAR_PULSAR__CONNECT_TIMEOUT_MS": "120000"})
    pid = b.proc.pid
    before = proc_status(pid)
    frame_max = 5 * 1024 * 1024 + 10 * 1024
    sockets = []
    try:
        for _ in range(200):
            s = connect(b.pulsar)
            s.sendall(struct.pack(">II", frame_max, 4))  # 8 bytes of a 5 MiB frame
            sockets.append(s)
        deadline = time.monotonic() + 30
        while pulsar_active(b.http) < 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pulsar_active(b.http) >= 200
        # The largest of a few samples, so that reads still under way are not missed.
        samples = []
        for _ in range(10):
            samples.append(proc_status(pid))
            time.sleep(0.1)  # a sampling interval, not an ordering wait
        after = {k: max(s[k] for s in samples) for k in ("VmSize", "VmRSS")}
    finally:
        for s in sockets:
            s.close()
    grown_size = after["VmSize"] - before["VmSize"]
    grown_rss = after["VmRSS"] - before["VmRSS"]
    # Reserving the announced size took 200 x 5 MiB = 1 GiB of address space.
    assert grown_size < 256 * 1024 * 1024, (before, after)
    assert grown_rss < 64 * 1024 * 1024, (before, after)


def test_idempotent_producer_with_five_in_flight_is_exactly_once(broker):
    bootstrap = broker.kafka
    topic = unique_topic("inflight5")
    create_topic(bootstrap, topic, 1)
    fatal = []
    p = Producer(
        producer_conf(
            bootstrap,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "max.in.flight.requests.per.connection": 5,
                "linger.ms": 2,
                "batch.num.messages": 10,
                "error_cb": lambda e: fatal.append(e),
            },
        )
    )
    n = 2000
    reports = []
    for i in range(n):
        p.produce(topic, value=f"m{i}".encode(), partition=0,
                  on_delivery=lambda err, msg: reports.append((err, msg.offset())))
        p.poll(0)
    assert p.flush(60) == 0
    assert not [e for e in fatal if e.fatal()], fatal
    assert [e for e, _ in reports if e is not None] == []
    assert sorted(o for _, o in reports) == list(range(n))
    msgs = consume(bootstrap, topic, n, partition=0, extra_wait_s=1.0)
    assert [m.value() for m in msgs] == [f"m{i}".encode() for i in range(n)]
