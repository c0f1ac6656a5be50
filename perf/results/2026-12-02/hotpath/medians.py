"""Median and range per case and build of the A/B runs in this directory (a = main, b = hotpath)."""
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
    s = json.load(open(path))["summary"]
    rows.setdefault((m.group(1), m.group(2)), []).append(
        (s["publish"]["msg_per_s"], s["publish_latency"]["p50_ms"], s["publish_latency"]["p99_ms"])
    )
print("| case | build | runs | publish msg/s median (min-max) | publish p50 ms median | publish p99 ms median (min-max) |")
print("|---|---|---|---|---|---|")
for (case, side), runs in sorted(rows.items()):
    rate = [r[0] for r in runs]
    p50 = [r[1] for r in runs]
    p99 = [r[2] for r in runs]
    print(
        f"| {case} | {'main' if side == 'a' else 'hotpath'} | {len(runs)} | "
        f"{statistics.median(rate):,.0f} ({min(rate):,.0f}-{max(rate):,.0f}) | "
        f"{statistics.median(p50):.2f} | {statistics.median(p99):.1f} ({min(p99):.1f}-{max(p99):.1f}) |"
    )
