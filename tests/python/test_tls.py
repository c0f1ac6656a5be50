"""TLS (rustls) with real clients: Kafka SSL:// and SASL_SSL:// (confluent-kafka, kafka-python,
kcat), mTLS with the certificate's CN as the role, Pulsar over pulsar+ssl:// (pulsar-client),
HTTPS (requests). A CA, a server certificate for 127.0.0.1/localhost and client certificates are
made per module with trustme.
"""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest
import requests
import trustme
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from conftest import Broker, magnetar_bin
from test_security import (
    Keys,
    auth_error,
    plain_conf,
    produce_and_consume,
    scram_conf,
    topic_name,
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.binary]

HANDSHAKE_TIMEOUT_MS = 2000


class Pki:
    """A CA, the server's certificate and key, two client certificates, and a foreign CA."""

    def __init__(self, d: Path):
        self.dir = d
        ca = trustme.CA(organization_name="Magnetar Test CA")
        self.ca = d / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        server = ca.issue_cert("127.0.0.1", "localhost")
        self.cert = d / "server-chain.pem"
        for i, blob in enumerate(server.cert_chain_pems):
            blob.write_to_path(str(self.cert), append=i > 0)
        self.key = d / "server-key.pem"
        server.private_key_pem.write_to_path(str(self.key))
        self.clients = {}
        for cn in ("app-client", "other-client"):
            c = ca.issue_cert(f"{cn}.example", common_name=cn, organization_name="acme")
            cert, key = d / f"{cn}.pem", d / f"{cn}-key.pem"
            c.cert_chain_pems[0].write_to_path(str(cert))
            c.private_key_pem.write_to_path(str(key))
            self.clients[cn] = (cert, key)
        # An X.509 version 1 client certificate signed by the CA: `openssl x509 -req` without
        # -extfile writes v1 (no extensions), as old PKI tooling does.
        ca_key = d / "ca-key.pem"
        ca.private_key_pem.write_to_path(str(ca_key))
        self.v1 = (d / "v1-client.pem", d / "v1-client-key.pem")
        csr = d / "v1-client.csr"
        for cmd in (
            ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(self.v1[1]), "-subj", "/O=acme/CN=v1-client", "-out", str(csr)],
            ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "2", "-out", str(self.v1[0])],
        ):
            subprocess.run(cmd, check=True, capture_output=True, timeout=30)
        foreign = trustme.CA(organization_name="Someone Else")
        self.foreign_ca = d / "foreign-ca.pem"
        foreign.cert_pem.write_to_path(str(self.foreign_ca))
        rogue = foreign.issue_cert("rogue.example", common_name="app-client")
        self.rogue = (d / "rogue.pem", d / "rogue-key.pem")
        rogue.cert_chain_pems[0].write_to_path(str(self.rogue[0]))
        rogue.private_key_pem.write_to_path(str(self.rogue[1]))


@pytest.fixture(scope="module")
def binary(pytestconfig) -> Path:
    return magnetar_bin(pytestconfig)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def keys(binary, tmp_path_factory) -> Keys:
    return Keys(binary, tmp_path_factory.mktemp("keys"))


def tls_env(pki: Pki, protocol: str = "SSL", require_client_cert: bool = False, **extra) -> dict:
    env = {
        "MAGNETAR_KAFKA__SECURITY_PROTOCOL": protocol,
        "MAGNETAR_TLS__ENABLED": "true",
        "MAGNETAR_TLS__PULSAR_PORT": "0",
        "MAGNETAR_TLS__HTTPS_PORT": "0",
        "MAGNETAR_TLS__CERT_CHAIN_FILE": str(pki.cert),
        "MAGNETAR_TLS__KEY_FILE": str(pki.key),
        "MAGNETAR_TLS__TRUST_CERTS_FILE": str(pki.ca),
        "MAGNETAR_TLS__REQUIRE_CLIENT_CERT": "true" if require_client_cert else "false",
        "MAGNETAR_TLS__HANDSHAKE_TIMEOUT_MS": str(HANDSHAKE_TIMEOUT_MS),
    }
    env.update(extra)
    return env


def start(binary, workdir: Path, env: dict) -> Broker:
    return Broker(binary, workdir, env=env).start()


@pytest.fixture(scope="module")
def ssl_broker(binary, pki, tmp_path_factory):
    """Kafka SSL://, Pulsar TLS and HTTPS; client certificates optional (verified if sent)."""
    b = start(binary, tmp_path_factory.mktemp("ssl-broker"), tls_env(pki))
    yield b
    rc = b.stop(check=False)
    assert rc in (0, None), f"broker exit {rc}"


