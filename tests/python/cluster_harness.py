"""Harness for the cluster-mode tests (test_cluster.py): an etcd on free loopback ports in a tmp
dir, brokers (`magnetar standalone` with a `[cluster]` section) started with conftest's `Broker`,
and small raw Kafka requests addressed to ONE broker (Metadata v4, FindCoordinator v1,
CreateTopics v1, CreatePartitions v0), so a test can tell what each broker answers rather than
what a client's merged metadata cache says.

Every wait is a bounded poll on an observable condition (`wait_until`).
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from conftest import Broker, free_port, tail, wait_until  # noqa: F401 - re-exported


def etcd_binary() -> Optional[str]:
    return shutil.which("etcd")


# --------------------------------------------------------------------------------------------
# etcd


class Etcd:
    """One etcd member on 127.0.0.1, data in `workdir`, log in workdir/etcd.log."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "etcd.log"
        self.proc: Optional[subprocess.Popen] = None
        self.endpoint = ""
        self._ports: Tuple[int, int] = (0, 0)  # client, peer
        self._data: Path = self.workdir / "data-0"

    def start(self, timeout_s: float = 30.0) -> "Etcd":
        if etcd_binary() is None:
            raise RuntimeError("etcd binary not found")
        for attempt in range(3):  # a free port may be taken between probe and bind
            self._ports = (free_port(), free_port())
            self._data = self.workdir / f"data-{attempt}"
            if self._launch(timeout_s):
                return self
            self.stop()
        raise RuntimeError(f"etcd did not become healthy\n{tail(self.log_path)}")

    def restart(self, timeout_s: float = 30.0) -> "Etcd":
        """Starts the member again on the same ports and data directory (after `stop` or
        `kill9`): the same cluster, its keys and leases as they were."""
        assert self.proc is None or self.proc.poll() is not None, "etcd is still running"
        self.proc = None
        if not self._launch(timeout_s):
            self.stop()
            raise RuntimeError(f"etcd did not become healthy again\n{tail(self.log_path)}")
        return self

    def _launch(self, timeout_s: float) -> bool:
        client, peer = self._ports
        self.endpoint = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [etcd_binary(), "--name", "t", "--data-dir", str(self._data),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"t={peer_url}", "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                body = urllib.request.urlopen(self.endpoint + "/health", timeout=1).read()
                if json.loads(body).get("health") == "true":
                    return True
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        return False

    def kill9(self) -> None:
        """SIGKILL (no graceful shutdown); `restart` brings it back."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# --------------------------------------------------------------------------------------------
# brokers


class ClusterBroker(Broker):
    """conftest's Broker with a config file AND ports on the command line (port 0 by default)."""

    def __init__(self, *a, name: str = "", **k):
        super().__init__(*a, **k)
        self.name = name
        self.node_id: Optional[int] = None

    def command(self, ports=None):
        ports = ports or {}
        return [
            str(self.binary), "standalone", "--data-dir", str(self.data_dir), "--bind", "127.0.0.1",
            "--kafka-port", str(ports.get("kafka", 0)), "--pulsar-port", str(ports.get("pulsar", 0)),
            "--http-port", str(ports.get("http", 0)),
        ] + self.extra_args

    def sigterm(self):
        """Sends SIGTERM and returns at once (the caller polls the cluster, then `stop`s)."""
        import signal

        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def __repr__(self):
        return f"<broker {self.name} node {self.node_id} kafka {self.kafka}>"


class Cluster:
    """Brokers sharing one etcd (under a metadata_root of their own) and one object store."""

    def __init__(self, binary: Path, workdir: Path, etcd: Etcd, object_store: str,
                 env: Optional[Dict[str, str]] = None, session_ttl_ms: int = 2500,
                 metadata_root: str = "/magnetar", cluster_toml: str = "", extra_toml: str = "",
                 object_store_endpoint: Optional[str] = None, storage_toml: str = "",
                 rebalance_delay_ms: Optional[int] = None):
        """`cluster_toml`: more keys of `[cluster]`; `storage_toml`: more keys of `[storage]`;
        `extra_toml`: whole sections after them. `rebalance_delay_ms`: rebalancing on (owners
        hand a broker that joined its share once it has been live that long); None turns it
        off, so a test's bundles move only when the test moves them."""
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.etcd = etcd
        self.env = dict(env or {})
        self.session_ttl_ms = session_ttl_ms
        self.brokers: List[ClusterBroker] = []
        endpoint = (f'object_store_endpoint = "{object_store_endpoint}"\n'
                    if object_store_endpoint else "")
        self.config = self.workdir / "cluster.toml"
        self.config.write_text(
            "version = 1\n"
            "[storage]\n"
            f'object_store = "{object_store}"\n'
            f"{endpoint}"
            f"{storage_toml}"
            "[cluster]\n"
            f'metadata_store = "etcd:{etcd.endpoint}"\n'
            f'metadata_root = "{metadata_root}"\n'
            f"session_ttl_ms = {session_ttl_ms}\n"
            + ("load_balancer_enabled = false\n" if rebalance_delay_ms is None
               else f"rebalance_delay_ms = {rebalance_delay_ms}\n")
            + f"{cluster_toml}"
            f"{extra_toml}"
        )

    # -- lifecycle

    def start_brokers(self, n: int, envs: Optional[List[Dict[str, str]]] = None) -> List[ClusterBroker]:
        """Starts `n` brokers at the same time (as a cluster is brought up), so they join before
        the first one claimed every bundle (rebalancing is off unless the cluster was made with
        `rebalance_delay_ms`).
        `envs[i]`: more environment of the i-th new broker (e.g. its own
        MAGNETAR_CLUSTER__METADATA_STORE, to reach etcd through a proxy)."""
        import threading

        new = [self.add_broker(start=False, env=(envs[i] if envs else None)) for i in range(n)]
        errors: List[BaseException] = []

        def run(b):
            try:
                b.start()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(b,), daemon=True) for b in new]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        if errors or any(t.is_alive() for t in threads):
            raise AssertionError(f"broker start failed: {errors!r}\n{self.logs()}")
        self.wait_brokers_registered()
        return new

    def add_broker(self, start: bool = True, env: Optional[Dict[str, str]] = None) -> ClusterBroker:
        i = len(self.brokers)
        b = ClusterBroker(self.binary, self.workdir / f"b{i}", env={**self.env, **(env or {})},
                          extra_args=["--config", str(self.config)], name=f"b{i}")
        self.brokers.append(b)
        if start:
            b.start()
        return b

    def live(self) -> List[ClusterBroker]:
        return [b for b in self.brokers if b.alive()]

    def bootstrap(self, brokers: Optional[List[ClusterBroker]] = None) -> str:
        return ",".join(b.kafka for b in (brokers or self.live()))

    def wait_brokers_registered(self, timeout_s: float = 20.0) -> None:
        """Every live broker's Metadata lists exactly the live brokers; learns the node ids."""
        live = self.live()
        want = {b.kafka for b in live}

        def ok():
            for b in live:
                md = metadata(b.kafka)
                if {f"{h}:{p}" for h, p in md.brokers.values()} != want:
                    return False
            return md

        md = wait_until(ok, timeout_s, f"all live brokers listing exactly {sorted(want)}",
                        on_timeout=self.logs)
        by_addr = {f"{h}:{p}": nid for nid, (h, p) in md.brokers.items()}
        for b in live:
            b.node_id = by_addr[b.kafka]

    def by_node(self, node_id: int) -> ClusterBroker:
        for b in self.brokers:
            if b.node_id == node_id:
                return b
        raise KeyError(node_id)

    def stop_all(self) -> None:
        for b in self.brokers:
            try:
                b.stop(check=False, timeout_s=10)
            except Exception as e:  # never leak a process
                sys.stderr.write(f"error stopping {b}: {e!r}\n")

    def logs(self, lines: int = 40) -> str:
        out = []
        for b in self.brokers:
            for gen in range(1, b.generation + 1):
                p = b.workdir / f"broker-{gen}.stderr"
                out.append(f"----- {b.name} (node {b.node_id}, {b.kafka}) {p} -----\n"
                           f"{tail(p, lines)}")
        out.append(f"----- etcd {self.etcd.log_path} -----\n{tail(self.etcd.log_path, 15)}")
        return "\n".join(out)

    # -- views of one broker

    def leaders(self, via: ClusterBroker, topic: str) -> Dict[int, int]:
        """partition -> leader node id, as `via` answers Metadata."""
        md = metadata(via.kafka, [topic])
        t = md.topics.get(topic)
        assert t is not None and t.error == 0, f"{topic} via {via}: {t}"
        return {p: leader for p, (err, leader) in t.partitions.items()}

    def wait_leaders_live(self, topic: str, partitions: int, via: Optional[List[ClusterBroker]] = None,
                          timeout_s: float = 20.0) -> Dict[int, int]:
        """Polls until every broker in `via` (default: the live ones) answers the same leader
        for each of `partitions` partitions, every leader live and every partition error 0."""
        via = via or self.live()
        live_ids = {b.node_id for b in self.live()}
        seen: Dict[str, object] = {}

        def ok():
            answers = []
            for b in via:
                md = metadata(b.kafka, [topic])
                t = md.topics.get(topic)
                seen[b.name] = t
                if t is None or t.error != 0 or len(t.partitions) != partitions:
                    return False
                if any(err != 0 or leader not in live_ids for err, leader in t.partitions.values()):
                    return False
                answers.append({p: leader for p, (_, leader) in t.partitions.items()})
            return answers[0] if all(a == answers[0] for a in answers) else False

        return wait_until(ok, timeout_s, f"{topic}: {partitions} partitions led by live brokers "
                          f"{sorted(live_ids)}", on_timeout=lambda: f"last answers: {seen}\n{self.logs()}")

    # -- Pulsar views (HTTP lookup and admin of one broker)

    def pulsar_url(self, brokers: Optional[List[ClusterBroker]] = None) -> str:
        """A Pulsar service URL listing `brokers` (default: the live ones)."""
        return "pulsar://" + ",".join(b.pulsar for b in (brokers or self.live()))

    def pulsar_owner(self, topic: str, via: ClusterBroker) -> Optional[ClusterBroker]:
        """The broker `via` names for the full topic name `persistent://t/ns/x` in Pulsar's HTTP
        lookup (`GET /lookup/v2/topic/persistent/t/ns/x`); None when it names no broker of the
        cluster. Raises on an HTTP error."""
        import requests

        tenant, ns, name = topic.removeprefix("persistent://").split("/", 2)
        r = requests.get(f"http://{via.http}/lookup/v2/topic/persistent/{tenant}/{ns}/{name}",
                         timeout=5)
        r.raise_for_status()
        url = r.json()["brokerUrl"]
        return next((b for b in self.brokers if b.pulsar and url.endswith("//" + b.pulsar)), None)

    def wait_pulsar_owner(self, topic: str, timeout_s: float = 20.0,
                          not_: Optional[ClusterBroker] = None) -> ClusterBroker:
        """Polls until every live broker's HTTP lookup names the same live broker (other than
        `not_`) for `topic`; returns it."""
        seen: Dict[str, object] = {}

        def ok():
            live = self.live()
            owners = set()
            for b in live:
                try:
                    o = self.pulsar_owner(topic, b)
                except Exception as e:  # noqa: BLE001 - "not yet", reported on timeout
                    seen[b.name] = repr(e)
                    return False
                seen[b.name] = o
                owners.add(o)
            if len(owners) != 1:
                return False
            o = owners.pop()
            return o if o is not None and o in live and o is not not_ else False

        return wait_until(ok, timeout_s, f"one live owner of {topic} in every broker's lookup"
                          + (f" other than {not_}" if not_ else ""),
                          on_timeout=lambda: f"last answers: {seen}\n{self.logs()}")


