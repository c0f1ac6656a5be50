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


def produce_keyed(bootstrap: str, topic: str, items: List[Tuple[bytes, Optional[bytes]]], **conf) -> List[int]:
    """Produces (key, value) pairs in order (value None = tombstone); returns their offsets."""
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
        # Batches of at most 20 records, so no batch outgrows a segment and the filler after
        # the updates fills segments of its own (the active segment is never compacted).
        if i % 20 == 19:
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


def consume_all(bootstrap: str, topic: str, start: int = 0, timeout_s: float = 60.0) -> List[Tuple[int, bytes, Optional[bytes]]]:
    """Every message from `start` to the high watermark: (offset, key, value)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "compaction-test-unused",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
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
