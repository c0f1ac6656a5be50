"""Cluster mode with real clients: several `magnetar standalone` processes with a `[cluster]`
section sharing one etcd (metadata, bundle ownership, commit records) and one S3 bucket (moto's
server on loopback; every partition's data on the shared WAL).

1. three brokers: every broker's Metadata lists the three with distinct node ids, every
   partition of a 12-partition topic has a live leader; produce through one bootstrap, a group
   consumes everything through another (confluent-kafka; `kcat -L` per bootstrap);
2. `kill -9` of the broker leading the most partitions while an idempotent acks=all producer
   streams 5000 keyed messages: every acknowledged message is consumed afterwards by a fresh
   group, at the offset its delivery report named, none twice; leaders move to the survivors;
   a consumer reading through the failover reads every offset once, with no offset reset;
   and (deterministic, raw Produce) a batch the dead leader acknowledged, replayed to the new
   leader, is a duplicate (not appended again) while the producer's sequence continues there;
3. SIGTERM: the broker's bundles are handed over before its session TTL could expire, and every
   partition takes produce again;
4. a consumer group's coordinator (FindCoordinator) is killed -9: a new member of the group
   resumes exactly at the committed offsets;
5. configuration errors (exit 2): ZooKeeper named (TOML and Pulsar's metadataStoreUrl),
   storage.object_store required;
6. a topic created / extended (CreatePartitions) through one broker is seen by another at once
   (topic metadata cache invalidated by the etcd watch; kafka-python produces through it).
7. Pulsar clients follow their topic through bundle unloads;
8. a stalled object store fails produce retriably and acknowledges nothing;
9. the broker leading a topic is cut off from etcd (a stalled TCP proxy) while it still serves
   clients: it fences itself (/health 503), the other broker takes over after the session TTL,
   an idempotent stream loses and duplicates nothing; once etcd answers again the cut-off broker
   exits with an error (session expired) and, started again, rejoins under its old node id;
10. rolling restart (SIGTERM, start again on the same data directory and ports) of three
   brokers under a steady idempotent stream: no failed delivery, every message once;
11. etcd killed and started again (same data and port) within the session TTL: produce stalls
   and resumes, nothing lost or duplicated, brokers stay up.
12. a Pulsar Failover subscription (two consumers) whose owner is killed -9 while a producer
   sends: the clients follow the topic to the new owner, every confirmed send is delivered, no
   message acknowledged (committed) before the kill comes again, the position survives;
13. Pulsar producer and consumer on a topic whose owner is cut off from etcd: redirected to the
   broker that claims it after the session expired; every confirmed send stored once; the old
   owner exits once etcd answers and rejoins as a non-owner;
14. a Pulsar producer through two unloads of its topic's bundle (one moves it to the other
   broker): no send error, every send stored once in order; over a raw connection, the owner
   tells the producer CLOSE_PRODUCER on an unload;
15. a broker joins: the owners hand it the bundles the rendezvous rule gives it (rebalancing),
   and Kafka and Pulsar clients follow.
16. log compaction of a shared ledger: keyed updates to a `cleanup.policy=compact` topic,
   compacted through the admin API's trigger, read back from the beginning as the latest value
   of each key at its original offset.

Each test brings up its own cluster (its own etcd root and bucket prefix) on the module's etcd
and moto. Every wait is a bounded poll on an observable condition; on failure the tails of all
brokers' stderr and etcd's log are printed. Needs the `etcd` binary (skipped without it).
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import time
import uuid
from typing import Dict, List, Optional, Tuple

import pytest

from cluster_harness import (
    Cluster,
    Etcd,
    bundle_of,
    create_partitions,
    create_topic,
    cursor_covers,
    etcd_binary,
    find_coordinator,
    idempotent_batch,
    leader_epochs,
    init_producer_id,
    metadata,
    produce_batch,
    pulsar_cursor,
    rendezvous_node,
    wait_until,
    StallProxy,
)
from conftest import BrokerStartError, _test_failed

if etcd_binary() is None:
    pytest.skip("the `etcd` binary is not on PATH (Debian: apt-get install etcd-server); "
                "cluster mode needs etcd", allow_module_level=True)

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("cluster mode"), pytest.mark.timeout(90)]

BUCKET = "magnetar-cluster"
# Short enough for quick failovers, long enough that a loaded CI machine (4 pytest workers, each
# with brokers, etcd and moto on 2 cores) does not fence brokers by a slow keep-alive.
SESSION_TTL_MS = 4000
# No group join delay: the tests' groups have one member at a time.
GROUPS_TOML = "[groups]\ninitial_rebalance_delay_ms = 0\n"


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    e = Etcd(tmp_path_factory.mktemp("etcd"))
    try:
        e.start()
    except RuntimeError as err:
        pytest.fail(f"cannot start etcd: {err}", pytrace=False)
    yield e
    e.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    if shutil.which("moto_server") is None:
        pytest.skip("moto_server not found (pip install 'moto[server]')")
    from moto_s3 import MotoS3

    server = MotoS3(tmp_path_factory.mktemp("moto"))
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_cluster(request, binary, tmp_path, etcd, s3):
    """`make_cluster(n, session_ttl_ms=...)`: n brokers started together on a fresh etcd root
    and bucket prefix. Every broker is stopped at teardown; on failure the logs are printed."""
    made: List[Cluster] = []

    def make(n: int, session_ttl_ms: int = SESSION_TTL_MS,
             envs: Optional[List[Dict[str, str]]] = None, etcd_: Optional[Etcd] = None,
             rebalance_delay_ms: Optional[int] = None) -> Cluster:
        """`envs[i]`: more environment of broker i; `etcd_`: another etcd than the module's;
        `rebalance_delay_ms`: rebalancing on with that delay (off by default)."""
        tag = uuid.uuid4().hex[:8]
        c = Cluster(binary, tmp_path / f"cluster{len(made)}", etcd_ or etcd, f"s3://{BUCKET}/{tag}",
                    env=s3.env, session_ttl_ms=session_ttl_ms, metadata_root=f"/t-{tag}",
                    extra_toml=GROUPS_TOML, object_store_endpoint=s3.endpoint,
                    rebalance_delay_ms=rebalance_delay_ms)
        made.append(c)
        try:
            c.start_brokers(n, envs=envs)
        except (AssertionError, BrokerStartError) as e:
            if "without the `etcd` feature" in str(e) or "without the `etcd` feature" in c.logs():
                pytest.skip("this magnetar was built without the `etcd` feature")
            raise
        return c

    yield make
    failed = _test_failed(request)
    for c in made:
        c.stop_all()
        if failed:
            sys.stderr.write(f"\n===== cluster {c.workdir} logs =====\n{c.logs(80)}\n")


# --------------------------------------------------------------------------------------------
# client helpers (confluent-kafka)


def new_topic(c: Cluster, partitions: int, prefix: str = "cl") -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": c.bootstrap()})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    c.wait_leaders_live(topic, partitions)
    return topic


def producer(bootstrap: str, **extra):
    from confluent_kafka import Producer

    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 60000, "socket.timeout.ms": 10000,
            "reconnect.backoff.max.ms": 1000, "topic.metadata.refresh.interval.ms": 2000}
    conf.update(extra)
    return Producer(conf)


def produce_keys(bootstrap: str, topic: str, keys: List[int], partition=None,
                 timeout_s: float = 60.0) -> Dict[int, Tuple[int, int]]:
    """Produces key=value=str(k) for each k; asserts every delivery succeeded; returns
    key -> (partition, offset)."""
    p = producer(bootstrap)
    done: Dict[int, Tuple[int, int]] = {}
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append((msg.key(), err))
        else:
            done[int(msg.key())] = (msg.partition(), msg.offset())

    for k in keys:
        kw = {} if partition is None else {"partition": partition(k) if callable(partition) else partition}
        p.produce(topic, key=str(k).encode(), value=str(k).encode(), on_delivery=cb, **kw)
        p.poll(0)
    remaining = p.flush(timeout_s)
    assert remaining == 0 and not errors, f"{remaining} undelivered, errors: {errors[:5]}"
    assert len(done) == len(keys)
    return done


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> Dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw-" + uuid.uuid4().hex[:6]})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
                for p in range(partitions)}
    finally:
        c.close()


def consume_group_to_end(bootstrap: str, topic: str, group: str, hw: Dict[int, int],
                         timeout_s: float = 40.0, start: Optional[Dict[int, int]] = None,
                         **extra) -> List[Tuple[int, int, int]]:
    """Subscribes `group` (earliest when it has no offsets) and reads until every partition's
    position reached `hw[p]` (a partition starts at `start[p]`, the group's committed offset,
    else 0); returns [(partition, offset, key)] in arrival order."""
    from confluent_kafka import Consumer

    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": 6000,
            "topic.metadata.refresh.interval.ms": 2000}
    conf.update(extra)
    c = Consumer(conf)
    got: List[Tuple[int, int, int]] = []
    next_offset: Dict[int, int] = dict(start or {})
    errors = []
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        for _ in range(100_000):
            if all(next_offset.get(p, 0) >= end for p, end in hw.items()):
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"group {group} did not reach the end of {topic} in {timeout_s}s: positions "
                    f"{dict(sorted(next_offset.items()))} vs high watermarks {hw}; "
                    f"{len(got)} records; errors {errors[:5]}")
            for m in c.consume(500, 0.5):
                if m.error() is not None:
                    errors.append(m.error())
                    continue
                got.append((m.partition(), m.offset(), int(m.key())))
                next_offset[m.partition()] = m.offset() + 1
        return got
    finally:
        c.close()


class LiveReader:
    """A consumer (assign, from the beginning, `auto.offset.reset=error`) reading every partition
    in a thread while the cluster changes under it: it must neither skip nor re-read an offset,
    and an offset reset is an error, not a silent jump."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        import threading

        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": "live-" + uuid.uuid4().hex[:6],
            "enable.auto.commit": False, "auto.offset.reset": "error",
            "topic.metadata.refresh.interval.ms": 2000, "reconnect.backoff.max.ms": 1000})
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.records: List[Tuple[int, int, int]] = []
        self.next_offset: Dict[int, int] = {}
        self.problems: List[str] = []  # offset resets, gaps, re-reads
        self.transient: List[str] = []  # connection errors while a broker is down
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self._read()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.problems.append(f"reader thread died: {e!r}")

    def _read(self):
        from confluent_kafka import KafkaError

        deadline = time.monotonic() + 120
        while not self.stopping.is_set() and time.monotonic() < deadline:
            for m in self.consumer.consume(500, 0.2):
                err = m.error()
                if err is not None:
                    if err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE) \
                            or err.fatal():
                        self.problems.append(f"error {err}")
                    else:
                        self.transient.append(str(err))
                    continue
                p, o = m.partition(), m.offset()
                if o != self.next_offset.get(p, 0):
                    self.problems.append(f"partition {p}: offset {o} after {self.next_offset.get(p, 0) - 1}")
                self.next_offset[p] = o + 1
                self.records.append((p, o, int(m.key())))

    def wait_reached(self, hw: Dict[int, int], timeout_s: float) -> None:
        wait_until(lambda: all(self.next_offset.get(p, 0) >= end for p, end in hw.items())
                   or not self.thread.is_alive(), timeout_s, "the live reader to reach the end")

    def close(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.thread.join(timeout=10)
        self.consumer.close()


# --------------------------------------------------------------------------------------------
# 1. three brokers


def test_three_brokers_metadata_and_group_consume_through_another_bootstrap(make_cluster):
    from confluent_kafka.admin import AdminClient

    c = make_cluster(3)
    b0, b1, b2 = c.brokers
    ids = {b.node_id for b in c.brokers}
    assert len(ids) == 3, c.brokers

    # Every broker answers the same three brokers (raw Metadata v4 to that broker alone) ...
    for b in c.brokers:
        md = metadata(b.kafka)
        assert {f"{h}:{p}" for h, p in md.brokers.values()} == {x.kafka for x in c.brokers}
        assert set(md.brokers) == ids
    # ... and so does kcat -L with each broker as its only bootstrap.
    if shutil.which("kcat"):
        for b in c.brokers:
            out = subprocess.run(["kcat", "-L", "-J", "-b", b.kafka, "-m", "10"],
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            brokers = json.loads(out.stdout)["brokers"]
            assert {x["id"] for x in brokers} == ids, brokers

    topic = new_topic(c, 12)
    leaders = c.wait_leaders_live(topic, 12)
    # confluent-kafka's own view through the third broker agrees.
    md = AdminClient({"bootstrap.servers": b2.kafka}).list_topics(topic, timeout=15)
    assert set(md.brokers) == ids
    assert {p: m.leader for p, m in md.topics[topic].partitions.items()} == leaders
    print(f"leaders by node: {collections.Counter(leaders.values())}")

    n = 1200
    sent = produce_keys(b0.kafka, topic, list(range(n)))
    hw = high_watermarks(b1.kafka, topic, 12)
    assert sum(hw.values()) == n, hw
    got = consume_group_to_end(b1.kafka, topic, "g-" + uuid.uuid4().hex[:6], hw)
    assert sorted(k for _, _, k in got) == list(range(n))
    assert {k: (p, o) for p, o, k in got} == sent


# --------------------------------------------------------------------------------------------
# 2. kill -9 during an idempotent stream


def test_kill9_of_busiest_leader_during_idempotent_produce_loses_and_duplicates_nothing(make_cluster, request):
    c = make_cluster(3)
    topic = new_topic(c, 12)
    leaders = c.wait_leaders_live(topic, 12)
    counts = collections.Counter(leaders.values())
    victim = c.by_node(counts.most_common(1)[0][0])
    survivors = [b for b in c.brokers if b is not victim]
    print(f"leaders by node {dict(counts)}; killing node {victim.node_id}")

    n, kill_after = 5000, 1000
    reader = LiveReader(c.bootstrap(), topic, 12)
    request.addfinalizer(reader.close)
    p = producer(c.bootstrap())
    acked: Dict[int, Tuple[int, int]] = {}
    failed: Dict[int, str] = {}

    def cb(err, msg):
        k = int(msg.key())
        if err is not None:
            failed[k] = str(err)
        else:
            acked[k] = (msg.partition(), msg.offset())

    killed_at, in_flight = None, 0
    stream_deadline = time.monotonic() + 60
    for k in range(n):
        # At most 500 messages outstanding, so the stream is spread over time rather than one
        # burst, and the kill lands while messages are in flight.
        for _ in range(10_000):
            if len(p) < 500:
                break
            assert time.monotonic() < stream_deadline, (
                f"the stream stalled: {len(acked)} acked, {len(p)} outstanding after 60 s")
            p.poll(0.01)
        p.produce(topic, key=str(k).encode(), value=b"v%d" % k, on_delivery=cb)
        p.poll(0)
        if killed_at is None and len(acked) >= kill_after and len(p) > 0:
            in_flight = len(p)
            victim.kill9()
            killed_at = time.monotonic()
            print(f"kill -9 node {victim.node_id} after {k + 1} produced: {len(acked)} acked, "
                  f"{in_flight} in flight")
    if killed_at is None:  # the whole stream was enqueued before 1000 acks: kill now
        wait_until(lambda: p.poll(0.05) >= 0 and len(acked) >= kill_after, 30,
                   f"{kill_after} acknowledgements")
        in_flight = len(p)
        victim.kill9()
        killed_at = time.monotonic()
        print(f"kill -9 node {victim.node_id} after the whole stream was enqueued: "
              f"{len(acked)} acked, {in_flight} in flight")
    remaining = p.flush(60)
    print(f"produced: {len(acked)} acked, {len(failed)} failed, {remaining} undelivered after "
          f"flush; {time.monotonic() - killed_at:.1f}s after the kill")
    if failed:
        print(f"first failures: {sorted(failed.items())[:5]}")
    assert remaining == 0, f"{remaining} messages neither delivered nor failed within 60 s"
    assert in_flight > 0, "nothing was in flight at the kill"
    # Idempotent with message.timeout.ms 60 s: the failover (~TTL) must not fail any message.
    assert not failed, f"{len(failed)} deliveries failed, e.g. {sorted(failed.items())[:5]}"

    # The leaders moved to the survivors (both survivors agree).
    moved = c.wait_leaders_live(topic, 12, via=survivors)
    assert victim.node_id not in moved.values()
    for b in survivors:
        assert victim.node_id not in metadata(b.kafka).brokers

    # Every acknowledged message once at its reported offset, no duplicate, nothing else.
    hw, got = assert_consumed_exactly_once(c.bootstrap(survivors), topic, 12, acked, n)

    # The consumer that was reading through the failover read the same records, each once.
    try:
        reader.wait_reached(hw, 30)
    finally:
        reader.close()
    print(f"live reader: {len(reader.records)} records, problems {reader.problems[:5]}, "
          f"{len(reader.transient)} transient errors {sorted(set(reader.transient))[:3]}")
    assert not reader.problems, reader.problems[:10]
    assert sorted(reader.records) == sorted(got)


def test_idempotent_batch_replayed_to_the_new_leader_after_kill9_is_not_appended_twice(make_cluster):
    """The deterministic half of scenario 2: a batch the dead leader acknowledged, sent again
    (same producer id, epoch and sequence) to the broker that took the partition over, is
    recognized as a duplicate (the original offset, nothing appended), and the producer's
    sequence continues there (next sequence accepted, a gap refused)."""
    c = make_cluster(2)
    # Producer ids are unique across the brokers.
    pids = [init_producer_id(b.kafka) for b in c.brokers for _ in range(3)]
    assert all(e == 0 for e, _, _ in pids) and len({pid for _, pid, _ in pids}) == len(pids), pids

    topic = new_topic(c, 1)
    leader = c.by_node(c.wait_leaders_live(topic, 1)[0])
    other = next(b for b in c.brokers if b is not leader)
    err, pid, epoch = init_producer_id(other.kafka)
    assert err == 0
    first = idempotent_batch(pid, epoch, 0, [b"a", b"b", b"c"])
    second = idempotent_batch(pid, epoch, 3, [b"d", b"e", b"f"])
    assert produce_batch(other.kafka, topic, 0, first)[0] == 6  # NOT_LEADER_OR_FOLLOWER
    assert produce_batch(leader.kafka, topic, 0, first) == (0, 0)
    assert produce_batch(leader.kafka, topic, 0, second) == (0, 3)

    leader.kill9()
    c.wait_leaders_live(topic, 1, via=[other])
    replay = produce_batch(other.kafka, topic, 0, second)
    assert replay in ((0, 3), (46, -1)), f"replayed batch answered {replay}"  # 46: DUPLICATE_SEQUENCE_NUMBER
    assert high_watermarks(other.kafka, topic, 1) == {0: 6}
    gap = produce_batch(other.kafka, topic, 0, idempotent_batch(pid, epoch, 10, [b"x"]))
    assert gap[0] == 45, f"a sequence gap answered {gap}"  # OUT_OF_ORDER_SEQUENCE_NUMBER
    assert produce_batch(other.kafka, topic, 0, idempotent_batch(pid, epoch, 6, [b"g"])) == (0, 6)
    assert high_watermarks(other.kafka, topic, 1) == {0: 7}


# --------------------------------------------------------------------------------------------
# 3. SIGTERM hands bundles over at once


def test_sigterm_hands_bundles_over_before_the_session_ttl(make_cluster):
    # A long TTL, so a handover before it is the release on SIGTERM and not the lease expiry.
    ttl_ms = 10_000
    c = make_cluster(3, session_ttl_ms=ttl_ms)
    topic = new_topic(c, 12)
    leaders = c.wait_leaders_live(topic, 12)
    counts = collections.Counter(leaders.values())
    victim = c.by_node(counts.most_common(1)[0][0])
    survivors = [b for b in c.brokers if b is not victim]
    before = produce_keys(c.bootstrap(), topic, list(range(240)), partition=lambda k: k % 12)

    t0 = time.monotonic()
    victim.sigterm()

    def handed_over():
        views = [metadata(b.kafka, [topic]) for b in survivors]
        for md in views:
            if victim.node_id in md.brokers:
                return False
            t = md.topics[topic]
            if t.error or any(e or leader == victim.node_id or leader < 0
                              for e, leader in t.partitions.values()):
                return False
        return views[0].topics[topic].partitions == views[1].topics[topic].partitions

    wait_until(handed_over, ttl_ms / 1000 - 0.5, "every partition led by a survivor",
               interval_s=0.05, on_timeout=c.logs)
    elapsed = time.monotonic() - t0
    print(f"node {victim.node_id} led {counts[victim.node_id]} of 12 partitions; handed over "
          f"{elapsed:.2f}s after SIGTERM (session TTL {ttl_ms / 1000:.0f}s)")
    assert elapsed < ttl_ms / 1000
    assert victim.stop(check=False) == 0, "SIGTERM exit code"

    # Every partition takes produce again, and the earlier records are still there.
    boot = c.bootstrap(survivors)
    after = produce_keys(boot, topic, list(range(240, 264)), partition=lambda k: k % 12,
                         timeout_s=30)
    assert {p for p, _ in after.values()} == set(range(12))
    hw = high_watermarks(boot, topic, 12)
    assert hw == {p: 22 for p in range(12)}, hw
    got = consume_group_to_end(boot, topic, "after-term-" + uuid.uuid4().hex[:6], hw)
    assert {k: (p, o) for p, o, k in got} == {**before, **after}


# --------------------------------------------------------------------------------------------
# 4. the group coordinator dies


def test_group_resumes_at_committed_offsets_after_its_coordinator_is_killed(make_cluster):
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    c = make_cluster(3)
    parts, per = 6, 100
    topic = new_topic(c, parts)
    produce_keys(c.bootstrap(), topic, list(range(parts * per)), partition=lambda k: k % parts)
    group = "resume-" + uuid.uuid4().hex[:6]

    # A member of the group reads the topic and commits a different offset in the middle of each
    # partition (as if it had processed that far).
    want = {p: 20 + 11 * p for p in range(parts)}
    first = Consumer({"bootstrap.servers": c.bootstrap(), "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "session.timeout.ms": 6000})
    try:
        first.subscribe([topic])
        seen_parts: Dict[int, int] = {}
        deadline = time.monotonic() + 30
        while len(seen_parts) < parts and time.monotonic() < deadline:
            for m in first.consume(100, 0.5):
                assert m.error() is None, m.error()
                seen_parts[m.partition()] = m.offset()
        assert len(seen_parts) == parts, f"read only partitions {sorted(seen_parts)} in 30 s"
        first.commit(offsets=[TopicPartition(topic, p, o) for p, o in want.items()],
                     asynchronous=False)
        committed = {tp.partition: tp.offset for tp in
                     first.committed([TopicPartition(topic, p) for p in range(parts)], timeout=15)}
    finally:
        first.close()
    assert committed == want
    start = committed

    # The coordinator, as every broker and confluent-kafka's admin client name it.
    answers = {b.name: find_coordinator(b.kafka, group) for b in c.brokers}
    assert len({(e, nid) for e, nid, _ in answers.values()}) == 1 and \
        next(iter(answers.values()))[0] == 0, answers
    coordinator = c.by_node(next(iter(answers.values()))[1])
    admin = AdminClient({"bootstrap.servers": c.bootstrap()})  # kept alive until the result
    desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result(20)
    assert desc.coordinator.id == coordinator.node_id, (desc.coordinator, answers)
    survivors = [b for b in c.brokers if b is not coordinator]
    print(f"group {group}: coordinator node {coordinator.node_id}; committed {committed}")

    coordinator.kill9()
    t0 = time.monotonic()

    def moved():
        out = [find_coordinator(b.kafka, group) for b in survivors]
        ok = all(e == 0 and nid != coordinator.node_id and nid in {s.node_id for s in survivors}
                 for e, nid, _ in out)
        return out if ok and out[0][1] == out[1][1] else False

    new = wait_until(moved, 20, "a live coordinator for the group", on_timeout=c.logs)
    print(f"new coordinator node {new[0][1]} {time.monotonic() - t0:.1f}s after the kill")

    boot = c.bootstrap(survivors)
    admin = AdminClient({"bootstrap.servers": boot})
    from confluent_kafka import ConsumerGroupTopicPartitions

    listed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(parts)])]
    )[group].result(15)
    assert {tp.partition: tp.offset for tp in listed.topic_partitions} == committed

    hw = high_watermarks(boot, topic, parts)
    assert hw == {p: per for p in range(parts)}, hw
    got = consume_group_to_end(boot, topic, group, hw, start=start)
    by_part: Dict[int, List[int]] = collections.defaultdict(list)
    for p, o, _ in got:
        by_part[p].append(o)
    for p in range(parts):
        assert by_part.get(p, []) == list(range(start[p], per)), (
            f"partition {p}: committed {committed[p]}, resumed with offsets "
            f"{by_part.get(p, [])[:5]}...{by_part.get(p, [])[-3:]} ({len(by_part.get(p, []))})")


