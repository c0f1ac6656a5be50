"""Authorization with real clients: Kafka (confluent-kafka, kafka-python), Pulsar (pulsar-client), HTTP.

A broker with token authentication and `authorization_enabled`: superuser `admin`; tenant `acme`
(admin role `acme-admin`) and tenant `globex`, each with a namespace `app`. Permissions are
granted through the admin REST API, as an operator would, and the clients see Kafka's errors:
TOPIC_AUTHORIZATION_FAILED (29), GROUP_AUTHORIZATION_FAILED (30), CLUSTER_AUTHORIZATION_FAILED
(31). Every refusal is followed by a check that the broker keeps serving.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import requests
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, magnetar_bin
from test_security import Keys

pytestmark = [pytest.mark.timeout(180), pytest.mark.binary]

TOPIC_AUTHZ = KafkaError.TOPIC_AUTHORIZATION_FAILED
GROUP_AUTHZ = KafkaError.GROUP_AUTHORIZATION_FAILED


@pytest.fixture(scope="module")
def keys(pytestconfig, tmp_path_factory) -> Keys:
    return Keys(magnetar_bin(pytestconfig), tmp_path_factory.mktemp("authz-keys"))


class Env:
    def __init__(self, broker: Broker, keys: Keys):
        self.broker = broker
        self.keys = keys
        self.tokens: dict = {}

    def token(self, role: str) -> str:
        if role not in self.tokens:
            self.tokens[role] = self.keys.token(role)
        return self.tokens[role]

    def http(self, method: str, path: str, role: str = "admin", **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(role)}"}
        return requests.request(method, f"http://{self.broker.http}/admin/v2/{path}", headers=headers,
                                timeout=10, **kw)

    def ok(self, method: str, path: str, **kw) -> None:
        r = self.http(method, path, **kw)
        assert r.status_code in (200, 204), f"{method} {path}: {r.status_code} {r.text}"

    def grant(self, namespace: str, role: str, *actions: str) -> None:
        self.ok("POST", f"namespaces/{namespace}/permissions/{role}", json=list(actions))

    def revoke(self, namespace: str, role: str) -> None:
        self.ok("DELETE", f"namespaces/{namespace}/permissions/{role}")

    def conf(self, role: str, scope: str = "acme/app", **extra) -> dict:
        conf = {
            "bootstrap.servers": self.broker.kafka,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": scope,
            "sasl.password": f"token:{self.token(role)}",
        }
        conf.update(extra)
        return conf

    def produce(self, role: str, topic: str, n: int = 3, scope: str = "acme/app") -> list:
        """Produces n messages; returns the delivery errors (empty: all delivered)."""
        p = Producer(self.conf(role, scope, **{"message.timeout.ms": 10000, "retries": 0}))
        errors: list = []
        for i in range(n):
            try:
                p.produce(topic, value=f"v{i}".encode(), key=b"k",
                          on_delivery=lambda e, m: e and errors.append(e))
            except KafkaException as e:
                # librdkafka refuses at once for a topic whose metadata was refused.
                errors.append(e.args[0])
        assert p.flush(30) == 0
        return errors

    def serving(self) -> None:
        """The broker still serves: a superuser produce and read on a fresh topic."""
        topic = f"persistent://acme/app/alive-{uuid.uuid4().hex[:6]}"
        assert self.produce("admin", topic, 1) == []
        assert read(self.conf("admin"), topic, 1) == [b"v0"]


def read(conf: dict, topic: str, n: int, timeout_s: float = 20.0):
    """Reads partition 0 from the start; returns the values or the first error."""
    errors: list = []
    c = Consumer({**conf, "group.id": f"reader-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False,
                  "error_cb": errors.append})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + timeout_s
    try:
        while len(got) < n and time.time() < deadline:
            if errors:
                return errors[0]
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                return m.error()
            got.append(m.value())
    finally:
        c.close()
    return got


@pytest.fixture(scope="module")
def env(pytestconfig, keys, tmp_path_factory):
    b = Broker(magnetar_bin(pytestconfig), tmp_path_factory.mktemp("authz-broker"), env={
        "MAGNETAR_AUTH__ENABLED": "true",
        "MAGNETAR_AUTH__AUTHORIZATION_ENABLED": "true",
        "MAGNETAR_AUTH__TOKEN_SECRET_KEY": f"file://{keys.secret}",
        "MAGNETAR_AUTH__SUPERUSER_ROLES": "admin",
        "MAGNETAR_AUTH__FAILED_AUTHENTICATION_DELAY_MS": "50",
        "MAGNETAR_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    })
    b.start()
    e = Env(b, keys)
    e.ok("PUT", "tenants/acme", json={"adminRoles": ["acme-admin"], "allowedClusters": ["standalone"]})
    e.ok("PUT", "tenants/globex", json={"adminRoles": ["globex-admin"], "allowedClusters": ["standalone"]})
    e.ok("PUT", "namespaces/acme/app")
    e.ok("PUT", "namespaces/globex/app")
    # Data of the other tenant, written by its admin.
    assert e.produce("globex-admin", "secret-orders", 2, scope="globex/app") == []
    yield e
    rc = b.stop(check=False)
    assert rc in (0, None), f"broker exit {rc}"


def topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_a_role_of_tenant_a_sees_and_reads_nothing_of_tenant_b(env):
    env.grant("acme/app", "acme-app", "produce", "consume")
    mine = topic("mine")
    assert env.produce("acme-app", mine, 1) == []
    # Metadata for every topic lists only what the role may look up.
    md = AdminClient(env.conf("acme-app")).list_topics(timeout=10)
    names = set(md.topics)
    assert mine in names, names
    assert not any("secret-orders" in n or "globex" in n for n in names), names
    assert not any("__consumer_offsets" in n for n in names), names
    # Asked by name, the other tenant's topic is refused, not described.
    md = AdminClient(env.conf("acme-app")).list_topics("persistent://globex/app/secret-orders", timeout=10)
    t = md.topics["persistent://globex/app/secret-orders"]
    assert t.error is not None and t.error.code() == TOPIC_AUTHZ, t.error
    assert t.partitions == {}
    # Reading it directly is refused (Fetch needs consume), producing to it too.
    # librdkafka never fetches a partition whose metadata was refused: an assigned reader gets
    # nothing; a subscriber is told TOPIC_AUTHORIZATION_FAILED.
    got = read(env.conf("acme-app"), "persistent://globex/app/secret-orders", 1, timeout_s=5)
    assert got == [] or (isinstance(got, KafkaError) and got.code() == TOPIC_AUTHZ), got
    err = subscribe_error(env.conf("acme-app"), "persistent://globex/app/secret-orders", "g-intruder")
    assert isinstance(err, KafkaError) and err.code() == TOPIC_AUTHZ, err
    errors = env.produce("acme-app", "persistent://globex/app/secret-orders", 1)
    assert [e.code() for e in errors] == [TOPIC_AUTHZ], errors
    # The other tenant's data is untouched and still its own.
    assert read(env.conf("globex-admin", "globex/app"), "secret-orders", 2) == [b"v0", b"v1"]
    env.serving()


def test_produce_needs_the_produce_permission_and_grants_apply_at_once(env):
    t = topic("grants")
    env.ok("PUT", f"persistent/acme/app/{t}")
    env.grant("acme/app", "reader", "consume")
    # The same producer (one connection) before and after the grant and the revoke: the
    # connection's cached decision follows the permissions.
    # A short metadata refresh: librdkafka remembers a refused topic until its next refresh.
    p = Producer(env.conf("reader", **{"message.timeout.ms": 10000, "retries": 0,
                                       "topic.metadata.refresh.interval.ms": 500}))
    results: list = []

    def send(v: bytes) -> KafkaError | None:
        results.clear()
        try:
            p.produce(t, value=v, on_delivery=lambda e, m: results.append(e))
        except KafkaException as e:
            return e.args[0]
        assert p.flush(30) == 0
        return results[0]

    def eventually(v: bytes, accepted: bool) -> list:
        """Sends until the outcome is the expected one (bounded); returns the outcomes seen."""
        seen = []
        deadline = time.time() + 20
        while time.time() < deadline:
            err = send(v)
            seen.append(err and err.code())
            if (err is None) == accepted:
                return seen
            time.sleep(0.3)
        raise AssertionError(f"{v!r}: {seen}")

    err = send(b"refused")
    assert err is not None and err.code() == TOPIC_AUTHZ, err
    env.grant("acme/app", "reader", "consume", "produce")
    assert set(eventually(b"granted", True)) <= {TOPIC_AUTHZ, None}
    env.grant("acme/app", "reader", "consume")
    assert set(eventually(b"revoked", False)) == {TOPIC_AUTHZ}
    # Only the granted message was written.
    assert read(env.conf("admin"), f"persistent://acme/app/{t}", 1) == [b"granted"]
    assert read(env.conf("admin"), f"persistent://acme/app/{t}", 2, timeout_s=3) == [b"granted"]
    env.serving()


def test_consume_without_the_consume_permission_is_refused(env):
    t = topic("noread")
    env.grant("acme/app", "writer", "produce")
    assert env.produce("writer", t, 2) == []
    # librdkafka reads nothing (it backs off the refused partition without telling the app).
    got = read(env.conf("writer"), t, 1, timeout_s=5)
    assert got == [] or (isinstance(got, KafkaError) and got.code() == TOPIC_AUTHZ), got
    # kafka-python raises the Fetch error.
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.errors import TopicAuthorizationFailedError
    c = KafkaConsumer(
        bootstrap_servers=env.broker.kafka, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
        sasl_plain_username="acme/app", sasl_plain_password=f"token:{env.token('writer')}",
        enable_auto_commit=False, consumer_timeout_ms=10000,
    )
    try:
        c.assign([KTP(t, 0)])
        c.seek(KTP(t, 0), 0)
        with pytest.raises(TopicAuthorizationFailedError):
            deadline = time.time() + 20
            while time.time() < deadline:
                assert c.poll(timeout_ms=500) == {}
    finally:
        c.close()
    env.serving()


def subscribe_error(conf: dict, topic_: str, group: str, timeout_s: float = 20.0):
    """Subscribes with a group; returns the values read (up to 2) or the first error."""
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000})
    c.subscribe([topic_])
    got = []
    deadline = time.time() + timeout_s
    try:
        while len(got) < 2 and time.time() < deadline:
            try:
                m = c.poll(0.5)
            except KafkaException as e:
                return e.args[0]
            if m is None:
                continue
            if m.error() is not None:
                return m.error()
            got.append(m.value())
        if got:
            c.commit(asynchronous=False)
    finally:
        c.close()
    return got


def test_group_join_needs_a_group_permission(env):
    t = topic("grp")
    assert env.produce("admin", f"persistent://acme/app/{t}", 2) == []
    # A role without consume in the namespace cannot join a group at all.
    env.grant("acme/app", "outsider", "produce")
    err = subscribe_error(env.conf("outsider"), t, "g-outsider")
    assert isinstance(err, KafkaError) and err.code() == GROUP_AUTHZ, err
    # A subscription restricted to other roles refuses this one, and another group works.
    env.grant("acme/app", "app2", "consume")
    env.ok("POST", "namespaces/acme/app/permissions/subscription/billing", json=["billing-role"])
    err = subscribe_error(env.conf("app2"), t, "billing")
    assert isinstance(err, KafkaError) and err.code() == GROUP_AUTHZ, err
    assert subscribe_error(env.conf("app2"), t, "reports") == [b"v0", b"v1"]
    env.serving()


def test_groups_are_kept_per_tenant(env):
    env.grant("acme/app", "acme-g", "produce", "consume")
    env.grant("globex/app", "globex-g", "produce", "consume")
    ta, tg = topic("ta"), topic("tg")
    assert env.produce("acme-g", ta, 2) == []
    assert env.produce("globex-g", tg, 2, scope="globex/app") == []
    # The same group name in two tenants: two groups, each with its own offsets.
    assert subscribe_error(env.conf("acme-g"), ta, "shared") == [b"v0", b"v1"]
    assert subscribe_error(env.conf("globex-g", "globex/app"), tg, "shared") == [b"v0", b"v1"]
    acme_admin = AdminClient(env.conf("acme-g"))
    listed = {g.group_id for g in acme_admin.list_consumer_groups().result(timeout=15).valid}
    assert "shared" in listed and not any("/" in g for g in listed), listed
    offsets = acme_admin.list_consumer_group_offsets(
        [__import__("confluent_kafka").ConsumerGroupTopicPartitions("shared")]
    )["shared"].result(timeout=15)
    assert {tp.topic for tp in offsets.topic_partitions} == {ta}, offsets.topic_partitions
    env.serving()


def test_topic_administration_needs_the_tenant_admin(env):
    name = topic("created")
    env.grant("acme/app", "plain", "produce", "consume")
    plain = AdminClient(env.conf("plain"))
    fs = plain.create_topics([NewTopic(name, 1)])
    with pytest.raises(KafkaException) as e:
        fs[name].result(timeout=15)
    assert e.value.args[0].code() == TOPIC_AUTHZ, e.value
    admin = AdminClient(env.conf("acme-admin"))
    admin.create_topics([NewTopic(name, 2)])[name].result(timeout=15)
    # The tenant admin cannot create in another tenant.
    other = "persistent://globex/app/" + topic("intrusion")
    with pytest.raises(KafkaException) as e:
        admin.create_topics([NewTopic(other, 1)])[other].result(timeout=15)
    assert e.value.args[0].code() == TOPIC_AUTHZ, e.value
    with pytest.raises(KafkaException) as e:
        plain.delete_topics([name])[name].result(timeout=15)
    assert e.value.args[0].code() == TOPIC_AUTHZ, e.value
    admin.delete_topics([name])[name].result(timeout=15)
    # Broker configs are cluster-wide: superusers only.
    from confluent_kafka.admin import ConfigResource
    res = ConfigResource(ConfigResource.Type.BROKER, "0")
    tenant_admin, superuser = AdminClient(env.conf("acme-admin")), AdminClient(env.conf("admin"))
    with pytest.raises(KafkaException) as e:
        tenant_admin.describe_configs([res])[res].result(timeout=15)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, e.value
    assert superuser.describe_configs([res])[res].result(timeout=15)
    env.serving()


def test_refusals_are_logged_once_per_connection(env):
    t = topic("logonce")
    env.grant("acme/app", "quiet", "consume")
    p = Producer(env.conf("quiet", **{"message.timeout.ms": 10000, "retries": 0}))
    codes = []
    for i in range(5):
        try:
            p.produce(t, value=b"x", on_delivery=lambda e, m: codes.append(e and e.code()))
        except KafkaException as e:
            codes.append(e.args[0].code())
        p.flush(30)
    assert codes == [TOPIC_AUTHZ] * 5, codes
    log = Path(env.broker.stderr_path).read_text()
    lines = [line for line in log.splitlines() if "kafka request refused" in line and t in line]
    assert len(lines) == 1, lines


def test_kafka_python_sees_the_authorization_errors(env):
    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError
    env.grant("acme/app", "kp", "consume")
    producer = KafkaProducer(
        bootstrap_servers=env.broker.kafka, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
        sasl_plain_username="acme/app", sasl_plain_password=f"token:{env.token('kp')}",
        max_block_ms=10000, retries=0,
    )
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(topic("kp"), b"x").get(timeout=15)
    finally:
        producer.close(timeout=5)
    env.serving()


def test_kafka_acl_apis_read_and_write_the_pulsar_permissions(env):
    from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                       ResourcePatternType, ResourceType)
    t = topic("acl")
    admin = AdminClient(env.conf("acme-admin"))
    plain = AdminClient(env.conf("acl-user"))
    env.grant("acme/app", "acl-user", "consume")
    write = AclBinding(ResourceType.TOPIC, t, ResourcePatternType.LITERAL, "User:acl-user", "*",
                       AclOperation.WRITE, AclPermissionType.ALLOW)
    group = AclBinding(ResourceType.GROUP, "acl-group", ResourcePatternType.LITERAL, "User:acl-user", "*",
                       AclOperation.READ, AclPermissionType.ALLOW)
    # Only the tenant's admins manage ACLs.
    with pytest.raises(KafkaException) as e:
        plain.create_acls([write])[write].result(timeout=15)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED, e.value
    assert env.produce("acl-user", t, 1) != []
    for f in admin.create_acls([write, group]).values():
        assert f.result(timeout=15) is None
    # The ACL is a Pulsar topic permission: REST shows it, and it takes effect.
    grants = env.http("GET", f"persistent/acme/app/{t}/permissions").json()
    assert "produce" in grants.get("acl-user", []), grants
    assert env.produce("acl-user", t, 1) == []
    subs = env.http("GET", "namespaces/acme/app/permissions/subscription").json()
    assert subs.get("acl-group") == ["acl-user"], subs
    # DescribeAcls lists the namespace's permissions, REST-made ones included.
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    listed = admin.describe_acls(every).result(timeout=15)
    seen = {(b.restype, b.name, b.principal, b.operation) for b in listed}
    assert (ResourceType.TOPIC, t, "User:acl-user", AclOperation.WRITE) in seen, seen
    assert (ResourceType.TOPIC, "*", "User:acl-user", AclOperation.READ) in seen, seen
    assert (ResourceType.GROUP, "acl-group", "User:acl-user", AclOperation.READ) in seen, seen
    # What the model cannot hold is refused with a reason: hosts are IP addresses (rules match the
    # client's address), not names.
    by_name = AclBinding(ResourceType.TOPIC, t, ResourcePatternType.LITERAL, "User:x", "client.example.com",
                         AclOperation.READ, AclPermissionType.ALLOW)
    with pytest.raises(KafkaException) as e:
        admin.create_acls([by_name])[by_name].result(timeout=15)
    assert "host" in e.value.args[0].str(), e.value
    # DeleteAcls removes the permission again.
    only_write = AclBindingFilter(ResourceType.TOPIC, t, ResourcePatternType.LITERAL, "User:acl-user", None,
                                  AclOperation.WRITE, AclPermissionType.ANY)
    deleted = admin.delete_acls([only_write])[only_write].result(timeout=15)
    assert [(b.name, b.operation) for b in deleted] == [(t, AclOperation.WRITE)], deleted
    grants = env.http("GET", f"persistent/acme/app/{t}/permissions").json()
    assert "produce" not in grants.get("acl-user", []), grants
    env.serving()


def acl(restype, name: str, principal: str, operation, permission, host: str = "*"):
    from confluent_kafka.admin import AclBinding, ResourcePatternType
    return AclBinding(restype, name, ResourcePatternType.LITERAL, principal, host, operation, permission)


def acl_filter(restype=None, name=None, pattern=None, principal=None, operation=None, permission=None):
    from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)
    return AclBindingFilter(restype or ResourceType.ANY, name, pattern or ResourcePatternType.ANY, principal, None,
                            operation or AclOperation.ANY, permission or AclPermissionType.ANY)


def create_acls(admin: AdminClient, *bindings) -> None:
    for f in admin.create_acls(list(bindings)).values():
        assert f.result(timeout=15) is None


def test_kafka_deny_acls_are_stored_listed_and_deleted(env):
    """A DENY binding is kept in the permission model beside the grants: DescribeAcls lists it under
    Kafka's filter rules (MATCH also returns the namespace-wide '*' binding; LITERAL only the exact
    name), the REST permissions show it as `deny:<role>`, and DeleteAcls returns what it deleted."""
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    DENY, ALLOW = AclPermissionType.DENY, AclPermissionType.ALLOW
    t = topic("deny-list")
    admin = AdminClient(env.conf("acme-admin"))
    env.grant("acme/app", "dl-user", "produce", "consume")
    create_acls(admin,
                acl(ResourceType.TOPIC, t, "User:dl-user", AclOperation.WRITE, DENY),
                acl(ResourceType.TOPIC, t, "User:dl-user", AclOperation.DESCRIBE, DENY),
                acl(ResourceType.TOPIC, "*", "User:dl-all", AclOperation.ALL, DENY),
                acl(ResourceType.GROUP, "dl-group", "User:dl-user", AclOperation.READ, DENY))

    def listed(f) -> set:
        return {(b.restype, b.name, b.principal, b.operation, b.permission_type)
                for b in admin.describe_acls(f).result(timeout=15)}

    denies = listed(acl_filter(permission=DENY))
    assert {(ResourceType.TOPIC, t, "User:dl-user", AclOperation.WRITE, DENY),
            (ResourceType.TOPIC, t, "User:dl-user", AclOperation.DESCRIBE, DENY),
            (ResourceType.TOPIC, "*", "User:dl-all", AclOperation.ALL, DENY),
            (ResourceType.GROUP, "dl-group", "User:dl-user", AclOperation.READ, DENY)} <= denies, denies
    assert all(p == DENY for *_, p in denies), denies
    # MATCH on the topic's name: its own bindings and the namespace-wide '*' ones, allows included.
    matched = listed(acl_filter(ResourceType.TOPIC, t, ResourcePatternType.MATCH, "User:dl-user"))
    assert matched == {(ResourceType.TOPIC, t, "User:dl-user", AclOperation.WRITE, DENY),
                       (ResourceType.TOPIC, t, "User:dl-user", AclOperation.DESCRIBE, DENY),
                       (ResourceType.TOPIC, "*", "User:dl-user", AclOperation.WRITE, ALLOW),
                       (ResourceType.TOPIC, "*", "User:dl-user", AclOperation.READ, ALLOW)}, matched
    literal = listed(acl_filter(ResourceType.TOPIC, t, ResourcePatternType.LITERAL, "User:dl-user"))
    assert {name for _, name, *_ in literal} == {t}, literal
    assert listed(acl_filter(ResourceType.TOPIC, t, ResourcePatternType.PREFIXED)) == set()
    # The Pulsar-shaped admin API shows the deny rules, marked, beside the grants.
    grants = env.http("GET", f"persistent/acme/app/{t}/permissions").json()
    assert sorted(grants["deny:dl-user"]) == ["lookup", "produce"], grants
    assert grants["deny:dl-all"] == ["all"], grants
    assert sorted(grants["dl-user"]) == ["consume", "produce"], grants
    ns = env.http("GET", "namespaces/acme/app/permissions").json()
    assert ns["deny:dl-all"] == ["all"] and "deny:dl-user" not in ns, ns
    subs = env.http("GET", "namespaces/acme/app/permissions/subscription").json()
    assert subs["deny:dl-group"] == ["dl-user"], subs
    # DeleteAcls: only the DENY bindings matched, returned as deleted.
    f = acl_filter(ResourceType.TOPIC, t, ResourcePatternType.LITERAL, "User:dl-user", permission=DENY)
    deleted = admin.delete_acls([f])[f].result(timeout=15)
    assert sorted((b.name, b.operation, b.permission_type) for b in deleted) == sorted(
        [(t, AclOperation.WRITE, DENY), (t, AclOperation.DESCRIBE, DENY)]), deleted
    grants = env.http("GET", f"persistent/acme/app/{t}/permissions").json()
    assert "deny:dl-user" not in grants and sorted(grants["dl-user"]) == ["consume", "produce"], grants
    for f in (acl_filter(principal="User:dl-all", permission=DENY),
              acl_filter(ResourceType.GROUP, "dl-group", permission=DENY)):
        assert len(admin.delete_acls([f])[f].result(timeout=15)) == 1
    assert listed(acl_filter(permission=DENY)) & {
        (ResourceType.TOPIC, "*", "User:dl-all", AclOperation.ALL, DENY)} == set()
    env.serving()


def test_kafka_deny_overrides_allow_on_produce(env):
    """DENY WRITE on a topic refuses a role that the namespace allows (TOPIC_AUTHORIZATION_FAILED),
    leaves its READ and other roles alone, binds the tenant's admins too, and not superusers."""
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourceType
    t = topic("deny-produce")
    full = f"persistent://acme/app/{t}"
    admin = AdminClient(env.conf("acme-admin"))
    for role in ("dp-user", "dp-other"):
        env.grant("acme/app", role, "produce", "consume")
    assert env.produce("dp-user", t, 1) == []
    deny = [acl(ResourceType.TOPIC, t, f"User:{r}", AclOperation.WRITE, AclPermissionType.DENY)
            for r in ("dp-user", "acme-admin", "admin")]
    create_acls(admin, *deny)
    errors = env.produce("dp-user", t, 1)
    assert errors and all(e.code() == TOPIC_AUTHZ for e in errors), errors
    assert env.produce("dp-other", t, 1) == []
    assert env.produce("acme-admin", t, 1) != []
    assert env.produce("admin", t, 1) == []  # superusers bypass ACLs
    # KIP-430 authorized operations follow the deny: no WRITE, READ and DESCRIBE kept.
    from confluent_kafka import TopicCollection
    for role in ("dp-user", "acme-admin"):
        client = AdminClient(env.conf(role))
        described = client.describe_topics(
            TopicCollection([t]), include_authorized_operations=True)[t].result(timeout=15)
        ops = set(described.authorized_operations or [])
        assert AclOperation.WRITE not in ops and {AclOperation.READ, AclOperation.DESCRIBE} <= ops, (role, ops)
    # READ is not denied: the denied producer's role still reads.
    assert read(env.conf("dp-user"), full, 3) == [b"v0", b"v0", b"v0"]
    # Deleting the DENY restores the grant's effect.
    f = acl_filter(ResourceType.TOPIC, t, permission=AclPermissionType.DENY)
    assert len(admin.delete_acls([f])[f].result(timeout=15)) == 3
    assert env.produce("dp-user", t, 1) == []
    env.serving()


