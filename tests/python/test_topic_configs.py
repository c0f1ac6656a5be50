"""Every Kafka 4.x topic config (issue #20, item 1): CreateTopics, AlterConfigs and
IncrementalAlterConfigs accept them with Kafka's types and ranges (unknown keys and bad values
refused with INVALID_CONFIG naming the key), DescribeConfigs shows them with their source (the
documentation flag, which confluent-kafka cannot ask for, is tested in-process); the broker
resource shows the usual keys. With confluent-kafka's AdminClient and kafka-python's
KafkaAdminClient."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

from kafka_util import (
    admin,
    assert_records_equal,
    consume,
    create_topic,
    make_records,
    produce,
    raise_on_error,
    unique_topic,
)

pytestmark = pytest.mark.not_on("tansu", "topic config validation not checked against tansu")

# The keys tools were refused with before.
FIVE = {
    "compression.type": "zstd",
    "message.timestamp.type": "LogAppendTime",
    "delete.retention.ms": "3600000",
    "file.delete.delay.ms": "30000",
    "max.compaction.lag.ms": "7200000",
}


def describe(a, name, **kw):
    res = ConfigResource(ResourceType.TOPIC, name)
    return raise_on_error(a.describe_configs([res], request_timeout=15, **kw)[res])


def refused(fut):
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=20)
    return ei.value.args[0]


def test_create_with_kafka_keys_and_describe_with_sources(bootstrap):
    a = admin(bootstrap)
    name = unique_topic("cfg5")
    create_topic(bootstrap, name, 1, config=FIVE)
    configs = describe(a, name)
    for key, value in FIVE.items():
        assert configs[key].value == value, (key, configs[key])
        assert configs[key].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, key
        assert not configs[key].is_default
        assert not configs[key].is_read_only
        assert not configs[key].is_sensitive
    # Keys not set: listed with Kafka's defaults and source DEFAULT_CONFIG.
    for key, value in {
        "min.insync.replicas": "1",
        "unclean.leader.election.enable": "false",
        "segment.ms": "604800000",
        "min.cleanable.dirty.ratio": "0.5",
        "compression.zstd.level": "3",
        "local.retention.ms": "-2",
    }.items():
        assert configs[key].value == value, (key, configs[key])
        assert configs[key].source == ConfigSource.DEFAULT_CONFIG.value, key


def test_bad_values_and_unknown_keys_refused(bootstrap):
    a = admin(bootstrap)
    for key, value in [
        ("compression.type", "brotli"),
        ("min.insync.replicas", "0"),
        ("min.cleanable.dirty.ratio", "2"),
        ("unclean.leader.election.enable", "maybe"),
        ("no.such.config", "1"),
    ]:
        name = unique_topic("cfgbad")
        futs = a.create_topics([NewTopic(name, 1, 1, config={key: value})], request_timeout=15)
        err = refused(futs[name])
        assert err.code() == KafkaError.INVALID_CONFIG, (key, err)
        assert key in err.str(), (key, err.str())


def test_incremental_and_legacy_alter(bootstrap):
    a = admin(bootstrap)
    name = unique_topic("cfgalt")
    create_topic(bootstrap, name, 1)
    res = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry("compression.type", "gzip", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("min.insync.replicas", "2", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
        ],
    )
    raise_on_error(a.incremental_alter_configs([res], request_timeout=15)[res])
    configs = describe(a, name)
    assert configs["compression.type"].value == "gzip"
    assert configs["min.insync.replicas"].value == "2"
    assert sorted(configs["cleanup.policy"].value.split(",")) == ["compact", "delete"]

    # A bad value refuses the whole resource: nothing of it is stored.
    bad = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry("segment.ms", "1000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("compression.lz4.level", "99", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    err = refused(a.incremental_alter_configs([bad], request_timeout=15)[bad])
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert "compression.lz4.level" in err.str()
    assert describe(a, name)["segment.ms"].value == "604800000"

    unknown = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)],
    )
    err = refused(a.incremental_alter_configs([unknown], request_timeout=15)[unknown])
    assert err.code() == KafkaError.INVALID_CONFIG, err


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")
def test_legacy_alter_configs_replaces_the_set(bootstrap):
    a = admin(bootstrap)
    name = unique_topic("cfgleg")
    create_topic(bootstrap, name, 1, config={"delete.retention.ms": "1000"})
    res = ConfigResource(ResourceType.TOPIC, name, set_config={"file.delete.delay.ms": "5", "preallocate": "true"})
    raise_on_error(a.alter_configs([res], request_timeout=15)[res])
    configs = describe(a, name)
    assert configs["file.delete.delay.ms"].value == "5"
    assert configs["preallocate"].value == "true"
    # AlterConfigs replaces the whole set: the key set before is back to its default.
    assert configs["delete.retention.ms"].value == "86400000"
    assert configs["delete.retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    bad = ConfigResource(ResourceType.TOPIC, name, set_config={"segment.index.bytes": "2"})
    err = refused(a.alter_configs([bad], request_timeout=15)[bad])
    assert err.code() == KafkaError.INVALID_CONFIG, err


def test_configs_survive_restart(broker_factory):
    b = broker_factory()
    name = unique_topic("cfgrs")
    create_topic(b.kafka, name, 1, config=FIVE)
    b.restart()
    configs = describe(admin(b.kafka), name)
    for key, value in FIVE.items():
        assert configs[key].value == value, key


def test_broker_resource_keys(bootstrap):
    a = admin(bootstrap)
    res = ConfigResource(ResourceType.BROKER, "0")
    configs = raise_on_error(a.describe_configs([res], request_timeout=15)[res])
    for key in (
        "advertised.listeners",
        "listeners",
        "log.dirs",
        "num.partitions",
        "auto.create.topics.enable",
        "message.max.bytes",
        "default.replication.factor",
    ):
        assert key in configs, (key, sorted(configs))
        assert configs[key].is_read_only
        assert configs[key].source == ConfigSource.STATIC_BROKER_CONFIG.value
    host, port = bootstrap.rsplit(":", 1)
    assert f"://{host}:{port}" in configs["advertised.listeners"].value, configs["advertised.listeners"].value
    assert configs["listeners"].value.startswith("PLAINTEXT://"), configs["listeners"].value
    assert configs["log.dirs"].value


def test_kafka_python_admin(bootstrap):
    kafka = pytest.importorskip("kafka")
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType
    from kafka.errors import InvalidConfigurationError

    a = kafka.KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        name = unique_topic("cfgkp")
        a.create_topics({name: {"num_partitions": 1, "replication_factor": 1, "configs": FIVE}})
        resp = a.describe_configs([KpResource(ConfigResourceType.TOPIC, name)])
        text = repr(resp)
        for key, value in FIVE.items():
            assert key in text and value in text, (key, text)
        bad = unique_topic("cfgkpbad")
        with pytest.raises(InvalidConfigurationError):
            a.create_topics({bad: {"num_partitions": 1, "replication_factor": 1,
                                   "configs": {"compression.type": "brotli"}}})
    finally:
        a.close()


@pytest.mark.parametrize("topic_codec", ["gzip", "snappy", "lz4", "zstd", "uncompressed"])
@pytest.mark.parametrize("producer_codec", ["none", "lz4"])
def test_compression_type_recompresses_and_clients_read_it(bootstrap, topic_codec, producer_codec):
    """A codec in compression.type re-compresses produced batches (unit-tested in batch.rs);
    here both clients read what was re-compressed, offsets and records intact."""
    name = unique_topic("cmp")
    create_topic(bootstrap, name, 1, config={"compression.type": topic_codec})
    records = make_records(30)
    offsets = produce(bootstrap, name, records, **{"compression.type": producer_codec, "linger.ms": 50})
    assert [o for _, o in offsets] == list(range(30))
    assert_records_equal(consume(bootstrap, name, 30), records)
    kafka = pytest.importorskip("kafka")
    c = kafka.KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                            consumer_timeout_ms=10000, enable_auto_commit=False)
    try:
        c.assign([kafka.TopicPartition(name, 0)])
        got = []
        for m in c:
            got.append(m.value)
            if len(got) == 30:
                break
    finally:
        c.close()
    assert got == [r.value for r in records]
