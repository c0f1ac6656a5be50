"""ListOffsets v0 (issue #20 item 5): Kafka 4.0 removed it (KIP-896) and kafka-protocol follows,
but kafkajs and clients configured for old brokers still send it; Magnetar decodes it by hand
and answers the v1 lookup in v0's layout (one offset, or none)."""

from __future__ import annotations

import struct

import pytest
from kafka import KafkaConsumer, TopicPartition

from kafka_util import create_topic, make_records, produce, unique_topic
from test_kafka_protocol import _kstr, request

pytestmark = [pytest.mark.timeout(60), pytest.mark.magnetar_only("ListOffsets v0 is not served by Kafka 4")]

LATEST = -1
EARLIEST = -2


def list_offsets_v0(bootstrap: str, topic: str, queries):
    """queries: [(partition, timestamp)] -> {partition: (error code, [offsets])}."""
    body = struct.pack(">i", -1) + struct.pack(">i", 1) + _kstr(topic) + struct.pack(">i", len(queries))
    for partition, ts in queries:
        body += struct.pack(">iqi", partition, ts, 1)
    resp = request(bootstrap, 2, 0, body)
    pos = 0
    (topics,) = struct.unpack(">i", resp[pos:pos + 4])
    pos += 4
    assert topics == 1
    (n,) = struct.unpack(">h", resp[pos:pos + 2])
    assert resp[pos + 2:pos + 2 + n].decode() == topic
    pos += 2 + n
    (count,) = struct.unpack(">i", resp[pos:pos + 4])
    pos += 4
    out = {}
    for _ in range(count):
        partition, err, noffsets = struct.unpack(">ihi", resp[pos:pos + 10])
        pos += 10
        offsets = list(struct.unpack(f">{noffsets}q", resp[pos:pos + 8 * noffsets]))
        pos += 8 * noffsets
        out[partition] = (err, offsets)
    assert pos == len(resp), f"{len(resp) - pos} trailing bytes"
    return out


def test_list_offsets_v0_on_the_wire(bootstrap):
    topic = unique_topic("lo0")
    create_topic(bootstrap, topic, 1)
    records = make_records(5, "lo0")
    produce(bootstrap, topic, records, partition=0, flush_each=1)
    # latest, earliest, by time (the third record's), and past every record (the end)
    for ts, expected in [(LATEST, 5), (EARLIEST, 0), (records[2].timestamp_ms, 2), (4_000_000_000_000, 5)]:
        assert list_offsets_v0(bootstrap, topic, [(0, ts)]) == {0: (0, [expected])}, ts
    # an unknown partition: UNKNOWN_TOPIC_OR_PARTITION and no offsets, beside a good one
    got = list_offsets_v0(bootstrap, topic, [(7, LATEST), (0, LATEST)])
    assert got == {7: (3, []), 0: (0, [5])}, got


def test_kafka_python_for_an_old_broker_reads_offsets(bootstrap):
    """kafka-python told the broker is 0.10.0 sends ListOffsets v0 for end/beginning offsets."""
    topic = unique_topic("lo0kp")
    create_topic(bootstrap, topic, 1)
    produce(bootstrap, topic, make_records(3, "kp"), partition=0)
    c = KafkaConsumer(bootstrap_servers=bootstrap, api_version=(0, 10, 0), request_timeout_ms=10000)
    try:
        tp = TopicPartition(topic, 0)
        assert c.end_offsets([tp]) == {tp: 3}
        assert c.beginning_offsets([tp]) == {tp: 0}
    finally:
        c.close()
