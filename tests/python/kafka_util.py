"""Client helpers shared by the data-path tests (confluent-kafka based).

Every poll/flush is bounded; helpers raise AssertionError with the client's own error text.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

# A fixed base timestamp (ms) in the past so timestamp assertions are exact.
TS_BASE_MS = 1_700_000_000_000


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Rec:
    key: Optional[bytes]
    value: Optional[bytes]
    headers: List[Tuple[str, bytes]]
    timestamp_ms: Optional[int]


def make_records(n: int, prefix: str = "m", with_headers: bool = True, ts_base: int = TS_BASE_MS) -> List[Rec]:
    recs = []
    for i in range(n):
        headers = [("h-index", str(i).encode()), ("h-const", b"\x00\x01binary")] if with_headers else []
        recs.append(
            Rec(
                key=f"{prefix}-key-{i}".encode(),
                value=f"{prefix}-value-{i}-".encode() + bytes([i % 256]) * (i % 17),
                headers=headers,
                timestamp_ms=ts_base + i * 1000,
            )
        )
    return recs


def producer_conf(bootstrap: str, **extra) -> Dict:
    conf = {
        "bootstrap.servers": bootstrap,
        "message.timeout.ms": 20000,
        "socket.timeout.ms": 10000,
        "linger.ms": 5,
    }
    conf.update(extra)
    return conf


class Delivery:
    def __init__(self):
        self.reports: List[Tuple[Optional[KafkaError], int, int]] = []  # (err, partition, offset)

    def __call__(self, err, msg):
        self.reports.append((err, msg.partition() if msg else -1, msg.offset() if msg else -1))

    def errors(self):
        return [e for e, _, _ in self.reports if e is not None]


def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[Rec],
    partition: Optional[int] = None,
    flush_each: int = 0,
    timeout_s: float = 30.0,
    **conf,
) -> List[Tuple[int, int]]:
    """Produce `records`, wait for every delivery report, assert none failed.

    Returns [(partition, offset)] in delivery order.  `flush_each` > 0 flushes every N records
    so the data lands as several batches.
    """
    fatal: List[KafkaError] = []
    p = Producer(producer_conf(bootstrap, error_cb=lambda e: fatal.append(e) if e.fatal() else None, **conf))
    d = Delivery()
    for i, r in enumerate(records):
        kw = dict(key=r.key, value=r.value, headers=r.headers or None, on_delivery=d)
        if r.timestamp_ms is not None:
            kw["timestamp"] = r.timestamp_ms
        if partition is not None:
            kw["partition"] = partition
        for _ in range(100):
            try:
                p.produce(topic, **kw)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        if flush_each and (i + 1) % flush_each == 0:
            assert p.flush(timeout_s) == 0, "flush timed out"
    remaining = p.flush(timeout_s)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout_s}s: {d.errors()[:3]}"
    assert not fatal, f"fatal producer errors: {fatal}"
    errs = d.errors()
    assert not errs, f"{len(errs)} delivery errors, first: {errs[0]!r} (code {errs[0].code()}, {errs[0].name()})"
    assert len(d.reports) == len(records)
    return [(part, off) for _, part, off in d.reports]


def consumer_conf(bootstrap: str, **extra) -> Dict:
    # No consumer groups yet: partitions are assigned by hand and nothing is committed.
    # confluent-kafka (2.x) refuses a Consumer without group.id, so a fixed one is given;
    # it is never joined (no subscribe()).
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": "magnetar-pytest-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "socket.timeout.ms": 10000,
        "fetch.wait.max.ms": 200,
    }
    conf.update(extra)
    return conf


def consume(
    bootstrap: str,
    topic: str,
    count: int,
    partition: int = 0,
    offset: int = OFFSET_BEGINNING,
    timeout_s: float = 30.0,
    extra_wait_s: float = 0.0,
    **conf,
):
    """Assign (topic, partition, offset) and read exactly `count` messages (bounded in time).

    With `extra_wait_s` > 0, keeps polling that long after `count` to catch extra messages.
    Returns the list of confluent Message objects.
    """
    c = Consumer(consumer_conf(bootstrap, **conf))
    try:
        c.assign([TopicPartition(topic, partition, offset)])
        out = []
        side_errors = []
        deadline = time.monotonic() + timeout_s
        for _ in range(100_000):
            if len(out) >= count or time.monotonic() > deadline:
                break
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                if msg.topic() != topic and not msg.error().fatal():
                    # not about our partition (e.g. the never-joined group's coordinator)
                    side_errors.append(msg.error())
                    continue
                raise AssertionError(f"consumer error: {msg.error()!r}")
            out.append(msg)
        if extra_wait_s:
            end = time.monotonic() + extra_wait_s
            for _ in range(10_000):
                if time.monotonic() > end:
                    break
                msg = c.poll(0.2)
                if msg is not None and not msg.error():
                    out.append(msg)
        assert len(out) >= count, (
            f"consumed {len(out)} of {count} messages from {topic}[{partition}] within {timeout_s}s"
            f"; other consumer errors: {side_errors[:3]!r}"
        )
        return out
    finally:
        c.close()


def assert_records_equal(msgs, records: Sequence[Rec], first_offset: int = 0, check_ts: bool = True):
    assert len(msgs) == len(records), f"got {len(msgs)} messages, expected {len(records)}"
    for i, (m, r) in enumerate(zip(msgs, records)):
        assert m.offset() == first_offset + i, f"message {i}: offset {m.offset()} != {first_offset + i}"
        assert m.key() == r.key, f"offset {m.offset()}: key {m.key()!r} != {r.key!r}"
        assert m.value() == r.value, f"offset {m.offset()}: value {m.value()!r} != {r.value!r}"
        got_headers = [(k, bytes(v) if v is not None else None) for k, v in (m.headers() or [])]
        assert got_headers == list(r.headers), f"offset {m.offset()}: headers {got_headers!r} != {r.headers!r}"
        if check_ts and r.timestamp_ms is not None:
            ts_type, ts = m.timestamp()
            assert ts == r.timestamp_ms, f"offset {m.offset()}: timestamp {ts} != {r.timestamp_ms}"
            assert ts_type == 1, f"offset {m.offset()}: timestamp type {ts_type} != CREATE_TIME(1)"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: Optional[Dict[str, str]] = None, timeout_s: float = 20.0):
    a = admin(bootstrap)
    futs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    futs[name].result(timeout=timeout_s)
    wait_topic(bootstrap, name, partitions)


def wait_topic(bootstrap: str, name: str, partitions: int, timeout_s: float = 15.0):
    """Wait until metadata shows `name` with `partitions` partitions, each with a leader."""
    a = admin(bootstrap)
    deadline = time.monotonic() + timeout_s
    last = None
    for _ in range(200):
        md = a.list_topics(topic=name, timeout=5)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
            p.leader >= 0 for p in t.partitions.values()
        ):
            return md
        last = t
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    raise AssertionError(f"topic {name} not ready with {partitions} partitions: {last!r} "
                         f"{getattr(last, 'error', None)!r}")


def watermarks(bootstrap: str, topic: str, partition: int = 0, timeout_s: float = 10.0) -> Tuple[int, int]:
    c = Consumer(consumer_conf(bootstrap))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s, cached=False)
    finally:
        c.close()


def raise_on_error(f, timeout_s=20.0):
    try:
        return f.result(timeout=timeout_s)
    except KafkaException as e:
        raise AssertionError(f"admin call failed: {e.args[0]!r}") from None
