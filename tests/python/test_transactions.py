"""Kafka transactions (issue #18) with real clients: confluent-kafka transactional producers
commit and abort; read_committed consumers see committed records only while read_uncommitted
ones see everything; a consume-transform-produce loop with send_offsets_to_transaction, killed
(kill -9 of the client process) and restarted, writes each input exactly once; a zombie producer
is fenced; a transaction left open by a killed client is aborted after its timeout; a broker
killed mid-transaction (fsync=always) completes or aborts every transaction after restart; a
Pulsar consumer sees committed records only; kafka-python's transactional producer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from kafka_util import create_topic, unique_topic

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("transactions"), pytest.mark.timeout(240)]

FAST_ABORTS = {"MAGNETAR_TRANSACTIONS__ABORT_CHECK_INTERVAL_MS": "200"}


def txn_producer(bootstrap: str, txn_id: str, **conf) -> Producer:
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "linger.ms": 5,
            "transaction.timeout.ms": 60000,
            **conf,
        }
    )
    p.init_transactions(20)
    return p


def consume_all(bootstrap: str, topic: str, isolation: str, partitions: int = 1, idle_s: float = 3.0,
                timeout_s: float = 40.0, expect: int = 0) -> List[Tuple[int, int, bytes]]:
    """Every record of `topic` as (partition, offset, value), read from the beginning."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{unique_topic('c')}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    while time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            if time.monotonic() - last > idle_s and len(out) >= expect:
                break
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise AssertionError(m.error())
        out.append((m.partition(), m.offset(), m.value()))
        last = time.monotonic()
    c.close()
    return out


def test_commit_and_abort_read_committed_vs_uncommitted(broker):
    topic = unique_topic("txn")
    create_topic(broker.kafka, topic, 2)
    p = txn_producer(broker.kafka, "tx-basic")
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, value=f"committed-{i}".encode(), partition=i % 2)
    p.commit_transaction(20)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, value=f"aborted-{i}".encode(), partition=i % 2)
    p.flush(20)
    p.abort_transaction(20)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, value=f"after-{i}".encode(), partition=i % 2)
    p.commit_transaction(20)
    committed = consume_all(broker.kafka, topic, "read_committed", 2, expect=15)
    values = sorted(v.decode() for _, _, v in committed)
    assert values == sorted([f"committed-{i}" for i in range(10)] + [f"after-{i}" for i in range(5)])
    uncommitted = consume_all(broker.kafka, topic, "read_uncommitted", 2, expect=25)
    assert sorted(v.decode() for _, _, v in uncommitted) == sorted(
        [f"committed-{i}" for i in range(10)] + [f"aborted-{i}" for i in range(10)] + [f"after-{i}" for i in range(5)]
    )
    # Markers take offsets: each partition's end is past its records.
    c = Consumer({"bootstrap.servers": broker.kafka, "group.id": "wm", "isolation.level": "read_committed"})
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert hi == 5 + 5 + 3 + 3, "records plus one marker per transaction"
    c.close()


def test_open_transaction_holds_back_read_committed_until_commit(broker):
    topic = unique_topic("txn-open")
    create_topic(broker.kafka, topic, 1)
    p = txn_producer(broker.kafka, "tx-open")
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, value=f"v{i}".encode(), partition=0)
    p.flush(20)
    assert consume_all(broker.kafka, topic, "read_committed", idle_s=2.0) == []
    assert len(consume_all(broker.kafka, topic, "read_uncommitted", expect=5)) == 5
    p.commit_transaction(20)
    assert [v for _, _, v in consume_all(broker.kafka, topic, "read_committed", expect=5)] == [
        f"v{i}".encode() for i in range(5)
    ]


def test_zombie_producer_is_fenced(broker):
    topic = unique_topic("txn-zombie")
    create_topic(broker.kafka, topic, 1)
    old = txn_producer(broker.kafka, "tx-zombie")
    old.begin_transaction()
    old.produce(topic, value=b"zombie", partition=0)
    old.flush(20)
    new = txn_producer(broker.kafka, "tx-zombie")  # fences `old` and aborts its transaction
    new.begin_transaction()
    new.produce(topic, value=b"fresh", partition=0)
    new.commit_transaction(20)
    with pytest.raises(KafkaException) as raised:
        old.produce(topic, value=b"zombie-2", partition=0)
        old.commit_transaction(20)
    assert raised.value.args[0].fatal() or raised.value.args[0].code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    ), raised.value
    assert [v for _, _, v in consume_all(broker.kafka, topic, "read_committed", expect=1)] == [b"fresh"]


