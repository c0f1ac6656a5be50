"""Admin REST subscriptions with the official Pulsar client: a subscription created over REST at
the earliest position serves a Pulsar consumer from the start; while the consumer is connected
reset-cursor is refused (412); after it closes, reset-cursor and skip move where it resumes."""

from __future__ import annotations

import os
import uuid

import pytest
import requests

pulsar = pytest.importorskip("pulsar")

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("admin REST"), pytest.mark.timeout(120)]


def test_subscription_created_reset_and_skipped_over_rest(broker):
    client = pulsar.Client(
        f"pulsar://{broker.pulsar}",
        operation_timeout_seconds=15,
        logger=pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG_LEVEL", "Warn"))),
    )
    local = f"subs-{uuid.uuid4().hex[:8]}"
    topic = f"persistent://public/default/{local}"
    base = f"http://{broker.http}/admin/v2/persistent/public/default/{local}"
    try:
        assert requests.put(base).status_code == 204  # non-partitioned: skip needs one partition
        producer = client.create_producer(topic, batching_enabled=False)
        for i in range(10):
            producer.send(f"m{i}".encode())
        r = requests.put(f"{base}/subscription/ops", json={"ledgerId": -1, "entryId": -1})
        assert r.status_code == 204, r.text
        assert requests.put(f"{base}/subscription/ops").status_code == 409

        consumer = client.subscribe(topic, "ops")
        first = [consumer.receive(timeout_millis=5000) for _ in range(3)]
        assert [m.data() for m in first] == [b"m0", b"m1", b"m2"]
        for m in first:
            consumer.acknowledge(m)
        r = requests.post(f"{base}/subscription/ops/resetcursor/0")
        assert r.status_code == 412, r.text
        assert "consumers" in r.json()["reason"]
        consumer.close()

        assert requests.post(f"{base}/subscription/ops/resetcursor/0").status_code == 204
        assert requests.post(f"{base}/subscription/ops/skip/4").status_code == 204
        stats = requests.get(f"{base}/stats").json()
        assert stats["subscriptions"]["ops"]["msgBacklog"] == 6
        consumer = client.subscribe(topic, "ops")
        assert consumer.receive(timeout_millis=5000).data() == b"m4"
        consumer.close()

        assert requests.post(f"{base}/subscription/ops/skip_all").status_code == 204
        assert requests.get(f"{base}/stats").json()["subscriptions"]["ops"]["msgBacklog"] == 0
        assert requests.delete(f"{base}/subscription/ops").status_code == 204
        assert requests.delete(f"{base}/subscription/ops").status_code == 404
        assert requests.get(f"{base}/subscriptions").json() == []
    finally:
        client.close()
