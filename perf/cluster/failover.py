#!/usr/bin/env python3
"""Failover time of cluster mode under kill -9, over several rounds.

Three `magnetar broker` processes on a fresh etcd + moto S3 (loopback), session TTL set by
MAGNETAR_CLUSTER__SESSION_TTL_MS. A 16-partition topic; one confluent-kafka producer
(enable.idempotence, acks=all, linger.ms=5) sends `--rate` msg/s round-robin over the partitions
(value = a sequence number) for the whole series. Each round:

  1. ~3 s of steady production; the broker leading the most partitions (raw Metadata v1 asked of
     a live broker) gets SIGKILL at t_kill;
  2. every 50 ms each surviving broker is asked for Metadata; `leaders_s` = t_kill -> the first
     poll where every survivor answers every partition with error 0, a live leader, and the same
     leaders as the other survivors;
  3. wait until every partition the victim led has a delivery report after that (bounded);
  4. the victim is restarted (same --data-dir and ports) and the three brokers list each other.

From the delivery reports (monotonic time of each successful callback): `gap_all_s` is the
longest gap between two successive successful deliveries (any partition) from 2 s before the kill
to the end of the round; `gap_victim_s` is the longest such gap on any one partition the victim
led (its write unavailability as the client saw it). At the end the producer is flushed and every
partition is consumed from offset 0 to its high watermark: `missing` = acknowledged sequence
numbers not found, `duplicates` = sequence numbers found more than once, `offset_mismatch` =
acknowledged (partition, offset) whose record is not that sequence number.

usage: perf/cluster/failover.py --bin B --out FILE.json [--rounds 10] [--session-ttl-ms 10000]
       [--rate 1000]
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import Cluster, Etcd, Moto, loadavg, machine, metadata, wait_until  # noqa: E402

PARTITIONS = 16


def leaders_now(cluster, topic):
    """{partition: leader} if every live broker agrees, every partition error 0 and led by a
    live broker; else None."""
    live_ids = {b.node_id for b in cluster.live()}
    answers = []
    for b in cluster.live():
        md = metadata(b.kafka, [topic], timeout_s=1.0)
        t = md["topics"].get(topic)
        if t is None or t[0] != 0 or len(t[1]) != PARTITIONS:
            return None
        if any(err != 0 or leader not in live_ids for err, leader in t[1].values()):
            return None
        answers.append({p: leader for p, (_, leader) in t[1].items()})
    return answers[0] if answers and all(a == answers[0] for a in answers) else None


def max_gap(times):
    times = sorted(times)
    return max((b - a for a, b in zip(times, times[1:])), default=None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--session-ttl-ms", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=1000)
    args = ap.parse_args()

    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    work = Path(tempfile.mkdtemp(prefix="mg-failover-", dir="/tmp"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    etcd = Etcd(work / "etcd").start()
    moto = Moto(work / "moto").start()
    env = {"MAGNETAR_CLUSTER__SESSION_TTL_MS": str(args.session_ttl_ms), "RUST_LOG": "warn"}
    cluster = Cluster(args.bin, work / "cluster", 3, etcd, moto, f"failover-{uuid.uuid4().hex[:6]}", env)
    result = {"machine": machine(), "session_ttl_ms": args.session_ttl_ms, "rate": args.rate,
              "partitions": PARTITIONS, "loadavg_before": loadavg(), "rounds": []}
    stop = threading.Event()
    deliveries = []  # (t, partition, offset, seq)
    errors = []
    produced = [0]
    try:
        cluster.start()
        result["broker_cmd"] = cluster.brokers[0].cmd
        result["env"] = env
        topic = f"failover-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})  # kept alive until the result
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
        wait_until(lambda: leaders_now(cluster, topic), 30, "initial leaders")
        pconf = {"bootstrap.servers": cluster.bootstrap(), "enable.idempotence": True, "acks": "all",
                 "linger.ms": 5, "log_level": 3}
        result["producer_config"] = pconf
        p = Producer(pconf)

        def cb(err, msg):
            if err is None:
                deliveries.append((time.monotonic(), msg.partition(), msg.offset(), int(msg.value())))
            else:
                errors.append((time.monotonic(), str(err)))

        def produce_loop():
            t0 = time.monotonic()
            seq = 0
            for _ in range(10**9):
                if stop.is_set():
                    break
                due = t0 + seq / args.rate
                now = time.monotonic()
                if now < due:
                    p.poll(min(due - now, 0.01))
                    continue
                try:
                    p.produce(topic, value=str(seq).encode(), partition=seq % PARTITIONS, on_delivery=cb)
                    seq += 1
                    produced[0] = seq
                except BufferError:
                    p.poll(0.01)
                p.poll(0)

        th = threading.Thread(target=produce_loop, daemon=True)
        th.start()
        time.sleep(3)
        for rnd in range(args.rounds):
            time.sleep(3)
            before = leaders_now(cluster, topic) or wait_until(lambda: leaders_now(cluster, topic), 30, "leaders")
            counts = collections.Counter(before.values())
            victim_id, led = counts.most_common(1)[0]
            victim = next(b for b in cluster.brokers if b.node_id == victim_id)
            victim_parts = sorted(pt for pt, l in before.items() if l == victim_id)
            acked_before = len(deliveries)
            t_kill = time.monotonic()
            kill_utc = time.time()
            victim.kill9()
            polls = 0
            t_leaders = None
            after = None
            deadline = t_kill + 3 * args.session_ttl_ms / 1000 + 30
            while time.monotonic() < deadline:
                polls += 1
                try:
                    after = leaders_now(cluster, topic)
                except Exception:  # noqa: BLE001 - a survivor not answering counts as not yet
                    after = None
                if after:
                    t_leaders = time.monotonic()
                    break
                time.sleep(0.05)
            # every victim partition acknowledged again
            def resumed():
                seen = {pt for t, pt, _, _ in deliveries[acked_before:] if t > (t_leaders or t_kill) and pt in victim_parts}
                return len(seen) == len(victim_parts)
            try:
                wait_until(resumed, 60, "every victim partition acknowledged again", 0.05)
                t_resumed = time.monotonic()
            except TimeoutError:
                t_resumed = None
            time.sleep(1)
            t_end = time.monotonic()
            rd = {"round": rnd, "victim": victim.name, "victim_node": victim_id, "victim_partitions": len(victim_parts),
                  "leaders_before": dict(counts), "leaders_after": dict(collections.Counter((after or {}).values())),
                  "leaders_s": None if t_leaders is None else round(t_leaders - t_kill, 3),
                  "metadata_polls": polls,
                  "all_victim_partitions_acked_again_s": None if t_resumed is None else round(t_resumed - t_kill, 3),
                  "t_kill": t_kill, "t_end": t_end, "victim_parts": victim_parts,
                  # wall clock of the kill, to line the round up with the brokers' log lines
                  "kill_utc": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(kill_utc))
                  + f".{int(kill_utc % 1 * 1000):03d}Z"}
            # restart the victim, same data dir and ports
            t_r = time.monotonic()
            victim.start()
            cluster.wait_registered(30)
            rd["restart_listening_s"] = round(victim.start_s, 2)
            rd["restart_registered_s"] = round(time.monotonic() - t_r, 2)
            result["rounds"].append(rd)
            print(f"round {rnd}: killed {victim.name} (node {victim_id}, {len(victim_parts)} partitions) "
                  f"leaders live after {rd['leaders_s']} s; victim partitions acked again after "
                  f"{rd['all_victim_partitions_acked_again_s']} s; restart {rd['restart_registered_s']} s", flush=True)
        time.sleep(2)
        stop.set()
        th.join(10)
        left = p.flush(60)
        result["unflushed_after_60s"] = left
        result["produced"] = produced[0]
        result["acked"] = len(deliveries)
        result["delivery_errors"] = len(errors)
        result["delivery_error_samples"] = errors[:10]
        # gaps from the delivery reports
        times_all = [d[0] for d in deliveries]
        by_part = collections.defaultdict(list)
        for t, pt, _, _ in deliveries:
            by_part[pt].append(t)
        for rd in result["rounds"]:
            lo, hi = rd["t_kill"] - 2, rd["t_end"]
            rd["gap_all_s"] = round(max_gap([t for t in times_all if lo <= t <= hi]) or 0, 3)
            rd["gap_victim_s"] = round(max(max_gap([t for t in by_part[pt] if lo <= t <= hi]) or 0
                                           for pt in rd["victim_parts"]), 3)
            del rd["t_kill"], rd["t_end"]
        # consume everything
        c = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": f"check-{uuid.uuid4().hex[:6]}",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest", "log_level": 3})
        hw = {}
        for pt in range(PARTITIONS):
            lo_, hi_ = c.get_watermark_offsets(TopicPartition(topic, pt), timeout=10)
            hw[pt] = hi_
        c.assign([TopicPartition(topic, pt, 0) for pt in range(PARTITIONS)])
        log = {}
        seen = collections.Counter()
        pos = {pt: 0 for pt in range(PARTITIONS)}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(pos[pt] < hw[pt] for pt in range(PARTITIONS)):
            for m in c.consume(1000, 1.0):
                if m.error():
                    continue
                log[(m.partition(), m.offset())] = int(m.value())
                seen[int(m.value())] += 1
                pos[m.partition()] = max(pos[m.partition()], m.offset() + 1)
        c.close()
        acked = {d[3]: (d[1], d[2]) for d in deliveries}
        result["high_watermarks_total"] = sum(hw.values())
        result["consumed"] = len(log)
        result["consumed_complete"] = all(pos[pt] >= hw[pt] for pt in range(PARTITIONS))
        result["missing"] = sum(1 for s in acked if s not in seen)
        result["duplicates"] = sum(n - 1 for n in seen.values() if n > 1)
        result["offset_mismatch"] = sum(1 for s, po in acked.items() if log.get(po) != s)
        result["unacked_but_stored"] = sum(1 for s in seen if s not in acked)
    finally:
        stop.set()
        cluster.stop()
        moto.stop()
        etcd.stop()
        logdir = out.parent / (out.stem + "-logs")
        logdir.mkdir(exist_ok=True)
        for b in cluster.brokers:
            for f in sorted(b.workdir.glob("std*-*.log")):
                if f.stat().st_size:
                    shutil.copy(f, logdir / f"{b.name}.{f.name}")
        if (work / "etcd" / "etcd.log").exists():
            shutil.copy(work / "etcd" / "etcd.log", logdir / "etcd.log")
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_after"] = loadavg()
    rs = result["rounds"]

    def stats(key):
        v = [r[key] for r in rs if r.get(key) is not None]
        return {"n": len(v), "min": min(v), "median": round(statistics.median(v), 3), "max": max(v)} if v else None

    result["summary"] = {k: stats(k) for k in ("leaders_s", "all_victim_partitions_acked_again_s",
                                                "gap_all_s", "gap_victim_s", "restart_registered_s")}
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result.get(k) for k in ("produced", "acked", "consumed", "missing", "duplicates",
                                                   "offset_mismatch", "delivery_errors", "summary")}, indent=1))


if __name__ == "__main__":
    main()
