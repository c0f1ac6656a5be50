"""An entry corrupt on disk (issue #22): both protocols stop at it with a counted, logged error,
an operator marks it skipped over the admin API, and then a Pulsar subscription (pulsar-client)
and a Kafka consumer (confluent-kafka) both move past it; the mark is listed and can be removed."""

from __future__ import annotations

import re
import time
import uuid

import pytest
import requests

pulsar = pytest.importorskip("pulsar")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("admin REST, data dir"), pytest.mark.timeout(120)]

MARKER = b"MIDDLE-ENTRY-MARKER-0123456789"


def unreadable_count(http: str, protocol: str) -> float:
    text = requests.get(f"http://{http}/metrics", timeout=10).text
    m = re.search(r'^magnetar_server_unreadable_entries_total\{protocol="%s"\} (\S+)$' % protocol, text, re.M)
    return float(m.group(1)) if m else 0.0


def corrupt_marker(data_dir) -> None:
    hits = [p for p in data_dir.rglob("*.seg") if MARKER in p.read_bytes()]
    assert len(hits) == 1, hits
    raw = bytearray(hits[0].read_bytes())
    at = raw.index(MARKER) + 5
    raw[at] ^= 0xFF
    hits[0].write_bytes(bytes(raw))


def test_operator_skips_an_entry_corrupt_on_disk(broker):
    from kafka_util import consume

    local = f"rot-{uuid.uuid4().hex[:8]}"
    topic = f"persistent://public/default/{local}"
    # Auto-created by the producer as a partitioned topic of one partition.
    base = f"http://{broker.http}/admin/v2/persistent/public/default/{local}-partition-0"
    client = pulsar.Client(f"pulsar://{broker.pulsar}", operation_timeout_seconds=15,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        producer = client.create_producer(topic, batching_enabled=False)
        for value in (b"first", MARKER, b"third"):
            producer.send(value)
        producer.close()
        corrupt_marker(broker.data_dir)

        assert requests.get(f"{base}/skippedEntries", timeout=10).json() == []
        consumer = client.subscribe(topic, "ops", initial_position=pulsar.InitialPosition.Earliest)
        first = consumer.receive(timeout_millis=10_000)
        assert first.data() == b"first"
        consumer.acknowledge(first)
        # The dispatcher stops at the corrupt entry: counted (and logged, rate-limited).
        deadline = time.monotonic() + 20
        while unreadable_count(broker.http, "pulsar") < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert unreadable_count(broker.http, "pulsar") >= 1

        # Bad requests first: a whole index range past the end, a non-number.
        assert requests.put(f"{base}/skippedEntries/99", timeout=10).status_code == 400
        r = requests.put(f"{base}/skippedEntries/x", timeout=10)
        assert r.status_code == 400 and "reason" in r.json(), r.text

        r = requests.put(f"{base}/skippedEntries/1", timeout=10)
        assert r.status_code == 200, r.text
        assert r.json() == {"firstIndex": 1, "endIndex": 2}
        assert requests.get(f"{base}/skippedEntries", timeout=10).json() == [{"firstIndex": 1, "endIndex": 2}]

        third = consumer.receive(timeout_millis=20_000)
        assert third.data() == b"third"
        consumer.acknowledge(third)
        consumer.close()

        # Kafka sees `local-partition-0` as partition 0 of `local`.
        msgs = consume(broker.kafka, local, 2, timeout_s=30)
        assert [(m.offset(), m.value()) for m in msgs] == [(0, b"first"), (2, b"third")]

        assert requests.delete(f"{base}/skippedEntries/1", timeout=10).status_code == 204
        assert requests.delete(f"{base}/skippedEntries/1", timeout=10).status_code == 404
        assert requests.get(f"{base}/skippedEntries", timeout=10).json() == []
    finally:
        client.close()


def test_skipped_entries_name_one_partition(broker):
    local = f"rotp-{uuid.uuid4().hex[:8]}"
    base = f"http://{broker.http}/admin/v2/persistent/public/default/{local}"
    assert requests.put(f"{base}/partitions", json=2, timeout=10).status_code == 204
    r = requests.put(f"{base}/skippedEntries/0", timeout=10)
    assert r.status_code == 405 and "partition" in r.json()["reason"], r.text
    # an empty partition has no entry to mark
    r = requests.put(f"{base}-partition-1/skippedEntries/0", timeout=10)
    assert r.status_code == 400, r.text
    assert requests.get(f"{base}-partition-1/skippedEntries", timeout=10).json() == []
    assert requests.get(f"{base}-nope/skippedEntries", timeout=10).status_code == 404
