"""Record-level produce errors (KIP-467, issue #20 item 6): a batch refused for some of its
records answers INVALID_RECORD (or INVALID_TIMESTAMP) with `record_errors` naming every bad
record and an `error_message`. librdkafka then fails exactly those records and reports the
batch's others as `_INVALID_DIFFERENT_RECORD` (its test 0011 produce_batch does this with null
keys on a compacted topic)."""

from __future__ import annotations

import struct
import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from kafka_util import admin, consume, create_topic, producer_conf, raise_on_error, unique_topic
from test_kafka_protocol import _kstr, _read_nullable_str, request

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.not_on("tansu", "tansu accepts keyless records on compacted topics"),
]

MSG_COUNT = 100


def produce_all(bootstrap: str, topic: str, records, timeout_s: float = 30.0, **conf):
    """Produces (key, value, timestamp or None) records without retries; returns the delivery
    errors (None for a delivered record) in record order."""
    results = {}
    p = Producer(producer_conf(bootstrap, **{"retries": 0, **conf}))
    for i, (key, value, ts) in enumerate(records):
        kw = {"partition": 0}
        if ts is not None:
            kw["timestamp"] = ts
        p.produce(
            topic,
            key=key,
            value=value,
            on_delivery=lambda err, msg, i=i: results.__setitem__(i, err),
            **kw,
        )
    assert p.flush(timeout_s) == 0, "producer did not finish within the bound"
    assert len(results) == len(records), results
    return [results[i] for i in range(len(records))]


def keyless_every_tenth():
    return [
        (None if i % 10 == 0 else f"k{i}".encode(), f"v{i}".encode(), None)
        for i in range(MSG_COUNT)
    ]


def codes(errors):
    return [None if e is None else e.code() for e in errors]


def test_one_batch_with_keyless_records_on_a_compacted_topic(bootstrap):
    """librdkafka 0011 variation 0: one batch of 100, every tenth without a key."""
    topic = unique_topic("compact-batch")
    create_topic(bootstrap, topic, 1, config={"cleanup.policy": "compact"})
    errors = produce_all(
        bootstrap, topic, keyless_every_tenth(), **{"linger.ms": 2000, "batch.num.messages": 1000}
    )
    got = codes(errors)
    invalid = [i for i, c in enumerate(got) if c == KafkaError.INVALID_RECORD]
    different = [i for i, c in enumerate(got) if c == KafkaError._INVALID_DIFFERENT_RECORD]
    assert invalid == list(range(0, MSG_COUNT, 10)), got
    assert len(different) == MSG_COUNT - 10, got


def test_one_record_per_batch_only_the_keyless_fail(bootstrap):
    """librdkafka 0011 variation 1 (batch.size=1), with the policy set by an incremental APPEND
    as the librdkafka test does; the keyed records are stored."""
    topic = unique_topic("compact-single")
    create_topic(bootstrap, topic, 1)
    a = admin(bootstrap)
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND)
        ],
    )
    raise_on_error(a.incremental_alter_configs([resource])[resource])
    errors = produce_all(bootstrap, topic, keyless_every_tenth(), **{"batch.size": 1})
    got = codes(errors)
    assert [i for i, c in enumerate(got) if c == KafkaError.INVALID_RECORD] == list(
        range(0, MSG_COUNT, 10)
    ), got
    assert got.count(None) == MSG_COUNT - 10, got
    msgs = consume(bootstrap, topic, MSG_COUNT - 10)
    assert all(m.key() is not None for m in msgs)


def test_delete_policy_accepts_keyless_records(bootstrap):
    topic = unique_topic("delete-keyless")
    create_topic(bootstrap, topic, 1, config={"cleanup.policy": "delete"})
    errors = produce_all(bootstrap, topic, keyless_every_tenth(), **{"linger.ms": 200})
    assert codes(errors) == [None] * MSG_COUNT