CTP_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from confluent_kafka import Consumer, Producer, TopicPartition
    bootstrap, src, dst, group, limit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c.subscribe([src])
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "ctp-" + group, "linger.ms": 5})
    p.init_transactions(30)
    done = 0
    idle = time.monotonic()
    # The killed run's member stays in the group until its session times out (6 s).
    while done < limit and time.monotonic() - idle < 30:
        msgs = c.consume(200, 1.0)
        msgs = [m for m in msgs if not m.error()]
        if not msgs:
            continue
        idle = time.monotonic()
        p.begin_transaction()
        for m in msgs:
            p.produce(dst, value=m.value(), key=m.key(), partition=m.partition())
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
        p.commit_transaction(30)
        done += len(msgs)
        print(done, flush=True)
    """
)


def test_consume_transform_produce_exactly_once_across_a_client_kill(broker, tmp_path):
    src, dst = unique_topic("ctp-in"), unique_topic("ctp-out")
    create_topic(broker.kafka, src, 4)
    create_topic(broker.kafka, dst, 4)
    n = 4000
    p = Producer({"bootstrap.servers": broker.kafka, "linger.ms": 5})
    for i in range(n):
        p.produce(src, value=f"r{i:05d}".encode(), partition=i % 4)
    assert p.flush(30) == 0
    script = tmp_path / "ctp.py"
    script.write_text(CTP_SCRIPT)
    group = unique_topic("ctp")
    # First run: killed (-9) once it has committed some transactions.
    first = subprocess.Popen(
        [sys.executable, str(script), broker.kafka, src, dst, group, str(n)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        progressed = 0
        while time.monotonic() < deadline:
            line = first.stdout.readline()
            if not line:
                break
            progressed = int(line.strip())
            if progressed >= n // 4:
                break
        assert progressed > 0, "the first run committed nothing"
        first.kill()
    finally:
        first.kill()
        first.wait(10)
    # Second run: the same transactional id fences the first run's open transaction, the group
    # resumes from the offsets committed with the output, and finishes.
    second = subprocess.run(
        [sys.executable, str(script), broker.kafka, src, dst, group, str(n)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=150,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    out = consume_all(broker.kafka, dst, "read_committed", 4, expect=n, timeout_s=60)
    values = [v.decode() for _, _, v in out]
    assert len(values) == n, f"{len(values)} records, {len(set(values))} distinct"
    assert sorted(values) == [f"r{i:05d}" for i in range(n)]


ABANDON_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from confluent_kafka import Producer
    bootstrap, topic = sys.argv[1], sys.argv[2]
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "tx-abandoned",
                  "transaction.timeout.ms": 2000, "linger.ms": 5})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(20):
        p.produce(topic, value=b"never-visible", partition=0)
    p.flush(30)
    print("sent", flush=True)
    time.sleep(600)  # not an ordering wait: the child hangs until the test kills it
    """
)


def test_transaction_of_a_killed_client_is_aborted_after_its_timeout(broker_factory, tmp_path):
    broker = broker_factory(env=FAST_ABORTS)
    topic = unique_topic("txn-abandon")
    create_topic(broker.kafka, topic, 1)
    script = tmp_path / "abandon.py"
    script.write_text(ABANDON_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), broker.kafka, topic],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "sent"
    finally:
        proc.kill()
        proc.wait(10)
    # Another producer's committed records after the abandoned ones become visible once the
    # coordinator aborts the abandoned transaction (its timeout is 2 s); the aborted never.
    other = txn_producer(broker.kafka, "tx-after-abandon")
    other.begin_transaction()
    other.produce(topic, value=b"visible", partition=0)
    other.commit_transaction(20)
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = [v for _, _, v in consume_all(broker.kafka, topic, "read_committed", idle_s=1.0, timeout_s=5)]
        if seen:
            break
    assert seen == [b"visible"]
    all_records = consume_all(broker.kafka, topic, "read_uncommitted", expect=21)
    assert len(all_records) == 21


