"""Schemas on the Pulsar protocol with the official `pulsar-client`: Avro and JSON records with
Record classes, schema versions on received messages (and GET_SCHEMA by version, which the
Avro schema uses to read older data), evolution under the namespace's compatibility strategy,
auto-update and validation policies, KeyValue and AUTO_CONSUME over raw frames."""

from __future__ import annotations

import json
import os
import struct
import uuid

import pytest
import requests

pulsar = pytest.importorskip("pulsar")
pytest.importorskip("fastavro")
from pulsar.schema import (  # noqa: E402
    AvroSchema,
    Integer,
    JsonSchema,
    Record,
    String,
    StringSchema,
)

import test_pulsar_raw as raw  # noqa: E402

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("pulsar protocol"), pytest.mark.timeout(120)]

RECEIVE_MS = 5000


class User(Record):
    name = String()
    age = Integer()


def user_schema(*extra):
    s = User.schema()
    s["fields"] = s["fields"] + list(extra)
    return s


# A compatible evolution: a field with a default (FULL: old readers ignore it, new readers
# fill it in for old data).
V2 = user_schema({"name": "email", "type": "string", "default": "none"})
# A field without a default: new readers cannot read old data (BACKWARD fails).
BROKEN = user_schema({"name": "score", "type": "int"})


def avro(definition):
    return AvroSchema(None, schema_definition=definition)


@pytest.fixture
def client(broker):
    c = pulsar.Client(
        f"pulsar://{broker.pulsar}",
        operation_timeout_seconds=15,
        logger=pulsar.ConsoleLogger(getattr(pulsar.LoggerLevel, os.environ.get("PULSAR_LOG_LEVEL", "Warn"))),
    )
    yield c
    c.close()


def topic_name(prefix="schema", namespace="public/default"):
    return f"persistent://{namespace}/{prefix}-{uuid.uuid4().hex[:10]}"


def admin(broker, method, path, body=None):
    return requests.request(method, f"http://{broker.http}{path}", json=body, timeout=10)


def test_avro_records_round_trip_with_schema_version(client):
    topic = topic_name("avro")
    consumer = client.subscribe(topic, "s", schema=AvroSchema(User))
    producer = client.create_producer(topic, schema=AvroSchema(User))
    producer.send(User(name="ada", age=36))
    msg = consumer.receive(timeout_millis=RECEIVE_MS)
    assert msg.value().name == "ada" and msg.value().age == 36
    # Pulsar versions count from 0 and travel as 8-byte big-endian longs.
    assert msg._message.int_schema_version() == 0
    assert msg.schema_version() in (struct.pack(">q", 0), struct.pack(">q", 0).decode("latin-1"))
    info = client._client.get_schema_info(topic, 0)
    assert info.schema_type() == pulsar.schema.AvroSchema(User).schema_info().schema_type()
    assert json.loads(info.schema())["name"] == "User"


def test_json_records_round_trip(client):
    topic = topic_name("json")
    consumer = client.subscribe(topic, "s", schema=JsonSchema(User))
    producer = client.create_producer(topic, schema=JsonSchema(User))
    producer.send(User(name="grace", age=85))
    msg = consumer.receive(timeout_millis=RECEIVE_MS)
    assert (msg.value().name, msg.value().age) == ("grace", 85)
    assert msg._message.int_schema_version() == 0


def test_compatible_evolution_gets_a_new_version_and_old_data_stays_readable(client):
    topic = topic_name("evolve")
    p1 = client.create_producer(topic, schema=AvroSchema(User))
    p1.send(User(name="v1", age=1))
    p2 = client.create_producer(topic, schema=avro(V2))
    p2.send({"name": "v2", "age": 2, "email": "x@y"})
    consumer = client.subscribe(topic, "s", schema=avro(V2),
                                initial_position=pulsar.InitialPosition.Earliest)
    first = consumer.receive(timeout_millis=RECEIVE_MS)
    second = consumer.receive(timeout_millis=RECEIVE_MS)
    assert (first._message.int_schema_version(), second._message.int_schema_version()) == (0, 1)
    # The v1 message is read with its writer schema (fetched by version): email takes the default.
    assert (first.value()["name"], first.value()["email"]) == ("v1", "none")
    assert second.value()["email"] == "x@y"


