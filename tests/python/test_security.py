"""Authentication with real clients: Pulsar-style JWT tokens over Kafka SASL (PLAIN the KoP way,
OAUTHBEARER), SCRAM-SHA-256/512 managed through Kafka's AlterUserScramCredentials, the legacy
SASL framing, KIP-368 session lifetime, refusals, and the `magnetar tokens` CLI."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from conftest import Broker, magnetar_bin, wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.binary]

FAILED_DELAY_MS = 100


# ------------------------------------------------------------------------------- helpers


def cli(binary: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([str(binary), "tokens", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, f"magnetar tokens {args}: {p.stderr}"
    return p


class Keys:
    def __init__(self, binary: Path, workdir: Path):
        self.binary = binary
        self.secret = workdir / "secret.key"
        cli(binary, "create-secret-key", "--output", str(self.secret))
        self.other = workdir / "other.key"
        cli(binary, "create-secret-key", "--output", str(self.other))

    def token(self, role: str, expiry: str | None = None, key: Path | None = None) -> str:
        args = ["create", "--secret-key", f"file://{key or self.secret}", "--subject", role]
        if expiry:
            args += ["--expiry-time", expiry]
        return cli(self.binary, *args).stdout.strip()


@pytest.fixture(scope="module")
def binary(pytestconfig) -> Path:
    return magnetar_bin(pytestconfig)


@pytest.fixture(scope="module")
def keys(binary, tmp_path_factory) -> Keys:
    k = Keys(binary, tmp_path_factory.mktemp("keys"))
    ADMIN_TOKEN["admin"] = k.token("admin")
    return k


def sasl_env(keys: Keys) -> dict:
    return {
        "MAGNETAR_AUTH__ENABLED": "true",
        "MAGNETAR_AUTH__TOKEN_SECRET_KEY": f"file://{keys.secret}",
        "MAGNETAR_AUTH__SUPERUSER_ROLES": "admin",
        "MAGNETAR_AUTH__FAILED_AUTHENTICATION_DELAY_MS": str(FAILED_DELAY_MS),
        "MAGNETAR_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    }


@pytest.fixture(scope="module")
def sasl_broker(binary, keys, tmp_path_factory):
    b = Broker(binary, tmp_path_factory.mktemp("sasl-broker"), env=sasl_env(keys))
    b.start()
    yield b
    rc = b.stop(check=False)
    assert rc in (0, None), f"broker exit {rc}"


def plain_conf(broker, username: str, token: str, **extra) -> dict:
    conf = {
        "bootstrap.servers": broker.kafka,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": username,
        "sasl.password": f"token:{token}",
    }
    conf.update(extra)
    return conf


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def produce_and_consume(conf: dict, topic: str, n: int = 3) -> list:
    p = Producer(conf)
    errors = []
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0
    assert errors == []
    c = Consumer({**conf, "group.id": topic_name("g"), "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 30
    while len(got) < n and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    return got


def auth_error(conf: dict, timeout_s: float = 20.0) -> KafkaError:
    """The first error a client reports while trying to authenticate."""
    errors = []
    a = AdminClient({**conf, "error_cb": errors.append, "reconnect.backoff.ms": 5000})
    deadline = time.time() + timeout_s
    while not errors and time.time() < deadline:
        try:
            a.list_topics(timeout=1)
        except KafkaException:
            pass
        a.poll(0.2)
    assert errors, "no error reported"
    return errors[0]


ADMIN_TOKEN: dict = {}


def admin_http(broker, method: str, path: str, token: str | None = None, **kw):
    """The admin API as a superuser (the `admin` role), or with the given token ("" = none)."""
    token = ADMIN_TOKEN["admin"] if token is None else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, f"http://{broker.http}/admin/v2/{path}", timeout=10, headers=headers, **kw)


# raw wire helpers ----------------------------------------------------------------------


def connect(broker) -> socket.socket:
    host, port = broker.kafka.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.settimeout(10)
    return s


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def send_request(s, api_key: int, version: int, body: bytes, corr: int = 7) -> None:
    client = b"security-test"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    frame = header + body
    s.sendall(struct.pack(">i", len(frame)) + frame)


def read_response(s, corr: int = 7) -> bytes:
    (n,) = struct.unpack(">i", recv_exact(s, 4))
    body = recv_exact(s, n)
    assert struct.unpack(">i", body[:4])[0] == corr
    return body[4:]


def string(v: bytes) -> bytes:
    return struct.pack(">h", len(v)) + v


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def api_versions(s) -> dict:
    send_request(s, 18, 0, b"")
    body = read_response(s)
    (err, count) = struct.unpack(">hi", body[:6])
    assert err == 0
    return {k: (lo, hi) for k, lo, hi in (struct.unpack(">hhh", body[6 + 6 * i: 12 + 6 * i]) for i in range(count))}


def sasl_handshake(s, mechanism: bytes, version: int = 1):
    send_request(s, 17, version, string(mechanism))
    body = read_response(s)
    (err, count) = struct.unpack(">hi", body[:6])
    mechanisms, pos = [], 6
    for _ in range(count):
        (ln,) = struct.unpack(">h", body[pos:pos + 2])
        mechanisms.append(body[pos + 2:pos + 2 + ln].decode())
        pos += 2 + ln
    return err, mechanisms


def sasl_authenticate(s, auth_bytes: bytes, version: int = 1):
    send_request(s, 36, version, struct.pack(">i", len(auth_bytes)) + auth_bytes)
    body = read_response(s)
    (err, mlen) = struct.unpack(">hh", body[:4])
    pos = 4
    message = None
    if mlen >= 0:
        message = body[pos:pos + mlen].decode()
        pos += mlen
    (blen,) = struct.unpack(">i", body[pos:pos + 4])
    pos += 4 + max(blen, 0)
    lifetime = struct.unpack(">q", body[pos:pos + 8])[0] if version >= 1 else None
    return err, message, lifetime


def metadata_v0(s) -> bytes:
    send_request(s, 3, 0, struct.pack(">i", 0))
    return read_response(s)


# ---------------------------------------------------------------------------- the CLI


def test_tokens_cli_create_show_validate(binary, keys, tmp_path):
    token = keys.token("alice", expiry="1h")
    shown = cli(binary, "show", "-i", token).stdout
    assert '"alg":"HS256"' in shown and '"sub":"alice"' in shown
    ok = cli(binary, "validate", "-i", token, "--secret-key", f"file://{keys.secret}")
    assert '"sub":"alice"' in ok.stdout
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
    bad = cli(binary, "validate", "-i", tampered, "--secret-key", f"file://{keys.secret}", check=False)
    assert bad.returncode != 0 and "signature" in bad.stderr
    other = cli(binary, "validate", "-i", token, "--secret-key", f"file://{keys.other}", check=False)
    assert other.returncode != 0
    (tmp_path / "tok").write_text(token)
    assert cli(binary, "validate", "-f", str(tmp_path / "tok"), "--secret-key", str(keys.secret)).returncode == 0
    for alg in ("RS256", "ES256"):
        priv, pub = tmp_path / f"{alg}.key", tmp_path / f"{alg}.pub"
        cli(binary, "create-key-pair", "--algorithm", alg, "--output-private-key", str(priv),
            "--output-public-key", str(pub))
        t = cli(binary, "create", "--private-key", f"file://{priv}", "--subject", "bob").stdout.strip()
        assert f'"alg":"{alg}"' in cli(binary, "show", "-i", t).stdout
        assert '"sub":"bob"' in cli(binary, "validate", "-i", t, "--public-key", f"file://{pub}").stdout
        assert cli(binary, "validate", "-i", t, "--secret-key", f"file://{keys.secret}", check=False).returncode != 0
    b64 = cli(binary, "create-secret-key", "--base64").stdout.strip()
    t = cli(binary, "create", "--secret-key", f"data:;base64,{b64}", "--subject", "carol").stdout.strip()
    assert cli(binary, "validate", "-i", t, "--secret-key", f"data:;base64,{b64}").returncode == 0


def test_auth_enabled_without_key_exits_2(binary, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGNETAR_")}
    env.update({"MAGNETAR_AUTH__ENABLED": "true", "MAGNETAR_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    p = subprocess.run([str(binary), "standalone", "--data-dir", str(tmp_path / "d"), "--kafka-port", "0",
                        "--pulsar-port", "0", "--http-port", "0"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2, p.stderr
    assert "tokenSecretKey" in p.stderr and p.stderr.count("\n") <= 2, p.stderr


# --------------------------------------------------------------------- SASL with real clients


def test_plain_with_token_and_tenant_scope(sasl_broker, keys):
    token = keys.token("alice")
    topic = topic_name("plain")
    assert produce_and_consume(plain_conf(sasl_broker, "public", token), topic) == [b"v0", b"v1", b"v2"]
    # The PLAIN username scopes bare topic names: tenant -> tenant/<kafka.namespace>.
    assert admin_http(sasl_broker, "PUT", "tenants/acme").status_code in (200, 204)
    assert admin_http(sasl_broker, "PUT", "namespaces/acme/default").status_code in (200, 204)
    assert admin_http(sasl_broker, "PUT", "namespaces/acme/sales").status_code in (200, 204)
    scoped = topic_name("orders")
    assert produce_and_consume(plain_conf(sasl_broker, "acme", token), scoped, 2) == [b"v0", b"v1"]
    listed = admin_http(sasl_broker, "GET", "persistent/acme/default").json()
    assert any(scoped in t for t in listed), listed
    in_ns = topic_name("leads")
    assert produce_and_consume(plain_conf(sasl_broker, "acme/sales", token), in_ns, 1) == [b"v0"]
    assert any(in_ns in t for t in admin_http(sasl_broker, "GET", "persistent/acme/sales").json())
    assert not any(in_ns in t for t in admin_http(sasl_broker, "GET", "persistent/public/default").json())


def test_oauthbearer_token_from_oauth_cb(sasl_broker, keys):
    calls = []

    def oauth_cb(config):
        calls.append(config)
        return keys.token("bob", expiry="1h"), time.time() + 3600

    conf = {
        "bootstrap.servers": sasl_broker.kafka,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER",
        "oauth_cb": oauth_cb,
    }
    topic = topic_name("oauth")
    assert produce_and_consume(conf, topic, 2) == [b"v0", b"v1"]
    assert calls


def test_oauthbearer_bad_token_is_refused(sasl_broker, keys):
    conf = {
        "bootstrap.servers": sasl_broker.kafka,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER",
        "oauth_cb": lambda _c: (keys.token("bob", key=keys.other), time.time() + 3600),
    }
    err = auth_error(conf)
    assert err.code() == KafkaError._AUTHENTICATION, err
    assert "invalid_token" in err.str() or "signature" in err.str(), err.str()


def create_scram_user(broker, keys, user: str, password: str) -> None:
    a = AdminClient(plain_conf(broker, "public", keys.token("admin")))
    futs = a.alter_user_scram_credentials([
        UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), password.encode()),
        UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode()),
    ])
    for f in futs.values():
        f.result(timeout=20)
    described = a.describe_user_scram_credentials([user])[user].result(timeout=20)
    infos = sorted((i.mechanism, i.iterations) for i in described.scram_credential_infos)
    assert infos == [(ScramMechanism.SCRAM_SHA_256, 4096), (ScramMechanism.SCRAM_SHA_512, 8192)], infos


def scram_conf(broker, mechanism: str, user: str, password: str) -> dict:
    return {
        "bootstrap.servers": broker.kafka,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def test_scram_users_via_kafka_admin_api(sasl_broker, keys):
    create_scram_user(sasl_broker, keys, "svc-user", "s3cret-pw")
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        conf = scram_conf(sasl_broker, mechanism, "svc-user", "s3cret-pw")
        assert produce_and_consume(conf, topic_name("scram"), 1) == [b"v0"]
        err = auth_error(scram_conf(sasl_broker, mechanism, "svc-user", "wrong"))
        assert err.code() == KafkaError._AUTHENTICATION, err
        assert "invalid credentials" in err.str(), err.str()
    # Only superusers manage credentials.
    a = AdminClient(plain_conf(sasl_broker, "public", keys.token("alice")))
    fut = a.alter_user_scram_credentials([
        UserScramCredentialUpsertion("x", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pw")])["x"]
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=20)
    assert ei.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED


def test_kafka_python_plain_and_scram(sasl_broker, keys):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    create_scram_user(sasl_broker, keys, "kp-user", "kp-pass")
    settings = [
        dict(sasl_mechanism="PLAIN", sasl_plain_username="public",
             sasl_plain_password=f"token:{keys.token('carol')}"),
        dict(sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="kp-user", sasl_plain_password="kp-pass"),
        dict(sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="kp-user", sasl_plain_password="kp-pass"),
    ]
    for s in settings:
        topic = topic_name("kp")
        common = dict(bootstrap_servers=sasl_broker.kafka, security_protocol="SASL_PLAINTEXT", **s)
        p = KafkaProducer(**common)
        p.send(topic, b"hello").get(timeout=30)
        p.close()
        c = KafkaConsumer(**common, consumer_timeout_ms=10000, auto_offset_reset="earliest")
        c.assign([TopicPartition(topic, 0)])
        assert [m.value for m in c][:1] == [b"hello"], s["sasl_mechanism"]
        c.close()


def test_refusals_keep_the_broker_serving(sasl_broker, keys):
    expired = keys.token("alice", expiry="1s")
    time.sleep(2.1)  # time is the subject: the token's expiry on the real clock
    cases = [
        (plain_conf(sasl_broker, "public", expired), "token expired"),
        (plain_conf(sasl_broker, "public", keys.token("alice", key=keys.other)), "signature"),
        ({**plain_conf(sasl_broker, "public", "x"), "sasl.password": "not-a-token"}, "token:<jwt>"),
    ]
    for conf, needle in cases:
        t0 = time.time()
        err = auth_error(conf)
        assert err.code() == KafkaError._AUTHENTICATION, err
        assert needle in err.str(), err.str()
        assert time.time() - t0 < 15
    # The broker still serves a good client.
    assert produce_and_consume(plain_conf(sasl_broker, "public", keys.token("alice")), topic_name("after"), 1) == [b"v0"]


def test_unknown_mechanism_and_requests_before_authentication(sasl_broker):
    with connect(sasl_broker) as s:
        versions = api_versions(s)
        assert versions[17] == (0, 1) and versions[36] == (0, 2), versions
        err, mechanisms = sasl_handshake(s, b"GSSAPI")
        assert err == 33, err  # UNSUPPORTED_SASL_MECHANISM
        assert mechanisms == ["PLAIN", "OAUTHBEARER", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        assert closed(s)
    with connect(sasl_broker) as s:
        send_request(s, 3, 0, struct.pack(">i", 0))  # Metadata before authenticating
        assert closed(s)
    with connect(sasl_broker) as s:
        assert sasl_handshake(s, b"PLAIN") == (0, ["PLAIN", "OAUTHBEARER", "SCRAM-SHA-256", "SCRAM-SHA-512"])
        send_request(s, 3, 0, struct.pack(">i", 0))  # Metadata between handshake and authenticate
        assert closed(s)


def test_failed_attempt_is_answered_then_closed_after_the_delay(sasl_broker):
    with connect(sasl_broker) as s:
        assert sasl_handshake(s, b"PLAIN")[0] == 0
        t0 = time.time()
        err, message, _ = sasl_authenticate(s, b"\0public\0token:garbage")
        assert err == 58 and "invalid token" in message, (err, message)  # SASL_AUTHENTICATION_FAILED
        assert closed(s)
        assert time.time() - t0 >= FAILED_DELAY_MS / 1000 * 0.9


def test_legacy_v0_framing_and_session_lifetime(sasl_broker, keys):
    # SaslHandshake v0, then the raw PLAIN token and a raw (empty) reply; then Kafka requests.
    with connect(sasl_broker) as s:
        assert sasl_handshake(s, b"PLAIN", version=0)[0] == 0
        token = b"\0public\0token:" + keys.token("dave").encode()
        s.sendall(struct.pack(">i", len(token)) + token)
        assert recv_exact(s, 4) == b"\0\0\0\0"
        assert metadata_v0(s)
    # KIP-368: the session lifetime is the token's remaining life; after it, requests close.
    with connect(sasl_broker) as s:
        assert sasl_handshake(s, b"PLAIN")[0] == 0
        short = keys.token("erin", expiry="3s")
        err, _, lifetime = sasl_authenticate(s, b"\0public\0token:" + short.encode())
        assert err == 0 and 0 < lifetime <= 3000, lifetime
        assert metadata_v0(s)
        time.sleep(lifetime / 1000 + 0.3)  # time is the subject: the session lifetime runs out
        send_request(s, 3, 0, struct.pack(">i", 0))
        assert closed(s)


def test_plaintext_listener_offers_no_sasl(broker):
    with connect(broker) as s:
        versions = api_versions(s)
        assert 17 not in versions and 36 not in versions
        # SCRAM credential and ACL APIs are served on every listener, as Kafka does.
        assert {29, 30, 31, 50, 51} <= set(versions), versions


def test_scram_and_acl_apis_without_authentication(broker):
    """Authentication off: anyone may manage SCRAM credentials (Kafka allows everything without
    an authorizer), and the ACL APIs answer SECURITY_DISABLED, on a plaintext listener."""
    a = AdminClient({"bootstrap.servers": broker.kafka})
    futs = a.alter_user_scram_credentials([UserScramCredentialUpsertion(
        "open-user", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"pw")])
    futs["open-user"].result(timeout=20)
    described = a.describe_user_scram_credentials(["open-user"])["open-user"].result(timeout=20)
    assert [(i.mechanism, i.iterations) for i in described.scram_credential_infos] == [
        (ScramMechanism.SCRAM_SHA_256, 4096)]
    # librdkafka reports a SECURITY_DISABLED DescribeAcls as an empty list; kafka-python raises it.
    assert a.describe_acls(AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
        AclPermissionType.ANY)).result(timeout=20) == []
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             KafkaAdminClient, ResourcePatternFilter)
    from kafka.admin import ResourceType as KResourceType
    from kafka.errors import SecurityDisabledError
    k = KafkaAdminClient(bootstrap_servers=broker.kafka, request_timeout_ms=15000)
    with pytest.raises(SecurityDisabledError):
        k.describe_acls(ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                                  permission_type=ACLPermissionType.ANY,
                                  resource_pattern=ResourcePatternFilter(
                                      KResourceType.ANY, None, ACLResourcePatternType.ANY)))
    k.close()
    # The connection was answered, not dropped: the same client goes on.
    assert a.list_topics(timeout=10).brokers


def test_scram_apis_on_a_plaintext_listener_of_an_authenticating_broker(binary, keys, tmp_path):
    """Authentication on, PLAINTEXT beside SASL_PLAINTEXT: an anonymous plaintext client is refused
    SCRAM management with CLUSTER_AUTHORIZATION_FAILED (not a dropped connection); a superuser on
    the SASL listener manages the same credentials."""
    env = {
        "MAGNETAR_AUTH__ENABLED": "true",
        "MAGNETAR_AUTH__TOKEN_SECRET_KEY": f"file://{keys.secret}",
        "MAGNETAR_AUTH__SUPERUSER_ROLES": "admin",
        "MAGNETAR_KAFKA__ADDITIONAL_LISTENERS": "SASL_PLAINTEXT://127.0.0.1:0",
    }
    b = Broker(binary, tmp_path, env=env)
    b.start()
    try:
        upsert = [UserScramCredentialUpsertion(
            "svc", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"pw")]
        plain = AdminClient({"bootstrap.servers": b.kafka})
        with pytest.raises(KafkaException) as ei:
            plain.alter_user_scram_credentials(upsert)["svc"].result(timeout=20)
        assert ei.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, ei.value.args[0]
        with pytest.raises(KafkaException) as ei:
            plain.describe_user_scram_credentials(["svc"])["svc"].result(timeout=20)
        assert ei.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, ei.value.args[0]
        assert plain.list_topics(timeout=10).brokers
        sasl_address = b.listening["kafka_listeners"]["SASL_PLAINTEXT"]
        admin = AdminClient({"bootstrap.servers": sasl_address, "security.protocol": "SASL_PLAINTEXT",
                             "sasl.mechanism": "PLAIN", "sasl.username": "public",
                             "sasl.password": f"token:{keys.token('admin')}"})
        admin.alter_user_scram_credentials(upsert)["svc"].result(timeout=20)
        described = admin.describe_user_scram_credentials(["svc"])["svc"].result(timeout=20)
        assert [i.iterations for i in described.scram_credential_infos] == [8192]
    finally:
        assert b.stop(check=False) in (0, None)


# ------------------------------------------------------------------ tokens on the Pulsar protocol


def pulsar_client(broker, auth=None):
    import pulsar

    return pulsar.Client(f"pulsar://{broker.pulsar}", authentication=auth, operation_timeout_seconds=10,
                         connection_timeout_ms=5000)


def test_pulsar_token_authentication(sasl_broker, keys):
    import pulsar

    topic = f"persistent://public/default/{topic_name('pulsar-auth')}"
    client = pulsar_client(sasl_broker, pulsar.AuthenticationToken(keys.token("alice")))
    try:
        producer = client.create_producer(topic)
        consumer = client.subscribe(topic, "s")
        producer.send(b"hello")
        assert consumer.receive(timeout_millis=10000).data() == b"hello"
    finally:
        client.close()
    for auth in (None, pulsar.AuthenticationToken(keys.token("alice", key=keys.other)),
                 pulsar.AuthenticationToken("not-a-token")):
        client = pulsar_client(sasl_broker, auth)
        try:
            with pytest.raises(Exception) as ei:
                client.create_producer(topic)
            # The C++ client closes on any reply to CONNECT but CONNECTED and retries until its
            # operation timeout (as against Pulsar); the exact reply is checked on the wire below.
            assert type(ei.value).__name__ in ("AuthenticationError", "ConnectError", "Timeout"), repr(ei.value)
        finally:
            client.close()
    assert "pulsar authentication failed" in sasl_broker.stderr_text()


def test_pulsar_token_refresh_on_auth_challenge(sasl_broker, keys):
    import pulsar

    issued = []

    def supplier():
        token = keys.token("bob", expiry="3s")
        issued.append(token)
        return token

    topic = f"persistent://public/default/{topic_name('pulsar-refresh')}"
    client = pulsar_client(sasl_broker, pulsar.AuthenticationToken(supplier))
    try:
        producer = client.create_producer(topic)
        producer.send(b"before")
        # The first token expires after 3 s: wait (bounded) until the broker challenged and the
        # client answered with a new token.
        wait_until(lambda: "pulsar client refreshed its token" in sasl_broker.stderr_text(), 30,
                   "the pulsar client's token refresh")
        producer.send(b"after")
        consumer = client.subscribe(topic, "s", initial_position=pulsar.InitialPosition.Earliest)
        got = [consumer.receive(timeout_millis=10000).data() for _ in range(2)]
        assert got == [b"before", b"after"]
        assert len(issued) >= 2, issued
        assert "pulsar client refreshed its token" in sasl_broker.stderr_text()
    finally:
        client.close()


def test_pulsar_connect_with_a_bad_token_gets_authentication_error(sasl_broker, keys):
    from test_pulsar_raw import CONNECT, CONNECTED, ERROR, Raw, base_command, f_bytes, f_varint, simple_frame

    def connect(token: bytes | None):
        raw = Raw(sasl_broker.pulsar)
        body = f_bytes(1, b"raw-test") + f_varint(4, 21)
        if token is not None:
            body += f_bytes(5, b"token") + f_bytes(3, token)
        raw.send(simple_frame(base_command(CONNECT, 2, body)))
        return raw

    raw = connect(keys.token("alice").encode())
    raw.expect(CONNECTED)
    raw.close()
    for token, needle in ((b"garbage", b"invalid token"), (keys.token("a", key=keys.other).encode(), b"signature"),
                          (None, b"method 'none'")):
        raw = connect(token)
        kind, f = raw.recv_frame()
        assert kind == ERROR, (kind, f)
        from test_pulsar_raw import fields

        error = fields(f[14])
        assert error[2] == 3 and needle in error[3], error  # ServerError.AuthenticationError
        assert raw.recv_frame(timeout=5) is None  # then the connection closes
        raw.close()


# --------------------------------------------------------------------------- HTTP bearer tokens


def test_admin_api_needs_a_superuser_bearer_token(sasl_broker, keys, binary):
    assert requests.get(f"http://{sasl_broker.http}/health", timeout=10).status_code == 200
    r = admin_http(sasl_broker, "GET", "tenants", token="")
    assert r.status_code == 401 and "Bearer" in r.json()["reason"], r.text
    r = admin_http(sasl_broker, "GET", "tenants", token=keys.token("admin", key=keys.other))
    assert r.status_code == 401 and "signature" in r.json()["reason"], r.text
    r = admin_http(sasl_broker, "GET", "tenants", token=keys.token("alice"))
    assert r.status_code == 403 and "alice" in r.json()["reason"], r.text
    r = admin_http(sasl_broker, "GET", "tenants")
    assert r.status_code == 200 and "public" in r.json(), r.text
    base = ["admin", "--admin-url", f"http://{sasl_broker.http}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGNETAR_")}
    ok = subprocess.run([str(binary), *base, "--token", keys.token("admin"), "tenants", "list"],
                        capture_output=True, text=True, timeout=30, env=env)
    assert ok.returncode == 0 and "public" in ok.stdout, ok.stderr
    env["MAGNETAR_ADMIN_TOKEN"] = keys.token("admin")
    ok = subprocess.run([str(binary), *base, "tenants", "list"], capture_output=True, text=True, timeout=30, env=env)
    assert ok.returncode == 0 and "public" in ok.stdout, ok.stderr
    env.pop("MAGNETAR_ADMIN_TOKEN")
    refused = subprocess.run([str(binary), *base, "tenants", "list"], capture_output=True, text=True, timeout=30,
                             env=env)
    assert refused.returncode != 0 and "401: authentication required" in refused.stderr, refused.stderr


def test_two_kafka_listeners_each_with_its_protocol_and_address(binary, keys, tmp_path):
    """KoP's kafkaListeners with two entries: PLAINTEXT and SASL_PLAINTEXT on one broker. Each
    listener's Metadata advertises itself, so a SASL client stays on the SASL port."""
    env = {
        "MAGNETAR_AUTH__ENABLED": "true",
        "MAGNETAR_AUTH__TOKEN_SECRET_KEY": f"file://{keys.secret}",
        "MAGNETAR_KAFKA__ADDITIONAL_LISTENERS": "SASL_PLAINTEXT://127.0.0.1:0",
    }
    b = Broker(binary, tmp_path, env=env)
    b.start()
    try:
        listeners = b.listening["kafka_listeners"]
        assert set(listeners) == {"PLAINTEXT", "SASL_PLAINTEXT"}, listeners
        assert listeners["PLAINTEXT"] == b.kafka
        sasl_address = listeners["SASL_PLAINTEXT"]
        topic = topic_name("two-listeners")
        # Written over PLAINTEXT, read over SASL with a token: one broker, one topic.
        p = Producer({"bootstrap.servers": b.kafka})
        p.produce(topic, value=b"plain")
        assert p.flush(30) == 0
        sasl = {"bootstrap.servers": sasl_address, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN", "sasl.username": "public",
                "sasl.password": f"token:{keys.token('alice')}"}
        md = AdminClient(sasl).list_topics(timeout=10)
        assert [f"{x.host}:{x.port}" for x in md.brokers.values()] == [sasl_address], md.brokers
        assert produce_and_consume(sasl, topic, 1) == [b"plain"]
        # A SASL client on the plaintext port gets no SASL (the listener offers none).
        bad = {**sasl, "bootstrap.servers": b.kafka}
        assert auth_error(bad).code() in (KafkaError._AUTHENTICATION, KafkaError._TRANSPORT,
                                          KafkaError._UNSUPPORTED_FEATURE)
    finally:
        assert b.stop(check=False) in (0, None)