def test_kafka_deny_all_to_every_user_as_librdkafka_tests_do(env):
    """librdkafka's producer/consumer authorization tests add `--deny-principal 'User:*' --operation
    All --deny-host '*' --topic T`: every role but superusers is refused the topic, lookup included."""
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourceType
    t = topic("deny-everyone")
    full = f"persistent://acme/app/{t}"
    env.grant("acme/app", "de-user", "produce", "consume")
    assert env.produce("de-user", t, 1) == []
    admin = AdminClient(env.conf("acme-admin"))
    create_acls(admin, acl(ResourceType.TOPIC, t, "User:*", AclOperation.ALL, AclPermissionType.DENY))
    assert env.http("GET", f"persistent/acme/app/{t}/permissions").json()["deny:*"] == ["all"]
    # An ALLOW for everyone has no place in a model of grants to roles: refused with the reason.
    everyone = acl(ResourceType.TOPIC, t, "User:*", AclOperation.READ, AclPermissionType.ALLOW)
    with pytest.raises(KafkaException) as e:
        admin.create_acls([everyone])[everyone].result(timeout=15)
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST and "User:*" in e.value.args[0].str(), e.value
    for role in ("de-user", "acme-admin"):
        errors = env.produce(role, t, 1)
        assert errors and all(e.code() == TOPIC_AUTHZ for e in errors), (role, errors)
    err = subscribe_error(env.conf("de-user"), t, "de-group", timeout_s=10)
    assert isinstance(err, KafkaError) and err.code() == TOPIC_AUTHZ, err
    assert env.produce("admin", t, 1) == []
    # Other topics are untouched.
    assert env.produce("de-user", topic("deny-everyone-other"), 1) == []
    f = acl_filter(ResourceType.TOPIC, t, principal="User:*", permission=AclPermissionType.DENY)
    assert [b.operation for b in admin.delete_acls([f])[f].result(timeout=15)] == [AclOperation.ALL]
    assert read(env.conf("de-user"), full, 2) == [b"v0", b"v0"]
    env.serving()


