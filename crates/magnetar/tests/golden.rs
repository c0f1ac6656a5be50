//! Golden frames: conversations captured from real clients (confluent-kafka, kafka-python,
//! kcat, pulsar-client) by `scripts/golden/capture.py`, stored in `tests/golden/`, replayed
//! against a fresh `magnetar standalone` started the way the capture started it. Every client
//! frame is sent as recorded, on one connection per recorded connection and in the recorded
//! global order; every response is compared with the recorded one byte for byte after the
//! normalization `tests/golden/README.md` documents (Kafka member ids and topic ids the broker
//! made up, the broker's own ports, the broker's publish time in Pulsar's broker entry
//! metadata).
//!
//! The binary, not an in-process broker: the captures came from the binary's wiring and
//! defaults, so the replay has no second configuration to keep equal to it. No wire codec here
//! (the layering test keeps them in the front ends): the normalization works on bytes.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Broker;

const FORMAT: &str = "magnetar-golden/1";
/// How long a recorded response may take to arrive (a long-poll fetch answers within its
/// `max_wait_ms`, 100 ms in the captures).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
const FRAME_BYTES_MAX: usize = 16 << 20;
const KAFKA_METADATA: i64 = 3;
const KAFKA_JOIN_GROUP: i64 = 11;
const PULSAR_MESSAGE: u64 = 9;
const PULSAR_PING: u64 = 18;
const PULSAR_PONG: u64 = 19;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// Every conversation file; `every_golden_file_is_replayed` keeps this list complete.
const FILES: &[&str] = &[
    "kafka/confluent-kafka-produce-consume.jsonl",
    "kafka/kafka-python-produce-consume.jsonl",
    "kafka/kcat-produce-consume.jsonl",
    "pulsar/pulsar-client-produce-consume.jsonl",
    "pulsar/pulsar-client-batch-shared.jsonl",
];

#[test]
fn golden_kafka_confluent_kafka() {
    replay(FILES[0]);
}

#[test]
fn golden_kafka_kafka_python() {
    replay(FILES[1]);
}

#[test]
fn golden_kafka_kcat() {
    replay(FILES[2]);
}

#[test]
fn golden_pulsar_pulsar_client() {
    replay(FILES[3]);
}

#[test]
fn golden_pulsar_pulsar_client_batch() {
    replay(FILES[4]);
}

/// The comparison can fail: one bit changed in a recorded response (the kcat Produce answer,
/// or the Pulsar MESSAGE's payload) is reported at that frame.
#[test]
fn golden_a_changed_response_is_reported() {
    for (name, label) in [(FILES[2], "Produce"), (FILES[3], "MESSAGE")] {
        let mut conversation = load(name);
        let event = conversation
            .events
            .iter_mut()
            .find(|e| e.direction == Direction::ServerToClient && e.label.starts_with(label))
            .expect("a response to change");
        let line = event.line;
        *event.frame.last_mut().expect("a byte") ^= 1;
        let error = run(name, &conversation).expect_err("a changed response must fail");
        assert!(
            error.starts_with(&format!("{name}:{line} ")) && error.contains("differs"),
            "{error}"
        );
    }
}

#[test]
fn golden_every_file_is_replayed() {
    let mut found = BTreeSet::new();
    for protocol in ["kafka", "pulsar"] {
        let dir = golden_dir().join(protocol);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".jsonl") {
                found.insert(format!("{protocol}/{name}"));
            }
        }
    }
    let listed: BTreeSet<String> = FILES.iter().map(|f| f.to_string()).collect();
    assert_eq!(found, listed, "tests/golden and FILES in this test differ");
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Kafka,
    Pulsar,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    /// A client frame, sent as recorded (after member id substitution).
    ClientToServer,
    /// A broker frame, compared with the one the replay reads.
    ServerToClient,
    /// The client closed the connection.
    Close,
}

