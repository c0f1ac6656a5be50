"""Pulsar subscription semantics under consumer changes, with the official `pulsar-client`:
Key_Shared auto-split hash ranges (placement as Pulsar computes it, order per key, keys moving
when a consumer leaves), Failover with the active consumer's process killed, and producer
deduplication by sequence id (also across a restart)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import defaultdict

import pytest

from conftest import wait_backlog

pulsar = pytest.importorskip("pulsar")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("pulsar protocol"), pytest.mark.timeout(180)]

RECEIVE_MS = 5000


def client_for(broker):
    return pulsar.Client(
        f"pulsar://{broker.pulsar}",
        operation_timeout_seconds=15,
        logger=pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG_LEVEL", "Warn"))),
    )


def topic_name(prefix="t"):
    return f"persistent://public/default/{prefix}-{uuid.uuid4().hex[:10]}"


def murmur3_32(data: bytes) -> int:
    """MurmurHash3 x86 32-bit, seed 0 (Pulsar's `Murmur3_32Hash`), written independently of the
    broker's Rust version so the test checks placement against the reference algorithm."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    mask = 0xFFFFFFFF

    def rotl(x, r):
        return ((x << r) | (x >> (32 - r))) & mask

    h = 0
    n = len(data) // 4
    for i in range(n):
        k = int.from_bytes(data[4 * i: 4 * i + 4], "little")
        k = rotl((k * c1) & mask, 15) * c2 & mask
        h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & mask
    k = 0
    for i, b in enumerate(data[4 * n:]):
        k ^= b << (8 * i)
    k = rotl((k * c1) & mask, 15) * c2 & mask
    h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


def sticky_slot(key: str) -> int:
    return (murmur3_32(key.encode()) & 0x7FFFFFFF) % 65536


def receive_all(consumers, want, deadline_s=30, ack=True):
    """Receives from every consumer until `want` messages arrived in total (bounded in time);
    returns [(consumer index, message)] in arrival order per consumer."""
    got = []
    deadline = time.time() + deadline_s
    while len(got) < want and time.time() < deadline:
        for idx, c in enumerate(consumers):
            try:
                m = c.receive(timeout_millis=100)
            except pulsar.Timeout:
                continue
            got.append((idx, m))
            if ack:
                c.acknowledge(m)
    return got


def test_key_shared_auto_split_places_keys_like_pulsar_and_moves_them_on_leave(broker):
    client = client_for(broker)
    topic = topic_name("ks")
    # Joined first: owns the whole range; joined second: takes the lower half (slots 0..=32768).
    first = client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.KeyShared,
                             consumer_name="first", receiver_queue_size=1000,
                             initial_position=pulsar.InitialPosition.Earliest)
    second = client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.KeyShared,
                              consumer_name="second", receiver_queue_size=1000,
                              initial_position=pulsar.InitialPosition.Earliest)
    keys = [f"key-{k}" for k in range(12)]
    expected_owner = {k: (1 if sticky_slot(k) <= 32768 else 0) for k in keys}
    assert set(expected_owner.values()) == {0, 1}, "the chosen keys must fall on both halves"
    p = client.create_producer(topic, batching_enabled=False)
    for i in range(120):
        p.send(f"{i}".encode(), partition_key=keys[i % len(keys)])

    got = receive_all([first, second], 120)
    assert len(got) == 120
    per_key = defaultdict(list)
    for idx, m in got:
        key = m.partition_key()
        assert idx == expected_owner[key], f"{key} (slot {sticky_slot(key)}) went to consumer {idx}"
        per_key[key].append(int(m.data()))
    for key, values in per_key.items():
        assert values == sorted(values), f"{key} out of order: {values}"
    assert sorted(v for vs in per_key.values() for v in vs) == list(range(120))

    # Phase 2: `second` takes a few messages, then leaves with the rest unacknowledged (they sit
    # in its receive queue); its keys move to `first`, with no loss and in order per key.
    for i in range(120, 240):
        p.send(f"{i}".encode(), partition_key=keys[i % len(keys)])
    taken = []
    for _ in range(5):
        m = second.receive(timeout_millis=RECEIVE_MS)
        taken.append(m)
        second.acknowledge(m)
    # The client groups acks for up to 100 ms: wait until all of them reached the broker (240
    # sent, 120 + 5 acknowledged).
    wait_backlog(broker, topic, "s", 240 - 120 - len(taken))
    second.close()
    rest = receive_all([first], 120 - len(taken))
    got2 = [(1, m) for m in taken] + rest
    values = sorted(int(m.data()) for _, m in got2)
    assert values == list(range(120, 240)), "lost or duplicated messages after the leave"
    per_key = defaultdict(list)
    for _, m in rest:
        per_key[m.partition_key()].append(int(m.data()))
    for key, vs in per_key.items():
        assert vs == sorted(vs), f"{key} out of order after the move: {vs}"
    moved = {m.partition_key() for _, m in rest if expected_owner[m.partition_key()] == 1}
    assert moved, "the leaving consumer's keys should have moved to the other one"
    try:
        extra = first.receive(timeout_millis=1000)
        pytest.fail(f"unexpected extra message {extra.data()!r}")
    except pulsar.Timeout:
        pass
    client.close()


