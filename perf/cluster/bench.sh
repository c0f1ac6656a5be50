#!/usr/bin/env bash
# Cluster-mode benchmarks (issue #17): three `magnetar broker` processes on one etcd and one moto
# S3 server, all on loopback. Reproduces perf/results/<date>/cluster/.
#
# usage: perf/cluster/bench.sh [OUT] [DURATION_S]
#   OUT defaults to perf/results/$(date -u +%F)/cluster; CARGO_TARGET_DIR is honoured.
# Needs: etcd (Debian etcd-server), moto[server] + boto3 + confluent-kafka (Python).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-perf/results/$(date -u +%F)/cluster}
DURATION=${2:-30}
T=${CARGO_TARGET_DIR:-target}
CARGO_INCREMENTAL=0 cargo build --release -p magnetar -p magnetar-perf
mkdir -p "$OUT" "$OUT/latency-5k"
# 1. fixed 20k msg/s with a consumer, then produce-only max rate; per wal_flush_interval_ms
perf/cluster/bench.py --bin "$T/release/magnetar" --perf-bin "$T/release/magnetar-perf" --out "$OUT" \
  --modes latency,maxrate --flush 5,20,100 --warmup-s 5 --duration-s "$DURATION" | tee "$OUT/bench.log"
perf/cluster/bench.py --bin "$T/release/magnetar" --perf-bin "$T/release/magnetar-perf" --out "$OUT/latency-5k" \
  --modes latency5k --flush 20 --warmup-s 5 --duration-s "$DURATION" | tee "$OUT/latency-5k/bench.log"
# 2. failover under kill -9: 10 rounds at the default session TTL, 5 at 3 s
perf/cluster/failover.py --bin "$T/release/magnetar" --out "$OUT/failover-ttl10000.json" \
  --rounds 10 --session-ttl-ms 10000 --rate 1000 | tee "$OUT/failover-ttl10000.log"
perf/cluster/failover.py --bin "$T/release/magnetar" --out "$OUT/failover-ttl3000.json" \
  --rounds 5 --session-ttl-ms 3000 --rate 1000 | tee "$OUT/failover-ttl3000.log"
perf/cluster/summarize.py "$OUT" > "$OUT/tables.md"
