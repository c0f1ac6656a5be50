"""Schema registry costs on a running broker (not a test): Pulsar producer creation with and
without an Avro schema (each PRODUCER with a schema registers or finds it), Confluent
registrations, and Pulsar consumption of Confluent-framed Kafka records (stripped per
delivery) against plain ones. Starts `magnetar standalone` on free ports with its own data dir.

    python3 perf/schema/bench.py [--bin target/release/magnetar] [--n 200] [--messages 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import pulsar
import requests
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pulsar.schema import AvroSchema

USER = {"type": "record", "name": "User", "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}]}


def start(binary, data):
    proc = subprocess.Popen([binary, "standalone", "--data-dir", data, "--kafka-port", "0", "--pulsar-port", "0",
                             "--http-port", "0", "--schema-registry-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "MAGNETAR_STORAGE__FSYNC": "os"})
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline().decode()
        if '"listening"' in line:
            return proc, json.loads(line)
    proc.kill()
    sys.exit("no listening line")


def timed(label, n, f):
    t0 = time.perf_counter()
    f()
    dt = time.perf_counter() - t0
    print(f"{label}: {n} in {dt:.2f} s = {dt / n * 1000:.2f} ms each")
    return dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/magnetar")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--messages", type=int, default=20000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as data:
        proc, listening = start(a.bin, data)
        try:
            client = pulsar.Client(f"pulsar://{listening['pulsar']}", operation_timeout_seconds=30)
            for label, schema in (("producer create, bytes", None), ("producer create, Avro schema", AvroSchema(None, schema_definition=USER))):
                topic = f"persistent://public/default/bench-{uuid.uuid4().hex[:8]}"
                kw = {"schema": schema} if schema else {}
                client.create_producer(topic, **kw).close()  # topic exists, schema registered
                timed(label, a.n, lambda: [client.create_producer(topic, **kw).close() for _ in range(a.n)])
            sr = SchemaRegistryClient({"url": f"http://{listening['schema_registry']}"})
            def register():
                for i in range(a.n):
                    s = dict(USER, name=f"User{i}")
                    sr.register_schema(f"bench-{i}", Schema(json.dumps(s), "AVRO"))
            timed("confluent register (new subject, new schema)", a.n, register)
            # Consumption: framed vs plain Kafka records read by a Pulsar consumer.
            ser = AvroSerializer(sr, json.dumps(USER))
            for label, framed in (("pulsar consume of plain Kafka records", False), ("pulsar consume of Confluent-framed Kafka records (stripped)", True)):
                topic = f"cons-{uuid.uuid4().hex[:8]}"
                p = Producer({"bootstrap.servers": listening["kafka"], "linger.ms": 20})
                ctx = SerializationContext(topic, MessageField.VALUE)
                for i in range(a.messages):
                    v = ser({"name": f"n{i}", "age": i}, ctx) if framed else b"\x02n0\x00" + bytes(8)
                    p.produce(topic, value=v)
                    if i % 5000 == 0:
                        p.poll(0)
                p.flush(60)
                # Bytes consumers both: the difference is the broker's stripping, not decoding.
                c = client.subscribe(f"persistent://public/default/{topic}-partition-0", "b",
                                     initial_position=pulsar.InitialPosition.Earliest)
                def drain():
                    for _ in range(a.messages):
                        m = c.receive(timeout_millis=30000)
                        c.acknowledge(m)
                timed(label, a.messages, drain)
                c.close()
            client.close()
        finally:
            proc.terminate()
            proc.wait(20)


if __name__ == "__main__":
    main()