# --------------------------------------------------------------------------------------------
# 5. configuration errors


@pytest.mark.parametrize("case", ["zookeeper", "zookeeper-pulsar-conf", "no-object-store"])
def test_cluster_config_errors_are_clear(binary, tmp_path, etcd, case):
    if case == "zookeeper":
        cfg = tmp_path / "bad.toml"
        cfg.write_text('version = 1\n[storage]\nobject_store = "file:///tmp/x"\n'
                       '[cluster]\nmetadata_store = "zk:localhost:2181"\n')
        expect = ["ZooKeeper", "cluster.metadata_store", "zk:localhost:2181"]
    elif case == "zookeeper-pulsar-conf":
        # Pulsar's own key in a properties file (KoP-style standalone.conf).
        cfg = tmp_path / "standalone.conf"
        cfg.write_text("metadataStoreUrl=zk:localhost:2181\n")
        expect = ["ZooKeeper", "zk:localhost:2181"]
    else:
        cfg = tmp_path / "bad.toml"
        cfg.write_text(f'version = 1\n[cluster]\nmetadata_store = "etcd:{etcd.endpoint}"\n')
        expect = ["storage.object_store"]
    out = subprocess.run(
        [str(binary), "standalone", "--config", str(cfg), "--data-dir", str(tmp_path / "d"),
         "--bind", "127.0.0.1", "--kafka-port", "0", "--pulsar-port", "0", "--http-port", "0"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 2, out  # 2: a configuration error
    assert '"event":"listening"' not in out.stdout, out.stdout
    assert "configuration error" in out.stderr, out.stderr
    for word in expect:
        assert word in out.stderr, out.stderr


# --------------------------------------------------------------------------------------------
# 6. topic metadata through another broker


def test_topic_and_partitions_created_through_one_broker_are_seen_by_another_at_once(make_cluster):
    from kafka import KafkaProducer

    c = make_cluster(2)
    a, b = c.brokers
    topic = f"seen-{uuid.uuid4().hex[:8]}"
    # b has looked the topic up (and found nothing) before it exists.
    for _ in range(2):
        assert metadata(b.kafka, [topic]).topics[topic].error == 3  # UNKNOWN_TOPIC_OR_PARTITION

    assert create_topic(a.kafka, topic, 3) == (0, None)
    t0 = time.monotonic()

    def seen(count):
        def check():
            t = metadata(b.kafka, [topic]).topics[topic]
            return t.error == 0 and len(t.partitions) == count and \
                all(e == 0 and leader >= 0 for e, leader in t.partitions.values())
        return check

    wait_until(seen(3), 3, f"{b} to see {topic} created through {a}", interval_s=0.02)
    print(f"topic seen through the other broker after {time.monotonic() - t0:.3f}s")

    # kafka-python produces through b alone to every partition.
    kp = KafkaProducer(bootstrap_servers=b.kafka, acks="all", request_timeout_ms=15000)
    try:
        futures = [kp.send(topic, key=b"k%d" % p, value=b"v%d" % p, partition=p) for p in range(3)]
        kp.flush(timeout=20)
        assert sorted(f.get(timeout=15).partition for f in futures) == [0, 1, 2]
    finally:
        kp.close(timeout=5)

    # b's cache holds the 3-partition topic; a extends it to 6.
    assert len(metadata(b.kafka, [topic]).topics[topic].partitions) == 3
    assert create_partitions(a.kafka, topic, 6) == (0, None)
    t0 = time.monotonic()
    wait_until(seen(6), 3, f"{b} to see 6 partitions after CreatePartitions through {a}",
               interval_s=0.02)
    print(f"new partitions seen through the other broker after {time.monotonic() - t0:.3f}s")
    c.wait_leaders_live(topic, 6)
    produced = produce_keys(b.kafka, topic, list(range(3, 6)), partition=lambda k: k, timeout_s=30)
    assert {p for p, _ in produced.values()} == {3, 4, 5}
    assert high_watermarks(b.kafka, topic, 6) == {p: 1 for p in range(6)}


# --------------------------------------------------------------------------------------------
# 7. Pulsar clients follow a bundle unload; the admin API redirects to the owner


def test_pulsar_consumer_follows_its_topic_through_bundle_unloads(make_cluster):
    import pulsar
    import requests

    c = make_cluster(2)
    a, b = c.brokers
    topic = "persistent://public/default/moving-" + uuid.uuid4().hex[:8]
    client = pulsar.Client(f"pulsar://{a.pulsar}", operation_timeout_seconds=30)
    try:
        consumer = client.subscribe(topic, "s1", consumer_type=pulsar.ConsumerType.Shared,
                                    initial_position=pulsar.InitialPosition.Earliest)
        producer = client.create_producer(topic, send_timeout_millis=30_000)
        for i in range(10):
            producer.send(f"before-{i}".encode())
        first = []
        for _ in range(10):
            m = consumer.receive(15_000)
            first.append(m.data().decode())
            consumer.acknowledge(m)
        assert sorted(first) == sorted(f"before-{i}" for i in range(10))
        # The client groups acknowledgements (100 ms): wait until the owner has them (the
        # stats call through broker b is redirected to the owner when b is not it).
        stats_path = f"/admin/v2/persistent/public/default/{topic.rsplit('/', 1)[1]}/stats"

        def acked():
            r = requests.get(f"http://{b.http}{stats_path}", timeout=10)
            return r.status_code == 200 and r.json()["subscriptions"]["s1"]["msgBacklog"] == 0

        wait_until(acked, 15, "the 10 acknowledgements recorded by the owner")

        # The HTTP lookup names the owner; the same call through the other broker too.
        path = f"/lookup/v2/topic/persistent/public/default/{topic.rsplit('/', 1)[1]}"
        owners = {requests.get(f"http://{x.http}{path}", timeout=10).json()["brokerUrl"]
                  for x in (a, b)}
        assert len(owners) == 1, owners

        # Unload every bundle of the namespace through broker a: bundles a does not own are
        # answered 307 to their owner (requests follows it with the same method).
        bundles = requests.get(f"http://{a.http}/admin/v2/namespaces/public/default/bundles",
                               timeout=10).json()
        assert bundles["numBundles"] == 4 and len(bundles["boundaries"]) == 5
        redirected = 0
        for lo, hi in zip(bundles["boundaries"], bundles["boundaries"][1:]):
            r = requests.put(f"http://{a.http}/admin/v2/namespaces/public/default/{lo}_{hi}/unload",
                             timeout=10)
            if r.history:
                assert r.history[0].status_code == 307
                redirected += 1
            assert r.status_code in (204, 503), (r.status_code, r.text)
        print(f"{redirected} of 4 unloads redirected to the other broker")
        cluster = requests.get(f"http://{a.http}/admin/v2/clusters", timeout=10).json()[0]
        listed = requests.get(f"http://{b.http}/admin/v2/brokers/{cluster}", timeout=10).json()
        assert sorted(listed) == sorted([a.http, b.http]), listed

        # The producer and consumer reconnect (to whichever broker claimed the bundle) and go on;
        # nothing acknowledged before is delivered again.
        for i in range(10):
            producer.send(f"after-{i}".encode())
        second = []
        deadline = time.monotonic() + 30
        while len(second) < 10 and time.monotonic() < deadline:
            try:
                m = consumer.receive(5_000)
            except Exception:  # pulsar.Timeout
                continue
            second.append(m.data().decode())
            consumer.acknowledge(m)
        assert sorted(second) == sorted(f"after-{i}" for i in range(10)), second
    finally:
        client.close()


# --------------------------------------------------------------------------------------------
# 8. the object store stalls


def test_stalled_object_store_fails_produce_retriably_and_acknowledges_nothing_false(
        binary, tmp_path, etcd, s3):
    from confluent_kafka import KafkaError, Producer

    proxy = StallProxy(s3.endpoint.removeprefix("http://"))
    tag = uuid.uuid4().hex[:8]
    c = Cluster(binary, tmp_path / "c", etcd, f"s3://{BUCKET}/{tag}", env=s3.env,
                metadata_root=f"/t-{tag}", object_store_endpoint=proxy.endpoint,
                storage_toml=("wal_commit_timeout_ms = 1500\nobject_store_timeout_ms = 1000\n"
                              "object_store_retries = 0\n"),
                extra_toml=GROUPS_TOML)
    try:
        c.start_brokers(1)
        topic = new_topic(c, 4)
        c.wait_leaders_live(topic, 4)
        before = produce_keys(c.bootstrap(), topic, list(range(100)), partition=lambda k: k % 4)

        proxy.stall()
        acked, failed = {}, []

        def cb(err, msg):
            if err is None:
                acked[int(msg.key())] = (msg.partition(), msg.offset())
            else:
                failed.append(err)

        p = Producer({"bootstrap.servers": c.bootstrap(), "acks": "all", "linger.ms": 5,
                      "message.timeout.ms": 6000, "retries": 0})
        for k in range(100, 150):
            p.produce(topic, key=str(k).encode(), value=str(k).encode(), partition=k % 4,
                      on_delivery=cb)
        p.flush(20)
        print(f"during the stall: {len(acked)} acknowledged, {len(failed)} failed: "
              f"{sorted({e.name() for e in failed})}")
        assert not acked, f"acknowledged while the object store was stalled: {acked}"
        assert len(failed) == 50
        # Errors Kafka defines as retriable (KAFKA_STORAGE_ERROR is a retriable
        # KafkaStorageException; librdkafka's flag on a report with retries=0 says nothing), or
        # the client's own timeout.
        retriable = {KafkaError.KAFKA_STORAGE_ERROR, KafkaError.REQUEST_TIMED_OUT,
                     KafkaError._MSG_TIMED_OUT, KafkaError.NOT_LEADER_FOR_PARTITION}
        assert all(e.code() in retriable for e in failed), failed

        proxy.resume()
        after = produce_keys(c.bootstrap(), topic, list(range(150, 250)), partition=lambda k: k % 4,
                             timeout_s=60)
        hw = high_watermarks(c.bootstrap(), topic, 4)
        got = consume_group_to_end(c.bootstrap(), topic, "stall-" + tag, hw)
        seen = {k: (p_, o) for p_, o, k in got}
        # Exactly what was acknowledged, at its offsets: nothing of the failed appends.
        assert seen == {**before, **after}, (len(seen), len(before) + len(after))
        assert hw == {p_: 50 for p_ in range(4)}, hw
    finally:
        proxy.resume()
        c.stop_all()
        proxy.stop()


# --------------------------------------------------------------------------------------------
# 9-11. etcd trouble and rolling restarts under a steady idempotent stream


class RateProducer:
    """An idempotent acks=all confluent producer in a thread sending keys 0..n-1 (key = value =
    str(k), partition k % partitions) at a fixed rate, then flushing. `acked`: key ->
    (partition, offset) from the delivery reports; `failed`: key -> error."""

    def __init__(self, bootstrap: str, topic: str, n: int, rate_per_s: float, partitions: int,
                 **extra):
        import threading

        self.topic, self.n, self.rate, self.partitions = topic, n, rate_per_s, partitions
        self.p = producer(bootstrap, **extra)
        self.acked: Dict[int, Tuple[int, int]] = {}
        self.failed: Dict[int, str] = {}
        self.produced = 0  # keys handed to the client so far
        self.remaining: Optional[int] = None  # after the final flush
        self.error: Optional[BaseException] = None
        self._abandon = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def abandon(self) -> None:
        """Stops producing and flushing (teardown after a failure); returns once the thread
        ended."""
        self._abandon.set()
        self.thread.join(10)

    def _cb(self, err, msg):
        k = int(msg.key())
        if err is not None:
            self.failed[k] = str(err)
        else:
            self.acked[k] = (msg.partition(), msg.offset())

    def _run(self):
        try:
            t0 = time.monotonic()
            for k in range(self.n):
                if self._abandon.is_set():
                    return
                # Paced against the start: a fixed rate whatever the cluster does (produce
                # only queues; a stalled partition's messages wait in the client).
                due = t0 + k / self.rate
                for _ in range(100_000):
                    now = time.monotonic()
                    if now >= due:
                        break
                    self.p.poll(min(due - now, 0.05))
                self.p.produce(self.topic, key=str(k).encode(), value=str(k).encode(),
                               partition=k % self.partitions, on_delivery=self._cb)
                self.produced = k + 1
                self.p.poll(0)
            deadline = time.monotonic() + 60
            for _ in range(1000):
                self.remaining = self.p.flush(0.2)
                if not self.remaining or self._abandon.is_set() or time.monotonic() > deadline:
                    break
        except BaseException as e:  # noqa: BLE001 - reported by `finish`
            self.error = e

    def finish(self, timeout_s: float = 75.0) -> None:
        """Waits for the stream and its flush; asserts every message was delivered."""
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), (
            f"the producer did not finish in {timeout_s}s: {self.produced} produced, "
            f"{len(self.acked)} acked, {len(self.failed)} failed")
        assert self.error is None, f"producer thread: {self.error!r}"
        print(f"producer: {len(self.acked)} acked, {len(self.failed)} failed, "
              f"{self.remaining} undelivered after the flush")
        assert self.remaining == 0, f"{self.remaining} messages neither delivered nor failed"
        assert not self.failed, (
            f"idempotent producer: {len(self.failed)} deliveries failed, e.g. "
            f"{sorted(self.failed.items())[:5]}")
        assert len(self.acked) == self.n


def assert_consumed_exactly_once(bootstrap: str, topic: str, partitions: int,
                                 acked: Dict[int, Tuple[int, int]], n: int
                                 ) -> Tuple[Dict[int, int], List[Tuple[int, int, int]]]:
    """A fresh group reads the topic to its high watermarks: each key of 0..n-1 exactly once, at
    the (partition, offset) its delivery report named, and nothing else. Returns the high
    watermarks and the records read (partition, offset, key)."""
    hw = high_watermarks(bootstrap, topic, partitions)
    got = consume_group_to_end(bootstrap, topic, "check-" + uuid.uuid4().hex[:6], hw)
    seen = collections.Counter(k for _, _, k in got)
    duplicates = {k: v for k, v in seen.items() if v > 1}
    lost = sorted(set(acked) - set(seen))
    at = {(p_, o): k for p_, o, k in got}
    misplaced = {k: po for k, po in acked.items() if at.get(po) != k}
    print(f"consumed {len(got)} records (high watermarks {sum(hw.values())}); duplicated keys "
          f"{len(duplicates)}, lost {len(lost)}, misplaced {len(misplaced)}")
    assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:10]}"
    assert not duplicates, (
        f"{len(duplicates)} keys consumed more than once, e.g. "
        f"{[(k, [(p_, o) for p_, o, kk in got if kk == k]) for k in list(duplicates)[:5]]}")
    assert not misplaced, f"delivery reports name other records' offsets: {list(misplaced.items())[:5]}"
    assert sorted(seen) == list(range(n)), f"unexpected keys {sorted(set(seen) - set(range(n)))[:10]}"
    assert sum(hw.values()) == n, hw
    return hw, got