def test_kafka_deny_on_group_read_blocks_a_consumer(env):
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourceType
    t = topic("deny-group")
    assert env.produce("admin", f"persistent://acme/app/{t}", 2) == []
    env.grant("acme/app", "dg-user", "consume")
    admin = AdminClient(env.conf("acme-admin"))
    create_acls(admin, acl(ResourceType.GROUP, "dg-denied", "User:dg-user", AclOperation.READ,
                           AclPermissionType.DENY))
    err = subscribe_error(env.conf("dg-user"), t, "dg-denied")
    assert isinstance(err, KafkaError) and err.code() == GROUP_AUTHZ, err
    # Another group, and another role in the denied group, still read.
    assert subscribe_error(env.conf("dg-user"), t, "dg-open") == [b"v0", b"v1"]
    env.grant("acme/app", "dg-other", "consume")
    assert subscribe_error(env.conf("dg-other"), t, "dg-denied") == [b"v0", b"v1"]
    env.serving()


def test_kafka_python_creates_and_lists_deny_acls(env):
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             KafkaAdminClient, ResourcePattern, ResourcePatternFilter, ResourceType)
    t = topic("deny-kp")
    k = KafkaAdminClient(bootstrap_servers=env.broker.kafka, security_protocol="SASL_PLAINTEXT",
                         sasl_mechanism="PLAIN", sasl_plain_username="acme/app",
                         sasl_plain_password=f"token:{env.token('acme-admin')}", request_timeout_ms=15000)
    try:
        deny = ACL(principal="User:kp-user", host="*", operation=ACLOperation.READ,
                   permission_type=ACLPermissionType.DENY,
                   resource_pattern=ResourcePattern(ResourceType.TOPIC, t, ACLResourcePatternType.LITERAL))
        result = k.create_acls([deny])
        assert result["failed"] == [], result
        acls, err = k.describe_acls(ACLFilter(
            principal="User:kp-user", host="*", operation=ACLOperation.ANY,
            permission_type=ACLPermissionType.DENY,
            resource_pattern=ResourcePatternFilter(ResourceType.TOPIC, t, ACLResourcePatternType.LITERAL)))
        assert [(a.operation, a.permission_type) for a in acls] == [
            (ACLOperation.READ, ACLPermissionType.DENY)], acls
    finally:
        k.close()