def test_key_shared_new_consumer_waits_for_older_messages_of_its_keys(broker):
    """A consumer that joins takes part of a slice; the previous owner's unacknowledged messages
    of those keys are acknowledged before the newcomer receives newer ones (order per key)."""
    client = client_for(broker)
    topic = topic_name("ksjoin")
    first = client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.KeyShared,
                             consumer_name="first", receiver_queue_size=1000,
                             initial_position=pulsar.InitialPosition.Earliest)
    keys = [f"key-{k}" for k in range(12)]
    p = client.create_producer(topic, batching_enabled=False)
    for i in range(60):
        p.send(f"{i}".encode(), partition_key=keys[i % len(keys)])
    # `first` holds all 60 (prefetched, unacknowledged) when `second` joins.
    held = [first.receive(timeout_millis=RECEIVE_MS) for _ in range(10)]
    second = client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.KeyShared,
                              consumer_name="second", receiver_queue_size=1000,
                              initial_position=pulsar.InitialPosition.Earliest)
    for i in range(60, 120):
        p.send(f"{i}".encode(), partition_key=keys[i % len(keys)])
    # Nothing new for `second` while `first` has not acknowledged the older messages.
    try:
        m = second.receive(timeout_millis=1500)
        pytest.fail(f"second received {m.data()!r} before the older messages were acknowledged")
    except pulsar.Timeout:
        pass
    for m in held:
        first.acknowledge(m)
    got = [(0, m) for m in held] + receive_all([first, second], 110)
    values = sorted(int(m.data()) for _, m in got)
    assert values == list(range(120))
    per_key = defaultdict(list)
    for _, m in got:
        per_key[m.partition_key()].append(int(m.data()))
    for key, vs in per_key.items():
        assert vs == sorted(vs), f"{key} out of order: {vs}"
    assert any(idx == 1 for idx, _ in got), "second never received its keys"
    client.close()


