#!/bin/bash
# usage: cpurun.sh BIN N [env...]
bin=$1; n=$2; shift 2
rm -rf /tmp/prof/data2
env "$@" $bin standalone --data-dir /tmp/prof/data2 --kafka-port 29092 --pulsar-port 26651 --http-port 28081 > /tmp/prof/out2 2>/tmp/prof/err2 &
bp=$!
for i in $(seq 1 100); do grep -q listening /tmp/prof/out2 && break; sleep 0.1; done
python3 /work/main/perf/results/2026-12-03/cpu-rss/cpu.py $bp $n | tail -3
sleep 5; grep -E "VmHWM|VmRSS|RssAnon|RssFile" /proc/$bp/status | tr "\n" " "; echo; grep -E "^(Rss|Anonymous|Private_Dirty)" /proc/$bp/smaps_rollup | tr "\n" " "; echo
kill $bp; wait $bp 2>/dev/null