struct Event {
    line: usize,
    conn: u64,
    direction: Direction,
    /// `Produce v9 #4`, `LOOKUP`: for messages.
    label: String,
    kafka_api_key: i64,
    kafka_api_version: i64,
    /// The frame without its 4-byte size prefix.
    frame: Vec<u8>,
}

struct Conversation {
    protocol: Protocol,
    broker_env: Vec<(String, String)>,
    /// The ports the client saw, by listener name (`kafka`, `pulsar`, `http`).
    ports: BTreeMap<String, u16>,
    events: Vec<Event>,
}

fn load(name: &str) -> Conversation {
    let path = golden_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut lines = text.lines().enumerate();
    let (_, first) = lines.next().expect("a header line");
    let header: serde_json::Value = serde_json::from_str(first).expect("header is JSON");
    assert_eq!(header["format"], FORMAT, "{name}: format");
    let protocol = match header["protocol"].as_str() {
        Some("kafka") => Protocol::Kafka,
        Some("pulsar") => Protocol::Pulsar,
        other => panic!("{name}: protocol {other:?}"),
    };
    let broker_env = header["broker_env"]
        .as_object()
        .expect("broker_env")
        .iter()
        .map(|(k, v)| {
            assert!(k.starts_with("MAGNETAR_"), "{name}: env {k}");
            (k.clone(), v.as_str().expect("env value").to_string())
        })
        .collect();
    let ports = header["ports"]
        .as_object()
        .expect("ports")
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_u64().and_then(|p| u16::try_from(p).ok()).unwrap(),
            )
        })
        .collect();
    let mut events = Vec::new();
    for (index, line) in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}:{}: {e}", index + 1));
        let direction = match v["dir"].as_str() {
            Some("c2s") => Direction::ClientToServer,
            Some("s2c") => Direction::ServerToClient,
            Some("close") => Direction::Close,
            other => panic!("{name}:{}: dir {other:?}", index + 1),
        };
        let label = match protocol {
            Protocol::Kafka => format!(
                "{} v{} #{}",
                v["api"].as_str().unwrap_or("?"),
                v["api_version"],
                v["correlation_id"]
            ),
            Protocol::Pulsar => v["type"].as_str().unwrap_or("?").to_string(),
        };
        events.push(Event {
            line: index + 1,
            conn: v["conn"].as_u64().expect("conn"),
            direction,
            label,
            kafka_api_key: v["api_key"].as_i64().unwrap_or(-1),
            kafka_api_version: v["api_version"].as_i64().unwrap_or(-1),
            frame: unhex(v["hex"].as_str().unwrap_or("")),
        });
    }
    Conversation {
        protocol,
        broker_env,
        ports,
        events,
    }
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Replays one conversation file and panics at the first response that differs.
fn replay(name: &str) {
    let conversation = load(name);
    let compared = run(name, &conversation).unwrap_or_else(|e| panic!("{e}"));
    assert!(compared > 0, "{name}: no response compared");
}