def test_key_shared_sticky_delivers_declared_ranges_and_refuses_conflicts(broker):
    """STICKY: each consumer declares its hash ranges; a key goes to the consumer whose range
    holds its slot; an overlapping declaration is refused (ConsumerAssignError), as is an
    AUTO_SPLIT consumer on a STICKY subscription; keys of an undeclared slot wait until a
    consumer declares it, without holding up the other keys."""
    client = client_for(broker)
    topic = topic_name("sticky")

    def sticky(ranges):
        return pulsar.ConsumerKeySharedPolicy(key_shared_mode=pulsar.KeySharedMode.Sticky,
                                              sticky_ranges=ranges)

    def subscribe(name, policy=None):
        kw = {"key_shared_policy": policy} if policy is not None else {}
        return client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.KeyShared,
                                consumer_name=name, receiver_queue_size=1000,
                                initial_position=pulsar.InitialPosition.Earliest, **kw)

    low = subscribe("low", sticky([(0, 19999)]))
    mid = subscribe("mid", sticky([(20000, 39999)]))
    for bad in ([(39999, 45000)], [(100, 200)]):
        with pytest.raises(Exception):
            subscribe("bad", sticky(bad))
    with pytest.raises(Exception):
        subscribe("auto")

    keys = [f"key-{k}" for k in range(30)]
    owner = {k: (0 if sticky_slot(k) < 20000 else 1 if sticky_slot(k) < 40000 else 2)
             for k in keys}
    assert set(owner.values()) == {0, 1, 2}, "the keys must fall in all three ranges"
    p = client.create_producer(topic, batching_enabled=False)
    for i in range(90):
        p.send(f"{i}".encode(), partition_key=keys[i % len(keys)])
    covered = [i for i in range(90) if owner[keys[i % len(keys)]] != 2]
    got = receive_all([low, mid], len(covered))
    for idx, m in got:
        assert idx == owner[m.partition_key()], (m.partition_key(), sticky_slot(m.partition_key()), idx)
    assert sorted(int(m.data()) for _, m in got) == covered
    # Nothing for the undeclared range yet.
    assert not receive_all([low, mid], 1, deadline_s=1.5)

    high = subscribe("high", sticky([(40000, 65535)]))
    rest = receive_all([low, mid, high], 90 - len(covered))
    assert all(idx == 2 for idx, _ in rest), [(idx, m.partition_key()) for idx, m in rest]
    values = sorted(int(m.data()) for _, m in rest)
    assert values == [i for i in range(90) if owner[keys[i % len(keys)]] == 2]
    per_key = defaultdict(list)
    for _, m in got + rest:
        per_key[m.partition_key()].append(int(m.data()))
    for key, vs in per_key.items():
        assert vs == sorted(vs), f"{key} out of order: {vs}"
    client.close()


FAILOVER_CHILD = textwrap.dedent(
    """
    import sys, time, pulsar
    url, topic, acks = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = pulsar.Client(url, operation_timeout_seconds=15,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    consumer = client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.Failover,
                                consumer_name="a", initial_position=pulsar.InitialPosition.Earliest)
    print("ready", flush=True)
    for _ in range(acks):
        m = consumer.receive(timeout_millis=20000)
        consumer.acknowledge(m)
        print("acked", m.data().decode(), flush=True)
    # Receive one more without acknowledging it, then hang until killed.
    m = consumer.receive(timeout_millis=20000)
    print("holding", m.data().decode(), flush=True)
    time.sleep(600)  # not an ordering wait: the child hangs until the test kills it
    """
)