def bundle_of(http: str, topic: str) -> str:
    """The name (`0x..._0x...`) of the bundle of the namespace holding the full topic name
    `persistent://t/ns/x`, from the boundaries the broker at `http` reports
    (`GET /admin/v2/namespaces/t/ns/bundles`) and the topic's hash (CRC-32 IEEE of the full name,
    docs/cluster.md); every range is [lower, upper) except the last, which holds 0xffffffff."""
    import zlib

    import requests

    tenant, ns, _ = topic.removeprefix("persistent://").split("/", 2)
    r = requests.get(f"http://{http}/admin/v2/namespaces/{tenant}/{ns}/bundles", timeout=5)
    r.raise_for_status()
    bounds = r.json()["boundaries"]
    h = zlib.crc32(topic.encode()) & 0xFFFFFFFF
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        last = i == len(bounds) - 2
        if int(lo, 16) <= h < int(hi, 16) or (last and h == int(hi, 16)):
            return f"{lo}_{hi}"
    raise AssertionError(f"hash {h:#x} of {topic} in no bundle of {bounds}")


def rendezvous_node(bundle: str, node_ids: List[int]) -> int:
    """The node docs/cluster.md's assignment rule gives the unowned `bundle`
    (`tenant/ns/0x..._0x...`) among live `node_ids`: the highest rendezvous weight, FNV-1a 64
    over the name and the node id (4 bytes big-endian) finished with the SplitMix64 mixer, ties
    to the higher id. Written from the description, so a test comparing it with the owner the
    brokers pick checks the rule too."""
    mask = (1 << 64) - 1

    def weight(node: int) -> int:
        h = 0xCBF29CE484222325
        for byte in bundle.encode() + struct.pack(">I", node):
            h = ((h ^ byte) * 0x100000001B3) & mask
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & mask
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & mask
        return h ^ (h >> 31)

    return max(node_ids, key=lambda n: (weight(n), n))