def health(b) -> Tuple[int, dict]:
    import requests

    r = requests.get(f"http://{b.http}/health", timeout=2)
    try:
        body = r.json()
    except ValueError:
        body = {"text": r.text}
    return r.status_code, body


def victim_behind_etcd_proxy(request, make_cluster, etcd, clients: Optional[list] = None
                             ) -> Tuple[Cluster, List[StallProxy], List[Dict[str, str]]]:
    """A one-broker cluster whose broker (the test's victim) reaches etcd through a StallProxy of
    its own, and a second proxy for a broker the test adds (`env[1]`). Teardown, in order:
    `clients` (closed), the brokers (they release through etcd, so the proxies are resumed
    first), the proxies. Returns (cluster, proxies, env per proxy)."""
    proxies = [StallProxy(etcd.endpoint.removeprefix("http://")) for _ in range(2)]
    clusters: List[Cluster] = []

    def cleanup():
        close_quietly(*(clients or []))
        for px in proxies:
            px.resume()
        for cl in clusters:
            cl.stop_all()
        for px in proxies:
            px.stop()

    request.addfinalizer(cleanup)
    env = [{"MAGNETAR_CLUSTER__METADATA_STORE": f"etcd:{px.endpoint}"} for px in proxies]
    clusters.append(make_cluster(1, envs=[env[0]]))
    return clusters[0], proxies, env


