#!/usr/bin/env python3
"""Captures the seed corpus of the fuzz targets from real clients.

Starts `magnetar standalone` (the test harness's `Broker`, tests/python/conftest.py) behind a
logging TCP proxy for each protocol (the Kafka listener advertises the proxy's port, so every
connection of the clients goes through it), runs confluent-kafka, kafka-python and
pulsar-client workloads (each compression codec, keys, headers/properties, batching, groups,
admin), and writes the frames the clients sent to fuzz/corpus/<target>/:

  kafka_request    flags byte + one length-prefixed Kafka request (a few per API and version)
  kafka_batch      flags byte + a record batch found in the Produce requests
  kafka_to_pulsar  flags byte + the same batches
  pulsar_frame     one length-prefixed Pulsar frame (a few per command type)
  pulsar_entry     num_messages byte + the body of a SEND
  pulsar_to_kafka  8-byte base offset + the body of a SEND
  entry_header     the first entry of each segment file the broker wrote

The inputs of the targets whose input is not a client's bytes (segment_recovery's operation
list, sasl's messages, config's text) are written by `synthetic.py`.

Usage: MAGNETAR_BIN=target/debug/magnetar python3 fuzz/seeds/capture.py
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "python"))

from conftest import Broker  # noqa: E402

CORPUS = REPO / "fuzz" / "corpus"
FILE_BYTES_MAX = 16 * 1024
PER_KIND_MAX = 3
FRAMES_MAX = 5000


def crc32c(data: bytes) -> int:
    table = crc32c.table  # type: ignore[attr-defined]
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _table():
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        out.append(c)
    return out


crc32c.table = _table()  # type: ignore[attr-defined]


class Proxy:
    """Forwards one listener to `upstream`, keeping each length-prefixed frame the client sent."""

    def __init__(self, port: int, upstream):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = port
        self.upstream = upstream
        self.frames: list[bytes] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=30)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src, dst, record):
        buf = b""
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            try:
                dst.sendall(data)
            except OSError:
                return
            if not record:
                continue
            buf += data
            while len(buf) >= 4:
                n = int.from_bytes(buf[:4], "big")
                if len(buf) < 4 + n:
                    break
                with self.lock:
                    if len(self.frames) < FRAMES_MAX:
                        self.frames.append(buf[: 4 + n])
                buf = buf[4 + n :]

    def close(self):
        self.closed = True
        self.sock.close()


def write(target: str, data: bytes, written: dict):
    if len(data) > FILE_BYTES_MAX:
        return
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    (d / name).write_bytes(data)
    written[target] = written.get(target, 0) + 1


def record_batches(frame: bytes):
    """Every valid v2 record batch inside a frame (length, magic 2 and CRC32C all match)."""
    i = 0
    while i + 61 <= len(frame):
        length = int.from_bytes(frame[i + 8 : i + 12], "big", signed=True)
        end = i + 12 + length
        if frame[i + 16] == 2 and 49 <= length and end <= len(frame):
            crc = int.from_bytes(frame[i + 17 : i + 21], "big")
            if crc32c(frame[i + 21 : end]) == crc:
                yield frame[i:end]
                i = end
                continue
        i += 1


def varint(b: bytes, i: int):
    shift = v = 0
    while True:
        byte = b[i]
        i += 1
        v |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return v, i


def proto_fields(b: bytes):
    """(field, wire type, value) of a protobuf message; value is an int or bytes."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            n, i = varint(b, i)
            v, i = b[i : i + n], i + n
        elif wt == 5:
            v, i = b[i : i + 4], i + 4
        elif wt == 1:
            v, i = b[i : i + 8], i + 8
        else:
            return
        yield field, wt, v


def pulsar_send_body(frame: bytes):
    """(command type, body or None) of a Pulsar frame."""
    cmd_size = int.from_bytes(frame[4:8], "big")
    command = frame[8 : 8 + cmd_size]
    kind = next((v for f, wt, v in proto_fields(command) if f == 1), None)
    rest = frame[8 + cmd_size :]
    if not rest:
        return kind, None
    if rest[:2] == b"\x0e\x02":
        n = int.from_bytes(rest[2:6], "big")
        rest = rest[6 + n :]
    if rest[:2] == b"\x0e\x01":
        rest = rest[6:]
    return kind, rest


def kafka_workloads(bootstrap: str):
    import confluent_kafka
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic("seed-admin", 2)]).values():
        f.result(30)
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        p = confluent_kafka.Producer(
            {"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5,
             "enable.idempotence": codec == "zstd"}
        )
        for i in range(20):
            p.produce(f"seed-{codec}", key=f"k{i}".encode() if i % 3 else None,
                      value=(b"v" * (i * 7)) if i % 5 else None,
                      headers=[("h", b"x"), ("bin", bytes([0xff, i]))] if i % 2 else None)
        assert p.flush(30) == 0
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "seed-group",
                                  "auto.offset.reset": "earliest"})
    c.subscribe(["seed-gzip", "seed-none"])
    got, deadline = 0, time.time() + 30
    while got < 40 and time.time() < deadline:
        m = c.poll(1)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    c.close()

    import kafka

    p = kafka.KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
    for i in range(10):
        p.send("seed-kp", key=b"key", value=b"value %d" % i, headers=[("a", b"b")])
    p.flush(30)
    p.close()
    kc = kafka.KafkaConsumer("seed-kp", bootstrap_servers=bootstrap, group_id="seed-kp-group",
                             auto_offset_reset="earliest", consumer_timeout_ms=5000)
    for n, _ in enumerate(kc):
        if n >= 9:
            break
    kc.commit()
    kc.close()


