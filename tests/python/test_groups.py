"""Kafka consumer groups with real clients (issue 5): confluent-kafka, kafka-python, kcat, AdminClient.

Each consumer runs in its own thread (poll, record, commit every message synchronously) and
writes into one shared event log under a lock, so a test can check, in the order things really
happened, that
  * nothing was skipped: every produced (partition, offset) was consumed at least once, and
  * nothing committed was consumed again: a re-delivery of (p, o) is allowed only if no commit of
    an offset > o on p had succeeded before it (a commit refused during a rebalance leaves the
    message uncommitted, and then Kafka's at-least-once allows a second delivery).
Every wait has a deadline; every consumer is closed at the end of its test.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set, Tuple

import pytest
import requests
from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = [pytest.mark.timeout(150), pytest.mark.binary]

PARTITIONS = 6
SESSION_MS = 6000  # the broker's default group.min.session.timeout.ms
HEARTBEAT_MS = 500
WAIT_S = 30.0
# A short first-rebalance delay (groups.initial_rebalance_delay_ms, default 3 s) keeps the suite
# fast; passing it through the environment also exercises the [groups] config section.
BROKER_ENV = {"MAGNETAR_GROUPS__INITIAL_REBALANCE_DELAY_MS": "300"}

PartOff = Tuple[int, int]


# --------------------------------------------------------------------------------------------
# helpers


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_until(what: str, cond: Callable[[], bool], timeout_s: float = WAIT_S, describe=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    detail = describe() if describe else ""
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{detail}")


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    a = admin(bootstrap)  # the client must outlive its futures
    fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    fs[topic].result(timeout=20)


def produce_known(bootstrap: str, topic: str, per_partition: int, partitions: int = PARTITIONS, tag: str = "m") -> Set[PartOff]:
    """Produce `per_partition` messages to each partition; return the delivered (p, o) set."""
    delivered: List[PartOff] = []
    errors: List[KafkaError] = []

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset()))

    p = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 20000, "linger.ms": 5})
    for part in range(partitions):
        for i in range(per_partition):
            p.produce(topic, key=f"{tag}-{part}-{i}".encode(), value=f"{tag}-v-{part}-{i}".encode(), partition=part, on_delivery=cb)
        p.poll(0)
    left = p.flush(30)
    assert left == 0, f"{left} messages undelivered"
    assert not errors, f"delivery errors: {errors[:3]}"
    assert len(delivered) == per_partition * partitions
    return set(delivered)


@dataclass
class Event:
    seq: int
    member: str
    kind: str  # "msg", "commit_ok", "commit_fail", "assign", "revoke", "error"
    partitions: Tuple[int, ...] = ()
    offset: int = -1
    detail: str = ""


class Log:
    """The shared, ordered event log of every member of a test."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events: List[Event] = []

    def add(self, member: str, kind: str, partitions=(), offset: int = -1, detail: str = "") -> None:
        with self.lock:
            self.events.append(Event(len(self.events), member, kind, tuple(partitions), offset, detail))

    def snapshot(self) -> List[Event]:
        with self.lock:
            return list(self.events)

    def consumed(self) -> List[PartOff]:
        return [(e.partitions[0], e.offset) for e in self.snapshot() if e.kind == "msg"]

    def consumed_set(self) -> Set[PartOff]:
        return set(self.consumed())

    def of(self, member: str, kinds=("assign", "revoke")) -> List[Event]:
        return [e for e in self.snapshot() if e.member == member and e.kind in kinds]

    def check_exactly_once_after_commit(self, produced: Set[PartOff]) -> None:
        """Nothing skipped, nothing extra, no committed message consumed again."""
        committed: Dict[int, int] = {}  # partition -> highest successfully committed next offset
        violations = []
        seen: Set[PartOff] = set()
        redelivered_uncommitted = []
        for e in self.snapshot():
            if e.kind == "commit_ok":
                p = e.partitions[0]
                committed[p] = max(committed.get(p, 0), e.offset)
            elif e.kind == "msg":
                po = (e.partitions[0], e.offset)
                if po in seen:
                    if committed.get(po[0], 0) > po[1]:
                        violations.append((po, e.member, committed.get(po[0])))
                    else:
                        redelivered_uncommitted.append(po)
                seen.add(po)
        missing = sorted(produced - seen)
        extra = sorted(seen - produced)
        assert not violations, (
            f"{len(violations)} committed messages consumed again (first: (p,o), member, committed "
            f"offset) {violations[:5]}\n{self.summary()}"
        )
        assert not missing, f"{len(missing)} messages skipped, first {missing[:10]}\n{self.summary()}"
        assert not extra, f"consumed offsets never produced: {extra[:10]}"
        # Every uncommitted re-delivery must come from a refused commit, never silently.
        if redelivered_uncommitted:
            fails = [e for e in self.snapshot() if e.kind == "commit_fail"]
            assert fails, f"re-deliveries {redelivered_uncommitted[:5]} without any failed commit"

    def summary(self) -> str:
        lines = []
        for e in self.snapshot():
            if e.kind != "msg" and e.kind != "commit_ok":
                lines.append(f"  #{e.seq} {e.member} {e.kind} {list(e.partitions)} {e.offset} {e.detail}")
        per_member: Dict[str, int] = {}
        for e in self.snapshot():
            if e.kind == "msg":
                per_member[e.member] = per_member.get(e.member, 0) + 1
        return "events (without msg/commit_ok):\n" + "\n".join(lines[-60:]) + f"\nmessages per member: {per_member}"