def test_owner_cut_off_from_etcd_fences_itself_exits_on_expiry_and_rejoins(make_cluster, etcd, request):
    """Each broker reaches etcd through its own StallProxy. The broker leading every partition of
    a 4-partition topic is cut off from etcd (its client connections stay open, nothing flows)
    while it still serves clients and an idempotent producer (bootstrap: both brokers) streams to
    the topic: it fences itself (/health 503 "fenced"), the other broker takes every partition
    once the session TTL ran out in etcd, the stream goes on there, and no acknowledged message
    is lost or duplicated. When etcd answers again the cut-off broker learns its session expired
    and exits with an error; started again on its data directory it rejoins under its old node
    id, owning none of those partitions."""
    # The victim alone first: it claims every bundle, so it leads every partition of the topic
    # (nothing is rebalanced when the second broker joins).
    c, proxies, env = victim_behind_etcd_proxy(request, make_cluster, etcd)
    parts, n = 4, 2000
    topic = new_topic(c, parts)
    victim, proxy = c.brokers[0], proxies[0]
    other = c.add_broker(env=env[1])
    c.wait_brokers_registered()
    leaders = c.wait_leaders_live(topic, parts)
    assert set(leaders.values()) == {victim.node_id}, leaders
    victim_ports, victim_id = victim.ports(), victim.node_id
    ttl_s = c.session_ttl_ms / 1000
    print(f"node {victim_id} leads {leaders}; cutting it off from etcd")

    # librdkafka's default socket.timeout.ms (60 s): the client waits for the broker's answers
    # rather than dropping the connection first.
    prod = RateProducer(c.bootstrap(), topic, n, rate_per_s=250, partitions=parts,
                        **{"socket.timeout.ms": 60000})
    request.addfinalizer(prod.abandon)
    wait_until(lambda: len(prod.acked) >= 300 or prod.failed, 20, "300 acknowledgements")
    proxy.stall()
    t0 = time.monotonic()
    acked_at_stall = len(prod.acked)

    wait_until(lambda: health(victim) == (503, {"status": "fenced"}), ttl_s + 3,
               "the cut-off broker's /health to answer 503 fenced", interval_s=0.05,
               on_timeout=c.logs)
    fenced_after = time.monotonic() - t0
    assert victim.alive()

    def other_leads_all():
        t = metadata(other.kafka, [topic]).topics[topic]
        return t.error == 0 and len(t.partitions) == parts and \
            all(e == 0 and leader == other.node_id for e, leader in t.partitions.values())

    wait_until(other_leads_all, ttl_s + 15, f"node {other.node_id} to lead every partition",
               interval_s=0.05, on_timeout=c.logs)
    took_over_after = time.monotonic() - t0
    print(f"{acked_at_stall} acked at the stall; fenced after {fenced_after:.2f}s, partitions "
          f"taken over after {took_over_after:.2f}s (TTL {ttl_s}s)")
    assert fenced_after < ttl_s, "fenced only after the TTL"
    wait_until(lambda: set(metadata(other.kafka).brokers) == {other.node_id}, 5,
               f"node {other.node_id} to list itself alone", on_timeout=c.logs)

    # The stream goes on through the new leader: the client finds it (the broker's own
    # commit timeout, 10 s, bounds how long a request it accepted before the fence hangs).
    def victim_view():
        try:
            md = metadata(victim.kafka, [topic], timeout_s=2)
            view = f"brokers {sorted(md.brokers)}, partitions (error, leader) {md.topics[topic].partitions}"
        except Exception as e:  # noqa: BLE001 - for the report
            view = repr(e)
        return (f"{len(prod.acked)} acked ({acked_at_stall} at the stall), {prod.produced} produced; "
                f"the fenced broker's Metadata answer: {view}; its /health {health(victim)}")

    wait_until(lambda: len(prod.acked) >= acked_at_stall + 200 or prod.failed, 20,
               "the stream to go on through the new leader (200 more acknowledgements)",
               on_timeout=victim_view)
    print(f"acknowledgements resumed; {time.monotonic() - t0:.2f}s after the stall")

    prod.finish()
    assert victim.alive(), "the cut-off broker exited while etcd was unreachable"
    assert_consumed_exactly_once(other.kafka, topic, parts, prod.acked, n)

    # etcd answers again: the session is gone, the broker exits with an error.
    proxy.resume()
    wait_until(lambda: not victim.alive(), 20, "the cut-off broker to exit once etcd answers",
               on_timeout=c.logs)
    rc = victim.stop(check=False)
    stderr = victim.stderr_text()
    print(f"exit code {rc}; last stderr lines:\n" + "\n".join(stderr.splitlines()[-3:]))
    assert rc != 0, f"exit code {rc}"
    assert "the cluster session with etcd expired" in stderr, stderr[-2000:]

    # Started again on its data directory and ports: the same node id, owning nothing it had.
    victim.start(ports=victim_ports)
    c.wait_brokers_registered()
    assert victim.node_id == victim_id, (victim.node_id, victim_id)
    for via in (other, victim):
        assert set(metadata(via.kafka).brokers) == {victim_id, other.node_id}
    final = c.wait_leaders_live(topic, parts)
    assert set(final.values()) == {other.node_id}, final
    assert high_watermarks(victim.kafka, topic, parts) == high_watermarks(other.kafka, topic, parts)


