"""`magnetar standalone`: CLI, config, listeners, lifecycle."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import Broker, BrokerStartError, free_port, wait_tcp

pytestmark = [pytest.mark.binary, pytest.mark.timeout(90)]

FLAGS = ["--config", "--data-dir", "--bind", "--kafka-port", "--pulsar-port", "--http-port", "--advertised-host"]


def run_to_exit(cmd, timeout_s=20.0, env=None, cwd=None):
    """Run a command that must exit by itself; returns (rc, stdout, stderr)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MAGNETAR_")}
    full_env.update(env or {})
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout_s, env=full_env, cwd=cwd,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"{cmd[:2]} did not exit within {timeout_s}s; stderr: "
            f"{(e.stderr or b'').decode(errors='replace')[-2000:]}"
        ) from None
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def assert_clean_failure(rc, stdout, stderr):
    assert rc != 0, f"expected a non-zero exit; stdout={stdout!r} stderr={stderr[-2000:]!r}"
    assert "panicked" not in stderr, f"panic instead of an error message:\n{stderr[-3000:]}"
    assert "RUST_BACKTRACE" not in stderr, stderr[-3000:]
    assert '"event":"listening"' not in stdout.replace(" ", ""), "printed a listening line but failed"


def base_cmd(binary, data_dir, kafka=0, pulsar=0, http=0):
    return [str(binary), "standalone", "--data-dir", str(data_dir), "--bind", "127.0.0.1",
            "--kafka-port", str(kafka), "--pulsar-port", str(pulsar), "--http-port", str(http)]


# ------------------------------------------------------------------------------------ HTTP


def test_health_and_version(broker):
    r = requests.get(f"http://{broker.http}/health", timeout=5)
    assert r.status_code == 200
    r = requests.get(f"http://{broker.http}/version", timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body.get("version"), str) and body["version"], body


def test_listening_line_addresses(broker):
    # The harness turns the schema registry listener on (--schema-registry-port 0).
    for key in ("kafka", "pulsar", "http", "schema_registry"):
        host, port = broker.listening[key].rsplit(":", 1)
        assert host == "127.0.0.1", broker.listening
        assert 0 < int(port) < 65536
    ports = broker.ports()
    assert len(set(ports.values())) == 4, ports
    assert wait_tcp("127.0.0.1", ports["kafka"], 5)
    # exactly one listening line on stdout
    lines = [l for l in broker.stdout_path.read_text().splitlines() if l.strip()]
    assert sum(1 for l in lines if '"listening"' in l) == 1, lines


# ------------------------------------------------------------------------------------ CLI


def test_help_lists_every_flag(binary):
    rc, out, err = run_to_exit([str(binary), "standalone", "--help"], timeout_s=10)
    assert rc == 0, err
    for flag in FLAGS:
        assert flag in out, f"{flag} missing from `magnetar standalone --help`:\n{out}"


def test_unknown_flag_fails(binary, tmp_path):
    rc, out, err = run_to_exit(base_cmd(binary, tmp_path / "d") + ["--no-such-flag"], timeout_s=10)
    assert_clean_failure(rc, out, err)
    assert "--no-such-flag" in err


def test_config_typo_fails_naming_the_key(binary, tmp_path):
    cfg = tmp_path / "magnetar.toml"
    cfg.write_text("version = 1\n\n[kafka]\nallow_auto_topic_creaton = false\n")
    rc, out, err = run_to_exit(base_cmd(binary, tmp_path / "d") + ["--config", str(cfg)], timeout_s=15)
    assert_clean_failure(rc, out, err)
    naming = [l for l in err.splitlines() if "allow_auto_topic_creaton" in l]
    assert len(naming) == 1, f"expected one line naming the unknown key, stderr:\n{err[-3000:]}"


def test_invalid_env_override_fails(binary, tmp_path):
    rc, out, err = run_to_exit(base_cmd(binary, tmp_path / "d"), timeout_s=15,
                               env={"MAGNETAR_KAFKA__DEFAULT_NUM_PARTITIONS": "not-a-number"})
    assert_clean_failure(rc, out, err)
    assert "default_num_partitions" in err.lower(), err[-3000:]


@pytest.mark.parametrize("listener", ["kafka", "pulsar", "http"])
def test_port_in_use_fails_clearly(binary, tmp_path, listener):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        ports = {"kafka": 0, "pulsar": 0, "http": 0, listener: port}
        rc, out, err = run_to_exit(base_cmd(binary, tmp_path / "d", **ports), timeout_s=20)
    assert_clean_failure(rc, out, err)
    low = err.lower()
    assert str(port) in err, f"error does not name port {port}:\n{err[-2000:]}"
    assert "in use" in low or "addrinuse" in low or "address already" in low, err[-2000:]


