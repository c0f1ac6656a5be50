"""The Confluent Schema Registry API (its own listener) with confluent-kafka's
SchemaRegistryClient and serializers: register/lookup/versions/compatibility/config/delete,
Avro, JSON and Protobuf records through the Kafka port, Confluent's error codes, bad input, the
one store shared with Pulsar (a `<topic>-value` subject is the topic's Pulsar schema), and what a
topic's deletion does to its subjects."""

from __future__ import annotations

import json
import struct
import time
import uuid

import pytest
import requests

ck = pytest.importorskip("confluent_kafka")
pytest.importorskip("fastavro")
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient  # noqa: E402
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer  # noqa: E402
from confluent_kafka.schema_registry.error import SchemaRegistryError  # noqa: E402
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

from kafka_util import consumer_conf, producer_conf  # noqa: E402

pytestmark = [pytest.mark.binary, pytest.mark.magnetar_only("schema registry"), pytest.mark.timeout(120)]

CT = "application/vnd.schemaregistry.v1+json"

USER = {
    "type": "record",
    "name": "User",
    "namespace": "example",
    "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}],
}
USER_V2 = {**USER, "fields": USER["fields"] + [{"name": "email", "type": "string", "default": ""}]}
USER_BROKEN = {**USER, "fields": USER["fields"] + [{"name": "score", "type": "int"}]}


def url(broker):
    assert broker.schema_registry, "the harness starts the registry listener"
    return f"http://{broker.schema_registry}"


@pytest.fixture
def sr(broker):
    return SchemaRegistryClient({"url": url(broker)})


def subject():
    return f"s-{uuid.uuid4().hex[:10]}"


def avro(definition):
    return Schema(json.dumps(definition), "AVRO")


def test_register_lookup_versions_and_ids(sr, broker):
    s = subject()
    id1 = sr.register_schema(s, avro(USER))
    assert sr.register_schema(s, avro(USER)) == id1  # same schema, same id
    latest = sr.get_latest_version(s)
    assert (latest.version, latest.schema_id) == (1, id1)
    assert json.loads(latest.schema.schema_str)["name"] == "User"
    id2 = sr.register_schema(s, avro(USER_V2))
    assert id2 != id1
    assert sr.get_versions(s) == [1, 2]
    found = sr.lookup_schema(s, avro(USER))
    assert (found.version, found.schema_id) == (1, id1)
    assert json.loads(sr.get_schema(id2).schema_str)["fields"][2]["name"] == "email"
    assert s in sr.get_subjects()
    # The same schema under another subject keeps its global id.
    assert sr.register_schema(subject(), avro(USER)) == id1
    r = requests.get(f"{url(broker)}/schemas/ids/{id1}/versions", timeout=10)
    assert r.headers["content-type"] == CT
    assert {"subject": s, "version": 1} in r.json()