def test_rolling_restart_under_a_steady_idempotent_stream_fails_and_duplicates_nothing(make_cluster, request):
    """Three brokers; an idempotent acks=all producer sends 3000 messages at 150/s while each
    broker in turn is stopped with SIGTERM (its bundles released at once) and started again on
    its data directory and ports (the next one only once every broker lists it again, under its
    old node id). Every delivery succeeds (nothing a client could not retry) and every message is
    consumed once, at its offset."""
    c = make_cluster(3)
    parts, n = 6, 3000
    topic = new_topic(c, parts)
    print(f"leaders {c.wait_leaders_live(topic, parts)}")
    ids = {b.name: b.node_id for b in c.brokers}

    prod = RateProducer(c.bootstrap(), topic, n, rate_per_s=150, partitions=parts)
    request.addfinalizer(prod.abandon)
    wait_until(lambda: len(prod.acked) >= 300 or prod.failed, 20, "300 acknowledgements")
    pending = list(c.brokers)
    for _ in range(len(c.brokers)):
        # Next: the broker leading the most partitions among those not restarted yet, so each
        # restart moves leaders when it can (no rebalancing happens when a broker joins).
        counts = collections.Counter(c.wait_leaders_live(topic, parts).values())
        b = max(pending, key=lambda x: counts.get(x.node_id, 0))
        pending.remove(b)
        led = counts.get(b.node_id, 0)
        ports = b.ports()
        at = (prod.produced, len(prod.acked))
        t0 = time.monotonic()
        b.sigterm()
        wait_until(lambda: not b.alive(), 15, f"{b} to exit after SIGTERM", on_timeout=c.logs)
        assert b.stop(check=False) == 0, f"{b}: SIGTERM exit code"
        b.start(ports=ports)
        c.wait_brokers_registered()
        assert b.node_id == ids[b.name], (b, ids)
        print(f"{b.name} (node {b.node_id}, leading {led} of {parts}) restarted in "
              f"{time.monotonic() - t0:.2f}s; produced/acked {at} -> "
              f"{(prod.produced, len(prod.acked))}")
        assert not prod.failed, sorted(prod.failed.items())[:5]
        # The stream goes on (150 more acknowledgements) before the next broker goes down.
        acked_now = len(prod.acked)
        wait_until(lambda: len(prod.acked) >= min(n, acked_now + 150) or prod.failed, 30,
                   "150 more acknowledgements after the restart", on_timeout=c.logs)
    assert prod.thread.is_alive(), "the stream ended before the last restart"
    prod.finish()
    c.wait_leaders_live(topic, parts)
    assert_consumed_exactly_once(c.bootstrap(), topic, parts, prod.acked, n)


def test_etcd_restart_shorter_than_the_session_ttl_stalls_produce_and_loses_nothing(
        make_cluster, tmp_path, request):
    """etcd (its own member here, not the module's) is killed and started again on the same
    data directory and port while an idempotent producer streams to two brokers with a 10 s
    session TTL: acknowledgements stop (commit records live in etcd) and resume once it is
    back, no delivery fails, nothing is lost or duplicated, and both brokers stay up and live
    under the same node ids."""
    ttl_ms = 10_000
    own = Etcd(tmp_path / "etcd-own")
    try:
        own.start()
    except RuntimeError as err:
        pytest.fail(f"cannot start etcd: {err}", pytrace=False)
    try:
        c = make_cluster(2, session_ttl_ms=ttl_ms, etcd_=own)
        parts, n = 4, 2000
        topic = new_topic(c, parts)
        c.wait_leaders_live(topic, parts)
        ids = {b.name: b.node_id for b in c.brokers}

        prod = RateProducer(c.bootstrap(), topic, n, rate_per_s=200, partitions=parts)
        request.addfinalizer(prod.abandon)
        wait_until(lambda: len(prod.acked) >= 300 or prod.failed, 20, "300 acknowledgements")
        own.kill9()
        t0 = time.monotonic()
        first_after = prod.produced  # keys from here on were produced with etcd down

        # The stall: 100 more messages handed to the client, none of them acknowledged.
        wait_until(lambda: prod.produced >= first_after + 100, 10, "100 more messages produced")
        acked_while_down = sorted(k for k in list(prod.acked) if k >= first_after)
        assert not acked_while_down, (
            f"acknowledged while etcd was down (commit records live there): {acked_while_down[:10]}")

        own.restart()
        down_s = time.monotonic() - t0
        print(f"etcd down for {down_s:.2f}s (session TTL {ttl_ms / 1000}s); {len(prod.acked)} "
              f"acked, {prod.produced} produced")
        assert down_s < ttl_ms / 1000 * 0.6, f"etcd took {down_s:.1f}s to come back"
        wait_until(lambda: any(k >= first_after for k in list(prod.acked)), 20,
                   "an acknowledgement of a message produced while etcd was down", on_timeout=c.logs)
        print(f"acknowledgements resumed {time.monotonic() - t0:.2f}s after the kill")
        prod.finish()

        for b in c.brokers:
            assert b.alive(), f"{b} exited: {b.stderr_text()[-2000:]}"
            assert health(b)[0] == 200, health(b)
        c.wait_brokers_registered()
        assert {b.name: b.node_id for b in c.brokers} == ids
        c.wait_leaders_live(topic, parts)
        assert_consumed_exactly_once(c.bootstrap(), topic, parts, prod.acked, n)
        for b in c.brokers:
            assert b.alive(), f"{b} exited: {b.stderr_text()[-2000:]}"
    finally:
        own.kill9()


# --------------------------------------------------------------------------------------------
# 12-14. Pulsar clients through a kill -9, an etcd cut-off and a bundle unload


def pulsar_client(url: str):
    import os

    import pulsar

    level = getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG_LEVEL", "Warn"))
    return pulsar.Client(url, operation_timeout_seconds=30, logger=pulsar.ConsoleLogger(level))


def close_quietly(*objs) -> None:
    for o in objs:
        try:
            o.close()
        except Exception as e:  # noqa: BLE001 - teardown: a client of a dead broker
            sys.stderr.write(f"closing {o!r}: {e!r}\n")


class PulsarSender:
    """A Pulsar producer (no batching) in a thread sending the payloads str(seq) for seq 0..n-1
    at a fixed rate, at most `window` sends outstanding, each receipt awaited (send_async
    callbacks). A send the client reports failed is sent again by the application (same payload,
    at most `attempts_max` attempts in all). `confirmed`: seq -> (ledger id, entry id) of its
    successful receipt (the last one); `errors`: (seq, result) of every failed attempt;
    `attempts`: seq -> attempts; `mark(tag)` remembers the seqs outstanding right now (a
    disruption: the client may resend them itself, so they may be stored twice)."""

    def __init__(self, client, topic: str, n: int, rate_per_s: float, window: int = 20,
                 attempts_max: int = 3, send_timeout_ms: int = 30_000):
        import queue
        import threading

        self.producer = client.create_producer(topic, send_timeout_millis=send_timeout_ms,
                                               batching_enabled=False, block_if_queue_full=True)
        self.n, self.rate, self.window, self.attempts_max = n, rate_per_s, window, attempts_max
        self.lock = threading.Lock()
        self.confirmed: Dict[int, Tuple[int, int]] = {}
        self.latency_s: Dict[int, float] = {}  # seq -> send to receipt of its last attempt
        self.errors: List[Tuple[int, str]] = []
        self.attempts: Dict[int, int] = collections.Counter()
        self.outstanding: Dict[int, float] = {}  # seq -> when its current attempt was sent
        self.marks: Dict[str, set] = {}
        self.sent_at: Dict[str, int] = {}
        self.gave_up: List[int] = []
        self.sent = 0  # seqs handed to the client at least once
        self.error: Optional[BaseException] = None
        self._retry: "queue.Queue[int]" = queue.Queue()
        self._abandon = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def mark(self, tag: str) -> set:
        with self.lock:
            self.marks[tag] = set(self.outstanding)
            self.sent_at[tag] = self.sent
            return self.marks[tag]

    def mark_since(self, start: str, tag: str) -> set:
        """Like `mark`, for a disruption that lasted from `mark(start)` until now: also every seq
        first sent in between."""
        with self.lock:
            self.marks[tag] = set(self.outstanding) | set(range(self.sent_at[start], self.sent))
            return self.marks[tag]

    def retried(self) -> set:
        """Seqs that may be stored more than once: sent again by the application, or
        outstanding at a disruption (`mark`)."""
        with self.lock:
            out = {s for s, a in self.attempts.items() if a > 1}
            for m in self.marks.values():
                out |= m
            return out

    def abandon(self) -> None:
        self._abandon.set()
        self.thread.join(10)

    def _callback(self, seq: int):
        import pulsar

        def cb(res, msg_id):
            now = time.monotonic()
            with self.lock:
                sent_at = self.outstanding.pop(seq, now)
                self.latency_s[seq] = now - sent_at
                if res == pulsar.Result.Ok:
                    self.confirmed[seq] = (msg_id.ledger_id(), msg_id.entry_id())
                else:
                    self.errors.append((seq, str(res)))
                    self._retry.put(seq)
        return cb

    def _send(self, seq: int) -> None:
        with self.lock:
            self.outstanding[seq] = time.monotonic()
            self.attempts[seq] += 1
        self.producer.send_async(str(seq).encode(), self._callback(seq))

    def _run(self) -> None:
        import queue

        try:
            t0 = time.monotonic()
            deadline = t0 + self.n / self.rate + 90
            for _ in range(10_000_000):
                if self._abandon.is_set() or time.monotonic() > deadline:
                    return
                try:
                    seq = self._retry.get_nowait()
                    if self.attempts[seq] < self.attempts_max:
                        self._send(seq)
                    else:
                        self.gave_up.append(seq)
                    continue
                except queue.Empty:
                    pass
                with self.lock:
                    busy = len(self.outstanding)
                if self.sent >= self.n and busy == 0 and self._retry.empty():
                    return
                if self.sent < self.n and busy < self.window and \
                        time.monotonic() >= t0 + self.sent / self.rate:
                    self._send(self.sent)
                    self.sent += 1
                    continue
                time.sleep(0.002)  # the producer's pace, not an ordering wait
        except BaseException as e:  # noqa: BLE001 - reported by `finish`
            self.error = e

    def finish(self, timeout_s: float) -> None:
        """Waits for the thread; asserts every seq was confirmed (after application retries)."""
        self.thread.join(timeout_s)
        with self.lock:
            state = (f"{self.sent} sent, {len(self.confirmed)} confirmed, {len(self.outstanding)} "
                     f"outstanding, {len(self.errors)} failed attempts {self.errors[:5]}")
        assert not self.thread.is_alive(), f"the sender did not finish in {timeout_s}s: {state}"
        assert self.error is None, f"sender thread: {self.error!r}"
        print(f"pulsar sender: {state}; max receipt latency {max(self.latency_s.values()):.2f}s")
        assert not self.gave_up, f"sends failed {self.attempts_max} times: {self.gave_up[:10]}"
        assert len(self.confirmed) == self.n, state


