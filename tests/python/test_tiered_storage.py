"""Tiered storage (issue #16, mode 1) with real clients: a standalone broker started with
`--object-store file:///...` or `s3://bucket/prefix` (against moto's S3 server on loopback) and
small segments offloads sealed segments to the object store, keeps only the tail on local disk,
and Kafka (confluent-kafka, from offset 0 and by timestamp) and Pulsar (a reader from the
earliest message) consumers read everything back, also after a restart. A bad object-store URL
is refused with a clear configuration error; an S3 bucket that does not exist keeps every
segment local and counts the failed uploads."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from conftest import Broker
from moto_s3 import MotoS3

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("tiered storage"), pytest.mark.timeout(180)]

MESSAGES = 3000
VALUE = 700


def files(root: Path, suffix: str):
    return sorted(p for p in root.rglob(f"*{suffix}") if p.is_file())


def wait_for(cond, timeout_s=60.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def moto(tmp_path):
    server = MotoS3(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def start(binary, workdir: Path, url: str, env=None):
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "tiered.toml"
    config.write_text(
        "version = 1\n"
        "[storage]\n"
        "segment_bytes = 65536\n"
        "local_retention_bytes = 0\n"
        "offload_interval_ms = 200\n"
        "tier_block_bytes = 16384\n"
        "tier_cache_bytes = 262144\n"
    )
    b = Broker(binary, workdir, env=env, extra_args=["--config", str(config), "--object-store", url])
    return b


@pytest.mark.parametrize("store", ["file", "s3"])
def test_offloaded_segments_are_read_by_kafka_and_pulsar_clients(binary, tmp_path, store, request):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    if store == "file":
        bucket = tmp_path / "bucket"
        url, env = f"file://{bucket}", None

        def remote(suffix):
            return files(bucket, suffix)
    else:
        moto = request.getfixturevalue("moto")
        moto.create_bucket("tiered")
        url, env = "s3://tiered/cluster-a", moto.env

        def remote(suffix):
            keys = [k for k in moto.keys("tiered") if k.endswith(suffix)]
            assert all(k.startswith("cluster-a/ledgers/") for k in keys), keys
            return keys
    broker = start(binary, tmp_path / "broker", url, env)
    broker.command = _with_ports(broker.command)
    broker.start()
    try:
        topic = f"tiered-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": broker.kafka})
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        # Small batches, so the 64 KiB segments roll often.
        p = Producer({"bootstrap.servers": broker.kafka, "linger.ms": 1, "batch.size": 16384,
                      "acks": "all"})
        for i in range(MESSAGES):
            p.produce(topic, value=(b"%06d" % i) * (VALUE // 6), timestamp=1_000_000 + i)
            if i % 500 == 0:
                p.flush(30)
        assert p.flush(30) == 0

        data = broker.data_dir / "ledgers" / "public" / "default" / "persistent" / f"{topic}-partition-0"
        wait_for(lambda: len(files(data, ".seg")) == 1 and len(remote(".seg")) >= 10,
                 what="sealed segments offloaded")
        assert len(remote(".idx")) == len(remote(".seg")), "each with its index"

        def read_all(start_offset=0):
            c = Consumer({"bootstrap.servers": broker.kafka, "group.id": uuid.uuid4().hex,
                          "enable.auto.commit": False})
            c.assign([TopicPartition(topic, 0, start_offset)])
            got = []
            deadline = time.monotonic() + 60
            while len(got) < MESSAGES - start_offset and time.monotonic() < deadline:
                for m in c.consume(500, 1.0):
                    assert m.error() is None, m.error()
                    got.append((m.offset(), m.value()[:6]))
            c.close()
            return got

        got = read_all()
        assert [o for o, _ in got] == list(range(MESSAGES))
        assert all(v == b"%06d" % o for o, v in got)

        # offsets_for_times across offloaded segments
        c = Consumer({"bootstrap.servers": broker.kafka, "group.id": uuid.uuid4().hex})
        found = c.offsets_for_times([TopicPartition(topic, 0, 1_000_000 + 1234)], 30)
        c.close()
        assert found[0].offset == 1234

        # A Pulsar reader from the earliest message reads the same entries.
        pulsar = pytest.importorskip("pulsar")
        client = pulsar.Client(f"pulsar://{broker.pulsar}", operation_timeout_seconds=15,
                               logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
        try:
            reader = client.create_reader(f"persistent://public/default/{topic}-partition-0",
                                          pulsar.MessageId.earliest)
            values = []
            while len(values) < MESSAGES:
                values.append(reader.read_next(timeout_millis=20_000).data()[:6])
            assert values == [b"%06d" % i for i in range(MESSAGES)]
        finally:
            client.close()

        # The tiering counters are exported.
        import requests
        text = requests.get(f"http://{broker.http}/metrics", timeout=10).text
        values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                  if line.startswith("magnetar_storage_tier_")}
        assert values["magnetar_storage_tier_uploads_total"] >= 10, values
        assert values["magnetar_storage_tier_gets_total"] > 0, values
        assert values["magnetar_storage_tier_cache_hits_total"] > 0, values
        assert values["magnetar_storage_tier_upload_failures_total"] == 0, values
        assert (values["magnetar_storage_tier_upload_latency_seconds_count"]
                == values["magnetar_storage_tier_uploads_total"]), values

        # After a restart the broker reopens the offloaded segments from the bucket.
        broker.restart()
        got = read_all(2000)
        assert [o for o, _ in got] == list(range(2000, MESSAGES))
    finally:
        broker.stop(check=False)


def _with_ports(command):
    def wrapped(ports=None):
        cmd = command(ports)
        if "--kafka-port" not in cmd:
            cmd += ["--kafka-port", "0", "--pulsar-port", "0", "--http-port", "0"]
        return cmd
    return wrapped


@pytest.mark.parametrize("url", ["s3://UPPER/x", "ftp://host/x", "file://relative", "memory://x"])
def test_a_bad_object_store_url_is_refused_with_a_clear_error(binary, tmp_path, url):
    import subprocess

    out = subprocess.run(
        [str(binary), "standalone", "--data-dir", str(tmp_path / "d"), "--kafka-port", "0",
         "--pulsar-port", "0", "--http-port", "0", "--object-store", url],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out
    assert "storage.object_store" in out.stderr and url in out.stderr, out.stderr


def test_a_missing_bucket_keeps_segments_local_and_counts_failed_uploads(binary, tmp_path, moto):
    from confluent_kafka import Consumer, Producer, TopicPartition

    broker = start(binary, tmp_path / "broker", "s3://no-such-bucket/x", moto.env)
    broker.command = _with_ports(broker.command)
    broker.start()
    try:
        topic = f"nobucket-{uuid.uuid4().hex[:8]}"
        p = Producer({"bootstrap.servers": broker.kafka, "linger.ms": 1, "batch.size": 16384})
        for i in range(600):
            p.produce(topic, value=(b"%06d" % i) * 100)
            if i % 100 == 0:
                p.flush(30)
        assert p.flush(30) == 0
        import requests

        def failures():
            text = requests.get(f"http://{broker.http}/metrics", timeout=10).text
            for line in text.splitlines():
                if line.startswith("magnetar_storage_tier_upload_failures_total"):
                    return float(line.split()[1])
            return 0.0
        wait_for(lambda: failures() > 0, what="a failed upload counted")
        data = broker.data_dir / "ledgers" / "public" / "default" / "persistent" / f"{topic}-partition-0"
        assert len(files(data, ".seg")) > 1, "sealed segments stay local"
        c = Consumer({"bootstrap.servers": broker.kafka, "group.id": uuid.uuid4().hex})
        c.assign([TopicPartition(topic, 0, 0)])
        got = 0
        deadline = time.monotonic() + 60
        while got < 600 and time.monotonic() < deadline:
            for m in c.consume(500, 1.0):
                assert m.error() is None, m.error()
                got += 1
        c.close()
        assert got == 600
        # The bucket comes into being: the next passes offload what was kept.
        moto.create_bucket("no-such-bucket")
        wait_for(lambda: len([k for k in moto.keys("no-such-bucket") if k.endswith(".seg")]) >= 1,
                 what="the retried upload")
    finally:
        broker.stop(check=False)


def test_admin_offload_and_internal_stats(binary, tmp_path):
    """Pulsar's `topics offload` / `offload-status` / `internal-stats` shapes: with automatic
    offload off (no local retention bound), an operator's offload moves every sealed segment
    before the message id to the object store, internal-stats says which are offloaded, and
    consumers still read everything."""
    import requests
    from confluent_kafka import Consumer, Producer, TopicPartition

    bucket = tmp_path / "bucket"
    workdir = tmp_path / "broker"
    workdir.mkdir()
    config = workdir / "tiered.toml"
    config.write_text(
        "version = 1\n[storage]\nsegment_bytes = 65536\nlocal_retention_bytes = -1\n"
        "local_retention_ms = -1\noffload_interval_ms = 200\n")
    broker = Broker(binary, workdir, extra_args=["--config", str(config), "--object-store",
                                                 f"file://{bucket}"])
    broker.command = _with_ports(broker.command)
    broker.start()
    try:
        topic = f"offload-{uuid.uuid4().hex[:8]}"
        p = Producer({"bootstrap.servers": broker.kafka, "linger.ms": 1, "batch.size": 16384})
        for i in range(1000):
            p.produce(topic, value=(b"%06d" % i) * 100)
            if i % 100 == 0:
                p.flush(30)
        assert p.flush(30) == 0
        base = f"http://{broker.http}/admin/v2/persistent/public/default/{topic}-partition-0"

        def stats():
            r = requests.get(f"{base}/internal-stats", timeout=10)
            assert r.status_code == 200, r.text
            return r.json()
        before = stats()
        assert len(before["ledgers"]) > 3, before
        assert not any(l["offloaded"] for l in before["ledgers"]), before
        assert requests.get(f"{base}/offload", timeout=10).json()["status"] == "NOT_RUN"
        assert files(bucket, ".seg") == [], "nothing offloaded on its own"

        # Offload what comes before the third segment's first message.
        third = before["ledgers"][2]["ledgerId"]
        r = requests.put(f"{base}/offload", json={"ledgerId": 0, "entryId": third}, timeout=10)
        assert r.status_code == 204, r.text
        wait_for(lambda: requests.get(f"{base}/offload", timeout=10).json()["status"] == "SUCCESS",
                 what="offload done")
        status = requests.get(f"{base}/offload", timeout=10).json()
        assert status["firstUnoffloadedMessage"]["entryId"] == third, status
        after = stats()
        assert [l["offloaded"] for l in after["ledgers"][:3]] == [True, True, False], after
        assert len(files(bucket, ".seg")) == 2

        # Then everything sealed ("latest", the admin CLI's default); the active segment stays.
        import subprocess
        cli = [str(binary), "admin", "--admin-url", f"http://{broker.http}", "topics"]
        out = subprocess.run(cli + ["offload", f"public/default/{topic}-partition-0"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out
        wait_for(lambda: requests.get(f"{base}/offload", timeout=10).json()["status"] == "SUCCESS",
                 what="offload done")
        flags = [l["offloaded"] for l in stats()["ledgers"]]
        assert flags == [True] * (len(flags) - 1) + [False], flags
        out = subprocess.run(cli + ["offload-status", f"public/default/{topic}-partition-0"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "SUCCESS" in out.stdout, out

        c = Consumer({"bootstrap.servers": broker.kafka, "group.id": uuid.uuid4().hex})
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < 1000 and time.monotonic() < deadline:
            for m in c.consume(500, 1.0):
                assert m.error() is None, m.error()
                got.append(m.offset())
        c.close()
        assert got == list(range(1000))

        # A whole partitioned topic is refused (one partition at a time), as is a bad body.
        whole = f"http://{broker.http}/admin/v2/persistent/public/default/{topic}/offload"
        assert requests.put(whole, json={"ledgerId": 0, "entryId": 1}, timeout=10).status_code == 405
        assert requests.put(f"{base}/offload", json={"entryId": "x"}, timeout=10).status_code == 400
    finally:
        broker.stop(check=False)


def test_offload_without_tiered_storage_is_refused(broker):
    import requests
    from confluent_kafka import Producer

    topic = f"notier-{uuid.uuid4().hex[:8]}"
    p = Producer({"bootstrap.servers": broker.kafka})
    p.produce(topic, value=b"x")
    assert p.flush(30) == 0
    base = f"http://{broker.http}/admin/v2/persistent/public/default/{topic}-partition-0"
    r = requests.put(f"{base}/offload", json={"ledgerId": 0, "entryId": 1}, timeout=10)
    assert r.status_code == 400 and "tiered storage is off" in r.json()["reason"], r.text
    stats = requests.get(f"{base}/internal-stats", timeout=10).json()
    assert stats["ledgers"] and not stats["ledgers"][0]["offloaded"], stats


def test_offloaded_segments_of_a_compacted_topic_are_compacted(binary, tmp_path):
    """Log compaction (issue #19) over tiered storage: the sealed segments of a compacted topic
    are offloaded, compacted from their objects (rewritten locally, the old objects deleted),
    offloaded again by the next pass, and consumers read the latest value of every key at its
    original offset, also after a restart."""
    from kafka_util import create_topic
    from test_compaction import compact_now, consume_all, produce_keyed, topic_config

    bucket = tmp_path / "bucket"
    broker = start(binary, tmp_path / "broker", f"file://{bucket}",
                   env={"MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000"})
    broker.command = _with_ports(broker.command)
    broker.start()
    try:
        topic = f"tieredcompact-{uuid.uuid4().hex[:8]}"
        create_topic(broker.kafka, topic, 1, config=topic_config(delete_retention_ms=86_400_000))
        items = [(b"k%02d" % (i % 10), b"v%05d-" % i + b"x" * 100) for i in range(1500)]
        items += [(b"filler-%03d" % i, b"f" * 100) for i in range(60)]
        offsets = produce_keyed(broker.kafka, topic, items)
        data = broker.data_dir / "ledgers" / "public" / "default" / "persistent" / f"{topic}-partition-0"
        wait_for(lambda: len(files(data, ".seg")) == 1 and len(files(bucket, ".seg")) >= 10,
                 what="sealed segments offloaded")
        offloaded_before = len(files(bucket, ".seg"))
        compact_now(broker, topic)
        latest = {}
        for (k, v), off in zip(items, offsets):
            latest[k] = (off, v)
        expected = sorted((off, k, v) for k, (off, v) in latest.items())
        assert consume_all(broker.kafka, topic) == expected
        # The compacted segments are offloaded again and the replaced objects are gone.
        wait_for(lambda: len(files(data, ".seg")) == 1, what="compacted segments offloaded again")
        assert len(files(bucket, ".seg")) < offloaded_before
        broker.restart()
        assert consume_all(broker.kafka, topic) == expected
    finally:
        broker.stop(check=False)
