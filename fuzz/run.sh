#!/usr/bin/env bash
# Runs every fuzz target (or the ones named after the first argument) for SECONDS each
# (default 180), JOBS at a time (default 2), niced, from the committed seeds; new inputs go to
# corpus-run/<target> (git-ignored), crashes to artifacts/<target>/, logs to logs/<target>.log.
# Prints one line of figures per target from libFuzzer's final stats. Needs the targets built:
#   cargo fuzz build -s none
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-180}"
shift || true
jobs="${JOBS:-2}"
bin=target/x86_64-unknown-linux-gnu/release
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
mkdir -p logs
run_one() {
  t="$1"
  mkdir -p "corpus-run/$t" "artifacts/$t"
  # -seed=1: the same run twice gives the same mutations (timing aside)
  nice -n 10 "$bin/$t" "corpus-run/$t" "corpus/$t" -seed=1 -max_total_time="$2" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    >"logs/$t.log" 2>&1 || true
}
export -f run_one
export bin
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {} '"$seconds"
printf '%-18s %12s %8s %8s %8s %8s\n' target executions exec/s cov ft crashes
for t in "${targets[@]}"; do
  log="logs/$t.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo '?')
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo '?')
  crashes=$(find "artifacts/$t" -type f | wc -l)
  printf '%-18s %12s %8s %8s %8s %8s\n' "$t" "$execs" "$rate" "$cov" "$ft" "$crashes"
done
