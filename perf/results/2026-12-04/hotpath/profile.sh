#!/usr/bin/env bash
# perf profile of one broker build under the produce + consume run of ../../2026-12-03/cpu-rss/cpu.py
# (600 000 x 1000 B into 16 partitions with confluent-kafka, then consumed), with DWARF call
# graphs so callers resolve.
#
#   perf/results/2026-12-04/hotpath/profile.sh LABEL MAGNETAR_BIN OUT_DIR
set -eu
label=${1:?}; bin=${2:?}; out=${3:?}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
work=$(mktemp -d /work/perf-data/prof.XXXXXX)
"$bin" standalone --data-dir "$work/data" --kafka-port 29092 --pulsar-port 26650 --http-port 28080 \
  >"$work/out" 2>"$work/err" &
bp=$!
for _ in $(seq 1 100); do grep -q listening "$work/out" && break; sleep 0.1; done
perf record -F 1999 --call-graph dwarf,16384 -p "$bp" -o "$work/perf.data" -- sleep 20 \
  >"$work/record.log" 2>&1 &
rec=$!
sleep 1
python3 "$repo/perf/results/2026-12-03/cpu-rss/cpu.py" "$bp" 600000 | tee "$out/profile-$label.cpu.txt"
wait "$rec" || true
kill "$bp"; wait "$bp" || true
tail -1 "$work/record.log" >>"$out/profile-$label.cpu.txt"
perf report -i "$work/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -40 >"$out/profile-$label.top-symbols.txt"
perf report -i "$work/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -15 >"$out/profile-$label.by-dso.txt"
# Callers of the five most expensive symbols (caller-based graph, 1.5 % cut-off).
perf report -i "$work/perf.data" --no-children --sort symbol --stdio -G --percent-limit 3 \
  -g caller,1.5,callee --max-stack 40 2>/dev/null | grep -v '^$' | cut -c1-220 \
  | head -700 >"$out/profile-$label.callers.txt"
rm -rf "$work"
