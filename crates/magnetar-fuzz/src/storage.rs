//! Storage: the entry header codec ([`entry_header`]) and a managed ledger's recovery of a
//! segment written by someone else, torn or corrupt ([`segment_recovery`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use magnetar_storage::entry::{crc_matches, decode_header, encode_entry};
use magnetar_storage::{
    EntryHeader, LedgerConfig, ManagedLedger, ManualClock, PayloadFormat, ProducerInfo,
    SegmentFile, SegmentStore, StorageError, ENTRY_HEADER_LEN,
};

/// Input: an encoded entry (header, payload).
///
/// Properties of a header that decodes: its index range does not overflow and holds a message;
/// encoded again it decodes to the same header; when the input holds the whole payload and its
/// CRC matches, our encoding of it is byte for byte the input (producer fields canonical).
pub fn entry_header(data: &[u8]) {
    let Ok((header, crc)) = decode_header(data) else {
        return;
    };
    assert!(header.message_count >= 1);
    assert!(header
        .first_index
        .checked_add(u64::from(header.message_count))
        .is_some());
    let len = header.payload_len as usize;
    let payload = data
        .get(ENTRY_HEADER_LEN..ENTRY_HEADER_LEN + len)
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| vec![0; len.min(1 << 16)]);
    let header = EntryHeader {
        payload_len: payload.len() as u32,
        ..header
    };
    let mut out = Vec::new();
    encode_entry(&header, &payload, &mut out);
    let (again, again_crc) = decode_header(&out).expect("an encoded header decodes");
    assert_eq!(again, header, "header round trip");
    assert!(crc_matches(&out[..ENTRY_HEADER_LEN], &payload, again_crc));
    let whole = data.len() >= ENTRY_HEADER_LEN + len;
    let canonical = header.producer.is_some() || data[40..46] == [0xff; 6];
    if whole && canonical && crc_matches(&data[..ENTRY_HEADER_LEN], &payload, crc) {
        assert_eq!(
            &out[..],
            &data[..ENTRY_HEADER_LEN + len],
            "encoding differs"
        );
    }
}

/// An in-memory segment store: recovery reads and truncates these instead of files.
#[derive(Default)]
struct MemoryStore {
    segments: Mutex<BTreeMap<u64, Arc<MemoryFile>>>,
    /// Index files of sealed segments.
    indexes: Mutex<BTreeMap<u64, Vec<u8>>>,
}