def pattern_acl(restype, name: str, principal: str, operation, permission, pattern=None, host: str = "*"):
    from confluent_kafka.admin import AclBinding, ResourcePatternType
    return AclBinding(restype, name, pattern or ResourcePatternType.PREFIXED, principal, host, operation,
                      permission)


def test_kafka_prefixed_acls_are_stored_listed_enforced_and_deleted(env):
    """PREFIXED bindings (Kafka semantics: every resource whose name starts with the prefix) are
    stored beside the grants, listed by DescribeAcls under Kafka's filter rules (MATCH returns the
    prefixes of the name; PREFIXED only that exact prefix; ANY every pattern type), shown by the
    Pulsar-shaped admin API, enforced on Kafka and Pulsar (deny overrides allow) and deleted."""
    import pulsar
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    DENY, ALLOW, PREFIXED = AclPermissionType.DENY, AclPermissionType.ALLOW, ResourcePatternType.PREFIXED
    tag = uuid.uuid4().hex[:6]
    prefix, secret = f"px-{tag}-", f"px-{tag}-secret"
    mine, hidden, outside = f"{prefix}orders", f"{secret}-1", f"py-{tag}-orders"
    admin = AdminClient(env.conf("acme-admin"))
    for t in (mine, hidden, outside):
        assert env.produce("admin", f"persistent://acme/app/{t}", 2) == []
    # Nothing granted yet: refused.
    errors = env.produce("px-user", mine, 1)
    assert errors and all(e.code() == TOPIC_AUTHZ for e in errors), errors
    create_acls(admin,
                pattern_acl(ResourceType.TOPIC, prefix, "User:px-user", AclOperation.WRITE, ALLOW),
                pattern_acl(ResourceType.TOPIC, prefix, "User:px-user", AclOperation.READ, ALLOW),
                pattern_acl(ResourceType.GROUP, f"pxg-{tag}-", "User:px-user", AclOperation.READ, ALLOW),
                pattern_acl(ResourceType.TOPIC, secret, "User:px-user", AclOperation.WRITE, DENY))
    # Kafka: the prefix grants produce and consume (with a group of the group prefix) on every topic
    # that starts with it, not on others; the longer DENY prefix refuses WRITE on its topics.
    assert env.produce("px-user", mine, 1) == []
    assert subscribe_error(env.conf("px-user"), mine, f"pxg-{tag}-1") == [b"v0", b"v1"]
    errors = env.produce("px-user", outside, 1)
    assert errors and all(e.code() == TOPIC_AUTHZ for e in errors), errors
    errors = env.produce("px-user", hidden, 1)
    assert errors and all(e.code() == TOPIC_AUTHZ for e in errors), errors
    assert read(env.conf("px-user"), hidden, 2) == [b"v0", b"v1"], "READ is not denied"
    # The group prefix lists its role: another role that may consume is closed out of those groups.
    env.grant("acme/app", "px-other", "consume")
    err = subscribe_error(env.conf("px-other"), mine, f"pxg-{tag}-2")
    assert isinstance(err, KafkaError) and err.code() == GROUP_AUTHZ, err

    def listed(f) -> set:
        return {(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)
                for b in admin.describe_acls(f).result(timeout=15)}

    topic_rules = {(ResourceType.TOPIC, prefix, PREFIXED, "User:px-user", "*", AclOperation.WRITE, ALLOW),
                   (ResourceType.TOPIC, prefix, PREFIXED, "User:px-user", "*", AclOperation.READ, ALLOW)}
    deny_rule = (ResourceType.TOPIC, secret, PREFIXED, "User:px-user", "*", AclOperation.WRITE, DENY)
    # MATCH on a topic name: the prefixes of it.
    assert listed(acl_filter(ResourceType.TOPIC, hidden, ResourcePatternType.MATCH, "User:px-user")) == \
        topic_rules | {deny_rule}
    assert listed(acl_filter(ResourceType.TOPIC, mine, ResourcePatternType.MATCH, "User:px-user")) == topic_rules
    # PREFIXED: that exact prefix; LITERAL: none of them; ANY: the exact name, any pattern type.
    assert listed(acl_filter(ResourceType.TOPIC, prefix, PREFIXED)) == topic_rules
    assert listed(acl_filter(ResourceType.TOPIC, prefix, ResourcePatternType.LITERAL)) == set()
    assert listed(acl_filter(ResourceType.TOPIC, secret, ResourcePatternType.ANY)) == {deny_rule}
    assert listed(acl_filter(ResourceType.GROUP, f"pxg-{tag}-", PREFIXED)) == {
        (ResourceType.GROUP, f"pxg-{tag}-", PREFIXED, "User:px-user", "*", AclOperation.READ, ALLOW)}
    # The Pulsar-shaped admin API: a topic's listing shows the rules that apply to it; the namespace
    # and subscription listings show the prefixes.
    grants = env.http("GET", f"persistent/acme/app/{hidden}/permissions").json()
    assert sorted(grants["px-user"]) == ["consume", "produce"] and grants["deny:px-user"] == ["produce"], grants
    assert "px-user" not in env.http("GET", f"persistent/acme/app/{outside}/permissions").json()
    ns = env.http("GET", "namespaces/acme/app/permissions").json()
    assert sorted(ns[f"px-user on {prefix}*"]) == ["consume", "produce"], ns
    assert ns[f"deny:px-user on {secret}*"] == ["produce"], ns
    subs = env.http("GET", "namespaces/acme/app/permissions/subscription").json()
    assert subs[f"pxg-{tag}-*"] == ["px-user"], subs
    # Pulsar: the same rules decide.
    c = pulsar_client(env, "px-user")
    try:
        c.create_producer(f"persistent://acme/app/{mine}").send(b"pulsar")
        pulsar_refused(lambda: c.create_producer(f"persistent://acme/app/{hidden}"))
        pulsar_refused(lambda: c.create_producer(f"persistent://acme/app/{outside}"))
        c.subscribe(f"persistent://acme/app/{mine}", f"pxg-{tag}-3",
                    initial_position=pulsar.InitialPosition.Earliest).close()
    finally:
        c.close()
    # DeleteAcls with a PREFIXED filter deletes those bindings, which stop applying.
    f = acl_filter(ResourceType.TOPIC, prefix, PREFIXED, permission=ALLOW)
    deleted = admin.delete_acls([f])[f].result(timeout=15)
    assert sorted((b.name, b.resource_pattern_type, b.operation) for b in deleted) == sorted(
        [(prefix, PREFIXED, AclOperation.WRITE), (prefix, PREFIXED, AclOperation.READ)]), deleted
    errors = env.produce("px-user", mine, 1)
    assert errors and all(e.code() == TOPIC_AUTHZ for e in errors), errors
    f = acl_filter(principal="User:px-user", pattern=ResourcePatternType.ANY)
    assert len(admin.delete_acls([f])[f].result(timeout=15)) == 2
    assert listed(acl_filter(principal="User:px-user")) == set()
    env.serving()