/// Replays a conversation against a fresh broker: the number of responses compared, or where
/// and how the first one differed.
fn run(name: &str, conversation: &Conversation) -> Result<usize, String> {
    let env: Vec<(&str, &str)> = conversation
        .broker_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let broker = Broker::start_with(&env);
    let addr = match conversation.protocol {
        Protocol::Kafka => broker.kafka_addr.clone(),
        Protocol::Pulsar => broker.pulsar_addr.clone(),
    };
    let mut normalizer = Normalizer::new(conversation, &broker);
    let mut conns: BTreeMap<u64, Connection> = BTreeMap::new();
    let mut closed = BTreeSet::new();
    let mut compared = 0;
    for event in &conversation.events {
        let at = format!(
            "{name}:{} (conn {}, {})",
            event.line, event.conn, event.label
        );
        match event.direction {
            Direction::ClientToServer => {
                let conn = conns
                    .entry(event.conn)
                    .or_insert_with(|| Connection::open(&addr));
                conn.send(&normalizer.client_frame(&event.frame))
                    .map_err(|e| format!("{at}: send: {e}"))?;
            }
            Direction::ServerToClient => {
                if closed.contains(&event.conn) {
                    continue;
                }
                let conn = conns
                    .get_mut(&event.conn)
                    .ok_or_else(|| format!("{at}: a response on a connection never opened"))?;
                let actual = conn
                    .receive(conversation.protocol)
                    .map_err(|e| format!("{at}: no response: {e}"))?;
                match (conversation.protocol, event.kafka_api_key) {
                    (Protocol::Kafka, KAFKA_JOIN_GROUP) => {
                        normalizer.learn_member_ids(&event.frame, &actual)
                    }
                    (Protocol::Kafka, KAFKA_METADATA) => {
                        normalizer.learn_topic_ids(event.kafka_api_version, &event.frame, &actual)
                    }
                    _ => {}
                }
                let (expected, actual) = normalizer.response_pair(&event.frame, &actual);
                if let Some(diff) = difference(&expected, &actual) {
                    return Err(format!(
                        "{at}: the response differs from the recorded one\n{diff}"
                    ));
                }
                compared += 1;
            }
            Direction::Close => {
                closed.insert(event.conn);
                if let Some(conn) = conns.remove(&event.conn) {
                    let _ = conn.stream.shutdown(Shutdown::Both);
                }
            }
        }
    }
    Ok(compared)
}

