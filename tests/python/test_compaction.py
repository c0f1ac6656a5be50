"""Log compaction (issue #19) with real clients: a topic with cleanup.policy=compact, small
segments, min.cleanable.dirty.ratio=0.01 and min.compaction.lag.ms=0 gets many updates of a few
keys and some tombstones; compaction (triggered through the admin endpoint, or by the background
cleaner) leaves exactly the latest value of each key at its original offset, removes tombstones
after delete.retention.ms, keeps the log start as the earliest offset, serves a fetch at a
compacted-away offset from the next batch, and survives a kill -9 in the middle of it.
confluent-kafka and kafka-python; the admin API over HTTP; /metrics."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import requests
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from kafka_util import create_topic, unique_topic, watermarks

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("log compaction"), pytest.mark.timeout(300)]

KEYS = 20
UPDATES = 3000
DELETED = 5  # keys k00..k04 get a tombstone at the end
FILLER = 150  # unique keys after the updates, so the updates are all in sealed segments
VALUE_PAD = "x" * 60


def topic_config(delete_retention_ms: int) -> Dict[str, str]:
    return {
        "cleanup.policy": "compact",
        "segment.bytes": "4096",
        "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0",
        "delete.retention.ms": str(delete_retention_ms),
    }


def produce_keyed(bootstrap: str, topic: str, items: List[Tuple[bytes, Optional[bytes]]],
                  flush_every: Optional[int] = 20, **conf) -> List[int]:
    """Produces (key, value) pairs in order (value None = tombstone); returns their offsets.
    `flush_every` records a flush (None: only at the end)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 20000, **conf})
    offsets: List[Optional[int]] = [None] * len(items)
    errors = []

    def report(i):
        def cb(err, msg):
            if err is not None:
                errors.append(err)
            else:
                offsets[i] = msg.offset()

        return cb

    for i, (k, v) in enumerate(items):
        for _ in range(100):
            try:
                p.produce(topic, key=k, value=v, partition=0, on_delivery=report(i))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        # By default batches of at most 20 records, so no batch outgrows a segment and the
        # filler after the updates fills segments of its own (the active segment is never
        # compacted).
        if flush_every and i % flush_every == flush_every - 1:
            assert p.flush(30) == 0
    assert p.flush(30) == 0, "undelivered messages"
    assert not errors, errors[:3]
    assert all(o is not None for o in offsets)
    return offsets  # type: ignore[return-value]


def workload(random_filler: bool = False) -> List[Tuple[bytes, Optional[bytes]]]:
    """Updates of KEYS keys, tombstones for DELETED of them, then FILLER unique keys (random
    values when the batches are compressed, so the filler still fills segments of its own)."""
    items: List[Tuple[bytes, Optional[bytes]]] = []
    for i in range(UPDATES):
        k = i % KEYS
        items.append((b"k%02d" % k, f"v{i}-{VALUE_PAD}".encode()))
    for k in range(DELETED):
        items.append((b"k%02d" % k, None))
    for i in range(FILLER):
        value = random.randbytes(80) if random_filler else f"f{i}-{VALUE_PAD}".encode()
        items.append((b"filler-%04d" % i, value))
    return items


def expected_view(items, offsets, tombstones_gone: bool) -> Dict[int, Tuple[bytes, Optional[bytes]]]:
    """offset -> (key, value): the latest record of each key."""
    latest: Dict[bytes, Tuple[int, Optional[bytes]]] = {}
    for (k, v), off in zip(items, offsets):
        latest[k] = (off, v)
    return {
        off: (k, v)
        for k, (off, v) in latest.items()
        if not (tombstones_gone and v is None)
    }


