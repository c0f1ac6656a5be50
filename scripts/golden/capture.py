#!/usr/bin/env python3
"""Captures golden frames: real clients talk to a fresh `magnetar standalone` through a
recording TCP proxy, and every frame of the conversation is written to
`tests/golden/<protocol>/<client>-<scenario>.jsonl` (format in tests/golden/README.md).

Python 3.11, standard library only for the proxy; the scenarios import the clients they drive
(confluent-kafka, kafka-python, pulsar-client) and run `kcat`.

    python3 scripts/golden/capture.py                 # every scenario
    python3 scripts/golden/capture.py kcat-produce-consume
    MAGNETAR_BIN=target/debug/magnetar python3 scripts/golden/capture.py --out /tmp/golden

The broker is started exactly as the replay test (crates/magnetar/tests/golden.rs) starts it:
`standalone --bind 127.0.0.1` on port 0 with a fresh data dir, with the environment written in
the file's header (the Kafka advertised port is the proxy's, so clients come back through it).
Pulsar has no advertised-port setting: the proxy rewrites the broker's `pulsar://` address in
the frames it forwards to the client (same length, so no length field changes) and records the
rewritten frames, i.e. what the client saw.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
FORMAT = "magnetar-golden/1"
FRAME_BYTES_MAX = 16 << 20
START_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 60.0

KAFKA_APIS = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit",
    9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat",
    13: "LeaveGroup", 14: "SyncGroup", 15: "DescribeGroups", 16: "ListGroups",
    17: "SaslHandshake", 18: "ApiVersions", 19: "CreateTopics", 20: "DeleteTopics",
    22: "InitProducerId", 32: "DescribeConfigs", 36: "SaslAuthenticate", 60: "DescribeCluster",
}

PULSAR_TYPES = {
    2: "CONNECT", 3: "CONNECTED", 4: "SUBSCRIBE", 5: "PRODUCER", 6: "SEND", 7: "SEND_RECEIPT",
    8: "SEND_ERROR", 9: "MESSAGE", 10: "ACK", 11: "FLOW", 12: "UNSUBSCRIBE", 13: "SUCCESS",
    14: "ERROR", 15: "CLOSE_PRODUCER", 16: "CLOSE_CONSUMER", 17: "PRODUCER_SUCCESS", 18: "PING",
    19: "PONG", 20: "REDELIVER_UNACKNOWLEDGED_MESSAGES", 21: "PARTITIONED_METADATA",
    22: "PARTITIONED_METADATA_RESPONSE", 23: "LOOKUP", 24: "LOOKUP_RESPONSE",
    25: "CONSUMER_STATS", 26: "CONSUMER_STATS_RESPONSE", 27: "REACHED_END_OF_TOPIC", 28: "SEEK",
    29: "GET_LAST_MESSAGE_ID", 30: "GET_LAST_MESSAGE_ID_RESPONSE", 31: "ACTIVE_CONSUMER_CHANGE",
    32: "GET_TOPICS_OF_NAMESPACE", 33: "GET_TOPICS_OF_NAMESPACE_RESPONSE", 34: "GET_SCHEMA",
    35: "GET_SCHEMA_RESPONSE", 36: "AUTH_CHALLENGE", 37: "AUTH_RESPONSE", 38: "ACK_RESPONSE",
    39: "GET_OR_CREATE_SCHEMA", 40: "GET_OR_CREATE_SCHEMA_RESPONSE",
}
PULSAR_PING, PULSAR_PONG = 18, 19


# ---------------------------------------------------------------------------------------------
# broker


class Broker:
    """`magnetar standalone` on port 0 with a temp data dir, stopped by SIGTERM."""

    def __init__(self, binary: Path, env: Dict[str, str]):
        self.dir = Path(tempfile.mkdtemp(prefix="magnetar-golden-"))
        self.env = env
        base = {k: v for k, v in os.environ.items() if not k.startswith("MAGNETAR_")}
        base.update(env)
        self.stderr = open(self.dir / "stderr", "wb")
        self.proc = subprocess.Popen(
            [str(binary), "standalone", "--bind", "127.0.0.1", "--kafka-port", "0",
             "--pulsar-port", "0", "--http-port", "0", "--data-dir", str(self.dir / "data")],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr, env=base,
        )
        self.listening = self._listening_line()
        self.kafka = self.listening["kafka"]
        self.pulsar = self.listening["pulsar"]
        self.http = self.listening["http"]
        self._wait_health()

    def _listening_line(self) -> dict:
        found: List[dict] = []

        def pump():
            for raw in self.proc.stdout:
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("event") == "listening":
                    found.append(obj)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not found:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"broker did not start; stderr in {self.dir}/stderr")
            time.sleep(0.05)
        return found[0]

    def _wait_health(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.http}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("broker /health never answered 200")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


# ---------------------------------------------------------------------------------------------
# recording proxy


class Recorder:
    """The conversation: every frame of every proxied connection, in one global order.

    A frame is recorded before it is forwarded, so a response is always recorded after the
    request that caused it and a request after the response it depends on."""

    def __init__(self, protocol: str):
        self.protocol = protocol
        self.lock = threading.Lock()
        self.events: List[dict] = []
        self.next_conn = 0
        # Kafka: the api key and version of each connection's requests by correlation id.
        self.pending: Dict[int, Dict[int, tuple]] = {}
        self.closed: set = set()

    def new_conn(self) -> int:
        with self.lock:
            conn = self.next_conn
            self.next_conn += 1
            self.pending[conn] = {}
            return conn

    def record(self, conn: int, direction: str, frame: bytes) -> None:
        with self.lock:
            if conn in self.closed:
                return
            event: dict = {"conn": conn, "dir": direction}
            if self.protocol == "kafka":
                if direction == "c2s":
                    key, version, corr = (int.from_bytes(frame[0:2], "big", signed=True),
                                          int.from_bytes(frame[2:4], "big", signed=True),
                                          int.from_bytes(frame[4:8], "big", signed=True))
                    self.pending[conn][corr] = (key, version)
                else:
                    corr = int.from_bytes(frame[0:4], "big", signed=True)
                    key, version = self.pending[conn].pop(corr, (-1, -1))
                event.update(api=KAFKA_APIS.get(key, str(key)), api_key=key,
                             api_version=version, correlation_id=corr)
            else:
                kind = pulsar_type(frame)
                if kind in (PULSAR_PING, PULSAR_PONG):
                    return  # keep-alive, driven by timers: not part of the conversation
                event["type"] = PULSAR_TYPES.get(kind, str(kind))
            event["hex"] = frame.hex()
            self.events.append(event)

    def close(self, conn: int) -> None:
        with self.lock:
            if conn not in self.closed:
                self.closed.add(conn)
                self.events.append({"conn": conn, "dir": "close"})


def pulsar_type(frame: bytes) -> int:
    """BaseCommand.type (field 1, varint) of a frame without its total-size prefix."""
    cmd = frame[4:]
    if not cmd or cmd[0] != 0x08:
        return -1
    value, shift = 0, 0
    for b in cmd[1:11]:
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value
    return -1


def read_frame(sock: socket.socket, buf: bytearray) -> Optional[bytes]:
    """The next frame (without its 4-byte size prefix), or None at end of stream."""
    while True:
        if len(buf) >= 4:
            size = int.from_bytes(buf[:4], "big")
            if size > FRAME_BYTES_MAX:
                raise ValueError(f"frame of {size} bytes")
            if len(buf) >= 4 + size:
                frame = bytes(buf[4:4 + size])
                del buf[:4 + size]
                return frame
        try:
            data = sock.recv(65536)
        except OSError:
            return None
        if not data:
            return None
        buf.extend(data)


class Proxy:
    """Listens on 127.0.0.1:0 and forwards each connection to `upstream`, recording frames."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.upstream: Optional[tuple] = None
        self.rewrite: Optional[tuple] = None  # (broker bytes, proxy bytes) in s2c frames
        self.threads: List[threading.Thread] = []
        self.sockets: List[socket.socket] = []

    def start(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=10)
            server.settimeout(None)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sockets += [client, server]
            conn = self.recorder.new_conn()
            for src, dst, direction in ((client, server, "c2s"), (server, client, "s2c")):
                t = threading.Thread(target=self._pump, args=(conn, src, dst, direction),
                                     daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, conn: int, src: socket.socket, dst: socket.socket, direction: str) -> None:
        buf = bytearray()
        while True:
            frame = read_frame(src, buf)
            if frame is None:
                break
            if direction == "s2c" and self.rewrite:
                old, new = self.rewrite
                frame = frame.replace(old, new)
            self.recorder.record(conn, direction, frame)
            try:
                dst.sendall(len(frame).to_bytes(4, "big") + frame)
            except OSError:
                break
        if direction == "c2s":
            self.recorder.close(conn)
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def stop(self) -> None:
        self.listener.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# scenarios: each gets the address clients use (the proxy) and drives one conversation


