#!/usr/bin/env python3
"""Markdown tables from perf/cluster/failover.py results, with the survivors' log lines of each
round lined up against the kill (rounds need `kill_utc`, recorded since 2026-12-03 evening).

For each round: `leaders_s` and `all_victim_partitions_acked_again_s` (from the JSON), then from
the broker logs in `<json stem>-logs/` (every generation's stderr, copied by failover.py):
  claim first/last  - kill -> the first / last `bundle claimed` line of a survivor (the victim's
                      session expired in etcd and the rendezvous winner claimed its bundles);
  opened            - kill -> the last `opened the partitions of gained bundles` line after the
                      last claim (the new owners opened the taken-over partitions), with the
                      longest `elapsed_ms` such a line reports;
and min / median / p90 / max of every figure over the rounds (p90: nearest rank, the
ceil(0.9 n)-th smallest).

usage: perf/cluster/failover_report.py FILE.json [FILE.json ...]
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s+\w+\s+(\S+): (.*)$")


def ts(text: str) -> float:
    whole, frac = text.rstrip("Z").split(".")
    t = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return t + float("0." + frac)


def events(logdir: Path):
    """(time, broker file, message) of the claim and open lines of every broker log."""
    out = []
    for f in sorted(logdir.glob("b*.stderr-*.log")):
        for line in f.read_text(errors="replace").splitlines():
            m = LINE.match(line)
            if not m:
                continue
            msg = m.group(3)
            if msg.startswith("bundle claimed") or msg.startswith("opened the partitions of gained bundles"):
                out.append((ts(m.group(1)), f.name, msg))
    return sorted(out)


def stats(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    return {"n": len(v), "min": round(v[0], 2), "median": round(statistics.median(v), 2),
            "p90": round(v[math.ceil(0.9 * len(v)) - 1], 2), "max": round(v[-1], 2)}


def report(path: Path) -> None:
    r = json.loads(path.read_text())
    logdir = path.parent / (path.stem + "-logs")
    ev = events(logdir) if logdir.is_dir() else []
    rounds = r["rounds"]
    kills = [ts(rd["kill_utc"]) if rd.get("kill_utc") else None for rd in rounds]
    print(f"\n#### {path.name}: session_ttl_ms {r['session_ttl_ms']}, {len(rounds)} rounds, "
          f"{r['rate']} msg/s, load average {r['loadavg_before']} -> {r.get('loadavg_after')}\n")
    print("| round | victim (partitions) | leaders live s | victim partitions acked again s | "
          "first claim s | last claim s | partitions opened s (longest open ms) | "
          "longest gap, one victim partition s |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    derived = {"claim_first_s": [], "claim_last_s": [], "opened_s": []}
    for i, rd in enumerate(rounds):
        k = kills[i]
        first = last = opened = None
        open_ms = None
        if k is not None:
            # Until the next kill, at most 30 s (the last round: not the shutdown's handovers).
            end = min(next((x for x in kills[i + 1:] if x is not None), float("inf")), k + 30)
            claims = [t for t, _, m in ev if k < t < end and m.startswith("bundle claimed")]
            if claims:
                first, last = claims[0] - k, claims[-1] - k
                opens = [(t, m) for t, _, m in ev
                         if claims[-1] <= t < end and m.startswith("opened the partitions")]
                if opens:
                    opened = opens[-1][0] - k
                    open_ms = max(int(re.search(r"elapsed_ms=(\d+)", m).group(1)) for _, m in opens)
        derived["claim_first_s"].append(first)
        derived["claim_last_s"].append(last)
        derived["opened_s"].append(opened)

        def f(x):
            return "–" if x is None else f"{x:.2f}"

        print(f"| {rd['round']} | {rd['victim']} ({rd['victim_partitions']}) | {f(rd['leaders_s'])} | "
              f"{f(rd['all_victim_partitions_acked_again_s'])} | {f(first)} | {f(last)} | "
              f"{f(opened)} ({open_ms if open_ms is not None else '–'}) | {f(rd.get('gap_victim_s'))} |")
    print("\n| figure (s after the kill) | n | min | median | p90 | max |\n|---|---:|---:|---:|---:|---:|")
    figures = {
        "leaders live (every partition, every survivor agrees)": [rd["leaders_s"] for rd in rounds],
        "every victim partition acknowledged again": [rd["all_victim_partitions_acked_again_s"] for rd in rounds],
        "first bundle claimed": derived["claim_first_s"],
        "last bundle claimed": derived["claim_last_s"],
        "taken-over partitions opened": derived["opened_s"],
        "longest gap on one victim partition": [rd.get("gap_victim_s") for rd in rounds],
        "longest gap, all partitions": [rd.get("gap_all_s") for rd in rounds],
        "restart -> registered": [rd.get("restart_registered_s") for rd in rounds],
    }
    for name, vals in figures.items():
        s = stats(vals)
        if s:
            print(f"| {name} | {s['n']} | {s['min']} | {s['median']} | {s['p90']} | {s['max']} |")
    print(f"\nproduced {r.get('produced')}, acknowledged {r.get('acked')}, delivery errors "
          f"{r.get('delivery_errors')}, consumed {r.get('consumed')} (complete: "
          f"{r.get('consumed_complete')}), missing {r.get('missing')}, duplicates "
          f"{r.get('duplicates')}, offset mismatches {r.get('offset_mismatch')}, stored but never "
          f"acknowledged {r.get('unacked_but_stored')}")


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for p in sys.argv[1:]:
        report(Path(p))


if __name__ == "__main__":
    main()