def test_kafka_host_acls_apply_to_connections_from_that_address_only(env):
    """A binding with a host applies only to clients connecting from that IP ('*': all). The test
    clients connect from 127.0.0.1, so a binding for 10.9.9.9 must not apply and one for 127.0.0.1
    must; a DENY for 127.0.0.1 overrides the allow, on Kafka and Pulsar."""
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    DENY, ALLOW, LITERAL = AclPermissionType.DENY, AclPermissionType.ALLOW, ResourcePatternType.LITERAL
    t = topic("host-acl")
    full = f"persistent://acme/app/{t}"
    assert env.produce("admin", full, 1) == []
    admin = AdminClient(env.conf("acme-admin"))

    def binding(op, permission, host):
        return pattern_acl(ResourceType.TOPIC, t, "User:hx-user", op, permission, LITERAL, host)

    create_acls(admin, binding(AclOperation.WRITE, ALLOW, "10.9.9.9"), binding(AclOperation.READ, ALLOW, "10.9.9.9"))
    errors = env.produce("hx-user", t, 1)
    assert errors and all(e.code() == TOPIC_AUTHZ for e in errors), errors
    create_acls(admin, binding(AclOperation.WRITE, ALLOW, "127.0.0.1"), binding(AclOperation.READ, ALLOW, "127.0.0.1"))
    assert env.produce("hx-user", t, 1) == []
    assert read(env.conf("hx-user"), full, 2) == [b"v0", b"v0"]
    create_acls(admin, binding(AclOperation.WRITE, DENY, "10.9.9.9"))
    assert env.produce("hx-user", t, 1) == []
    create_acls(admin, binding(AclOperation.WRITE, DENY, "127.0.0.1"))
    errors = env.produce("hx-user", t, 1)
    assert errors and all(e.code() == TOPIC_AUTHZ for e in errors), errors
    c = pulsar_client(env, "hx-user")
    try:
        pulsar_refused(lambda: c.create_producer(full))
        c.subscribe(full, "hx-sub").close()  # READ from 127.0.0.1 is allowed
    finally:
        c.close()
    # DescribeAcls: a host filter matches that exact host; '*' only the bindings of every host.
    def hosts(host) -> list:
        f = AclBindingFilter_(t, host)
        return sorted((b.host, b.operation, b.permission_type) for b in admin.describe_acls(f).result(timeout=15))
    from confluent_kafka.admin import AclBindingFilter

    def AclBindingFilter_(name, host):
        return AclBindingFilter(ResourceType.TOPIC, name, ResourcePatternType.ANY, "User:hx-user", host,
                                AclOperation.ANY, AclPermissionType.ANY)
    assert hosts("127.0.0.1") == sorted([("127.0.0.1", AclOperation.WRITE, ALLOW), ("127.0.0.1", AclOperation.READ, ALLOW),
                                         ("127.0.0.1", AclOperation.WRITE, DENY)])
    assert hosts("*") == []
    assert len(hosts(None)) == 6
    grants = env.http("GET", f"persistent/acme/app/{t}/permissions").json()
    assert grants["deny:hx-user@127.0.0.1"] == ["produce"], grants
    assert sorted(grants["hx-user@10.9.9.9"]) == ["consume", "produce"], grants
    # Deleting the bindings of one host.
    f = AclBindingFilter_(t, "127.0.0.1")
    assert len(admin.delete_acls([f])[f].result(timeout=15)) == 3
    errors = env.produce("hx-user", t, 1)
    assert errors and all(e.code() == TOPIC_AUTHZ for e in errors), errors
    f = AclBindingFilter_(t, None)
    assert len(admin.delete_acls([f])[f].result(timeout=15)) == 3
    env.serving()


