#!/usr/bin/env bash
# Soak (issue #22): one hour at 50% of the max rate of the same workload, produce + consume,
# fsync=always (the durable default), retention on. Not run in CI.
#   perf/soak/soak.sh OUT_DIR [SOAK_S=3600]
# Prints and saves: the max rate measured first, then the soak's result JSON (per-interval
# broker RSS and CPU, publish/consume errors) and the broker's WARN/ERROR lines.
set -euo pipefail
out=${1:?usage: soak.sh OUT_DIR [SOAK_S]}
soak_s=${2:-3600}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${SOAK_BIN_DIR:-$repo/target/release}
mkdir -p "$out"
data=$(mktemp -d /tmp/magnetar-soak.XXXXXX)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kafka=$(port); http=$(port); pulsar=$(port)
MAGNETAR_BROKER__RETENTION_CHECK_INTERVAL_MS=10000 \
  "$bin/magnetar" standalone --data-dir "$data" --bind 127.0.0.1 \
  --kafka-port "$kafka" --http-port "$http" --pulsar-port "$pulsar" 2> "$out/broker.stderr" &
broker=$!
trap 'kill $broker 2>/dev/null; wait $broker 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$http/health" >/dev/null && break; sleep 0.2; done
curl -sf "http://127.0.0.1:$http/health" >/dev/null

# 1. The max rate of this workload on this machine, now.
"$bin/magnetar-perf" run --bootstrap-servers "127.0.0.1:$kafka" \
  --workload "$repo/perf/workloads/max-rate-1-topic-16-partitions-1kb.yaml" \
  --driver "$here/driver-soak.yaml" --warmup-s 5 --duration-s "${MAX_S:-30}" --pid $broker \
  --topic-prefix soak-max --quiet --output "$out/max-rate.json" | tail -4 | tee "$out/max-rate.txt"
max=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['summary']['publish']['msg_per_s'])" "$out/max-rate.json")
rate=$(python3 -c "print(int(float('$max') / 2))")
echo "max rate ${max} msg/s; soak at ${rate} msg/s for ${soak_s} s" | tee "$out/rate.txt"

# 2. The soak.
sed "s/^producerRate: .*/producerRate: $rate/; s/^name: .*/name: Soak at 50% of max rate ($rate msg\/s)/" \
  "$repo/perf/workloads/max-rate-1-topic-16-partitions-1kb.yaml" > "$out/workload-soak.yaml"
"$bin/magnetar-perf" run --bootstrap-servers "127.0.0.1:$kafka" \
  --workload "$out/workload-soak.yaml" --driver "$here/driver-soak.yaml" \
  --warmup-s 30 --duration-s "$soak_s" --interval-s 10 --pid $broker \
  --topic-prefix soak --quiet --output "$out/soak.json" --report "$out/soak.html" | tail -8 | tee "$out/soak.txt"

# 3. RSS over time, errors, and what the broker logged.
python3 "$here/summarize.py" "$out/soak.json" | tee "$out/summary.txt"
du -sh "$data" | tee -a "$out/summary.txt"
grep -cE " (WARN|ERROR) " "$out/broker.stderr" | sed 's/^/broker WARN+ERROR lines: /' | tee -a "$out/summary.txt" || true
