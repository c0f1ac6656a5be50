#!/usr/bin/env bash
# Every run behind README.md, in order (quiet machine, 2 vCPU): fdatasync probe, fixed-rate
# latency with the broker's fsync histogram, max-rate old main vs main vs mock cluster, profiles.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
R=perf/results/2026-12-04/hotpath
mkdir -p /work/perf-data
python3 $R/fdatasync.py /work/perf-data 3000 | sed 's/^/before: /' >>$R/fdatasync.txt
BROKER_CPUS=0 TOOL_CPUS=1 REPS=3 WARMUP_S=5 DURATION_S=20 BINS="main=/work/bins/main" \
  CASES="1-topic-1-partition-1kb:always 1-topic-16-partitions-1kb:always 1-topic-1-partition-1kb:os 1-topic-16-partitions-1kb:os" \
  $R/run.sh $R/latency
BROKER_CPUS=0 TOOL_CPUS=1 REPS=3 WARMUP_S=5 DURATION_S=20 BINS="old=/work/bins/old main=/work/bins/main" \
  CASES="max-rate-1-topic-16-partitions-1kb-produce-only:os max-rate-1-topic-16-partitions-1kb-produce-only:always max-rate-1-topic-16-partitions-1kb-produce-only:mock" \
  $R/run.sh $R/max-rate
$R/profile.sh old /work/bins/old/magnetar $R
$R/profile.sh main /work/bins/main/magnetar $R
python3 $R/fdatasync.py /work/perf-data 3000 | sed 's/^/after: /' >>$R/fdatasync.txt
