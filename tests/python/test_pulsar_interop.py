"""Kafka and Pulsar clients on the same topics: a Kafka producer (confluent-kafka) and a Pulsar
consumer (pulsar-client) see the same partitions, keys, headers and timestamps."""

from __future__ import annotations

import base64
import time
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


@pytest.mark.parametrize("batching", [True, False])
def test_pulsar_producer_to_kafka_consumer_with_continuous_offsets(broker, batching):
    """Pulsar-written entries reach a Kafka consumer between Kafka-written ones: partition key ->
    key, properties -> headers, event time -> timestamp, and offsets stay continuous."""
    from confluent_kafka import TopicPartition

    name = f"interop-back-{uuid.uuid4().hex[:8]}"
    create_kafka_topic(broker, name, 1)
    kp = confluent_kafka.Producer({"bootstrap.servers": broker.kafka, "linger.ms": 5})
    kp.produce(name, key=b"k-first", value=b"from-kafka-0", partition=0, timestamp=1_700_000_000_000)
    assert kp.flush(15) == 0

    c = pulsar_client(broker)
    try:
        producer = c.create_producer(f"persistent://public/default/{name}-partition-0",
                                     batching_enabled=batching, batching_max_publish_delay_ms=20)
        for i in range(5):
            producer.send_async(f"from-pulsar-{i}".encode(), None, partition_key=f"pk-{i}",
                                properties={"n": str(i)}, event_timestamp=1_700_000_001_000 + i)
        producer.flush()
        producer.close()
    finally:
        c.close()

    kp.produce(name, key=b"k-last", value=b"from-kafka-1", partition=0, timestamp=1_700_000_002_000)
    assert kp.flush(15) == 0

    consumer = confluent_kafka.Consumer({"bootstrap.servers": broker.kafka, "group.id": "unused-" + name,
                                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(name, 0, 0)])
        got = []
        for _ in range(200):
            if len(got) == 7:
                break
            m = consumer.poll(0.5)
            if m is None or m.error():
                continue
            got.append(m)
    finally:
        consumer.close()
    assert [m.offset() for m in got] == list(range(7))
    assert [m.value() for m in got] == [b"from-kafka-0"] + [f"from-pulsar-{i}".encode() for i in range(5)] + [b"from-kafka-1"]
    assert [m.key() for m in got] == [b"k-first"] + [f"pk-{i}".encode() for i in range(5)] + [b"k-last"]
    for i, m in enumerate(got[1:6]):
        assert dict(m.headers() or []) == {"n": str(i).encode()}
        assert m.timestamp()[1] == 1_700_000_001_000 + i


def stored_bytes(broker, name):
    """Every segment file's bytes of a topic's ledgers (for checking the stored format)."""
    root = broker.data_dir / "ledgers" / "public" / "default" / "persistent"
    out = b""
    for d in root.iterdir():
        if d.name.startswith(name):
            for f in d.rglob("*"):
                if f.is_file():
                    out += f.read_bytes()
    return out


@pytest.mark.parametrize("entry_format", ["kafka", "pulsar", "mixed_kafka"])
def test_entry_format_decides_storage_and_both_protocols_read_it(broker_factory, entry_format):
    from confluent_kafka import Consumer, TopicPartition

    b = broker_factory(env={"MAGNETAR_KAFKA__ENTRY_FORMAT": entry_format})
    name = f"ef-{entry_format}-{uuid.uuid4().hex[:6]}"
    create_kafka_topic(b, name, 2)
    p = confluent_kafka.Producer({"bootstrap.servers": b.kafka, "linger.ms": 20,
                                  "compression.type": "gzip", "enable.idempotence": True})
    sent = {0: [], 1: []}
    for i in range(40):
        key = None if i % 5 == 0 else (bytes([0xFF, i]) if i % 5 == 1 else f"key-{i}".encode())
        value = f"plain-marker-{i:04d}".encode()
        headers = [("text", f"h{i}".encode()), ("bin", bytes([0xC3, 0x28, i]))]
        ts = 1_700_000_000_000 + i
        p.produce(name, key=key, value=value, headers=headers, timestamp=ts, partition=i % 2)
        sent[i % 2].append((key, value, ts, headers))
    assert p.flush(15) == 0

    # The stored format: gzip hides the values in a Kafka batch; a Pulsar entry holds them plain.
    raw = stored_bytes(b, name)
    assert (b"plain-marker-0017" in raw) == (entry_format == "pulsar"), entry_format

    # Kafka consumer: same keys, values, headers, timestamps; offsets continuous from 0.
    kc = Consumer({"bootstrap.servers": b.kafka, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                   "enable.auto.commit": False})
    try:
        for part in (0, 1):
            kc.assign([TopicPartition(name, part, 0)])
            got = []
            deadline = time.time() + 20
            while len(got) < 20 and time.time() < deadline:
                m = kc.poll(0.5)
                if m is None or m.error():
                    continue
                got.append(m)
            assert [m.offset() for m in got] == list(range(20))
            for m, (key, value, ts, headers) in zip(got, sent[part]):
                assert (m.key(), m.value(), m.timestamp()[1]) == (key, value, ts)
                assert m.headers() == headers
    finally:
        kc.close()

    # Pulsar consumer: the same messages, in order per partition.
    c = pulsar_client(b)
    try:
        consumer = c.subscribe(f"persistent://public/default/{name}", "ef",
                               initial_position=pulsar.InitialPosition.Earliest)
        got = {0: [], 1: []}
        for _ in range(40):
            m = consumer.receive(timeout_millis=10000)
            consumer.acknowledge(m)
            got[int(m.topic_name().rsplit("-", 1)[1])].append(m)
        for part in (0, 1):
            assert [m.data() for m in got[part]] == [v for (_, v, _, _) in sent[part]]
            for m, (key, value, ts, _) in zip(got[part], sent[part]):
                assert m.event_timestamp() == ts
                props = m.properties()
                assert props["text"] == f"h{ts - 1_700_000_000_000}"
                assert base64.b64decode(props["bin"]) == bytes([0xC3, 0x28, ts - 1_700_000_000_000])
                if key is None:
                    assert m.partition_key() == ""
                elif key[0] == 0xFF:
                    assert base64.b64decode(m.partition_key()) == key
                else:
                    assert m.partition_key() == key.decode()
            # message id entry + batch index = the Kafka offset
            offsets = [m.message_id().entry_id() + max(m.message_id().batch_index(), 0) for m in got[part]]
            assert offsets == list(range(20))
    finally:
        c.close()