/// The bytes of a recorded conversation that legitimately differ in a replay.
struct Normalizer {
    protocol: Protocol,
    /// Recorded member id tail or topic id -> the one this broker generated (same length).
    ids: Vec<(Vec<u8>, Vec<u8>)>,
    /// `127.0.0.1:<this broker's port>` -> `127.0.0.1:<recorded port>` (same length).
    ports: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Normalizer {
    fn new(conversation: &Conversation, broker: &Broker) -> Self {
        let mut ports = Vec::new();
        for (listener, actual) in [
            ("kafka", &broker.kafka_addr),
            ("pulsar", &broker.pulsar_addr),
            ("http", &broker.http_addr),
        ] {
            let Some(recorded) = conversation.ports.get(listener) else {
                continue;
            };
            let actual_port = actual.rsplit(':').next().expect("a port");
            let from = format!("127.0.0.1:{actual_port}").into_bytes();
            let to = format!("127.0.0.1:{recorded}").into_bytes();
            assert_eq!(
                from.len(),
                to.len(),
                "the {listener} port {actual_port} and the recorded {recorded} differ in length \
                 (a port below 10000?)"
            );
            ports.push((from, to));
        }
        Normalizer {
            protocol: conversation.protocol,
            ids: Vec::new(),
            ports,
        }
    }

    /// A recorded client frame as this broker expects it: member ids the recorded broker
    /// generated become the ones this broker generated.
    fn client_frame(&self, frame: &[u8]) -> Vec<u8> {
        replace_all(frame, &self.ids)
    }

    fn learn(&mut self, from: &[u8], to: &[u8]) {
        if !self.ids.iter().any(|(f, _)| f == from) {
            self.ids.push((from.to_vec(), to.to_vec()));
        }
    }

    /// Kafka topic ids (Metadata v10+) are derived from the topic's name and its creation
    /// time, so each broker run hands out other ones; clients send them back (Fetch v13+).
    /// The ids of a recorded Metadata response and of this broker's, paired by position.
    fn learn_topic_ids(&mut self, version: i64, recorded: &[u8], actual: &[u8]) {
        let (Some(from), Some(to)) = (
            metadata_topic_ids(version, recorded),
            metadata_topic_ids(version, actual),
        ) else {
            return; // not v10+, or not decodable: the comparison reports a difference
        };
        for (from, to) in from.iter().zip(&to) {
            self.learn(from, to);
        }
    }

    /// Kafka's member ids are `<client id>-<UUID>` made by the broker from a random seed. A
    /// recorded JoinGroup response and this broker's have the same length and carry the ids at
    /// the same offsets; each pair of UUID-shaped tails found there is learned.
    fn learn_member_ids(&mut self, recorded: &[u8], actual: &[u8]) {
        if recorded.len() != actual.len() {
            return; // the comparison reports it
        }
        let mut i = 0;
        while i + MEMBER_ID_TAIL_BYTES <= recorded.len() {
            if is_member_id_tail(&recorded[i..]) && is_member_id_tail(&actual[i..]) {
                let end = i + MEMBER_ID_TAIL_BYTES;
                self.learn(&recorded[i..end], &actual[i..end]);
                i = end;
            } else {
                i += 1;
            }
        }
    }

    /// The recorded and the actual response, normalized for comparison.
    fn response_pair(&self, recorded: &[u8], actual: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut expected = replace_all(recorded, &self.ids);
        let mut actual = replace_all(actual, &self.ports);
        if self.protocol == Protocol::Pulsar {
            blank_broker_timestamp(&mut expected);
            blank_broker_timestamp(&mut actual);
        }
        (expected, actual)
    }
}

/// The topic ids of a Metadata response frame (header included) of version 10 or later, in
/// order: correlation id, header tags, throttle, brokers, cluster id, controller id, then per
/// topic its error code, name and id.
fn metadata_topic_ids(version: i64, frame: &[u8]) -> Option<Vec<[u8; 16]>> {
    if version < 10 {
        return None;
    }
    let mut r = Reader { b: frame, at: 0 };
    r.skip(4)?; // correlation id
    r.skip_tags()?;
    r.skip(4)?; // throttle_time_ms
    for _ in 0..r.compact_len()? {
        r.skip(4)?; // node id
        r.skip_compact_string()?; // host
        r.skip(4)?; // port
        r.skip_compact_string()?; // rack
        r.skip_tags()?;
    }
    r.skip_compact_string()?; // cluster id
    r.skip(4)?; // controller id
    let mut ids = Vec::new();
    for _ in 0..r.compact_len()? {
        r.skip(2)?; // error code
        r.skip_compact_string()?; // name
        ids.push(r.take(16)?.try_into().ok()?);
        r.skip(1)?; // is_internal
        for _ in 0..r.compact_len()? {
            r.skip(2 + 4 + 4 + 4)?; // error, index, leader, leader epoch
            for _ in 0..3 {
                let n = r.compact_len()?; // replicas, isr, offline replicas
                r.skip(4 * n)?;
            }
            r.skip_tags()?;
        }
        r.skip(4)?; // topic authorized operations
        r.skip_tags()?;
    }
    Some(ids)
}

/// A cursor over Kafka's flexible-version encoding, enough to walk a Metadata response.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(bytes)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    /// A compact array's or string's length (stored plus one; 0 is null, read as empty).
    fn compact_len(&mut self) -> Option<usize> {
        usize::try_from(self.uvarint()?.saturating_sub(1)).ok()
    }

    fn skip_compact_string(&mut self) -> Option<()> {
        let n = self.compact_len()?;
        self.skip(n)
    }

    fn skip_tags(&mut self) -> Option<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?; // tag
            let size = usize::try_from(self.uvarint()?).ok()?;
            self.skip(size)?;
        }
        Some(())
    }
}

/// `-xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx` (lowercase hex), the tail the coordinator's
/// `generate_member_id` appends to the client id.
const MEMBER_ID_TAIL_BYTES: usize = 37;

fn is_member_id_tail(b: &[u8]) -> bool {
    const SHAPE: &[u8] = b"-hhhhhhhh-hhhh-4hhh-vhhh-hhhhhhhhhhhh";
    b.len() >= SHAPE.len()
        && SHAPE.iter().zip(b).all(|(&s, &c)| match s {
            b'h' => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
            b'v' => matches!(c, b'8' | b'9' | b'a' | b'b'),
            other => c == other,
        })
}

