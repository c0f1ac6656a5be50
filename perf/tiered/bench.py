#!/usr/bin/env python3
"""Tiered-storage benchmark (issue #16): cold read throughput local vs file:// vs S3 (moto),
offload pass throughput, and the request counts behind a cost model.

One run does, on fresh copies of one produced data set:
  seed      broker without tiering (fsync os): one topic, one partition, N x 1 KiB messages
  local     restart on a copy, read everything from offset 0
  file-1m   copy, broker with --object-store file://..., local_retention_bytes 0: one offload
            pass uploads every sealed segment; restart (cold block cache), read from 0
  file-4m   restart the same data dir with tier_block_bytes 4 MiB, read
  s3-1m     same as file-1m against moto_server on loopback (s3://bench/magnetar)
  s3-4m     restart with tier_block_bytes 4 MiB, read
Every read is repeated --reads times, each after a broker restart (the block cache is
in-process; the OS page cache is NOT dropped: local segment files and file:// objects are
read from memory).

usage: perf/tiered/bench.py [--magnetar target/release/magnetar] [--mib 320] [--segment-mib 32]
                            [--reads 3] [--work /tmp/tier-bench] [--out results.json]
       perf/tiered/bench.py --cost   (prints the cost-model table only)
"""
import argparse, json, os, re, resource, shutil, signal, socket, subprocess, sys, time
import urllib.request

MSG = 1024
TOPIC = "tier"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Broker:
    def __init__(self, exe, data, env_extra, object_store=None, log=None):
        self.env = dict(os.environ)
        self.env.update(env_extra)
        args = [exe, "standalone", "--data-dir", data, "--bind", "127.0.0.1",
                "--kafka-port", "0", "--pulsar-port", "0", "--http-port", "0"]
        if object_store:
            args += ["--object-store", object_store]
        self.logf = open(log, "a") if log else subprocess.DEVNULL
        self.p = subprocess.Popen(args, env=self.env, stdout=subprocess.PIPE, stderr=self.logf, text=True)
        self.t_start = time.time()
        line = self.p.stdout.readline()
        ev = json.loads(line)
        self.kafka = ev["kafka"]
        self.http = ev["http"]
        self.t_listening = time.time()
        for _ in range(200):
            try:
                if urllib.request.urlopen(f"http://{self.http}/health", timeout=2).status == 200:
                    break
            except Exception:
                pass
            time.sleep(0.05)

    def metrics(self):
        txt = urllib.request.urlopen(f"http://{self.http}/metrics", timeout=10).read().decode()
        out = {}
        for l in txt.splitlines():
            if l.startswith("magnetar_storage_tier_"):
                k, v = l.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def cpu(self):
        f = open(f"/proc/{self.p.pid}/stat").read().split(")")[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self):
        for l in open(f"/proc/{self.p.pid}/status"):
            if l.startswith("VmRSS:"):
                return int(l.split()[1]) / 1024
        return 0.0

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(120)
        if self.logf is not subprocess.DEVNULL:
            self.logf.close()
        return rc


def produce(kafka, n):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": kafka})
    a.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result()
    p = Producer({"bootstrap.servers": kafka, "linger.ms": 5, "batch.size": 1000000,
                  "acks": "all", "compression.type": "none"})
    v = os.urandom(MSG)  # incompressible, though nothing compresses here
    t0 = time.time()
    for i in range(n):
        while True:
            try:
                p.produce(TOPIC, v, partition=0)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(300)
    return time.time() - t0


def touch(kafka):
    """Makes the broker open the partition's ledger (so the offloader knows its store)."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": kafka, "group.id": "touch"})
    lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=30)
    c.close()
    return lo, hi


def read_all(kafka, n):
    """Reads the partition from offset 0 to n; librdkafka defaults but for the two knobs below."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": kafka, "group.id": "bench-read", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 1048576})
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.time()
    c.assign([TopicPartition(TOPIC, 0, 0)])
    got = nbytes = 0
    first = None
    deadline = t0 + 900
    while got < n and time.time() < deadline:
        for m in c.consume(min(10000, n - got), 1.0):
            if m.error() is None:
                if first is None:
                    first = time.time()
                got += 1
                nbytes += len(m.value())
            else:
                print("consume error", m.error(), file=sys.stderr)
    t1 = time.time()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    c.close()
    client_cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"msgs": got, "bytes": nbytes, "secs": t1 - t0, "first_msg_s": (first or t1) - t0,
            "mb_s": nbytes / 1e6 / (t1 - t0), "msg_s": got / (t1 - t0), "client_cpu_s": client_cpu,
            # without the client's start (assign to first message, about 1 s here)
            "mb_s_from_first": nbytes / 1e6 / (t1 - (first or t0))}


