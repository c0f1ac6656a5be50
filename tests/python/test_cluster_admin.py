"""Cluster-admin APIs a single-copy broker answers (kafka-python's admin client): DescribeLogDirs,
AlterReplicaLogDirs, ElectLeaders, AlterPartitionReassignments, ListPartitionReassignments.

Each used to close the connection (the API was not served); now each answers as Kafka does for
a broker that holds the only replica of every partition in one data directory.
"""

from __future__ import annotations

import pytest

kafka = pytest.importorskip("kafka")
from kafka import KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402
from kafka.errors import (  # noqa: E402
    ElectionNotNeededError,
    InvalidReplicationAssignmentError,
    LogDirNotFoundError,
    NoReassignmentInProgressError,
    UnknownTopicOrPartitionError,
)

from kafka_util import unique_topic  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def admin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)


def make_topic(bootstrap, partitions=2, records=0):
    name = unique_topic("ca")
    a = admin(bootstrap)
    a.create_topics([NewTopic(name, partitions, 1)])
    a.close()
    if records:
        p = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=15000, max_block_ms=15000)
        for i in range(records):
            p.send(name, value=b"x" * 1000, partition=1)
        p.flush(timeout=30)
        p.close()
    return name


def test_describe_log_dirs_reports_sizes(broker):
    name = make_topic(broker.kafka, partitions=2, records=20)
    a = admin(broker.kafka)
    result = a.describe_log_dirs(topic_partitions={name: [0, 1]})
    a.close()
    # One broker, one log dir (the broker's data directory) with both partitions: partition 1
    # holds the 20 records (> 20 KB), partition 0 is empty; no replica lags.
    assert [b["broker"] for b in result] == [0], result
    (log_dir,) = result[0]["log_dirs"]
    assert log_dir["error_code"] == 0 and log_dir["log_dir"] == str(broker.data_dir), log_dir
    assert 0 <= log_dir["usable_bytes"] <= log_dir["total_bytes"], log_dir
    (topic,) = [t for t in log_dir["topics"] if t["name"] == name]
    sizes = {p["partition_index"]: (p["partition_size"], p["offset_lag"]) for p in topic["partitions"]}
    assert set(sizes) == {0, 1}, sizes
    assert sizes[1][0] > 20_000 and sizes[1][1] == 0, sizes
    assert sizes[0][0] < sizes[1][0], sizes


def test_elect_leaders_not_needed(bootstrap):
    name = make_topic(bootstrap, partitions=2)
    a = admin(bootstrap)
    response = a.elect_leaders(0, topic_partitions={name: [0, 1, 5]}, raise_errors=False)
    a.close()
    codes = {}
    for topic, partitions in response.replica_election_results:
        for p in partitions:
            codes[(topic, p[0])] = p[1]
    assert codes[(name, 0)] == ElectionNotNeededError.errno
    assert codes[(name, 1)] == ElectionNotNeededError.errno
    assert codes[(name, 5)] == UnknownTopicOrPartitionError.errno


def test_partition_reassignments(bootstrap):
    name = make_topic(bootstrap, partitions=2)
    a = admin(bootstrap)
    assert a.list_partition_reassignments() == {}
    result = a.alter_partition_reassignments(
        {TopicPartition(name, 0): [0], TopicPartition(name, 1): [0, 1]}
    )
    assert result[TopicPartition(name, 0)] is None, result
    assert result[TopicPartition(name, 1)] is InvalidReplicationAssignmentError, result
    result = a.alter_partition_reassignments({TopicPartition(name, 0): None})
    assert result[TopicPartition(name, 0)] is NoReassignmentInProgressError, result
    assert a.list_partition_reassignments({name: [0, 1]}) == {}
    a.close()


def test_alter_replica_log_dirs(broker):
    name = make_topic(broker.kafka, partitions=1)
    a = admin(broker.kafka)
    result = a.alter_replica_log_dirs({(name, 0, 0): str(broker.data_dir)})
    errors = list(result.values())
    assert len(errors) == 1 and (errors[0] is None or errors[0].errno == 0), result
    result = a.alter_replica_log_dirs({(name, 0, 0): "/somewhere/else"})
    assert list(result.values())[0] is LogDirNotFoundError, result
    a.close()