fn replace_all(frame: &[u8], pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = frame.to_vec();
    for (from, to) in pairs {
        debug_assert_eq!(from.len(), to.len());
        let mut i = 0;
        while i + from.len() <= out.len() {
            if out[i..].starts_with(from) {
                out[i..i + from.len()].copy_from_slice(to);
                i += from.len();
            } else {
                i += 1;
            }
        }
    }
    out
}

/// Zeroes `broker_timestamp` (field 1) of the broker entry metadata of a Pulsar MESSAGE frame:
/// `[cmd size u32][command][0x0e02][size u32][BrokerEntryMetadata]...`. It is the broker's
/// publish time, a wall-clock reading. Anything else is left as it is.
fn blank_broker_timestamp(frame: &mut [u8]) {
    if pulsar_type(frame) != Some(PULSAR_MESSAGE) {
        return;
    }
    let Some(command_bytes) = frame.get(..4).map(|b| be_u32(b) as usize) else {
        return;
    };
    let magic = 4 + command_bytes;
    if frame.get(magic..magic + 2) != Some(&[0x0e, 0x02][..]) {
        return;
    }
    let Some(size) = frame.get(magic + 2..magic + 6).map(|b| be_u32(b) as usize) else {
        return;
    };
    let start = magic + 6;
    let Some(metadata) = frame.get_mut(start..start + size) else {
        return;
    };
    if metadata.first() == Some(&0x08) {
        for b in metadata[1..].iter_mut() {
            let last = *b & 0x80 == 0;
            *b = 0;
            if last {
                break;
            }
        }
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// `BaseCommand.type` (field 1, a varint) of a frame without its total-size prefix.
fn pulsar_type(frame: &[u8]) -> Option<u64> {
    let command = frame.get(4..)?;
    if command.first() != Some(&0x08) {
        return None;
    }
    let mut value = 0u64;
    for (i, b) in command[1..].iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// `None` when equal, else where they first differ with both frames around it.
fn difference(expected: &[u8], actual: &[u8]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let at = expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(actual.len()));
    let window = |b: &[u8]| {
        let from = at.saturating_sub(16);
        let to = (at + 48).min(b.len());
        hex(&b[from.min(to)..to])
    };
    Some(format!(
        "lengths: recorded {} actual {}; first difference at byte {at}\n\
         recorded [{}..]: {}\nactual   [{}..]: {}\nrecorded: {}\nactual:   {}",
        expected.len(),
        actual.len(),
        at.saturating_sub(16),
        window(expected),
        at.saturating_sub(16),
        window(actual),
        hex(expected),
        hex(actual),
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    fn open(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(RESPONSE_TIMEOUT)).unwrap();
        Connection {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        let size = u32::try_from(frame.len()).expect("frame size");
        let mut bytes = size.to_be_bytes().to_vec();
        bytes.extend_from_slice(frame);
        self.stream.write_all(&bytes)
    }

    /// The next frame the broker sends; Pulsar keep-alives (not part of the recordings) are
    /// answered and skipped.
    fn receive(&mut self, protocol: Protocol) -> std::io::Result<Vec<u8>> {
        loop {
            let frame = self.read_frame()?;
            if protocol == Protocol::Pulsar {
                match pulsar_type(&frame) {
                    Some(PULSAR_PING) => {
                        // BaseCommand { type: PONG, pong: {} }
                        self.send(&[0, 0, 0, 5, 0x08, 0x13, 0x9a, 0x01, 0x00])?;
                        continue;
                    }
                    Some(PULSAR_PONG) => continue,
                    _ => {}
                }
            }
            return Ok(frame);
        }
    }

    fn read_frame(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if self.buf.len() >= 4 {
                let size = be_u32(&self.buf) as usize;
                if size > FRAME_BYTES_MAX {
                    return Err(std::io::Error::other(format!("a frame of {size} bytes")));
                }
                if self.buf.len() >= 4 + size {
                    let frame = self.buf[4..4 + size].to_vec();
                    self.buf.drain(..4 + size);
                    return Ok(frame);
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