def test_every_timestamp_out_of_range_is_named(bootstrap):
    """One batch, records 1 and 3 far in the past: exactly those two fail (only the first was
    named before). The partition's error is INVALID_TIMESTAMP (see the wire test); librdkafka
    reports each listed record as INVALID_RECORD whatever the partition's error."""
    topic = unique_topic("ts-records")
    create_topic(bootstrap, topic, 1, config={"message.timestamp.before.max.ms": "3600000"})
    now_ms = int(time.time() * 1000)
    old_ms = 1_000_000
    records = [
        (b"k", b"v", ts) for ts in (now_ms, old_ms, now_ms, old_ms, now_ms)
    ]
    errors = produce_all(bootstrap, topic, records, **{"linger.ms": 2000})
    assert codes(errors) == [
        KafkaError._INVALID_DIFFERENT_RECORD,
        KafkaError.INVALID_RECORD,
        KafkaError._INVALID_DIFFERENT_RECORD,
        KafkaError.INVALID_RECORD,
        KafkaError._INVALID_DIFFERENT_RECORD,
    ], [str(e) for e in errors]


def _batch(keys, timestamps=None) -> bytes:
    """An uncompressed v2 record batch with one record per key (None: null key), stamped now
    or with `timestamps`."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20,
    )
    now_ms = int(time.time() * 1000)
    for i, key in enumerate(keys):
        ts = timestamps[i] if timestamps else now_ms
        b.append(i, timestamp=ts, key=key, value=b"value", headers=[])
    return bytes(b.build())


def _produce_v8(bootstrap: str, topic: str, batch: bytes) -> bytes:
    # Produce v8: transactional_id, acks, timeout, [topic [partition records]].
    body = (
        struct.pack(">h", -1) + struct.pack(">hi", -1, 10_000) + struct.pack(">i", 1)
        + _kstr(topic) + struct.pack(">i", 1) + struct.pack(">ii", 0, len(batch)) + batch
    )
    return request(bootstrap, 0, 8, body)


def _parse_partition(body: bytes, topic: str):
    """(error code, record errors [(batch index, message)], error message) of the response's one
    partition."""
    pos = 0
    (count,) = struct.unpack(">i", body[pos:pos + 4])
    pos += 4
    assert count == 1
    name, pos = _read_nullable_str(body, pos)
    assert name == topic
    (count,) = struct.unpack(">i", body[pos:pos + 4])
    pos += 4
    assert count == 1
    (_index, err, _base, _append, _start) = struct.unpack(">ihqqq", body[pos:pos + 30])
    pos += 30
    (n,) = struct.unpack(">i", body[pos:pos + 4])
    pos += 4
    record_errors = []
    for _ in range(n):
        (batch_index,) = struct.unpack(">i", body[pos:pos + 4])
        message, pos = _read_nullable_str(body, pos + 4)
        record_errors.append((batch_index, message))
    message, pos = _read_nullable_str(body, pos)
    return err, record_errors, message


def test_produce_v8_answers_record_errors_on_the_wire(bootstrap):
    topic = unique_topic("compact-wire")
    create_topic(bootstrap, topic, 1, config={"cleanup.policy": "compact,delete"})
    err, record_errors, message = _parse_partition(
        _produce_v8(bootstrap, topic, _batch([b"a", None, b"c", None])), topic
    )
    assert err == 87, (err, record_errors, message)  # INVALID_RECORD
    assert [i for i, _ in record_errors] == [1, 3], record_errors
    assert all("without a key" in m for _, m in record_errors), record_errors
    assert message and "2 record" in message, message
    # A good batch: no record errors, a null message.
    err, record_errors, message = _parse_partition(
        _produce_v8(bootstrap, topic, _batch([b"a", b"b"])), topic
    )
    assert (err, record_errors, message) == (0, [], None)


def test_produce_v8_timestamp_errors_on_the_wire(bootstrap):
    topic = unique_topic("ts-wire")
    create_topic(bootstrap, topic, 1, config={"message.timestamp.before.max.ms": "3600000"})
    now_ms = int(time.time() * 1000)
    err, record_errors, message = _parse_partition(
        _produce_v8(bootstrap, topic, _batch([b"a", b"b", b"c"], [1_000_000, now_ms, 2_000_000])),
        topic,
    )
    assert err == 32, (err, record_errors, message)  # INVALID_TIMESTAMP
    assert [i for i, _ in record_errors] == [0, 2], record_errors
    assert all("out of range" in m for _, m in record_errors), record_errors
    assert message and "invalid timestamp" in message, message
