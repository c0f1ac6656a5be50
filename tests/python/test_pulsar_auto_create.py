"""Topics auto-created by Pulsar clients are non-partitioned (Pulsar's default
`allowAutoTopicCreationType=non-partitioned`), those auto-created by Kafka clients partitioned
(KoP's default); issue #20 item 7. A non-partitioned topic is partition 0 to Kafka clients."""

from __future__ import annotations

import uuid

import pytest
import requests

pulsar = pytest.importorskip("pulsar")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("admin REST"), pytest.mark.timeout(120)]


def client_for(broker):
    return pulsar.Client(f"pulsar://{broker.pulsar}", operation_timeout_seconds=15,
                         logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


def test_pulsar_producer_creates_a_non_partitioned_topic(shared_broker):
    from kafka_util import consume

    broker = shared_broker
    local = f"np-{uuid.uuid4().hex[:8]}"
    topic = f"persistent://public/default/{local}"
    admin = f"http://{broker.http}/admin/v2/persistent/public/default"
    client = client_for(broker)
    try:
        producer = client.create_producer(topic, batching_enabled=False)
        ids = [producer.send(f"m{i}".encode()) for i in range(3)]
        assert producer.topic() == topic
        assert requests.get(f"{admin}/{local}/partitions", timeout=10).json() == {"partitions": 0}
        names = requests.get(admin, timeout=10).json()
        assert topic in names and f"{topic}-partition-0" not in names, names

        consumer = client.subscribe(topic, "s", initial_position=pulsar.InitialPosition.Earliest)
        got = [consumer.receive(timeout_millis=10_000) for _ in range(3)]
        assert [m.data() for m in got] == [b"m0", b"m1", b"m2"]
        assert str(consumer.get_last_message_id()) == str(ids[-1])
        # seek by message id: the broker redelivers from that message and the client drops it
        # (exclusive without start_message_id_inclusive, as against Pulsar)
        consumer.seek(ids[1])
        assert consumer.receive(timeout_millis=10_000).data() == b"m2"
        consumer.close()

        # Kafka clients see the topic as one partition.
        msgs = consume(broker.kafka, local, 3, timeout_s=30)
        assert [(m.partition(), m.offset(), m.value()) for m in msgs] == [
            (0, 0, b"m0"), (0, 1, b"m1"), (0, 2, b"m2")]
    finally:
        client.close()


def test_kafka_producer_still_creates_a_partitioned_topic(shared_broker):
    from kafka_util import Rec, produce

    broker = shared_broker
    local = f"kp-{uuid.uuid4().hex[:8]}"
    produce(broker.kafka, local, [Rec(key=b"k", value=b"v", headers=[], timestamp_ms=None)])
    admin = f"http://{broker.http}/admin/v2/persistent/public/default"
    assert requests.get(f"{admin}/{local}/partitions", timeout=10).json() == {"partitions": 1}
    # A Pulsar client on a partitioned topic uses its partitions.
    client = client_for(broker)
    try:
        consumer = client.subscribe(f"persistent://public/default/{local}", "s",
                                    initial_position=pulsar.InitialPosition.Earliest)
        assert consumer.receive(timeout_millis=10_000).data() == b"v"
        consumer.close()
    finally:
        client.close()


def test_kop_key_makes_pulsar_auto_creation_partitioned(broker_factory):
    broker = broker_factory(env={"MAGNETAR_PULSAR__AUTO_TOPIC_CREATION_TYPE": "partitioned"})
    local = f"pp-{uuid.uuid4().hex[:8]}"
    client = client_for(broker)
    try:
        producer = client.create_producer(f"persistent://public/default/{local}")
        producer.send(b"x")
        admin = f"http://{broker.http}/admin/v2/persistent/public/default"
        assert requests.get(f"{admin}/{local}/partitions", timeout=10).json() == {"partitions": 1}
    finally:
        client.close()


def test_reader_seek_by_publish_time_on_a_non_partitioned_topic(shared_broker):
    """Issue #20 item 8: the reconnect a seek forces resumes the reader where the seek put it."""
    broker = shared_broker
    topic = f"persistent://public/default/rs-{uuid.uuid4().hex[:8]}"
    client = client_for(broker)
    try:
        producer = client.create_producer(topic, batching_enabled=False)
        for i in range(5):
            producer.send(f"m{i}".encode())
        reader = client.create_reader(topic, pulsar.MessageId.earliest)
        msgs = [reader.read_next(10_000) for _ in range(5)]
        assert [m.data() for m in msgs] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
        # messages with the same millisecond as m2 come again too
        t = msgs[2].publish_timestamp()
        expected = [m.data() for m in msgs if m.publish_timestamp() >= t]
        reader.seek(t)
        again = [reader.read_next(10_000) for _ in range(len(expected))]
        assert [m.data() for m in again] == expected
        reader.seek(msgs[0].publish_timestamp())
        assert reader.read_next(10_000).data() == b"m0"
        reader.close()
    finally:
        client.close()