def pulsar_cursor(http: str, topic: str, subscription: str) -> Optional[Tuple[int, List[Tuple[int, int]]]]:
    """The durable cursor of `subscription` on the non-partitioned `topic` as the broker at `http`
    has it committed (`GET .../internal-stats`: the ledger's cursor state, installed only after
    its write to etcd committed): (mark-delete index: every index below it is acknowledged,
    [start, end) ranges acknowledged at or above it); None when there is no such cursor."""
    import requests

    tenant, ns, name = topic.removeprefix("persistent://").split("/", 2)
    r = requests.get(f"http://{http}/admin/v2/persistent/{tenant}/{ns}/{name}/internal-stats",
                     timeout=5)
    r.raise_for_status()
    cur = r.json()["cursors"].get(subscription)
    if cur is None:
        return None
    ranges = []
    for text in cur["individuallyDeletedMessages"]:  # "[a..b)"
        a, b = text.strip("[)").split("..")
        ranges.append((int(a), int(b)))
    return cur["markDeleteIndex"], ranges


def cursor_covers(cursor: Tuple[int, List[Tuple[int, int]]], index: int) -> bool:
    """Whether a `pulsar_cursor` answer counts message `index` acknowledged."""
    mark, ranges = cursor
    return index < mark or any(a <= index < b for a, b in ranges)


