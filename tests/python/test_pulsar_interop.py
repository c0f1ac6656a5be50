"""Kafka and Pulsar clients on the same topics: a Kafka producer (confluent-kafka) and a Pulsar
consumer (pulsar-client) see the same partitions, keys, headers and timestamps."""

from __future__ import annotations

import base64
import uuid

import pytest

pulsar = pytest.importorskip("pulsar")
confluent_kafka = pytest.importorskip("confluent_kafka")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("pulsar protocol"), pytest.mark.timeout(120)]


def pulsar_client(broker):
    return pulsar.Client(f"pulsar://{broker.pulsar}", operation_timeout_seconds=15,
                         logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))


def create_kafka_topic(broker, name, partitions):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": broker.kafka})
    a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(15)


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kafka_producer_to_pulsar_consumer(broker, compression):
    name = f"interop-{uuid.uuid4().hex[:8]}"
    create_kafka_topic(broker, name, 2)
    p = confluent_kafka.Producer({"bootstrap.servers": broker.kafka, "linger.ms": 20,
                                  "compression.type": compression})
    sent = []
    for i in range(20):
        key = None if i % 5 == 0 else (bytes([0xFF, i]) if i % 5 == 1 else f"key-{i}".encode())
        value = b"" if i % 7 == 0 else f"value-{i}".encode()
        headers = [("text", f"h{i}".encode()), ("bin", bytes([0xC3, 0x28, i]))]
        ts = 1_700_000_000_000 + i
        p.produce(name, key=key, value=value, headers=headers, timestamp=ts,
                  partition=i % 2)
        sent.append((key, value, ts, i % 2))
    assert p.flush(15) == 0

    c = pulsar_client(broker)
    try:
        topic = f"persistent://public/default/{name}"
        consumer = c.subscribe(topic, "interop", initial_position=pulsar.InitialPosition.Earliest)
        got = []
        for _ in range(20):
            m = consumer.receive(timeout_millis=10000)
            consumer.acknowledge(m)
            got.append(m)
        by_value = {m.data(): m for m in got}
        # per partition, Pulsar order is Kafka order
        for part in (0, 1):
            in_part = [m for m in got if m.topic_name().endswith(f"-partition-{part}")]
            expected = [v for (_, v, _, pp) in sent if pp == part]
            assert [m.data() for m in in_part] == expected
        for key, value, ts, _ in sent:
            if value == b"":
                continue  # several empty values; checked by order above
            m = by_value[value]
            assert m.event_timestamp() == ts
            props = m.properties()
            assert props["text"] == f"h{ts - 1_700_000_000_000}"
            # non-UTF-8 header values come as base64 with a marker property
            assert base64.b64decode(props["bin"]) == bytes([0xC3, 0x28, ts - 1_700_000_000_000])
            assert props["__kafka.b64.bin"] == "true"
            if key is None:
                assert m.partition_key() == ""
            elif key[0] == 0xFF:
                assert base64.b64decode(m.partition_key()) == key
            else:
                assert m.partition_key() == key.decode()
    finally:
        c.close()


def test_pulsar_and_kafka_names_address_the_same_partition(broker):
    name = f"names-{uuid.uuid4().hex[:8]}"
    create_kafka_topic(broker, name, 1)
    p = confluent_kafka.Producer({"bootstrap.servers": broker.kafka})
    p.produce(name, value=b"from-kafka", partition=0)
    assert p.flush(10) == 0
    c = pulsar_client(broker)
    try:
        # a one-partition Kafka topic is a partitioned Pulsar topic with one partition
        r = c.create_reader(f"persistent://public/default/{name}-partition-0",
                            pulsar.MessageId.earliest)
        assert r.read_next(10000).data() == b"from-kafka"
        prod = c.create_producer(f"persistent://public/default/{name}-partition-0",
                                 batching_enabled=False)
        prod.send(b"from-pulsar")
        assert r.read_next(10000).data() == b"from-pulsar"
    finally:
        c.close()
