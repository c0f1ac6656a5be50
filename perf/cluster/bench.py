#!/usr/bin/env python3
"""Cluster-mode throughput and latency: three `magnetar broker` processes on one etcd and one
moto S3 server (all on loopback), driven by magnetar-perf with a bootstrap listing all three.

Per (mode, wal_flush_interval_ms): a fresh etcd (new data dir), a fresh moto (objects live in its
memory) and a fresh bucket prefix, three brokers started together (MAGNETAR_CLUSTER__
WAL_FLUSH_INTERVAL_MS set), one magnetar-perf run, then everything stopped. CPU of every process
(brokers, moto, etcd, magnetar-perf) is sampled from /proc every second; the brokers' /metrics
(magnetar_wal_*) are scraped before and after the run.

  latency: perf/workloads/1-topic-16-partitions-1kb-20k.yaml (20k msg/s, 1 producer, 1 consumer)
  latency5k: the same at 5k msg/s (below moto's saturation on a small machine)
  maxrate: perf/workloads/max-rate-1-topic-16-partitions-1kb-produce-only.yaml

usage: perf/cluster/bench.py --bin B --perf-bin P --out DIR [--modes latency,maxrate]
       [--flush 5,20,100] [--warmup-s 5] [--duration-s 30]
Writes DIR/<mode>-flush<ms>.json (magnetar-perf's result), DIR/<mode>-flush<ms>.meta.json (CPU,
WAL metrics, commands, load average) and DIR/<mode>-flush<ms>.perf.log.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import CpuSampler, Cluster, Etcd, Moto, loadavg, machine, scrape  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = {
    "latency": ROOT / "perf/workloads/1-topic-16-partitions-1kb-20k.yaml",
    "latency5k": ROOT / "perf/workloads/1-topic-16-partitions-1kb-5k.yaml",
    "maxrate": ROOT / "perf/workloads/max-rate-1-topic-16-partitions-1kb-produce-only.yaml",
}


def run_one(args, mode: str, flush: int, out: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"mg-bench-{mode}-{flush}-", dir="/tmp"))
    etcd = Etcd(work / "etcd").start()
    moto = Moto(work / "moto").start()
    prefix = f"bench-{mode}-{flush}-{uuid.uuid4().hex[:6]}"
    env = {"MAGNETAR_STORAGE__WAL_FLUSH_INTERVAL_MS": str(flush), "RUST_LOG": "warn"}
    cluster = Cluster(args.bin, work / "cluster", 3, etcd, moto, prefix, env)
    tag = f"{mode}-flush{flush}"
    meta = {"mode": mode, "wal_flush_interval_ms": flush, "workload": str(WORKLOADS[mode].relative_to(ROOT)),
            "etcd_cmd": etcd.cmd, "moto_cmd": moto.cmd, "env": env}
    try:
        cluster.start()
        meta["broker_cmds"] = [b.cmd for b in cluster.brokers]
        meta["broker_start_s"] = [round(b.start_s, 2) for b in cluster.brokers]
        perf_cmd = [args.perf_bin, "run", "--bootstrap-servers", cluster.bootstrap(),
                    "--workload", str(WORKLOADS[mode]), "--warmup-s", str(args.warmup_s),
                    "--duration-s", str(args.duration_s), "--pid", str(cluster.brokers[0].proc.pid),
                    "--output", str(out / f"{tag}.json")]
        meta["perf_cmd"] = perf_cmd
        before = {b.name: scrape(b.http) for b in cluster.brokers}
        load_before = loadavg()
        with open(out / f"{tag}.perf.log", "w") as log:
            t0 = time.monotonic()
            perf = subprocess.Popen(perf_cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            pids = {b.name: b.proc.pid for b in cluster.brokers}
            pids.update(moto=moto.proc.pid, etcd=etcd.proc.pid, perf=perf.pid)
            sampler = CpuSampler().start(pids)
            try:
                rc = perf.wait(args.warmup_s + args.duration_s + 120)
            except subprocess.TimeoutExpired:
                perf.kill()
                rc = "timeout"
            t1 = time.monotonic()
            sampler.stop()
        after = {b.name: scrape(b.http) for b in cluster.brokers}
        # the measured phase: after the warm-up (plus ~2 s for topic creation and client start)
        meta["cpu"] = sampler.window(t0 + args.warmup_s + 2, t1 - 1)
        meta["cpu_series"] = [(round(t - t0, 2), c) for t, c in sampler.samples]
        meta["perf_rc"] = rc
        meta["wall_s"] = round(t1 - t0, 1)
        meta["loadavg_before"], meta["loadavg_after"] = load_before, loadavg()
        delta = {}
        for name in after:
            d = {k: round(v - before[name].get(k, 0.0), 6) for k, v in after[name].items()
                 if k.endswith("_total") or k.endswith("_sum") or k.endswith("_count")}
            d["owned_bundles"] = after[name].get("magnetar_cluster_owned_bundles")
            delta[name] = d
        meta["metrics_delta"] = delta
        meta["broker_alive_after"] = {b.name: b.alive() for b in cluster.brokers}
    finally:
        cluster.stop()
        moto.stop()
        etcd.stop()
        for b in cluster.brokers:  # keep the broker logs next to the result
            for f in sorted(b.workdir.glob("std*-*.log")):
                if f.stat().st_size:
                    shutil.copy(f, out / f"{tag}.{b.name}.{f.name}")
        if (work / "etcd" / "etcd.log").exists():
            shutil.copy(work / "etcd" / "etcd.log", out / f"{tag}.etcd.log")
        shutil.rmtree(work, ignore_errors=True)
    (out / f"{tag}.meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--perf-bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--modes", default="latency,maxrate")
    ap.add_argument("--flush", default="5,20,100")
    ap.add_argument("--warmup-s", type=int, default=5)
    ap.add_argument("--duration-s", type=int, default=30)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "machine.json").write_text(json.dumps(dict(machine(), loadavg=loadavg()), indent=1))
    for mode in args.modes.split(","):
        for flush in [int(x) for x in args.flush.split(",")]:
            print(f"== {mode} flush {flush} ms  (load {loadavg()})", flush=True)
            meta = run_one(args, mode, flush, out)
            try:
                r = json.load(open(out / f"{mode}-flush{flush}.json"))["summary"]
                print(f"   publish {r['publish']['msg_per_s']:.0f} msg/s p50 {r['publish_latency']['p50_ms']} "
                      f"p99 {r['publish_latency']['p99_ms']} e2e p50 {r['e2e_latency']['p50_ms']} cpu {meta['cpu']}",
                      flush=True)
            except (OSError, KeyError, ValueError) as e:
                print(f"   no result: {e!r} rc {meta.get('perf_rc')}", flush=True)


if __name__ == "__main__":
    main()
