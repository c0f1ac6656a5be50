"""Log compaction throughput on a running broker (not a test): a compacted topic gets
`--records` keyed records of `--value-bytes` over `--keys` keys (confluent-kafka), then one
forced compaction through the admin API; prints the segment bytes before and after, the
compaction's duration (the broker's `magnetar_partition_compaction_last_duration_seconds`) and
the rate it read the log at. Repeats `--runs` times on fresh topics of one broker (release build,
fsync os, its own data dir, the background cleaner off).

    python3 perf/compaction/bench.py [--bin target/release/magnetar] [--records 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def start(binary, data):
    env = {**os.environ, "MAGNETAR_STORAGE__FSYNC": "os", "MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000"}
    proc = subprocess.Popen([binary, "standalone", "--data-dir", data, "--kafka-port", "0", "--pulsar-port", "0",
                             "--http-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline().decode()
        if '"listening"' in line:
            return proc, json.loads(line)
    proc.kill()
    sys.exit("no listening line")


def segment_bytes(data: Path, topic: str) -> int:
    return sum(p.stat().st_size for p in data.rglob("*.seg") if topic in str(p))


def metric(http: str, name: str, topic: str) -> float:
    for line in requests.get(f"http://{http}/metrics", timeout=10).text.splitlines():
        if line.startswith(name) and f'topic="{topic}"' in line:
            return float(line.split()[-1])
    raise SystemExit(f"no {name} for {topic}")


def run(kafka: str, http: str, data: Path, a) -> dict:
    topic = f"compact-bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka})
    admin.create_topics([NewTopic(topic, 1, 1, config={
        "cleanup.policy": "compact", "segment.bytes": str(a.segment_bytes),
        "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"})])[topic].result(30)
    p = Producer({"bootstrap.servers": kafka, "linger.ms": 20, "batch.size": 262144,
                  "compression.type": a.compression})
    value = b"v" * a.value_bytes

    def send(key: bytes):
        while True:
            try:
                p.produce(topic, key=key, value=value, partition=0)
                return
            except BufferError:
                p.poll(0.05)

    t0 = time.perf_counter()
    for i in range(a.records):
        send(b"key-%08d" % (i % a.keys))
    # Filler with unique keys past a segment, so every update is in a sealed segment.
    for i in range(a.segment_bytes // a.value_bytes + 100):
        send(b"filler-%08d" % i)
    assert p.flush(120) == 0
    produce_s = time.perf_counter() - t0
    before = segment_bytes(data, topic)
    url = f"http://{http}/admin/v2/persistent/public/default/{topic}/compaction"
    t0 = time.perf_counter()
    r = requests.put(url, timeout=30)
    assert r.status_code == 204, r.text
    while True:
        s = requests.get(url, timeout=10).json()
        if s["status"] in ("SUCCESS", "ERROR"):
            assert s["status"] == "SUCCESS", s
            break
        time.sleep(0.05)
    wall_s = time.perf_counter() - t0
    after = segment_bytes(data, topic)
    duration = metric(http, "magnetar_partition_compaction_last_duration_seconds", topic)
    return {"produce_s": produce_s, "before": before, "after": after, "duration_s": duration,
            "wall_s": wall_s, "mb_per_s": before / 1e6 / max(duration, 1e-3)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/magnetar")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--segment-bytes", type=int, default=16 << 20)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as data:
        proc, listening = start(a.bin, data)
        try:
            results = [run(listening["kafka"], listening["http"], Path(data), a) for _ in range(a.runs)]
        finally:
            proc.terminate()
            proc.wait(30)
    for r in results:
        print(f"before {r['before'] / 1e6:.1f} MB, after {r['after'] / 1e6:.2f} MB, compaction "
              f"{r['duration_s']:.2f} s ({r['mb_per_s']:.0f} MB/s read), wall {r['wall_s']:.2f} s, "
              f"produce {r['produce_s']:.1f} s")
    rates = [r["mb_per_s"] for r in results]
    print(f"median {statistics.median(rates):.0f} MB/s (min {min(rates):.0f}, max {max(rates):.0f}) "
          f"over {len(rates)} runs; {a.records} records of {a.value_bytes} B over {a.keys} keys, "
          f"compression {a.compression}")


if __name__ == "__main__":
    main()