def confluent_produce_consume(bootstrap: str) -> str:
    import confluent_kafka as ck

    topic = "golden-confluent"
    producer = ck.Producer({"bootstrap.servers": bootstrap, "client.id": "golden",
                            "linger.ms": 0, "enable.idempotence": False})
    for i in range(3):
        producer.produce(topic, key=f"k{i}".encode(), value=f"confluent {i}".encode(),
                         partition=0, timestamp=1_700_000_000_000 + i,
                         headers=[("h", f"{i}".encode())])
        producer.flush(CLIENT_TIMEOUT_S)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    del producer

    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "client.id": "golden",
                            "group.id": "golden-confluent-group",
                            "auto.offset.reset": "earliest", "enable.auto.commit": False,
                            "fetch.wait.max.ms": 100, "session.timeout.ms": 10000})
    consumer.subscribe([topic])
    got = consume(lambda: consumer.poll(0.2), 3)
    consumer.commit(asynchronous=False)
    consumer.close()
    assert [m.value() for m in got] == [f"confluent {i}".encode() for i in range(3)], got
    return f"confluent-kafka {ck.__version__} (librdkafka {ck.libversion()[0]})"


def consume(poll: Callable, count: int) -> list:
    got = []
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while len(got) < count and time.monotonic() < deadline:
        m = poll()
        if m is None:
            continue
        if m.error():
            raise RuntimeError(str(m.error()))
        got.append(m)
    return got


