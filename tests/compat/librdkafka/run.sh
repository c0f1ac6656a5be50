#!/usr/bin/env bash
# Runs Debian's librdkafka 2.0.2 source package test suite (its tests/ directory) against a
# standalone Magnetar broker.
#
#   tests/compat/librdkafka/run.sh               # the allow-listed tests; exit 1 if one fails
#   tests/compat/librdkafka/run.sh --all         # every test the runner knows (a report, exit 0)
#   TESTS=0001,0012 tests/compat/librdkafka/run.sh   # these tests only (exit 1 if one fails)
#
# What it does: downloads the source package (.dsc, .orig.tar.gz, .debian.tar.xz) from the Debian
# mirror apt uses (DEBIAN_MIRROR overrides), checks the .orig's SHA-256 against the .dsc,
# unpacks it with dpkg-source (Debian's patches applied), builds librdkafka and tests/test-runner
# into a cache outside the repository (RDKAFKA_COMPAT_CACHE, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/magnetar-compat; built once, reused), builds magnetar (or uses
# MAGNETAR_BIN), starts a standalone broker on free ports in a temporary directory, writes
# tests/test.conf with its bootstrap address, and runs each test in its own test-runner process
# (`-Q` quick mode, a wall-clock limit of TEST_WALL_S seconds each, default 180; JOBS at once,
# default 1). Results and
# per-test logs go to $OUT (default: a temporary directory, printed); summary.tsv has one line per
# test: number, name, result (PASSED, FAILED, SKIPPED, TIMEOUT), seconds.
#
# Build dependencies (Debian): build-essential, libssl-dev, zlib1g-dev, python3, dpkg-dev; the
# kafka-topics.sh stand-in needs python3's confluent-kafka (tests/python/requirements.txt).
# allowlist.txt: the tests expected to pass; excluded.txt: every other test and why.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
VERSION=2.0.2
DEBIAN_REVISION=1
ORIG_SHA256=f321bcb1e015a34114c83cf1aa7b99ee260236aab096b85c003170c90a47ca9d
CACHE="${RDKAFKA_COMPAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/magnetar-compat}"
SRC="$CACHE/librdkafka-$VERSION"
TEST_WALL_S="${TEST_WALL_S:-180}"
MODE=allowlist
[[ "${1:-}" == "--all" ]] && MODE=all
[[ -n "${TESTS:-}" ]] && MODE=selected

log() { echo "== $* (at ${SECONDS} s)" >&2; }

mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  # The first `URIs:` (deb822) or `deb` line of apt's sources that is not a security mirror.
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ && !/security/ {print $2; exit}')
  if [[ -z "$uri" ]]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" && $2 ~ /debian/ && !/security/ {print $2; exit}')
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

fetch_source() {
  [[ -x "$SRC/tests/test-runner" ]] && return
  mkdir -p "$CACHE"
  cd "$CACHE"
  local base pool
  base="$(mirror)"
  pool="$base/pool/main/libr/librdkafka"
  log "download librdkafka $VERSION-$DEBIAN_REVISION from $pool"
  for f in "librdkafka_${VERSION}-${DEBIAN_REVISION}.dsc" "librdkafka_${VERSION}.orig.tar.gz" \
    "librdkafka_${VERSION}-${DEBIAN_REVISION}.debian.tar.xz"; do
    if [[ ! -s "$f" ]]; then
      curl -sSfL -o "$f.part" "$pool/$f"
      mv -f "$f.part" "$f"
    fi
  done
  echo "$ORIG_SHA256  librdkafka_${VERSION}.orig.tar.gz" | sha256sum -c --quiet
  grep -q "$ORIG_SHA256" "librdkafka_${VERSION}-${DEBIAN_REVISION}.dsc"
  rm -rf "$SRC"
  if command -v dpkg-source >/dev/null; then
    # The checksums were checked above; the signature needs Debian's keyring, not assumed here.
    dpkg-source --no-check -x "librdkafka_${VERSION}-${DEBIAN_REVISION}.dsc" "$SRC" >/dev/null
  else
    tar xzf "librdkafka_${VERSION}.orig.tar.gz"
  fi
}

