#!/usr/bin/env python3
"""Markdown tables from perf/cluster/bench.py and failover.py results in DIR.
usage: perf/cluster/summarize.py DIR"""

import json
import sys
from pathlib import Path

d = Path(sys.argv[1])


def f(x, n=1):
    return "–" if x is None else f"{x:,.{n}f}".replace(",", " ")


def cpu(meta, name):
    c = meta.get("cpu", {}).get(name)
    return "–" if not c else f"{c['mean_pct']:.0f} ({c['max_1s_pct']:.0f})"


for mode, title in (("latency", "Fixed 20k msg/s, 1 KiB, 16 partitions, 1 producer + 1 consumer"),
                    ("maxrate", "Max rate produce-only, 1 KiB, 16 partitions, 1 producer")):
    rows = []
    for flush in (5, 20, 100):
        r, m = d / f"{mode}-flush{flush}.json", d / f"{mode}-flush{flush}.meta.json"
        if not m.exists():
            continue
        meta = json.loads(m.read_text())
        s = json.loads(r.read_text())["summary"] if r.exists() else None
        rows.append((flush, s, meta))
    if not rows:
        continue
    print(f"### {title}\n")
    if mode == "latency":
        print("| wal_flush_interval_ms | publish msg/s | errors | publish p50 / p99 / p99.9 / max ms | "
              "e2e p50 / p99 / p99.9 ms | send delay p99 ms | WAL objects/s | KiB/object | commit mean ms |")
        print("|---:|---:|---:|---|---|---:|---:|---:|---:|")
    else:
        print("| wal_flush_interval_ms | publish msg/s | MB/s | errors | publish p50 / p99 / p99.9 ms | "
              "WAL objects/s | KiB/object | commit mean ms |")
        print("|---:|---:|---:|---:|---|---:|---:|---:|")
    for flush, s, meta in rows:
        md = meta.get("metrics_delta", {})
        objs = sum(v.get("magnetar_wal_objects_total", 0) for v in md.values())
        byts = sum(v.get("magnetar_wal_bytes_total", 0) for v in md.values())
        csum = sum(v.get("magnetar_wal_commit_latency_seconds_sum", 0) for v in md.values())
        ccnt = sum(v.get("magnetar_wal_commit_latency_seconds_count", 0) for v in md.values())
        wall = meta.get("wall_s") or 1
        ops = f(objs / wall) if objs else "–"
        kib = f(byts / objs / 1024) if objs else "–"
        cm = f(1000 * csum / ccnt) if ccnt else "–"
        if s is None:
            print(f"| {flush} | no result (rc {meta.get('perf_rc')}) |")
            continue
        pl, e2e = s["publish_latency"], s["e2e_latency"]
        if mode == "latency":
            print(f"| {flush} | {f(s['publish']['msg_per_s'], 0)} | {s['publish']['errors']} | "
                  f"{f(pl['p50_ms'])} / {f(pl['p99_ms'])} / {f(pl['p99_9_ms'])} / {f(pl['max_ms'])} | "
                  f"{f(e2e['p50_ms'])} / {f(e2e['p99_ms'])} / {f(e2e['p99_9_ms'])} | {f(s['send_delay']['p99_ms'])} | "
                  f"{ops} | {kib} | {cm} |")
        else:
            print(f"| {flush} | {f(s['publish']['msg_per_s'], 0)} | {f(s['publish']['mb_per_s'])} | "
                  f"{s['publish']['errors']} | {f(pl['p50_ms'])} / {f(pl['p99_ms'])} / {f(pl['p99_9_ms'])} | "
                  f"{ops} | {kib} | {cm} |")
    print("\nCPU, % of one core, mean over the measured phase (max 1 s sample):\n")
    print("| mode | flush ms | b0 | b1 | b2 | moto | etcd | magnetar-perf | load avg before → after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for flush, s, meta in rows:
        print(f"| {mode} | {flush} | {cpu(meta, 'b0')} | {cpu(meta, 'b1')} | {cpu(meta, 'b2')} | {cpu(meta, 'moto')} | "
              f"{cpu(meta, 'etcd')} | {cpu(meta, 'perf')} | {meta.get('loadavg_before', '').split()[0]} → "
              f"{meta.get('loadavg_after', '').split()[0]} |")
    print()

for ttl in (10000, 3000):
    p = d / f"failover-ttl{ttl}.json"
    if not p.exists():
        continue
    r = json.loads(p.read_text())
    print(f"### Failover, kill -9 of the busiest leader, session_ttl_ms = {ttl} ({len(r['rounds'])} rounds, "
          f"{r['rate']} msg/s idempotent acks=all)\n")
    print("| round | victim (partitions led) | leaders live s | victim partitions acked again s | "
          "longest gap, all partitions s | longest gap, one victim partition s | restart → registered s |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for rd in r["rounds"]:
        print(f"| {rd['round']} | {rd['victim']} ({rd['victim_partitions']}) | {f(rd['leaders_s'], 2)} | "
              f"{f(rd['all_victim_partitions_acked_again_s'], 2)} | {f(rd.get('gap_all_s'), 2)} | "
              f"{f(rd.get('gap_victim_s'), 2)} | {f(rd['restart_registered_s'], 2)} |")
    print("\n| figure | min | median | max |\n|---|---:|---:|---:|")
    for k, v in r["summary"].items():
        if v:
            print(f"| {k} | {v['min']} | {v['median']} | {v['max']} |")
    print(f"\nproduced {r.get('produced')}, acknowledged {r.get('acked')}, delivery errors "
          f"{r.get('delivery_errors')}, consumed {r.get('consumed')} (complete: {r.get('consumed_complete')}), "
          f"**missing {r.get('missing')}, duplicates {r.get('duplicates')}**, offset mismatches "
          f"{r.get('offset_mismatch')}, stored but never acknowledged {r.get('unacked_but_stored')}\n")
