#!/usr/bin/env bash
# A/B of two magnetar builds for issue #14 (hot path), interleaved: for each repetition, each
# workload/fsync pair runs against build A then build B, each with a fresh broker and data dir.
#
#   perf/results/2026-12-02/hotpath/run-ab.sh OUT_DIR A_DIR B_DIR
#
# A_DIR and B_DIR hold `magnetar` (release); the tool is PERF_BIN (default A_DIR/magnetar-perf).
# Environment: REP_FIRST (1), REPS (3, the last repetition), WARMUP_S (5), DURATION_S (20),
# CASES ("workload:fsync ..."), SIDES ("a b"), DATA_ROOT (/tmp; data directories go there).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
out=${1:?usage: run-ab.sh OUT_DIR A_DIR B_DIR}
a=${2:?}; b=${3:?}
perf_bin=${PERF_BIN:-$a/magnetar-perf}
mkdir -p "$out"
cases=${CASES:-"max-rate-1-topic-16-partitions-1kb-produce-only:os max-rate-1-topic-16-partitions-1kb-produce-only:always 1-topic-1-partition-1kb:os"}
for rep in $(seq "${REP_FIRST:-1}" "${REPS:-3}"); do
  for c in $cases; do
    w=${c%%:*}; fsync=${c##*:}
    for side in ${SIDES:-a b}; do
      bin_dir=$a; [ "$side" = b ] && bin_dir=$b
      data=$(mktemp -d "${DATA_ROOT:-/tmp}/magnetar-ab-data.XXXXXX")
      MAGNETAR_STORAGE__FSYNC=$fsync "$bin_dir/magnetar" standalone --data-dir "$data/d" \
        --kafka-port 0 --pulsar-port 0 --http-port 0 >"$data/out" 2>"$data/err" &
      pid=$!
      kafka=""
      for _ in $(seq 1 300); do
        kafka=$(sed -n 's/.*"kafka":"\([^"]*\)".*/\1/p' "$data/out")
        [ -n "$kafka" ] && break
        sleep 0.1
      done
      if [ -z "$kafka" ]; then
        echo "broker did not start" >&2; cat "$data/err" >&2; kill "$pid" || true; exit 1
      fi
      name="$w-fsync-$fsync-$side-$rep"
      cmd=("$perf_bin" run --bootstrap-servers "$kafka" --workload "perf/workloads/$w.yaml"
        --warmup-s "${WARMUP_S:-5}" --duration-s "${DURATION_S:-20}" --pid "$pid"
        --output "$out/$name.json")
      {
        echo "# $(date -u +%FT%TZ) $name; load average before the run: $(uptime | sed 's/.*load average: //')"
        echo "MAGNETAR_STORAGE__FSYNC=$fsync $bin_dir/magnetar standalone --data-dir DIR --kafka-port 0 --pulsar-port 0 --http-port 0"
        echo "${cmd[*]}"
      } >>"$out/commands.txt"
      "${cmd[@]}" >"$out/$name.log" 2>&1 || echo "run $name failed" >>"$out/commands.txt"
      kill -TERM "$pid"
      wait "$pid" || true
      rm -rf "$data"
    done
  done
done