def consume_all(bootstrap: str, topic: str, start: int = 0, timeout_s: float = 60.0,
                **conf) -> List[Tuple[int, bytes, Optional[bytes]]]:
    """Every message from `start` to the high watermark: (offset, key, value)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "compaction-test-unused",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
            **conf,
        }
    )
    out = []
    try:
        c.assign([TopicPartition(topic, 0, start)])
        deadline = time.monotonic() + timeout_s
        for _ in range(1_000_000):
            assert time.monotonic() < deadline, f"reading {topic} did not reach its end; got {len(out)}"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                if m.topic() != topic:
                    continue
                raise AssertionError(m.error())
            out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return out


def admin_url(broker, topic: str) -> str:
    return f"http://{broker.http}/admin/v2/persistent/public/default/{topic}/compaction"


def compaction_status(broker, topic: str) -> dict:
    r = requests.get(admin_url(broker, topic), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def compact_now(broker, topic: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    for _ in range(600):
        r = requests.put(admin_url(broker, topic), timeout=10)
        if r.status_code != 409:  # 409: one (the background cleaner's) is running
            break
        assert time.monotonic() < deadline, "a compaction stays running"
        time.sleep(0.2)
    assert r.status_code == 204, (r.status_code, r.text)
    for _ in range(1000):
        s = compaction_status(broker, topic)
        if s["status"] in ("SUCCESS", "ERROR"):
            assert s["status"] == "SUCCESS", s
            return s
        assert time.monotonic() < deadline, f"compaction still {s}"
        time.sleep(0.2)
    raise AssertionError("unreachable")


def segment_bytes(data_dir: Path, topic: str) -> int:
    return sum(p.stat().st_size for p in data_dir.rglob("*.seg") if topic in str(p))


def check_view(got, expected):
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(set(offsets)), "offsets strictly increase"
    assert {o: (k, v) for o, k, v in got} == expected


def test_compaction_keeps_the_latest_value_per_key_at_its_offset(broker_factory):
    b = broker_factory(env={"MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000"})
    topic = unique_topic("compact")
    create_topic(b.kafka, topic, 1, config=topic_config(delete_retention_ms=4000))
    items = workload()
    offsets = produce_keyed(b.kafka, topic, items)
    assert offsets == list(range(len(items))), "offsets are contiguous before compaction"
    before = segment_bytes(b.data_dir, topic)

    # Not yet compacted: every record is there.
    assert len(consume_all(b.kafka, topic)) == len(items)
    assert compaction_status(b, topic)["status"] == "NOT_RUN"

    compact_now(b, topic)
    after = segment_bytes(b.data_dir, topic)
    print(f"segment bytes before {before}, after {after}")
    assert after < before / 3, (before, after)
    got = consume_all(b.kafka, topic)
    # Tombstones may already be gone if the machine was slow; the live keys are exact.
    live = expected_view(items, offsets, tombstones_gone=True)
    got_live = {o: (k, v) for o, k, v in got if v is not None}
    assert got_live == live
    tombstones = [(o, k) for o, k, v in got if v is None]
    assert all(k < b"k%02d" % DELETED for _, k in tombstones), tombstones

    # Earliest is the log start; the latest offset did not move.
    low, high = watermarks(b.kafka, topic)
    assert (low, high) == (0, len(items))
    # A fetch at a compacted-away offset returns the next batch.
    gone = 3  # k03's first value, superseded
    assert gone not in live
    nxt = consume_all(b.kafka, topic, start=gone)
    assert nxt and nxt[0][0] > gone
    assert nxt[0][0] == min(o for o, _, _ in got if o > gone)

    # After delete.retention.ms the tombstones go too (time is the subject: the retention runs
    # out on the real clock).
    time.sleep(4.5)
    compact_now(b, topic)
    got = consume_all(b.kafka, topic)
    check_view(got, expected_view(items, offsets, tombstones_gone=True))

    # The metrics show it.
    text = requests.get(f"http://{b.http}/metrics", timeout=10).text
    reclaimed = [
        line for line in text.splitlines()
        if line.startswith("magnetar_partition_compaction_reclaimed_bytes") and topic in line
    ]
    assert reclaimed and float(reclaimed[0].split()[-1]) > 0, reclaimed
    assert any(
        line.startswith("magnetar_partition_compaction_cleanable_bytes") and topic in line
        for line in text.splitlines()
    )

    # A restart reads the same compacted log.
    b.restart()
    check_view(consume_all(b.kafka, topic), expected_view(items, offsets, tombstones_gone=True))


def test_kafka_connect_internal_topics_read_back_as_compacted(broker_factory):
    """Kafka Connect creates its config/offset/status topics with cleanup.policy=compact and
    checks the policy read back through DescribeConfigs before it starts."""
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

    b = broker_factory()
    a = AdminClient({"bootstrap.servers": b.kafka})
    names = [unique_topic(n) for n in ("connect-configs", "connect-offsets", "connect-status")]
    futs = a.create_topics(
        [NewTopic(n, num_partitions=1, replication_factor=1, config={"cleanup.policy": "compact"})
         for n in names],
        request_timeout=20,
    )
    for n in names:
        futs[n].result(timeout=20)
    for n in names:
        res = ConfigResource(ResourceType.TOPIC, n)
        configs = a.describe_configs([res], request_timeout=20)[res].result(timeout=20)
        assert configs["cleanup.policy"].value == "compact"
        assert compaction_status(b, n)["status"] == "NOT_RUN"


def test_compact_only_topics_are_not_deleted_by_retention_or_delete_records(broker_factory):
    """cleanup.policy=compact without delete: retention.ms does not delete old segments (they
    hold keys' latest values) and DeleteRecords is refused with POLICY_VIOLATION, as in Kafka;
    compact,delete is deleted by both."""
    from confluent_kafka.admin import AdminClient

    b = broker_factory(env={"MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000",
                            "MAGNETAR_BROKER__RETENTION_CHECK_INTERVAL_MS": "1000"})
    topics = {}
    for policy in ("compact", "compact,delete"):
        t = unique_topic("policy")
        create_topic(b.kafka, t, 1, config={**topic_config(delete_retention_ms=86_400_000),
                                            "cleanup.policy": policy, "retention.ms": "1"})
        produce_keyed(b.kafka, t, [(b"k%03d" % i, VALUE_PAD.encode()) for i in range(300)])
        topics[policy] = t
    deadline = time.monotonic() + 30
    while watermarks(b.kafka, topics["compact,delete"])[0] == 0:
        assert time.monotonic() < deadline, "retention never deleted the compact,delete topic"
        time.sleep(0.3)
    # Two more retention passes (the minimum interval, 1 s) have seen the compact-only topic.
    time.sleep(2.5)
    assert watermarks(b.kafka, topics["compact"]) == (0, 300)

    a = AdminClient({"bootstrap.servers": b.kafka})
    refused = a.delete_records([TopicPartition(topics["compact"], 0, 100)], request_timeout=15)
    with pytest.raises(Exception) as e:
        list(refused.values())[0].result(timeout=15)
    assert e.value.args[0].code() == KafkaError.POLICY_VIOLATION, e.value
    assert watermarks(b.kafka, topics["compact"]) == (0, 300)
    done = a.delete_records([TopicPartition(topics["compact,delete"], 0, 299)], request_timeout=15)
    assert list(done.values())[0].result(timeout=15).low_watermark == 299


def test_namespace_topic_config_defaults_make_its_topics_compacted(broker_factory):
    """A namespace's topic config defaults (POST .../namespaces/{t}/{ns}/topicConfigDefaults)
    apply to its topics that do not set the key themselves: DescribeConfigs shows the value with
    source DYNAMIC_DEFAULT_BROKER_CONFIG, Produce requires keys, the topic is compacted with the
    namespace's delete.retention.ms, and removing the defaults turns it back."""
    from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, ResourceType

    b = broker_factory(env={"MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000"})
    url = f"http://{b.http}/admin/v2/namespaces/public/default/topicConfigDefaults"
    topic = unique_topic("nsdefaults")
    # A topic that exists (and is cached by the broker) before the defaults are set.
    create_topic(b.kafka, topic, 1, config={"segment.bytes": "4096"})
    assert requests.post(url, json={"cleanup.policy": "compress"}, timeout=10).status_code == 400
    r = requests.post(url, json={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01",
                                 "min.compaction.lag.ms": "0", "delete.retention.ms": "1"}, timeout=10)
    assert r.status_code == 204, r.text
    assert requests.get(url, timeout=10).json()["cleanup.policy"] == "compact"

    a = AdminClient({"bootstrap.servers": b.kafka})
    res = ConfigResource(ResourceType.TOPIC, topic)
    configs = a.describe_configs([res], request_timeout=20)[res].result(timeout=20)
    assert configs["cleanup.policy"].value == "compact"
    assert configs["cleanup.policy"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    assert configs["segment.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value

    # Keys are required now, as on any compacted topic.
    p = Producer({"bootstrap.servers": b.kafka, "message.timeout.ms": 20000})
    errors = []
    p.produce(topic, value=b"no key", partition=0, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors

    items = workload()
    offsets = produce_keyed(b.kafka, topic, items)
    compact_now(b, topic)
    time.sleep(0.1)  # past the namespace's delete.retention.ms (1 ms) on the real clock
    compact_now(b, topic)
    check_view(consume_all(b.kafka, topic), expected_view(items, offsets, tombstones_gone=True))

    # Without the defaults the topic is a plain one again: a record without a key is taken.
    assert requests.delete(url, timeout=10).status_code == 204
    configs = a.describe_configs([res], request_timeout=20)[res].result(timeout=20)
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value
    errors.clear()
    p.produce(topic, value=b"no key", partition=0, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(30) == 0
    assert errors == [None], errors


@pytest.mark.parametrize("codec", ["gzip", "lz4", "zstd", "snappy"])
def test_compressed_idempotent_batches_are_compacted(broker_factory, codec):
    """Compressed batches of an idempotent producer: decoded, the kept records re-encoded at
    their offsets; a later produce by a new idempotent producer after a restart works."""
    b = broker_factory(env={"MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000"})
    topic = unique_topic("compactz")
    create_topic(b.kafka, topic, 1, config=topic_config(delete_retention_ms=86_400_000))
    items = workload(random_filler=True)
    offsets = produce_keyed(b.kafka, topic, items, **{"compression.type": codec, "enable.idempotence": True})
    compact_now(b, topic)
    check_view(consume_all(b.kafka, topic), expected_view(items, offsets, tombstones_gone=False))
    b.restart()
    more = [(b"k01", b"after-restart")]
    off = produce_keyed(b.kafka, topic, more, **{"enable.idempotence": True})
    got = consume_all(b.kafka, topic)
    assert got[-1] == (off[0], b"k01", b"after-restart")


def test_compaction_is_refused_for_a_topic_without_compact(broker_factory):
    b = broker_factory()
    topic = unique_topic("nocompact")
    create_topic(b.kafka, topic, 1, config={"cleanup.policy": "delete"})
    r = requests.put(admin_url(b, topic), timeout=10)
    assert r.status_code in (400, 409, 412), (r.status_code, r.text)
    assert "compact" in r.text


def test_background_cleaner_with_kafka_python(broker_factory):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    b = broker_factory(env={"MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "300"})
    topic = unique_topic("compactbg")
    create_topic(b.kafka, topic, 1, config=topic_config(delete_retention_ms=86_400_000))
    p = KafkaProducer(bootstrap_servers=b.kafka, linger_ms=5)
    items = workload()
    offsets = []
    for i, (k, v) in enumerate(items):
        offsets.append(p.send(topic, key=k, value=v, partition=0))
        if i % 20 == 19:
            p.flush(30)
    p.flush(30)
    offsets = [f.get(timeout=30).offset for f in offsets]
    p.close()
    expected = expected_view(items, offsets, tombstones_gone=False)
    # The background cleaner compacts it (no trigger).
    deadline = time.monotonic() + 60
    got = None
    for _ in range(300):
        c = KafkaConsumer(
            bootstrap_servers=b.kafka,
            enable_auto_commit=False,
            consumer_timeout_ms=3000,
            auto_offset_reset="earliest",
        )
        c.assign([KTP(topic, 0)])
        c.seek_to_beginning()
        got = []
        for m in c:
            got.append((m.offset, m.key, m.value))
            if m.offset >= len(items) - 1:
                break
        c.close()
        if {o: (k, v) for o, k, v in got} == expected:
            break
        assert time.monotonic() < deadline, f"not compacted in time: {len(got)} records"
        time.sleep(1)
    check_view(got, expected)
    # The cleaner keeps checking the partition, so it may be in a (quick) pass right now.
    status = compaction_status(b, topic)
    assert status["status"] in ("SUCCESS", "RUNNING") and status["lastError"] == "", status


def test_kill9_during_compaction_keeps_the_data(broker_factory):
    # A slow cleaner (I/O throttled) so the kill lands in the middle of a compaction.
    b = broker_factory(
        env={
            "MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000",
            "MAGNETAR_CLEANER__IO_MAX_BYTES_PER_SECOND": "300000",
        }
    )
    topic = unique_topic("compactkill")
    create_topic(b.kafka, topic, 1, config=topic_config(delete_retention_ms=86_400_000))
    items = []
    for i in range(12_000):
        items.append((b"k%02d" % (i % 40), f"v{i}-{VALUE_PAD}".encode()))
    for i in range(FILLER):
        items.append((b"filler-%04d" % i, f"f{i}".encode()))
    offsets = produce_keyed(b.kafka, topic, items)
    by_offset = {off: kv for kv, off in zip(items, offsets)}
    expected = expected_view(items, offsets, tombstones_gone=False)
    rng = random.Random(19)
    killed_running = 0
    for round_ in range(3):
        r = requests.put(admin_url(b, topic), timeout=10)
        assert r.status_code in (204, 409), r.text
        time.sleep(rng.uniform(0.1, 1.5))  # a random moment to kill at (the subject)
        killed_running += compaction_status(b, topic)["status"] == "RUNNING"
        b.kill9()
        b.restart(same_ports=True)
        got = consume_all(b.kafka, topic)
        offsets_got = [o for o, _, _ in got]
        assert offsets_got == sorted(set(offsets_got)), f"round {round_}: offsets not increasing"
        for o, k, v in got:
            assert by_offset[o] == (k, v), f"round {round_}: offset {o} holds another record"
        for o, kv in expected.items():
            assert (o, kv[0], kv[1]) in got, f"round {round_}: latest value at {o} lost"
    assert killed_running >= 1, "no kill landed during a compaction"
    # Finish it: the exact compacted view.
    b.restart(
        same_ports=True,
        env={"MAGNETAR_CLEANER__IO_MAX_BYTES_PER_SECOND": "0"},
    )
    compact_now(b, topic, timeout_s=120)
    check_view(consume_all(b.kafka, topic), expected)


def test_pulsar_read_compacted_consumer_and_reader(broker_factory):
    """Pulsar consumers with readCompacted=true and readers read the compacted log (it is the
    ledger itself); a Pulsar producer's non-batched keyed messages are compacted by their
    partition key too; the subscription's backlog drains past the gaps."""
    pulsar = pytest.importorskip("pulsar")
    b = broker_factory(env={"MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000"})
    topic = unique_topic("compactpulsar")
    create_topic(b.kafka, topic, 1, config=topic_config(delete_retention_ms=86_400_000))
    items = [(b"k%02d" % (i % 10), f"kafka-{i}".encode()) for i in range(400)]
    offsets = produce_keyed(b.kafka, topic, items)
    name = f"persistent://public/default/{topic}-partition-0"
    client = pulsar.Client(f"pulsar://{b.pulsar}", operation_timeout_seconds=15,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        prod = client.create_producer(name, batching_enabled=False)
        pulsar_items = [(f"p{i % 5}", f"pulsar-{i}".encode()) for i in range(200)]
        for k, v in pulsar_items:
            prod.send(v, partition_key=k)
        # Filler (unique keys, small batches) so the updates above end up in sealed segments.
        filler = [(b"filler-%04d" % i, b"f" * 100) for i in range(120)]
        produce_keyed(b.kafka, topic, filler)
        compact_now(b, topic)

        latest = {}
        for k, v in items:
            latest[k.decode()] = v
        for k, v in pulsar_items:
            latest[k] = v
        for k, v in filler:
            latest[k.decode()] = v

        def read_all(next_message):
            got = []
            for _ in range(5000):
                try:
                    m = next_message()
                except Exception:  # timeout: the end
                    break
                got.append(m)
            return got

        consumer = client.subscribe(name, "compacted", is_read_compacted=True,
                                    initial_position=pulsar.InitialPosition.Earliest)
        got = read_all(lambda: consumer.receive(timeout_millis=3000))
        for m in got:
            consumer.acknowledge(m)
        assert {m.partition_key(): m.data() for m in got} == latest
        assert len(got) == len(latest), "exactly one message per key"
        reader = client.create_reader(name, pulsar.MessageId.earliest, is_read_compacted=True)
        got = read_all(lambda: reader.read_next(3000))
        assert {m.partition_key(): m.data() for m in got} == latest
        assert len(got) == len(latest)
        # The backlog of the subscription drains (the gaps count as acknowledged).
        deadline = time.monotonic() + 20
        for _ in range(200):
            stats = requests.get(
                f"http://{b.http}/admin/v2/persistent/public/default/{topic}-partition-0/stats",
                timeout=10,
            ).json()
            backlog = stats["subscriptions"]["compacted"]["msgBacklog"]
            if backlog == 0:
                break
            assert time.monotonic() < deadline, f"backlog stays at {backlog}"
            time.sleep(0.2)
    finally:
        client.close()
    assert offsets[-1] == len(items) - 1


def test_transactional_topic_compaction_drops_aborted_values(broker_factory):
    """A compacted topic written transactionally (issue #18's compaction item): the cleaner
    drops the records of aborted transactions (an aborted value never becomes a key's latest),
    keeps the committed ones at their offsets, and touches nothing from the first record of a
    still-open transaction on (the last stable offset bounds it, as Kafka's cleaner)."""
    b = broker_factory(env={"MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000"})
    topic = unique_topic("compacttxn")
    create_topic(b.kafka, topic, 1, config=topic_config(delete_retention_ms=86_400_000))
    offsets: Dict[bytes, int] = {}

    def transaction(p, items, commit: Optional[bool]):
        p.begin_transaction()
        for k, v in items:
            def cb(err, msg, v=v):
                assert err is None, err
                offsets[v] = msg.offset()
            p.produce(topic, key=k, value=v, partition=0, on_delivery=cb)
        assert p.flush(30) == 0
        if commit is True:
            p.commit_transaction(30)
        elif commit is False:
            p.abort_transaction(30)

    committer = Producer({"bootstrap.servers": b.kafka, "transactional.id": "compact-c", "linger.ms": 5})
    committer.init_transactions(30)
    committed = [(b"k%02d" % i, b"committed-%02d" % i) for i in range(10)]
    transaction(committer, committed, True)
    aborted = [(b"k%02d" % i, b"aborted-%02d" % i) for i in range(10)] + [(b"only-aborted", b"aborted-x")]
    transaction(committer, aborted, False)
    # Filler between, so the transactions above are in sealed segments below the open one.
    produce_keyed(b.kafka, topic, [(b"filler-%04d" % i, b"f" * 100) for i in range(100)])
    holder = Producer({"bootstrap.servers": b.kafka, "transactional.id": "compact-open", "linger.ms": 5})
    holder.init_transactions(30)
    transaction(holder, [(b"k03", b"open-03")], None)
    produce_keyed(b.kafka, topic, [(b"filler-%04d" % i, b"g" * 100) for i in range(100, 200)])
    # read_uncommitted: what is stored, aborted and open data included.
    before = consume_all(b.kafka, topic, **{"isolation.level": "read_uncommitted"})
    assert any(v.startswith(b"aborted") for _, _, v in before), "stored before compaction"
    lso = offsets[b"open-03"]

    status = compact_now(b, topic)
    got = consume_all(b.kafka, topic, **{"isolation.level": "read_uncommitted"})
    values = {v for _, _, v in got}
    for k, v in committed:
        assert (offsets[v], k, v) in got, f"committed {k!r} kept at its offset"
    assert not any(v.startswith(b"aborted") for _, _, v in got if v is not None), "aborted values dropped"
    assert b"only-aborted" not in {k for _, k, _ in got}
    assert [m for m in before if m[0] >= lso] == [m for m in got if m[0] >= lso], \
        "nothing from the open transaction on changed"
    assert b"open-03" in values
    assert status["status"] == "SUCCESS"
    holder.abort_transaction(30)


def test_hundred_thousand_records_over_a_thousand_keys(broker_factory):
    """The issue's scale: 100,000 records over 1,000 keys (updates, then tombstones for 100 of
    them, then filler so they all sit in sealed segments), compacted: exactly the latest value of
    every live key at its original offset, offsets strictly increasing, the deleted keys gone once
    delete.retention.ms has passed, and the segment bytes before and after reported."""
    b = broker_factory(env={"MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000"})
    topic = unique_topic("compact100k")
    config = topic_config(delete_retention_ms=2000)
    config["segment.bytes"] = str(256 * 1024)
    create_topic(b.kafka, topic, 1, config=config)
    keys, records, deleted = 1000, 100_000, 100
    items: List[Tuple[bytes, Optional[bytes]]] = [
        (b"key-%04d" % (i % keys), b"v%06d" % i) for i in range(records - deleted - 2000)
    ]
    items += [(b"key-%04d" % k, None) for k in range(deleted)]
    # 2000 x ~230 bytes: more than a segment, so the updates and tombstones are all sealed.
    items += [(b"filler-%04d" % i, b"f%06d" % i + b"x" * 200) for i in range(2000)]
    assert len(items) == records
    offsets = produce_keyed(b.kafka, topic, items, flush_every=None,
                            **{"linger.ms": 20, "batch.size": 32768, "message.timeout.ms": 60000})
    assert offsets == list(range(records))
    before = segment_bytes(b.data_dir, topic)

    compact_now(b, topic, timeout_s=120)
    got = consume_all(b.kafka, topic)
    live = expected_view(items, offsets, tombstones_gone=True)
    assert {o: (k, v) for o, k, v in got if v is not None} == live
    assert [o for o, _, _ in got] == sorted({o for o, _, _ in got}), "offsets strictly increase"

    # Once delete.retention.ms has passed, a compaction removes the tombstones (bounded poll:
    # each attempt compacts again and looks for a deleted key).
    deadline = time.monotonic() + 60
    for _ in range(100):
        compact_now(b, topic, timeout_s=60)
        got = consume_all(b.kafka, topic)
        if not any(v is None for _, _, v in got):
            break
        assert time.monotonic() < deadline, "tombstones stay past delete.retention.ms"
        time.sleep(0.5)
    check_view(got, live)
    assert len(got) == keys - deleted + 2000
    after = segment_bytes(b.data_dir, topic)
    print(f"100k records over 1k keys: segment bytes before {before}, after {after}")
    assert after < before / 5, (before, after)


@pytest.mark.parametrize("compression", ["none", "lz4", "zlib"])
def test_batched_pulsar_entries_are_compacted(broker_factory, compression):
    """A Pulsar producer's batches (the default) in a compacted topic: compaction keeps every
    message's place in its batch and marks the older ones `compacted_out` (the batch compressed
    again with its codec), as Pulsar's compactor; a readCompacted consumer (C++ client: it learns
    them from the MESSAGE's ack_set), a reader and a Kafka consumer all read the latest value of
    each key at its message id / offset, and the subscription's backlog drains (the C++ client
    acknowledges a batch it got partly acknowledged only with batch-index acknowledgment on, as
    against Apache Pulsar)."""
    pulsar = pytest.importorskip("pulsar")
    b = broker_factory(env={"MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000"})
    topic = unique_topic("compactbatch")
    create_topic(b.kafka, topic, 1, config=topic_config(delete_retention_ms=86_400_000))
    name = f"persistent://public/default/{topic}-partition-0"
    codec = {"none": pulsar.CompressionType.NONE, "lz4": pulsar.CompressionType.LZ4,
             "zlib": pulsar.CompressionType.ZLib}[compression]
    client = pulsar.Client(f"pulsar://{b.pulsar}", operation_timeout_seconds=15,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        prod = client.create_producer(name, batching_enabled=True, batching_max_messages=40,
                                      batching_max_publish_delay_ms=20, compression_type=codec)
        sent = []
        for i in range(600):
            key, value = f"k{i % 13}", f"pulsar-{i}-".encode() + b"x" * 50
            prod.send_async(value, lambda res, mid: None, partition_key=key)
            sent.append((key, value))
        prod.flush()
        filler = [(b"filler-%04d" % i, b"f" * 100) for i in range(150)]
        produce_keyed(b.kafka, topic, filler)
        latest = {k: v for k, v in sent}
        latest.update({k.decode(): v for k, v in filler})
        before = consume_all(b.kafka, topic)
        assert len(before) == 750
        compact_now(b, topic)

        got = consume_all(b.kafka, topic)
        assert {k.decode(): v for _, k, v in got} == latest
        assert len(got) == len(latest), "one record per key"
        offsets = [o for o, _, _ in got]
        assert offsets == sorted(set(offsets))
        by_offset = {o: (k, v) for o, k, v in before}
        assert all(by_offset[o] == (k, v) for o, k, v in got), "offsets unchanged"

        consumer = client.subscribe(name, "compacted-batches", is_read_compacted=True,
                                    initial_position=pulsar.InitialPosition.Earliest,
                                    batch_index_ack_enabled=True)
        seen = []
        for _ in range(2000):
            try:
                m = consumer.receive(timeout_millis=3000)
            except Exception:  # timeout: the end
                break
            seen.append(m)
            consumer.acknowledge(m)
        assert {m.partition_key(): m.data() for m in seen} == latest
        assert len(seen) == len(latest), "compacted-out messages are not delivered"
        reader = client.create_reader(name, pulsar.MessageId.earliest, is_read_compacted=True)
        read = []
        for _ in range(2000):
            try:
                read.append(reader.read_next(3000))
            except Exception:  # timeout: the end
                break
        assert {m.partition_key(): m.data() for m in read} == latest
        assert len(read) == len(latest)
        deadline = time.monotonic() + 20
        for _ in range(200):
            stats = requests.get(f"http://{b.http}/admin/v2/persistent/public/default/{topic}-partition-0/stats",
                                 timeout=10).json()
            backlog = stats["subscriptions"]["compacted-batches"]["msgBacklog"]
            if backlog == 0:
                break
            assert time.monotonic() < deadline, f"backlog stays at {backlog}"
            time.sleep(0.2)
    finally:
        client.close()