# --------------------------------------------------------------------------------------------
# raw Kafka requests to one broker


def _str(s: Optional[str]) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class _Reader:
    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self) -> Optional[str]:
        n = self.take(">h")
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n].decode()
        self.pos += n
        return s


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    for _ in range(100_000):
        if len(out) >= n:
            break
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        out += chunk
    return out


def request(addr: str, api_key: int, version: int, body: bytes, timeout_s: float = 10.0) -> _Reader:
    """One request (non-flexible header v1) on a fresh connection; returns a reader of the
    response body (after the correlation id)."""
    host, port = addr.rsplit(":", 1)
    header = struct.pack(">hhi", api_key, version, 7) + _str("cluster-test")
    msg = header + body
    with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
        s.settimeout(timeout_s)
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        data = _recv_exact(s, size)
    r = _Reader(data)
    assert r.take(">i") == 7, "correlation id"
    return r


@dataclass
class TopicMd:
    error: int
    partitions: Dict[int, Tuple[int, int]] = field(default_factory=dict)  # p -> (error, leader)


@dataclass
class Metadata:
    brokers: Dict[int, Tuple[str, int]]
    controller: int
    topics: Dict[str, TopicMd]


def metadata(addr: str, topics: Optional[List[str]] = None, timeout_s: float = 10.0) -> Metadata:
    """Metadata v4 to the broker at `addr` (never auto-creates)."""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics)) + b"".join(_str(t) for t in topics)
    body += b"\x00"  # allow_auto_topic_creation = false
    r = request(addr, 3, 4, body, timeout_s)
    r.take(">i")  # throttle
    brokers = {}
    for _ in range(r.take(">i")):
        nid = r.take(">i")
        host = r.string()
        port = r.take(">i")
        r.string()  # rack
        brokers[nid] = (host, port)
    r.string()  # cluster id
    controller = r.take(">i")
    out: Dict[str, TopicMd] = {}
    for _ in range(r.take(">i")):
        err = r.take(">h")
        name = r.string()
        r.take(">b")  # internal
        t = TopicMd(err)
        for _ in range(r.take(">i")):
            perr, idx, leader = r.take(">hii")
            for _ in range(2):  # replicas, isr
                n = r.take(">i")
                r.pos += 4 * max(n, 0)
            t.partitions[idx] = (perr, leader)
        out[name] = t
    return Metadata(brokers, controller, out)


def leader_epochs(addr: str, topic: str, timeout_s: float = 10.0) -> Dict[int, Tuple[int, int, int]]:
    """Metadata v7 for one topic: partition -> (error, leader, leader epoch)."""
    body = struct.pack(">i", 1) + _str(topic) + b"\x00"
    r = request(addr, 3, 7, body, timeout_s)
    r.take(">i")  # throttle
    for _ in range(r.take(">i")):
        r.take(">i")
        r.string()
        r.take(">i")
        r.string()
    r.string()  # cluster id
    r.take(">i")  # controller
    out: Dict[int, Tuple[int, int, int]] = {}
    for _ in range(r.take(">i")):
        r.take(">h")
        r.string()
        r.take(">b")
        for _ in range(r.take(">i")):
            perr, idx, leader, epoch = r.take(">hiii")
            for _ in range(3):  # replicas, isr, offline
                n = r.take(">i")
                r.pos += 4 * max(n, 0)
            out[idx] = (perr, leader, epoch)
    return out


