"""Median and range per case and build of the A/B runs in this directory (a = old main f6e2220, b = main b0cd090 after the issue #14 merges)."""
import glob
import json
import os
import re
import statistics

here = os.path.dirname(os.path.abspath(__file__))
rows = {}
for path in sorted(glob.glob(os.path.join(here, "*.json"))):
    m = re.match(r"(.*)-([ab])-(\d+)\.json$", os.path.basename(path))
    if not m:
        continue
    d = json.load(open(path))
    s = d["summary"]
    cpu = (d.get("broker") or {}).get("cpu_pct")
    rows.setdefault((m.group(1), m.group(2)), []).append(
        (s["publish"]["msg_per_s"], s["publish_latency"]["p50_ms"], s["publish_latency"]["p99_ms"],
         cpu if cpu is not None else float("nan"))
    )
print("| case | build | runs | publish msg/s median (min-max) | publish p50 ms median | publish p99 ms median (min-max) | broker CPU % of one core median (min-max) |")
print("|---|---|---|---|---|---|---|")
for (case, side), runs in sorted(rows.items()):
    rate = [r[0] for r in runs]
    p50 = [r[1] for r in runs]
    p99 = [r[2] for r in runs]
    cpu = [r[3] for r in runs]
    print(
        f"| {case} | {'old main f6e2220' if side == 'a' else 'main b0cd090'} | {len(runs)} | "
        f"{statistics.median(rate):,.0f} ({min(rate):,.0f}-{max(rate):,.0f}) | "
        f"{statistics.median(p50):.2f} | {statistics.median(p99):.1f} ({min(p99):.1f}-{max(p99):.1f}) | "
        f"{statistics.median(cpu):.0f} ({min(cpu):.0f}-{max(cpu):.0f}) |"
    )