def test_kafka_literal_star_group_is_every_group(env):
    """GROUP LITERAL '*' is Kafka's wildcard: a DENY refuses the role every group (another role is
    untouched), listed under the name '*', and deleted again."""
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    t = topic("star-group")
    assert env.produce("admin", f"persistent://acme/app/{t}", 2) == []
    for role in ("sg-user", "sg-other"):
        env.grant("acme/app", role, "consume")
    admin = AdminClient(env.conf("acme-admin"))
    create_acls(admin, acl(ResourceType.GROUP, "*", "User:sg-user", AclOperation.READ, AclPermissionType.DENY))
    for group in ("sg-a", "sg-b"):
        err = subscribe_error(env.conf("sg-user"), t, group)
        assert isinstance(err, KafkaError) and err.code() == GROUP_AUTHZ, (group, err)
    assert subscribe_error(env.conf("sg-other"), t, "sg-a") == [b"v0", b"v1"]
    f = acl_filter(ResourceType.GROUP, "sg-a", ResourcePatternType.MATCH, "User:sg-user")
    assert [(b.name, b.permission_type) for b in admin.describe_acls(f).result(timeout=15)] == [
        ("*", AclPermissionType.DENY)]
    assert len(admin.delete_acls([f])[f].result(timeout=15)) == 1
    assert subscribe_error(env.conf("sg-user"), t, "sg-b") == [b"v0", b"v1"]
    env.serving()


