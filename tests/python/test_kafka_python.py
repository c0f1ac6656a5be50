"""Kafka data path and admin with kafka-python (pure Python client, own protocol code)."""

from __future__ import annotations

import time

import pytest

kafka = pytest.importorskip("kafka")
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka import codec as kcodec  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError  # noqa: E402

from kafka_util import TS_BASE_MS, unique_topic  # noqa: E402

pytestmark = pytest.mark.timeout(120)

CODEC_AVAILABLE = {
    None: True,
    "gzip": kcodec.has_gzip(),
    "snappy": kcodec.has_snappy(),
    "lz4": kcodec.has_lz4(),
    "zstd": kcodec.has_zstd(),
}


def producer(bootstrap, **kw):
    return KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=15000, max_block_ms=15000,
                         linger_ms=5, **kw)


def consumer(bootstrap, **kw):
    # group_id=None: no coordinator, no commits; partitions assigned by hand
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         request_timeout_ms=15000, fetch_max_wait_ms=200, **kw)


def read_exactly(c, count, timeout_s=30.0):
    out = []
    deadline = time.monotonic() + timeout_s
    for _ in range(10_000):
        if len(out) >= count or time.monotonic() > deadline:
            break
        for recs in c.poll(timeout_ms=200, max_records=500).values():
            out.extend(recs)
    assert len(out) >= count, f"read {len(out)} of {count} within {timeout_s}s"
    return out


def admin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume(bootstrap, flavor, codec):
    if not CODEC_AVAILABLE[codec]:
        pytest.skip(f"kafka-python has no {codec} library installed")
    topic = unique_topic(f"kp-{codec or 'none'}")
    p = producer(bootstrap, compression_type=codec, acks="all")
    try:
        futs = [
            p.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode() * (i % 7 + 1), partition=0,
                   headers=[("idx", str(i).encode())], timestamp_ms=TS_BASE_MS + i)
            for i in range(60)
        ]
        p.flush(timeout=30)
        mds = [f.get(timeout=30) for f in futs]
    finally:
        p.close(timeout=10)
    assert [(m.partition, m.offset) for m in mds] == [(0, i) for i in range(60)]

    c = consumer(bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        recs = read_exactly(c, 60)
        assert [r.offset for r in recs] == list(range(60))
        for i, r in enumerate(recs):
            assert r.key == f"k{i}".encode()
            assert r.value == f"v{i}".encode() * (i % 7 + 1)
            assert list(r.headers) == [("idx", str(i).encode())]
            assert r.timestamp == TS_BASE_MS + i
            assert r.timestamp_type == 0  # CreateTime
        if flavor != "tansu":  # tansu: high watermark = last batch base offset + 1
            assert c.end_offsets([tp]) == {tp: 60}
        assert c.beginning_offsets([tp]) == {tp: 0}
        # seek into the middle
        c.seek(tp, 42)
        recs = read_exactly(c, 18)
        assert [r.offset for r in recs] == list(range(42, 60))
    finally:
        c.close()


def test_offsets_for_times(bootstrap, flavor):
    if flavor == "tansu":
        pytest.skip("tansu answers offset 0 for every timestamp")
    topic = unique_topic("kp-times")
    p = producer(bootstrap)
    try:
        for i in range(10):
            p.send(topic, value=b"x", partition=0, timestamp_ms=TS_BASE_MS + 1000 * i)
        p.flush(timeout=30)
    finally:
        p.close(timeout=10)
    c = consumer(bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        res = c.offsets_for_times({tp: TS_BASE_MS + 4500})
        assert res[tp] is not None and res[tp].offset == 5 and res[tp].timestamp == TS_BASE_MS + 5000
        res = c.offsets_for_times({tp: TS_BASE_MS + 99_000})
        assert res[tp] is None
    finally:
        c.close()


def test_admin_create_list_delete(bootstrap):
    a = admin(bootstrap)
    try:
        name = unique_topic("kp-admin")
        a.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)], timeout_ms=15000)
        assert name in a.list_topics()
        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)], timeout_ms=15000,
                            raise_errors=True)
        (desc,) = a.describe_topics([name])
        assert desc["name"] == name and desc["error_code"] == 0
        assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1, 2]
        assert all(p["error_code"] == 0 and p["leader_id"] >= 0 for p in desc["partitions"])
        a.delete_topics([name], timeout_ms=15000)
        deadline = time.monotonic() + 15
        while name in a.list_topics() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert name not in a.list_topics()
        with pytest.raises(UnknownTopicOrPartitionError):
            a.delete_topics([name], timeout_ms=15000, raise_errors=True)
    finally:
        a.close()


def test_api_version_detected(bootstrap):
    """kafka-python probes ApiVersions; it must settle on a modern protocol level."""
    p = producer(bootstrap)
    try:
        assert p.config["api_version"] >= (2, 1), p.config["api_version"]
    finally:
        p.close(timeout=10)
