#!/usr/bin/env bash
# Runs the standard workloads against `magnetar standalone`, once per fsync policy, with a fresh
# broker and data directory per run, and writes JSON results, HTML reports, progress logs, the
# exact commands and the load average before each run into the results directory.
#
#   perf/run-standard.sh perf/results/<date>
#
# Environment: MAGNETAR_BIN (default target/release/magnetar), PERF_BIN (default
# target/release/magnetar-perf), WARMUP_S (5), DURATION_S (30), BACKLOG_DURATION_S (60, caps
# each backlog phase), FSYNC_POLICIES ("os always"), WORKLOADS (the standard five), PROFILE=1
# to record a `perf` profile of the broker during the max-rate run (its perf.data is kept in
# PERF_DATA_DIR when that is set, else deleted once summarised).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: perf/run-standard.sh RESULTS_DIR}
mkdir -p "$out"
magnetar=${MAGNETAR_BIN:-target/release/magnetar}
perf_bin=${PERF_BIN:-target/release/magnetar-perf}
warmup=${WARMUP_S:-5}
duration=${DURATION_S:-30}
backlog_duration=${BACKLOG_DURATION_S:-60}
workloads=${WORKLOADS:-"1-topic-1-partition-1kb 1-topic-1-partition-100b 1-topic-16-partitions-1kb max-rate-1-topic-16-partitions-1kb backlog-1-topic-16-partitions-1kb"}

for fsync in ${FSYNC_POLICIES:-os always}; do
  for w in $workloads; do
    data=$(mktemp -d /tmp/magnetar-perf-data.XXXXXX)
    MAGNETAR_STORAGE__FSYNC=$fsync "$magnetar" standalone --data-dir "$data/d" \
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
    name="$w-fsync-$fsync"
    if [[ $w == backlog-* ]]; then
      phase_args=(--warmup-s 0 --duration-s "$backlog_duration")
    else
      phase_args=(--warmup-s "$warmup" --duration-s "$duration")
    fi
    cmd=("$perf_bin" run --bootstrap-servers "$kafka" --workload "perf/workloads/$w.yaml"
      "${phase_args[@]}" --pid "$pid" --output "$out/$name.json" --report "$out/$name.html")
    {
      echo "# $(date -u +%FT%TZ) $name; load average before the run: $(uptime | sed 's/.*load average: //')"
      echo "MAGNETAR_STORAGE__FSYNC=$fsync $magnetar standalone --data-dir DIR --kafka-port 0 --pulsar-port 0 --http-port 0"
      echo "${cmd[*]}"
    } >>"$out/commands.txt"
    profiler=""
    perf_data="${PERF_DATA_DIR:-$out}/$name.perf.data"
    if [ "${PROFILE:-0}" = 1 ] && [[ $w == max-rate-* ]]; then
      # Profile 10 s of the measured phase (after the warm-up), with DWARF unwinding: Rust
      # release builds have no frame pointers.
      (sleep "$((warmup + 2))"; perf record -F 199 --call-graph dwarf,16384 -p "$pid" \
        -o "$perf_data" -- sleep "$((duration < 12 ? duration - 2 : 10))" \
        >"$out/$name.perf-record.log" 2>&1) &
      profiler=$!
    fi
    "${cmd[@]}" | tee "$out/$name.log"
    if [ -n "$profiler" ]; then
      wait "$profiler" || true
      # Self time per function, and time including callees (without async-runtime plumbing).
      perf report -i "$perf_data" --no-children --sort dso,symbol --stdio -g none \
        2>/dev/null | grep -E '^ +[0-9]' | sed -E 's/ +/ /g; s/ - - *$//' | head -40 \
        >"$out/$name.perf-self.txt" || true
      perf report -i "$perf_data" --children --sort symbol --stdio -g none 2>/dev/null \
        | grep -E '^ +[0-9]' | sed -E 's/ +/ /g; s/ - - *$//' \
        | grep -vE 'tokio::runtime|catch_unwind|do_call|call_once|poll_inner|poll_future|with_mut|Harness|_ZN5tokio|std::thread|__rust_begin|start_thread|clone3|entry_SYSCALL|do_syscall' \
        | cut -c1-220 | head -60 >"$out/$name.perf-children.txt" || true
      [ -n "${PERF_DATA_DIR:-}" ] || rm -f "$perf_data"
    fi
    kill -TERM "$pid"
    wait "$pid" || true
    rm -rf "$data"
  done
done