@pytest.fixture(scope="module")
def mtls_broker(binary, pki, keys, tmp_path_factory):
    """Client certificates required; token auth on for Pulsar's `tls` method."""
    env = tls_env(pki, require_client_cert=True)
    env.update({
        "MAGNETAR_AUTH__ENABLED": "true",
        "MAGNETAR_AUTH__TOKEN_SECRET_KEY": f"file://{keys.secret}",
        "MAGNETAR_LOG": "info",
    })
    b = start(binary, tmp_path_factory.mktemp("mtls-broker"), env)
    yield b
    rc = b.stop(check=False)
    assert rc in (0, None), f"broker exit {rc}"


def ssl_conf(broker, pki: Pki, client: str | None = None, **extra) -> dict:
    conf = {
        "bootstrap.servers": broker.kafka,
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki.ca),
        "ssl.endpoint.identification.algorithm": "https",
    }
    if client:
        cert, key = pki.clients[client]
        conf.update({"ssl.certificate.location": str(cert), "ssl.key.location": str(key)})
    conf.update(extra)
    return conf


def hostport(addr: str):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def api_versions_request() -> bytes:
    body = struct.pack(">hhih", 18, 0, 1, -1)  # ApiVersions v0, correlation 1, null client id
    return struct.pack(">i", len(body)) + body


def wait_stderr(broker: Broker, needle: str, timeout_s: float = 10.0) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if needle in broker.stderr_text():
            return True
        time.sleep(0.1)
    return False


# ------------------------------------------------------------------------------- Kafka SSL


def test_listening_line_names_the_tls_ports(ssl_broker):
    line = ssl_broker.listening
    assert line["kafka_security_protocol"] == "SSL"
    for key in ("pulsar_tls", "https"):
        host, port = hostport(line[key])
        assert port > 0 and host == "127.0.0.1", line
    assert len({line["kafka"], line["pulsar"], line["http"], line["pulsar_tls"], line["https"]}) == 5


def test_confluent_kafka_ssl_produce_consume_and_metadata_port(ssl_broker, pki):
    topic = topic_name("ssl")
    conf = ssl_conf(ssl_broker, pki)
    assert produce_and_consume(conf, topic, 5) == [f"v{i}".encode() for i in range(5)]
    md = AdminClient(conf).list_topics(timeout=20)
    brokers = list(md.brokers.values())
    assert [(b.host, b.port) for b in brokers] == [hostport(ssl_broker.kafka)]


def test_kafka_python_ssl(ssl_broker, pki):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = topic_name("kp-ssl")
    common = dict(bootstrap_servers=ssl_broker.kafka, security_protocol="SSL", ssl_cafile=str(pki.ca))
    p = KafkaProducer(**common)
    p.send(topic, b"over-tls").get(timeout=30)
    p.close()
    c = KafkaConsumer(**common, consumer_timeout_ms=10000, auto_offset_reset="earliest")
    c.assign([TopicPartition(topic, 0)])
    assert [m.value for m in c][:1] == [b"over-tls"]
    c.close()