def test_broker_kill9_mid_transaction_completes_or_aborts_after_restart(broker_factory):
    broker = broker_factory(env={**FAST_ABORTS, "MAGNETAR_STORAGE__FSYNC": "always"})
    topic = unique_topic("txn-crash")
    create_topic(broker.kafka, topic, 2)
    p = txn_producer(broker.kafka, "tx-crash", **{"transaction.timeout.ms": 3000})
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, value=f"c{i}".encode(), partition=i % 2)
    p.commit_transaction(20)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, value=f"open{i}".encode(), partition=i % 2)
    p.flush(20)
    broker.kill9()
    broker.restart(same_ports=True)
    # The open transaction is aborted once its timeout passes (its producer is gone for good);
    # read_committed then sees the committed records, never the open ones.
    deadline = time.monotonic() + 40
    values: List[str] = []
    while time.monotonic() < deadline:
        values = sorted(v.decode() for _, _, v in consume_all(broker.kafka, topic, "read_committed", 2,
                                                              idle_s=1.0, timeout_s=6))
        if len(values) >= 10:
            break
    assert values == sorted(f"c{i}" for i in range(10))
    # A new producer of the same id works after the restart.
    p2 = txn_producer(broker.kafka, "tx-crash")
    p2.begin_transaction()
    p2.produce(topic, value=b"later", partition=0)
    p2.commit_transaction(20)
    values = sorted(v.decode() for _, _, v in consume_all(broker.kafka, topic, "read_committed", 2, expect=11))
    assert values == sorted([f"c{i}" for i in range(10)] + ["later"])


