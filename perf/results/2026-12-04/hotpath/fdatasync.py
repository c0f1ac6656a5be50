"""fdatasync latency of the storage under a directory: N times write 1 KiB (appending) + fdatasync.

    python3 fdatasync.py DIR [N]    -> p50/p90/p99/p99.9/max in ms
"""
import os
import statistics
import sys
import time

d = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
path = os.path.join(d, "fdatasync-probe.dat")
fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
buf = os.urandom(1024)
lat = []
try:
    for _ in range(n):
        os.write(fd, buf)
        t = time.perf_counter_ns()
        os.fdatasync(fd)
        lat.append((time.perf_counter_ns() - t) / 1e6)
finally:
    os.close(fd)
    os.unlink(path)
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"n={n} write 1KiB + fdatasync under {d}: mean {statistics.mean(lat):.3f} ms, "
      f"p50 {q(0.50):.3f} ms, p90 {q(0.90):.3f} ms, p99 {q(0.99):.3f} ms, "
      f"p99.9 {q(0.999):.3f} ms, max {lat[-1]:.3f} ms")