class PulsarDeliveries:
    """A message listener for Pulsar consumers: records every delivery (consumer name, seq,
    entry id, monotonic time) and acknowledges it at once."""

    def __init__(self):
        import threading

        self.lock = threading.Lock()
        self.got: List[Tuple[str, int, int, float]] = []
        self.ack_errors: List[str] = []

    def listener(self, consumer, msg) -> None:
        now = time.monotonic()
        with self.lock:
            self.got.append((consumer.consumer_name(), int(msg.data()), msg.message_id().entry_id(), now))
        try:
            consumer.acknowledge(msg)
        except Exception as e:  # noqa: BLE001 - e.g. not connected: the message comes again
            with self.lock:
                self.ack_errors.append(repr(e))

    def seqs(self) -> set:
        with self.lock:
            return {s for _, s, _, _ in self.got}

    def snapshot(self) -> List[Tuple[str, int, int, float]]:
        with self.lock:
            return list(self.got)


def read_topic(client, topic: str, timeout_s: float = 30.0) -> List[Tuple[int, int]]:
    """A reader from the earliest message to the last one (has_message_available): [(entry id,
    seq)] in order."""
    import pulsar

    reader = client.create_reader(topic, pulsar.MessageId.earliest)
    out: List[Tuple[int, int]] = []
    try:
        deadline = time.monotonic() + timeout_s
        for _ in range(1_000_000):
            assert time.monotonic() < deadline, f"reading {topic}: {len(out)} messages after {timeout_s}s"
            if not reader.has_message_available():
                break
            m = reader.read_next(5000)
            out.append((m.message_id().entry_id(), int(m.data())))
    finally:
        close_quietly(reader)
    return out


def assert_sends_stored_once(sender: PulsarSender, stored: List[Tuple[int, int]]) -> None:
    """Every confirmed send is stored once, at the entry id of its receipt, with its payload; no
    entry id twice; a payload under two entry ids only for a send that may have been stored
    twice (`sender.retried()`); nothing that was never sent."""
    by_entry = collections.Counter(e for e, _ in stored)
    twice = {e: c for e, c in by_entry.items() if c > 1}
    assert not twice, f"entry ids read more than once: {list(twice.items())[:10]}"
    at = dict(stored)
    misplaced = {s: e for s, (_, e) in sender.confirmed.items() if at.get(e) != s}
    assert not misplaced, (f"{len(misplaced)} confirmed sends not stored at their receipt's entry "
                           f"id, e.g. {[(s, e, at.get(e)) for s, e in list(misplaced.items())[:10]]}")
    entries_of: Dict[int, List[int]] = collections.defaultdict(list)
    for e, s in stored:
        entries_of[s].append(e)
    retried = sender.retried()
    dup = {s: es for s, es in entries_of.items() if len(es) > 1}
    assert set(dup) <= retried, (
        f"payloads stored under several entry ids though sent once: "
        f"{[(s, dup[s]) for s in sorted(set(dup) - retried)[:10]]}")
    assert set(entries_of) <= set(range(sender.n)), sorted(set(entries_of) - set(range(sender.n)))[:10]
    print(f"stored {len(stored)} messages for {len(sender.confirmed)} confirmed sends; "
          f"{len(dup)} payloads stored twice (of {len(retried)} possibly retried)")


def test_pulsar_failover_subscription_continues_after_kill9_of_its_owner(make_cluster, request):
    """Three brokers. Two consumers (each on its own client) on one Failover subscription of a
    topic owned by broker A, a producer sending 1200 numbered messages (receipts awaited, at
    most 20 outstanding) on a third client; every delivery is acknowledged at once. After 300
    deliveries and once A has committed acknowledgements, A is killed -9: the clients look the
    topic up again, reach the new owner once A's session expired, and the subscription goes on
    from its committed position. Every confirmed send is delivered at least once; no message
    whose acknowledgement A had committed before the kill is delivered after it (duplicates only
    of messages not yet acknowledged); after the last acknowledgements the new owner's cursor
    covers everything, and a consumer attaching to the subscription again gets only what is
    produced after."""
    import pulsar

    c = make_cluster(3)
    topic = "persistent://public/default/fo-" + uuid.uuid4().hex[:8]
    sub = "fo"
    clients = [pulsar_client(c.pulsar_url()) for _ in range(3)]
    request.addfinalizer(lambda: close_quietly(*clients))
    deliveries = PulsarDeliveries()
    consumers = [clients[i].subscribe(topic, sub, consumer_type=pulsar.ConsumerType.Failover,
                                      consumer_name=f"c{i}", message_listener=deliveries.listener,
                                      initial_position=pulsar.InitialPosition.Earliest)
                 for i in range(2)]
    owner = c.wait_pulsar_owner(topic)
    print(f"{topic} owned by {owner}")
    n = 1200
    sender = PulsarSender(clients[2], topic, n, rate_per_s=100, window=20)
    request.addfinalizer(sender.abandon)
    wait_until(lambda: len(deliveries.seqs()) >= 300 or sender.error, 30, "300 deliveries",
               on_timeout=c.logs)

    # What A has committed of the subscription's cursor right before the kill.
    def committed():
        cur = pulsar_cursor(owner.http, topic, sub)
        return cur if cur is not None and cur[0] >= 200 else None

    before = wait_until(committed, 10, "the owner to commit 200 acknowledgements")
    owner.kill9()
    t_kill = time.monotonic()
    sender.mark("kill")
    print(f"kill -9 {owner}: committed cursor {before[0]} {before[1][:3]}; "
          f"{len(sender.confirmed)} confirmed, {len(deliveries.got)} delivered")

    ttl_s = c.session_ttl_ms / 1000
    new_owner = c.wait_pulsar_owner(topic, timeout_s=ttl_s + 15, not_=owner)
    t_owner = time.monotonic() - t_kill
    confirmed_at_kill = len(sender.confirmed)
    wait_until(lambda: len(sender.confirmed) > confirmed_at_kill + 100 or sender.error, 30,
               "100 more confirmed sends after the kill", on_timeout=c.logs)
    t_sends = time.monotonic() - t_kill
    sender.finish(60)
    wait_until(lambda: deliveries.seqs() >= set(sender.confirmed), 30,
               "every confirmed send delivered",
               on_timeout=lambda: f"missing {sorted(set(sender.confirmed) - deliveries.seqs())[:10]}")
    t_all = time.monotonic() - t_kill
    print(f"new owner {new_owner} named {t_owner:.2f}s after the kill (TTL {ttl_s}s); sends "
          f"confirmed again after {t_sends:.2f}s; every confirmed send delivered after {t_all:.2f}s")

    got = deliveries.snapshot()
    entries = {e for _, s, e, _ in got}
    payload_at = {e: s for _, s, e, _ in got}
    # Delivered once or more: every confirmed send, at its receipt's entry id. Another copy of a
    # payload only for a send outstanding at the kill (stored by A, receipt lost, sent again).
    retried = sender.retried()
    undelivered = {s: e for s, (_, e) in sender.confirmed.items() if payload_at.get(e) != s}
    assert not undelivered, f"confirmed sends not delivered at their receipt's entry id: {undelivered}"
    wrong = [(s, e, sender.confirmed.get(s)) for _, s, e, _ in got
             if sender.confirmed[s][1] != e and s not in retried]
    assert not wrong, f"deliveries at an entry id not their send's receipt (sent once): {wrong[:10]}"
    copies = sorted({s for _, s, e, _ in got if sender.confirmed[s][1] != e})
    print(f"payloads delivered from a second stored copy (outstanding at the kill, sent again by "
          f"the client): {copies}")
    # Duplicates only of messages not yet acknowledged: nothing A had committed comes again.
    again = [(name, s, e) for name, s, e, t in got if t > t_kill and cursor_covers(before, e)]
    assert not again, (f"{len(again)} deliveries after the kill of messages whose acknowledgement "
                       f"was committed before it: {again[:10]}")
    redelivered = collections.Counter(e for _, _, e, _ in got)
    redelivered = {e: k for e, k in redelivered.items() if k > 1}
    by_consumer = collections.Counter(name for name, _, _, _ in got)
    print(f"{len(got)} deliveries ({dict(by_consumer)}), {len(redelivered)} messages delivered "
          f"more than once (none committed as acknowledged before the kill); ack errors "
          f"{len(deliveries.ack_errors)} {deliveries.ack_errors[:2]}")
    assert all(cons.is_connected() for cons in consumers)

    # The acknowledgements reach the new owner's cursor: it covers every message ...
    last = max(entries)
    wait_until(lambda: (cur := pulsar_cursor(new_owner.http, topic, sub)) is not None
               and cur[0] > last, 15, f"the new owner's cursor past entry {last}",
               on_timeout=lambda: f"cursor {pulsar_cursor(new_owner.http, topic, sub)}")
    # ... and the subscription resumes there: a consumer attaching again gets only what follows.
    t = time.monotonic()
    for cons in consumers:
        cons.close()
    assert time.monotonic() - t < 5, f"closing the consumers took {time.monotonic() - t:.1f}s"
    again_consumer = clients[0].subscribe(topic, sub, consumer_type=pulsar.ConsumerType.Failover,
                                          consumer_name="c-again")
    prod = clients[1].create_producer(topic, batching_enabled=False)
    prod.send(b"%d" % n)
    m = again_consumer.receive(15_000)
    assert int(m.data()) == n, f"the subscription resumed at {int(m.data())}, not after the end"
    again_consumer.acknowledge(m)
    close_quietly(prod, again_consumer)