def test_failover_standby_takes_over_when_the_active_consumer_is_killed(broker):
    topic = topic_name("fokill")
    child = subprocess.Popen(
        [sys.executable, "-c", FAILOVER_CHILD, f"pulsar://{broker.pulsar}", topic, "5"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    client = client_for(broker)
    try:
        assert child.stdout.readline().strip() == "ready"
        # "b" sorts after "a": a standby until "a" goes away.
        standby = client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.Failover,
                                   consumer_name="b", initial_position=pulsar.InitialPosition.Earliest)
        p = client.create_producer(topic, batching_enabled=False)
        for i in range(20):
            p.send(f"{i}".encode())
        lines = [child.stdout.readline().strip() for _ in range(6)]
        assert lines[:5] == [f"acked {i}" for i in range(5)], lines
        assert lines[5] == "holding 5", lines
        try:
            m = standby.receive(timeout_millis=1000)
            pytest.fail(f"the standby received {m.data()!r} while the active consumer was alive")
        except pulsar.Timeout:
            pass
        wait_backlog(broker, topic, "s", 15)  # the child's 5 grouped acks reached the broker
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        got = []
        for _ in range(15):
            m = standby.receive(timeout_millis=RECEIVE_MS)
            got.append(int(m.data()))
            standby.acknowledge(m)
        assert got == list(range(5, 20)), got
        try:
            m = standby.receive(timeout_millis=1000)
            pytest.fail(f"unexpected extra message {m.data()!r}")
        except pulsar.Timeout:
            pass
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        client.close()


def read_values(client, topic, count):
    c = client.subscribe(topic, f"r-{uuid.uuid4().hex[:6]}",
                         initial_position=pulsar.InitialPosition.Earliest)
    got = []
    for _ in range(count):
        m = c.receive(timeout_millis=RECEIVE_MS)
        got.append(m.data().decode())
        c.acknowledge(m)
    try:
        m = c.receive(timeout_millis=1000)
        pytest.fail(f"unexpected extra message {m.data()!r}")
    except pulsar.Timeout:
        pass
    c.close()
    return got


def test_resend_without_deduplication_is_a_second_copy(broker):
    client = client_for(broker)
    topic = topic_name("nodedup")
    p = client.create_producer(topic, producer_name="plain", batching_enabled=False)
    first = p.send(b"a", sequence_id=5)
    second = p.send(b"a-again", sequence_id=5)
    assert first != second
    assert read_values(client, topic, 2) == ["a", "a-again"]
    client.close()


def test_deduplication_by_sequence_id_survives_a_restart(broker):
    import requests

    url = f"http://{broker.http}/admin/v2/namespaces/public/default/deduplication"
    assert requests.post(url, json=True, timeout=10).status_code == 204
    assert requests.get(url, timeout=10).json() is True
    client = client_for(broker)
    topic = topic_name("dedup")
    p = client.create_producer(topic, producer_name="dedup-p", batching_enabled=False)
    assert p.last_sequence_id() == -1
    ids = [p.send(f"{i}".encode(), sequence_id=i) for i in range(5)]
    again = p.send(b"3-again", sequence_id=3)
    assert again == ids[3], "a resend must get the original message id"
    # The name is held while the producer is attached.
    with pytest.raises(Exception):
        client.create_producer(topic, producer_name="dedup-p", batching_enabled=False)
    assert read_values(client, topic, 5) == [f"{i}" for i in range(5)]
    client.close()

    broker.restart(same_ports=True)
    client = client_for(broker)
    p = client.create_producer(topic, producer_name="dedup-p", batching_enabled=False)
    assert p.last_sequence_id() == 4, "the last sequence id is restored from the log"
    again = p.send(b"4-again", sequence_id=4)
    assert again == ids[4]
    p.send(b"5", sequence_id=5)
    assert read_values(client, topic, 6) == [f"{i}" for i in range(6)]
    client.close()


def test_pulsar_section_reaches_the_listener(broker_factory):
    """`[pulsar]` settings from the environment: deduplication on broker-wide (no namespace
    policy) and the announced max message size, which the client enforces."""
    b = broker_factory(env={
        "MAGNETAR_PULSAR__DEDUPLICATION_ENABLED": "true",
        "MAGNETAR_PULSAR__MESSAGE_BYTES_MAX": "65536",
    })
    client = client_for(b)
    topic = topic_name("cfg")
    p = client.create_producer(topic, producer_name="cfg-p", batching_enabled=False)
    # (The Python client treats sequence_id=0 as "not given"; start at 10.)
    first = p.send(b"x", sequence_id=10)
    assert p.send(b"x-again", sequence_id=10) == first
    with pytest.raises(Exception):
        p.send(b"y" * 100_000, sequence_id=11)
    p.send(b"z", sequence_id=12)
    assert read_values(client, topic, 2) == ["x", "z"]
    client.close()