build_runner() {
  [[ -x "$SRC/tests/test-runner" ]] && return
  log "build librdkafka and tests/test-runner (once; cached in $SRC)"
  cd "$SRC"
  # What the build needs only: no SASL/GSSAPI (libsasl2), zstd, external lz4 (built in) or curl.
  # Logs outside the source tree: mklove's configure reads any ./configure.* file as a module.
  local logs="$CACHE/build-logs"
  mkdir -p "$logs"
  ./configure --no-download --disable-gssapi --disable-zstd --disable-lz4-ext --disable-curl \
    >"$logs/configure.txt" 2>&1 || { tail -20 "$logs/configure.txt"; exit 2; }
  make -j"$(nproc)" libs >"$logs/make.txt" 2>&1 || { tail -40 "$logs/make.txt"; exit 2; }
  make -C tests -j"$(nproc)" test-runner >>"$logs/make.txt" 2>&1 || { tail -40 "$logs/make.txt"; exit 2; }
}

build_broker() {
  if [[ -n "${MAGNETAR_BIN:-}" ]]; then
    BIN="$MAGNETAR_BIN"
  else
    log "build magnetar"
    (cd "$REPO" && cargo build -q -p magnetar)
    BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/magnetar"
  fi
}

BROKER_PID=""
WORK=""
stop_broker() {
  if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  [[ -n "$WORK" && -z "${KEEP_WORK:-}" ]] && rm -rf "$WORK/data"
}
trap stop_broker EXIT

start_broker() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/magnetar-librdkafka.XXXXXX")"
  OUT="${OUT:-$WORK}"
  mkdir -p "$OUT/logs"
  log "start magnetar ($BIN), data in $WORK/data"
  # The suite's broker configuration (librdkafka's trivup clusters): auto-created topics have 4
  # partitions (tests produce to partitions 1-3 of a topic they did not create).
  # (The broker refuses MAGNETAR_ variables that are not settings: MAGNETAR_BIN is this script's.)
  env -u MAGNETAR_BIN \
    MAGNETAR_KAFKA__DEFAULT_NUM_PARTITIONS="${MAGNETAR_KAFKA__DEFAULT_NUM_PARTITIONS:-4}" \
    "$BIN" standalone --data-dir "$WORK/data" --bind 127.0.0.1 --kafka-port 0 --pulsar-port 0 \
    --http-port 0 >"$WORK/broker.stdout" 2>"$OUT/broker.stderr" &
  BROKER_PID=$!
  local i
  for i in $(seq 1 300); do
    KAFKA=$(python3 - "$WORK/broker.stdout" <<'EOF' 2>/dev/null || true
import json, sys
for line in open(sys.argv[1]):
    try:
        obj = json.loads(line)
    except ValueError:
        continue
    if isinstance(obj, dict) and obj.get("event") == "listening":
        print(obj["kafka"])
        break
EOF
)
    [[ -n "$KAFKA" ]] && break
    kill -0 "$BROKER_PID" 2>/dev/null || { cat "$OUT/broker.stderr" >&2; exit 2; }
    sleep 0.1
  done
  [[ -n "$KAFKA" ]] || { echo "broker did not print its listening line" >&2; exit 2; }
  log "broker listening: kafka $KAFKA"
}

write_conf() {
  cat >"$SRC/tests/test.conf" <<EOF
# Written by magnetar tests/compat/librdkafka/run.sh
bootstrap.servers=$KAFKA
# One broker on 2 shared cores: give the tests' own timeouts room.
test.timeout.multiplier=2
# Fresh topic names on every run (the broker's data dir is fresh too).
test.topic.random=true
EOF
}

# Every test number the runner knows, from the test table in tests/test.c: "NNNN name" lines,
# one per number (TESTS=NNNN runs every test of that number: "0086 purge_local+purge_remote").
all_tests() {
  grep -oE '_TEST\(([0-9]{4}_[A-Za-z0-9_]+)' "$SRC/tests/test.c" | sed -E 's/_TEST\(([0-9]{4})_(.*)/\1 \2/' |
    sort -u | awk 'BEGIN {last = "-"} $1 "" == last {names = names "+" $2; next}
      last != "-" {print last, names} {last = $1 ""; names = $2} END {if (last != "-") print last, names}'
}

