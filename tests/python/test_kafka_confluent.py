"""Kafka data path and admin with confluent-kafka (librdkafka)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from kafka_util import (
    TS_BASE_MS,
    Rec,
    admin,
    assert_records_equal,
    consume,
    consumer_conf,
    create_topic,
    make_records,
    produce,
    producer_conf,
    raise_on_error,
    unique_topic,
    wait_topic,
    watermarks,
)

pytestmark = pytest.mark.timeout(120)

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


# ------------------------------------------------------------------------------------ produce


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_each_codec(bootstrap, codec):
    topic = unique_topic(f"codec-{codec}")
    recs = make_records(120, prefix=codec)
    # several batches: 40 records each (flush between), so offsets must continue across batches
    reports = produce(bootstrap, topic, recs, partition=0, flush_each=40, **{"compression.type": codec, "linger.ms": 50})
    assert reports == [(0, i) for i in range(120)]
    msgs = consume(bootstrap, topic, 120)
    assert_records_equal(msgs, recs)


@pytest.mark.not_on("tansu", "high watermark = last batch base offset + 1")
def test_high_watermark_after_several_batches(bootstrap):
    topic = unique_topic("hwm")
    produce(bootstrap, topic, make_records(120, prefix="hwm"), partition=0, flush_each=40)
    assert watermarks(bootstrap, topic) == (0, 120)
    produce(bootstrap, topic, make_records(1, prefix="hwm2"), partition=0)
    assert watermarks(bootstrap, topic) == (0, 121)


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_acks(bootstrap, acks):
    topic = unique_topic(f"acks-{acks}")
    create_topic(bootstrap, topic, 1)
    recs = make_records(30, prefix=f"acks{acks}")
    reports = produce(bootstrap, topic, recs, partition=0, flush_each=10, acks=acks)
    if acks == "0":
        # no response: librdkafka reports success with an unknown offset
        assert all(part == 0 for part, _ in reports)
        assert all(off is None or off < 0 for _, off in reports), reports
    else:
        assert reports == [(0, i) for i in range(30)]
    msgs = consume(bootstrap, topic, 30, timeout_s=30)
    assert_records_equal(msgs, recs)


def test_idempotent_producer(bootstrap):
    topic = unique_topic("idem")
    create_topic(bootstrap, topic, 3)
    recs = make_records(300, prefix="idem", with_headers=False)
    # partitions chosen explicitly so the expected offsets are exact
    fatal = []
    p = Producer(producer_conf(bootstrap, **{"enable.idempotence": True, "acks": "all", "linger.ms": 20,
                                             "error_cb": lambda e: fatal.append(e)}))
    reports = []
    for i, r in enumerate(recs):
        p.produce(topic, key=r.key, value=r.value, partition=i % 3, timestamp=r.timestamp_ms,
                  on_delivery=lambda err, msg: reports.append((err, msg.partition(), msg.offset())))
        if i % 50 == 49:
            assert p.flush(30) == 0
    assert p.flush(30) == 0
    assert not [e for e in fatal if e.fatal()], fatal
    assert [e for e, _, _ in reports if e is not None] == []
    for part in range(3):
        offs = [o for _, pp, o in reports if pp == part]
        assert offs == list(range(100)), f"partition {part}: offsets {offs[:10]}..."
        msgs = consume(bootstrap, topic, 100, partition=part, extra_wait_s=1.0)
        assert len(msgs) == 100, f"partition {part}: duplicates? got {len(msgs)}"
        assert_records_equal(msgs, recs[part::3], check_ts=True)


def test_large_message(bootstrap):
    topic = unique_topic("large")
    big = bytes(range(256)) * 2048  # 512 KiB
    recs = [Rec(b"k0", big, [], TS_BASE_MS), Rec(b"k1", b"small", [], TS_BASE_MS + 1)]
    assert produce(bootstrap, topic, recs, partition=0) == [(0, 0), (0, 1)]
    assert_records_equal(consume(bootstrap, topic, 2), recs)


def test_null_key_and_value(bootstrap):
    topic = unique_topic("nulls")
    recs = [Rec(None, b"v", [], TS_BASE_MS), Rec(b"k", None, [], TS_BASE_MS + 1), Rec(None, None, [], TS_BASE_MS + 2)]
    produce(bootstrap, topic, recs, partition=0)
    assert_records_equal(consume(bootstrap, topic, 3), recs)


# ------------------------------------------------------------------------------------ fetch


def test_fetch_from_middle_of_batch(bootstrap):
    topic = unique_topic("mid")
    recs = make_records(50, prefix="mid")
    produce(bootstrap, topic, recs, partition=0, flush_each=25)
    for start in (0, 1, 24, 25, 37, 49):
        msgs = consume(bootstrap, topic, 50 - start, offset=start)
        assert_records_equal(msgs, recs[start:], first_offset=start)


def test_fetch_waits_for_new_data(bootstrap):
    topic = unique_topic("longpoll")
    create_topic(bootstrap, topic, 1)
    c = Consumer(consumer_conf(bootstrap, **{"fetch.wait.max.ms": 500}))
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            assert m is None or m.error(), f"unexpected message on an empty topic: {m.value()!r}"
        produce(bootstrap, topic, [Rec(b"late", b"arrival", [], TS_BASE_MS)], partition=0)
        got = None
        deadline = time.monotonic() + 15
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and not m.error():
                got = m
        assert got is not None, "message produced after assign at END never arrived"
        assert (got.offset(), got.key(), got.value()) == (0, b"late", b"arrival")
    finally:
        c.close()


def test_multi_partition_round_trip(bootstrap):
    topic = unique_topic("multi")
    create_topic(bootstrap, topic, 4)
    per_part = {p: make_records(15, prefix=f"p{p}") for p in range(4)}
    for p, recs in per_part.items():
        assert produce(bootstrap, topic, recs, partition=p) == [(p, i) for i in range(15)]
    for p, recs in per_part.items():
        assert_records_equal(consume(bootstrap, topic, 15, partition=p), recs)


# ------------------------------------------------------------------------------------ list offsets


def _offsets_for_times(bootstrap, within_batch):
    topic = unique_topic("times")
    recs = make_records(10, prefix="ts")  # timestamps TS_BASE_MS + i*1000
    produce(bootstrap, topic, recs, partition=0, flush_each=3)  # batches [0-2] [3-5] [6-8] [9]
    c = Consumer(consumer_conf(bootstrap))
    try:
        if within_batch:
            # Kafka answers the first *record* whose timestamp >= the query, not its batch
            queries = {TS_BASE_MS + 1: 1, TS_BASE_MS + 1000: 1, TS_BASE_MS + 5500: 6,
                       TS_BASE_MS + 4000: 4, TS_BASE_MS + 8000: 8}
        else:
            queries = {
                TS_BASE_MS - 5000: 0,  # before everything -> first offset
                TS_BASE_MS: 0,
                TS_BASE_MS + 3000: 3,
                TS_BASE_MS + 6000: 6,
                TS_BASE_MS + 9000: 9,
            }
        for ts, expected in queries.items():
            res = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert res[0].error is None, res[0].error
            assert res[0].offset == expected, f"timestamp {ts - TS_BASE_MS:+}: offset {res[0].offset} != {expected}"
        res = c.offsets_for_times([TopicPartition(topic, 0, TS_BASE_MS + 60_000)], timeout=10)
        # past the last timestamp: Kafka answers offset -1 (librdkafka shows OFFSET_END)
        assert res[0].offset == OFFSET_END, res[0].offset
    finally:
        c.close()


@pytest.mark.not_on("tansu", "ListOffsets by timestamp answers offset 0 for every timestamp")
def test_offsets_for_times_batch_boundaries(bootstrap):
    _offsets_for_times(bootstrap, within_batch=False)


@pytest.mark.not_on("tansu", "ListOffsets by timestamp answers offset 0 for every timestamp")
def test_offsets_for_times_within_batch(bootstrap):
    _offsets_for_times(bootstrap, within_batch=True)


def test_list_offsets_earliest_latest(bootstrap):
    topic = unique_topic("lo")
    create_topic(bootstrap, topic, 1)
    assert watermarks(bootstrap, topic) == (0, 0)
    produce(bootstrap, topic, make_records(10, prefix="lo"), partition=0, flush_each=3)
    assert watermarks(bootstrap, topic) == (0, 10)


# ------------------------------------------------------------------------------------ admin


def test_metadata_lists_topics_and_broker(bootstrap):
    t1, t2 = unique_topic("md1"), unique_topic("md2")
    create_topic(bootstrap, t1, 1)
    create_topic(bootstrap, t2, 3)
    md = admin(bootstrap).list_topics(timeout=10)
    assert len(md.brokers) == 1, md.brokers
    (b,) = md.brokers.values()
    assert f"{b.host}:{b.port}" == bootstrap, f"advertised {b.host}:{b.port} != {bootstrap}"
    assert md.controller_id == b.id
    assert t1 in md.topics and t2 in md.topics
    assert sorted(md.topics[t1].partitions) == [0]
    assert sorted(md.topics[t2].partitions) == [0, 1, 2]
    for p in md.topics[t2].partitions.values():
        assert p.leader == b.id
        assert list(p.replicas) == [b.id] and list(p.isrs) == [b.id]


def test_describe_cluster(bootstrap):
    a = admin(bootstrap)  # keep a reference: a destroyed handle fails its futures (_DESTROY)
    res = a.describe_cluster(request_timeout=10).result(timeout=15)
    assert len(res.nodes) == 1
    assert f"{res.nodes[0].host}:{res.nodes[0].port}" == bootstrap
    assert res.controller is not None and res.controller.id == res.nodes[0].id
    assert res.cluster_id


def test_create_describe_delete_topic(bootstrap):
    a = admin(bootstrap)
    name = unique_topic("adm")
    futs = a.create_topics([NewTopic(name, num_partitions=2, replication_factor=1,
                                     config={"retention.ms": "3600000"})], request_timeout=15)
    raise_on_error(futs[name])
    wait_topic(bootstrap, name, 2)

    # creating it again fails with TOPIC_ALREADY_EXISTS
    futs = a.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        futs[name].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, ei.value.args[0]

    res = ConfigResource(ResourceType.TOPIC, name)
    configs = raise_on_error(a.describe_configs([res], request_timeout=15)[res])
    assert "retention.ms" in configs, sorted(configs)
    assert configs["retention.ms"].value == "3600000"

    futs = a.delete_topics([name], request_timeout=15)
    raise_on_error(futs[name])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if name not in a.list_topics(timeout=10).topics:
            break
        time.sleep(0.2)
    assert name not in a.list_topics(timeout=10).topics

    # deleting a missing topic fails with UNKNOWN_TOPIC_OR_PART
    futs = a.delete_topics([name], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        futs[name].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, ei.value.args[0]


def test_incremental_alter_configs(bootstrap):
    a = admin(bootstrap)
    name = unique_topic("iac")
    create_topic(bootstrap, name, 1)
    res = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[ConfigEntry("retention.ms", "123456", incremental_operation=AlterConfigOpType.SET)],
    )
    raise_on_error(a.incremental_alter_configs([res], request_timeout=15)[res])
    d = ConfigResource(ResourceType.TOPIC, name)
    configs = raise_on_error(a.describe_configs([d], request_timeout=15)[d])
    assert configs["retention.ms"].value == "123456"

    # DELETE restores the default
    res = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)],
    )
    raise_on_error(a.incremental_alter_configs([res], request_timeout=15)[res])
    configs = raise_on_error(a.describe_configs([d], request_timeout=15)[d])
    # Kafka lists the default again; brokers that list only set keys drop it
    assert "retention.ms" not in configs or configs["retention.ms"].value != "123456"


@pytest.mark.not_on("tansu", "describe_configs returns only the configs that were set")
def test_describe_configs_reports_defaults(bootstrap):
    a = admin(bootstrap)
    name = unique_topic("dflt")
    create_topic(bootstrap, name, 1, config={"retention.ms": "3600000"})
    d = ConfigResource(ResourceType.TOPIC, name)
    configs = raise_on_error(a.describe_configs([d], request_timeout=15)[d])
    assert "cleanup.policy" in configs, sorted(configs)
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].is_default
    assert configs["retention.ms"].value == "3600000"
    assert not configs["retention.ms"].is_default
    assert "max.message.bytes" in configs, sorted(configs)


@pytest.mark.not_on("tansu", "AlterConfigs (api 33) not implemented")
@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_alter_configs_legacy(bootstrap):
    a = admin(bootstrap)
    name = unique_topic("ac")
    create_topic(bootstrap, name, 1)
    res = ConfigResource(ResourceType.TOPIC, name, set_config={"retention.ms": "7654321"})
    raise_on_error(a.alter_configs([res], request_timeout=15)[res])
    d = ConfigResource(ResourceType.TOPIC, name)
    configs = raise_on_error(a.describe_configs([d], request_timeout=15)[d])
    assert configs["retention.ms"].value == "7654321"


@pytest.mark.not_on("tansu", "accepts unknown topic configs")
def test_unknown_config_rejected(bootstrap):
    a = admin(bootstrap)
    name = unique_topic("badcfg")
    futs = a.create_topics([NewTopic(name, 1, 1, config={"no.such.config": "1"})], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        futs[name].result(timeout=20)
    assert ei.value.args[0].code() in (KafkaError.INVALID_CONFIG, KafkaError.INVALID_REQUEST), ei.value.args[0]


@pytest.mark.not_on("tansu", "CreatePartitions (api 37) not advertised")
def test_create_partitions(bootstrap):
    a = admin(bootstrap)
    name = unique_topic("cp")
    create_topic(bootstrap, name, 2)
    produce(bootstrap, name, make_records(5, "before"), partition=1)
    raise_on_error(a.create_partitions([NewPartitions(name, 5)], request_timeout=15)[name])
    wait_topic(bootstrap, name, 5)
    # old data stays, new partitions are empty and writable
    assert watermarks(bootstrap, name, 1) == (0, 5)
    recs = make_records(3, "after")
    assert produce(bootstrap, name, recs, partition=4) == [(4, 0), (4, 1), (4, 2)]
    assert_records_equal(consume(bootstrap, name, 3, partition=4), recs)
    # shrinking fails with INVALID_PARTITIONS
    with pytest.raises(KafkaException) as ei:
        a.create_partitions([NewPartitions(name, 3)], request_timeout=15)[name].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.INVALID_PARTITIONS, ei.value.args[0]


def test_replica_assignments_must_name_this_broker(bootstrap):
    """Explicit assignments are checked as Kafka checks them: an unknown broker is refused with
    INVALID_REPLICA_ASSIGNMENT (not silently ignored), this broker's own id is accepted."""
    a = admin(bootstrap)
    name = unique_topic("ra")
    create_topic(bootstrap, name, 1)
    with pytest.raises(KafkaException) as ei:
        a.create_partitions(
            [NewPartitions(name, 2, replica_assignment=[[7]])], request_timeout=15
        )[name].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, ei.value.args[0]
    assert "broker 7" in ei.value.args[0].str()
    with pytest.raises(KafkaException) as ei:
        a.create_partitions(
            [NewPartitions(name, 3, replica_assignment=[[0]])], request_timeout=15
        )[name].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, ei.value.args[0]
    wait_topic(bootstrap, name, 1)
    raise_on_error(
        a.create_partitions([NewPartitions(name, 2, replica_assignment=[[0]])], request_timeout=15)[
            name
        ]
    )
    wait_topic(bootstrap, name, 2)

    other = unique_topic("ra")
    with pytest.raises(KafkaException) as ei:
        a.create_topics([NewTopic(other, num_partitions=2, replica_assignment=[[0], [3]])], request_timeout=15)[
            other
        ].result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT, ei.value.args[0]
    raise_on_error(
        a.create_topics([NewTopic(other, num_partitions=2, replica_assignment=[[0], [0]])], request_timeout=15)[other]
    )
    wait_topic(bootstrap, other, 2)


