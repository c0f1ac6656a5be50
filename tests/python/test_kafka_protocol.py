"""Raw Kafka wire checks (no client library): ApiVersions and frame hygiene."""

from __future__ import annotations

import socket
import struct
import time

import pytest

pytestmark = pytest.mark.timeout(60)

# api key -> (name, lowest max version the clients in this suite need)
PROMISED = {
    0: ("Produce", 3),
    1: ("Fetch", 4),
    2: ("ListOffsets", 1),
    3: ("Metadata", 1),
    18: ("ApiVersions", 3),
    19: ("CreateTopics", 2),
    20: ("DeleteTopics", 1),
    21: ("DeleteRecords", 0),
    22: ("InitProducerId", 0),
    23: ("OffsetForLeaderEpoch", 0),
    32: ("DescribeConfigs", 0),
    33: ("AlterConfigs", 0),
    37: ("CreatePartitions", 0),
    44: ("IncrementalAlterConfigs", 0),
    60: ("DescribeCluster", 0),
}


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_uvarint(buf: bytes, pos: int):
    shift = res = 0
    for _ in range(10):
        b = buf[pos]
        pos += 1
        res |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return res, pos
    raise AssertionError("varint longer than 10 bytes")


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    for _ in range(10_000):
        if len(buf) >= n:
            break
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise AssertionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def request(addr: str, api_key: int, version: int, body: bytes, corr: int = 42, flexible_header: bool = False) -> bytes:
    host, port = addr.rsplit(":", 1)
    client_id = b"magnetar-pytest"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    if flexible_header:
        header += b"\x00"  # empty tagged fields (request header v2)
    frame = header + body
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.settimeout(10)
        s.sendall(struct.pack(">i", len(frame)) + frame)
        (n,) = struct.unpack(">i", recv_exact(s, 4))
        assert 0 < n < 1 << 20, n
        resp = recv_exact(s, n)
    (got_corr,) = struct.unpack(">i", resp[:4])
    assert got_corr == corr, f"correlation id {got_corr} != {corr}"
    return resp[4:]  # ApiVersions responses always use header v0 (no tagged fields)


def parse_api_versions(body: bytes, flexible: bool):
    (err,) = struct.unpack(">h", body[:2])
    pos = 2
    if flexible:
        n, pos = read_uvarint(body, pos)
        n -= 1
    else:
        (n,) = struct.unpack(">i", body[pos:pos + 4])
        pos += 4
    keys = {}
    for _ in range(n):
        k, lo, hi = struct.unpack(">hhh", body[pos:pos + 6])
        pos += 6
        if flexible:
            ntags, pos = read_uvarint(body, pos)
            for _ in range(ntags):
                _, pos = read_uvarint(body, pos)
                size, pos = read_uvarint(body, pos)
                pos += size
        assert k not in keys, f"api key {k} listed twice"
        keys[k] = (lo, hi)
    return err, keys, pos


def test_api_versions_v0(bootstrap):
    body = request(bootstrap, 18, 0, b"")
    err, keys, pos = parse_api_versions(body, flexible=False)
    assert err == 0
    assert pos == len(body), f"{len(body) - pos} trailing bytes"
    _check_basic(keys)


def test_api_versions_v3(bootstrap):
    req = uvarint(len(b"pytest") + 1) + b"pytest" + uvarint(len(b"1.0") + 1) + b"1.0" + b"\x00"
    body = request(bootstrap, 18, 3, req, flexible_header=True)
    err, keys, pos = parse_api_versions(body, flexible=True)
    assert err == 0
    (throttle,) = struct.unpack(">i", body[pos:pos + 4])
    pos += 4
    assert throttle >= 0
    ntags, pos = read_uvarint(body, pos)
    tags = []
    for _ in range(ntags):
        tag, pos = read_uvarint(body, pos)
        size, pos = read_uvarint(body, pos)
        tags.append(tag)
        pos += size
    assert pos == len(body), f"{len(body) - pos} trailing bytes"
    assert tags == sorted(tags) and len(set(tags)) == len(tags), tags
    _check_basic(keys)


@pytest.mark.not_on("tansu", "sends FinalizedFeaturesEpoch=-1 and other default-valued tagged fields")
def test_api_versions_v3_omits_default_tagged_fields(bootstrap):
    """Apache Kafka writes a tagged field only when it differs from its default.

    Old librdkafka (2.0.2, the one in Debian's kcat) fails with "Read underflow" on an
    ApiVersions v3 response that carries several tagged fields (seen against tansu).
    """
    req = uvarint(7) + b"pytest" + uvarint(4) + b"1.0" + b"\x00"
    body = request(bootstrap, 18, 3, req, flexible_header=True)
    _, _, pos = parse_api_versions(body, flexible=True)
    pos += 4
    ntags, pos = read_uvarint(body, pos)
    fields = {}
    for _ in range(ntags):
        tag, pos = read_uvarint(body, pos)
        size, pos = read_uvarint(body, pos)
        fields[tag] = body[pos:pos + size]
        pos += size
    # tag 1 = FinalizedFeaturesEpoch, default -1; tag 3 = ZkMigrationReady, default false
    assert fields.get(1) != b"\xff" * 8, fields
    assert fields.get(3) != b"\x00", fields


