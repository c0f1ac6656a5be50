#!/usr/bin/env bash
# Shared-WAL produce latency (issue #16): moto (S3) and etcd on loopback, the wal_bench example
# over the matrix rate x wal_flush_interval_ms. Results: one JSON line per run in $OUT.
#
# usage: perf/wal/bench.sh [OUT] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-perf/results/$(date +%F)/wal/results.jsonl}
SECONDS_PER_RUN=${2:-10}
mkdir -p "$(dirname "$OUT")"
cargo build --release -q --example wal_bench -p magnetar --features etcd
BENCH=target/release/examples/wal_bench

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d)
S3_PORT=$(port); ETCD_PORT=$(port); PEER_PORT=$(port)
moto_server -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
MOTO=$!
etcd --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
     --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
     --listen-peer-urls "http://127.0.0.1:$PEER_PORT" >"$WORK/etcd.log" 2>&1 &
ETCD=$!
trap 'kill $MOTO $ETCD 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && curl -s -o /dev/null "http://127.0.0.1:$ETCD_PORT/health" && break
  sleep 0.2
done
curl -s -X PUT "http://127.0.0.1:$S3_PORT/bench" >/dev/null
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
for rate in 5000 50000; do
  for flush in 5 20 100; do
    echo "rate $rate flush $flush" >&2
    "$BENCH" --store s3://bench/wal --endpoint "http://127.0.0.1:$S3_PORT" \
      --metadata "etcd:http://127.0.0.1:$ETCD_PORT" --rate "$rate" --seconds "$SECONDS_PER_RUN" \
      --flush-ms "$flush" --partitions 16 --size 1024 | tee -a "$OUT"
  done
done
