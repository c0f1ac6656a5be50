"""Namespace policies set over the admin REST API take effect for real clients: the auto topic
creation override (Kafka Metadata/Produce and Pulsar producers), max producers and consumers per
topic (Pulsar), and the publish rate (Kafka and Pulsar producers are slowed to it)."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import requests
from confluent_kafka import KafkaException, Producer

pulsar = pytest.importorskip("pulsar")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("admin REST"), pytest.mark.timeout(120)]


def new_namespace(broker) -> str:
    ns = f"pol{uuid.uuid4().hex[:8]}"
    r = requests.put(f"http://{broker.http}/admin/v2/namespaces/public/{ns}")
    assert r.status_code == 204, r.text
    return ns


def policy(broker, ns, name, body=None, method="POST"):
    url = f"http://{broker.http}/admin/v2/namespaces/public/{ns}/{name}"
    r = requests.request(method, url, json=body)
    assert r.status_code == 204, r.text


def pulsar_client(broker):
    return pulsar.Client(
        f"pulsar://{broker.pulsar}",
        operation_timeout_seconds=10,
        logger=pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG_LEVEL", "Warn"))),
    )


def kafka_produce(broker, topic, count, timeout_s=30.0, **extra):
    """Produces `count` messages; returns (seconds taken, delivery errors)."""
    conf = {"bootstrap.servers": broker.kafka, "linger.ms": 5, "message.timeout.ms": 8000}
    conf.update(extra)
    p = Producer(conf)
    errors = []
    start = time.monotonic()
    for i in range(count):
        p.produce(topic, f"m{i}".encode(), on_delivery=lambda err, _m: errors.append(err) if err else None)
    left = p.flush(timeout_s)
    return time.monotonic() - start, errors, left


def partitions_of(broker, ns, topic):
    r = requests.get(f"http://{broker.http}/admin/v2/persistent/public/{ns}/{topic}/partitions")
    return r.json()["partitions"]


def test_auto_topic_creation_override(broker):
    ns = new_namespace(broker)
    policy(broker, ns, "autoTopicCreation",
           {"allowAutoTopicCreation": True, "topicType": "partitioned", "defaultNumPartitions": 3})
    _, errors, left = kafka_produce(broker, f"public/{ns}/by-kafka", 3)
    assert (errors, left) == ([], 0)
    assert partitions_of(broker, ns, "by-kafka") == 3
    client = pulsar_client(broker)
    try:
        client.create_producer(f"persistent://public/{ns}/by-pulsar").close()
        assert partitions_of(broker, ns, "by-pulsar") == 3

        policy(broker, ns, "autoTopicCreation", {"allowAutoTopicCreation": False})
        with pytest.raises(Exception):
            client.create_producer(f"persistent://public/{ns}/refused")
        _, errors, left = kafka_produce(broker, f"public/{ns}/refused-kafka", 1, timeout_s=10)
        assert errors or left, "produce to a topic that may not be created succeeded"
        topics = requests.get(f"http://{broker.http}/admin/v2/persistent/public/{ns}").json()
        assert not any("refused" in t for t in topics), topics

        policy(broker, ns, "autoTopicCreation", method="DELETE")
        client.create_producer(f"persistent://public/{ns}/allowed-again").close()
    finally:
        client.close()


def test_max_producers_and_consumers_per_topic(broker):
    ns = new_namespace(broker)
    topic = f"persistent://public/{ns}/limited"
    assert requests.put(f"http://{broker.http}/admin/v2/persistent/public/{ns}/limited").status_code == 204
    policy(broker, ns, "maxProducersPerTopic", 1)
    policy(broker, ns, "maxConsumersPerTopic", 1)
    client = pulsar_client(broker)
    try:
        first = client.create_producer(topic)
        with pytest.raises(Exception, match="(?i)busy|max producers"):
            client.create_producer(topic)
        consumer = client.subscribe(topic, "a")
        with pytest.raises(Exception, match="(?i)busy|max consumers"):
            client.subscribe(topic, "b")
        first.close()
        consumer.close()
        # The slots are free again once closed.
        client.create_producer(topic).close()
        client.subscribe(topic, "b").close()
        policy(broker, ns, "maxProducersPerTopic", method="DELETE")
        p1, p2 = client.create_producer(topic), client.create_producer(topic)
        p1.close()
        p2.close()
    finally:
        client.close()


def test_publish_rate_throttles_kafka_and_pulsar_producers(broker):
    ns = new_namespace(broker)
    for t in ("k", "p"):
        assert requests.put(f"http://{broker.http}/admin/v2/persistent/public/{ns}/{t}").status_code == 204
    # Unthrottled first, for comparison.
    fast, errors, left = kafka_produce(broker, f"public/{ns}/k", 60)
    assert (errors, left) == ([], 0)
    policy(broker, ns, "publishRate", {"publishThrottlingRateInMsg": 20, "publishThrottlingRateInByte": -1})
    # 60 more at 20 msg/s: the bucket holds one second (20), the other 40 take two seconds.
    slow, errors, left = kafka_produce(broker, f"public/{ns}/k", 60)
    assert (errors, left) == ([], 0)
    assert slow >= 1.5 and slow > fast + 1.0, (fast, slow)

    client = pulsar_client(broker)
    try:
        producer = client.create_producer(f"persistent://public/{ns}/p", batching_enabled=False)
        start = time.monotonic()
        for i in range(60):
            producer.send(f"m{i}".encode())
        took = time.monotonic() - start
        assert took >= 1.5, took
        producer.close()
    finally:
        client.close()
    policy(broker, ns, "publishRate", method="DELETE")
    again, errors, left = kafka_produce(broker, f"public/{ns}/k", 60)
    assert (errors, left) == ([], 0)
    assert again < 1.5, again