def test_second_broker_on_same_data_dir_refuses(broker_factory, binary, tmp_path):
    first = broker_factory()
    rc, out, err = run_to_exit(base_cmd(binary, first.data_dir), timeout_s=20)
    assert_clean_failure(rc, out, err)
    assert "lock" in err.lower() or str(first.data_dir) in err, err[-2000:]
    # the first broker is unharmed
    assert first.alive()
    assert requests.get(f"http://{first.http}/health", timeout=5).status_code == 200


# ------------------------------------------------------------------------------------ lifecycle


def test_sigterm_exits_zero(broker):
    # with an idle client connection open, shutdown must still complete
    s = socket.create_connection(tuple_addr(broker.kafka), timeout=5)
    try:
        t0 = time.monotonic()
        rc = broker.stop(check=False, timeout_s=15)
        assert rc == 0, f"exit code {rc}\n{broker.stderr_text()[-2000:]}"
        assert time.monotonic() - t0 < 15
    finally:
        s.close()


def test_restart_same_ports_and_data_dir(broker):
    ports = broker.ports()
    broker.restart(same_ports=True)
    assert broker.ports() == ports
    assert requests.get(f"http://{broker.http}/health", timeout=5).status_code == 200
    broker.restart()
    assert requests.get(f"http://{broker.http}/health", timeout=5).status_code == 200


def test_kill9_then_restart(broker):
    broker.kill9()
    broker.start()
    assert requests.get(f"http://{broker.http}/health", timeout=5).status_code == 200


def test_pulsar_port_accepts_tcp_and_closes_on_garbage(broker):
    s = socket.create_connection(tuple_addr(broker.pulsar), timeout=5)
    try:
        s.settimeout(10)
        # a frame of absurd size: the broker must close without allocating it
        try:
            s.sendall(b"\xff\xff\xff\xf0" + b"garbage!" * 4)
        except OSError:
            return  # already closed by the broker: fine
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        except socket.timeout:
            pytest.fail("pulsar port kept a connection open after a garbage frame for 10s")
        # either EOF, or an error frame followed by EOF
        for _ in range(10):
            if not data:
                break
            try:
                data = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                break
        assert not data
    finally:
        s.close()
    assert broker.alive()
    assert requests.get(f"http://{broker.http}/health", timeout=5).status_code == 200


def test_kafka_port_survives_garbage_frame(broker):
    s = socket.create_connection(tuple_addr(broker.kafka), timeout=5)
    try:
        s.settimeout(10)
        s.sendall(b"\x7f\xff\xff\xff" + b"\x00" * 16)  # 2 GiB frame header
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        except socket.timeout:
            pytest.fail("kafka port kept a connection open after a 2 GiB frame header for 10s")
        assert data == b""
    finally:
        s.close()
    assert broker.alive()
    assert requests.get(f"http://{broker.http}/health", timeout=5).status_code == 200


# ------------------------------------------------------------------------------------ KoP config


def test_kop_properties_config(broker_factory, tmp_path):
    kafka, web, pulsar = free_port(), free_port(), free_port()
    assert len({kafka, web, pulsar}) == 3
    conf = tmp_path / "standalone.conf"
    conf.write_text(
        "# KoP-style standalone.conf\n"
        "messagingProtocols=kafka\n"
        f"kafkaListeners=PLAINTEXT://127.0.0.1:{kafka}\n"
        f"webServicePort={web}\n"
        f"brokerServicePort={pulsar}\n"
        "kafkaTenant=public\n"
        "kafkaNamespace=default\n"
        "managedLedgerDefaultEnsembleSize=1\n"
        "managedLedgerDefaultWriteQuorum=1\n"
        "managedLedgerDefaultAckQuorum=1\n"
    )
    b = broker_factory(extra_args=["--config", str(conf)], start=False)
    # --bind keeps the Pulsar and HTTP listeners on loopback too
    cmd = [str(b.binary), "standalone", "--config", str(conf), "--data-dir", str(b.data_dir),
           "--bind", "127.0.0.1"]
    b.start(cmd=cmd)
    assert b.kafka == f"127.0.0.1:{kafka}"
    assert b.http == f"127.0.0.1:{web}"
    assert b.pulsar == f"127.0.0.1:{pulsar}"
    unknown = ["managedLedgerDefaultEnsembleSize", "managedLedgerDefaultWriteQuorum",
               "managedLedgerDefaultAckQuorum"]
    err = b.stderr_text()
    lines = [l for l in err.splitlines() if unknown[0] in l]
    assert len(lines) == 1, f"expected one warning line naming the unused keys:\n{err[-3000:]}"
    for key in unknown:
        assert key in lines[0], f"{key} not in warning line {lines[0]!r}"
    for key in ("kafkaListeners", "webServicePort", "brokerServicePort"):
        assert key not in lines[0], f"used key {key} listed as unused: {lines[0]!r}"
    # and the Kafka side works
    from kafka_util import make_records, produce, unique_topic
    assert produce(b.kafka, unique_topic("kop"), make_records(2), partition=0) == [(0, 0), (0, 1)]


def tuple_addr(addr: str):
    host, port = addr.rsplit(":", 1)
    return host, int(port)