def test_incompatible_schema_is_refused_with_the_reason(client, broker):
    topic = topic_name("incompatible")
    client.create_producer(topic, schema=AvroSchema(User)).send(User(name="a", age=1))
    with pytest.raises(Exception) as refused:
        client.create_producer(topic, schema=avro(BROKEN))
    assert "Incompatible" in str(refused.value) or "incompatible" in str(refused.value).lower()
    # A different type entirely.
    with pytest.raises(Exception):
        client.create_producer(topic, schema=StringSchema())
    # Nothing was stored: still one version.
    short = topic.split("/", 3)[3]
    r = admin(broker, "GET", f"/admin/v2/schemas/public/default/{short}/versions")
    if r.status_code == 200:
        assert len(r.json()) == 1


def test_strategy_per_namespace(client, broker):
    ns = f"public/schemas-{uuid.uuid4().hex[:6]}"
    assert admin(broker, "PUT", f"/admin/v2/namespaces/{ns}").status_code in (200, 204)
    # ALWAYS_COMPATIBLE accepts the breaking change.
    r = admin(broker, "PUT", f"/admin/v2/namespaces/{ns}/schemaCompatibilityStrategy", "ALWAYS_COMPATIBLE")
    assert r.status_code in (200, 204), r.text
    assert admin(broker, "GET", f"/admin/v2/namespaces/{ns}/schemaCompatibilityStrategy").json() == "ALWAYS_COMPATIBLE"
    topic = topic_name("ns", namespace=ns)
    client.create_producer(topic, schema=AvroSchema(User))
    client.create_producer(topic, schema=avro(BROKEN))
    # FORWARD: adding a field without a default is fine (old readers ignore it).
    r = admin(broker, "PUT", f"/admin/v2/namespaces/{ns}/schemaCompatibilityStrategy", "FORWARD")
    assert r.status_code in (200, 204)
    topic2 = topic_name("ns2", namespace=ns)
    client.create_producer(topic2, schema=AvroSchema(User))
    client.create_producer(topic2, schema=avro(BROKEN))
    # ALWAYS_INCOMPATIBLE: no second version at all.
    admin(broker, "PUT", f"/admin/v2/namespaces/{ns}/schemaCompatibilityStrategy", "ALWAYS_INCOMPATIBLE")
    topic3 = topic_name("ns3", namespace=ns)
    client.create_producer(topic3, schema=AvroSchema(User))
    with pytest.raises(Exception):
        client.create_producer(topic3, schema=avro(V2))
    # An unknown strategy name is refused.
    r = admin(broker, "PUT", f"/admin/v2/namespaces/{ns}/schemaCompatibilityStrategy", "SOMETIMES")
    assert r.status_code == 412 or r.status_code == 400


def test_auto_update_off_and_validation_enforced(client, broker):
    ns = f"public/schemapol-{uuid.uuid4().hex[:6]}"
    admin(broker, "PUT", f"/admin/v2/namespaces/{ns}")
    assert admin(broker, "POST", f"/admin/v2/namespaces/{ns}/isAllowAutoUpdateSchema", False).status_code in (200, 204)
    assert admin(broker, "POST", f"/admin/v2/namespaces/{ns}/schemaValidationEnforced", True).status_code in (200, 204)
    assert admin(broker, "GET", f"/admin/v2/namespaces/{ns}/schemaValidationEnforced").json() is True
    topic = topic_name("pol", namespace=ns)
    client.create_producer(topic, schema=AvroSchema(User))
    # A compatible change, but auto-update is off.
    with pytest.raises(Exception):
        client.create_producer(topic, schema=avro(V2))
    # A producer without a schema is refused on a topic with one.
    with pytest.raises(Exception):
        client.create_producer(topic)
    # The same schema is fine.
    client.create_producer(topic, schema=AvroSchema(User)).send(User(name="a", age=1))


def test_consumer_with_an_incompatible_schema_is_refused(client):
    topic = topic_name("consumer")
    client.create_producer(topic, schema=AvroSchema(User))
    with pytest.raises(Exception):
        client.subscribe(topic, "s", schema=StringSchema())
    # A bytes consumer takes anything.
    client.subscribe(topic, "s2").close()


def schema_msg(kind: int, data: bytes, props=()) -> bytes:
    body = raw.f_bytes(1, b"s") + raw.f_bytes(3, data) + raw.f_varint(4, kind)
    for k, v in props:
        body += raw.f_bytes(5, raw.f_bytes(1, k.encode()) + raw.f_bytes(2, v.encode()))
    return body


AVRO, STRING, KEY_VALUE, AUTO_CONSUME = 4, 1, 15, 21
GET_SCHEMA, GET_SCHEMA_RESPONSE, GET_OR_CREATE, GET_OR_CREATE_RESPONSE = 34, 35, 39, 40
SUBSCRIBE, SUCCESS = 4, 13


def kv_data(key: bytes, value: bytes) -> bytes:
    return struct.pack(">i", len(key)) + key + struct.pack(">i", len(value)) + value