def test_compatibility_checks_and_409(sr, broker):
    s = subject()
    sr.register_schema(s, avro(USER))
    assert sr.test_compatibility(s, avro(USER_V2)) is True
    assert sr.test_compatibility(s, avro(USER_BROKEN)) is False
    with pytest.raises(SchemaRegistryError) as refused:
        sr.register_schema(s, avro(USER_BROKEN))
    assert refused.value.http_status_code == 409 and refused.value.error_code == 409
    assert sr.get_versions(s) == [1]  # nothing stored
    r = requests.post(f"{url(broker)}/compatibility/subjects/{s}/versions/latest?verbose=true",
                      json={"schema": json.dumps(USER_BROKEN)}, timeout=10)
    assert r.status_code == 200 and r.json()["is_compatible"] is False
    assert any("score" in m for m in r.json()["messages"])
    # Per subject level: FORWARD accepts a field without a default.
    sr.set_compatibility(s, "FORWARD")
    assert sr.get_compatibility(s) == "FORWARD"
    assert sr.register_schema(s, avro(USER_BROKEN)) > 0
    # Global config.
    r = requests.get(f"{url(broker)}/config", timeout=10)
    assert r.json() == {"compatibilityLevel": "BACKWARD"}
    r = requests.put(f"{url(broker)}/config", json={"compatibility": "SOMETIMES"}, timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (422, 42203)


def test_soft_and_hard_delete(sr, broker):
    s = subject()
    sr.register_schema(s, avro(USER))
    sr.register_schema(s, avro(USER_V2))
    assert sr.delete_version(s, 1) == 1
    assert sr.get_versions(s) == [2]
    r = requests.get(f"{url(broker)}/subjects/{s}/versions?deleted=true", timeout=10)
    assert r.json() == [1, 2]
    # A live version cannot be deleted permanently first.
    r = requests.delete(f"{url(broker)}/subjects/{s}/versions/2?permanent=true", timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (404, 40407)
    assert sr.delete_subject(s) == [2]
    assert s not in sr.get_subjects()
    assert sr.delete_subject(s, permanent=True) == [1, 2]
    r = requests.get(f"{url(broker)}/subjects/{s}/versions", timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (404, 40401)


def test_avro_serializer_round_trip_through_kafka(sr, broker):
    topic = f"avro-{uuid.uuid4().hex[:8]}"
    serializer = AvroSerializer(sr, json.dumps(USER))
    deserializer = AvroDeserializer(sr, json.dumps(USER))
    producer = Producer(producer_conf(broker.kafka))
    value = serializer({"name": "ada", "age": 36}, SerializationContext(topic, MessageField.VALUE))
    assert value[0] == 0 and len(value) > 5  # Confluent wire format: magic, schema id, payload
    producer.produce(topic, value=value)
    assert producer.flush(20) == 0
    consumer = Consumer(consumer_conf(broker.kafka))
    consumer.assign([TopicPartition(topic, 0, 0)])
    deadline, msg = time.time() + 20, None
    while time.time() < deadline and msg is None:
        m = consumer.poll(1.0)
        if m is not None and not m.error():
            msg = m
    consumer.close()
    assert msg is not None
    assert deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE)) == {"name": "ada", "age": 36}
    # The serializer registered `<topic>-value`: the topic's schema, which Pulsar sees too.
    latest = sr.get_latest_version(f"{topic}-value")
    assert struct.unpack(">I", value[1:5])[0] == latest.schema_id
    r = requests.get(f"http://{broker.http}/admin/v2/schemas/public/default/{topic}/schema", timeout=10)
    assert r.status_code == 200 and r.json()["type"] == "AVRO" and r.json()["version"] == 0


def test_json_serializer_round_trip_through_kafka(sr, broker):
    topic = f"json-{uuid.uuid4().hex[:8]}"
    schema = json.dumps({"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
                         "required": ["name"]})
    serializer = JSONSerializer(schema, sr)
    deserializer = JSONDeserializer(schema, schema_registry_client=sr)
    producer = Producer(producer_conf(broker.kafka))
    producer.produce(topic, value=serializer({"name": "x", "n": 3}, SerializationContext(topic, MessageField.VALUE)))
    assert producer.flush(20) == 0
    consumer = Consumer(consumer_conf(broker.kafka))
    consumer.assign([TopicPartition(topic, 0, 0)])
    deadline, msg = time.time() + 20, None
    while time.time() < deadline and msg is None:
        m = consumer.poll(1.0)
        if m is not None and not m.error():
            msg = m
    consumer.close()
    assert deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE)) == {"name": "x", "n": 3}
    assert sr.get_latest_version(f"{topic}-value").schema.schema_type == "JSON"
    # Making a new property required is not BACKWARD compatible.
    stricter = json.dumps({"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"}},
                           "required": ["name", "n"]})
    with pytest.raises(SchemaRegistryError) as refused:
        sr.register_schema(f"{topic}-value", Schema(stricter, "JSON"))
    assert refused.value.error_code == 409


def test_pulsar_schema_is_the_topic_value_subject(broker, sr):
    pulsar = pytest.importorskip("pulsar")
    from pulsar.schema import AvroSchema

    topic = f"interop-{uuid.uuid4().hex[:8]}"
    client = pulsar.Client(f"pulsar://{broker.pulsar}", operation_timeout_seconds=15)
    try:
        client.create_producer(f"persistent://public/default/{topic}",
                               schema=AvroSchema(None, schema_definition=USER))
    finally:
        client.close()
    latest = sr.get_latest_version(f"{topic}-value")
    assert latest.version == 1 and json.loads(latest.schema.schema_str)["name"] == "User"
    # Registering the same schema through Confluent finds that version.
    assert sr.register_schema(f"{topic}-value", avro(USER)) == latest.schema_id