def seg_files(data):
    out = []
    for root, _, files in os.walk(os.path.join(data, "ledgers")):
        if f"/persistent/{TOPIC}" not in root:
            continue  # __consumer_offsets and other topics
        for f in files:
            if f.endswith(".seg") or f.endswith(".log"):
                out.append((os.path.join(root, f), os.path.getsize(os.path.join(root, f))))
    return out


LOGTS = re.compile(r"^\S*?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z)")


def log_ts(line):
    m = LOGTS.search(re.sub(r"\x1b\[[0-9;]*m", "", line))
    if not m:
        return None
    from datetime import datetime
    return datetime.strptime(m.group(1)[:26].rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").timestamp() + 0.0


class Moto:
    def __init__(self, log):
        self.port = free_port()
        self.log = log
        self.logf = open(log, "w")
        self.p = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)],
                                  stdout=self.logf, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/bench", method="PUT")
        urllib.request.urlopen(req, timeout=10)

    def requests(self):
        """Counts of (method, kind) in moto's access log so far."""
        self.logf.flush()
        counts = {}
        for l in open(self.log):
            m = re.search(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP', l)
            if not m:
                continue
            meth, path = m.groups()
            if meth == "PUT" and "partNumber=" in path:
                k = "PUT part"
            elif meth == "POST" and "uploads" in path and "uploadId" not in path:
                k = "POST create-multipart"
            elif meth == "POST" and "uploadId=" in path:
                k = "POST complete-multipart"
            elif meth == "GET" and "list-type" in path:
                k = "GET list"
            else:
                k = meth
            counts[k] = counts.get(k, 0) + 1
        return counts

    def cpu(self):
        f = open(f"/proc/{self.p.pid}/stat").read().split(")")[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.logf.close()


def diff(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b) if b.get(k, 0) - a.get(k, 0)}


def offload(args, name, seed, store_url, env, expect, moto=None):
    """Copies the seed data dir, starts a tiered broker, waits for the offload pass."""
    data = os.path.join(args.work, name)
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(seed, data)
    log = os.path.join(args.work, f"{name}.log")
    open(log, "w").close()
    e = dict(env)
    e.update({"MAGNETAR_STORAGE__LOCAL_RETENTION_BYTES": "0",
              "MAGNETAR_STORAGE__OFFLOAD_INTERVAL_MS": str(args.offload_interval_ms)})
    req0 = moto.requests() if moto else {}
    mcpu0 = moto.cpu() if moto else 0
    b = Broker(args.magnetar, data, e, store_url, log)
    touch(b.kafka)
    c0 = b.cpu()
    polls = []
    deadline = time.time() + 600
    while time.time() < deadline:
        m = b.metrics()
        up = m.get("magnetar_storage_tier_uploads_total", 0)
        polls.append((time.time(), up))
        if up >= expect or m.get("magnetar_storage_tier_upload_failures_total", 0) > 0:
            break
        time.sleep(0.02)
    time.sleep(0.3)  # the pass logs after its last segment
    m = b.metrics()
    cpu = b.cpu() - c0
    b.stop()
    req = diff(req0, moto.requests()) if moto else {}
    mcpu = (moto.cpu() - mcpu0) if moto else None
    # Pass duration: from the pass's tick (the 'tiered storage on' line + one interval) to
    # its 'offload pass' line; the metric polls give the first..last upload as a cross-check.
    start = end = None
    for l in open(log):
        if "tiered storage on" in l and start is None:
            t = log_ts(l)
            start = t + args.offload_interval_ms / 1000 if t else None
        if "offload pass" in l and end is None:
            end = log_ts(l)
    t_first = next((t for t, u in polls if u >= 1), None)
    t_last = next((t for t, u in polls if u >= expect), None)
    return data, {
        "segments": int(m.get("magnetar_storage_tier_uploads_total", 0)),
        "bytes": int(m.get("magnetar_storage_tier_upload_bytes_total", 0)),
        "failures": int(m.get("magnetar_storage_tier_upload_failures_total", 0)),
        "pass_s_from_log": (end - start) if (start and end) else None,
        "first_to_last_upload_s": (t_last - t_first) if (t_first and t_last) else None,
        "broker_cpu_s": cpu,
        "moto_cpu_s": mcpu,
        "requests": req,
    }


def read_phase(args, name, data, store_url, env, n, moto=None):
    runs = []
    for i in range(args.reads):
        req0 = moto.requests() if moto else {}
        mcpu0 = moto.cpu() if moto else 0
        b = Broker(args.magnetar, data, env, store_url, os.path.join(args.work, f"{name}.log"))
        m0 = b.metrics()
        c0 = b.cpu()
        r = read_all(b.kafka, n)
        r["broker_cpu_s"] = b.cpu() - c0
        r["broker_rss_mib"] = b.rss_mib()
        m1 = b.metrics()
        b.stop()
        r["metrics"] = diff(m0, m1)
        if "magnetar_storage_tier_cache_bytes" in m1:
            r["metrics"]["magnetar_storage_tier_cache_bytes"] = m1["magnetar_storage_tier_cache_bytes"]
        if moto:
            r["requests"] = diff(req0, moto.requests())
            r["moto_cpu_s"] = moto.cpu() - mcpu0
        runs.append(r)
        print(f"  {name} read {i+1}: {r['mb_s']:.1f} MB/s ({r['mb_s_from_first']:.1f} from 1st msg) {r['msg_s']:.0f} msg/s in {r['secs']:.2f}s "
              f"(client cpu {r['client_cpu_s']:.2f}s, broker cpu {r['broker_cpu_s']:.2f}s"
              + (f", moto cpu {r['moto_cpu_s']:.2f}s" if moto else "") + ")", flush=True)
    return runs


def cost_table(rate_mb_s=10.0, seg_mib=(64, 256, 1024), block_mib=(1, 4), readahead=3,
               put=0.005 / 1000, get=0.0004 / 1000, gb_month=0.023, part_mib=8):
    """Requests and list-price cost per month for a steady produce rate, everything offloaded
    once and read back once sequentially (one consumer catching up over the whole month)."""
    secs = 30 * 86400
    mib = rate_mb_s * 1e6 * secs / 2**20
    rows = []
    for s in seg_mib:
        segs = mib / s
        parts = -(-s // part_mib) if s >= part_mib else 0
        puts_per_seg = (1 + parts + 1 + 1) if parts else 2  # create + parts + complete + .idx | seg + .idx
        heads = segs  # one HEAD checks each upload's length
        puts = segs * puts_per_seg
        for bm in block_mib:
            gets = mib / (bm * (1 + readahead))  # one GET per (1 + readahead) blocks read
            rows.append({"segment_mib": s, "block_mib": bm, "segments": segs, "puts": puts,
                         "put_usd": puts * put, "heads": heads, "gets": gets,
                         "get_usd": (gets + heads) * get,
                         "stored_gb_month_end": mib * 2**20 / 1e9,
                         "storage_usd_avg": mib * 2**20 / 1e9 / 2 * gb_month})
    return rows


def print_cost():
    print("| segment | block | segments/month | PUT-class requests | PUT $ | GETs (one full read) | GET+HEAD $ | storage $ (avg of a growing 25.9 TB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in cost_table():
        print(f"| {r['segment_mib']} MiB | {r['block_mib']} MiB | {r['segments']:,.0f} | {r['puts']:,.0f} | "
              f"${r['put_usd']:.2f} | {r['gets']:,.0f} | ${r['get_usd']:.2f} | ${r['storage_usd_avg']:,.0f} |")


def med(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def print_tables(path):
    r = json.load(open(path))
    pr = r["produce"]
    print(f"Data: {r['messages']:,} x {r['message_bytes']} B in one partition; produce {pr['mb_s']:.0f} MB/s; "
          f"{pr['segments']} segments ({', '.join(f'{b/2**20:.1f}' for b in pr['segment_bytes'])} MiB); "
          f"load average at start {r['machine']['load_at_start'][0]:.1f}, at end {r['machine']['load_at_end'][0]:.1f}\n")
    print("| case | reads | MB/s (median, min-max) | msg/s (median) | MB/s from 1st msg | broker CPU s | moto CPU s | GETs | get MB | cache hits / misses | hit ratio | HTTP requests seen by moto |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in ("local", "file-1m", "file-4m", "s3-1m", "s3-4m"):
        sc = r["scenarios"].get(name)
        if not sc:
            continue
        rs = sc["read"]
        mbs = [x["mb_s"] for x in rs]
        m = rs[-1]["metrics"]
        gets = m.get("magnetar_storage_tier_gets_total", 0)
        hits = m.get("magnetar_storage_tier_cache_hits_total", 0)
        miss = m.get("magnetar_storage_tier_cache_misses_total", 0)
        ratio = f"{hits / (hits + miss):.1%}" if hits + miss else "-"
        moto = med([x["moto_cpu_s"] for x in rs]) if "moto_cpu_s" in rs[0] else None
        req = rs[-1].get("requests")
        print(f"| {name} | {len(rs)} | {med(mbs):.1f} ({min(mbs):.1f}-{max(mbs):.1f}) | {med([x['msg_s'] for x in rs]):,.0f} | "
              f"{med([x.get('mb_s_from_first', float('nan')) for x in rs]):.1f} | {med([x['broker_cpu_s'] for x in rs]):.2f} | "
              + (f"{moto:.2f}" if moto is not None else "-")
              + f" | {gets:.0f} | {m.get('magnetar_storage_tier_get_bytes_total', 0)/1e6:.0f} | {hits:.0f} / {miss:.0f} | {ratio} | "
              + (", ".join(f"{k} {v}" for k, v in sorted(req.items())) if req else "-") + " |")
    print()
    print("| offload to | segments | MB | pass s (log) | first-to-last upload s | MB/s | s/segment | broker CPU s | moto CPU s | HTTP requests seen by moto |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in ("file-offload", "s3-offload"):
        o = r["scenarios"].get(name)
        if not o:
            continue
        secs = o["pass_s_from_log"] or float("nan")
        print(f"| {name.split('-')[0]} | {o['segments']} | {o['bytes']/1e6:.0f} | {secs:.2f} | {o['first_to_last_upload_s'] or float('nan'):.2f} | "
              f"{o['bytes']/1e6/secs:.0f} | {secs/max(o['segments'],1):.2f} | {o['broker_cpu_s']:.2f} | "
              + (f"{o['moto_cpu_s']:.2f}" if o["moto_cpu_s"] is not None else "-") + " | "
              + (", ".join(f"{k} {v}" for k, v in sorted(o["requests"].items())) or "-") + " |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--magnetar", default="target/release/magnetar")
    ap.add_argument("--mib", type=int, default=320)
    ap.add_argument("--segment-mib", type=int, default=32)
    ap.add_argument("--reads", type=int, default=3)
    ap.add_argument("--offload-interval-ms", type=int, default=2000)
    ap.add_argument("--work", default="/tmp/tier-bench")
    ap.add_argument("--out", default="tiered-read.json")
    ap.add_argument("--only", default="local,file-1m,file-4m,s3-1m,s3-4m")
    ap.add_argument("--cost", action="store_true")
    ap.add_argument("--table", help="print the markdown tables of a result JSON")
    args = ap.parse_args()
    if args.table:
        print_tables(args.table)
        return
    if args.cost:
        print_cost()
        return
    args.magnetar = os.path.abspath(args.magnetar)
    only = set(args.only.split(","))
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    n = args.mib * 2**20 // MSG
    base_env = {"MAGNETAR_STORAGE__FSYNC": "os",
                "MAGNETAR_STORAGE__SEGMENT_BYTES": str(args.segment_mib * 2**20),
                "MAGNETAR_LOG": "info"}
    res = {"args": vars(args), "messages": n, "message_bytes": MSG,
           "machine": {"nproc": os.cpu_count(), "load_at_start": os.getloadavg(),
                       "uname": " ".join(os.uname())}}
    # Seed: produce once without tiering.
    seed = os.path.join(args.work, "seed")
    b = Broker(args.magnetar, seed, base_env, None, os.path.join(args.work, "seed.log"))
    secs = produce(b.kafka, n)
    b.stop()
    segs = seg_files(seed)
    res["produce"] = {"secs": secs, "mb_s": n * MSG / 1e6 / secs, "segments": len(segs),
                      "segment_bytes": sorted(s for _, s in segs)}
    expect = len(segs) - 1  # all sealed ones; the active (last) segment stays local
    print(f"produced {n} x {MSG} B in {secs:.1f}s: {len(segs)} segments", flush=True)
    res["scenarios"] = {}
    if "local" in only:
        data = os.path.join(args.work, "local")
        shutil.copytree(seed, data)
        res["scenarios"]["local"] = {"read": read_phase(args, "local", data, None, base_env, n)}
    if only & {"file-1m", "file-4m"}:
        url = "file://" + os.path.join(args.work, "objects")
        data, off = offload(args, "file", seed, url, base_env, expect)
        print(f"  file offload: {off}", flush=True)
        res["scenarios"]["file-offload"] = off
        for name, blk in (("file-1m", 1), ("file-4m", 4)):
            if name in only:
                e = dict(base_env, MAGNETAR_STORAGE__TIER_BLOCK_BYTES=str(blk * 2**20))
                res["scenarios"][name] = {"read": read_phase(args, name, data, url, e, n)}
    if only & {"s3-1m", "s3-4m"}:
        moto = Moto(os.path.join(args.work, "moto.log"))
        try:
            s3env = dict(base_env, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                         AWS_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{moto.port}",
                         AWS_ALLOW_HTTP="true")
            url = "s3://bench/magnetar"
            data, off = offload(args, "s3", seed, url, s3env, expect, moto)
            print(f"  s3 offload: {off}", flush=True)
            res["scenarios"]["s3-offload"] = off
            for name, blk in (("s3-1m", 1), ("s3-4m", 4)):
                if name in only:
                    e = dict(s3env, MAGNETAR_STORAGE__TIER_BLOCK_BYTES=str(blk * 2**20))
                    res["scenarios"][name] = {"read": read_phase(args, name, data, url, e, n, moto)}
        finally:
            moto.stop()
    res["machine"]["load_at_end"] = os.getloadavg()
    json.dump(res, open(args.out, "w"), indent=1, sort_keys=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
