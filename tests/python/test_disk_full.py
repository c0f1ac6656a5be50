"""A write that fails (disk full, file too large) is an error to the client, loses nothing that
was acknowledged, and the partition serves again once the disk does.

The broker runs under a file-size limit (`ulimit -f`, with SIGXFSZ ignored so the write returns
EFBIG as a full disk returns ENOSPC): once the partition's segment reaches the limit, appends
fail. The limit is then lifted from outside (`prlimit`), and the same producer goes on.
"""

from __future__ import annotations

import resource
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.binary

LIMIT_BLOCKS = 4096  # `ulimit -f` blocks (512 bytes in dash, 1 KiB in bash): 2 to 4 MiB
VALUE = b"x" * 1024


def start_limited(broker_factory):
    b = broker_factory(start=False, env={"MAGNETAR_STORAGE__FSYNC": "os"})
    cmd = ["sh", "-c", f"trap '' XFSZ; ulimit -S -f {LIMIT_BLOCKS}; exec \"$0\" \"$@\""] + b.command()
    return b.start(cmd=cmd)


def test_full_disk_is_an_error_then_the_partition_recovers(broker_factory):
    b = start_limited(broker_factory)
    admin = AdminClient({"bootstrap.servers": b.kafka})
    admin.create_topics([NewTopic("full", 1, 1)])["full"].result(timeout=30)

    acked: dict[int, bytes] = {}
    failed: list[str] = []

    def report(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()
        else:
            failed.append(err.str())

    producer = Producer(
        {
            "bootstrap.servers": b.kafka,
            "linger.ms": 2,
            "message.timeout.ms": 3000,
            "retries": 0,
            "acks": "all",
        }
    )
    # Phase 1: produce until the limit makes appends fail (bounded: 12 MiB, 60 s).
    deadline = time.monotonic() + 60
    sent = 0
    while not failed and sent < 12_000 and time.monotonic() < deadline:
        producer.produce("full", value=VALUE + str(sent).encode(), partition=0, on_delivery=report)
        sent += 1
        producer.poll(0)
        if sent % 200 == 0:
            producer.flush(10)
    producer.flush(15)
    assert failed, f"no append failed after {sent} messages under a file limit of {LIMIT_BLOCKS} blocks"
    assert acked, "nothing was acknowledged before the limit"
    assert b.alive(), "the broker died on a failed write"
    stderr = b.stderr_path.read_text(errors="replace")
    assert "append failed" in stderr, stderr[-2000:]

    # While the disk stays full, appends keep failing with an error (and the broker serves; the
    # partition is reopened, at most once a second, and a torn tail truncated, so small appends
    # may still fit: write more than that).
    failed.clear()
    for i in range(200):
        producer.produce("full", value=VALUE + b"still-full", partition=0, on_delivery=report)
        producer.poll(0)
    producer.flush(15)
    assert failed, "200 KiB of appends succeeded while the file limit still held"

    # Phase 2: space comes back; the partition is reopened (recovery truncates a torn tail) and
    # the same producer goes on.
    # Only the soft limit was lowered, so raising it again needs no privilege.
    _, hard = resource.prlimit(b.proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(b.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
    before = set(acked)
    recovered = False
    deadline = time.monotonic() + 30
    while not recovered and time.monotonic() < deadline:
        failed.clear()
        producer.produce("full", value=b"after", partition=0, on_delivery=report)
        producer.flush(15)
        recovered = not failed
        if not recovered:
            time.sleep(0.5)
    assert recovered, f"appends still fail after the limit was lifted: {failed[-3:]}"
    for i in range(100):
        producer.produce("full", value=b"after-%d" % i, partition=0, on_delivery=report)
    producer.flush(30)
    new = sorted(set(acked) - before)
    assert len(new) == 101, f"{len(new)} of 101 appends after recovery acknowledged"

    # Nothing acknowledged was lost, offsets are continuous, order kept.
    consumer = Consumer(
        {
            "bootstrap.servers": b.kafka,
            "group.id": "check",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition("full", 0, 0)])
    got: dict[int, bytes] = {}
    last = max(acked)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not got or max(got) < last):
        msg = consumer.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
            continue
        got[msg.offset()] = msg.value()
    consumer.close()
    missing = [o for o in acked if got.get(o) != acked[o]]
    assert not missing, f"{len(missing)} acknowledged messages lost or changed, e.g. {missing[:5]}"
    offsets = sorted(got)
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), "offsets have gaps"


def test_full_disk_pulsar_producer_recovers(broker_factory):
    """The Pulsar client answers a send error by reconnecting and resending what is pending, so
    its sends wait out a full disk: they complete once the space is back, nothing lost."""
    import pulsar

    b = start_limited(broker_factory)
    client = pulsar.Client(f"pulsar://{b.pulsar}", operation_timeout_seconds=10)
    try:
        producer = client.create_producer(
            "persistent://public/default/pfull",
            send_timeout_millis=0,
            batching_enabled=False,
            max_pending_messages=4000,
        )
        results = {}

        def done(i):
            return lambda res, msg_id: results.__setitem__(i, (res, msg_id))

        total = 3000  # ~3 MiB, more than the 2-4 MiB the file may hold
        for i in range(total):
            producer.send_async(VALUE + b"%d" % i, done(i))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "append failed" not in b.stderr_text():
            time.sleep(0.2)
        assert "append failed" in b.stderr_text(), "no append failed under the file limit"
        assert b.alive()
        _, hard = resource.prlimit(b.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(b.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        producer.flush()
        deadline = time.monotonic() + 60
        while len(results) < total and time.monotonic() < deadline:
            time.sleep(0.2)
        bad = [i for i, (res, _) in results.items() if res != pulsar.Result.Ok]
        assert len(results) == total and not bad, f"{len(results)} done, failed: {bad[:5]}"
        reader = client.create_reader("persistent://public/default/pfull", pulsar.MessageId.earliest)
        seen = {}
        reads = 0
        while reader.has_message_available() and reads < 2 * total:  # bounded
            msg = reader.read_next(timeout_millis=10_000)
            seen[msg.data()] = str(msg.message_id())
            reads += 1
        lost = [i for i in range(total) if VALUE + b"%d" % i not in seen]
        assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:5]}"
        # At-least-once: appends written before the failing write in the same flush may be
        # answered with the error yet survive recovery; the client's resend then duplicates them.
        print(f"{reads} messages read for {total} sent ({reads - len(seen)} duplicates)")
    finally:
        client.close()
