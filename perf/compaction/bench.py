"""Log compaction throughput on a running broker (not a test): a compacted topic gets
`--records` keyed records of `--value-bytes` over `--keys` keys (confluent-kafka), then one
forced compaction through the admin API; prints the segment bytes before and after, the
compaction's duration (the broker's `magnetar_partition_compaction_last_duration_seconds`) and
the rate it read the log at. Repeats `--runs` times on fresh topics of one broker (release build,
fsync os, its own data dir, the background cleaner off).

    python3 perf/compaction/bench.py [--bin target/release/magnetar] [--records 1000000]

With `--load-workload W` each run also drives `magnetar-perf` with workload W (e.g.
perf/workloads/1-topic-16-partitions-1kb-20k.yaml) against the same broker after the fill, and
runs come in pairs: one where the compaction is forced `--load-compact-at-s` seconds into the
load, one without compaction (the baseline). Prints the load's publish and end-to-end latency
over the measured phase and the worst one-second interval of each, so what compaction costs
concurrent producers is read side by side. `--io-limit` sets the cleaner's I/O throttle.
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


def start(binary, data, io_limit=0):
    env = {**os.environ, "MAGNETAR_STORAGE__FSYNC": "os", "MAGNETAR_CLEANER__CHECK_INTERVAL_MS": "86400000",
           "MAGNETAR_CLEANER__IO_MAX_BYTES_PER_SECOND": str(io_limit)}
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


def load(kafka: str, http: str, pid: int, a, compact_url: str | None, out: Path) -> dict:
    """Drives magnetar-perf; with `compact_url`, forces the compaction mid-run. Returns the
    measured phase's latencies, the worst interval, and when the compaction ran."""
    cmd = [a.perf_bin, "run", "--bootstrap-servers", kafka, "--workload", a.load_workload,
           "--warmup-s", str(a.load_warmup_s), "--duration-s", str(a.load_duration_s),
           "--pid", str(pid), "--output", str(out)]
    t0 = time.perf_counter()
    perf = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    compacted = None
    try:
        if compact_url:
            time.sleep(a.load_compact_at_s)
            c0 = time.perf_counter() - t0
            r = requests.put(compact_url, timeout=30)
            assert r.status_code == 204, r.text
            compacted = (c0, wait_compaction(compact_url) - t0)
        assert perf.wait(a.load_warmup_s + a.load_duration_s + 120) == 0, "magnetar-perf failed"
    finally:
        if perf.poll() is None:
            perf.kill()
    res = json.loads(out.read_text())
    measured = [i for i in res["intervals"] if i["phase"] != "warmup"]
    worst = max(measured, key=lambda i: i["publish_latency"]["p99_ms"] or 0)
    s = res["summary"]
    return {"publish": s["publish_latency"], "e2e": s["e2e_latency"],
            "msg_per_s": s["publish"]["msg_per_s"], "worst_interval_p99_ms": worst["publish_latency"]["p99_ms"],
            "worst_interval_end_s": worst["end_s"], "compaction_wall_s": compacted}


def wait_compaction(url: str) -> float:
    """Polls the compaction status until it ends; returns perf_counter() at the end."""
    while True:
        s = requests.get(url, timeout=10).json()
        if s["status"] in ("SUCCESS", "ERROR"):
            assert s["status"] == "SUCCESS", s
            return time.perf_counter()
        time.sleep(0.05)


def run(kafka: str, http: str, data: Path, a, pid: int = 0, compact: bool = True, out: Path | None = None) -> dict:
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
    if a.load_workload:
        res = load(kafka, http, pid, a, url if compact else None, out)
        res.update(compact=compact, before=before, after=segment_bytes(data, topic))
        if compact:
            res["duration_s"] = metric(http, "magnetar_partition_compaction_last_duration_seconds", topic)
        return res
    t0 = time.perf_counter()
    r = requests.put(url, timeout=30)
    assert r.status_code == 204, r.text
    wall_s = wait_compaction(url) - t0
    after = segment_bytes(data, topic)
    duration = metric(http, "magnetar_partition_compaction_last_duration_seconds", topic)
    return {"produce_s": produce_s, "before": before, "after": after, "duration_s": duration,
            "wall_s": wall_s, "mb_per_s": before / 1e6 / max(duration, 1e-3)}


def report_load(results: list) -> None:
    def ms(v):
        return "-" if v is None else f"{v:.2f}"
    print("| run | compaction | before -> after MB | compaction s (wall in load) | msg/s | publish p50 / p99 / p99.9 / max ms "
          "| worst 1 s p99 ms | e2e p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        p = r["publish"]
        when = "-"
        if r["compact"]:
            c0, c1 = r["compaction_wall_s"]
            when = f"{r['duration_s']:.2f} ({c0:.1f}-{c1:.1f} s)"
        print(f"| {r['run']} | {'yes' if r['compact'] else 'no'} | {r['before'] / 1e6:.0f} -> {r['after'] / 1e6:.0f} "
              f"| {when} | {r['msg_per_s']:.0f} | {ms(p['p50_ms'])} / {ms(p['p99_ms'])} / {ms(p['p99_9_ms'])} / "
              f"{ms(p['max_ms'])} | {ms(r['worst_interval_p99_ms'])} (at {r['worst_interval_end_s']:.0f} s) "
              f"| {ms(r['e2e']['p99_ms'])} |")
    for compact in (False, True):
        p99 = [r["publish"]["p99_ms"] for r in results if r["compact"] == compact]
        print(f"compaction {'yes' if compact else 'no'}: publish p99 median {statistics.median(p99):.2f} ms "
              f"(min {min(p99):.2f}, max {max(p99):.2f}) over {len(p99)} runs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/magnetar")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--segment-bytes", type=int, default=16 << 20)
    ap.add_argument("--compression", default="none")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--io-limit", type=int, default=0, help="cleaner.io_max_bytes_per_second (0 = none)")
    ap.add_argument("--load-workload", help="drive this magnetar-perf workload during each run")
    ap.add_argument("--perf-bin", default="target/release/magnetar-perf")
    ap.add_argument("--load-warmup-s", type=int, default=5)
    ap.add_argument("--load-duration-s", type=int, default=20)
    ap.add_argument("--load-compact-at-s", type=float, default=10.0)
    ap.add_argument("--out", default=None, help="directory for magnetar-perf's JSON results")
    a = ap.parse_args()
    out = Path(a.out or tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as data:
        proc, listening = start(a.bin, data, a.io_limit)
        try:
            k, h = listening["kafka"], listening["http"]
            if a.load_workload:
                results = []
                for n in range(a.runs):
                    # Alternate which comes first, so neither always runs on the fuller disk.
                    for compact in ((False, True) if n % 2 == 0 else (True, False)):
                        name = f"load-{n + 1}-{'compact' if compact else 'baseline'}.json"
                        results.append({**run(k, h, Path(data), a, proc.pid, compact, out / name), "run": n + 1})
            else:
                results = [run(k, h, Path(data), a) for _ in range(a.runs)]
        finally:
            proc.terminate()
            proc.wait(30)
    if a.load_workload:
        report_load(sorted(results, key=lambda r: (r["compact"], r["run"])))
        return
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