def find_coordinator(addr: str, group: str, timeout_s: float = 10.0) -> Tuple[int, int, Optional[str]]:
    """FindCoordinator v1 (group) to the broker at `addr`: (error code, node id, host:port)."""
    r = request(addr, 10, 1, _str(group) + b"\x00", timeout_s)
    r.take(">i")  # throttle
    err = r.take(">h")
    r.string()  # message
    nid = r.take(">i")
    host = r.string()
    port = r.take(">i")
    return err, nid, (f"{host}:{port}" if host else None)


def create_topic(addr: str, name: str, partitions: int, timeout_s: float = 15.0) -> Tuple[int, Optional[str]]:
    """CreateTopics v2 to the broker at `addr`: (error code, message)."""
    body = struct.pack(">i", 1) + _str(name) + struct.pack(">ihii", partitions, 1, 0, 0)
    body += struct.pack(">ib", int(timeout_s * 1000), 0)
    r = request(addr, 19, 2, body, timeout_s + 5)
    r.take(">i")  # throttle
    assert r.take(">i") == 1
    r.string()
    return r.take(">h"), r.string()


def create_partitions(addr: str, name: str, count: int, timeout_s: float = 15.0) -> Tuple[int, Optional[str]]:
    """CreatePartitions v0 to the broker at `addr` (new total `count`): (error code, message)."""
    body = struct.pack(">i", 1) + _str(name) + struct.pack(">ii", count, -1)
    body += struct.pack(">ib", int(timeout_s * 1000), 0)
    r = request(addr, 37, 0, body, timeout_s + 5)
    r.take(">i")  # throttle
    assert r.take(">i") == 1
    r.string()
    return r.take(">h"), r.string()


def init_producer_id(addr: str, timeout_s: float = 10.0) -> Tuple[int, int, int]:
    """InitProducerId v0 (no transactional id) to the broker at `addr`: (error, pid, epoch)."""
    r = request(addr, 22, 0, _str(None) + struct.pack(">i", 60000), timeout_s)
    r.take(">i")  # throttle
    return r.take(">h"), r.take(">q"), r.take(">h")


def idempotent_batch(producer_id: int, epoch: int, base_sequence: int, values: List[bytes]) -> bytes:
    """A v2 record batch of `values` under (producer id, epoch, base sequence), built by
    kafka-python's record builder."""
    from kafka.record.default_records import DefaultRecordBatchBuilder

    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=producer_id, producer_epoch=epoch,
                                  base_sequence=base_sequence, batch_size=1 << 20)
    now = int(time.time() * 1000)
    for i, v in enumerate(values):
        b.append(i, timestamp=now, key=None, value=v, headers=[])
    return bytes(b.build())


def produce_batch(addr: str, topic: str, partition: int, batch: bytes,
                  timeout_s: float = 15.0) -> Tuple[int, int]:
    """Produce v3 (acks=-1) of one raw batch to the broker at `addr`: (error, base offset)."""
    body = _str(None) + struct.pack(">hii", -1, int(timeout_s * 1000), 1) + _str(topic)
    body += struct.pack(">iii", 1, partition, len(batch)) + batch
    r = request(addr, 0, 3, body, timeout_s + 5)
    assert r.take(">i") == 1
    r.string()
    assert r.take(">i") == 1
    _, err, base = r.take(">ihq")
    return err, base


class StallProxy:
    """A TCP proxy on 127.0.0.1 in front of `upstream` (`host:port`) that can stall: while
    stalled, bytes are held in both directions (connections stay open, nothing flows), as a
    hung object store or etcd looks to a broker. `resume()` lets them through again."""

    def __init__(self, upstream: str):
        import socket
        import threading

        self.upstream = upstream
        self._stalled = threading.Event()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.accepted = 0  # connections accepted so far
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall(self) -> None:
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        import socket
        import threading

        host, port = self.upstream.rsplit(":", 1)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            self.accepted += 1
            try:
                server = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, server), (server, client)):
                t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                t.start()

    def _pump(self, src, dst) -> None:
        src.settimeout(0.2)
        try:
            while not self._stop.is_set():
                if self._stalled.is_set():
                    self._stop.wait(0.05)
                    continue
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                while self._stalled.is_set() and not self._stop.is_set():
                    self._stop.wait(0.05)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass
