#!/usr/bin/env bash
# Issue #14 benchmarks of 2026-12-04: fixed-rate latency under fsync os/always with the broker's
# own fsync histogram taken over the same run (--broker-metrics), and max-rate throughput of one
# or two builds against librdkafka's in-process mock cluster (the client-side ceiling).
#
#   perf/results/2026-12-04/hotpath/run.sh OUT_DIR
#
# Environment:
#   BINS     "label=dir ..." builds to run (dir holds a release `magnetar`); default "main=target/release"
#   PERF_BIN the load generator (default target/release/magnetar-perf)
#   CASES    "workload:fsync ..." (fsync os|always|mock; mock = --mock-brokers 1, run once per rep)
#   REPS (3), WARMUP_S (5), DURATION_S (20), DATA_ROOT (/work/perf-data)
#   SETTLE_S (10) pause after deleting the previous run's data; NO_SETTLE=1 skips sync + pause
#   BROKER_CPUS / TOOL_CPUS  taskset lists (default: none)
set -euo pipefail
cd "$(dirname "$0")/../../../.."
out=${1:?usage: run.sh OUT_DIR}
mkdir -p "$out"
perf_bin=${PERF_BIN:-target/release/magnetar-perf}
bins=${BINS:-"main=target/release"}
cases=${CASES:-"1-topic-1-partition-1kb:always 1-topic-16-partitions-1kb:always"}
data_root=${DATA_ROOT:-/work/perf-data}
mkdir -p "$data_root"
here=$(cd "$(dirname "$0")" && pwd)
# The root file system here is ext4 mounted with `discard`: deleting the previous run's
# gigabytes makes the next journal commits carry their discards, and fdatasyncs stall for
# hundreds of ms. So each run's data is deleted, synced, and the disk given time to settle
# before the next starts; a short fdatasync probe before each run is logged as evidence.
settle() {
  # NO_SETTLE=1: neither (to show the stall itself).
  if [ -z "${NO_SETTLE:-}" ]; then
    sync
    sleep "${SETTLE_S:-10}"
  fi
  echo "# fdatasync probe before the run: $(python3 "$here/fdatasync.py" "$data_root" 500)" >>"$out/commands.txt"
}
pin() { if [ -n "$1" ]; then echo "taskset -c $1"; fi; }
for rep in $(seq 1 "${REPS:-3}"); do
  for c in $cases; do
    w=${c%%:*}; fsync=${c##*:}
    if [ "$fsync" = mock ]; then
      name="$w-mock-$rep"
      cmd=($(pin "${TOOL_CPUS:-}") "$perf_bin" run --mock-brokers 1 --workload "perf/workloads/$w.yaml"
        --warmup-s "${WARMUP_S:-5}" --duration-s "${DURATION_S:-20}" --output "$out/$name.json")
      { echo "# $(date -u +%FT%TZ) $name; load average before: $(uptime | sed 's/.*load average: //')"
        echo "${cmd[*]}"; } >>"$out/commands.txt"
      "${cmd[@]}" >"$out/$name.log" 2>&1 || echo "run $name failed" >>"$out/commands.txt"
      continue
    fi
    for b in $bins; do
      label=${b%%=*}; dir=${b#*=}
      settle
      data=$(mktemp -d "$data_root/run.XXXXXX")
      broker=($(pin "${BROKER_CPUS:-}") "$dir/magnetar" standalone --data-dir "$data/d"
        --kafka-port 0 --pulsar-port 0 --http-port 0)
      MAGNETAR_STORAGE__FSYNC=$fsync "${broker[@]}" >"$data/out" 2>"$data/err" &
      pid=$!
      kafka=""; http=""
      for _ in $(seq 1 300); do
        kafka=$(sed -n 's/.*"kafka":"\([^"]*\)".*/\1/p' "$data/out")
        http=$(sed -n 's/.*"http":"\([^"]*\)".*/\1/p' "$data/out")
        [ -n "$kafka" ] && break
        sleep 0.1
      done
      if [ -z "$kafka" ]; then
        echo "broker did not start" >&2; cat "$data/err" >&2; kill "$pid" || true; exit 1
      fi
      name="$w-fsync-$fsync-$label-$rep"
      cmd=($(pin "${TOOL_CPUS:-}") "$perf_bin" run --bootstrap-servers "$kafka" --workload "perf/workloads/$w.yaml"
        --warmup-s "${WARMUP_S:-5}" --duration-s "${DURATION_S:-20}" --pid "$pid"
        --broker-metrics "http://$http/metrics" --output "$out/$name.json")
      {
        echo "# $(date -u +%FT%TZ) $name; load average before: $(uptime | sed 's/.*load average: //')"
        echo "MAGNETAR_STORAGE__FSYNC=$fsync ${broker[*]}" | sed "s#$data#DIR#"
        echo "${cmd[*]}"
      } >>"$out/commands.txt"
      "${cmd[@]}" >"$out/$name.log" 2>&1 || echo "run $name failed" >>"$out/commands.txt"
      kill -TERM "$pid"
      wait "$pid" || true
      rm -rf "$data"
    done
  done
done
