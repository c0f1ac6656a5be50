"""Kafka topic timestamp configs (issue #22): `message.timestamp.type` and the KIP-937 range
keys `message.timestamp.before.max.ms` / `after.max.ms` (with the deprecated
`message.timestamp.difference.max.ms` as their fallback), with confluent-kafka."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka.admin import ConfigResource, NewTopic, ResourceType

from kafka_util import (
    admin,
    consume,
    create_topic,
    producer_conf,
    raise_on_error,
    unique_topic,
)

pytestmark = pytest.mark.not_on("tansu", "timestamp topic configs not checked against tansu")

HOUR_MS = 3_600_000
OLD_TS_MS = 1_000_000  # 1970: far outside any bounded range


def produce_reports(bootstrap: str, topic: str, timestamps, timeout_s: float = 30.0):
    """Produces one record per timestamp (one batch each); returns the delivery reports as
    (error or None, (timestamp type, timestamp)) in order."""
    reports = []
    p = Producer(producer_conf(bootstrap, **{"linger.ms": 0, "retries": 0}))
    for i, ts in enumerate(timestamps):
        p.produce(
            topic,
            key=f"k{i}".encode(),
            value=f"v{i}".encode(),
            timestamp=ts,
            on_delivery=lambda err, msg: reports.append((err, msg.timestamp())),
        )
        p.flush(timeout_s)
    assert p.flush(timeout_s) == 0, "producer did not deliver within the bound"
    assert len(reports) == len(timestamps), reports
    return reports


def test_log_append_time_stamps_the_batch(bootstrap):
    name = unique_topic("lat")
    create_topic(bootstrap, name, 1, config={"message.timestamp.type": "LogAppendTime"})
    before_ms = int(time.time() * 1000)
    reports = produce_reports(bootstrap, name, [OLD_TS_MS, OLD_TS_MS + 1])
    for err, (ts_type, ts) in reports:
        assert err is None, err
        # the produce response carries log_append_time_ms: librdkafka reports it
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME, (ts_type, ts)
        assert ts >= before_ms - 60_000, (ts, before_ms)
    msgs = consume(bootstrap, name, 2)
    for m in msgs:
        ts_type, ts = m.timestamp()
        assert ts_type == TIMESTAMP_LOG_APPEND_TIME, (ts_type, ts)
        assert ts >= before_ms - 60_000, (ts, before_ms)
        assert ts != OLD_TS_MS


def test_create_time_is_kept_by_default(bootstrap):
    name = unique_topic("ct")
    create_topic(bootstrap, name, 1)
    reports = produce_reports(bootstrap, name, [OLD_TS_MS])
    assert reports[0][0] is None, reports
    (m,) = consume(bootstrap, name, 1)
    assert m.timestamp() == (TIMESTAMP_CREATE_TIME, OLD_TS_MS)


@pytest.mark.parametrize(
    "config",
    [
        {"message.timestamp.before.max.ms": str(HOUR_MS)},
        # KIP-937: the deprecated key applies when before/after are not set
        {"message.timestamp.difference.max.ms": str(HOUR_MS)},
    ],
    ids=["before.max.ms", "difference.max.ms"],
)
def test_timestamp_out_of_range_is_refused(bootstrap, config):
    name = unique_topic("tsr")
    create_topic(bootstrap, name, 1, config=config)
    now_ms = int(time.time() * 1000)
    reports = produce_reports(bootstrap, name, [OLD_TS_MS, now_ms])
    err, _ = reports[0]
    assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, reports
    assert reports[1][0] is None, reports
    # only the in-range record was stored
    (m,) = consume(bootstrap, name, 1)
    assert m.value() == b"v1"
    assert m.offset() == 0


def test_after_max_ms_refuses_the_future(bootstrap):
    name = unique_topic("tsa")
    create_topic(bootstrap, name, 1, config={"message.timestamp.after.max.ms": str(HOUR_MS)})
    future_ms = int(time.time() * 1000) + 10 * HOUR_MS
    reports = produce_reports(bootstrap, name, [future_ms])
    err, _ = reports[0]
    assert err is not None and err.code() == KafkaError.INVALID_TIMESTAMP, reports


def test_timestamp_configs_are_validated_and_described(bootstrap):
    a = admin(bootstrap)
    for key, bad in [
        ("message.timestamp.type", "WallClock"),
        ("message.timestamp.before.max.ms", "-5"),
        ("message.timestamp.after.max.ms", "soon"),
    ]:
        name = unique_topic("tsbad")
        futs = a.create_topics(
            [NewTopic(name, num_partitions=1, replication_factor=1, config={key: bad})],
            request_timeout=15,
        )
        with pytest.raises(KafkaException) as ei:
            futs[name].result(timeout=20)
        assert ei.value.args[0].code() == KafkaError.INVALID_CONFIG, (key, ei.value)

    name = unique_topic("tsd")
    create_topic(bootstrap, name, 1, config={"message.timestamp.type": "LogAppendTime"})
    res = ConfigResource(ResourceType.TOPIC, name)
    configs = raise_on_error(a.describe_configs([res], request_timeout=15)[res])
    assert configs["message.timestamp.type"].value == "LogAppendTime"
    assert not configs["message.timestamp.type"].is_default
    assert configs["message.timestamp.before.max.ms"].value == str(2**63 - 1)
    assert configs["message.timestamp.before.max.ms"].is_default
    assert "message.timestamp.after.max.ms" in configs
    assert "message.timestamp.difference.max.ms" in configs