def test_librdkafka_reauthenticates_on_the_same_connection_before_expiry(sasl_broker, keys):
    """KIP-368 with a real client: SaslAuthenticate answers the token's remaining lifetime, and
    librdkafka (>= 2.2) re-authenticates on its open connection with a fresh token from
    oauth_cb before the session ends, so producing goes on without errors past the first
    token's expiry."""
    calls = []

    def oauth_cb(config):
        calls.append(time.time())
        return keys.token("carl", expiry="6s"), time.time() + 6

    conf = {
        "bootstrap.servers": sasl_broker.kafka,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "OAUTHBEARER",
        "oauth_cb": oauth_cb,
    }
    topic = topic_name("reauth")
    p = Producer(conf)
    errors: list = []
    start = time.time()
    sent = 0
    # Bounded by time (15 s, 2.5 token lifetimes) and so by count (one message per 0.5 s).
    while time.time() - start < 15:
        p.produce(topic, value=b"x", on_delivery=lambda e, m: e and errors.append(e))
        sent += 1
        p.poll(0.5)
    assert p.flush(30) == 0
    assert errors == [], errors
    assert len(calls) >= 2, calls
    log = Path(sasl_broker.stderr_path).read_text()
    reauths = [line for line in log.splitlines()
               if "kafka client authenticated" in line and "carl" in line and "reauthentication=true" in line]
    assert reauths, "no re-authentication on an open connection was logged"
    c = Consumer({**conf, "group.id": topic_name("g"), "enable.auto.commit": False})
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.close()
    assert high - low == sent, (low, high, sent)
