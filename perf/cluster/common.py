"""Shared pieces of the cluster benchmarks (bench.py, failover.py): etcd and moto's S3 server on
free loopback ports, three `magnetar broker` processes, a /proc CPU sampler, /metrics scraping
and a raw Kafka Metadata v1 request addressed to ONE broker.

Every wait is bounded (a deadline and a loop count); every process started here is stopped by
its owner's `stop()` (SIGTERM, then SIGKILL after a timeout), never by name.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

CLK_TCK = os.sysconf("SC_CLK_TCK")
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    last = None
    for _ in range(int(timeout_s / interval_s) + 10):
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - "not yet"
            last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s}s waiting for {what} (last error {last!r})")


def stop_proc(p: Optional[subprocess.Popen], timeout_s: float = 10.0) -> Optional[int]:
    if p is None or p.poll() is not None:
        return None if p is None else p.returncode
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(timeout_s)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait(10)


def cpu_seconds(pid: int) -> Optional[float]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def machine() -> Dict[str, str]:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name"):
                model = line
    except (OSError, subprocess.TimeoutExpired):
        pass
    mem = ""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = line.strip()
    return {"nproc": str(os.cpu_count()), "memory": mem, "lscpu_model": model,
            "kernel": os.uname().release}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return f.read().strip()


class CpuSampler:
    """Samples utime+stime of named pids every `interval_s` in a thread; `window(t0, t1)` gives
    each name's mean CPU % (of one core) between two monotonic times, and the max 1 s sample."""

    def __init__(self, interval_s: float = 1.0):
        self.interval_s = interval_s
        self.pids: Dict[str, int] = {}
        self.samples: List[tuple] = []  # (t, {name: cpu_s})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, pids: Dict[str, int]) -> "CpuSampler":
        self.pids = dict(pids)
        self._thread.start()
        return self

    def _run(self):
        for _ in range(100_000):
            t = time.monotonic()
            self.samples.append((t, {n: cpu_seconds(p) for n, p in self.pids.items()}))
            if self._stop.wait(self.interval_s):
                break

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def window(self, t0: float, t1: float) -> Dict[str, Dict[str, float]]:
        s = [x for x in self.samples if t0 <= x[0] <= t1]
        out = {}
        if len(s) < 2:
            return out
        for name in self.pids:
            series = [(t, c[name]) for t, c in s if c.get(name) is not None]
            if len(series) < 2:
                continue
            total = series[-1][1] - series[0][1]
            dt = series[-1][0] - series[0][0]
            steps = [100 * (b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(series, series[1:])]
            out[name] = {"mean_pct": round(100 * total / dt, 1), "max_1s_pct": round(max(steps), 1),
                         "cpu_s": round(total, 2), "window_s": round(dt, 1)}
        return out


def scrape(http: str) -> Dict[str, float]:
    """magnetar_wal_* and magnetar_cluster_* samples of one broker's /metrics (labels dropped,
    values summed)."""
    out: Dict[str, float] = {}
    try:
        body = urllib.request.urlopen(f"http://{http}/metrics", timeout=5).read().decode()
    except OSError:
        return out
    for line in body.splitlines():
        if line.startswith("#") or not (line.startswith("magnetar_wal_") or line.startswith("magnetar_cluster_")):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or (m.group(2) and "le=" in m.group(2)):
            continue
        try:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
        except ValueError:
            pass
    return out


# --------------------------------------------------------------------------------------------


class Etcd:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: Optional[subprocess.Popen] = None
        self.endpoint = ""

    def start(self) -> "Etcd":
        client, peer = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self.cmd = ["etcd", "--name", "bench", "--data-dir", str(self.workdir / "etcd-data"),
                    "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                    "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                    "--initial-cluster", f"bench={peer_url}", "--log-level", "warn"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "etcd.log", "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

        def healthy():
            if self.proc.poll() is not None:
                raise RuntimeError("etcd exited")
            return json.loads(urllib.request.urlopen(self.endpoint + "/health", timeout=1).read()).get("health") == "true"

        wait_until(healthy, 30, "etcd healthy")
        return self

    def stop(self):
        stop_proc(self.proc)


class Moto:
    def __init__(self, workdir: Path, bucket: str = "magnetar"):
        self.workdir = workdir
        self.bucket = bucket
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Moto":
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.cmd = ["python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "moto.log", "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        wait_until(lambda: self.proc.poll() is None and urllib.request.urlopen(self.endpoint + "/", timeout=1),
                   60, "moto answering")
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=self.bucket)
        return self

    @property
    def env(self) -> Dict[str, str]:
        return dict(S3_ENV, AWS_ENDPOINT_URL=self.endpoint)

    def stop(self):
        stop_proc(self.proc)


class Broker:
    """One `magnetar broker`; ports and data dir fixed at construction so a restart reuses them."""

    def __init__(self, binary: str, workdir: Path, name: str, etcd: str, object_store: str,
                 env: Dict[str, str]):
        self.binary, self.workdir, self.name = binary, workdir, name
        self.data_dir = workdir / "data"
        self.kafka_port, self.pulsar_port, self.http_port = free_port(), free_port(), free_port()
        self.kafka = f"127.0.0.1:{self.kafka_port}"
        self.http = f"127.0.0.1:{self.http_port}"
        self.cmd = [binary, "broker", "--metadata-store", f"etcd:{etcd}", "--object-store", object_store,
                    "--data-dir", str(self.data_dir), "--kafka-port", str(self.kafka_port),
                    "--pulsar-port", str(self.pulsar_port), "--http-port", str(self.http_port)]
        # Rebalancing off: bundles stay where the start (or a failover) put them, so a run measures
        # the traffic (or the failover) and not hand-overs to a broker that joined or restarted
        # (cluster.rebalance_delay_ms after it did). The environment given wins.
        self.env = {"MAGNETAR_CLUSTER__LOAD_BALANCER_ENABLED": "false", **env}
        self.proc: Optional[subprocess.Popen] = None
        self.generation = 0
        self.node_id: Optional[int] = None
        self.listening: Optional[dict] = None

    def start(self, timeout_s: float = 60) -> "Broker":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.generation += 1
        err = open(self.workdir / f"stderr-{self.generation}.log", "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                     env=dict(os.environ, **self.env), text=True)
        err.close()
        found: List[dict] = []
        out_log = open(self.workdir / f"stdout-{self.generation}.log", "w")

        def reader():
            for line in self.proc.stdout:
                out_log.write(line)
                out_log.flush()
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("event") == "listening":
                    found.append(obj)
            out_log.close()

        threading.Thread(target=reader, daemon=True).start()
        t0 = time.monotonic()
        wait_until(lambda: found or (self.proc.poll() is not None and RuntimeError), timeout_s,
                   f"{self.name} listening line")
        if not found:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before listening; "
                               f"see {self.workdir}/stderr-{self.generation}.log")
        self.listening = found[0]
        self.start_s = time.monotonic() - t0
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        self.proc.kill()
        self.proc.wait(10)

    def stop(self):
        stop_proc(self.proc)


class Cluster:
    def __init__(self, binary: str, workdir: Path, n: int, etcd: Etcd, moto: Moto, prefix: str,
                 env_extra: Dict[str, str]):
        self.workdir = workdir
        env = dict(moto.env, **env_extra)
        self.object_store = f"s3://{moto.bucket}/{prefix}"
        self.brokers = [Broker(binary, workdir / f"b{i}", f"b{i}", etcd.endpoint, self.object_store, env)
                        for i in range(n)]

    def start(self) -> "Cluster":
        threads = [threading.Thread(target=b.start) for b in self.brokers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        for b in self.brokers:
            if not b.alive() or b.listening is None:
                raise RuntimeError(f"{b.name} did not start; see {b.workdir}")
        self.wait_registered()
        return self

    def live(self) -> List[Broker]:
        return [b for b in self.brokers if b.alive()]

    def bootstrap(self) -> str:
        return ",".join(b.kafka for b in self.brokers)

    def wait_registered(self, timeout_s: float = 30):
        want = {b.kafka for b in self.live()}

        def ok():
            md = None
            for b in self.live():
                md = metadata(b.kafka)
                if {f"{h}:{p}" for h, p in md["brokers"].values()} != want:
                    return False
            return md

        md = wait_until(ok, timeout_s, "every broker listing every live broker")
        by_addr = {f"{h}:{p}": nid for nid, (h, p) in md["brokers"].items()}
        for b in self.live():
            b.node_id = by_addr[b.kafka]

    def stop(self):
        for b in self.brokers:
            b.stop()


# --------------------------------------------------------------------------------------------
# raw Metadata v1 (no auto-creation) to one broker


def _str(s: Optional[str]) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    for _ in range(100_000):
        if len(out) >= n:
            return out
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def metadata(addr: str, topics: Optional[List[str]] = None, timeout_s: float = 2.0) -> dict:
    body = struct.pack(">i", -1) if topics is None else struct.pack(">i", len(topics)) + b"".join(_str(t) for t in topics)
    header = struct.pack(">hhi", 3, 1, 7) + _str("bench")
    msg = header + body
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
        s.settimeout(timeout_s)
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", _recv_exact(s, 4))[0]
        buf = _recv_exact(s, size)
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string():
        nonlocal pos
        n = take(">h")
        if n < 0:
            return None
        v = buf[pos:pos + n].decode()
        pos += n
        return v

    assert take(">i") == 7
    brokers = {}
    for _ in range(take(">i")):
        nid = take(">i")
        h = string()
        p = take(">i")
        string()  # rack
        brokers[nid] = (h, p)
    take(">i")  # controller
    topics_out = {}
    for _ in range(take(">i")):
        err = take(">h")
        name = string()
        take(">b")
        parts = {}
        for _ in range(take(">i")):
            perr, idx, leader = take(">hii")
            for _ in range(2):
                n = take(">i")
                pos += 4 * max(n, 0)
            parts[idx] = (perr, leader)
        topics_out[name] = (err, parts)
    return {"brokers": brokers, "topics": topics_out}
