"""kcat (Debian package: kcat 1.7.1 with librdkafka 2.0.2, an older librdkafka than confluent-kafka's)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from kafka_util import create_topic, unique_topic

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (apt-get install kcat)"),
    # librdkafka 2.0.2 cannot parse Tansu's ApiVersions v3 response (it sends every tagged
    # field, e.g. FinalizedFeaturesEpoch=-1 and ZkMigrationReady): "Read underflow".
    pytest.mark.not_on("tansu", "kcat's librdkafka 2.0.2 fails to parse tansu's ApiVersions v3 response"),
]


def kcat(bootstrap, *args, stdin=None, timeout_s=30):
    cmd = ["kcat", "-b", bootstrap, "-m", "10", "-X", "socket.timeout.ms=10000", *args]
    try:
        p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(cmd)} timed out; stderr: {(e.stderr or b'')[-2000:]!r}") from None
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_metadata_listing(bootstrap):
    topic = unique_topic("kcat-md")
    create_topic(bootstrap, topic, 2)
    rc, out, err = kcat(bootstrap, "-L", "-J")
    assert rc == 0, err
    md = json.loads(out)
    assert len(md["brokers"]) == 1
    assert md["brokers"][0]["name"] == bootstrap, md["brokers"]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, sorted(topics)
    parts = sorted(p["partition"] for p in topics[topic]["partitions"])
    assert parts == [0, 1]
    bid = md["brokers"][0]["id"]
    for p in topics[topic]["partitions"]:
        assert p["leader"] == bid

    rc, out, err = kcat(bootstrap, "-L")
    assert rc == 0, err
    assert f'topic "{topic}" with 2 partitions' in out, out


def test_produce_consume_round_trip_with_keys(bootstrap):
    topic = unique_topic("kcat-rt")
    lines = [f"key{i}:value {i}" for i in range(25)]
    rc, out, err = kcat(bootstrap, "-P", "-t", topic, "-p", "0", "-K:", stdin=("\n".join(lines) + "\n").encode())
    assert rc == 0, err

    rc, out, err = kcat(bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-J")
    assert rc == 0, err
    msgs = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert len(msgs) == 25, out[-2000:]
    for i, m in enumerate(msgs):
        assert m["topic"] == topic
        assert m["partition"] == 0
        assert m["offset"] == i
        assert m["key"] == f"key{i}"
        assert m["payload"] == f"value {i}"
        assert m["tstype"] == "create" and m["ts"] > 0

    # plain format, from an absolute offset, with a count
    rc, out, err = kcat(bootstrap, "-C", "-t", topic, "-p", "0", "-o", "20", "-c", "3", "-f", "%o %k %s\\n")
    assert rc == 0, err
    assert out.splitlines() == ["20 key20 value 20", "21 key21 value 21", "22 key22 value 22"]


def test_produce_compressed_and_query_offsets(bootstrap):
    topic = unique_topic("kcat-z")
    payload = "\n".join(f"msg-{i}" for i in range(100)) + "\n"
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        rc, out, err = kcat(bootstrap, "-P", "-t", topic, "-p", "0", "-z", codec, stdin=payload.encode())
        assert rc == 0, f"{codec}: {err}"
    rc, out, err = kcat(bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%o:%s\\n")
    assert rc == 0, err
    got = out.splitlines()
    expected = [f"{i}:msg-{i % 100}" for i in range(400)]
    assert got == expected, (got[:3], got[-3:], len(got))
    # -Q: offset lookup by timestamp; far in the future -> end (-1)
    rc, out, err = kcat(bootstrap, "-Q", "-t", f"{topic}:0:32503680000000")
    assert rc == 0, err
    assert "offset -1" in out, out
