#!/usr/bin/env python3
"""A stand-in for Apache Kafka's bin/kafka-topics.sh, for librdkafka's test suite (which runs
`$KAFKA_PATH/bin/kafka-topics.sh --bootstrap-server B --create --topic T --partitions N
--replication-factor R --config k=v ...` through test_kafka_topics()). Only --create is served,
with confluent-kafka's AdminClient; anything else exits 2 naming what it was asked."""

import argparse
import sys

from confluent_kafka.admin import AdminClient, NewTopic


def main() -> int:
    p = argparse.ArgumentParser(prog="kafka-topics.sh")
    p.add_argument("--bootstrap-server", required=True)
    p.add_argument("--create", action="store_true")
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, default=-1)
    p.add_argument("--replication-factor", type=int, default=-1)
    p.add_argument("--config", action="append", default=[])
    args, rest = p.parse_known_args()
    if not args.create or rest:
        print(f"kafka-topics.sh stand-in: only --create is served (got {sys.argv[1:]})", file=sys.stderr)
        return 2
    config = dict(c.split("=", 1) for c in args.config)
    admin = AdminClient({"bootstrap.servers": args.bootstrap_server})
    topic = NewTopic(args.topic, args.partitions, args.replication_factor, config=config)
    try:
        admin.create_topics([topic], operation_timeout=30)[args.topic].result(timeout=30)
    except Exception as e:  # noqa: BLE001 - the exit status is what the caller reads
        print(f"Error while executing topic command: {e}", file=sys.stderr)
        return 1
    print(f"Created topic {args.topic}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