def test_pulsar_consumer_sees_committed_records_only(broker):
    pulsar = pytest.importorskip("pulsar")
    topic = unique_topic("txn-pulsar")
    create_topic(broker.kafka, topic, 1)
    p = txn_producer(broker.kafka, "tx-pulsar")
    p.begin_transaction()
    p.produce(topic, value=b"a1", partition=0)
    p.commit_transaction(20)
    p.begin_transaction()
    p.produce(topic, value=b"x1", partition=0)
    p.flush(20)
    p.abort_transaction(20)
    p.begin_transaction()
    p.produce(topic, value=b"a2", partition=0)
    p.commit_transaction(20)
    # An open transaction at the end: its records wait.
    p.begin_transaction()
    p.produce(topic, value=b"pending", partition=0)
    p.flush(20)
    client = pulsar.Client(f"pulsar://{broker.pulsar}", operation_timeout_seconds=15,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        consumer = client.subscribe(f"persistent://public/default/{topic}-partition-0", "s",
                                    initial_position=pulsar.InitialPosition.Earliest)
        got = []
        for _ in range(2):
            m = consumer.receive(10000)
            got.append(m.data())
            consumer.acknowledge(m)
        assert got == [b"a1", b"a2"]
        with pytest.raises(Exception):
            consumer.receive(1500)
        p.commit_transaction(20)
        m = consumer.receive(10000)
        assert m.data() == b"pending"
    finally:
        client.close()


def test_kafka_python_transactional_producer(broker):
    kafka = pytest.importorskip("kafka")
    if not hasattr(kafka.KafkaProducer, "init_transactions"):
        pytest.skip("this kafka-python has no transactions")
    topic = unique_topic("txn-kp")
    create_topic(broker.kafka, topic, 1)
    p = kafka.KafkaProducer(bootstrap_servers=broker.kafka, transactional_id="tx-kafka-python")
    p.init_transactions()
    p.begin_transaction()
    p.send(topic, b"kp-aborted", partition=0)
    p.abort_transaction()
    p.begin_transaction()
    p.send(topic, b"kp-committed", partition=0)
    p.commit_transaction()
    p.close()
    assert [v for _, _, v in consume_all(broker.kafka, topic, "read_committed", expect=1)] == [b"kp-committed"]


def test_admin_lists_describes_and_aborts_a_hanging_transaction(broker, binary):
    import requests

    topic = unique_topic("txn-admin")
    create_topic(broker.kafka, topic, 1)
    p = txn_producer(broker.kafka, "tx-hanging")
    p.begin_transaction()
    p.produce(topic, value=b"hanging", partition=0)
    p.flush(20)
    base = f"http://{broker.http}/admin/v2/kafka/transactions"
    listed = requests.get(base, timeout=10).json()
    mine = [t for t in listed if t["transactionalId"] == "tx-hanging"]
    assert len(mine) == 1 and mine[0]["state"] == "Ongoing", listed
    described = requests.get(f"{base}/tx-hanging", timeout=10).json()
    assert described["partitions"] == [{"topic": f"persistent://public/default/{topic}", "partitions": [0]}]
    assert requests.get(f"{base}/nope", timeout=10).status_code == 404
    cli = [str(binary), "admin", "--admin-url", f"http://{broker.http}", "transactions"]
    out = subprocess.run(cli + ["abort", "tx-hanging"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out
    assert requests.get(f"{base}/tx-hanging", timeout=10).json()["state"] == "CompleteAbort"
    out = subprocess.run(cli + ["list"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "tx-hanging" in out.stdout, out
    # Nothing left open: the aborted record never shows, and the stable offset moved on.
    assert consume_all(broker.kafka, topic, "read_committed", idle_s=1.5) == []
    assert requests.post(f"{base}/tx-hanging/abort", timeout=10).status_code == 409
    # The fenced producer's commit fails.
    with pytest.raises(KafkaException):
        p.commit_transaction(10)
    # The metrics count the operator's abort; nothing is left open.
    from prometheus_client.parser import text_string_to_metric_families
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(requests.get(f"http://{broker.http}/metrics", timeout=10).text)
        for s in family.samples
    }
    assert samples["magnetar_transactions_aborted_total"] >= 1
    assert samples["magnetar_transactions_ongoing"] == 0
    assert samples["magnetar_transactions_committed_total"] == 0


def test_aiokafka_transactional_producer(broker):
    aiokafka = pytest.importorskip("aiokafka")
    import asyncio

    topic = unique_topic("txn-aio")
    create_topic(broker.kafka, topic, 1)

    async def run():
        p = aiokafka.AIOKafkaProducer(bootstrap_servers=broker.kafka, transactional_id="tx-aiokafka")
        await p.start()
        try:
            async with p.transaction():
                await p.send_and_wait(topic, b"aio-committed", partition=0)
            await p.begin_transaction()
            await p.send_and_wait(topic, b"aio-aborted", partition=0)
            await p.abort_transaction()
        finally:
            await p.stop()
        c = aiokafka.AIOKafkaConsumer(topic, bootstrap_servers=broker.kafka, isolation_level="read_committed",
                                      auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        try:
            got = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=500)
                for records in batch.values():
                    got.extend(r.value for r in records)
                if got and not batch:
                    break
            return got
        finally:
            await c.stop()

    assert asyncio.run(run()) == [b"aio-committed"]


def test_kafka_python_describe_producers_shows_the_open_transaction(broker):
    """DescribeProducers (KIP-664) through kafka-python's admin client: a transactional
    producer's open transaction shows its first offset, gone once committed; the epoch, last
    sequence and last timestamp are the producer's."""
    kafka = pytest.importorskip("kafka")
    if not hasattr(kafka.KafkaAdminClient, "describe_producers"):
        pytest.skip("this kafka-python has no describe_producers")
    topic = unique_topic("txn-producers")
    create_topic(broker.kafka, topic, 1)
    p = txn_producer(broker.kafka, "tx-described")
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=b"v%d" % i, partition=0, timestamp=1_700_000_000_000 + i)
    assert p.flush(20) == 0
    admin = kafka.KafkaAdminClient(bootstrap_servers=broker.kafka)
    try:
        tp = kafka.TopicPartition(topic, 0)
        state = admin.describe_producers([tp])[tp].active_producers
        assert len(state) == 1, state
        assert state[0].current_transaction_start_offset == 0
        assert state[0].last_sequence == 2
        assert state[0].last_timestamp == 1_700_000_000_002
        assert state[0].producer_epoch >= 0
        p.commit_transaction(20)
        after = admin.describe_producers([tp])[tp].active_producers
        assert [s.producer_id for s in after] == [state[0].producer_id]
        assert after[0].current_transaction_start_offset == -1
    finally:
        admin.close()
