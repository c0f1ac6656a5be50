"""Message format v0/v1 (issue #20 item 4): Magnetar does not serve it (README, "Message format
v0/v1"), as Kafka 4.0 does not; but where Kafka 4 closes the connection of a Produce v0-2 or
Fetch v0-3 request (a client retries that until a timeout), Magnetar answers it in its own
version with UNSUPPORTED_VERSION on every partition, so a 0.10-era client fails at once with a
clear error, and keeps the connection. Magic 0/1 inside Produce v3+ is INVALID_RECORD with the
reason, as Kafka 4 answers."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import UnsupportedVersionError

from kafka_util import consume, create_topic, make_records, produce, unique_topic
from test_kafka_protocol import _kstr, recv_exact

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.magnetar_only("Kafka 4 closes the connection of Produce v0-2 / Fetch v0-3"),
]

UNSUPPORTED_VERSION = 35
INVALID_RECORD = 87


class Conn:
    """One connection, several requests (to see that a refusal keeps it open)."""

    def __init__(self, addr: str):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.s.settimeout(10)
        self.corr = 0

    def call(self, api_key: int, version: int, body: bytes) -> bytes:
        self.corr += 1
        client_id = b"old-client"
        frame = struct.pack(">hhih", api_key, version, self.corr, len(client_id)) + client_id + body
        self.s.sendall(struct.pack(">i", len(frame)) + frame)
        (n,) = struct.unpack(">i", recv_exact(self.s, 4))
        assert 0 < n < 1 << 20, n
        resp = recv_exact(self.s, n)
        (corr,) = struct.unpack(">i", resp[:4])
        assert corr == self.corr
        return resp[4:]

    def close(self):
        self.s.close()


def legacy_message_set(value: bytes, magic: int) -> bytes:
    """One uncompressed message of format v0/v1 (CRC32 over magic..value)."""
    import zlib

    body = struct.pack(">bb", magic, 0)
    if magic == 1:
        body += struct.pack(">q", int(time.time() * 1000))
    body += struct.pack(">i", -1) + struct.pack(">i", len(value)) + value
    message = struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF) + body
    return struct.pack(">qi", 0, len(message)) + message


def produce_body(topic: str, partitions, acks: int = 1) -> bytes:
    body = struct.pack(">hi", acks, 10_000) + struct.pack(">i", 1) + _kstr(topic)
    body += struct.pack(">i", len(partitions))
    for index, records in partitions:
        body += struct.pack(">ii", index, len(records)) + records
    return body


def parse_produce(resp: bytes, version: int):
    pos = 0
    (topics,) = struct.unpack(">i", resp[pos:pos + 4])
    pos += 4
    out = {}
    for _ in range(topics):
        (n,) = struct.unpack(">h", resp[pos:pos + 2])
        pos += 2 + n
        (count,) = struct.unpack(">i", resp[pos:pos + 4])
        pos += 4
        for _ in range(count):
            index, err, base = struct.unpack(">ihq", resp[pos:pos + 14])
            pos += 14
            if version >= 2:
                pos += 8
            out[index] = (err, base)
    if version >= 1:
        pos += 4
    assert pos == len(resp), f"{len(resp) - pos} trailing bytes"
    return out


@pytest.mark.parametrize("version,magic", [(0, 0), (1, 0), (2, 1)])
def test_produce_v0_to_v2_is_answered_unsupported_version(bootstrap, version, magic):
    topic = unique_topic("mf")
    create_topic(bootstrap, topic, 2)
    conn = Conn(bootstrap)
    try:
        sets = [(0, legacy_message_set(b"old", magic)), (1, legacy_message_set(b"old", magic))]
        got = parse_produce(conn.call(0, version, produce_body(topic, sets)), version)
        assert got == {0: (UNSUPPORTED_VERSION, -1), 1: (UNSUPPORTED_VERSION, -1)}
        # the connection is still open: ApiVersions v0 answers on it
        assert struct.unpack(">h", conn.call(18, 0, b"")[:2]) == (0,)
    finally:
        conn.close()


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_fetch_v0_to_v3_is_answered_unsupported_version(bootstrap, version):
    topic = unique_topic("mf")
    create_topic(bootstrap, topic, 1)
    body = struct.pack(">iii", -1, 100, 1)
    if version >= 3:
        body += struct.pack(">i", 1 << 20)
    body += struct.pack(">i", 1) + _kstr(topic) + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20)
    conn = Conn(bootstrap)
    try:
        resp = conn.call(1, version, body)
        pos = 4 if version >= 1 else 0
        (topics,) = struct.unpack(">i", resp[pos:pos + 4])
        assert topics == 1
        pos += 4
        (n,) = struct.unpack(">h", resp[pos:pos + 2])
        assert resp[pos + 2:pos + 2 + n].decode() == topic
        pos += 2 + n
        count, index, err, hw, size = struct.unpack(">iihqi", resp[pos:pos + 22])
        assert (count, index, err, hw, size) == (1, 0, UNSUPPORTED_VERSION, -1, 0)
        assert pos + 22 == len(resp)
    finally:
        conn.close()


def test_magic_1_in_produce_v3_is_invalid_record_with_the_reason(bootstrap):
    topic = unique_topic("mf")
    create_topic(bootstrap, topic, 1)
    body = struct.pack(">h", -1) + produce_body(topic, [(0, legacy_message_set(b"old", 1))])
    conn = Conn(bootstrap)
    try:
        resp = conn.call(0, 3, body)
        # topics, name, partitions, index, error
        pos = 4 + 2 + len(topic) + 4 + 4
        (err,) = struct.unpack(">h", resp[pos:pos + 2])
        assert err == INVALID_RECORD
    finally:
        conn.close()


@pytest.mark.parametrize("api_version", [(0, 10, 1), (0, 9)])
def test_kafka_python_with_an_old_message_format_fails_at_once(bootstrap, api_version):
    """kafka-python told the broker is 0.10.1 (message format v1, Produce v2) or 0.9 (v0,
    Produce v1) gets UnsupportedVersionError on its send, not a timeout; nothing is stored."""
    topic = unique_topic("mfkp")
    create_topic(bootstrap, topic, 1)
    p = KafkaProducer(bootstrap_servers=bootstrap, api_version=api_version, retries=0, request_timeout_ms=10000)
    try:
        started = time.monotonic()
        future = p.send(topic, value=b"from-an-old-client", partition=0)
        with pytest.raises(UnsupportedVersionError):
            future.get(timeout=20)
        assert time.monotonic() - started < 15
    finally:
        p.close(timeout=5)
    # a v2 client still works on the same topic, from offset 0 (the refused message took none)
    records = make_records(2, "v2")
    assert [o for _, o in produce(bootstrap, topic, records, partition=0)] == [0, 1]


def test_kafka_python_consumer_with_fetch_v3_fails_at_once(bootstrap):
    topic = unique_topic("mfkc")
    create_topic(bootstrap, topic, 1)
    produce(bootstrap, topic, make_records(2, "v2"), partition=0)
    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        api_version=(0, 10, 1),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=10000,
    )
    try:
        deadline = time.monotonic() + 20
        with pytest.raises(UnsupportedVersionError):
            while time.monotonic() < deadline:
                c.poll(timeout_ms=500)
    finally:
        c.close()
    # and a v2 consumer reads the data
    assert len(consume(bootstrap, topic, 2)) == 2