def test_kafka_transactional_id_acls_are_stored_and_listed(env):
    """TRANSACTIONAL_ID bindings (LITERAL or PREFIXED) are stored and listed; their enforcement is
    with transactions (InitProducerId/FindCoordinator), Broker::check_transactional_id."""
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    admin = AdminClient(env.conf("acme-admin"))
    tag = uuid.uuid4().hex[:6]
    create_acls(admin, pattern_acl(ResourceType.TRANSACTIONAL_ID, f"tx-{tag}-", "User:tx-user",
                                   AclOperation.WRITE, AclPermissionType.ALLOW))
    f = acl_filter(ResourceType.TRANSACTIONAL_ID, f"tx-{tag}-app", ResourcePatternType.MATCH)
    listed = admin.describe_acls(f).result(timeout=15)
    assert [(b.name, b.resource_pattern_type, b.operation) for b in listed] == [
        (f"tx-{tag}-", ResourcePatternType.PREFIXED, AclOperation.WRITE)], listed
    bad = pattern_acl(ResourceType.TRANSACTIONAL_ID, "tx", "User:tx-user", AclOperation.READ,
                      AclPermissionType.ALLOW)
    with pytest.raises(KafkaException) as e:
        admin.create_acls([bad])[bad].result(timeout=15)
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST, e.value
    assert len(admin.delete_acls([f])[f].result(timeout=15)) == 1


def test_scram_users_over_the_admin_api_and_cli(env, pytestconfig):
    import os
    import subprocess
    binary = magnetar_bin(pytestconfig)
    base = [str(binary), "admin", "--admin-url", f"http://{env.broker.http}", "--token", env.token("admin")]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MAGNETAR_")}
    # Over REST: bad input is 400, a set password works for a SCRAM client, the list shows no secret.
    assert env.http("PUT", "kafka/scram-users/carol", json={"mechanism": "MD5", "password": "x"}).status_code == 400
    assert env.http("PUT", "kafka/scram-users/carol", json={"mechanism": "SCRAM-SHA-256", "password": ""}).status_code == 400
    assert env.http("PUT", "kafka/scram-users/carol", role="carol",
                    json={"mechanism": "SCRAM-SHA-256", "password": "pw"}).status_code == 403
    env.ok("PUT", "kafka/scram-users/carol", json={"mechanism": "SCRAM-SHA-256", "password": "s3cret", "iterations": 8192})
    # With the CLI (password from the environment, not the command line).
    p = subprocess.run([*base, "scram", "set", "dave", "--mechanism", "SCRAM-SHA-512"], capture_output=True,
                       text=True, timeout=30, env={**run_env, "MAGNETAR_SCRAM_PASSWORD": "pw-d"})
    assert p.returncode == 0, p.stderr
    p = subprocess.run([*base, "--output", "json", "scram", "list"], capture_output=True, text=True, timeout=30,
                       env=run_env)
    assert p.returncode == 0, p.stderr
    listed = {u["user"]: u["mechanisms"] for u in __import__("json").loads(p.stdout)}
    assert listed["carol"] == [{"mechanism": "SCRAM-SHA-256", "iterations": 8192}], listed
    assert listed["dave"] == [{"mechanism": "SCRAM-SHA-512", "iterations": 4096}], listed
    assert "s3cret" not in p.stdout and "salt" not in p.stdout.lower()
    # The SCRAM user is a role: authorization applies to it like to a token's role.
    env.grant("acme/app", "carol", "produce", "consume")
    conf = {"bootstrap.servers": env.broker.kafka, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "carol", "sasl.password": "s3cret"}
    t = "persistent://acme/app/" + topic("scram")
    p2 = Producer({**conf, "message.timeout.ms": 10000})
    errs: list = []
    p2.produce(t, value=b"by-carol", on_delivery=lambda e, m: e and errs.append(e))
    assert p2.flush(30) == 0 and errs == [], errs
    assert read(conf, t, 1) == [b"by-carol"]
    # Delete: the user can no longer authenticate; deleting again is 404.
    p = subprocess.run([*base, "scram", "delete", "carol"], capture_output=True, text=True, timeout=30, env=run_env)
    assert p.returncode == 0, p.stderr
    assert env.http("DELETE", "kafka/scram-users/carol").status_code == 404
    errors: list = []
    a = AdminClient({**conf, "error_cb": errors.append, "reconnect.backoff.ms": 5000})
    deadline = time.time() + 20
    while not errors and time.time() < deadline:
        try:
            a.list_topics(timeout=1)
        except KafkaException:
            pass
        a.poll(0.2)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION, errors
    env.serving()


# ------------------------------------------------------------------------------ Pulsar protocol


def pulsar_client(env, role: str):
    import pulsar
    return pulsar.Client(f"pulsar://{env.broker.pulsar}", authentication=pulsar.AuthenticationToken(env.token(role)),
                         operation_timeout_seconds=10)


def pulsar_refused(fn) -> str:
    """Runs fn, which must fail with Pulsar's AuthorizationError; returns the message."""
    import pulsar
    with pytest.raises(pulsar.PulsarException) as e:
        fn()
    assert "Authoriz" in type(e.value).__name__ + str(e.value), repr(e.value)
    return str(e.value)


def test_pulsar_a_role_of_tenant_a_cannot_touch_tenant_b(env):
    env.grant("acme/app", "p-acme", "produce", "consume")
    c = pulsar_client(env, "p-acme")
    try:
        other = "persistent://globex/app/secret-orders"
        pulsar_refused(lambda: c.create_producer(other))
        pulsar_refused(lambda: c.subscribe(other, "steal"))
        pulsar_refused(lambda: c.get_topic_partitions(other))
        # Its own namespace works on the same client (connection).
        own = f"persistent://acme/app/{topic('p-own')}"
        p = c.create_producer(own)
        p.send(b"mine")
        consumer = c.subscribe(own, "s", initial_position=__import__("pulsar").InitialPosition.Earliest)
        assert consumer.receive(timeout_millis=10000).data() == b"mine"
    finally:
        c.close()
    env.serving()


def test_pulsar_produce_and_consume_permissions_and_grants_apply_at_once(env):
    import pulsar
    t = f"persistent://acme/app/{topic('p-grants')}"
    env.grant("acme/app", "p-reader", "consume")
    c = pulsar_client(env, "p-reader")
    try:
        pulsar_refused(lambda: c.create_producer(t))
        # Consume is granted: a subscription works (lookup follows from consume).
        consumer = c.subscribe(t, "readers", initial_position=pulsar.InitialPosition.Earliest)
        env.grant("acme/app", "p-reader", "consume", "produce")
        p = c.create_producer(t)  # the same client: the grant applies at once
        p.send(b"after-grant")
        assert consumer.receive(timeout_millis=10000).data() == b"after-grant"
        env.grant("acme/app", "p-reader", "consume")
        pulsar_refused(lambda: c.create_producer(t))
        # A producer opened before the revoke keeps working, as in Pulsar.
        p.send(b"still-open")
        assert consumer.receive(timeout_millis=10000).data() == b"still-open"
    finally:
        c.close()
    # Produce-only role: subscribing is refused.
    env.grant("acme/app", "p-writer", "produce")
    w = pulsar_client(env, "p-writer")
    try:
        w.create_producer(t).send(b"w")
        pulsar_refused(lambda: w.subscribe(t, "nope"))
    finally:
        w.close()
    env.serving()


