#!/usr/bin/env python3
"""Writes the seeds of the fuzz targets whose input is not a client's bytes on the wire.

  segment_recovery  operation lists (see `build_segment` in crates/magnetar-fuzz/src/storage.rs)
  sasl              the client messages of each mechanism, in the format the clients send
                    (librdkafka/Java: PLAIN `\\0user\\0password`, OAUTHBEARER
                    `n,,\\x01auth=Bearer <token>\\x01\\x01`, SCRAM client-first and client-final)
  config            config/magnetar.toml and a KoP-style properties file

Usage: python3 fuzz/seeds/synthetic.py
"""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "fuzz" / "corpus"


def write(target: str, data: bytes):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def main():
    # segment_recovery: flags, base, then (op, arg, payload...) operations.
    ok = bytes([0, 5]) + b"hello"
    write("segment_recovery", bytes([0, 0]) + ok * 3)
    write("segment_recovery", bytes([1, 3]) + ok + bytes([0, 3]) + b"abc")
    write("segment_recovery", bytes([0, 9]) + ok + bytes([2, 60]) + b"x" * 0 + ok)
    write("segment_recovery", bytes([0, 0]) + ok + bytes([1, 2]) + ok)
    write("segment_recovery", bytes([1, 2]) + ok + bytes([3, 7]) + b"\xe5\x01\x00\x00tor")
    write("segment_recovery", bytes([0, 1]) + bytes([12, 35]) + b"pulsar" + ok)

    # sasl: mechanism index (PLAIN, OAUTHBEARER, SCRAM-SHA-256, SCRAM-SHA-512), messages split
    # by 0xff; @NONCE@ becomes the server's nonce.
    token = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    write("sasl", b"\x00" + b"\x00public/default\x00token:" + token)
    write("sasl", b"\x00" + b"alice\x00alice\x00secret")
    write("sasl", b"\x01" + b"n,,\x01auth=Bearer " + token + b"\x01\x01" + b"\xff\x01")
    write("sasl", b"\x01" + b"n,a=alice,\x01host=h\x01auth=bearer x\x01\x01")
    for m in (b"\x02", b"\x03"):
        first = b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL"
        final = b"c=biws,r=@NONCE@,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        write("sasl", m + first + b"\xff" + final)
        write("sasl", m + b"n,,n=bob,r=abc\xffc=biws,r=abc,p=AAAA")
        write("sasl", m + b"y,a=alice,n=alice,r=n1,extension=x\xff" + final + b"\xff\x00")

    # config: the example TOML and a KoP properties file.
    write("config", b"\x00" + (REPO / "config" / "magnetar.toml").read_bytes())
    write("config", b"\x00" + b'version = 1\n[kafka]\nport = 0\nallowAutoTopicCreation = "false"\n')
    write(
        "config",
        b"\x01"
        + b"# KoP standalone.conf\n"
        + b"kafkaListeners=PLAINTEXT://127.0.0.1:9092\n"
        + b"kafkaAdvertisedListeners=PLAINTEXT://example:19092\n"
        + b"brokerServicePort=6650\nwebServicePort=8080\n"
        + b"kafkaTenant=acme\nkafkaNamespace=ns\ndefaultNumPartitions=3\n"
        + b"allowAutoTopicCreationType=non-partitioned\nmanagedLedgerMaxEntriesPerLedger=\n"
        + b"authenticationEnabled=false\nunknownKey=1\n",
    )


if __name__ == "__main__":
    main()
