"""Bad input on the Pulsar port, over a raw socket: malformed frames, bad checksums, unknown
commands, a SEND for an unknown producer. Each gets an error (or a closed connection) for that
client only; the broker keeps serving others."""

from __future__ import annotations

import socket
import struct
import time
import uuid

import pytest

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("pulsar protocol"), pytest.mark.timeout(60)]

# BaseCommand.Type values and field numbers (PulsarApi.proto)
CONNECT, CONNECTED, PRODUCER, SEND, SEND_RECEIPT, SEND_ERROR = 2, 3, 5, 6, 7, 8
ERROR, PRODUCER_SUCCESS, PING, PONG = 14, 17, 18, 19
CHECKSUM_ERROR = 9


# ----------------------------------------------------------------- a tiny protobuf writer


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(num: int, v: int) -> bytes:
    return varint(num << 3) + varint(v)


def f_bytes(num: int, b: bytes) -> bytes:
    return varint((num << 3) | 2) + varint(len(b)) + b


def base_command(kind: int, field: int = 0, body: bytes = b"") -> bytes:
    cmd = f_varint(1, kind)
    if field:
        cmd += f_bytes(field, body)
    return cmd


def simple_frame(cmd: bytes) -> bytes:
    return struct.pack(">II", 4 + len(cmd), len(cmd)) + cmd


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def payload_frame(cmd: bytes, metadata: bytes, payload: bytes, corrupt=False) -> bytes:
    body = struct.pack(">I", len(metadata)) + metadata + payload
    checksum = crc32c(body) ^ (1 if corrupt else 0)
    rest = struct.pack(">HI", 0x0E01, checksum) + body
    return struct.pack(">II", 4 + len(cmd) + len(rest), len(cmd)) + cmd + rest


# ----------------------------------------------------------------- a tiny protobuf reader


def read_varint(buf: bytes, i: int):
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def fields(buf: bytes):
    i, out = 0, {}
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(buf, i)
        elif wt == 2:
            ln, i = read_varint(buf, i)
            v, i = buf[i:i + ln], i + ln
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.setdefault(num, v)
    return out


class Raw:
    def __init__(self, addr: str):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.buf = b""

    def send(self, data: bytes):
        self.s.sendall(data)

    def recv_frame(self, timeout=10.0):
        """(type, BaseCommand fields) of the next frame, or None on EOF."""
        self.s.settimeout(timeout)
        while True:
            if len(self.buf) >= 4:
                total = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + total:
                    frame, self.buf = self.buf[4:4 + total], self.buf[4 + total:]
                    size = struct.unpack(">I", frame[:4])[0]
                    f = fields(frame[4:4 + size])
                    return f[1], f
            try:
                chunk = self.s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not chunk:
                return None
            self.buf += chunk

    def expect(self, kind: int):
        while True:
            got = self.recv_frame()
            assert got is not None, f"connection closed while waiting for command {kind}"
            if got[0] == PING:
                self.send(simple_frame(base_command(PONG, 19, b"")))
                continue
            assert got[0] == kind, f"expected command {kind}, got {got[0]}: {got[1]}"
            return got[1]

    def connect(self):
        self.send(simple_frame(base_command(CONNECT, 2, f_bytes(1, b"raw-test") + f_varint(4, 21))))
        self.expect(CONNECTED)
        return self

    def close(self):
        self.s.close()


def producer_cmd(topic: str, producer_id=1, request_id=1) -> bytes:
    return base_command(PRODUCER, 5, f_bytes(1, topic.encode()) + f_varint(2, producer_id)
                        + f_varint(3, request_id))


def send_cmd(producer_id: int, seq: int) -> bytes:
    return base_command(SEND, 6, f_varint(1, producer_id) + f_varint(2, seq) + f_varint(3, 1))


def metadata(seq: int) -> bytes:
    return f_bytes(1, b"raw") + f_varint(2, seq) + f_varint(3, int(time.time() * 1000))


def still_serving(broker):
    c = Raw(broker.pulsar).connect()
    c.send(simple_frame(base_command(PING, 18, b"")))
    c.expect(PONG)
    c.close()


def test_malformed_frame_closes_only_that_connection(broker):
    c = Raw(broker.pulsar).connect()
    # command size larger than the frame
    c.send(struct.pack(">II", 8, 1000) + b"\x00" * 4)
    assert c.recv_frame(timeout=10) is None
    c.close()
    # a command that is not protobuf
    c = Raw(broker.pulsar).connect()
    c.send(simple_frame(b"\xff\xff\xff\xff\xff"))
    assert c.recv_frame(timeout=10) is None
    still_serving(broker)


def test_oversized_frame_is_refused(broker):
    c = Raw(broker.pulsar).connect()
    c.send(struct.pack(">I", 64 * 1024 * 1024) + b"\x00" * 16)
    assert c.recv_frame(timeout=10) is None
    still_serving(broker)


def test_command_before_connect_closes(broker):
    c = Raw(broker.pulsar)
    c.send(simple_frame(base_command(PING, 18, b"")))
    assert c.recv_frame(timeout=10) is None
    still_serving(broker)


def test_bad_checksum_gets_send_error_then_good_send_works(broker):
    topic = f"persistent://public/default/raw-{uuid.uuid4().hex[:8]}-partition-0"
    c = Raw(broker.pulsar).connect()
    c.send(simple_frame(producer_cmd(topic)))
    c.expect(PRODUCER_SUCCESS)
    c.send(payload_frame(send_cmd(1, 0), metadata(0), b"bad", corrupt=True))
    err = fields(c.expect(SEND_ERROR)[8])
    assert err[3] == CHECKSUM_ERROR
    c.send(payload_frame(send_cmd(1, 1), metadata(1), b"good"))
    receipt = fields(c.expect(SEND_RECEIPT)[7])
    assert receipt[2] == 1
    c.close()


def test_unknown_command_keeps_the_connection(broker):
    c = Raw(broker.pulsar).connect()
    c.send(simple_frame(base_command(99)))
    c.send(simple_frame(base_command(PING, 18, b"")))
    c.expect(PONG)
    c.close()


def test_send_for_unknown_producer_is_an_error(broker):
    c = Raw(broker.pulsar).connect()
    c.send(payload_frame(send_cmd(42, 7), metadata(7), b"x"))
    err = fields(c.expect(SEND_ERROR)[8])
    assert err[1] == 42 and err[2] == 7
    c.send(simple_frame(base_command(PING, 18, b"")))
    c.expect(PONG)
    c.close()
    still_serving(broker)


def test_garbage_metadata_is_an_error(broker):
    topic = f"persistent://public/default/raw-{uuid.uuid4().hex[:8]}-partition-0"
    c = Raw(broker.pulsar).connect()
    c.send(simple_frame(producer_cmd(topic)))
    c.expect(PRODUCER_SUCCESS)
    c.send(payload_frame(send_cmd(1, 0), b"\xff\xff\xff", b"x"))
    c.expect(SEND_ERROR)
    c.close()
    still_serving(broker)
