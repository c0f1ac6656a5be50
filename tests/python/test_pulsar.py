"""Pulsar binary protocol with the official Python `pulsar-client`: produce/consume, the four
subscription types, acks, seek, readers, and a restart with cursors resumed."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from conftest import wait_backlog

pulsar = pytest.importorskip("pulsar")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("pulsar protocol"), pytest.mark.timeout(120)]

RECEIVE_MS = 5000


def client_for(broker):
    return pulsar.Client(
        f"pulsar://{broker.pulsar}",
        operation_timeout_seconds=15,
        logger=pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG_LEVEL", "Warn"))),
    )


def topic_name(prefix="t"):
    return f"persistent://public/default/{prefix}-{uuid.uuid4().hex[:10]}"


def drain(consumer, count, timeout_ms=RECEIVE_MS, ack=True):
    got = []
    for _ in range(count):
        m = consumer.receive(timeout_millis=timeout_ms)
        got.append(m)
        if ack:
            consumer.acknowledge(m)
    return got


def nothing_more(consumer, timeout_ms=1000):
    try:
        m = consumer.receive(timeout_millis=timeout_ms)
    except pulsar.Timeout:
        return True
    pytest.fail(f"unexpected message {m.data()!r}")


@pytest.fixture
def client(broker):
    c = client_for(broker)
    yield c
    c.close()


def test_round_trip_unbatched_and_batched(client):
    topic = topic_name("rt")
    consumer = client.subscribe(topic, "s", initial_position=pulsar.InitialPosition.Earliest)
    plain = client.create_producer(topic, batching_enabled=False)
    ids = [plain.send(f"m{i}".encode(), properties={"i": str(i)}, partition_key=f"k{i}",
                      event_timestamp=1_700_000_000_000 + i) for i in range(5)]
    batched = client.create_producer(topic, batching_enabled=True, batching_max_messages=10,
                                     batching_max_publish_delay_ms=50,
                                     compression_type=pulsar.CompressionType.LZ4)
    for i in range(5, 25):
        batched.send_async(f"m{i}".encode(), None, properties={"i": str(i)})
    batched.flush()
    msgs = drain(consumer, 25)
    assert [m.data().decode() for m in msgs] == [f"m{i}" for i in range(25)]
    assert msgs[0].properties() == {"i": "0"}
    assert msgs[1].partition_key() == "k1"
    assert msgs[2].event_timestamp() == 1_700_000_000_002
    assert msgs[0].message_id() == ids[0]
    # message ids increase
    assert all(msgs[i].message_id() < msgs[i + 1].message_id() for i in range(24))
    nothing_more(consumer)


def test_compression_codecs(client):
    topic = topic_name("codec")
    consumer = client.subscribe(topic, "s", initial_position=pulsar.InitialPosition.Earliest)
    n = 0
    for codec in (pulsar.CompressionType.LZ4, pulsar.CompressionType.ZLib,
                  pulsar.CompressionType.ZSTD, pulsar.CompressionType.SNAPPY):
        p = client.create_producer(topic, compression_type=codec, batching_enabled=True,
                                   batching_max_publish_delay_ms=20)
        for _ in range(3):
            p.send_async(b"x" * 1000 + str(n).encode(), None)
            n += 1
        p.flush()
        p.close()
    msgs = drain(consumer, n)
    assert [m.data()[1000:].decode() for m in msgs] == [str(i) for i in range(n)]


def test_exclusive_rejects_second_consumer(client):
    topic = topic_name("excl")
    client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.Exclusive)
    with pytest.raises(Exception) as e:
        client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.Exclusive)
    assert "Busy" in str(e.value) or "busy" in str(e.value).lower()


def test_exclusive_producer_access_mode(client):
    topic = topic_name("pexcl")
    client.create_producer(topic, access_mode=pulsar.ProducerAccessMode.Exclusive)
    with pytest.raises(Exception):
        client.create_producer(topic)


def test_shared_round_robin(client):
    topic = topic_name("shared")
    c1 = client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.Shared,
                          receiver_queue_size=1, initial_position=pulsar.InitialPosition.Earliest)
    c2 = client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.Shared,
                          receiver_queue_size=1, initial_position=pulsar.InitialPosition.Earliest)
    p = client.create_producer(topic, batching_enabled=False)
    for i in range(20):
        p.send(f"{i}".encode())
    seen = {1: [], 2: []}
    deadline = time.time() + 20
    while len(seen[1]) + len(seen[2]) < 20 and time.time() < deadline:
        for key, c in ((1, c1), (2, c2)):
            try:
                m = c.receive(timeout_millis=200)
            except pulsar.Timeout:
                continue
            seen[key].append(int(m.data()))
            c.acknowledge(m)
    assert sorted(seen[1] + seen[2]) == list(range(20))
    assert seen[1] and seen[2], seen


def test_failover_moves_to_the_next_consumer(client):
    topic = topic_name("failover")
    c1 = client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.Failover,
                          consumer_name="a", initial_position=pulsar.InitialPosition.Earliest)
    c2 = client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.Failover,
                          consumer_name="b", initial_position=pulsar.InitialPosition.Earliest)
    p = client.create_producer(topic, batching_enabled=False)
    for i in range(10):
        p.send(f"{i}".encode())
    first = drain(c1, 5)
    assert [int(m.data()) for m in first] == list(range(5))
    nothing_more(c2, 500)
    c1.close()
    rest = drain(c2, 5)
    assert [int(m.data()) for m in rest] == list(range(5, 10))


def test_key_shared_keeps_a_key_on_one_consumer(client):
    topic = topic_name("keyshared")
    consumers = [client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.KeyShared,
                                  initial_position=pulsar.InitialPosition.Earliest)
                 for _ in range(2)]
    p = client.create_producer(topic, batching_enabled=False)
    keys = [f"key-{k}" for k in range(8)]
    for i in range(40):
        p.send(f"{i}".encode(), partition_key=keys[i % len(keys)])
    owner = {}
    total = 0
    deadline = time.time() + 20
    while total < 40 and time.time() < deadline:
        for idx, c in enumerate(consumers):
            try:
                m = c.receive(timeout_millis=200)
            except pulsar.Timeout:
                continue
            total += 1
            assert owner.setdefault(m.partition_key(), idx) == idx, "a key went to two consumers"
            c.acknowledge(m)
    assert total == 40
    assert len(set(owner.values())) == 2, owner


def test_cumulative_ack_and_redelivery_after_reconnect(client):
    topic = topic_name("ack")
    p = client.create_producer(topic, batching_enabled=False)
    c = client.subscribe(topic, "s", initial_position=pulsar.InitialPosition.Earliest)
    for i in range(10):
        p.send(f"{i}".encode())
    msgs = drain(c, 10, ack=False)
    c.acknowledge_cumulative(msgs[5])
    c.close()
    c = client.subscribe(topic, "s")
    again = drain(c, 4)
    assert [int(m.data()) for m in again] == [6, 7, 8, 9]


def test_negative_ack_redelivers(client):
    topic = topic_name("nack")
    p = client.create_producer(topic, batching_enabled=False)
    c = client.subscribe(topic, "s", consumer_type=pulsar.ConsumerType.Shared,
                         negative_ack_redelivery_delay_ms=100,
                         initial_position=pulsar.InitialPosition.Earliest)
    p.send(b"once")
    m = c.receive(timeout_millis=RECEIVE_MS)
    c.negative_acknowledge(m)
    m2 = c.receive(timeout_millis=RECEIVE_MS)
    assert m2.data() == b"once"
    assert m2.redelivery_count() >= 1
    c.acknowledge(m2)


def test_seek_to_message_id_and_time(broker, client):
    topic = topic_name("seek")
    p = client.create_producer(topic, batching_enabled=False)
    c = client.subscribe(topic, "s", initial_position=pulsar.InitialPosition.Earliest)
    for i in range(10):
        p.send(f"{i}".encode())
        # Not an ordering wait: spaces the publish times so the seek by time below has a
        # distinct timestamp to land on.
        time.sleep(0.01)
    msgs = drain(c, 10)
    # The client groups acks for up to 100 ms: wait until they reached the broker.
    wait_backlog(broker, topic, "s", 0)
    # seeking to a message id is exclusive in the client (without start_message_id_inclusive):
    # the broker redelivers from that message and the client drops it
    c.seek(msgs[3].message_id())
    again = drain(c, 6)
    assert [int(m.data()) for m in again] == list(range(4, 10))
    # 4..9 acknowledged; 3, redelivered by the broker and dropped by the client, stays unacked.
    wait_backlog(broker, topic, "s", 1)
    c.seek(msgs[6].publish_timestamp())
    again = drain(c, 4)
    assert [int(m.data()) for m in again] == list(range(6, 10))
    c.seek(pulsar.MessageId.earliest)
    assert int(drain(c, 1)[0].data()) == 0


def test_reader_from_earliest_latest_and_id(client):
    topic = topic_name("reader")
    p = client.create_producer(topic, batching_enabled=False)
    ids = [p.send(f"{i}".encode()) for i in range(5)]
    r = client.create_reader(topic, pulsar.MessageId.earliest)
    assert [int(r.read_next(RECEIVE_MS).data()) for _ in range(5)] == list(range(5))
    assert not r.has_message_available()
    r.close()
    r = client.create_reader(topic, ids[1])
    assert int(r.read_next(RECEIVE_MS).data()) == 2
    r.close()
    r = client.create_reader(topic, ids[1], start_message_id_inclusive=True)
    assert int(r.read_next(RECEIVE_MS).data()) == 1
    r.close()
    r = client.create_reader(topic, pulsar.MessageId.latest)
    p.send(b"new")
    assert r.read_next(RECEIVE_MS).data() == b"new"


def test_partitioned_topic_round_trip(broker, client):
    # Kafka-created topics with 3 partitions are Pulsar partitioned topics of 3 partitions.
    admin = pytest.importorskip("confluent_kafka.admin")
    name = f"part-{uuid.uuid4().hex[:8]}"
    a = admin.AdminClient({"bootstrap.servers": broker.kafka})
    a.create_topics([admin.NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(15)
    topic = f"persistent://public/default/{name}"
    assert client.get_topic_partitions(topic) == [f"{topic}-partition-{i}" for i in range(3)]
    c = client.subscribe(topic, "s", initial_position=pulsar.InitialPosition.Earliest)
    p = client.create_producer(topic, batching_enabled=False)
    for i in range(30):
        p.send(f"{i}".encode(), partition_key=f"k{i}")
    got = drain(c, 30)
    assert sorted(int(m.data()) for m in got) == list(range(30))
    assert {m.topic_name() for m in got} <= {f"{topic}-partition-{i}" for i in range(3)}


def test_restart_resumes_cursors(broker):
    topic = topic_name("restart")
    c = client_for(broker)
    p = c.create_producer(topic, batching_enabled=False)
    consumer = c.subscribe(topic, "durable", initial_position=pulsar.InitialPosition.Earliest)
    for i in range(10):
        p.send(f"{i}".encode())
    drain(consumer, 4)
    wait_backlog(broker, topic, "durable", 6)  # the client's grouped acks reached the broker
    c.close()
    broker.restart(same_ports=True)
    c = client_for(broker)
    consumer = c.subscribe(topic, "durable")
    rest = drain(consumer, 6)
    assert [int(m.data()) for m in rest] == list(range(4, 10))
    nothing_more(consumer)
    c.close()


def test_unsubscribe_deletes_the_cursor(client):
    topic = topic_name("unsub")
    p = client.create_producer(topic, batching_enabled=False)
    c = client.subscribe(topic, "s", initial_position=pulsar.InitialPosition.Earliest)
    p.send(b"a")
    drain(c, 1)
    c.unsubscribe()
    c = client.subscribe(topic, "s", initial_position=pulsar.InitialPosition.Earliest)
    assert drain(c, 1)[0].data() == b"a"


def test_string_schema_works_and_a_different_type_is_refused(client):
    topic = topic_name("schema")
    p = client.create_producer(topic, schema=pulsar.schema.StringSchema())
    c = client.subscribe(topic, "s", schema=pulsar.schema.StringSchema(),
                         initial_position=pulsar.InitialPosition.Earliest)
    p.send("héllo")
    assert c.receive(timeout_millis=RECEIVE_MS).value() == "héllo"

    class Rec(pulsar.schema.Record):
        a = pulsar.schema.Integer()

    # The topic's schema is STRING now: a JSON producer is refused (test_pulsar_schema.py has
    # the schema registry's cases); on a new topic JSON is accepted.
    with pytest.raises(Exception) as e:
        client.create_producer(topic, schema=pulsar.schema.JsonSchema(Rec))
    assert "Schema" in str(e.value) or "schema" in str(e.value)
    client.create_producer(topic_name("json"), schema=pulsar.schema.JsonSchema(Rec)).close()


def test_http_lookup_service(broker):
    """Client("http://host:port"): the partition count from /admin/v2/.../partitions (creating the
    topic as the policy says) and each lookup from /lookup/v2/topic/..., then the binary protocol
    to the brokerUrl it got. Both a partitioned (auto-created) and a non-partitioned topic."""
    import requests

    c = pulsar.Client(f"http://{broker.http}", operation_timeout_seconds=15)
    try:
        for t in (topic_name("http-auto"), None):
            if t is None:
                t = topic_name("http-np")
                r = requests.put(f"http://{broker.http}/admin/v2/persistent/{t.split('://')[1]}", timeout=10)
                assert r.status_code in (200, 204), r.text
            consumer = c.subscribe(t, "s", initial_position=pulsar.InitialPosition.Earliest)
            p = c.create_producer(t)
            for i in range(3):
                p.send(f"m{i}".encode())
            got = sorted(m.data() for m in drain(consumer, 3))
            assert got == [b"m0", b"m1", b"m2"]
    finally:
        c.close()
    rest = topic_name("http-raw").split("://")[1]
    r = requests.get(f"http://{broker.http}/lookup/v2/topic/persistent/{rest}", timeout=10)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["brokerUrl"] == f"pulsar://{broker.pulsar}", data
    assert data["httpUrl"] == f"http://{broker.http}", data
    r = requests.get(f"http://{broker.http}/lookup/v2/topic/non-persistent/{rest}", timeout=10)
    assert r.status_code == 404 and "reason" in r.json(), r.text


def test_non_persistent_topics_are_refused_at_once(client):
    """Issue #20 item 12: not served, and refused with an error the client does not retry
    (an InvalidTopicName answer made the C++ client retry until its 30 s operation timeout)."""
    topic = "non-persistent://public/default/" + topic_name("np").rsplit("/", 1)[-1]
    # a retried refusal would end in the client's TimeOut, not NotAllowedError
    with pytest.raises(pulsar.NotAllowedError):
        client.create_producer(topic)
    with pytest.raises(pulsar.NotAllowedError):
        client.subscribe(topic, "s")


def test_named_advertised_listeners_answer_lookups_by_listener_name(broker_factory):
    """advertisedListeners: a client that names a listener (listener_name) is sent to that
    listener's URL (here a TCP proxy in front of the broker, so the redirection is seen: the
    client's producer and consumer connect through it); one that names a listener the broker
    does not have is refused; a client that names none is not sent there."""
    from cluster_harness import StallProxy

    b = broker_factory()
    port = b.ports()["pulsar"]
    proxy = StallProxy(b.pulsar)
    try:
        b.restart(same_ports=True, env={
            "MAGNETAR_PULSAR__ADVERTISED_LISTENERS":
                f"internal:pulsar://127.0.0.1:{port},external:pulsar://127.0.0.1:{proxy.port}",
            "MAGNETAR_PULSAR__INTERNAL_LISTENER_NAME": "internal",
        })
        topic = topic_name("listeners")
        plain = client_for(b)
        try:
            plain.create_producer(topic).send(b"default")
        finally:
            plain.close()
        assert proxy.accepted == 0
        named = pulsar.Client(f"pulsar://{b.pulsar}", listener_name="external",
                              operation_timeout_seconds=10)
        try:
            producer = named.create_producer(topic)
            producer.send(b"through the external listener")
            consumer = named.subscribe(topic, "s",
                                       initial_position=pulsar.InitialPosition.Earliest)
            got = {consumer.receive(RECEIVE_MS).data() for _ in range(2)}
            assert got == {b"default", b"through the external listener"}
        finally:
            named.close()
        assert proxy.accepted >= 1
    finally:
        proxy.stop()
    unknown = pulsar.Client(f"pulsar://{b.pulsar}", listener_name="nope",
                            operation_timeout_seconds=5)
    try:
        with pytest.raises(Exception):
            unknown.create_producer(topic)
    finally:
        unknown.close()


def test_bad_advertised_listeners_stop_startup_with_a_clear_message(broker_factory):
    for value, needle in [("external", "no listener name"),
                          ("external:http://h:1", "pulsar:// or pulsar+ssl://"),
                          ("external:pulsar://h", "host:port"),
                          ("a:pulsar://h:1,a:pulsar://h:2", "given twice")]:
        b = broker_factory(start=False, env={"MAGNETAR_PULSAR__ADVERTISED_LISTENERS": value})
        with pytest.raises(Exception):
            b.start()
        assert needle in b.stderr_text(), (value, b.stderr_text()[-500:])
