"""Summarizes a soak result: RSS per 5-minute bucket (flat or not), CPU, errors."""
import json
import sys

r = json.load(open(sys.argv[1]))
s = r["summary"]
print(f"publish {s['publish']['msg_per_s']:.0f} msg/s ({s['publish']['messages']} messages, {s['publish']['errors']} errors); "
      f"consume {s['consume']['msg_per_s']:.0f} msg/s ({s['consume']['messages']} messages, {s['consume']['errors']} errors)")
print(f"publish p50/p99/p99.9 ms {s['publish_latency']['p50_ms']:.2f}/{s['publish_latency']['p99_ms']:.2f}/{s['publish_latency']['p99_9_ms']:.2f}; "
      f"e2e p99 ms {s['e2e_latency']['p99_ms']:.2f}")
test = [i for i in r["intervals"] if i["phase"] == "test" and i.get("broker_rss_bytes")]
buckets = {}
for i in test:
    buckets.setdefault(int(i["end_s"] // 300), []).append(i)
print("minute  rss_MiB(min/max)  cpu%  backlog")
for b, items in sorted(buckets.items()):
    rss = [i["broker_rss_bytes"] / 2**20 for i in items]
    cpu = [i["broker_cpu_pct"] or 0 for i in items]
    print(f"{b*5:6d}  {min(rss):7.1f}/{max(rss):7.1f}  {sum(cpu)/len(cpu):5.1f}  {items[-1]['backlog_messages']}")
if test:
    first = [i["broker_rss_bytes"] for i in test[: max(1, len(test) // 6)]]
    last = [i["broker_rss_bytes"] for i in test[-max(1, len(test) // 6):]]
    print(f"RSS first sixth max {max(first)/2**20:.1f} MiB, last sixth max {max(last)/2**20:.1f} MiB")
for n in r.get("notes", []):
    print("note:", n)
