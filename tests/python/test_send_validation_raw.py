"""Pulsar SEND validation over a raw socket (issue #22): a batch whose metadata claims more
messages than its payload holds, or whose SEND disagrees with its metadata, is refused with
NotAllowedError before any receipt, nothing is stored, and the next good SEND is stored at the
index the refused one would have taken."""

from __future__ import annotations

import struct
import uuid

import pytest

from test_pulsar_raw import (
    PRODUCER_SUCCESS, SEND, SEND_ERROR, SEND_RECEIPT, Raw, base_command, f_bytes, f_varint, fields,
    metadata, payload_frame, producer_cmd, simple_frame, still_serving,
)

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("pulsar protocol"), pytest.mark.timeout(60)]

NOT_ALLOWED_ERROR = 22


def send_cmd(producer_id: int, seq: int, num_messages: int) -> bytes:
    return base_command(SEND, 6, f_varint(1, producer_id) + f_varint(2, seq) + f_varint(3, num_messages))


def batch_payload(present: int) -> bytes:
    out = b""
    for i in range(present):
        value = f"m{i}".encode()
        single = f_varint(3, len(value))  # payload_size
        out += struct.pack(">I", len(single)) + single + value
    return out


def test_lying_batch_is_refused_and_stores_nothing(broker):
    topic = f"persistent://public/default/raw-{uuid.uuid4().hex[:8]}-partition-0"
    c = Raw(broker.pulsar).connect()
    c.send(simple_frame(producer_cmd(topic)))
    c.expect(PRODUCER_SUCCESS)

    # A good batch of 3: indexes 0..2.
    c.send(payload_frame(send_cmd(1, 0, 3), metadata(0) + f_varint(11, 3), batch_payload(3)))
    receipt = fields(c.expect(SEND_RECEIPT)[7])
    assert fields(receipt[3])[2] == 0  # entry id = first index

    # The lie: 1000 messages claimed, 3 present.
    c.send(payload_frame(send_cmd(1, 1, 1000), metadata(1) + f_varint(11, 1000), batch_payload(3)))
    err = fields(c.expect(SEND_ERROR)[8])
    assert err[3] == NOT_ALLOWED_ERROR, err
    assert b"batch message 3 of 1000" in err[4], err

    # The SEND and the metadata disagree.
    c.send(payload_frame(send_cmd(1, 2, 2), metadata(2) + f_varint(11, 3), batch_payload(3)))
    err = fields(c.expect(SEND_ERROR)[8])
    assert err[3] == NOT_ALLOWED_ERROR, err

    # An unknown compression codec.
    c.send(payload_frame(send_cmd(1, 3, 1), metadata(3) + f_varint(8, 9), b"x"))
    err = fields(c.expect(SEND_ERROR)[8])
    assert err[3] == NOT_ALLOWED_ERROR, err

    # The next good SEND takes index 3: nothing of the refused ones was stored.
    c.send(payload_frame(send_cmd(1, 4, 1), metadata(4), b"good"))
    receipt = fields(c.expect(SEND_RECEIPT)[7])
    assert fields(receipt[3])[2] == 3
    c.close()
    still_serving(broker)


def test_kafka_consumers_move_past_an_entry_they_cannot_read(broker):
    """An encrypted Pulsar message passes SEND validation (its payload is opaque to the broker)
    but cannot become a Kafka record. Under the default kafka.unreadable_entry_policy = skip a
    Kafka fetch serves an empty batch over its offset, and librdkafka and kafka-python consumers
    reach the next message instead of stalling on it."""
    from kafka_util import Rec, consume, produce

    local = f"enc-{uuid.uuid4().hex[:8]}"
    c = Raw(broker.pulsar).connect()
    c.send(simple_frame(producer_cmd(f"persistent://public/default/{local}-partition-0")))
    c.expect(PRODUCER_SUCCESS)
    encryption_keys = f_bytes(13, f_bytes(1, b"key") + f_bytes(2, b"\x01\x02"))
    # zlib-compressed, 100 bytes uncompressed, the payload ciphertext: opaque.
    meta = metadata(0) + encryption_keys + f_varint(8, 2) + f_varint(9, 100)
    c.send(payload_frame(send_cmd(1, 0, 1), meta, b"\x8f" * 40))
    receipt = fields(c.expect(SEND_RECEIPT)[7])
    assert fields(receipt[3])[2] == 0
    c.close()

    # Pulsar's `local-partition-0` is Kafka's `local` partition 0.
    topic = local
    produce(broker.kafka, topic, [Rec(key=b"k", value=b"after", headers=[], timestamp_ms=None)],
            partition=0)
    msgs = consume(broker.kafka, topic, 1, timeout_s=30)
    assert msgs[0].value() == b"after" and msgs[0].offset() == 1

    from kafka import KafkaConsumer, TopicPartition as KTP

    kc = KafkaConsumer(bootstrap_servers=broker.kafka, enable_auto_commit=False,
                       consumer_timeout_ms=15000)
    try:
        kc.assign([KTP(topic, 0)])
        kc.seek_to_beginning()
        got = []
        for m in kc:
            got.append(m)
            break
        assert [(m.offset, m.value) for m in got] == [(1, b"after")]
    finally:
        kc.close()