class Member:
    """One consumer in its own thread: poll, log, commit each message synchronously."""

    def __init__(self, name: str, log: Log, topic: str):
        self.name = name
        self.log = log
        self.topic = topic
        self.stop_flag = threading.Event()
        self.paused_flag = threading.Event()
        # Set by the member's thread once it saw `paused_flag` (it is out of its poll).
        self.paused_ack = threading.Event()
        self.lock = threading.Lock()
        self._assignment: Set[int] = set()
        self.thread: Optional[threading.Thread] = None
        self.failure: Optional[BaseException] = None
        self.closed = threading.Event()

    # subclass hooks: _open, _poll_once (returns list of (partition, offset)), _commit(p, next_off),
    # _current_assignment, _close

    def start(self) -> "Member":
        self._open()
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self.stop_flag.is_set():
                if self.paused_flag.is_set():
                    self.paused_ack.set()
                    self.stop_flag.wait(0.05)  # idle until stopped (the pause is acknowledged)
                    continue
                for part, off in self._poll_once():
                    self.log.add(self.name, "msg", (part,), off)
                    ok, detail = self._commit(part, off + 1)
                    self.log.add(self.name, "commit_ok" if ok else "commit_fail", (part,), off + 1, detail)
                with self.lock:
                    self._assignment = self._current_assignment()
        except BaseException as e:  # reported by stop()
            self.failure = e
            self.log.add(self.name, "error", detail=repr(e))
        finally:
            try:
                self._close()
            finally:
                self.closed.set()

    def assignment(self) -> Set[int]:
        with self.lock:
            return set(self._assignment)

    def pause(self, timeout_s: float = WAIT_S) -> None:
        """Stops polling: returns once the member's thread acknowledged it (it reads nothing
        more; what it read was committed)."""
        self.paused_flag.set()
        assert self.paused_ack.wait(timeout_s), f"{self.name} did not pause in {timeout_s}s"

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop polling and close the consumer (a clean leave for dynamic members)."""
        self.stop_flag.set()
        if self.thread is not None:
            self.thread.join(timeout_s)
            assert not self.thread.is_alive(), f"{self.name}: close() did not finish in {timeout_s}s"
        assert self.failure is None, f"{self.name} failed: {self.failure!r}"


class ConfluentMember(Member):
    def __init__(self, name, log, topic, bootstrap, group, **conf):
        super().__init__(name, log, topic)
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_MS,
            "heartbeat.interval.ms": HEARTBEAT_MS,
            "socket.timeout.ms": 10000,
            "fetch.wait.max.ms": 100,
            "topic.metadata.refresh.interval.ms": 2000,
            "error_cb": lambda err: log.add(name, "error", detail=f"error_cb {err}"),
        }
        self.conf.update(conf)
        self.consumer: Optional[Consumer] = None
        self.cooperative = self.conf.get("partition.assignment.strategy") == "cooperative-sticky"
        self.errors: List[KafkaError] = []

    def _on_assign(self, consumer, parts):
        self.log.add(self.name, "assign", sorted(p.partition for p in parts))
        if self.cooperative:
            consumer.incremental_assign(parts)
        else:
            consumer.assign(parts)

    def _on_revoke(self, consumer, parts):
        self.log.add(self.name, "revoke", sorted(p.partition for p in parts))
        if self.cooperative:
            consumer.incremental_unassign(parts)
        else:
            consumer.unassign()

    def _open(self):
        self.consumer = Consumer(self.conf)
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _poll_once(self):
        msg = self.consumer.poll(0.1)
        if msg is None:
            return []
        if msg.error():
            err = msg.error()
            if err.code() != KafkaError._PARTITION_EOF:
                self.errors.append(err)
                self.log.add(self.name, "error", detail=f"poll {err}")
            return []
        return [(msg.partition(), msg.offset())]

    def _commit(self, part, next_off):
        try:
            self.consumer.commit(offsets=[TopicPartition(self.topic, part, next_off)], asynchronous=False)
            return True, ""
        except KafkaException as e:
            return False, str(e.args[0])

    def _current_assignment(self):
        return {tp.partition for tp in self.consumer.assignment()}

    def _close(self):
        if self.consumer is not None:
            self.consumer.close()


class KafkaPythonMember(Member):
    def __init__(self, name, log, topic, bootstrap, group, assignor):
        super().__init__(name, log, topic)
        self.bootstrap = bootstrap
        self.group = group
        self.assignor = assignor
        self.consumer = None

    def _open(self):
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        member = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                member.log.add(member.name, "revoke", sorted(tp.partition for tp in revoked))

            def on_partitions_assigned(self, assigned):
                member.log.add(member.name, "assign", sorted(tp.partition for tp in assigned))

        self.consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
            partition_assignment_strategy=[self.assignor],
            fetch_max_wait_ms=100,
            request_timeout_ms=15000,
            metadata_max_age_ms=2000,
        )
        self.consumer.subscribe([self.topic], listener=Listener())

    def _poll_once(self):
        out = []
        batches = self.consumer.poll(timeout_ms=100, max_records=50)
        for tp, msgs in batches.items():
            for m in msgs:
                out.append((tp.partition, m.offset))
        return out

    def _commit(self, part, next_off):
        from kafka import TopicPartition as KTP
        from kafka.structs import OffsetAndMetadata

        try:
            self.consumer.commit({KTP(self.topic, part): OffsetAndMetadata(next_off, "", -1)})
            return True, ""
        except Exception as e:  # CommitFailedError during a rebalance, ...
            return False, repr(e)

    def _current_assignment(self):
        return {tp.partition for tp in self.consumer.assignment()}

    def _close(self):
        if self.consumer is not None:
            self.consumer.close(autocommit=False)


def describe_members(members: List[Member]) -> Callable[[], str]:
    def f():
        return "assignments: " + ", ".join(f"{m.name}={sorted(m.assignment())}" for m in members)

    return f


def wait_balanced(members: List[Member], sizes: List[int], log: Log, what: str, timeout_s: float = WAIT_S) -> None:
    """Wait until each member holds `sizes[i]` partitions and together they hold all, disjointly."""

    def ok():
        assigns = [m.assignment() for m in members]
        union = set().union(*assigns)
        return (
            sorted(len(a) for a in assigns) == sorted(sizes)
            and union == set(range(PARTITIONS))
            and sum(len(a) for a in assigns) == PARTITIONS
        )

    for m in members:
        if m.failure:
            raise AssertionError(f"{m.name} failed: {m.failure!r}")
    wait_until(what, ok, timeout_s, describe=lambda: describe_members(members)() + "\n" + log.summary())


def wait_consumed(log: Log, produced: Set[PartOff], what: str, timeout_s: float = WAIT_S) -> None:
    wait_until(
        what,
        lambda: produced <= log.consumed_set(),
        timeout_s,
        describe=lambda: f"missing {len(produced - log.consumed_set())}: {sorted(produced - log.consumed_set())[:10]}\n{log.summary()}",
    )


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(env=BROKER_ENV)


@pytest.fixture
def cleanup():
    members: List[Member] = []
    yield members
    for m in members:
        m.stop_flag.set()
    for m in members:
        if m.thread is not None:
            m.thread.join(20)


def describe(bootstrap: str, group: str):
    a = admin(bootstrap)
    return a.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=20)


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS) -> Dict[int, int]:
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    a = admin(bootstrap)
    res = a.list_consumer_group_offsets([req], request_timeout=15)[group].result(timeout=20)
    return {tp.partition: tp.offset for tp in res.topic_partitions}


def test_checker_catches_redelivery_and_skips():
    """The exactly-once-after-commit check itself can fail (no broker needed)."""
    produced = {(0, 0), (0, 1), (1, 0)}
    ok = Log()
    for p, o in sorted(produced):
        ok.add("x", "msg", (p,), o)
        ok.add("x", "commit_ok", (p,), o + 1)
    ok.check_exactly_once_after_commit(produced)
    again = Log()
    again.events = list(ok.events)
    again.add("y", "msg", (0,), 0)  # committed, then delivered again
    with pytest.raises(AssertionError, match="consumed again"):
        again.check_exactly_once_after_commit(produced)
    skipped = Log()
    skipped.add("x", "msg", (0,), 0)
    with pytest.raises(AssertionError, match="skipped"):
        skipped.check_exactly_once_after_commit(produced)
    refused = Log()  # a refused commit allows one more delivery
    refused.add("x", "msg", (0,), 0)
    refused.add("x", "commit_fail", (0,), 1)
    for p, o in sorted(produced):
        refused.add("y", "msg", (p,), o)
        refused.add("y", "commit_ok", (p,), o + 1)
    refused.check_exactly_once_after_commit(produced)


# --------------------------------------------------------------------------------------------
# 1 + 2: three members, one leaves, the other two take over; committed offsets are honoured


def group_of(m: Member) -> str:
    return m.conf["group.id"] if isinstance(m, ConfluentMember) else m.group


def check_described(bootstrap: str, group: str, assignor: str, members: List[Member]) -> None:
    """DescribeGroups agrees with what the clients hold: Stable, the protocol, each assignment."""
    desc = describe(bootstrap, group)
    assert desc.state == ConsumerGroupState.STABLE, desc.state
    assert desc.partition_assignor == assignor, desc.partition_assignor
    described = sorted(sorted(tp.partition for tp in d.assignment.topic_partitions) for d in desc.members)
    held = sorted(sorted(m.assignment()) for m in members)
    assert described == held, f"DescribeGroups says {described}, the clients hold {held}"


def run_three_then_two(bootstrap: str, topic: str, log: Log, members: List[Member], assignor: str) -> None:
    """The matrix scenario shared by every client and assignor."""
    a, b, c = members
    for m in members:
        m.start()
    wait_balanced(members, [2, 2, 2], log, "three members with two partitions each")
    check_described(bootstrap, group_of(a), assignor, members)
    phase1 = produce_known(bootstrap, topic, 20, tag="one")
    wait_consumed(log, phase1, "phase 1 consumed by three members")
    # Each member read only its own partitions while the group was stable.
    for m in members:
        mine = {p for (p, _o) in [(e.partitions[0], e.offset) for e in log.of(m.name, ("msg",))]}
        assert mine <= m.assignment(), f"{m.name} consumed {sorted(mine)} but owns {sorted(m.assignment())}"
    c_parts = c.assignment()
    phase2 = produce_known(bootstrap, topic, 20, tag="two")
    c.pause()  # c reads nothing more; what it had was committed
    c.stop()
    wait_balanced([a, b], [3, 3], log, "the two survivors taking over the third member's partitions")
    assert c_parts <= a.assignment() | b.assignment()
    check_described(bootstrap, group_of(a), assignor, [a, b])
    wait_consumed(log, phase1 | phase2, "phase 2 consumed by the survivors")
    time.sleep(1.0)  # observation window: a wrong re-delivery would show here
    log.check_exactly_once_after_commit(phase1 | phase2)
    offsets = committed_offsets(bootstrap, group_of(a), topic)
    assert offsets == {p: 40 for p in range(PARTITIONS)}, offsets
    a.stop()
    b.stop()


@pytest.mark.parametrize("strategy", ["range", "roundrobin"])
def test_confluent_three_members_one_leaves(gbroker, cleanup, strategy):
    topic, group, log = unique("g3"), unique("grp"), Log()
    create_topic(gbroker.kafka, topic)
    members = [
        ConfluentMember(f"c{i}", log, topic, gbroker.kafka, group, **{"partition.assignment.strategy": strategy})
        for i in range(3)
    ]
    cleanup.extend(members)
    run_three_then_two(gbroker.kafka, topic, log, members, strategy)


@pytest.mark.parametrize("assignor", ["range", "roundrobin"])
def test_kafka_python_three_members_one_leaves(gbroker, cleanup, assignor):
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

    cls = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}[assignor]
    topic, group, log = unique("gkp"), unique("grp"), Log()
    create_topic(gbroker.kafka, topic)
    members = [KafkaPythonMember(f"k{i}", log, topic, gbroker.kafka, group, cls) for i in range(3)]
    cleanup.extend(members)
    run_three_then_two(gbroker.kafka, topic, log, members, assignor)


def test_confluent_cooperative_sticky_is_incremental(gbroker, cleanup):
    """cooperative-sticky: when a member leaves, the survivors keep what they had (no revoke)."""
    topic, group, log = unique("gcs"), unique("grp"), Log()
    create_topic(gbroker.kafka, topic)
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    members = [ConfluentMember(f"s{i}", log, topic, gbroker.kafka, group, **conf) for i in range(3)]
    cleanup.extend(members)
    a, b, c = members
    for m in members:
        m.start()
    wait_balanced(members, [2, 2, 2], log, "three cooperative members with two partitions each")
    check_described(gbroker.kafka, group, "cooperative-sticky", members)
    phase1 = produce_known(gbroker.kafka, topic, 20, tag="one")
    wait_consumed(log, phase1, "phase 1 consumed")
    before = {m.name: m.assignment() for m in (a, b)}
    seq_before = len(log.snapshot())
    phase2 = produce_known(gbroker.kafka, topic, 20, tag="two")
    c.pause()
    c.stop()
    wait_balanced([a, b], [3, 3], log, "survivors taking over incrementally")
    for m in (a, b):
        after = m.assignment()
        assert before[m.name] <= after, f"{m.name} lost partitions: {sorted(before[m.name])} -> {sorted(after)}"
        later = [e for e in log.of(m.name) if e.seq >= seq_before]
        revoked = [e for e in later if e.kind == "revoke" and e.partitions]
        assert not revoked, f"{m.name} had partitions revoked in a cooperative rebalance: {revoked}\n{log.summary()}"
        added = set().union(*[set(e.partitions) for e in later if e.kind == "assign"])
        assert added == after - before[m.name], (
            f"{m.name}: incremental assign {sorted(added)} != new partitions {sorted(after - before[m.name])}"
        )
    wait_consumed(log, phase1 | phase2, "phase 2 consumed")
    time.sleep(1.0)  # observation window: a wrong re-delivery would show here
    log.check_exactly_once_after_commit(phase1 | phase2)
    a.stop()
    b.stop()


CRASHING_MEMBER = r'''
import sys
from confluent_kafka import Consumer, TopicPartition
bootstrap, group, topic = sys.argv[1:4]
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
              "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
              "heartbeat.interval.ms": 500, "fetch.wait.max.ms": 100})
def on_assign(consumer, parts):
    print("assign " + ",".join(str(p.partition) for p in parts), flush=True)
    consumer.assign(parts)
c.subscribe([topic], on_assign=on_assign)
while True:  # runs until SIGKILL
    m = c.poll(0.1)
    if m is None or m.error():
        continue
    print(f"msg {m.partition()} {m.offset()}", flush=True)
    c.commit(offsets=[TopicPartition(topic, m.partition(), m.offset() + 1)], asynchronous=False)
    print(f"commit {m.partition()} {m.offset() + 1}", flush=True)
'''


def test_crashed_member_expires_and_survivors_take_over(gbroker, cleanup, tmp_path):
    """kill -9 of a member process (no LeaveGroup): the session expires, the others rebalance."""
    import signal
    import sys

    topic, group, log = unique("gcr"), unique("grp"), Log()
    create_topic(gbroker.kafka, topic)
    script = tmp_path / "member.py"
    script.write_text(CRASHING_MEMBER)
    proc = subprocess.Popen([sys.executable, str(script), gbroker.kafka, group, topic],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assigned: List[Set[int]] = []

    def pump():
        for line in proc.stdout:
            kind, *rest = line.split()
            if kind == "assign":
                parts = {int(x) for x in rest[0].split(",")} if rest else set()
                assigned.append(parts)
                log.add("proc", "assign", sorted(parts))
            elif kind == "msg":
                log.add("proc", "msg", (int(rest[0]),), int(rest[1]))
            elif kind == "commit":
                log.add("proc", "commit_ok", (int(rest[0]),), int(rest[1]))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        members = [ConfluentMember(f"cr{i}", log, topic, gbroker.kafka, group) for i in range(2)]
        cleanup.extend(members)
        for m in members:
            m.start()
        wait_until("the process member to hold two partitions",
                   lambda: members[0].assignment() and members[1].assignment()
                   and len(assigned[-1] if assigned else ()) == 2
                   and sorted(len(m.assignment()) for m in members) == [2, 2],
                   describe=lambda: f"process: {assigned}\n" + describe_members(members)() + "\n" + log.summary())
        proc_parts = assigned[-1]
        phase1 = produce_known(gbroker.kafka, topic, 10, tag="one")
        wait_consumed(log, phase1, "phase 1 consumed by the three members")
        wait_until("the process member to commit its last message",
                   lambda: {e.partitions[0]: e.offset for e in log.of("proc", ("commit_ok",))}
                   == {p: 10 for p in proc_parts})
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        phase2 = produce_known(gbroker.kafka, topic, 10, tag="two")
        wait_balanced(members, [3, 3], log, "the survivors after the crashed member's session expired",
                      timeout_s=SESSION_MS / 1000 + 20)
        took = time.monotonic() - killed_at
        assert took >= SESSION_MS / 1000 - 1.5, f"rebalanced {took:.1f}s after the crash, before the session timeout"
        wait_consumed(log, phase1 | phase2, "phase 2 consumed by the survivors")
        time.sleep(1.0)  # observation window: a wrong re-delivery would show here
        log.check_exactly_once_after_commit(phase1 | phase2)
        for m in members:
            m.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(5)


def test_membership_churn_keeps_assignments_complete(gbroker, cleanup):
    """Members join and leave one by one (1..4..1); every stable generation covers all six
    partitions exactly once, DescribeGroups agrees with the clients, and no message is lost or
    re-read after a commit."""
    topic, group, log = unique("gch"), unique("grp"), Log()
    create_topic(gbroker.kafka, topic)
    produced: Set[PartOff] = set()
    live: List[ConfluentMember] = []
    expected = {1: [6], 2: [3, 3], 3: [2, 2, 2], 4: [1, 1, 2, 2]}
    steps = [+1, +1, +1, +1, -1, -1, -1]
    for step, delta in enumerate(steps):
        if delta > 0:
            m = ConfluentMember(f"ch{step}", log, topic, gbroker.kafka, group)
            cleanup.append(m)
            live.append(m.start())
        else:
            gone = live.pop(0)
            gone.pause()
            gone.stop()
        wait_balanced(live, expected[len(live)], log, f"step {step}: {len(live)} members")
        check_described(gbroker.kafka, group, "range", live)
        produced |= produce_known(gbroker.kafka, topic, 3, tag=f"s{step}")
        wait_consumed(log, produced, f"step {step}: messages consumed")
    time.sleep(1.0)  # observation window: a wrong re-delivery would show here
    log.check_exactly_once_after_commit(produced)
    for m in live:
        m.stop()


# --------------------------------------------------------------------------------------------
# 3: static membership


def test_static_member_restart_without_rebalance(gbroker, cleanup):
    topic, group, log = unique("gst"), unique("grp"), Log()
    create_topic(gbroker.kafka, topic)
    session_ms = 10000
    conf = {"session.timeout.ms": session_ms}
    a = ConfluentMember("st-a", log, topic, gbroker.kafka, group, **{"group.instance.id": "inst-a"}, **conf)
    b = ConfluentMember("st-b", log, topic, gbroker.kafka, group, **{"group.instance.id": "inst-b"}, **conf)
    cleanup.extend([a, b])
    a.start()
    b.start()
    wait_balanced([a, b], [3, 3], log, "two static members with three partitions each")
    phase1 = produce_known(gbroker.kafka, topic, 10, tag="one")
    wait_consumed(log, phase1, "phase 1 consumed")
    a_parts, b_parts = a.assignment(), b.assignment()
    b_events = len(log.of("st-b"))
    desc = describe(gbroker.kafka, group)
    assert desc.state == ConsumerGroupState.STABLE, desc.state
    ids_before = {m.group_instance_id: m.member_id for m in desc.members}
    assert set(ids_before) == {"inst-a", "inst-b"}, ids_before

    # Close a static member: librdkafka sends no LeaveGroup for it; restart it at once.
    restart_at = time.monotonic()
    a.stop()
    a2 = ConfluentMember("st-a2", log, topic, gbroker.kafka, group, **{"group.instance.id": "inst-a"}, **conf)
    cleanup.append(a2)
    a2.start()
    wait_until("the restarted static member to get its partitions back", lambda: len(a2.assignment()) == 3,
               describe=lambda: describe_members([a2, b])() + "\n" + log.summary())
    assert time.monotonic() - restart_at < session_ms / 1000, "restart took longer than the session timeout"
    assert a2.assignment() == a_parts, f"restarted member got {sorted(a2.assignment())}, had {sorted(a_parts)}"
    phase2 = produce_known(gbroker.kafka, topic, 10, tag="two")
    wait_consumed(log, phase1 | phase2, "phase 2 consumed after the static restart")
    # Past the old session's deadline: nothing may expire and rebalance either (time is the
    # subject: the session timeout on the real clock).
    time.sleep(session_ms / 1000 + 2)
    assert b.assignment() == b_parts
    assert len(log.of("st-b")) == b_events, (
        f"the other static member saw a rebalance: {log.of('st-b')[b_events:]}\n{log.summary()}"
    )
    assert len([e for e in log.of("st-a2") if e.kind == "revoke" and e.partitions]) == 0
    desc = describe(gbroker.kafka, group)
    assert desc.state == ConsumerGroupState.STABLE, desc.state
    ids_after = {m.group_instance_id: m.member_id for m in desc.members}
    assert set(ids_after) == {"inst-a", "inst-b"}, ids_after
    assert ids_after["inst-b"] == ids_before["inst-b"]
    assert ids_after["inst-a"] != ids_before["inst-a"], "a restarted static member gets a new member id"
    log.check_exactly_once_after_commit(phase1 | phase2)
    a2.stop()
    b.stop()


# --------------------------------------------------------------------------------------------
# 4: broker restart


def test_group_resumes_after_broker_restart(gbroker, cleanup):
    """Members closed, broker restarted on the same data dir, a new pair of members resumes."""
    topic, group, log = unique("grs"), unique("grp"), Log()
    create_topic(gbroker.kafka, topic)
    members = [ConfluentMember(f"r{i}", log, topic, gbroker.kafka, group) for i in range(2)]
    cleanup.extend(members)
    for m in members:
        m.start()
    wait_balanced(members, [3, 3], log, "two members before the restart")
    phase1 = produce_known(gbroker.kafka, topic, 15, tag="one")
    wait_consumed(log, phase1, "phase 1 consumed")
    for m in members:
        m.stop()
    assert committed_offsets(gbroker.kafka, group, topic) == {p: 15 for p in range(PARTITIONS)}
    gbroker.restart()
    assert committed_offsets(gbroker.kafka, group, topic) == {p: 15 for p in range(PARTITIONS)}
    phase2 = produce_known(gbroker.kafka, topic, 15, tag="two")
    members2 = [ConfluentMember(f"r{i}b", log, topic, gbroker.kafka, group) for i in range(2)]
    cleanup.extend(members2)
    for m in members2:
        m.start()
    wait_balanced(members2, [3, 3], log, "two members after the restart")
    wait_consumed(log, phase1 | phase2, "phase 2 consumed after the restart")
    time.sleep(1.0)  # observation window: a wrong re-delivery would show here
    log.check_exactly_once_after_commit(phase1 | phase2)
    second = [po for e in log.snapshot() if e.kind == "msg" and e.member.endswith("b") for po in [(e.partitions[0], e.offset)]]
    assert set(second) == phase2, "after the restart only the new messages may be read"
    for m in members2:
        m.stop()


def test_live_group_survives_broker_restart(gbroker, cleanup):
    """Members keep running while the broker restarts on the same ports; they carry on."""
    topic, group, log = unique("grl"), unique("grp"), Log()
    create_topic(gbroker.kafka, topic)
    members = [ConfluentMember(f"l{i}", log, topic, gbroker.kafka, group) for i in range(2)]
    cleanup.extend(members)
    for m in members:
        m.start()
    wait_balanced(members, [3, 3], log, "two members before the restart")
    phase1 = produce_known(gbroker.kafka, topic, 15, tag="one")
    wait_consumed(log, phase1, "phase 1 consumed")
    gbroker.restart(same_ports=True)
    phase2 = produce_known(gbroker.kafka, topic, 15, tag="two")
    wait_consumed(log, phase1 | phase2, "phase 2 consumed by the members that lived through the restart", timeout_s=45)
    time.sleep(1.0)  # observation window: a wrong re-delivery would show here
    log.check_exactly_once_after_commit(phase1 | phase2)
    wait_until("committed offsets at the end", lambda: committed_offsets(gbroker.kafka, group, topic) == {p: 30 for p in range(PARTITIONS)})
    for m in members:
        m.stop()


# --------------------------------------------------------------------------------------------
# 5: kcat -G


def kcat(bootstrap: str, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    cmd = ["kcat", "-b", bootstrap, "-X", "socket.timeout.ms=10000", *args]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"kcat {args} did not finish in {timeout_s}s; stderr: {e.stderr!r}")


def test_kcat_group_consumer_commits_and_resumes(gbroker):
    topic, group = unique("gkc"), unique("grp")
    create_topic(gbroker.kafka, topic, partitions=3)
    first = produce_known(gbroker.kafka, topic, 10, partitions=3, tag="one")
    common = ["-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=6000",
              "-X", "heartbeat.interval.ms=500", "-X", "auto.commit.interval.ms=200",
              "-e", "-q", "-f", "%p:%o\\n", "-G", group, topic]
    r = kcat(gbroker.kafka, *common)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    got = {tuple(map(int, line.split(":"))) for line in r.stdout.decode().split()}
    assert got == first, f"kcat -G read {sorted(got)}; stderr {r.stderr.decode(errors='replace')[-2000:]}"
    assert committed_offsets(gbroker.kafka, group, topic, 3) == {0: 10, 1: 10, 2: 10}
    second = produce_known(gbroker.kafka, topic, 5, partitions=3, tag="two")
    r = kcat(gbroker.kafka, *common)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    got2 = [tuple(map(int, line.split(":"))) for line in r.stdout.decode().split()]
    assert set(got2) == second and len(got2) == len(second), f"second run read {sorted(got2)}"
    assert committed_offsets(gbroker.kafka, group, topic, 3) == {0: 15, 1: 15, 2: 15}


# --------------------------------------------------------------------------------------------
# 6: AdminClient group APIs


def test_admin_group_apis(gbroker, cleanup):
    bootstrap = gbroker.kafka
    topic, group, log = unique("gad"), unique("grp"), Log()
    create_topic(bootstrap, topic, partitions=2)
    produced = produce_known(bootstrap, topic, 5, partitions=2)
    m = ConfluentMember("ad", log, topic, bootstrap, group)
    cleanup.append(m)
    m.start()
    wait_until("the member to own both partitions", lambda: m.assignment() == {0, 1})
    wait_consumed(log, produced, "all consumed")
    a = admin(bootstrap)

    listed = a.list_consumer_groups(request_timeout=15).result(timeout=20)
    assert not listed.errors, listed.errors
    states = {g.group_id: g.state for g in listed.valid}
    assert states.get(group) == ConsumerGroupState.STABLE, states
    listed_stable = a.list_consumer_groups(request_timeout=15, states={ConsumerGroupState.STABLE}).result(timeout=20)
    assert group in {g.group_id for g in listed_stable.valid}

    desc = a.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=20)
    assert desc.group_id == group and desc.state == ConsumerGroupState.STABLE
    assert not desc.is_simple_consumer_group
    assert desc.partition_assignor in ("range", "roundrobin"), desc.partition_assignor
    assert len(desc.members) == 1
    member = desc.members[0]
    assert sorted((tp.topic, tp.partition) for tp in member.assignment.topic_partitions) == [(topic, 0), (topic, 1)]
    assert desc.coordinator is not None

    assert committed_offsets(bootstrap, group, topic, 2) == {0: 5, 1: 5}

    # A group with members cannot be deleted, nor its offsets altered.
    with pytest.raises(KafkaException) as e:
        a.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.NON_EMPTY_GROUP, e.value
    alter = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 2)])
    refused = (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION)
    try:
        res = a.alter_consumer_group_offsets([alter], request_timeout=15)[group].result(timeout=20)
        codes = [tp.error.code() if tp.error else None for tp in res.topic_partitions]
    except KafkaException as e:
        codes = [e.args[0].code()]
    assert codes and all(c in refused for c in codes), f"altering an active group's offsets: {codes}"
    assert committed_offsets(bootstrap, group, topic, 2) == {0: 5, 1: 5}

    m.stop()
    wait_until("the group to be empty", lambda: a.describe_consumer_groups([group], request_timeout=15)[group]
               .result(timeout=20).state == ConsumerGroupState.EMPTY)

    res = a.alter_consumer_group_offsets([alter], request_timeout=15)[group].result(timeout=20)
    assert [(tp.partition, tp.offset, tp.error) for tp in res.topic_partitions] == [(0, 2, None)]
    assert committed_offsets(bootstrap, group, topic, 2) == {0: 2, 1: 5}

    # A new member resumes from the altered offset.
    log2 = Log()
    m2 = ConfluentMember("ad2", log2, topic, bootstrap, group)
    cleanup.append(m2)
    m2.start()
    wait_consumed(log2, {(0, 2), (0, 3), (0, 4)}, "re-read from the altered offset")
    time.sleep(0.5)  # an observation window: nothing below the altered offset may follow
    assert sorted(log2.consumed()) == [(0, 2), (0, 3), (0, 4)], log2.consumed()
    m2.stop()

    wait_until("the group to be empty again", lambda: a.describe_consumer_groups([group], request_timeout=15)[group]
               .result(timeout=20).state == ConsumerGroupState.EMPTY)
    assert a.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=20) is None
    listed = a.list_consumer_groups(request_timeout=15).result(timeout=20)
    assert group not in {g.group_id for g in listed.valid}
    assert committed_offsets(bootstrap, group, topic, 2) == {0: -1001, 1: -1001}  # OFFSET_INVALID
    with pytest.raises(KafkaException) as e:
        a.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=20)
    assert e.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, e.value


# --------------------------------------------------------------------------------------------
# 7: coordinator settings from the config take effect


def first_error(log: Log, member: str, timeout_s: float, codes) -> str:
    found = []

    def cond():
        for e in log.of(member, ("error",)):
            if any(c in e.detail for c in codes):
                found.append(e.detail)
                return True
        return False

    wait_until(f"{member} to get one of {codes}", cond, timeout_s, describe=log.summary)
    return found[0]


def test_config_group_max_size(broker_factory, cleanup):
    b = broker_factory(env={**BROKER_ENV, "MAGNETAR_GROUPS__MAX_SIZE": "1"})
    topic, group, log = unique("gms"), unique("grp"), Log()
    create_topic(b.kafka, topic, partitions=2)
    first = ConfluentMember("first", log, topic, b.kafka, group)
    cleanup.append(first)
    first.start()
    wait_until("the first member to own both partitions", lambda: first.assignment() == {0, 1})
    second = ConfluentMember("second", log, topic, b.kafka, group)
    cleanup.append(second)
    second.start()
    detail = first_error(log, "second", 20, ["GROUP_MAX_SIZE_REACHED", "maximum size"])
    assert "GROUP_MAX_SIZE_REACHED" in detail or "maximum size" in detail
    assert second.assignment() == set()
    assert first.assignment() == {0, 1}


def test_config_min_session_timeout_from_kop_file(broker_factory, cleanup, tmp_path):
    """KoP's groupMinSessionTimeoutMs in a standalone.conf reaches the coordinator."""
    conf = tmp_path / "standalone.conf"
    conf.write_text("groupMinSessionTimeoutMs=8000\ngroupInitialRebalanceDelayMs=300\n")
    b = broker_factory(extra_args=["--config", str(conf)], start=False)
    b.start(ports={"kafka": 0, "pulsar": 0, "http": 0})
    topic, log = unique("gmt"), Log()
    create_topic(b.kafka, topic, partitions=1)
    low = ConfluentMember("low", log, topic, b.kafka, unique("grp"), **{"session.timeout.ms": 6000})
    ok = ConfluentMember("ok", log, topic, b.kafka, unique("grp"), **{"session.timeout.ms": 8000})
    cleanup.extend([low, ok])
    low.start()
    ok.start()
    first_error(log, "low", 20, ["INVALID_SESSION_TIMEOUT", "session timeout"])
    wait_until("a member with an allowed session timeout to join", lambda: ok.assignment() == {0})
    assert low.assignment() == set()