def test_key_value_schema_over_raw_frames(broker):
    topic = topic_name("kv")
    value = json.dumps({"type": "record", "name": "V", "fields": [{"name": "n", "type": "int"}]}).encode()
    props = [("key.schema.type", "STRING"), ("value.schema.type", "AVRO"), ("kv.encoding.type", "SEPARATED")]
    c = raw.Raw(broker.pulsar).connect()
    body = raw.f_varint(1, 7) + raw.f_bytes(2, topic.encode()) + raw.f_bytes(3, schema_msg(KEY_VALUE, kv_data(b"", value), props))
    c.send(raw.simple_frame(raw.base_command(GET_OR_CREATE, 39, body)))
    r = raw.fields(c.expect(GET_OR_CREATE_RESPONSE)[40])
    assert 2 not in r, r  # no error code
    assert r[4] == struct.pack(">q", 0)
    # GET_SCHEMA (latest) answers it with its properties.
    c.send(raw.simple_frame(raw.base_command(GET_SCHEMA, 34, raw.f_varint(1, 8) + raw.f_bytes(2, topic.encode()))))
    r = raw.fields(c.expect(GET_SCHEMA_RESPONSE)[35])
    schema = raw.fields(r[4])
    assert schema[4] == KEY_VALUE and schema[3] == kv_data(b"", value)
    assert r[5] == struct.pack(">q", 0)
    # A truncated KeyValue layout is refused with IncompatibleSchema (18) and a reason.
    body = raw.f_varint(1, 9) + raw.f_bytes(2, topic_name("kvbad").encode()) + raw.f_bytes(3, schema_msg(KEY_VALUE, b"\x00\x00\x00\x09ab", props))
    c.send(raw.simple_frame(raw.base_command(GET_OR_CREATE, 39, body)))
    r = raw.fields(c.expect(GET_OR_CREATE_RESPONSE)[40])
    assert r[2] == 18 and b"truncated" in r[3]
    # An unknown version: TopicNotFound.
    c.send(raw.simple_frame(raw.base_command(GET_SCHEMA, 34, raw.f_varint(1, 10) + raw.f_bytes(2, topic.encode()) + raw.f_bytes(3, struct.pack(">q", 5)))))
    r = raw.fields(c.expect(GET_SCHEMA_RESPONSE)[35])
    assert 2 in r
    c.close()


def test_auto_consume_subscribes_to_a_topic_with_a_schema(broker, client):
    topic = topic_name("auto")
    client.create_producer(topic, schema=AvroSchema(User)).send(User(name="x", age=1))
    c = raw.Raw(broker.pulsar).connect()
    sub = (raw.f_bytes(1, topic.encode()) + raw.f_bytes(2, b"auto") + raw.f_varint(3, 0)
           + raw.f_varint(4, 1) + raw.f_varint(5, 11) + raw.f_bytes(12, schema_msg(AUTO_CONSUME, b"")))
    c.send(raw.simple_frame(raw.base_command(SUBSCRIBE, 4, sub)))
    c.expect(SUCCESS)
    # A schema it cannot read is refused, with the reason.
    sub = (raw.f_bytes(1, topic.encode()) + raw.f_bytes(2, b"str") + raw.f_varint(3, 0)
           + raw.f_varint(4, 2) + raw.f_varint(5, 12) + raw.f_bytes(12, schema_msg(STRING, b"")))
    c.send(raw.simple_frame(raw.base_command(SUBSCRIBE, 4, sub)))
    err = raw.fields(c.expect(raw.ERROR)[14])
    assert err[2] == 18, err
    c.close()


def test_malformed_and_huge_schemas_are_refused_and_nothing_is_stored(broker):
    c = raw.Raw(broker.pulsar).connect()
    topic = topic_name("bad")
    for i, data in enumerate([b"{not json", b'{"type":"record"}', b'"' + b"x" * 300_000 + b'"']):
        body = raw.f_varint(1, 20 + i) + raw.f_bytes(2, topic.encode()) + raw.f_bytes(3, schema_msg(AVRO, data))
        c.send(raw.simple_frame(raw.base_command(GET_OR_CREATE, 39, body)))
        r = raw.fields(c.expect(GET_OR_CREATE_RESPONSE)[40])
        assert 2 in r and r[3], r
    c.send(raw.simple_frame(raw.base_command(GET_SCHEMA, 34, raw.f_varint(1, 30) + raw.f_bytes(2, topic.encode()))))
    r = raw.fields(c.expect(GET_SCHEMA_RESPONSE)[35])
    assert 2 in r  # no schema stored
    c.close()
