"""Pulsar's `basic` authentication provider (htpasswd users: APR1-MD5 from `openssl passwd -apr1`,
bcrypt) and `anonymousUserRole`, with pulsar-client (`AuthenticationBasic`, no authentication) and
the admin HTTP API (`Authorization: Basic`, no header). Kafka is not affected by the anonymous role.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import Broker
from test_security import Keys, binary, keys, pulsar_client, topic_name  # noqa: F401

pytestmark = [pytest.mark.timeout(120), pytest.mark.binary]

# The JtR/OpenBSD test vector for "U*U", with Apache's $2y$ prefix.
BCRYPT_U_U = "$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW"


def apr1(password: str) -> str:
    p = subprocess.run(["openssl", "passwd", "-apr1", password], capture_output=True, text=True,
                       check=True, timeout=30)
    return p.stdout.strip()


@pytest.fixture(scope="module")
def broker(binary, keys, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("basic-broker")
    users = d / "htpasswd"
    users.write_text(f"alice:{apr1('alice-pass')}\nbob:{BCRYPT_U_U}\nroot:{apr1('root-pass')}\n")
    env = {
        "MAGNETAR_AUTH__ENABLED": "true",
        "MAGNETAR_AUTH__PROVIDERS": "token,basic",
        "MAGNETAR_AUTH__BASIC_AUTH_CONF": str(users),
        "MAGNETAR_AUTH__TOKEN_SECRET_KEY": f"file://{keys.secret}",
        "MAGNETAR_AUTH__SUPERUSER_ROLES": "root,admin",
        "MAGNETAR_AUTH__AUTHORIZATION_ENABLED": "true",
        "MAGNETAR_AUTH__ANONYMOUS_ROLE": "guest",
        "MAGNETAR_LOG": "info",
    }
    b = Broker(binary, d, env=env).start()
    yield b
    rc = b.stop(check=False)
    assert rc in (0, None), f"broker exit {rc}"


def admin(broker, method: str, path: str, auth=None, **kw) -> requests.Response:
    return requests.request(method, f"http://{broker.http}/admin/v2/{path}", auth=auth, timeout=10, **kw)


def round_trip(broker, auth, topic: str) -> None:
    client = pulsar_client(broker, auth)
    try:
        consumer = client.subscribe(topic, "s")
        producer = client.create_producer(topic)
        producer.send(b"hello")
        assert consumer.receive(timeout_millis=10000).data() == b"hello"
    finally:
        client.close()


def refused(broker, auth, topic: str) -> str:
    client = pulsar_client(broker, auth)
    try:
        with pytest.raises(Exception) as ei:
            client.create_producer(topic)
        return type(ei.value).__name__
    finally:
        client.close()


def grant(broker, namespace: str, role: str, *actions: str) -> None:
    r = admin(broker, "POST", f"namespaces/{namespace}/permissions/{role}", auth=("root", "root-pass"),
              json=list(actions))
    assert r.status_code in (200, 204), r.text


def test_pulsar_basic_authentication_apr1_and_bcrypt(broker):
    import pulsar

    grant(broker, "public/default", "alice", "produce", "consume")
    grant(broker, "public/default", "bob", "produce", "consume")
    round_trip(broker, pulsar.AuthenticationBasic("alice", "alice-pass"), f"persistent://public/default/{topic_name('basic-a')}")
    assert "role=alice" in broker.stderr_text()
    round_trip(broker, pulsar.AuthenticationBasic("bob", "U*U"), f"persistent://public/default/{topic_name('basic-b')}")
    assert "role=bob" in broker.stderr_text()
    # A superuser from the file administers.
    round_trip(broker, pulsar.AuthenticationBasic("root", "root-pass"), f"persistent://public/default/{topic_name('basic-r')}")


def test_pulsar_basic_wrong_password_or_user_is_refused(broker):
    import pulsar

    topic = f"persistent://public/default/{topic_name('basic-bad')}"
    for auth in (pulsar.AuthenticationBasic("alice", "wrong"), pulsar.AuthenticationBasic("mallory", "x")):
        name = refused(broker, auth, topic)
        assert name in ("AuthenticationError", "ConnectError", "Timeout"), name
    assert "pulsar authentication failed" in broker.stderr_text()
    assert "invalid credentials" in broker.stderr_text()


def test_pulsar_client_without_credentials_gets_the_anonymous_role(broker):
    topic = f"persistent://public/anon/{topic_name('anon')}"
    r = admin(broker, "PUT", "namespaces/public/anon", auth=("root", "root-pass"))
    assert r.status_code in (200, 204), r.text
    # Authenticated as guest, then authorization applies: no grant yet.
    name = refused(broker, None, topic)
    assert name == "AuthorizationError", name
    assert "role=guest" in broker.stderr_text()
    grant(broker, "public/anon", "guest", "produce", "consume")
    round_trip(broker, None, topic)


def test_admin_api_basic_header_and_anonymous_role(broker, keys):  # noqa: F811
    # No header: the anonymous role, which is not a superuser (403, not 401).
    r = admin(broker, "GET", "tenants")
    assert r.status_code == 403, r.text
    assert "role 'guest' is not a superuser" in r.text
    assert admin(broker, "GET", "tenants", auth=("root", "root-pass")).status_code == 200
    r = admin(broker, "GET", "tenants", auth=("alice", "alice-pass"))
    assert r.status_code == 403 and "role 'alice'" in r.text, r.text
    # Bad credentials are refused, not downgraded to the anonymous role.
    r = admin(broker, "GET", "tenants", auth=("root", "wrong"))
    assert r.status_code == 401, r.text
    # Tokens still work beside basic.
    r = admin(broker, "GET", "tenants", headers={"Authorization": f"Bearer {keys.token('admin')}"})
    assert r.status_code == 200, r.text


def test_bad_basic_auth_conf_stops_startup_naming_the_key(binary, tmp_path):  # noqa: F811
    users = tmp_path / "htpasswd"
    users.write_text("carol:abJnggxhB/yWI\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGNETAR_")}
    env.update({
        "MAGNETAR_AUTH__ENABLED": "true",
        "MAGNETAR_AUTH__PROVIDERS": "basic",
        "MAGNETAR_AUTH__BASIC_AUTH_CONF": str(users),
        "MAGNETAR_AUTH__SASL_ALLOWED_MECHANISMS": "SCRAM-SHA-256",
    })
    p = subprocess.run([str(binary), "standalone", "--data-dir", str(tmp_path / "d"), "--kafka-port", "0",
                        "--pulsar-port", "0", "--http-port", "0"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 2, p.stderr
    assert "basicAuthConf" in p.stderr and "'carol'" in p.stderr and "DES" in p.stderr, p.stderr
