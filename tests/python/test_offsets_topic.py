"""`__consumer_offsets` as Kafka shows it (issue #20 item 5): listed among all topics and marked
internal, readable by clients (the group coordinator's records), refused for writes, deletes
and config changes (INVALID_TOPIC_EXCEPTION), with confluent-kafka."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import ConfigResource, ResourceType

from kafka_util import admin, consumer_conf, create_topic, producer_conf, unique_topic

pytestmark = pytest.mark.not_on("tansu", "offsets topic layout differs")

OFFSETS = "__consumer_offsets"


def java_hash(s: str) -> int:
    h = 0
    for ch in s.encode("utf-16-be").decode("utf-16-be"):
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def test_offsets_topic_is_listed_as_internal(bootstrap):
    md = admin(bootstrap).list_topics(timeout=10)
    assert OFFSETS in md.topics, sorted(md.topics)
    assert len(md.topics[OFFSETS].partitions) == 50
    # the broker's other internal names are not shown
    assert not [t for t in md.topics if t.startswith("public/__kafka")], sorted(md.topics)


def test_offsets_topic_holds_the_groups_commits(bootstrap):
    topic = unique_topic("oc")
    create_topic(bootstrap, topic, 1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = Consumer(consumer_conf(bootstrap, **{"group.id": group, "enable.auto.commit": False}))
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        c.close()
    partition = abs(java_hash(group)) % 50
    reader = Consumer(consumer_conf(bootstrap))
    try:
        reader.assign([TopicPartition(OFFSETS, partition, 0)])
        keys = []
        for _ in range(100):
            m = reader.poll(0.2)
            if m is None or m.error():
                if keys:
                    break
                continue
            keys.append(m.key() or b"")
        assert any(group.encode() in k for k in keys), keys[:5]
    finally:
        reader.close()


def test_offsets_topic_refuses_writes_deletes_and_config_changes(bootstrap):
    errors = []
    p = Producer(producer_conf(bootstrap, **{"retries": 0, "message.timeout.ms": 10000}))
    p.produce(OFFSETS, key=b"k", value=b"v", partition=0, on_delivery=lambda err, msg: errors.append(err))
    p.flush(20)
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.TOPIC_EXCEPTION, errors[0]

    a = admin(bootstrap)
    futs = a.delete_topics([OFFSETS], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        futs[OFFSETS].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, ei.value
    res = ConfigResource(ResourceType.TOPIC, OFFSETS, set_config={"retention.ms": "1000"})
    with pytest.raises(KafkaException):
        a.alter_configs([res], request_timeout=15)[res].result(timeout=20)
    # still there, whole
    assert len(a.list_topics(timeout=10).topics[OFFSETS].partitions) == 50