def pulsar_workloads(service_url: str):
    import pulsar

    client = pulsar.Client(service_url, operation_timeout_seconds=30)
    for codec in [pulsar.CompressionType.NONE, pulsar.CompressionType.LZ4,
                  pulsar.CompressionType.ZLib, pulsar.CompressionType.ZSTD,
                  pulsar.CompressionType.SNAPPY]:
        for batching in (False, True):
            topic = f"persistent://public/default/seed-{int(codec)}-{int(batching)}"
            producer = client.create_producer(topic, compression_type=codec,
                                              batching_enabled=batching,
                                              batching_max_publish_delay_ms=5)
            for i in range(10):
                producer.send_async(b"payload %d " % i * (i + 1), None,
                                    properties={"p": str(i)},
                                    partition_key=f"key-{i % 3}",
                                    event_timestamp=1_700_000_000_000 + i)
            producer.flush()
            producer.close()
    consumer = client.subscribe("persistent://public/default/seed-0-1", "seed-sub",
                                initial_position=pulsar.InitialPosition.Earliest)
    for _ in range(10):
        consumer.acknowledge(consumer.receive(30_000))
    consumer.close()
    client.close()


def main():
    binary = Path(os.environ.get("MAGNETAR_BIN", REPO / "target" / "debug" / "magnetar"))
    work = Path(tempfile.mkdtemp(prefix="magnetar-seeds-"))
    broker = Broker(binary, work)
    # The broker listens on 127.0.0.2 and advertises 127.0.0.1 (Kafka metadata, Pulsar
    # lookups), where the proxies listen on the same ports: every client connection passes
    # through a proxy.
    broker.start(cmd=[str(binary), "standalone", "--data-dir", str(work / "data"),
                      "--bind", "127.0.0.2", "--advertised-host", "127.0.0.1",
                      "--kafka-port", "0", "--pulsar-port", "0", "--http-port", "0"])
    kafka_port = int(broker.kafka.rsplit(":", 1)[1])
    pulsar_port = int(broker.pulsar.rsplit(":", 1)[1])
    kafka_proxy = Proxy(kafka_port, ("127.0.0.2", kafka_port))
    pulsar_proxy = Proxy(pulsar_port, ("127.0.0.2", pulsar_port))
    try:
        kafka_workloads(f"127.0.0.1:{kafka_proxy.port}")
        pulsar_workloads(f"pulsar://127.0.0.1:{pulsar_proxy.port}")
    finally:
        broker.stop(check=False)
        kafka_proxy.close()
        pulsar_proxy.close()

    written: dict = {}
    kinds: dict = {}
    for frame in kafka_proxy.frames:
        api, version = int.from_bytes(frame[4:6], "big"), int.from_bytes(frame[6:8], "big")
        k = ("kafka", api, version)
        if kinds.get(k, 0) < PER_KIND_MAX:
            kinds[k] = kinds.get(k, 0) + 1
            write("kafka_request", b"\x00" + frame, written)
        if api == 0:  # Produce
            for batch in record_batches(frame):
                write("kafka_batch", b"\x00" + batch, written)
                write("kafka_to_pulsar", b"\x00" + batch, written)
    for frame in pulsar_proxy.frames:
        kind, body = pulsar_send_body(frame)
        k = ("pulsar", kind)
        if kinds.get(k, 0) < PER_KIND_MAX:
            kinds[k] = kinds.get(k, 0) + 1
            write("pulsar_frame", frame, written)
        if body is not None and len(body) >= 4:
            size = int.from_bytes(body[:4], "big")
            meta = body[4 : 4 + size]
            n = next((v for f, wt, v in proto_fields(meta) if f == 11 and wt == 0), 1)
            write("pulsar_entry", bytes([min(max(n, 1), 255)]) + body, written)
            write("pulsar_to_kafka", bytes(8) + body, written)
    for seg in sorted((work / "data").rglob("*.seg")):
        data = seg.read_bytes()
        if len(data) >= 54:
            length = int.from_bytes(data[46:50], "little")
            write("entry_header", data[: 54 + length], written)
    print(f"frames: kafka {len(kafka_proxy.frames)}, pulsar {len(pulsar_proxy.frames)}")
    for target, n in sorted(written.items()):
        print(f"{target}: {n} files")


if __name__ == "__main__":
    main()