def test_pulsar_producer_and_subscription_of_a_denied_role_are_refused(env):
    """Kafka DENY ACLs are part of the one permission model: the Pulsar front end refuses them too."""
    import pulsar
    from confluent_kafka.admin import AclOperation, AclPermissionType, ResourceType
    t = topic("p-deny")
    env.grant("acme/app", "pd-user", "produce", "consume")
    admin = AdminClient(env.conf("acme-admin"))
    create_acls(admin,
                acl(ResourceType.TOPIC, t, "User:pd-user", AclOperation.WRITE, AclPermissionType.DENY),
                acl(ResourceType.GROUP, "pd-denied", "User:pd-user", AclOperation.READ, AclPermissionType.DENY))
    full = f"persistent://acme/app/{t}"
    c = pulsar_client(env, "pd-user")
    try:
        pulsar_refused(lambda: c.create_producer(full))
        pulsar_refused(lambda: c.subscribe(full, "pd-denied"))
        # Consume is not denied with another subscription.
        consumer = c.subscribe(full, "pd-open", initial_position=pulsar.InitialPosition.Earliest)
        consumer.close()
    finally:
        c.close()
    # Removing the DENY lets the same role produce.
    f = acl_filter(principal="User:pd-user", permission=AclPermissionType.DENY)
    assert len(admin.delete_acls([f])[f].result(timeout=15)) == 2
    c = pulsar_client(env, "pd-user")
    try:
        c.create_producer(full).send(b"allowed-again")
    finally:
        c.close()
    env.serving()


def test_pulsar_subscription_permission_restricts_roles(env):
    t = f"persistent://acme/app/{topic('p-subs')}"
    env.grant("acme/app", "p-app", "consume", "produce")
    env.ok("POST", "namespaces/acme/app/permissions/subscription/payroll", json=["p-payroll"])
    env.grant("acme/app", "p-payroll", "consume")
    c = pulsar_client(env, "p-app")
    payroll = pulsar_client(env, "p-payroll")
    try:
        message = pulsar_refused(lambda: c.subscribe(t, "payroll"))
        c.subscribe(t, "other").close()
        payroll.subscribe(t, "payroll").close()
    finally:
        c.close()
        payroll.close()
    env.serving()


def test_pulsar_topic_listing_shows_only_what_the_role_may_look_up(env):
    import re
    import pulsar
    env.grant("acme/app", "p-pattern", "consume")
    c = pulsar_client(env, "p-pattern")
    try:
        # A pattern subscription lists the namespace's topics (GET_TOPICS_OF_NAMESPACE): on the
        # other tenant's namespace it finds nothing, so it reads nothing of the data there.
        consumer = c.subscribe(re.compile("persistent://globex/app/.*"), "peek",
                               initial_position=pulsar.InitialPosition.Earliest,
                               pattern_auto_discovery_period=1)
        with pytest.raises(pulsar.Timeout):
            consumer.receive(timeout_millis=3000)
        consumer.close()
    finally:
        c.close()
    env.serving()


def test_pulsar_superuser_may_do_everything(env):
    c = pulsar_client(env, "admin")
    try:
        t = f"persistent://globex/app/{topic('p-super')}"
        c.create_producer(t).send(b"s")
        consumer = c.subscribe(t, "s", initial_position=__import__("pulsar").InitialPosition.Earliest)
        assert consumer.receive(timeout_millis=10000).data() == b"s"
    finally:
        c.close()


# ----------------------------------------------------------------------------------- HTTP admin


def test_http_tenant_admins_manage_their_tenant_only(env):
    # The tenant's admin: its tenant, namespaces and permissions.
    assert env.http("GET", "tenants/acme", role="acme-admin").status_code == 200
    env_ok = env.http("PUT", "namespaces/acme/made-by-admin", role="acme-admin")
    assert env_ok.status_code in (200, 204), env_ok.text
    r = env.http("POST", "namespaces/acme/made-by-admin/permissions/someone", role="acme-admin",
                 json=["consume"])
    assert r.status_code in (200, 204), r.text
    assert env.http("GET", "namespaces/acme", role="acme-admin").json()
    # Another tenant, and cluster-wide paths, are refused with a reason.
    for method, path in [("GET", "namespaces/globex"), ("PUT", "namespaces/globex/intrusion"),
                         ("GET", "persistent/globex/app"), ("GET", "tenants"),
                         ("PUT", "tenants/acme"), ("DELETE", "tenants/acme"),
                         ("GET", "kafka/groups"), ("GET", "kafka/scram-users")]:
        r = env.http(method, path, role="acme-admin", json={"adminRoles": []} if method == "PUT" else None)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert "acme-admin" in r.json()["reason"], r.text
    # A role with grants but no admin role cannot administer.
    r = env.http("GET", "namespaces/acme", role="acme-app")
    assert r.status_code == 403, r.text
    # Superusers can.
    assert env.http("GET", "namespaces/globex").status_code == 200
    assert env.http("GET", "tenants").status_code == 200
    env.serving()


def test_pulsar_http_lookup_needs_the_lookup_permission(env):
    """The HTTP lookup service authenticates the bearer token like the admin API and authorizes
    like the binary LOOKUP: the lookup permission on the topic (produce or consume grant it)."""
    import pulsar
    t = f"acme/app/{topic('http-lookup')}"
    url = f"http://{env.broker.http}/lookup/v2/topic/persistent/{t}"
    assert requests.get(url, timeout=10).status_code == 401
    r = requests.get(url, headers={"Authorization": f"Bearer {env.token('h-none')}"}, timeout=10)
    # 401 as Pulsar's lookup answers a missing permission (a 403 becomes ConnectError in clients).
    assert r.status_code == 401 and "may not look up" in r.json()["reason"], r.text
    env.grant("acme/app", "h-writer", "produce")
    r = requests.get(url, headers={"Authorization": f"Bearer {env.token('h-writer')}"}, timeout=10)
    assert r.status_code == 200 and r.json()["brokerUrl"] == f"pulsar://{env.broker.pulsar}", r.text
    # The partition count a client asks first: lookup permission suffices (not only admins).
    parts = f"http://{env.broker.http}/admin/v2/persistent/{t}/partitions"
    r = requests.get(parts, headers={"Authorization": f"Bearer {env.token('h-writer')}"}, timeout=10)
    assert r.status_code == 200, r.text
    r = requests.get(parts, headers={"Authorization": f"Bearer {env.token('h-none')}"}, timeout=10)
    assert r.status_code == 403, r.text
    # A real client over the HTTP lookup with the writer's token.
    c = pulsar.Client(f"http://{env.broker.http}", authentication=pulsar.AuthenticationToken(env.token("h-writer")),
                      operation_timeout_seconds=10)
    try:
        c.create_producer(f"persistent://{t}").send(b"over-http-lookup")
        # Refused at the partition-count request (403); the C++ client reports any HTTP lookup
        # refusal other than 401 as ConnectError.
        with pytest.raises(pulsar.PulsarException):
            c.create_producer(f"persistent://globex/app/{topic('no')}")
    finally:
        c.close()
    env.serving()