selected_tests() {
  case "$MODE" in
  all) all_tests ;;
  allowlist) grep -vE '^\s*(#|$)' "$HERE/allowlist.txt" | awk '{print $1, $2}' ;;
  selected)
    local t
    for t in ${TESTS//,/ }; do all_tests | awk -v t="$t" '$1 "" == t ""'; done
    ;;
  esac
}

# One test in its own runner process; prints "num<TAB>name<TAB>result<TAB>seconds".
run_one() {
  local num=$1 name=$2 started=$SECONDS rc state result
  set +e
  TESTS="$num" timeout -k 10 "$TEST_WALL_S" ./test-runner -Q >"$OUT/logs/$num.log" 2>&1
  rc=$?
  set -e
  # The runner's summary table: "| NNNN_name | PASSED/FAILED/SKIPPED | time |" (colours off), a
  # line per test of that number: SKIPPED when all were skipped, PASSED when the rest passed.
  state=$(sed -E 's/\x1b\[[0-9;]*m//g' "$OUT/logs/$num.log" |
    awk -v n="${num}_" '$1 == "|" && index($2, n) == 1 {print $4}' | sort -u | tr '\n' ' ')
  if ((rc == 124 || rc == 137)); then
    result=TIMEOUT
  elif ((rc == 0)) && [[ "$state" == "SKIPPED " ]]; then
    result=SKIPPED
  elif ((rc == 0)) && [[ "$state" == *PASSED* && "$state" != *FAILED* ]]; then
    result=PASSED
  else
    result=FAILED
  fi
  kill -0 "$BROKER_PID" 2>/dev/null || result="$result(broker-exited)"
  printf '%s\t%s\t%s\t%s\n' "$num" "$name" "$result" "$((SECONDS - started))"
}

run_tests() {
  cd "$SRC/tests"
  export LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # The broker version the tests gate features on (Magnetar serves Kafka 4.x's API ranges;
  # librdkafka 2.0.2's tests know versions up to 3.x).
  export TEST_KAFKA_VERSION="${TEST_KAFKA_VERSION:-3.4.0}"
  # Tests that create a topic with configs run $KAFKA_PATH/bin/kafka-topics.sh --bootstrap-server
  # $BROKERS: a stand-in on confluent-kafka's AdminClient serves --create (no Kafka install).
  export KAFKA_PATH="$HERE/kafka" BROKERS="$KAFKA"
  local jobs="${JOBS:-1}" num name
  mkdir -p "$OUT/results"
  # JOBS tests at once (each creates its own topics and groups).
  while read -r num name; do
    [[ -z "$num" ]] && continue
    while (($(jobs -rp | wc -l) >= jobs + 1)); do wait -n || true; done
    run_one "$num" "$name" >"$OUT/results/$num" &
  done < <(selected_tests)
  local pid
  for pid in $(jobs -rp); do
    [[ "$pid" == "$BROKER_PID" ]] || wait "$pid" || true
  done
  sort "$OUT"/results/* >"$OUT/summary.tsv" 2>/dev/null || : >"$OUT/summary.tsv"
  cat "$OUT/summary.tsv"
  local passed failed skipped timedout
  passed=$(awk -F'\t' '$3 == "PASSED"' "$OUT/summary.tsv" | wc -l)
  skipped=$(awk -F'\t' '$3 == "SKIPPED"' "$OUT/summary.tsv" | wc -l)
  timedout=$(awk -F'\t' '$3 ~ /^TIMEOUT/' "$OUT/summary.tsv" | wc -l)
  failed=$(awk -F'\t' '$3 !~ /^(PASSED|SKIPPED|TIMEOUT)/' "$OUT/summary.tsv" | wc -l)
  log "passed $passed, failed $failed, timed out $timedout, skipped $skipped; logs in $OUT"
  kill -0 "$BROKER_PID" 2>/dev/null || { echo "the broker exited during the run" >&2; return 1; }
  if ((failed + timedout > 0)) && [[ "$MODE" != all ]]; then
    echo "failed: $(awk -F'\t' '$3 !~ /^(PASSED|SKIPPED)/ {printf "%s ", $1}' "$OUT/summary.tsv")" >&2
    return 1
  fi
}

fetch_source
build_runner
build_broker
start_broker
write_conf
run_tests
