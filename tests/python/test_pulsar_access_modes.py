"""Pulsar producer access modes (PIP-68, issue #20 item 11) with the official `pulsar-client`:
`Exclusive` refuses a second producer with ProducerFenced, `ExclusiveWithFencing` closes the
producer that held the topic (its later sends fail with ProducerFenced), `WaitForExclusive`
waits until the topic is free. Before, every exclusive mode acted as `Exclusive` and answered
ProducerBusy."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest

pulsar = pytest.importorskip("pulsar")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("pulsar protocol"), pytest.mark.timeout(120)]

Mode = pulsar.ProducerAccessMode


def client_for(broker):
    return pulsar.Client(f"pulsar://{broker.pulsar}", operation_timeout_seconds=15,
                         logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


def topic_name(prefix):
    return f"persistent://public/default/{prefix}-{uuid.uuid4().hex[:10]}"


def received(client, topic, count):
    consumer = client.subscribe(topic, "check", initial_position=pulsar.InitialPosition.Earliest)
    try:
        out = []
        for _ in range(count):
            m = consumer.receive(timeout_millis=10_000)
            out.append(m.data())
            consumer.acknowledge(m)
        with pytest.raises(pulsar.Timeout):
            consumer.receive(timeout_millis=300)
        return out
    finally:
        consumer.close()


def test_exclusive_refuses_others(shared_broker):
    client = client_for(shared_broker)
    try:
        topic = topic_name("excl")
        first = client.create_producer(topic, access_mode=Mode.Exclusive, batching_enabled=False)
        with pytest.raises(pulsar.ProducerFenced):
            client.create_producer(topic, access_mode=Mode.Exclusive)
        with pytest.raises(pulsar.ProducerBusy):
            client.create_producer(topic)
        first.send(b"still mine")
        first.close()
        # Free again: a shared producer may attach.
        client.create_producer(topic, batching_enabled=False).send(b"shared")
        assert received(client, topic, 2) == [b"still mine", b"shared"]
    finally:
        client.close()


def test_exclusive_refused_while_a_shared_producer_is_attached(shared_broker):
    client = client_for(shared_broker)
    try:
        topic = topic_name("excl-shared")
        client.create_producer(topic)
        with pytest.raises(pulsar.ProducerFenced):
            client.create_producer(topic, access_mode=Mode.Exclusive)
    finally:
        client.close()


def test_exclusive_with_fencing_takes_the_topic(shared_broker):
    old_client, new_client = client_for(shared_broker), client_for(shared_broker)
    try:
        topic = topic_name("fence")
        old = old_client.create_producer(topic, access_mode=Mode.Exclusive, batching_enabled=False,
                                         send_timeout_millis=10_000)
        old.send(b"before")
        new = new_client.create_producer(topic, access_mode=Mode.ExclusiveWithFencing,
                                         batching_enabled=False)
        new.send(b"after")
        # The old producer was closed by the broker; its reconnect is refused, so its sends fail.
        with pytest.raises(pulsar.ProducerFenced):
            old.send(b"late")
        assert received(new_client, topic, 2) == [b"before", b"after"]
    finally:
        old_client.close()
        new_client.close()


def test_wait_for_exclusive_waits_for_the_holder(shared_broker):
    holder_client, waiter_client = client_for(shared_broker), client_for(shared_broker)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        topic = topic_name("wait")
        holder = holder_client.create_producer(topic, access_mode=Mode.Exclusive,
                                               batching_enabled=False)
        waiting = pool.submit(waiter_client.create_producer, topic,
                              access_mode=Mode.WaitForExclusive, batching_enabled=False)
        # Still waiting while the holder is attached (it is queued at the broker, not refused).
        with pytest.raises(concurrent.futures.TimeoutError):
            waiting.result(timeout=1.5)
        holder.send(b"holder")
        holder.close()
        waiter = waiting.result(timeout=15)
        waiter.send(b"waiter")
        assert received(waiter_client, topic, 2) == [b"holder", b"waiter"]
    finally:
        pool.shutdown(wait=False)
        holder_client.close()
        waiter_client.close()


def test_wait_for_exclusive_on_a_free_topic_is_granted_at_once(shared_broker):
    client = client_for(shared_broker)
    try:
        topic = topic_name("wait-free")
        p = client.create_producer(topic, access_mode=Mode.WaitForExclusive, batching_enabled=False)
        p.send(b"x")
        assert received(client, topic, 1) == [b"x"]
        with pytest.raises(pulsar.ProducerFenced):
            client.create_producer(topic, access_mode=Mode.Exclusive)
    finally:
        client.close()
