#!/usr/bin/env python3
"""Restart time of a filled broker (issue #14, "open a partition without reading its log").

Two phases, so the same data can be measured by two builds:

  fill:    start `magnetar standalone`, create topic `restart` (16 partitions) and `probe`
           (1 partition), produce --fill-gib GiB round-robin into `restart` with an idempotent
           producer, stop the broker with SIGTERM (clean shutdown).
  restart: drop the data files from the page cache (posix_fadvise DONTNEED, so segments are
           read from disk), start the broker, wait for GET /health to answer, then at once
           (a) produce one message to `probe` (acks=all) and (b) ask ListOffsets (latest) for
           all 16 partitions of `restart`; print the time from ready to (a) and to each
           answer of (b), and how many "rebuilding segment index" warnings the broker logged.
           Then stop it with SIGTERM (or, with --stop kill, SIGKILL, so the next rep measures
           recovery after a crash). Repeat with --reps.

Every wait is bounded. Not a test: figures depend on the machine; see perf/results/*/restart/.
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from confluent_kafka import TopicPartition

PARTITIONS = 16
VALUE_BYTES = 64 * 1024


def write_config(path, data_dir, segment_bytes, fsync="os"):
    with open(path, "w") as f:
        f.write(
            f"""version = 1
[server]
data_dir = "{data_dir}"
bind = "127.0.0.1"
[storage]
fsync = "{fsync}"
segment_bytes = {segment_bytes}
"""
        )


def start(args, log):
    cmd = [
        args.bin, "standalone", "--config", args.config,
        "--kafka-port", str(args.kafka_port), "--pulsar-port", str(args.pulsar_port),
        "--http-port", str(args.http_port),
    ]
    spawned = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{args.http_port}/health"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"broker exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    ready = time.monotonic()
                    print(f"broker ready {(ready - spawned) * 1000:.0f} ms after spawn")
                    return proc, ready
        except OSError:
            pass
        time.sleep(0.005)
    proc.kill()
    sys.exit("broker not ready within 120 s")


def stop(proc):
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        sys.exit("broker did not stop within 300 s")
    return time.monotonic() - started


def bootstrap(args):
    return f"127.0.0.1:{args.kafka_port}"


def fill(args):
    with open(args.log, "ab") as log:
        proc, _ = start(args, log)
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap(args)})
            futures = admin.create_topics(
                [NewTopic("restart", PARTITIONS, 1), NewTopic("probe", 1, 1)]
            )
            for f in futures.values():
                f.result(timeout=30)
            producer = Producer({
                "bootstrap.servers": bootstrap(args),
                "enable.idempotence": True,
                "linger.ms": 20,
                "batch.size": 1 << 20,
                "queue.buffering.max.kbytes": 512 * 1024,
            })
            value = os.urandom(VALUE_BYTES)
            total = int(args.fill_gib * (1 << 30))
            n = total // VALUE_BYTES
            t0 = time.monotonic()
            for i in range(n):
                while True:
                    try:
                        producer.produce("restart", value, partition=i % PARTITIONS)
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
            left = producer.flush(300)
            if left:
                sys.exit(f"{left} messages not delivered")
            secs = time.monotonic() - t0
            print(f"fill: {n} x {VALUE_BYTES} B = {n * VALUE_BYTES / (1 << 30):.2f} GiB "
                  f"into {PARTITIONS} partitions in {secs:.1f} s")
        finally:
            if args.stop == "kill":
                proc.kill()
                proc.wait(30)
                print("fill: broker killed (-9)")
            else:
                print(f"fill: clean shutdown took {stop(proc):.2f} s")


def evict(data_dir):
    count = 0
    for root, _, files in os.walk(data_dir):
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(fd)
    return count


def restart(args, rep):
    evicted = evict(args.data_dir)
    log_start = os.path.getsize(args.log) if os.path.exists(args.log) else 0
    with open(args.log, "ab") as log:
        proc, ready = start(args, log)
        try:
            produce_at = [None]
            offsets_at = {}
            err = []

            def probe():
                p = Producer({"bootstrap.servers": bootstrap(args), "acks": "all"})
                def done(e, _m):
                    if e is not None:
                        err.append(str(e))
                    produce_at[0] = time.monotonic()
                p.produce("probe", b"hello", partition=0, on_delivery=done)
                p.flush(120)

            def offsets():
                a = AdminClient({"bootstrap.servers": bootstrap(args)})
                req = {TopicPartition("restart", i): OffsetSpec.latest() for i in range(PARTITIONS)}
                futures = a.list_offsets(req, request_timeout=120)
                for tp, f in futures.items():
                    try:
                        f.result(timeout=120)
                        offsets_at[tp.partition] = time.monotonic()
                    except Exception as e:  # noqa: BLE001 - reported, not hidden
                        err.append(f"{tp.partition}: {e}")

            threads = [threading.Thread(target=probe), threading.Thread(target=offsets)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(180)
            if err or produce_at[0] is None or len(offsets_at) != PARTITIONS:
                print(f"rep {rep}: errors {err}, produce {produce_at[0]}, offsets {len(offsets_at)}")
            a_ms = (produce_at[0] - ready) * 1000 if produce_at[0] else float("nan")
            per = sorted((at - ready) * 1000 for at in offsets_at.values())
            b_ms = per[-1] if per else float("nan")
        finally:
            if args.stop == "kill":
                # A crash: the next start finds no clean-shutdown marker and scans (and
                # CRC-checks) every partition's active segment.
                proc.kill()
                proc.wait(30)
                down = 0.0
            else:
                down = stop(proc)
    with open(args.log, "rb") as f:
        f.seek(log_start)
        text = f.read().decode(errors="replace")
    rebuilds = text.count("rebuilding segment index")
    print(f"rep {rep}: (a) first produce on 'probe' {a_ms:.1f} ms after ready; "
          f"(b) all {PARTITIONS} partitions answered ListOffsets {b_ms:.1f} ms after ready "
          f"(first {per[0] if per else float('nan'):.1f} ms, median {per[len(per) // 2] if per else float('nan'):.1f} ms); "
          f"index rebuild warnings {rebuilds}; files evicted from page cache {evicted}; "
          + (f"clean shutdown {down:.2f} s" if args.stop == "term" else "then kill -9"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["fill", "restart"])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--fill-gib", type=float, default=4.0)
    ap.add_argument("--segment-bytes", type=int, default=64 << 20)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--fsync", choices=["os", "interval", "always"], default="os",
                    help="the broker's storage.fsync (recovery checkpoints are written under always)")
    ap.add_argument("--stop", choices=["term", "kill"], default="term",
                    help="end the fill and each restart rep with SIGTERM (clean) or SIGKILL (the next start recovers from a crash)")
    ap.add_argument("--kafka-port", type=int, default=19092)
    ap.add_argument("--pulsar-port", type=int, default=16650)
    ap.add_argument("--http-port", type=int, default=18080)
    ap.add_argument("--log", default=None)
    args = ap.parse_args()
    os.makedirs(args.data_dir, exist_ok=True)
    args.data_dir = os.path.abspath(args.data_dir)
    args.config = os.path.join(os.path.dirname(args.data_dir), "restart-magnetar.toml")
    args.log = args.log or os.path.join(os.path.dirname(args.data_dir), "restart-broker.log")
    write_config(args.config, args.data_dir, args.segment_bytes, args.fsync)
    print(f"{args.phase}: bin {args.bin}, data {args.data_dir}, segment_bytes {args.segment_bytes}")
    if args.phase == "fill":
        fill(args)
    else:
        for rep in range(args.reps):
            restart(args, rep)


if __name__ == "__main__":
    main()