def kafka_python_produce_consume(bootstrap: str) -> str:
    import kafka

    topic = "golden-kafka-python"
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, client_id="golden",
                                   linger_ms=0)
    for i in range(3):
        producer.send(topic, key=f"k{i}".encode(), value=f"kafka-python {i}".encode(),
                      partition=0, timestamp_ms=1_700_000_000_000 + i).get(CLIENT_TIMEOUT_S)
    producer.flush(CLIENT_TIMEOUT_S)
    producer.close(CLIENT_TIMEOUT_S)

    consumer = kafka.KafkaConsumer(topic, bootstrap_servers=bootstrap, client_id="golden",
                                   group_id="golden-kafka-python-group",
                                   auto_offset_reset="earliest", enable_auto_commit=False,
                                   fetch_max_wait_ms=100)
    got = []
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while len(got) < 3 and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            got += records
    consumer.commit()
    consumer.close()
    assert [r.value for r in got] == [f"kafka-python {i}".encode() for i in range(3)], got
    return f"kafka-python {kafka.__version__}"


def kcat_produce_consume(bootstrap: str) -> str:
    topic = "golden-kcat"
    base = ["kcat", "-b", bootstrap, "-X", "client.id=golden"]
    run(base + ["-P", "-t", topic, "-p", "0", "-K", ":"], b"k0:kcat 0\nk1:kcat 1\n")
    out = run(base + ["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%k=%s\n",
                      "-X", "fetch.wait.max.ms=100"], b"")
    assert out == b"k0=kcat 0\nk1=kcat 1\n", out
    # A balanced consumer (librdkafka 2.0.2's group protocol): join, sync, fetch, commit.
    out = run(base + ["-G", "golden-kcat-group", "-e", "-f", "%k=%s\n",
                      "-X", "auto.offset.reset=earliest", "-X", "fetch.wait.max.ms=100",
                      "-X", "enable.auto.commit=false", topic], b"")
    assert out == b"k0=kcat 0\nk1=kcat 1\n", out
    out = run(base + ["-L", "-t", topic], b"")
    assert topic.encode() in out, out
    version = subprocess.run(["kcat", "-V"], capture_output=True, timeout=10).stdout
    line = [x for x in version.decode(errors="replace").splitlines() if x.startswith("Version")]
    return "kcat " + (line[0].split("(")[0].removeprefix("Version").strip() if line else "?")


