"""Group rebalances with real clients (issue 20): aiokafka, kafka-python and confluent-kafka.

Each consumer reports its assignment callbacks into one `Ownership` log. The invariant checked on
every callback: no partition is owned by two consumers at once (owned = assigned and not revoked
yet). With eager assignors a member revokes everything before it rejoins, so a broker that lets a
newcomer's rebalance complete before every existing member has rejoined (or been removed) breaks
it. The cases:
  * a second member joins a Stable group (dynamic and static membership): the first is revoked
    before the newcomer gets anything, and the partitions end up split;
  * a static member restarts under the same `group.instance.id`: it gets its partition back and
    the other member is not rebalanced;
  * a member stops polling past `max.poll.interval.ms`: it leaves, the other member gets every
    partition and consumes every message;
  * a pattern subscription picks up a topic auto-created after it subscribed.

Short session timeouts and a 300 ms initial rebalance delay keep each case to seconds (Kafka's
shipped server.properties uses 0; its code default, and ours, is 3 s). Every wait is a bounded
poll on an observable condition; nothing is ordered by sleeping.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Callable, Dict, List, Set, Tuple

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, BrokerStartError, magnetar_bin, tail

pytestmark = [pytest.mark.timeout(120), pytest.mark.binary]

SESSION_MS = 6000  # the broker's default group.min.session.timeout.ms
HEARTBEAT_MS = 500
WAIT_S = 40.0
BROKER_ENV = {
    "MAGNETAR_GROUPS__INITIAL_REBALANCE_DELAY_MS": "300",
    "MAGNETAR_KAFKA__DEFAULT_NUM_PARTITIONS": "2",
}

TP = Tuple[str, int]


@pytest.fixture(scope="module")
def kafka(request, tmp_path_factory, pytestconfig):
    if pytestconfig.getoption("--bootstrap"):
        pytest.skip("needs the magnetar binary with its group settings")
    b = Broker(magnetar_bin(pytestconfig), tmp_path_factory.mktemp("rebalance"), env=BROKER_ENV)
    try:
        b.start()
    except BrokerStartError as e:
        pytest.fail(f"could not start magnetar: {e}", pytrace=False)
    failed_before = request.session.testsfailed
    yield b.kafka
    b.stop(check=False)
    if request.session.testsfailed > failed_before:
        print(f"\n----- magnetar stderr tail -----\n{tail(b.stderr_path)}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_until(what: str, cond: Callable[[], bool], timeout_s: float = WAIT_S, describe=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{describe() if describe else ''}")


async def async_wait_until(what: str, cond: Callable[[], bool], timeout_s: float = WAIT_S, describe=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}\n{describe() if describe else ''}")


def create_topic(bootstrap: str, topic: str, partitions: int = 2) -> None:
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(timeout=20)


def produce(bootstrap: str, topic: str, per_partition: int, partitions: int = 2) -> Set[Tuple[int, bytes]]:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    sent = set()
    for part in range(partitions):
        for i in range(per_partition):
            value = f"{part}-{i}".encode()
            p.produce(topic, value=value, partition=part)
            sent.add((part, value))
    assert p.flush(20) == 0
    return sent


class Ownership:
    """Assignment callbacks of every consumer of one group, checked as they happen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owned: Dict[str, Set[TP]] = {}
        self.events: List[Tuple[str, str, Tuple[TP, ...]]] = []
        self.violations: List[str] = []

    def assigned(self, who: str, tps) -> None:
        tps = {(t, p) for t, p in tps}
        with self.lock:
            for other, held in self.owned.items():
                if other != who and held & tps:
                    self.violations.append(f"{who} assigned {sorted(held & tps)} still owned by {other}")
            self.owned.setdefault(who, set()).update(tps)
            self.events.append((who, "assigned", tuple(sorted(tps))))

    def revoked(self, who: str, tps) -> None:
        with self.lock:
            self.owned.setdefault(who, set()).difference_update({(t, p) for t, p in tps})
            self.events.append((who, "revoked", tuple(sorted((t, p) for t, p in tps))))

    def gone(self, who: str) -> None:
        """The consumer was closed: it owns nothing any more."""
        with self.lock:
            self.owned.pop(who, None)
            self.events.append((who, "closed", ()))

    def count(self, who: str, kind: str) -> int:
        with self.lock:
            return sum(1 for w, k, _ in self.events if w == who and k == kind)

    def holding(self, who: str) -> Set[TP]:
        with self.lock:
            return set(self.owned.get(who, set()))

    def first_index(self, who: str, kind: str, nonempty: bool = True) -> int:
        with self.lock:
            for i, (w, k, tps) in enumerate(self.events):
                if w == who and k == kind and (tps or not nonempty):
                    return i
        return -1

    def describe(self) -> str:
        with self.lock:
            return "events:\n" + "\n".join(map(str, self.events)) + f"\nviolations: {self.violations}"


def split_evenly(own: Ownership, a: str, b: str, topic: str) -> bool:
    ha, hb = own.holding(a), own.holding(b)
    return len(ha) == 1 and len(hb) == 1 and ha | hb == {(topic, 0), (topic, 1)}


# --------------------------------------------------------------------------------------------
# aiokafka


def aio_listener(own: Ownership, who: str):
    from aiokafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            own.revoked(who, [(tp.topic, tp.partition) for tp in revoked])

        async def on_partitions_assigned(self, assigned):
            own.assigned(who, [(tp.topic, tp.partition) for tp in assigned])

    return Listener()


def aio_consumer(bootstrap: str, group: str, **kw):
    from aiokafka import AIOKafkaConsumer

    conf = {
        "session_timeout_ms": SESSION_MS,
        "heartbeat_interval_ms": HEARTBEAT_MS,
        "auto_offset_reset": "earliest",
        **kw,
    }
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, **conf)


@pytest.mark.parametrize("membership", ["dynamic", "static"])
def test_aiokafka_second_member_joins_a_stable_group(kafka, membership):
    """aiokafka's KIP-345 test: the first member is revoked before the newcomer's start()
    returns (it rejoined: revoke count 2), the partitions are split, never owned twice; a static
    member restarting under its instance id gets its partition back without a rebalance."""
    topic, group = unique("rb-aio"), unique("g-aio")
    create_topic(kafka, topic)
    own = Ownership()
    static = membership == "static"

    def instance(i: int):
        return {"group_instance_id": f"{group}-member-{i}"} if static else {}

    async def run():
        c1 = aio_consumer(kafka, group, **instance(1))
        c1.subscribe([topic], listener=aio_listener(own, "c1"))
        await c1.start()
        c2 = c2b = None
        try:
            await async_wait_until("c1 owns both partitions", lambda: len(own.holding("c1")) == 2, describe=own.describe)
            assert own.count("c1", "revoked") == 1
            c2 = aio_consumer(kafka, group, **instance(2))
            c2.subscribe([topic], listener=aio_listener(own, "c2"))
            await c2.start()  # returns once c2 has its assignment
            # c1 revokes before it rejoins, and the newcomer's generation cannot complete
            # before c1 rejoined: so this holds the moment c2 is assigned.
            assert own.count("c1", "revoked") == 2, own.describe()
            assert own.first_index("c1", "revoked") < own.first_index("c2", "assigned"), own.describe()
            await async_wait_until("the partitions are split", lambda: split_evenly(own, "c1", "c2", topic), describe=own.describe)
            if static:
                # A restart of the static member: no LeaveGroup, same instance id, same
                # subscription. It gets its partition back and c1 is not rebalanced.
                held = own.holding("c2")
                await c2.stop()
                own.gone("c2")
                c2 = None
                c2b = aio_consumer(kafka, group, **instance(2))
                c2b.subscribe([topic], listener=aio_listener(own, "c2b"))
                await c2b.start()
                await async_wait_until("the restarted member is assigned", lambda: own.holding("c2b"), describe=own.describe)
                assert own.holding("c2b") == held, own.describe()
                assert own.count("c1", "revoked") == 2, own.describe()
                assert len(own.holding("c1")) == 1
        finally:
            for c in (c2b, c2, c1):
                if c is not None:
                    await c.stop()
        assert not own.violations, own.describe()

    asyncio.run(run())


