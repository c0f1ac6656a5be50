#!/usr/bin/env python3
"""Kafka <-> Pulsar interop throughput of `magnetar standalone`, per `kafka.entry_format`.

For each entry format and repetition this starts a fresh broker (free ports, fresh data dir,
`MAGNETAR_KAFKA__ENTRY_FORMAT=<format>`), and for each of four paths

    kk  Kafka produce  -> Kafka consume      (the reference)
    pp  Pulsar produce -> Pulsar consume
    pk  Pulsar produce -> Kafka consume
    kp  Kafka produce  -> Pulsar consume

creates a fresh topic of the same shape (`--partitions`, through the Kafka admin API), produces
`--messages` messages of `--size` bytes with the producer protocol, checks that the partitions'
high watermarks add up to that count, then consumes them all twice with the consumer protocol:
"cold" (first consumer: conversions happen here) and "warm" (a second consumer of the same data:
conversions come from the broker's conversion caches when the data fits in them). Each phase is
timed separately, and the broker's CPU time (utime+stime of its process, /proc/<pid>/stat) during
the phase is recorded, so the broker's cost per message is visible apart from the Python
clients' own cost. Every consumed message counts; every 97th is checked byte for byte.

Clients: confluent-kafka (librdkafka) and pulsar-client (C++ core), on their fast paths:
batching producers (a delivery callback on every Kafka message, on every 1000th Pulsar one: a
Pulsar callback costs a GIL hand-off each), `Consumer.consume(num_messages=...)`, and Pulsar
`batch_receive` with a large receiver queue and one cumulative ack per partition per batch.

Every loop is bounded by a count and by `--phase-timeout-s`. A phase that times out or finds a
wrong count or wrong bytes fails the run (exit code 1); the JSON keeps what was measured.

    perf/interop.py --bin target/release/magnetar --reps 3 --out perf/results/DATE/interop
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import confluent_kafka
import pulsar
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PATHS = {
    "kk": ("kafka", "kafka", "Kafka -> Kafka"),
    "pp": ("pulsar", "pulsar", "Pulsar -> Pulsar"),
    "pk": ("pulsar", "kafka", "Pulsar -> Kafka"),
    "kp": ("kafka", "pulsar", "Kafka -> Pulsar"),
}
PHASES = ("produce", "cold", "warm")
CHECK_EVERY = 97
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------------------------------------
# broker


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # the command name (field 2) may hold spaces; fields after it start past the last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


class Broker:
    def __init__(self, binary: str, entry_format: str, fsync: str, startup_timeout_s: float):
        self.dir = Path(tempfile.mkdtemp(prefix="magnetar-interop-"))
        env = dict(os.environ)
        env["MAGNETAR_KAFKA__ENTRY_FORMAT"] = entry_format
        env["MAGNETAR_STORAGE__FSYNC"] = fsync
        self.out = open(self.dir / "out", "wb")
        self.err = open(self.dir / "err", "wb")
        cmd = [binary, "standalone", "--data-dir", str(self.dir / "data"), "--bind", "127.0.0.1",
               "--kafka-port", "0", "--pulsar-port", "0", "--http-port", "0"]
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.err, env=env)
        self.pid = self.proc.pid
        deadline = time.monotonic() + startup_timeout_s
        listening = None
        while listening is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise BenchError(f"broker did not start: {self.stderr_tail()}")
            for line in (self.dir / "out").read_text(errors="replace").splitlines():
                if '"listening"' in line:
                    listening = json.loads(line)
            time.sleep(0.05)
        self.kafka, self.pulsar, self.http = listening["kafka"], listening["pulsar"], listening["http"]
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.http}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError("broker not healthy in time")
            time.sleep(0.1)

    def stderr_tail(self) -> str:
        try:
            return "\n".join((self.dir / "err").read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.out.close()
        self.err.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# payloads


class Payloads:
    """Message i is its index in 10 ASCII digits followed by fixed random filler."""

    def __init__(self, size: int):
        if size < 16:
            raise SystemExit("--size must be at least 16")
        self.size = size
        self.filler = random.Random(7).randbytes(size - 10)

    def make(self, i: int) -> bytes:
        return b"%010d" % i + self.filler

    def check(self, value: bytes, n: int) -> int:
        try:
            i = int(value[:10])
        except ValueError:
            raise BenchError(f"unexpected message bytes {value[:20]!r}") from None
        if not 0 <= i < n or value != self.make(i):
            raise BenchError(f"message {i} has wrong bytes (length {len(value)})")
        return i


# ------------------------------------------------------------------------------------------
# phases


class Phase:
    """Wall time and broker CPU ticks of one phase."""

    def __init__(self, pid: int):
        self.pid = pid

    def __enter__(self):
        self.ticks0 = cpu_ticks(self.pid)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.t0
        self.ticks = cpu_ticks(self.pid) - self.ticks0
        return False

    def result(self, count: int, t_first: float | None = None) -> dict:
        """`msgs_per_s` is over the whole phase, client start-up included (`first_msg_s` shows
        how long a consumer took to receive its first messages)."""
        return {
            "messages": count,
            "seconds": round(self.seconds, 4),
            "first_msg_s": round(t_first - self.t0, 4) if t_first is not None else None,
            "msgs_per_s": round(count / self.seconds, 1) if self.seconds > 0 else None,
            "broker_cpu_s": round(self.ticks / CLK_TCK, 3),
            "broker_cpu_us_per_msg": round(self.ticks / CLK_TCK * 1e6 / count, 2) if count else None,
        }


def create_topic(broker: Broker, name: str, partitions: int):
    admin = AdminClient({"bootstrap.servers": broker.kafka})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)


def pulsar_client(broker: Broker) -> pulsar.Client:
    return pulsar.Client(f"pulsar://{broker.pulsar}", operation_timeout_seconds=30,
                         logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


def produce_kafka(broker, topic, n, partitions, payloads, timeout_s):
    state = {"acked": 0, "errors": 0}

    def on_delivery(err, _msg):
        if err is None:
            state["acked"] += 1
        else:
            state["errors"] += 1

    p = confluent_kafka.Producer({
        "bootstrap.servers": broker.kafka, "linger.ms": 5, "batch.size": 1048576,
        "batch.num.messages": 10000, "queue.buffering.max.messages": 100000,
        "compression.type": "none", "acks": "all",
    })
    deadline = time.monotonic() + timeout_s
    for i in range(n):
        value = payloads.make(i)
        while True:
            try:
                p.produce(topic, value=value, partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.005)
                if time.monotonic() > deadline:
                    raise BenchError("Kafka produce timed out (queue full)")
        if i % 1000 == 999:
            p.poll(0)
            if time.monotonic() > deadline:
                raise BenchError(f"Kafka produce timed out after {i + 1} messages")
    left = p.flush(max(deadline - time.monotonic(), 0.1))
    if left or state["errors"] or state["acked"] != n:
        raise BenchError(f"Kafka produce: {state['acked']} acked, {state['errors']} errors, {left} left")


def produce_pulsar(broker, topic, n, partitions, payloads, timeout_s):
    state = {"acked": 0, "errors": 0}

    def on_sent(res, _msg_id):
        if res == pulsar.Result.Ok:
            state["acked"] += 1
        else:
            state["errors"] += 1

    c = pulsar_client(broker)
    try:
        p = c.create_producer(
            f"persistent://public/default/{topic}", batching_enabled=True,
            batching_max_messages=1000, batching_max_allowed_size_in_bytes=1048576,
            batching_max_publish_delay_ms=5, max_pending_messages=10000,
            max_pending_messages_across_partitions=100000, block_if_queue_full=True,
            message_routing_mode=pulsar.PartitionsRoutingMode.RoundRobinDistribution,
            send_timeout_millis=int(timeout_s * 1000))
        deadline = time.monotonic() + timeout_s
        # A Python callback on every message costs the client a GIL hand-off from the C++ I/O
        # thread each (it cut the rate ~5x in a trial); every 1000th and the last message carry
        # one, and the high-watermark check after the phase proves all n were stored.
        watched = 0
        for i in range(n):
            if i % 1000 == 999 or i == n - 1:
                p.send_async(payloads.make(i), on_sent)
                watched += 1
            else:
                p.send_async(payloads.make(i), None)
            if i % 1000 == 999 and time.monotonic() > deadline:
                raise BenchError(f"Pulsar produce timed out after {i + 1} messages")
        p.flush()
        while state["acked"] + state["errors"] < watched:
            if time.monotonic() > deadline:
                break
            time.sleep(0.001)
        if state["errors"] or state["acked"] != watched:
            raise BenchError(f"Pulsar produce: {state['acked']} of {watched} watched sends "
                             f"acknowledged, {state['errors']} errors")
        p.close()
    finally:
        c.close()


def consume_kafka(broker, topic, n, partitions, payloads, timeout_s):
    c = confluent_kafka.Consumer({
        "bootstrap.servers": broker.kafka, "group.id": f"interop-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    })
    try:
        # offset 0 (the topic is fresh), not OFFSET_BEGINNING: librdkafka looks a logical offset
        # up on a timer, which adds ~0.5 s of client-side idle time to every consumer
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = 0
        t_first = None
        deadline = time.monotonic() + timeout_s
        while got < n:
            if time.monotonic() > deadline:
                raise BenchError(f"Kafka consume timed out after {got} of {n} messages")
            msgs = c.consume(num_messages=min(10000, n - got), timeout=0.5)
            if msgs and t_first is None:
                t_first = time.monotonic()
            for m in msgs:
                if m.error():
                    raise BenchError(f"Kafka consume error: {m.error()}")
                if got % CHECK_EVERY == 0:
                    payloads.check(m.value(), n)
                got += 1
        if got != n:
            raise BenchError(f"Kafka consume: {got} messages, expected {n}")
        return got, t_first
    finally:
        c.close()


def consume_pulsar(broker, topic, n, partitions, payloads, timeout_s, subscription):
    c = pulsar_client(broker)
    try:
        consumer = c.subscribe(
            f"persistent://public/default/{topic}", subscription,
            consumer_type=pulsar.ConsumerType.Exclusive,
            initial_position=pulsar.InitialPosition.Earliest,
            receiver_queue_size=10000, max_total_receiver_queue_size_across_partitions=50000,
            batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(10000, 64 * 1048576, 10))
        got = 0
        t_first = None
        deadline = time.monotonic() + timeout_s
        while got < n:
            if time.monotonic() > deadline:
                raise BenchError(f"Pulsar consume timed out after {got} of {n} messages")
            batch = consumer.batch_receive()
            if len(batch) and t_first is None:
                t_first = time.monotonic()
            last = {}
            for m in batch:
                if got % CHECK_EVERY == 0:
                    payloads.check(m.data(), n)
                got += 1
                last[m.topic_name()] = m
            for m in last.values():
                consumer.acknowledge_cumulative(m)
        if got != n:
            raise BenchError(f"Pulsar consume: {got} messages, expected {n}")
        consumer.close()
        return got, t_first
    finally:
        c.close()


def high_watermarks(broker, topic, partitions) -> int:
    c = confluent_kafka.Consumer({"bootstrap.servers": broker.kafka, "group.id": "interop-hw"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
                   for p in range(partitions))
    finally:
        c.close()


def run_path(broker, path, args, payloads) -> dict:
    producer, consumer, _ = PATHS[path]
    topic = f"interop-{path}-{uuid.uuid4().hex[:8]}"
    create_topic(broker, topic, args.partitions)
    n, parts, tmo = args.messages, args.partitions, args.phase_timeout_s
    out = {}
    with Phase(broker.pid) as ph:
        (produce_kafka if producer == "kafka" else produce_pulsar)(broker, topic, n, parts, payloads, tmo)
    out["produce"] = ph.result(n)
    stored = high_watermarks(broker, topic, parts)
    if stored != n:
        raise BenchError(f"{path}: high watermarks add up to {stored}, expected {n}")
    for phase in ("cold", "warm"):
        with Phase(broker.pid) as ph:
            if consumer == "kafka":
                got, t_first = consume_kafka(broker, topic, n, parts, payloads, tmo)
            else:
                got, t_first = consume_pulsar(broker, topic, n, parts, payloads, tmo, f"interop-{phase}")
        out[phase] = ph.result(got, t_first)
    return out


# ------------------------------------------------------------------------------------------
# summary


def median_of(runs, fmt, path, phase, key):
    vals = [r["paths"][path][phase][key] for r in runs
            if r["entry_format"] == fmt and path in r.get("paths", {})]
    vals = [v for v in vals if v is not None]
    return round(statistics.median(vals), 2) if vals else None


def summarise(runs, formats, paths) -> dict:
    summary = {}
    for fmt in formats:
        s = {}
        for path in paths:
            s[path] = {phase: {k: median_of(runs, fmt, path, phase, k)
                               for k in ("msgs_per_s", "broker_cpu_us_per_msg")} for phase in PHASES}
        for path in paths:
            for phase in PHASES:
                ref = s.get("kk", {}).get(phase, {}).get("msgs_per_s")
                v = s[path][phase]["msgs_per_s"]
                s[path][phase]["ratio_vs_kk"] = round(v / ref, 3) if v and ref else None
        summary[fmt] = s
    return summary


def table(summary, paths) -> str:
    lines = [
        "| entry_format | path | produce msg/s | cold consume msg/s | warm consume msg/s "
        "| ratio vs K->K (produce / cold / warm) | broker CPU µs/msg (produce / cold / warm) |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for fmt, s in summary.items():
        for path in paths:
            r = s[path]

            def num(v):
                return "n/a" if v is None else f"{v:,.0f}"

            def fl(v, d=2):
                return "n/a" if v is None else f"{v:.{d}f}"

            lines.append(
                f"| {fmt} | {PATHS[path][2]} | {num(r['produce']['msgs_per_s'])} "
                f"| {num(r['cold']['msgs_per_s'])} | {num(r['warm']['msgs_per_s'])} "
                f"| {' / '.join(fl(r[p]['ratio_vs_kk']) for p in PHASES)} "
                f"| {' / '.join(fl(r[p]['broker_cpu_us_per_msg'], 1) for p in PHASES)} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("MAGNETAR_BIN", "target/release/magnetar"))
    ap.add_argument("--formats", default="kafka,pulsar,mixed_kafka")
    ap.add_argument("--paths", default="kk,pp,pk,kp")
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--fsync", default="os", help="storage.fsync of the broker (default os)")
    ap.add_argument("--phase-timeout-s", type=float, default=120.0)
    ap.add_argument("--startup-timeout-s", type=float, default=30.0)
    ap.add_argument("--out", default=None, help="directory for results.json (and the table)")
    args = ap.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    paths = [p for p in args.paths.split(",") if p]
    for p in paths:
        if p not in PATHS:
            raise SystemExit(f"unknown path {p!r}: one of {', '.join(PATHS)}")
    if args.messages < 1 or args.partitions < 1 or args.reps < 1:
        raise SystemExit("--messages, --partitions and --reps must be positive")
    payloads = Payloads(args.size)
    meta = {
        "command": " ".join([sys.argv[0]] + sys.argv[1:]),
        "binary": args.bin, "messages": args.messages, "size": args.size,
        "partitions": args.partitions, "reps": args.reps, "fsync": args.fsync,
        "nproc": os.cpu_count(), "loadavg_before": list(os.getloadavg()),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "confluent_kafka": confluent_kafka.version()[0], "librdkafka": confluent_kafka.libversion()[0],
    }
    try:
        meta["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                            text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        meta["git_commit"] = None
    runs, failures = [], []
    for rep in range(args.reps):
        for fmt in formats:
            run = {"rep": rep, "entry_format": fmt, "loadavg_before": list(os.getloadavg()), "paths": {}}
            runs.append(run)
            try:
                broker = Broker(args.bin, fmt, args.fsync, args.startup_timeout_s)
            except BenchError as e:
                failures.append(f"rep {rep} {fmt}: {e}")
                print(failures[-1], file=sys.stderr)
                continue
            try:
                for path in paths:
                    try:
                        run["paths"][path] = run_path(broker, path, args, payloads)
                        r = run["paths"][path]
                        print(f"rep {rep} {fmt:11} {path}: " + ", ".join(
                            f"{ph} {r[ph]['msgs_per_s']:,.0f}/s {r[ph]['broker_cpu_us_per_msg']}µs"
                            for ph in PHASES), file=sys.stderr, flush=True)
                    except (BenchError, confluent_kafka.KafkaException, pulsar.PulsarException) as e:
                        failures.append(f"rep {rep} {fmt} {path}: {e}")
                        print(failures[-1], file=sys.stderr, flush=True)
            finally:
                broker.stop()
    summary = summarise(runs, formats, paths)
    meta["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result = {"meta": meta, "summary": summary, "runs": runs, "failures": failures}
    md = table(summary, paths)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "table.md").write_text(md + "\n")
    if failures:
        print(f"{len(failures)} failure(s):\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