@pytest.mark.not_on("tansu", "closes the connection instead of answering UNSUPPORTED_VERSION")
def test_api_versions_unsupported_version(bootstrap):
    """KIP-511: an unknown ApiVersions version gets UNSUPPORTED_VERSION (35) in a v0 body."""
    body = request(bootstrap, 18, 127, b"", flexible_header=True)
    err, keys, _ = parse_api_versions(body, flexible=False)
    assert err == 35
    assert 18 in keys and keys[18][0] == 0


def _check_basic(keys):
    for k in (0, 1, 3, 18):
        assert k in keys, f"ApiVersions lacks api key {k}"
        assert 0 <= keys[k][0] <= keys[k][1]


@pytest.mark.not_on("tansu", "lacks OffsetForLeaderEpoch, AlterConfigs, CreatePartitions")
def test_api_versions_lists_promised_apis(bootstrap):
    for version, flexible in ((0, False), (3, True)):
        req = b"" if version == 0 else uvarint(7) + b"pytest" + uvarint(4) + b"1.0" + b"\x00"
        body = request(bootstrap, 18, version, req, flexible_header=flexible)
        err, keys, _ = parse_api_versions(body, flexible=flexible)
        assert err == 0
        _check_promised(keys)


def _check_promised(keys):
    missing = [f"{name}({k})" for k, (name, _) in PROMISED.items() if k not in keys]
    assert not missing, f"ApiVersions lacks {missing}"
    for k, (name, need) in PROMISED.items():
        lo, hi = keys[k]
        assert 0 <= lo <= hi, f"{name}: versions {lo}..{hi}"
        assert hi >= need, f"{name}: max version {hi} < {need}"


def test_unknown_api_key_closes_or_errors(bootstrap):
    """An unknown api key must not crash the broker; Kafka closes the connection."""
    host, port = bootstrap.rsplit(":", 1)
    frame = struct.pack(">hhih", 9999, 0, 1, 0)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.settimeout(10)
        s.sendall(struct.pack(">i", len(frame)) + frame)
        try:
            data = s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            data = b""
        # either closed, or some response: just not a hang (timeout -> b"" -> still fine)
        assert isinstance(data, bytes)
    # the broker still answers
    body = request(bootstrap, 18, 0, b"")
    assert parse_api_versions(body, flexible=False)[0] == 0


def _kstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _read_nullable_str(body: bytes, pos: int):
    (n,) = struct.unpack(">h", body[pos:pos + 2])
    pos += 2
    if n < 0:
        return None, pos
    return body[pos:pos + n].decode(), pos + n


def test_success_error_message_is_null(bootstrap):
    """Successful results carry a null error_message (aiokafka and kafkajs check for null)."""
    # FindCoordinator v1: key, key_type -> throttle, error_code, error_message, node, host, port.
    body = request(bootstrap, 10, 1, _kstr("null-message-group") + b"\x00")
    (throttle, err) = struct.unpack(">ih", body[:6])
    assert err == 0
    message, _ = _read_nullable_str(body, 6)
    assert message is None, repr(message)

    # CreateTopics v4: one topic, 1 partition, replication 1, no assignments, no configs.
    topic = f"null-message-{time.time_ns()}"
    req = (
        struct.pack(">i", 1) + _kstr(topic) + struct.pack(">ihii", 1, 1, 0, 0)
        + struct.pack(">i", 10_000) + b"\x00"
    )
    body = request(bootstrap, 19, 4, req)
    pos = 4
    (count,) = struct.unpack(">i", body[pos:pos + 4])
    pos += 4
    assert count == 1
    (n,) = struct.unpack(">h", body[pos:pos + 2])
    name = body[pos + 2:pos + 2 + n].decode()
    pos += 2 + n
    (err,) = struct.unpack(">h", body[pos:pos + 2])
    assert (name, err) == (topic, 0)
    message, _ = _read_nullable_str(body, pos + 2)
    assert message is None, repr(message)

    # The same topic again: an error keeps its message.
    body = request(bootstrap, 19, 4, req)
    pos = 8 + 2 + n
    (err,) = struct.unpack(">h", body[pos:pos + 2])
    assert err == 36  # TOPIC_ALREADY_EXISTS
    message, _ = _read_nullable_str(body, pos + 2)
    assert message, "an error keeps its message"
