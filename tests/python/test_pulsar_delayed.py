"""Pulsar delayed delivery with the official `pulsar-client`: a message sent with
`deliver_after` is held back on Shared and Key_Shared subscriptions (messages sent after it
arrive first, and it arrives no earlier than its time), delivered at once on Exclusive (Pulsar
ignores the delay there), and at once everywhere when `delayed_delivery_enabled` is off.

Timing assertions are lower bounds only (never "within N seconds"), except the receive
timeouts that bound how long a test waits."""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from datetime import timedelta

import pytest

pulsar = pytest.importorskip("pulsar")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("pulsar protocol"), pytest.mark.timeout(120)]

DELAY_S = 2
RECEIVE_MS = 15000


def client_for(broker):
    return pulsar.Client(
        f"pulsar://{broker.pulsar}",
        operation_timeout_seconds=15,
        logger=pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG_LEVEL", "Warn"))),
    )


def topic_name():
    return f"persistent://public/default/delayed-{uuid.uuid4().hex[:10]}"


def subscription_stats(broker, topic, sub):
    path = topic.replace("persistent://", "")
    with urllib.request.urlopen(f"http://{broker.http}/admin/v2/persistent/{path}/stats", timeout=10) as r:
        return json.load(r)["subscriptions"][sub]


def send_delayed_then_plain(producer, delay):
    """Sends one delayed message, then two plain ones; returns the time before the send."""
    sent_at = time.time()
    producer.send(b"delayed", deliver_after=delay)
    producer.send(b"plain-1")
    producer.send(b"plain-2")
    return sent_at


@pytest.mark.parametrize("kind", ["Shared", "KeyShared"])
def test_shared_holds_a_delayed_message_until_its_time(shared_broker, kind):
    topic = topic_name()
    client = client_for(shared_broker)
    try:
        consumer = client.subscribe(topic, "sub", consumer_type=getattr(pulsar.ConsumerType, kind))
        producer = client.create_producer(topic, batching_enabled=False)
        sent_at = send_delayed_then_plain(producer, timedelta(seconds=DELAY_S))
        received = []
        for _ in range(3):
            m = consumer.receive(timeout_millis=RECEIVE_MS)
            received.append((m.data(), time.time()))
            consumer.acknowledge(m)
            if m.data() == b"plain-2":
                # The delayed message is held (and shown in the stats) while the others flow.
                stats = subscription_stats(shared_broker, topic, "sub")
                assert stats["msgDelayed"] == 1, stats
        assert [d for d, _ in received] == [b"plain-1", b"plain-2", b"delayed"]
        delayed_at = received[2][1]
        assert delayed_at - sent_at >= DELAY_S - 0.1, f"arrived {delayed_at - sent_at:.3f}s after the send"
        assert subscription_stats(shared_broker, topic, "sub")["msgDelayed"] == 0
    finally:
        client.close()


def test_exclusive_ignores_the_delay(shared_broker):
    topic = topic_name()
    client = client_for(shared_broker)
    try:
        consumer = client.subscribe(topic, "sub", consumer_type=pulsar.ConsumerType.Exclusive)
        producer = client.create_producer(topic, batching_enabled=False)
        send_delayed_then_plain(producer, timedelta(minutes=10))
        got = []
        for _ in range(3):
            m = consumer.receive(timeout_millis=RECEIVE_MS)
            got.append(m.data())
            consumer.acknowledge(m)
        assert got == [b"delayed", b"plain-1", b"plain-2"]
    finally:
        client.close()


def test_disabled_delivers_at_once_on_shared(broker_factory):
    broker = broker_factory(env={"MAGNETAR_PULSAR__DELAYED_DELIVERY_ENABLED": "false"})
    topic = topic_name()
    client = client_for(broker)
    try:
        consumer = client.subscribe(topic, "sub", consumer_type=pulsar.ConsumerType.Shared)
        producer = client.create_producer(topic, batching_enabled=False)
        send_delayed_then_plain(producer, timedelta(minutes=10))
        got = []
        for _ in range(3):
            m = consumer.receive(timeout_millis=RECEIVE_MS)
            got.append(m.data())
            consumer.acknowledge(m)
        assert got == [b"delayed", b"plain-1", b"plain-2"]
    finally:
        client.close()