@pytest.mark.not_on("tansu", "DeleteRecords drops the connection (Local: Broker transport failure)")
def test_delete_records_moves_low_watermark(bootstrap):
    a = admin(bootstrap)
    name = unique_topic("dr")
    recs = make_records(20, "dr")
    produce(bootstrap, name, recs, partition=0, flush_each=5)
    futs = a.delete_records([TopicPartition(name, 0, 12)], request_timeout=15)
    (fut,) = futs.values()
    deleted = raise_on_error(fut)
    assert deleted.low_watermark == 12
    assert watermarks(bootstrap, name) == (12, 20)
    # reading from the beginning now starts at 12
    assert_records_equal(consume(bootstrap, name, 8), recs[12:], first_offset=12)


# ------------------------------------------------------------------------------------ names


@pytest.mark.magnetar_only("KoP topic name mapping")
def test_topic_name_forms_share_data(bootstrap):
    base = unique_topic("names")
    forms = [base, f"public/default/{base}", f"persistent://public/default/{base}"]
    recs = [Rec(f"k{i}".encode(), f"via {f}".encode(), [], TS_BASE_MS + i) for i, f in enumerate(forms)]
    offsets = []
    for f, r in zip(forms, recs):
        offsets += produce(bootstrap, f, [r], partition=0)
    assert offsets == [(0, 0), (0, 1), (0, 2)]
    for f in forms:
        assert_records_equal(consume(bootstrap, f, 3), recs)
        assert watermarks(bootstrap, f) == (0, 3)