def test_kcat_ssl(ssl_broker, pki):
    topic = topic_name("kcat-ssl")
    base = ["kcat", "-b", ssl_broker.kafka, "-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki.ca}"]
    p = subprocess.run(base + ["-P", "-t", topic], input=b"a\nb\n", capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(base + ["-C", "-t", topic, "-o", "beginning", "-e", "-c", "2"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [b"a", b"b"]


def test_optional_client_certificate_is_accepted(ssl_broker, pki):
    conf = ssl_conf(ssl_broker, pki, client="app-client")
    assert produce_and_consume(conf, topic_name("ssl-cert"), 1) == [b"v0"]


def test_client_that_does_not_trust_the_ca_fails_the_handshake(ssl_broker, pki):
    err = auth_error(ssl_conf(ssl_broker, pki, **{"ssl.ca.location": str(pki.foreign_ca)}))
    assert err.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN), err
    assert "certificate verify failed" in err.str() or "SSL" in err.str(), err.str()
    # And the Python ssl module with the default trust store refuses the certificate too.
    host, port = hostport(ssl_broker.kafka)
    with socket.create_connection((host, port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="localhost")


def test_plaintext_bytes_on_tls_ports_are_refused_and_the_broker_keeps_serving(ssl_broker, pki):
    for addr in (ssl_broker.kafka, ssl_broker.listening["pulsar_tls"], ssl_broker.listening["https"]):
        with socket.create_connection(hostport(addr), timeout=10) as s:
            s.sendall(api_versions_request() if addr == ssl_broker.kafka else b"GET /health HTTP/1.1\r\n\r\n")
            got = b""
            try:
                while len(got) < 64:
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    got += chunk
            except (ConnectionResetError, socket.timeout):
                pass
            # Nothing but (at most) a TLS alert record (content type 21) comes back.
            assert got == b"" or got[0] == 0x15, (addr, got)
    assert produce_and_consume(ssl_conf(ssl_broker, pki), topic_name("after-garbage"), 1) == [b"v0"]


def test_a_stalled_handshake_neither_blocks_accept_nor_lives_forever(ssl_broker, pki):
    stalled = socket.create_connection(hostport(ssl_broker.kafka), timeout=10)
    try:
        started = time.time()
        # Served while the stalled connection holds its handshake open.
        assert produce_and_consume(ssl_conf(ssl_broker, pki), topic_name("stall"), 1) == [b"v0"]
        stalled.settimeout(HANDSHAKE_TIMEOUT_MS / 1000 + 8)
        assert stalled.recv(16) == b""  # closed by the handshake timeout
        assert time.time() - started >= HANDSHAKE_TIMEOUT_MS / 1000 - 0.5
    finally:
        stalled.close()


# ------------------------------------------------------------------------------- SASL_SSL


def test_sasl_ssl_plain_token_and_scram(binary, pki, keys, tmp_path):
    env = tls_env(pki, protocol="SASL_SSL")
    env.update({
        "MAGNETAR_AUTH__ENABLED": "true",
        "MAGNETAR_AUTH__TOKEN_SECRET_KEY": f"file://{keys.secret}",
        "MAGNETAR_AUTH__SUPERUSER_ROLES": "admin",
        "MAGNETAR_AUTH__FAILED_AUTHENTICATION_DELAY_MS": "100",
    })
    b = start(binary, tmp_path / "sasl-ssl", env)
    try:
        tls = {"security.protocol": "SASL_SSL", "ssl.ca.location": str(pki.ca)}
        conf = plain_conf(b, "public", keys.token("alice"), **tls)
        assert produce_and_consume(conf, topic_name("sasl-ssl"), 2) == [b"v0", b"v1"]
        bad = plain_conf(b, "public", keys.token("alice", key=keys.other), **tls)
        assert auth_error(bad).code() == KafkaError._AUTHENTICATION
        # A superuser (token over SASL_SSL) creates a SCRAM user, who then connects with SCRAM.
        admin = AdminClient(plain_conf(b, "public", keys.token("admin"), **tls))
        from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
        futs = admin.alter_user_scram_credentials([
            UserScramCredentialUpsertion("tls-user", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"pw")])
        for f in futs.values():
            f.result(timeout=20)
        sconf = {**scram_conf(b, "SCRAM-SHA-512", "tls-user", "pw"), **tls}
        assert produce_and_consume(sconf, topic_name("scram-ssl"), 1) == [b"v0"]
        # Without TLS the SASL_SSL port is not spoken to.
        plain = plain_conf(b, "public", keys.token("alice"))
        err = auth_error(plain)
        assert err.code() in (KafkaError._TRANSPORT, KafkaError._AUTHENTICATION, KafkaError._ALL_BROKERS_DOWN), err
    finally:
        rc = b.stop(check=False)
        assert rc in (0, None)


# ------------------------------------------------------------------------------- mTLS


def test_mtls_kafka_principal_is_the_certificate_cn(mtls_broker, pki):
    conf = ssl_conf(mtls_broker, pki, client="app-client")
    assert produce_and_consume(conf, topic_name("mtls"), 1) == [b"v0"]
    assert wait_stderr(mtls_broker, 'role=app-client'), "no principal logged for the client certificate"


def test_mtls_client_without_or_with_a_foreign_certificate_is_refused(mtls_broker, pki):
    err = auth_error(ssl_conf(mtls_broker, pki))
    assert err.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN), err
    rogue = ssl_conf(mtls_broker, pki, **{"ssl.certificate.location": str(pki.rogue[0]),
                                         "ssl.key.location": str(pki.rogue[1])})
    err = auth_error(rogue)
    assert err.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN), err
    # HTTPS without a certificate is refused too; with one it answers.
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(f"https://{mtls_broker.listening['https']}/health", verify=str(pki.ca), timeout=10)
    r = requests.get(f"https://{mtls_broker.listening['https']}/health", verify=str(pki.ca),
                     cert=tuple(map(str, pki.clients["app-client"])), timeout=10)
    assert r.status_code == 200
    # Still serving a good client.
    assert produce_and_consume(ssl_conf(mtls_broker, pki, client="other-client"), topic_name("mtls2"), 1) == [b"v0"]


def test_pulsar_tls_auth_role_from_certificate(mtls_broker, pki):
    import pulsar

    cert, key = pki.clients["other-client"]
    client = pulsar.Client(
        f"pulsar+ssl://{mtls_broker.listening['pulsar_tls']}",
        tls_trust_certs_file_path=str(pki.ca),
        tls_validate_hostname=False,
        authentication=pulsar.AuthenticationTLS(str(cert), str(key)),
        operation_timeout_seconds=20,
    )
    try:
        topic = f"persistent://public/default/{topic_name('ptls')}"
        consumer = client.subscribe(topic, "s")
        producer = client.create_producer(topic)
        producer.send(b"pulsar-over-tls")
        assert consumer.receive(timeout_millis=20000).data() == b"pulsar-over-tls"
    finally:
        client.close()
    assert wait_stderr(mtls_broker, "role=other-client"), "pulsar tls role not logged"


def test_x509_v1_client_certificate_is_refused_with_a_clear_reason(mtls_broker, pki):
    import pulsar

    text = subprocess.run(["openssl", "x509", "-in", str(pki.v1[0]), "-noout", "-text"], capture_output=True,
                          text=True, check=True, timeout=30).stdout
    assert "Version: 1 (0x0)" in text, text
    cert, key = pki.v1
    client = pulsar.Client(
        f"pulsar+ssl://{mtls_broker.listening['pulsar_tls']}",
        tls_trust_certs_file_path=str(pki.ca),
        tls_validate_hostname=False,
        authentication=pulsar.AuthenticationTLS(str(cert), str(key)),
        operation_timeout_seconds=5,
    )
    try:
        with pytest.raises(Exception):
            client.create_producer(f"persistent://public/default/{topic_name('v1')}")
    finally:
        client.close()
    assert wait_stderr(mtls_broker, "X.509 version 1"), mtls_broker.stderr_text()[-2000:]
    # The same refusal on the Kafka SSL listener.
    err = auth_error(ssl_conf(mtls_broker, pki, **{"ssl.certificate.location": str(cert),
                                                   "ssl.key.location": str(key)}))
    assert err is not None


# ------------------------------------------------------------------------------- Pulsar, HTTPS


def test_pulsar_client_over_pulsar_ssl(ssl_broker, pki):
    import pulsar

    client = pulsar.Client(
        f"pulsar+ssl://{ssl_broker.listening['pulsar_tls']}",
        tls_trust_certs_file_path=str(pki.ca),
        tls_validate_hostname=True,
        operation_timeout_seconds=20,
    )
    try:
        topic = f"persistent://public/default/{topic_name('pssl')}"
        consumer = client.subscribe(topic, "s")
        producer = client.create_producer(topic)
        for i in range(3):
            producer.send(f"m{i}".encode())
        got = [consumer.receive(timeout_millis=20000).data() for _ in range(3)]
        assert got == [b"m0", b"m1", b"m2"]
    finally:
        client.close()


def test_pulsar_client_not_trusting_the_ca_fails(ssl_broker, pki):
    import pulsar

    client = pulsar.Client(
        f"pulsar+ssl://{ssl_broker.listening['pulsar_tls']}",
        tls_trust_certs_file_path=str(pki.foreign_ca),
        operation_timeout_seconds=5,
    )
    try:
        with pytest.raises(Exception):
            client.create_producer(f"persistent://public/default/{topic_name('untrusted')}")
    finally:
        client.close()


def test_https_with_cacert(ssl_broker, pki):
    r = requests.get(f"https://{ssl_broker.listening['https']}/health", verify=str(pki.ca), timeout=10)
    assert r.status_code == 200
    host, port = hostport(ssl_broker.listening["https"])
    r = requests.get(f"https://localhost:{port}/admin/v2/clusters", verify=str(pki.ca), timeout=10)
    assert r.status_code == 200, r.text
    p = subprocess.run(["curl", "-sS", "--cacert", str(pki.ca), f"https://{ssl_broker.listening['https']}/health"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{ssl_broker.listening['https']}/health", verify=str(pki.foreign_ca), timeout=10)
    # The plain HTTP port still answers in plain HTTP.
    assert requests.get(f"http://{ssl_broker.http}/health", timeout=10).status_code == 200


# ------------------------------------------------------------------------------- startup errors


@pytest.mark.parametrize("case", ["missing", "garbage-cert", "garbage-key", "mismatched-key"])
def test_bad_pem_files_stop_startup_with_exit_2(binary, pki, tmp_path, case):
    cert, key = pki.cert, pki.key
    if case == "missing":
        cert = tmp_path / "nope.pem"
    elif case == "garbage-cert":
        cert = tmp_path / "garbage.pem"
        cert.write_text("this is not a certificate\n")
    elif case == "garbage-key":
        key = tmp_path / "garbage-key.pem"
        key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    else:
        key = pki.clients["app-client"][1]
    env = {**tls_env(pki), "MAGNETAR_TLS__CERT_CHAIN_FILE": str(cert), "MAGNETAR_TLS__KEY_FILE": str(key)}
    b = Broker(binary, tmp_path / "b", env=env)
    p = subprocess.run(b.command(), env=b.process_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stderr)
    errors = [line for line in p.stderr.splitlines() if "configuration error" in line]
    assert len(errors) == 1 and "tls:" in errors[0], p.stderr