def test_bad_input_gets_clear_errors_and_stores_nothing(broker):
    base = url(broker)
    s = subject()
    cases = [
        ({"schema": "{not json"}, 42201),
        ({"schema": json.dumps({"type": "record"})}, 42201),
        ({"schema": "\"" + "x" * 300_000 + "\""}, 42201),
        ({"schema": "{}", "schemaType": "XML"}, 42201),
        ({"schema": json.dumps({"type": 12}), "schemaType": "JSON"}, 42201),
        ({"schema": "\"int\"", "references": [{"name": "a", "subject": "nowhere", "version": 1}]}, 42201),
    ]
    for body, code in cases:
        r = requests.post(f"{base}/subjects/{s}/versions", json=body, headers={"content-type": CT}, timeout=10)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error_code"] == code and r.json()["message"]
    r = requests.post(f"{base}/subjects/{s}/versions", data=b"{{", headers={"content-type": CT}, timeout=10)
    assert r.status_code == 400
    r = requests.get(f"{base}/subjects/{s}/versions/0", timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (422, 42202)
    r = requests.get(f"{base}/schemas/ids/999999", timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (404, 40403)
    assert s not in requests.get(f"{base}/subjects?deleted=true", timeout=10).json()


def test_references_and_read_only_mode(sr, broker):
    base = url(broker)
    address = {"type": "record", "name": "Address", "namespace": "ex", "fields": [{"name": "city", "type": "string"}]}
    sr.register_schema("address", avro(address))
    person = {"type": "record", "name": "Person", "namespace": "ex", "fields": [{"name": "home", "type": "ex.Address"}]}
    r = requests.post(f"{base}/subjects/person/versions", json={
        "schema": json.dumps(person), "references": [{"name": "ex.Address", "subject": "address", "version": 1}]},
        timeout=10)
    assert r.status_code == 200, r.text
    got = requests.get(f"{base}/subjects/person/versions/1", timeout=10).json()
    assert got["references"] == [{"name": "ex.Address", "subject": "address", "version": 1}]
    assert requests.get(f"{base}/subjects/address/versions/1/referencedby", timeout=10).json() == [got["id"]]
    # A referenced version or subject is not deleted: Confluent's 42206.
    for path in ("subjects/address/versions/1", "subjects/address"):
        r = requests.delete(f"{base}/{path}", timeout=10)
        assert (r.status_code, r.json()["error_code"]) == (422, 42206), r.text
    assert requests.get(f"{base}/subjects/address/versions", timeout=10).json() == [1]
    assert requests.put(f"{base}/mode", json={"mode": "READONLY"}, timeout=10).json() == {"mode": "READONLY"}
    r = requests.post(f"{base}/subjects/{subject()}/versions", json={"schema": "\"int\""}, timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (422, 42205)
    requests.put(f"{base}/mode", json={"mode": "READWRITE"}, timeout=10)


def test_confluent_framed_kafka_records_read_by_a_typed_pulsar_consumer(sr, broker):
    pulsar = pytest.importorskip("pulsar")
    from pulsar.schema import AvroSchema

    topic = f"cross-{uuid.uuid4().hex[:8]}"
    serializer = AvroSerializer(sr, json.dumps(USER))
    producer = Producer(producer_conf(broker.kafka))
    for i in range(3):
        producer.produce(topic, value=serializer({"name": f"n{i}", "age": i},
                                                 SerializationContext(topic, MessageField.VALUE)))
    # A record without the prefix in its own batch: served as it is.
    assert producer.flush(20) == 0
    producer.produce(topic, value=b"plain bytes")
    assert producer.flush(20) == 0
    client = pulsar.Client(f"pulsar://{broker.pulsar}", operation_timeout_seconds=15)
    try:
        # The Kafka topic is partitioned (one partition): read that partition.
        typed = client.subscribe(f"persistent://public/default/{topic}-partition-0", "typed",
                                 schema=AvroSchema(None, schema_definition=USER),
                                 initial_position=pulsar.InitialPosition.Earliest)
        got = []
        for _ in range(3):
            m = typed.receive(timeout_millis=10000)
            assert m._message.int_schema_version() == 0
            got.append(m.value())
        assert got == [{"name": f"n{i}", "age": i} for i in range(3)]
        raw_consumer = client.subscribe(f"persistent://public/default/{topic}-partition-0", "raw",
                                        initial_position=pulsar.InitialPosition.Earliest)
        datas = [raw_consumer.receive(timeout_millis=10000).data() for _ in range(4)]
        assert datas[3] == b"plain bytes"
        assert datas[0][:1] != b"\x00"  # the prefix is gone
    finally:
        client.close()


def protobuf_message(fields):
    """A Protobuf message class built at run time (no protoc): `fields` is [(name, number, type)]
    with FieldDescriptorProto type numbers, in a pool of its own (two versions of one message
    cannot share one)."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.message_factory import GetMessageClass

    FD = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"user_{uuid.uuid4().hex[:8]}.proto", package="example", syntax="proto3")
    message = proto.message_type.add(name="User")
    for name, number, kind in fields:
        message.field.add(name=name, number=number, type=kind, label=FD.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return GetMessageClass(pool.FindMessageTypeByName("example.User"))


def test_protobuf_serializer_round_trip_and_compatibility(sr, broker):
    pytest.importorskip("google.protobuf")
    from google.protobuf.descriptor_pb2 import FieldDescriptorProto as FD
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer

    User = protobuf_message([("name", 1, FD.TYPE_STRING), ("age", 2, FD.TYPE_INT32)])
    topic = f"proto-{uuid.uuid4().hex[:8]}"
    serializer = ProtobufSerializer(User, sr, {"use.deprecated.format": False})
    deserializer = ProtobufDeserializer(User, {"use.deprecated.format": False}, sr)
    ctx = SerializationContext(topic, MessageField.VALUE)
    value = serializer(User(name="ada", age=36), ctx)
    assert value[0] == 0  # magic, schema id, message indexes, payload
    producer = Producer(producer_conf(broker.kafka))
    producer.produce(topic, value=value)
    assert producer.flush(20) == 0
    consumer = Consumer(consumer_conf(broker.kafka))
    consumer.assign([TopicPartition(topic, 0, 0)])
    deadline, msg = time.time() + 20, None
    while time.time() < deadline and msg is None:
        m = consumer.poll(1.0)
        if m is not None and not m.error():
            msg = m
    consumer.close()
    assert msg is not None
    got = deserializer(msg.value(), ctx)
    assert (got.name, got.age) == ("ada", 36)
    latest = sr.get_latest_version(f"{topic}-value")
    assert latest.schema.schema_type == "PROTOBUF"
    assert struct.unpack(">I", value[1:5])[0] == latest.schema_id

    # BACKWARD: a new field is compatible (the serializer registers version 2) ...
    UserV2 = protobuf_message([("name", 1, FD.TYPE_STRING), ("age", 2, FD.TYPE_INT32),
                               ("email", 3, FD.TYPE_STRING)])
    ProtobufSerializer(UserV2, sr, {"use.deprecated.format": False})(UserV2(name="b"), ctx)
    base = url(broker)
    assert requests.get(f"{base}/subjects/{topic}-value/versions", timeout=10).json() == [1, 2]
    # ... a field whose type changes group (int32 -> string) is refused with 409, over REST too.
    text = 'syntax = "proto3"; package example; message User { string name = 1; string age = 2; }'
    r = requests.post(f"{base}/compatibility/subjects/{topic}-value/versions/latest?verbose=true",
                      json={"schema": text, "schemaType": "PROTOBUF"}, timeout=10)
    assert r.status_code == 200 and r.json()["is_compatible"] is False
    assert any("FIELD_SCALAR_KIND_CHANGED" in m for m in r.json()["messages"]), r.json()
    r = requests.post(f"{base}/subjects/{topic}-value/versions",
                      json={"schema": text, "schemaType": "PROTOBUF"}, timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (409, 409), r.text
    # Removing a message is refused too; .proto text compiles with imports of well-known types.
    ok = ('syntax = "proto3"; package example; import "google/protobuf/timestamp.proto"; '
          'message User { string name = 1; int64 age = 2; string email = 3; '
          'google.protobuf.Timestamp at = 4; }')
    r = requests.post(f"{base}/subjects/{topic}-value/versions",
                      json={"schema": ok, "schemaType": "PROTOBUF"}, timeout=10)
    assert r.status_code == 200, r.text
    r = requests.post(f"{base}/subjects/{topic}-value/versions",
                      json={"schema": 'syntax = "proto3"; package example; message Other { int32 x = 1; }',
                            "schemaType": "PROTOBUF"}, timeout=10)
    assert r.status_code == 409 and "MESSAGE_REMOVED" in r.json()["message"], r.text
    r = requests.post(f"{base}/subjects/{topic}-value/versions",
                      json={"schema": "message {", "schemaType": "PROTOBUF"}, timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (422, 42201), r.text
    # /metrics counts the registrations, the refusals and the REST answers by status.
    samples = metric_samples(broker)
    assert samples["magnetar_schema_registrations_total"] >= 3
    assert samples["magnetar_schema_compatibility_failures_total"] >= 2
    assert samples["magnetar_schema_compatibility_checks_total"] >= 4
    assert samples['magnetar_schema_registry_requests_total{status="409"}'] >= 2
    assert samples['magnetar_schema_registry_requests_total{status="422"}'] >= 1
    assert samples["magnetar_schema_ids"] >= 3


def metric_samples(broker):
    """The Prometheus text samples of /metrics: name{labels} -> value."""
    text = requests.get(f"http://{broker.http}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def test_topic_deletion_and_subjects(sr, broker):
    """Deleting a topic through pulsar-admin deletes its schemas (Pulsar's behaviour); Kafka's
    DeleteTopics keeps the Confluent subjects (Confluent's)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker.kafka})
    kept = f"kept-{uuid.uuid4().hex[:8]}"
    for f in admin.create_topics([NewTopic(kept, 1)]).values():
        f.result(20)
    schema_id = sr.register_schema(f"{kept}-value", avro(USER))
    sr.register_schema(f"{kept}-key", Schema('"string"', "AVRO"))
    for f in admin.delete_topics([kept]).values():
        f.result(20)
    assert sr.get_latest_version(f"{kept}-value").schema_id == schema_id
    assert sr.get_latest_version(f"{kept}-key").version == 1

    gone = f"gone-{uuid.uuid4().hex[:8]}"
    http = f"http://{broker.http}/admin/v2"
    assert requests.put(f"{http}/persistent/public/default/{gone}/partitions", data="2",
                        headers={"Content-Type": "application/json"}, timeout=10).status_code == 204
    gone_id = sr.register_schema(f"{gone}-value", avro(USER_V2))
    sr.register_schema(f"{gone}-key", Schema('"string"', "AVRO"))
    r = requests.get(f"{http}/schemas/public/default/{gone}/schema", timeout=10)
    assert r.status_code == 200
    r = requests.delete(f"{http}/persistent/public/default/{gone}/partitions", timeout=10)
    assert r.status_code == 204, r.text
    assert requests.get(f"{http}/schemas/public/default/{gone}/schema", timeout=10).status_code == 404
    for role in ("value", "key"):
        with pytest.raises(SchemaRegistryError) as missing:
            sr.get_latest_version(f"{gone}-{role}")
        assert missing.value.error_code == 40401
    assert f"{gone}-value" not in sr.get_subjects()
    # The schema itself stays readable by id, as Confluent's ids do.
    assert sr.get_schema(gone_id).schema_type == "AVRO"


def test_pulsar_avro_records_reach_confluent_deserializers(sr, broker):
    """Pulsar -> Kafka: records of a Pulsar Avro schema version are framed with the version's
    schema id, so Confluent's AvroDeserializer reads them; Pulsar JSON records (their schema is
    an Avro record, not a JSON Schema) and records without a schema stay as they are."""
    pulsar = pytest.importorskip("pulsar")
    from pulsar.schema import AvroSchema, JsonSchema, Integer, Record, String

    class Person(Record):
        name = String()
        age = Integer()

    topic = f"p2k-{uuid.uuid4().hex[:8]}"
    plain = f"p2k-json-{uuid.uuid4().hex[:8]}"
    client = pulsar.Client(f"pulsar://{broker.pulsar}", operation_timeout_seconds=15)
    try:
        producer = client.create_producer(f"persistent://public/default/{topic}", schema=AvroSchema(Person))
        for i in range(3):
            producer.send(Person(name=f"p{i}", age=i))
        producer.send(Person(name="batched", age=9))
        json_producer = client.create_producer(f"persistent://public/default/{plain}", schema=JsonSchema(Person))
        json_producer.send(Person(name="j", age=1))
    finally:
        client.close()

    def read(name, count):
        consumer = Consumer(consumer_conf(broker.kafka))
        consumer.assign([TopicPartition(name, 0, 0)])
        got, deadline = [], time.time() + 20
        while time.time() < deadline and len(got) < count:
            m = consumer.poll(1.0)
            if m is not None and not m.error():
                got.append(m.value())
        consumer.close()
        return got

    values = read(topic, 4)
    assert len(values) == 4
    schema_id = sr.get_latest_version(f"{topic}-value").schema_id
    assert all(v[:5] == b"\x00" + struct.pack(">I", schema_id) for v in values), values
    deserializer = AvroDeserializer(sr)
    ctx = SerializationContext(topic, MessageField.VALUE)
    assert [deserializer(v, ctx) for v in values] == (
        [{"name": f"p{i}", "age": i} for i in range(3)] + [{"name": "batched", "age": 9}])
    # Pulsar JSON: plain JSON text, no prefix.
    (json_value,) = read(plain, 1)
    assert json.loads(json_value) == {"name": "j", "age": 1}


def test_import_mode_keeps_ids_and_versions(sr, broker):
    """IMPORT mode, as a migration from another registry uses it: set on an empty registry,
    registrations name their id and version, then READWRITE continues after the highest id."""
    base = url(broker)
    r = requests.put(f"{base}/mode", json={"mode": "IMPORT"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"mode": "IMPORT"}, r.text
    s = subject()
    r = requests.post(f"{base}/subjects/{s}/versions",
                      json={"schema": json.dumps(USER), "id": 100, "version": 7}, timeout=10)
    assert r.json() == {"id": 100}, r.text
    # Not compatible with version 7, accepted anyway (no checks while importing).
    r = requests.post(f"{base}/subjects/{s}/versions",
                      json={"schema": json.dumps(USER_BROKEN), "id": 101, "version": 8}, timeout=10)
    assert r.json() == {"id": 101}, r.text
    # An id that holds other content is refused; a registration without an id too.
    r = requests.post(f"{base}/subjects/{s}/versions",
                      json={"schema": json.dumps(USER_V2), "id": 100, "version": 9}, timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (422, 42205), r.text
    r = requests.post(f"{base}/subjects/{s}/versions", json={"schema": json.dumps(USER_V2)}, timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (422, 42205), r.text
    assert requests.get(f"{base}/subjects/{s}/versions", timeout=10).json() == [7, 8]
    assert sr.get_schema(100).schema_str == json.dumps(USER)
    # The registry has schemas now: IMPORT again needs force=true.
    r = requests.put(f"{base}/mode", json={"mode": "READWRITE"}, timeout=10)
    assert r.status_code == 200
    r = requests.put(f"{base}/mode", json={"mode": "IMPORT"}, timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (422, 42205), r.text
    assert requests.put(f"{base}/mode?force=true", json={"mode": "IMPORT"}, timeout=10).status_code == 200
    assert requests.put(f"{base}/mode", json={"mode": "READWRITE"}, timeout=10).status_code == 200
    # An id outside IMPORT mode is refused; new ids follow the imported ones.
    r = requests.post(f"{base}/subjects/{subject()}/versions",
                      json={"schema": '"int"', "id": 5}, timeout=10)
    assert (r.status_code, r.json()["error_code"]) == (422, 42205), r.text
    assert sr.register_schema(subject(), Schema('"long"', "AVRO")) == 102