@pytest.mark.magnetar_only("Pulsar tenants/namespaces")
def test_unknown_namespace_fails_clearly(bootstrap):
    name = f"nosuchtenant/ns/{unique_topic('x')}"
    ok_errors = (
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    )
    p = Producer(producer_conf(bootstrap, **{"topic.metadata.propagation.max.ms": 3000,
                                             "message.timeout.ms": 15000}))
    md = p.list_topics(topic=name, timeout=10)
    t = md.topics.get(name)
    assert t is not None and t.error is not None, f"metadata for {name}: {t!r}"
    assert t.error.code() in ok_errors, t.error
    errs = []
    p.produce(name, value=b"v", partition=0, on_delivery=lambda err, msg: errs.append(err))
    assert p.flush(20) == 0
    assert len(errs) == 1 and errs[0] is not None, errs
    assert errs[0].code() in ok_errors, f"delivery error {errs[0]!r}"

    a = admin(bootstrap)
    futs = a.create_topics([NewTopic(name, 1, 1)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        futs[name].result(timeout=20)
    assert ei.value.args[0].code() != KafkaError.NO_ERROR


# ------------------------------------------------------------------------------------ restart


@pytest.mark.binary
def test_data_survives_restart(broker):
    topic = unique_topic("restart")
    create_topic(broker.kafka, topic, 2)
    recs = {p: make_records(25, prefix=f"r{p}") for p in range(2)}
    for p in range(2):
        produce(broker.kafka, topic, recs[p], partition=p, flush_each=7, **{"compression.type": "lz4"})
    broker.restart()
    md = wait_topic(broker.kafka, topic, 2)
    assert topic in md.topics
    for p in range(2):
        assert watermarks(broker.kafka, topic, p) == (0, 25)
        assert_records_equal(consume(broker.kafka, topic, 25, partition=p), recs[p])
    # offsets continue after the restart
    more = make_records(5, prefix="after")
    assert produce(broker.kafka, topic, more, partition=0) == [(0, 25 + i) for i in range(5)]
    assert_records_equal(consume(broker.kafka, topic, 5, partition=0, offset=25), more, first_offset=25)


@pytest.mark.binary
def test_acked_data_survives_kill9(broker_factory):
    b = broker_factory(env={"MAGNETAR_STORAGE__FSYNC": "always"})
    topic = unique_topic("kill9")
    recs = make_records(40, prefix="k9")
    assert produce(b.kafka, topic, recs, partition=0, flush_each=10, acks="all") == [(0, i) for i in range(40)]
    b.kill9()
    b.start()
    assert watermarks(b.kafka, topic) == (0, 40)
    assert_records_equal(consume(b.kafka, topic, 40), recs)


@pytest.mark.binary
def test_auto_create_disabled(broker_factory):
    b = broker_factory(env={"MAGNETAR_KAFKA__ALLOW_AUTO_TOPIC_CREATION": "false"})
    name = unique_topic("noauto")
    p = Producer(producer_conf(b.kafka, **{"topic.metadata.propagation.max.ms": 3000,
                                           "message.timeout.ms": 15000}))
    errs = []
    p.produce(name, value=b"v", on_delivery=lambda err, msg: errs.append(err))
    assert p.flush(20) == 0
    assert len(errs) == 1 and errs[0] is not None, errs
    assert errs[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC), errs[0]
    assert name not in admin(b.kafka).list_topics(timeout=10).topics
    # explicit creation still works
    create_topic(b.kafka, name, 1)
    assert produce(b.kafka, name, make_records(1), partition=0) == [(0, 0)]


@pytest.mark.binary
def test_default_num_partitions(broker_factory):
    b = broker_factory(env={"MAGNETAR_KAFKA__DEFAULT_NUM_PARTITIONS": "3"})
    name = unique_topic("auto3")
    produce(b.kafka, name, make_records(1), partition=0)
    md = wait_topic(b.kafka, name, 3)
    assert sorted(md.topics[name].partitions) == [0, 1, 2]


def test_auto_create_on_produce(bootstrap):
    name = unique_topic("auto")
    assert produce(bootstrap, name, make_records(2), partition=0) == [(0, 0), (0, 1)]
    md = admin(bootstrap).list_topics(timeout=10)
    assert name in md.topics
    assert len(md.topics[name].partitions) >= 1