def test_pulsar_clients_follow_their_topic_when_its_owner_is_cut_off_from_etcd(
        make_cluster, etcd, request):
    """Two brokers, each reaching etcd through its own StallProxy; the first alone owns every
    bundle. A Pulsar producer (1000 numbered messages at 100/s, receipts awaited) and a consumer
    (acknowledging every delivery) on a topic of the first broker; its etcd traffic is cut off
    (stalled) while it still serves them: it fences itself (/health 503 "fenced"), the other
    broker claims the bundle once the session expired in etcd, and both clients are redirected
    there and go on; the consumer's acknowledgements reach the new owner's cursor at its pace
    and its CLOSE_CONSUMER is answered at once. Afterwards a reader finds every confirmed send
    once, at the entry id of its receipt, and a payload under two entry ids only for a send
    outstanding at the cut or sent again after a failure; the consumer was delivered exactly
    what is stored at each entry id. etcd answers again: the cut-off broker exits (session expired),
    started again it rejoins under its old node id as a non-owner, and a client that only knows
    its address is sent to the owner."""
    import pulsar

    clients: list = []
    c, proxies, env = victim_behind_etcd_proxy(request, make_cluster, etcd, clients)
    victim, proxy = c.brokers[0], proxies[0]
    topic = "persistent://public/default/cut-" + uuid.uuid4().hex[:8]
    # Created while the victim is alone, so it owns the topic's bundle.
    clients.append(pulsar_client(c.pulsar_url()))
    clients[0].create_producer(topic).close()
    other = c.add_broker(env=env[1])
    c.wait_brokers_registered()
    assert c.wait_pulsar_owner(topic) is victim
    victim_ports, victim_id = victim.ports(), victim.node_id
    ttl_s = c.session_ttl_ms / 1000

    url = c.pulsar_url()
    clients += [pulsar_client(url), pulsar_client(url)]
    deliveries = PulsarDeliveries()
    consumer = clients[1].subscribe(topic, "live", consumer_type=pulsar.ConsumerType.Exclusive,
                                    consumer_name="live", message_listener=deliveries.listener,
                                    initial_position=pulsar.InitialPosition.Earliest)
    n = 1000
    sender = PulsarSender(clients[2], topic, n, rate_per_s=100, window=20)
    request.addfinalizer(sender.abandon)
    wait_until(lambda: len(sender.confirmed) >= 300 or sender.error, 30, "300 confirmed sends",
               on_timeout=c.logs)
    proxy.stall()
    t0 = time.monotonic()
    sender.mark("cut")
    confirmed_at_cut = len(sender.confirmed)

    wait_until(lambda: health(victim) == (503, {"status": "fenced"}), ttl_s + 3,
               "the cut-off broker's /health to answer 503 fenced", interval_s=0.05,
               on_timeout=c.logs)
    fenced_after = time.monotonic() - t0
    assert fenced_after < ttl_s, f"fenced only after {fenced_after:.2f}s (TTL {ttl_s}s)"
    # The other broker names itself the owner once the session expired in etcd.
    wait_until(lambda: c.pulsar_owner(topic, other) is other, ttl_s + 15,
               "the other broker to own the topic", interval_s=0.05, on_timeout=c.logs)
    took_over_after = time.monotonic() - t0
    wait_until(lambda: len(sender.confirmed) >= confirmed_at_cut + 200 or sender.error, 30,
               "200 more confirmed sends through the new owner",
               on_timeout=lambda: f"{len(sender.confirmed)} confirmed; errors {sender.errors[:5]}\n"
                                  f"{c.logs()}")
    resumed_after = time.monotonic() - t0
    print(f"{confirmed_at_cut} confirmed at the cut; fenced after {fenced_after:.2f}s, taken over "
          f"after {took_over_after:.2f}s, 200 more sends confirmed after {resumed_after:.2f}s "
          f"(TTL {ttl_s}s)")
    sender.finish(60)
    print(f"failed send attempts (sent again by the application): {len(sender.errors)} "
          f"{sorted(collections.Counter(r for _, r in sender.errors).items())}")
    wait_until(lambda: deliveries.seqs() >= set(sender.confirmed), 30,
               "the consumer to receive every confirmed send",
               on_timeout=lambda: f"missing {sorted(set(sender.confirmed) - deliveries.seqs())[:10]}")
    assert consumer.is_connected()
    assert victim.alive(), "the cut-off broker exited while etcd was unreachable"
    # The consumer's acknowledgements reach the new owner's cursor at the consumer's pace, and
    # its connection answers at once (acks written one message id at a time held up every
    # other command of the connection for tens of seconds).
    last = max(e for _, _, e, _ in deliveries.snapshot())
    wait_until(lambda: (cur := pulsar_cursor(other.http, topic, "live")) is not None
               and cur[0] > last, 10, f"the new owner's cursor past entry {last}",
               on_timeout=lambda: f"cursor {pulsar_cursor(other.http, topic, 'live')}")
    t = time.monotonic()
    consumer.close()
    closed_s = time.monotonic() - t
    assert closed_s < 5, f"CLOSE_CONSUMER answered after {closed_s:.1f}s"

    # etcd answers again: the session is gone, the broker exits with an error ...
    proxy.resume()
    wait_until(lambda: not victim.alive(), 20, "the cut-off broker to exit once etcd answers",
               on_timeout=c.logs)
    rc = victim.stop(check=False)
    assert rc != 0, f"exit code {rc}"
    assert "the cluster session with etcd expired" in victim.stderr_text(), victim.stderr_text()[-2000:]
    # ... and, started again on its data directory and ports, rejoins as a non-owner.
    victim.start(ports=victim_ports)
    c.wait_brokers_registered()
    assert victim.node_id == victim_id, (victim.node_id, victim_id)
    assert c.wait_pulsar_owner(topic) is other
    # A client that knows only the rejoined broker is sent to the owner.
    via_victim = pulsar_client(f"pulsar://{victim.pulsar}")
    clients.append(via_victim)
    p = via_victim.create_producer(topic, batching_enabled=False)
    extra = p.send(b"%d" % n)
    close_quietly(p)

    stored = read_topic(via_victim, topic)
    assert stored[-1] == (extra.entry_id(), n), stored[-3:]
    sender.n += 1  # the extra message, sent once
    sender.confirmed[n] = (extra.ledger_id(), extra.entry_id())
    assert_sends_stored_once(sender, stored)
    # The live consumer was delivered every message stored before the extra one, and nothing
    # else: each delivery is the message stored at its entry id (no read of an entry that was
    # not committed, or that another message replaced).
    got = deliveries.snapshot()
    delivered = {e for _, _, e, _ in got}
    assert {e for e, _ in stored[:-1]} <= delivered, sorted({e for e, _ in stored[:-1]} - delivered)[:10]
    at = dict(stored)
    dirty = sorted({(e, s, at.get(e)) for _, s, e, _ in got if at.get(e) != s})
    assert not dirty, (f"{len(dirty)} deliveries of (entry id, payload) not stored so (stored "
                       f"payload last): {dirty[:10]}")


def test_pulsar_producer_continues_through_unloads_of_its_bundle(make_cluster, request):
    """Two brokers; the first started alone, so it owns every bundle, and the topic is one whose
    bundle the assignment rule gives to the second (no rebalancing on join: it stays with the
    first until released). A Pulsar producer sends 800 numbered messages at 100/s (receipts
    awaited, at most 20 outstanding, send timeout 10 s) while the topic's bundle is unloaded
    twice (`PUT /admin/v2/namespaces/public/default/{bundle}/unload` through the broker that
    does not own it: 307 to the owner): the first unload moves it to the second broker, the
    second gives it back to the second broker. Each time the owner lets go of the producer, the
    client looks the topic up again and goes on: no send fails; every send is stored at its
    receipt's entry id, in send order, and once, except that a send in flight during an unload
    may be stored twice (its receipt lost in the handover; no deduplication). (That the owner lets go with CLOSE_PRODUCER, not by
    failing a SEND, which makes the client drop the whole connection: the next test.)"""
    import requests

    c = make_cluster(1)
    first = c.brokers[0]
    second = c.add_broker()
    c.wait_brokers_registered()
    ids = [first.node_id, second.node_id]
    for _ in range(100):
        topic = "persistent://public/default/unload-" + uuid.uuid4().hex[:8]
        bundle = bundle_of(first.http, topic)
        if rendezvous_node(f"public/default/{bundle}", ids) == second.node_id:
            break
    else:
        raise AssertionError("no topic name in 100 whose bundle goes to the second broker")
    client = pulsar_client(c.pulsar_url())
    request.addfinalizer(lambda: close_quietly(client))
    n = 800
    sender = PulsarSender(client, topic, n, rate_per_s=100, window=20, send_timeout_ms=10_000)
    request.addfinalizer(sender.abandon)
    for target, expect_before in ((150, first), (450, second)):
        wait_until(lambda: len(sender.confirmed) >= target or sender.error or sender.errors, 30,
                   f"{target} confirmed sends", on_timeout=c.logs)
        assert not sender.errors, f"failed sends before the unload: {sender.errors[:5]}"
        owner = c.wait_pulsar_owner(topic)
        assert owner is expect_before, (owner, expect_before)
        via = first if owner is second else second
        sender.mark(f"unload-{target}")
        t0 = time.monotonic()
        r = requests.put(f"http://{via.http}/admin/v2/namespaces/public/default/{bundle}/unload",
                         timeout=10)
        assert r.status_code == 204 and [h.status_code for h in r.history] == [307], (
            r.status_code, r.text, [h.status_code for h in r.history])
        # A SEND in flight while the owner let go may be stored and its receipt lost: the client
        # sends it again (no deduplication on this namespace).
        sender.mark_since(f"unload-{target}", f"unload-{target}-done")
        at = len(sender.confirmed)
        wait_until(lambda: len(sender.confirmed) >= at + 50 or sender.errors or sender.error, 20,
                   "50 more confirmed sends after the unload",
                   on_timeout=lambda: f"{len(sender.confirmed)} confirmed; {c.logs()}")
        assert not sender.errors, (
            f"the unload surfaced send errors to the application: {sender.errors[:5]}")
        new_owner = c.wait_pulsar_owner(topic)
        print(f"unload of {bundle} (owner {owner.name}, through {via.name}): sends confirmed "
              f"again {time.monotonic() - t0:.2f}s later; owner now {new_owner.name}")
        assert new_owner is second, f"the bundle went to {new_owner}, not {second} (rendezvous)"
    sender.finish(30)
    assert not sender.errors, f"failed sends: {sender.errors[:10]}"

    stored = read_topic(client, topic)
    assert_sends_stored_once(sender, stored)
    first_at: Dict[int, int] = {}
    for e, s in stored:
        first_at.setdefault(s, e)
    order = [first_at[s] for s in range(n)]
    assert order == sorted(order), "messages stored out of send order"