def test_config_offset_metadata_max_bytes(broker_factory):
    """groups.offset_metadata_max_bytes = 16: 16 bytes of commit metadata pass, 17 do not.

    kafka-python sends the metadata string as given (confluent-kafka-python appends a NUL byte,
    so there 15 characters are the most that fit)."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.errors import OffsetMetadataTooLargeError
    from kafka.structs import OffsetAndMetadata

    b = broker_factory(env={**BROKER_ENV, "MAGNETAR_GROUPS__OFFSET_METADATA_MAX_BYTES": "16"})
    topic, group = unique("gmd"), unique("grp")
    create_topic(b.kafka, topic, partitions=1)
    c = KafkaConsumer(bootstrap_servers=b.kafka, group_id=group, enable_auto_commit=False,
                      request_timeout_ms=15000)
    try:
        tp = KTP(topic, 0)
        c.commit({tp: OffsetAndMetadata(3, "m" * 16, -1)})
        with pytest.raises(OffsetMetadataTooLargeError):
            c.commit({tp: OffsetAndMetadata(4, "m" * 17, -1)})
        got = c.committed(tp, metadata=True)
        assert (got.offset, got.metadata) == (3, "m" * 16), got
    finally:
        c.close(autocommit=False)


def offsets_partitions(b) -> int:
    r = requests.get(f"http://{b.http}/admin/v2/persistent/public/__kafka/__consumer_offsets/partitions", timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    return int(r.json()["partitions"])


def test_config_offsets_topic_partitions_stored_count_wins(broker_factory, cleanup, tmp_path):
    """[groups] in the TOML file creates the offsets topic; later values do not change it."""
    conf = tmp_path / "magnetar.toml"
    conf.write_text(
        "version = 1\n[kafka]\nport = 0\n[pulsar]\nport = 0\n[http]\nport = 0\n"
        "[groups]\noffsets_topic_num_partitions = 3\ninitial_rebalance_delay_ms = 300\n"
    )
    b = broker_factory(extra_args=["--config", str(conf)])
    assert offsets_partitions(b) == 3
    topic, group, log = unique("gop"), unique("grp"), Log()
    create_topic(b.kafka, topic, partitions=2)
    produced = produce_known(b.kafka, topic, 4, partitions=2)
    m = ConfluentMember("op", log, topic, b.kafka, group)
    cleanup.append(m)
    m.start()
    wait_consumed(log, produced, "all consumed")
    m.stop()
    assert "stored partition count is kept" not in b.stderr_text()
    b.restart(env={"MAGNETAR_GROUPS__OFFSETS_TOPIC_NUM_PARTITIONS": "7"})  # env beats the file
    assert offsets_partitions(b) == 3
    assert "stored partition count is kept" in b.stderr_text(), b.stderr_text()[-3000:]
    # Groups are still found where they were placed.
    assert committed_offsets(b.kafka, group, topic, 2) == {0: 4, 1: 4}