def test_aiokafka_member_past_max_poll_interval_is_replaced(kafka):
    """aiokafka's max.poll.interval test: c1 stops polling, leaves after 3 s, and c2 gets both
    partitions and every message."""
    topic, group = unique("rb-aiomp"), unique("g-aiomp")
    create_topic(kafka, topic)
    sent = produce(kafka, topic, per_partition=10)
    own = Ownership()

    async def run():
        c1 = aio_consumer(kafka, group, max_poll_interval_ms=3000, heartbeat_interval_ms=100)
        c1.subscribe([topic], listener=aio_listener(own, "c1"))
        await c1.start()
        c2 = aio_consumer(kafka, group, heartbeat_interval_ms=100)
        c2.subscribe([topic], listener=aio_listener(own, "c2"))
        try:
            await c2.start()
            await async_wait_until("both consume", lambda: own.holding("c1") and own.holding("c2"), describe=own.describe)
            seen = set()
            deadline = time.monotonic() + WAIT_S
            while len(seen) < len(sent) and time.monotonic() < deadline:
                batches = await c2.getmany(timeout_ms=200)
                for tp, msgs in batches.items():
                    seen.update((tp.partition, m.value) for m in msgs)
            assert seen == sent, own.describe()
            assert own.holding("c2") == {(topic, 0), (topic, 1)}, own.describe()
        finally:
            await c2.stop()
            await c1.stop()
        assert not own.violations, own.describe()

    asyncio.run(run())


def test_aiokafka_pattern_subscription_sees_an_auto_created_topic(kafka):
    """aiokafka's pattern test: a topic auto-created after subscribe(pattern=...) is picked up
    at the next metadata refresh, assigned, and consumed."""
    prefix = unique("pat-aio")
    own = Ownership()

    async def run():
        from aiokafka import AIOKafkaProducer

        c = aio_consumer(kafka, unique("g-pat"), metadata_max_age_ms=200, fetch_max_wait_ms=50)
        await c.start()
        p = AIOKafkaProducer(bootstrap_servers=kafka)
        await p.start()
        try:
            c.subscribe(pattern=f"^{prefix}-.*$", listener=aio_listener(own, "c"))
            getter = asyncio.ensure_future(c.getone())
            # Several metadata refreshes find nothing to subscribe to yet.
            for _ in range(5):
                await c._client.force_metadata_update()
            assert c.subscription() == set()
            assert not getter.done()
            topic = f"{prefix}-1"
            await p.client._wait_on_metadata(topic)  # auto-creates it
            await async_wait_until("the new topic is subscribed", lambda: c.subscription() == {topic})
            await async_wait_until("the new topic is assigned", lambda: own.holding("c") == {(topic, 0), (topic, 1)}, describe=own.describe)
            await p.send_and_wait(topic, b"hello", partition=1)
            msg = await asyncio.wait_for(getter, timeout=WAIT_S)
            assert (msg.topic, msg.value) == (topic, b"hello")
        finally:
            await p.stop()
            await c.stop()

    asyncio.run(run())


# --------------------------------------------------------------------------------------------
# kafka-python and confluent-kafka: one polling thread per consumer


class Polling(threading.Thread):
    """Polls a consumer until stopped (or paused: then it stops calling poll)."""

    def __init__(self, name: str, make: Callable[[], object], poll: Callable[[object], None], close: Callable[[object], None]):
        super().__init__(name=name, daemon=True)
        self.make, self.poll_once, self.close_fn = make, poll, close
        self.stop = threading.Event()
        self.paused = threading.Event()
        self.error: List[BaseException] = []
        self.started_ok = threading.Event()
        self.polls = 0

    def run(self) -> None:
        consumer = None
        try:
            consumer = self.make()
            self.started_ok.set()
            while not self.stop.is_set():
                if self.paused.is_set():
                    self.stop.wait(0.05)
                    continue
                self.poll_once(consumer)
                self.polls += 1
        except BaseException as e:  # reported by the test
            self.error.append(e)
        finally:
            if consumer is not None:
                try:
                    self.close_fn(consumer)
                except BaseException as e:
                    self.error.append(e)

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=30)
        assert not self.is_alive(), f"{self.name} did not stop"
        assert not self.error, f"{self.name}: {self.error!r}"


def kp_consumer(kafka: str, topic_or_pattern: dict, group: str, own: Ownership, who: str, seen=None, **kw):
    from kafka import ConsumerRebalanceListener, KafkaConsumer

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            own.revoked(who, [(tp.topic, tp.partition) for tp in revoked])

        def on_partitions_assigned(self, assigned):
            own.assigned(who, [(tp.topic, tp.partition) for tp in assigned])

    def make():
        conf = {
            "session_timeout_ms": SESSION_MS,
            "heartbeat_interval_ms": HEARTBEAT_MS,
            "auto_offset_reset": "earliest",
            **kw,
        }
        c = KafkaConsumer(bootstrap_servers=kafka, group_id=group, **conf)
        c.subscribe(listener=Listener(), **topic_or_pattern)
        return c

    def poll(c):
        for tp, msgs in c.poll(timeout_ms=100).items():
            if seen is not None:
                seen.update((tp.topic, tp.partition, m.value) for m in msgs)

    def close(c):
        c.close()
        own.gone(who)

    return Polling(who, make, poll, close)


def ck_consumer(kafka: str, subscription: List[str], group: str, own: Ownership, who: str, seen=None, **conf):
    def make():
        c = Consumer(
            {
                "bootstrap.servers": kafka,
                "group.id": group,
                "session.timeout.ms": SESSION_MS,
                "heartbeat.interval.ms": HEARTBEAT_MS,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "range",
                **conf,
            }
        )
        c.subscribe(
            subscription,
            on_assign=lambda _c, ps: own.assigned(who, [(p.topic, p.partition) for p in ps]),
            on_revoke=lambda _c, ps: own.revoked(who, [(p.topic, p.partition) for p in ps]),
            on_lost=lambda _c, ps: own.revoked(who, [(p.topic, p.partition) for p in ps]),
        )
        return c

    def poll(c):
        m = c.poll(0.1)
        if m is not None and m.error() is None and seen is not None:
            seen.add((m.topic(), m.partition(), m.value()))

    def close(c):
        c.close()
        own.gone(who)

    return Polling(who, make, poll, close)


CLIENTS = {"kafka-python": kp_consumer, "confluent-kafka": ck_consumer}


def subscription_of(client: str, topic: str):
    return {"topics": [topic]} if client == "kafka-python" else [topic]