def test_pulsar_bundle_unload_closes_its_producers_with_close_producer(make_cluster):
    """Over a raw Pulsar connection to the owner: a producer that sent one message is told
    CLOSE_PRODUCER (its producer id) when its topic's bundle is unloaded, without sending
    anything more, as Pulsar's broker does, so the client reconnects that producer alone."""
    import requests
    from test_pulsar_raw import (PRODUCER_SUCCESS, SEND_RECEIPT, Raw, fields, metadata,
                                 payload_frame, producer_cmd, send_cmd, simple_frame)

    close_producer = 15  # BaseCommand.Type CLOSE_PRODUCER, field close_producer = 15
    c = make_cluster(1)
    b = c.brokers[0]
    topic = "persistent://public/default/close-" + uuid.uuid4().hex[:8]
    assert c.wait_pulsar_owner(topic) is b  # the lookup creates it; the bundle is claimed
    raw = Raw(b.pulsar).connect()
    try:
        raw.send(simple_frame(producer_cmd(topic, producer_id=7)))
        raw.expect(PRODUCER_SUCCESS)
        raw.send(payload_frame(send_cmd(7, 0), metadata(0), b"0"))
        raw.expect(SEND_RECEIPT)
        bundle = bundle_of(b.http, topic)
        r = requests.put(f"http://{b.http}/admin/v2/namespaces/public/default/{bundle}/unload",
                         timeout=10)
        assert r.status_code == 204, (r.status_code, r.text)
        got: list = []
        frame: Optional[tuple] = ()
        deadline = time.monotonic() + 5
        for _ in range(100):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            frame = raw.recv_frame(timeout=left)
            if frame is None:
                break
            got.append(frame[0])
            if frame[0] == close_producer:
                assert fields(frame[1][15])[1] == 7, frame
                return
        ended = "the 5 s ran out" if time.monotonic() >= deadline else "the broker closed the connection"
        raise AssertionError(f"no CLOSE_PRODUCER after the unload: commands received {got}, then "
                             f"{ended}")
    finally:
        raw.close()


# --------------------------------------------------------------------------------------------
# 15. a broker joins: rebalancing


def cluster_metric(http: str, name: str) -> float:
    import requests

    text = requests.get(f"http://{http}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics of {http}")


def test_a_broker_that_joins_is_handed_its_share_and_both_protocols_follow(make_cluster, request):
    """One broker owns every bundle. While an idempotent Kafka stream and a Pulsar producer
    (deduplication on) send, a second broker joins (rebalance delay 1 s): the first hands it the
    bundles the rendezvous rule gives it, each moved partition's leader epoch goes up and the
    others' stay, the Kafka stream fails and duplicates nothing, and every Pulsar send succeeds
    (the producers of moved partitions get CLOSE_PRODUCER and reconnect) and is read back once.
    Topic names are fixed (each test has its own cluster root and node ids from 0), so which
    partitions move is the same on every run."""
    import pulsar
    import requests

    c = make_cluster(1, rebalance_delay_ms=1000)
    a = c.brokers[0]
    parts, n = 12, 1500
    topic = "rebalance-kafka"
    assert create_topic(a.kafka, topic, parts)[0] == 0
    c.wait_leaders_live(topic, parts)
    before = leader_epochs(a.kafka, topic)
    assert {leader for _, leader, _ in before.values()} == {a.node_id}, before
    r = requests.post(f"http://{a.http}/admin/v2/namespaces/public/default/deduplication",
                      json=True, timeout=10)
    assert r.status_code in (200, 204), r.text

    prod = RateProducer(c.bootstrap(), topic, n, rate_per_s=150, partitions=parts)
    request.addfinalizer(prod.abandon)
    ptopic = "persistent://public/default/rebalance-pulsar"
    assert create_topic(a.kafka, "rebalance-pulsar", parts)[0] == 0
    client = pulsar.Client(f"pulsar://{a.pulsar}", operation_timeout_seconds=30)
    request.addfinalizer(client.close)
    pprod = client.create_producer(ptopic, send_timeout_millis=30_000, batching_enabled=False,
                                   producer_name="rebalance-p")
    pulsar_sent: List[str] = []
    pulsar_errors: List[str] = []

    def pulsar_stream():
        for i in range(400):
            if prod.failed or prod.error:
                return
            try:
                pprod.send(f"p-{i}".encode(), partition_key=str(i))
                pulsar_sent.append(f"p-{i}")
            except Exception as e:  # noqa: BLE001 - reported below
                pulsar_errors.append(f"p-{i}: {e!r}")
            time.sleep(0.02)  # the stream's pace through the failover, not an ordering wait

    import threading

    pthread = threading.Thread(target=pulsar_stream, daemon=True)
    pthread.start()
    wait_until(lambda: len(prod.acked) >= 200 and len(pulsar_sent) >= 50, 30,
               "200 Kafka and 50 Pulsar acknowledgements")

    b = c.add_broker()
    c.wait_brokers_registered()
    # The handover: b owns what a handed it (every bundle b has came from a), and b leads some
    # partitions of each topic.
    def settled():
        given = cluster_metric(a.http, "magnetar_cluster_bundle_rebalanced_total")
        owned_b = cluster_metric(b.http, "magnetar_cluster_owned_bundles")
        owned_a = cluster_metric(a.http, "magnetar_cluster_owned_bundles")
        return given > 0 and given == owned_b and owned_a + owned_b == 8
    wait_until(settled, 30, "a to hand b its share of the 8 bundles", on_timeout=c.logs)
    after = c.wait_leaders_live(topic, parts)
    moved = {p for p, leader in after.items() if leader == b.node_id}
    assert moved and len(moved) < parts, after
    epochs = leader_epochs(b.kafka, topic)
    for p, (err, leader, epoch) in epochs.items():
        assert err == 0 and leader == after[p], (p, epochs[p], after[p])
        if p in moved:
            assert epoch > before[p][2], (p, before[p], epochs[p])
        else:
            assert epoch == before[p][2], (p, before[p], epochs[p])
    print(f"{len(moved)} of {parts} partitions moved to {b}; epochs {before} -> {epochs}")

    pthread.join(60)
    assert not pthread.is_alive(), "the Pulsar stream did not finish"
    assert not pulsar_errors, pulsar_errors[:5]
    prod.finish()
    assert_consumed_exactly_once(c.bootstrap(), topic, parts, prod.acked, n)

    consumer = client.subscribe(ptopic, "check", initial_position=pulsar.InitialPosition.Earliest)
    got: List[str] = []
    deadline = time.monotonic() + 30
    while len(got) < len(pulsar_sent) and time.monotonic() < deadline:
        try:
            m = consumer.receive(2_000)
        except Exception:  # pulsar.Timeout
            continue
        got.append(m.data().decode())
        consumer.acknowledge(m)
    counts = collections.Counter(got)
    assert sorted(counts) == sorted(pulsar_sent), (
        f"missing {sorted(set(pulsar_sent) - set(counts))[:5]}")
    assert all(v == 1 for v in counts.values()), {k: v for k, v in counts.items() if v > 1}


# --------------------------------------------------------------------------------------------
# 16. log compaction of a shared (cluster mode) ledger through the admin API


def test_compacted_topic_on_a_cluster_broker_keeps_the_latest_value_per_key(make_cluster):
    """confluent-kafka produces keyed updates to a `cleanup.policy=compact` topic on a cluster
    broker, one flush each (one WAL chunk each, so 60 of them seal a segment); the admin API's
    compaction trigger rewrites the sealed segment objects; a consumer from the beginning reads
    exactly the latest value of each key, at its original offset, and the filler after it."""
    import requests
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from kafka_util import create_topic as create_topic_with_config

    c = make_cluster(1, envs=[{"MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000"}])
    (b,) = c.brokers
    topic = f"compacted-{uuid.uuid4().hex[:8]}"
    create_topic_with_config(b.kafka, topic, 1, config={
        "cleanup.policy": "compact",
        "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0",
    })
    keys, rounds, filler = 12, 20, 70
    items = [(b"k%02d" % (i % keys), b"v%d" % i) for i in range(keys * rounds)]
    items += [(b"filler-%03d" % i, b"f%d" % i) for i in range(filler)]
    p = Producer({"bootstrap.servers": b.kafka, "linger.ms": 0, "message.timeout.ms": 20000})
    offsets: List[Optional[int]] = [None] * len(items)
    errors: List[object] = []
    for i, (k, v) in enumerate(items):
        def report(err, msg, i=i):
            if err is not None:
                errors.append(err)
            else:
                offsets[i] = msg.offset()
        p.produce(topic, key=k, value=v, partition=0, on_delivery=report)
        assert p.flush(20) == 0
    assert not errors, errors[:3]
    assert offsets == list(range(len(items))), "offsets are contiguous before compaction"
    latest: Dict[bytes, int] = {}
    for (k, _), off in zip(items, offsets):
        latest[k] = off
    expected = {off: items[off] for off in latest.values()}

    url = f"http://{b.http}/admin/v2/persistent/public/default/{topic}/compaction"

    def consume_all() -> List[Tuple[int, bytes, bytes]]:
        cons = Consumer({"bootstrap.servers": b.kafka, "group.id": "unused",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "fetch.wait.max.ms": 100})
        out = []
        try:
            cons.assign([TopicPartition(topic, 0, 0)])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = cons.poll(0.5)
                if m is None:
                    continue
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        return out
                    raise AssertionError(m.error())
                out.append((m.offset(), m.key(), m.value()))
            raise AssertionError(f"reading {topic} did not reach its end; got {len(out)}")
        finally:
            cons.close()

    got: List[Tuple[int, bytes, bytes]] = []
    # Seals run in the background after the commits: compact until every update is covered.
    deadline = time.monotonic() + 60
    while True:
        r = requests.put(url, timeout=10)
        assert r.status_code in (204, 409), (r.status_code, r.text)
        status: dict = {}
        while time.monotonic() < deadline:
            status = requests.get(url, timeout=10).json()
            if status["status"] in ("SUCCESS", "ERROR"):
                break
            time.sleep(0.2)
        assert status.get("status") == "SUCCESS", status
        got = consume_all()
        view = {o: (k, v) for o, k, v in got}
        # Every record read is the one produced at its offset.
        assert all(items[o] == kv for o, kv in view.items()), "a record moved or changed"
        if {o: kv for o, kv in view.items() if not kv[0].startswith(b"filler")} == \
                {o: kv for o, kv in expected.items() if not kv[0].startswith(b"filler")}:
            break
        assert time.monotonic() < deadline, f"not compacted in time: {len(got)} records, {status}"
        time.sleep(0.5)
    offsets_read = [o for o, _, _ in got]
    assert offsets_read == sorted(set(offsets_read)), "offsets strictly increase"
    assert {o: (k, v) for o, k, v in got} == expected
    print(f"{len(items)} records compacted to {len(got)} on the shared ledger")
