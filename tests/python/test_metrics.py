"""`GET /metrics` after a known workload, parsed with prometheus-client's parsers.

A Kafka producer (confluent-kafka) sends K messages to a 2-partition topic, a consumer reads them
back, a Pulsar producer (pulsar-client) sends P messages, raw requests provoke counted errors,
and two consumer groups commit known offsets. The scrape must report exactly what was sent: the
messages in and out per topic, bytes out equal to bytes in (Kafka batches are served as
stored), request counts per API, errors by code, active connections, fsync latency, group lag.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
import uuid
from pathlib import Path

import pytest
import requests

from kafka_util import consume, create_topic, produce, make_records

prometheus_parser = pytest.importorskip("prometheus_client.parser")
openmetrics_parser = pytest.importorskip("prometheus_client.openmetrics.parser")
confluent_kafka = pytest.importorskip("confluent_kafka")
pulsar = pytest.importorskip("pulsar")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("metrics endpoint"), pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]
K = 40  # Kafka messages
P = 7  # Pulsar messages


def scrape(broker, openmetrics=False):
    """Samples of one scrape: {(name, frozenset(labels)): value}, and the families by name."""
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if openmetrics else {}
    r = requests.get(f"http://{broker.http}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    if openmetrics:
        assert r.headers["content-type"].startswith("application/openmetrics-text")
        families = list(openmetrics_parser.text_string_to_metric_families(r.text))
    else:
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = list(prometheus_parser.text_string_to_metric_families(r.text))
    samples = {}
    for f in families:
        for s in f.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = s.value
    return samples, {f.name: f for f in families}


def value(samples, name, **labels):
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no series {name}{labels}; have: " + ", ".join(
        sorted({n for n, _ in samples if n.startswith(name.rsplit('_', 1)[0])})
    )
    return samples[key]


def value_or_zero(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def raw_request(addr, api_key, version, body=b"", flexible_header=False):
    """One request on its own connection; returns the response body after the correlation id."""
    host, port = addr.rsplit(":", 1)
    client_id = b"metrics-test"
    header = struct.pack(">hhih", api_key, version, 7, len(client_id)) + client_id
    if flexible_header:
        header += b"\x00"
    frame = header + body
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        buf = b""
        for _ in range(1000):
            if len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">i", buf[:4])[0]:
                break
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf[8:]


def wait_for(predicate, what, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    for _ in range(1000):
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_metrics_match_a_known_workload(broker):
    kafka_topic = f"metrics-{uuid.uuid4().hex[:8]}"
    pulsar_topic = f"metrics-pulsar-{uuid.uuid4().hex[:8]}"
    create_topic(broker.kafka, kafka_topic, partitions=2)

    # --- Kafka: K messages to two partitions, then read back once each ---
    parts = [make_records(K // 2 + 3, prefix="metric-a"), make_records(K // 2 - 3, prefix="metric-b")]
    for p, recs in enumerate(parts):
        produce(broker.kafka, kafka_topic, recs, partition=p, flush_each=4)
    records = parts[0] + parts[1]
    per_partition = [len(recs) for recs in parts]
    for p in (0, 1):
        consume(broker.kafka, kafka_topic, per_partition[p], partition=p)

    # --- Pulsar: P messages, one SEND each (batching off) ---
    client = pulsar.Client(f"pulsar://{broker.pulsar}", operation_timeout_seconds=15,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        producer = client.create_producer(f"persistent://public/default/{pulsar_topic}",
                                          batching_enabled=False)
        for i in range(P):
            producer.send(f"pulsar-{i}".encode())
        producer.close()
    finally:
        client.close()

    # --- consumer groups with known committed offsets (simple commits, no membership) ---
    def commit(group, offsets):
        c = confluent_kafka.Consumer({"bootstrap.servers": broker.kafka, "group.id": group,
                                      "enable.auto.commit": False})
        try:
            c.commit(offsets=[confluent_kafka.TopicPartition(kafka_topic, p, o) for p, o in offsets],
                     asynchronous=False)
        finally:
            c.close()

    commit("metrics-caught-up", [(0, per_partition[0]), (1, per_partition[1])])
    commit("metrics-behind", [(0, 5), (1, per_partition[1])])

    # --- errors: an unknown ApiVersions version (35) and a Metadata request for an invalid
    # topic name (17); and exactly three more ApiVersions requests ---
    before, _ = scrape(broker)
    api_versions_before = value(before, "magnetar_server_requests_total", protocol="kafka", api="ApiVersions")
    body = raw_request(broker.kafka, 18, 127, flexible_header=True)
    assert struct.unpack(">h", body[:2])[0] == 35
    for _ in range(3):
        assert struct.unpack(">h", raw_request(broker.kafka, 18, 0)[:2])[0] == 0
    bad = "bad topic name!"
    # Metadata v1: topics array of one string, then (v4+ only) allow_auto_topic_creation.
    md = raw_request(broker.kafka, 3, 1, struct.pack(">ih", 1, len(bad)) + bad.encode())
    assert md, "metadata answered"

    # --- an open connection is counted while open ---
    host, port = broker.kafka.rsplit(":", 1)

    def with_connection():
        got = scrape(broker)
        return got if value_or_zero(got[0], "magnetar_server_connections_active", protocol="kafka") >= 1 else None

    idle = socket.create_connection((host, int(port)), timeout=10)
    try:
        samples, families = wait_for(with_connection, "an active kafka connection")
    finally:
        idle.close()

    # Requests per API: exactly the four raw ApiVersions requests since the first scrape.
    assert value(samples, "magnetar_server_requests_total", protocol="kafka", api="ApiVersions") \
        == api_versions_before + 4
    assert value(samples, "magnetar_server_request_errors_total", protocol="kafka", api="ApiVersions",
                 code="35", error="UNSUPPORTED_VERSION") == 1
    assert value(samples, "magnetar_server_request_errors_total", protocol="kafka", api="Metadata",
                 code="17", error="INVALID_TOPIC_EXCEPTION") >= 1
    assert families["magnetar_server_requests"].type == "counter"
    for api in ("Produce", "Fetch", "Metadata", "OffsetCommit", "CreateTopics"):
        n = value(samples, "magnetar_server_requests_total", protocol="kafka", api=api)
        assert n >= 1, api
        assert value(samples, "magnetar_server_request_latency_seconds_count", protocol="kafka", api=api) == n
    assert value(samples, "magnetar_server_requests_total", protocol="pulsar", api="SEND") == P
    assert value(samples, "magnetar_server_requests_total", protocol="pulsar", api="CONNECT") >= 1
    assert value(samples, "magnetar_server_connections_opened_total", protocol="pulsar") >= 1

    # Traffic per topic and partition: exactly what was sent, and read back once.
    ns = "public/default"
    assert value(samples, "magnetar_topic_messages_in_total", namespace=ns, topic=kafka_topic) == K
    assert value(samples, "magnetar_topic_messages_out_total", namespace=ns, topic=kafka_topic) == K
    for p in (0, 1):
        assert value(samples, "magnetar_partition_messages_in_total", namespace=ns, topic=kafka_topic,
                     partition=str(p)) == per_partition[p]
    bytes_in = value(samples, "magnetar_topic_bytes_in_total", namespace=ns, topic=kafka_topic)
    assert bytes_in >= sum(len(r.value) for r in records)
    assert value(samples, "magnetar_topic_bytes_out_total", namespace=ns, topic=kafka_topic) == bytes_in
    assert value(samples, "magnetar_topic_messages_in_total", namespace=ns, topic=pulsar_topic) == P
    assert value(samples, "magnetar_topic_bytes_in_total", namespace=ns, topic=pulsar_topic) \
        >= sum(len(f"pulsar-{i}") for i in range(P))
    assert value(samples, "magnetar_metrics_partition_series_limited") == 0

    # Storage: fsync = always, so every append was fsynced and timed.
    assert value(samples, "magnetar_storage_fsync_latency_seconds_count") > 0
    assert value(samples, "magnetar_storage_fsync_latency_seconds_bucket", le="+Inf") \
        == value(samples, "magnetar_storage_fsync_latency_seconds_count")
    assert value(samples, "magnetar_storage_appends_total") >= K // 20
    assert value(samples, "magnetar_storage_bytes") >= bytes_in
    assert value(samples, "magnetar_storage_segments") >= 3
    assert value(samples, "magnetar_broker_append_latency_seconds_count") >= 2
    assert value(samples, "magnetar_storage_recovery_truncations_total") == 0

    # Group lag: one group caught up, one 5 messages behind on partition 0 only.
    assert value(samples, "magnetar_group_partition_lag_messages", group="metrics-behind",
                 topic=kafka_topic, partition="0") == per_partition[0] - 5
    assert value(samples, "magnetar_group_partition_lag_messages", group="metrics-behind",
                 topic=kafka_topic, partition="1") == 0
    assert value(samples, "magnetar_group_lag_messages", group="metrics-behind") == per_partition[0] - 5
    assert value(samples, "magnetar_group_lag_messages", group="metrics-caught-up") == 0

    # Process.
    assert value(samples, "magnetar_process_resident_memory_bytes") > 1_000_000
    assert value(samples, "magnetar_process_open_fds") > 5
    assert value(samples, "magnetar_process_cpu_seconds_total") > 0

    # The connection closed: the gauge goes back down.
    wait_for(lambda: value_or_zero(scrape(broker)[0], "magnetar_server_connections_active", protocol="kafka")
             < value(samples, "magnetar_server_connections_active", protocol="kafka"),
             "the closed connection to leave the gauge")

    # Every metric the Grafana dashboard queries is in this scrape, and every exported metric is
    # documented.
    dashboard = json.loads((REPO_ROOT / "docs/grafana/magnetar.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    assert len(exprs) > 20
    exported = {n for n, _ in samples}
    for expr in exprs:
        for name in re.findall(r"magnetar_[a-z_]+", expr):
            assert name in exported, f"dashboard queries {name}, which is not exported"
    doc = (REPO_ROOT / "docs/metrics.md").read_text()
    for family in families.values():
        names = {family.name} if family.type == "histogram" else {s.name for s in family.samples}
        for name in names:
            assert f"`{name}`" in doc, f"{name} is not documented in docs/metrics.md"

    # The same numbers in OpenMetrics, parsed by the strict OpenMetrics parser.
    om, om_families = scrape(broker, openmetrics=True)
    assert om_families["magnetar_server_requests"].type == "counter"
    assert value(om, "magnetar_topic_messages_in_total", namespace=ns, topic=kafka_topic) == K
    assert value(om, "magnetar_group_lag_messages", group="metrics-behind") == per_partition[0] - 5


def test_partition_series_are_capped(broker_factory):
    b = broker_factory(env={"MAGNETAR_HTTP__METRICS_PARTITION_SERIES_MAX": "0"})
    topic = f"capped-{uuid.uuid4().hex[:8]}"
    create_topic(b.kafka, topic, partitions=3)
    for p in range(3):
        produce(b.kafka, topic, make_records(2, prefix=f"cap-{p}"), partition=p)
    samples, _ = scrape(b)
    assert value(samples, "magnetar_metrics_partition_series_limited") == 1
    assert not [n for n, _ in samples if n.startswith("magnetar_partition_")]
    assert value(samples, "magnetar_topic_messages_in_total", namespace="public/default", topic=topic) == 6