@pytest.mark.parametrize(
    "client,membership",
    [("kafka-python", "dynamic"), ("kafka-python", "static"), ("confluent-kafka", "dynamic"), ("confluent-kafka", "static")],
)
def test_second_member_joins_a_stable_group(kafka, client, membership):
    topic, group = unique(f"rb-{client[:2]}"), unique("g")
    create_topic(kafka, topic)
    own = Ownership()
    make = CLIENTS[client]
    extra = {}

    def instance(i: int) -> dict:
        if membership != "static":
            return {}
        key = "group_instance_id" if client == "kafka-python" else "group.instance.id"
        return {key: f"{group}-member-{i}"}

    c1 = make(kafka, subscription_of(client, topic), group, own, "c1", **instance(1), **extra)
    c1.start()
    c2 = None
    try:
        wait_until("c1 owns both partitions", lambda: len(own.holding("c1")) == 2, describe=own.describe)
        c2 = make(kafka, subscription_of(client, topic), group, own, "c2", **instance(2), **extra)
        c2.start()
        wait_until("the partitions are split", lambda: split_evenly(own, "c1", "c2", topic), describe=own.describe)
        assert own.first_index("c1", "revoked") < own.first_index("c2", "assigned"), own.describe()
    finally:
        if c2 is not None:
            c2.finish()
        c1.finish()
    assert not own.violations, own.describe()


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_member_past_max_poll_interval_is_replaced(kafka, client):
    """c1 stops calling poll; past max.poll.interval.ms it leaves the group and c2 gets every
    partition and every message (librdkafka requires max.poll.interval.ms >= the session
    timeout, hence 6 s there)."""
    topic, group = unique(f"rb-mp-{client[:2]}"), unique("g")
    create_topic(kafka, topic)
    sent = {(topic, p, v) for p, v in produce(kafka, topic, per_partition=10)}
    own = Ownership()
    seen1: Set = set()
    seen2: Set = set()
    if client == "kafka-python":
        slow = {"max_poll_interval_ms": 3000}
    else:
        slow = {"max.poll.interval.ms": SESSION_MS}
    make = CLIENTS[client]
    # c1 reads nothing before it stalls: it starts paused once it owns its share.
    c1 = make(kafka, subscription_of(client, topic), group, own, "c1", seen=seen1, **slow)
    c1.start()
    c2 = None
    try:
        wait_until("c1 owns both partitions", lambda: len(own.holding("c1")) == 2, describe=own.describe)
        c2 = make(kafka, subscription_of(client, topic), group, own, "c2", seen=seen2)
        c2.start()
        wait_until("the partitions are split", lambda: split_evenly(own, "c1", "c2", topic), describe=own.describe)
        c1.paused.set()  # stuck between polls from now on
        # Its callbacks run inside poll, so it cannot revoke: a consumer stuck past its
        # max.poll.interval has lost its partitions by definition (Kafka's contract; its
        # commits are fenced). The broker may hand them on once it left.
        own.gone("c1")
        wait_until("c2 owns every partition", lambda: own.holding("c2") == {(topic, 0), (topic, 1)}, describe=own.describe)
        wait_until("c2 consumed everything c1 did not", lambda: seen1 | seen2 >= sent, describe=lambda: f"{len(seen1)} + {len(seen2)} of {len(sent)}\n{own.describe()}")
    finally:
        if c2 is not None:
            c2.finish()
        c1.finish()
    assert not own.violations, own.describe()


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_pattern_subscription_sees_an_auto_created_topic(kafka, client):
    prefix = unique(f"pat-{client[:2]}")
    topic = f"{prefix}-1"
    own = Ownership()
    seen: Set = set()
    if client == "kafka-python":
        c = kp_consumer(kafka, {"pattern": f"^{prefix}-.*$"}, unique("g"), own, "c", seen=seen, metadata_max_age_ms=300)
    else:
        c = ck_consumer(kafka, [f"^{prefix}-.*$"], unique("g"), own, "c", seen=seen, **{"topic.metadata.refresh.interval.ms": 300})
    c.start()
    try:
        assert c.started_ok.wait(20)
        # The subscription is in place and polling (several metadata refreshes) before the
        # topic exists.
        wait_until("the consumer polls", lambda: c.polls >= 10 or c.error)
        assert not c.error, c.error
        assert not own.holding("c")
        # A producer's metadata request auto-creates the topic.
        p = Producer({"bootstrap.servers": kafka})
        p.produce(topic, value=b"hello", partition=0)
        assert p.flush(20) == 0
        wait_until("the new topic is assigned", lambda: own.holding("c") == {(topic, 0), (topic, 1)}, describe=own.describe)
        wait_until("the message is consumed", lambda: (topic, 0, b"hello") in seen, describe=own.describe)
    finally:
        c.finish()
