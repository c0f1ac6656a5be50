"""Medians (min-max) per case and build of the runs in this directory.

    python3 medians.py [DIR] > medians.md
"""
import glob
import json
import os
import re
import statistics
import sys

d = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
groups = {}
for path in sorted(glob.glob(os.path.join(d, "*.json"))):
    name = os.path.basename(path)[:-5]
    m = re.match(r"(.*)-(\d+)$", name)
    if not m:
        continue
    groups.setdefault(m.group(1), []).append(json.load(open(path)))


def hist(r, metric, key):
    for h in r.get("broker_histograms", []):
        if h["metric"].endswith(metric) and h["count"] > 0:
            return h[key]
    return None


cols = [
    ("publish msg/s", lambda r: r["summary"]["publish"]["msg_per_s"], 0),
    ("publish p50 ms", lambda r: r["summary"]["publish_latency"]["p50_ms"], 2),
    ("publish p99 ms", lambda r: r["summary"]["publish_latency"]["p99_ms"], 2),
    ("e2e p99 ms", lambda r: r["summary"]["e2e_latency"]["p99_ms"] if r["summary"]["e2e_latency"]["count"] else None, 2),
    ("broker fsync p50 ms", lambda r: hist(r, "fsync_latency_seconds", "p50_ms"), 2),
    ("broker fsync p99 ms", lambda r: hist(r, "fsync_latency_seconds", "p99_ms"), 2),
    ("broker append p99 ms", lambda r: hist(r, "append_latency_seconds", "p99_ms"), 2),
    ("broker CPU %", lambda r: r["broker"]["cpu_pct"] if r.get("broker") else None, 0),
]


def fmt(v, digits):
    return f"{v:,.{digits}f}"


print("| case | runs | " + " | ".join(c[0] for c in cols) + " |")
print("|---|---|" + "---|" * len(cols))
for case, runs in sorted(groups.items()):
    cells = []
    for _, get, digits in cols:
        vals = [v for v in (get(r) for r in runs) if v is not None]
        if not vals:
            cells.append("-")
        elif len(vals) == 1:
            cells.append(fmt(vals[0], digits))
        else:
            cells.append(f"{fmt(statistics.median(vals), digits)} ({fmt(min(vals), digits)}-{fmt(max(vals), digits)})")
    print(f"| {case} | {len(runs)} | " + " | ".join(cells) + " |")