def run(cmd: List[str], stdin: bytes) -> bytes:
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=CLIENT_TIMEOUT_S)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} exited {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p.stdout


def pulsar_produce_consume(service_url: str) -> str:
    import pulsar

    topic = "persistent://public/default/golden-pulsar"
    client = pulsar.Client(service_url, operation_timeout_seconds=30,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    # A named producer: a broker-assigned name would be in every SEND's metadata (under the
    # payload CRC), so a replay could not send the recorded bytes.
    producer = client.create_producer(topic, producer_name="golden-producer",
                                      batching_enabled=False)
    for i in range(3):
        producer.send(f"pulsar {i}".encode(), properties={"i": str(i)}, partition_key=f"k{i}",
                      event_timestamp=1_700_000_000_000 + i)
    producer.flush()
    producer.close()
    consumer = client.subscribe(topic, "golden-sub", consumer_name="golden-consumer",
                                consumer_type=pulsar.ConsumerType.Exclusive,
                                initial_position=pulsar.InitialPosition.Earliest)
    got = []
    for _ in range(3):
        msg = consumer.receive(timeout_millis=int(CLIENT_TIMEOUT_S * 1000))
        consumer.acknowledge(msg)
        got.append(msg.data())
    consumer.close()
    client.close()
    assert got == [f"pulsar {i}".encode() for i in range(3)], got
    return f"pulsar-client {pulsar.__version__}"


def pulsar_batch_shared(service_url: str) -> str:
    import pulsar

    topic = "persistent://public/default/golden-pulsar-batch"
    client = pulsar.Client(service_url, operation_timeout_seconds=30,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    # One batch of three: sent when full (the publish delay is far longer than the scenario).
    producer = client.create_producer(topic, producer_name="golden-batch-producer",
                                      batching_enabled=True, batching_max_messages=3,
                                      batching_max_publish_delay_ms=60_000)
    for i in range(3):
        producer.send_async(f"batch {i}".encode(), None, properties={"i": str(i)},
                            event_timestamp=1_700_000_000_000 + i)
    producer.flush()
    producer.close()
    consumer = client.subscribe(topic, "golden-shared", consumer_name="golden-shared-consumer",
                                consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest)
    got = []
    for _ in range(3):
        msg = consumer.receive(timeout_millis=int(CLIENT_TIMEOUT_S * 1000))
        consumer.acknowledge(msg)
        got.append(msg.data())
    consumer.unsubscribe()
    consumer.close()
    client.close()
    assert got == [f"batch {i}".encode() for i in range(3)], got
    return f"pulsar-client {pulsar.__version__}"


SCENARIOS = {
    # name (the file stem): (protocol, driver)
    "confluent-kafka-produce-consume": ("kafka", confluent_produce_consume),
    "kafka-python-produce-consume": ("kafka", kafka_python_produce_consume),
    "kcat-produce-consume": ("kafka", kcat_produce_consume),
    "pulsar-client-produce-consume": ("pulsar", pulsar_produce_consume),
    "pulsar-client-batch-shared": ("pulsar", pulsar_batch_shared),
}

BROKER_ENV = {
    # A new group's first JoinGroup would wait 3 s for more members; the replay would too.
    "MAGNETAR_GROUPS__INITIAL_REBALANCE_DELAY_MS": "0",
}


def capture(name: str, binary: Path, out_dir: Path) -> Path:
    protocol, driver = SCENARIOS[name]
    recorder = Recorder(protocol)
    proxy = Proxy(recorder)
    env = dict(BROKER_ENV)
    if protocol == "kafka":
        env["MAGNETAR_KAFKA__ADVERTISED_PORT"] = str(proxy.port)
    broker = Broker(binary, env)
    try:
        if protocol == "kafka":
            proxy.start(broker.kafka)
            client = driver(f"127.0.0.1:{proxy.port}")
        else:
            proxy.start(broker.pulsar)
            old = f"pulsar://127.0.0.1:{port_of(broker.pulsar)}".encode()
            new = f"pulsar://127.0.0.1:{proxy.port}".encode()
            if len(old) != len(new):
                raise RuntimeError("broker and proxy ports differ in length; run again")
            proxy.rewrite = (old, new)
            client = driver(f"pulsar://127.0.0.1:{proxy.port}")
        time.sleep(0.3)  # let the last frames (closes, leave) be recorded
    finally:
        proxy.stop()
        broker.stop()
    header = {
        "format": FORMAT,
        "protocol": protocol,
        "scenario": name,
        "client": client,
        "broker_env": env,
        # Ports as the client saw them: the replay maps the broker's own ports to these.
        "ports": {"kafka": proxy.port if protocol == "kafka" else port_of(broker.kafka),
                  "pulsar": proxy.port if protocol == "pulsar" else port_of(broker.pulsar),
                  "http": port_of(broker.http)},
    }
    path = out_dir / protocol / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write(json.dumps(header) + "\n")
        for event in recorder.events:
            f.write(json.dumps(event) + "\n")
    frames = sum(1 for e in recorder.events if e["dir"] != "close")
    print(f"{path}: {frames} frames on {recorder.next_conn} connections ({client})")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", help=f"default: all of {list(SCENARIOS)}")
    parser.add_argument("--out", default=str(REPO_ROOT / "tests" / "golden"))
    parser.add_argument("--bin", default=os.environ.get(
        "MAGNETAR_BIN", str(REPO_ROOT / "target" / "debug" / "magnetar")))
    args = parser.parse_args()
    for name in args.scenarios or list(SCENARIOS):
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}")
        capture(name, Path(args.bin), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