#[derive(Default)]
struct MemoryFile {
    bytes: Mutex<Vec<u8>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SegmentStore for MemoryStore {
    fn list(&self) -> Result<Vec<u64>, StorageError> {
        Ok(lock(&self.segments).keys().copied().collect())
    }
    fn create(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError> {
        let file = Arc::new(MemoryFile::default());
        lock(&self.segments).insert(base_index, file.clone());
        Ok(file)
    }
    fn open(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError> {
        match lock(&self.segments).get(&base_index) {
            Some(f) => Ok(f.clone()),
            None => Err(StorageError::InvalidEntry {
                reason: format!("no segment {base_index}"),
            }),
        }
    }
    fn delete(&self, base_index: u64) -> Result<(), StorageError> {
        lock(&self.segments).remove(&base_index);
        lock(&self.indexes).remove(&base_index);
        Ok(())
    }
    fn write_index(&self, base_index: u64, bytes: &[u8], _sync: bool) -> Result<(), StorageError> {
        lock(&self.indexes).insert(base_index, bytes.to_vec());
        Ok(())
    }
    fn read_index(&self, base_index: u64, max_bytes: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let limit = usize::try_from(max_bytes.saturating_add(1)).unwrap_or(usize::MAX);
        Ok(lock(&self.indexes)
            .get(&base_index)
            .map(|b| b[..b.len().min(limit)].to_vec()))
    }
}

impl SegmentFile for MemoryFile {
    fn len(&self) -> u64 {
        lock(&self.bytes).len() as u64
    }
    fn read_exact_at(&self, file_offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let bytes = lock(&self.bytes);
        let start = usize::try_from(file_offset).unwrap_or(usize::MAX);
        match bytes.get(start..start.saturating_add(buf.len())) {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(StorageError::InvalidEntry {
                reason: "read past the end".into(),
            }),
        }
    }
    fn append(&self, data: &[u8]) -> Result<(), StorageError> {
        lock(&self.bytes).extend_from_slice(data);
        Ok(())
    }
    fn sync(&self) -> Result<(), StorageError> {
        Ok(())
    }
    fn truncate(&self, len: u64) -> Result<(), StorageError> {
        lock(&self.bytes).truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(())
    }
}

/// Builds segment bytes from the input: a sequence of operations, each a byte `op` and a
/// byte `arg`. `op % 4`: 0 a valid entry (count `1 + arg % 4`, payload of `arg % 32` bytes of
/// the input); 1 an entry whose first index skips ahead by `1 + arg`; 2 a valid entry with one
/// byte flipped at `arg` (header or payload); 3 `arg % 32` raw bytes of the input (a torn or
/// foreign tail). Returns the bytes.
fn build_segment(base: u64, mut input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = base;
    let take = |input: &mut &[u8], n: usize| -> Vec<u8> {
        let n = n.min(input.len());
        let (a, b) = input.split_at(n);
        *input = b;
        a.to_vec()
    };
    while let [op, arg, rest @ ..] = input {
        let (op, arg) = (*op, *arg);
        input = rest;
        let payload = take(&mut input, usize::from(arg % 32));
        let header = |first_index: u64, count: u32| EntryHeader {
            first_index,
            message_count: count,
            publish_time_ms: 1,
            max_timestamp_ms: 2,
            format: if op & 4 == 0 {
                PayloadFormat::Kafka
            } else {
                PayloadFormat::Pulsar
            },
            producer: (op & 8 != 0).then_some(ProducerInfo {
                producer_id: 5,
                epoch: 1,
                base_sequence: 3,
                txn: Default::default(),
            }),
            payload_len: payload.len() as u32,
        };
        match op % 4 {
            0 => {
                let count = 1 + u32::from(arg % 4);
                encode_entry(&header(next, count), &payload, &mut out);
                next += u64::from(count);
            }
            1 => encode_entry(&header(next + 1 + u64::from(arg), 1), &payload, &mut out),
            2 => {
                let start = out.len();
                encode_entry(&header(next, 1), &payload, &mut out);
                let at = start + usize::from(arg) % (out.len() - start);
                out[at] ^= 0x5a;
                next += 1;
            }
            _ => out.extend_from_slice(&payload),
        }
    }
    out
}

/// The valid prefix of a tail segment, computed independently of the ledger: entries follow
/// each other with continuous indexes from `base`, headers well formed, CRCs matching.
/// Returns (entries as (header, payload), bytes of the prefix).
fn reference_scan(base: u64, bytes: &[u8]) -> (Vec<(EntryHeader, Vec<u8>)>, usize) {
    let mut pos = 0;
    let mut next = base;
    let mut entries = Vec::new();
    while let Some(h) = bytes.get(pos..pos + ENTRY_HEADER_LEN) {
        // Byte 3 is the transaction mark: 0 always allowed, 1..=3 only with a producer (id != -1).
        let has_producer = h[32..40] != [0xFF; 8];
        let ok_fields =
            h[0] == 0xE5 && h[1] == 1 && h[2] <= 1 && (h[3] == 0 || (h[3] <= 3 && has_producer));
        let first = u64::from_le_bytes(h[4..12].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(h[46..50].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(h[50..54].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(pos + ENTRY_HEADER_LEN..pos + ENTRY_HEADER_LEN + len) else {
            break;
        };
        let crc_ok = crc32c::crc32c_append(crc32c::crc32c(&h[..50]), payload) == crc;
        if !(ok_fields && count >= 1 && first == next && crc_ok) {
            break;
        }
        let Some(end) = first.checked_add(u64::from(count)) else {
            break;
        };
        let (header, _) = decode_header(h).expect("reference accepts only good headers");
        entries.push((header, payload.to_vec()));
        next = end;
        pos += ENTRY_HEADER_LEN + len;
    }
    (entries, pos)
}

fn temp_root() -> &'static tempfile::TempDir {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

/// Input: a flags byte (bit 0: a sealed valid segment precedes the tail), a byte for the base
/// index, then operations ([`build_segment`]) that write the tail segment.
///
/// Properties after the ledger opens (recovery): the tail is cut to exactly the valid prefix
/// an independent scan finds; the end index is the prefix's; reading the ledger from its start
/// returns exactly the prefix's entries (headers and payloads) and nothing past it.
pub fn segment_recovery(data: &[u8]) {
    let [flags, base, ops @ ..] = data else {
        return;
    };
    let store = Arc::new(MemoryStore::default());
    let mut expected = Vec::new();
    let mut tail_base = u64::from(*base);
    if flags & 1 != 0 {
        // A sealed segment [0, base) of valid entries (one message each).
        let mut sealed = Vec::new();
        for i in 0..tail_base {
            let header = EntryHeader {
                first_index: i,
                message_count: 1,
                publish_time_ms: 1,
                max_timestamp_ms: 1,
                format: PayloadFormat::Kafka,
                producer: None,
                payload_len: 1,
            };
            encode_entry(&header, &[i as u8], &mut sealed);
            expected.push((header, vec![i as u8]));
        }
        if tail_base > 0 {
            store
                .create(0)
                .expect("create")
                .append(&sealed)
                .expect("append");
        } else {
            tail_base = 0;
        }
    }
    let tail = build_segment(tail_base, ops);
    store
        .create(tail_base)
        .expect("create")
        .append(&tail)
        .expect("append");
    let (prefix, prefix_len) = reference_scan(tail_base, &tail);
    expected.extend(prefix);
    let end = expected.last().map_or(tail_base, |(h, _)| h.end_index());

    static N: AtomicU64 = AtomicU64::new(0);
    let dir = temp_root()
        .path()
        .join(N.fetch_add(1, Ordering::Relaxed).to_string());
    crate::block_on(async {
        let ledger = ManagedLedger::open_with_store(
            &dir,
            LedgerConfig::default(),
            Arc::new(ManualClock::new(0)),
            store.clone(),
        )
        .expect("a ledger opens over any tail segment");
        assert_eq!(ledger.end_index(), end, "end index after recovery");
        let tail_len = store.open(tail_base).expect("tail").len();
        assert_eq!(tail_len, prefix_len as u64, "tail cut to the valid prefix");
        let mut got = Vec::new();
        let mut from = ledger.start_index();
        while from < ledger.end_index() && got.len() <= expected.len() {
            let entries = ledger
                .read(from, usize::MAX, 1024)
                .await
                .expect("the recovered prefix reads");
            let Some(last) = entries.last() else { break };
            from = last.header.end_index();
            got.extend(entries.into_iter().map(|e| (e.header, e.payload.to_vec())));
        }
        assert_eq!(got, expected, "entries read after recovery");
        ledger.close().await.expect("close");
    });
    let _ = std::fs::remove_dir_all(&dir);
}
