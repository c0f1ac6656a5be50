//! A 256 MiB gzip bomb (a small batch whose records decompress to 256 MiB) is refused by
//! produce validation without the decompressed records ever being held: a counting allocator
//! measures the most bytes allocated at once while the validator runs. Its own test binary, so
//! no other test's allocations are counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{BufMut, BytesMut};
use kafka_protocol::ResponseError;
use magnetar_kafka::validate::{validate_batch, Limits, Refusal};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[allow(
    unsafe_code,
    reason = "a counting allocator around System, to measure the peak"
)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1024 * 1024;
const RECORDS: usize = 256;
const VALUE_BYTES: usize = MIB;

fn varint(out: &mut BytesMut, v: i64) {
    let mut raw = ((v << 1) ^ (v >> 63)) as u64;
    while raw >= 0x80 {
        out.put_u8((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.put_u8(raw as u8);
}

/// 256 well-formed records of 1 MiB of zeros each (offset deltas 0..256), gzip-compressed as
/// they are written, so the test never holds the 256 MiB either.
fn bomb() -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 64 * 1024];
    for i in 0..RECORDS {
        let mut head = BytesMut::new();
        head.put_i8(0);
        varint(&mut head, 0); // timestamp delta
        varint(&mut head, i as i64); // offset delta
        varint(&mut head, -1); // null key
        varint(&mut head, VALUE_BYTES as i64);
        let mut record = BytesMut::new();
        // body: head, value, header count (1 byte)
        varint(&mut record, (head.len() + VALUE_BYTES + 1) as i64);
        record.put_slice(&head);
        gz.write_all(&record).unwrap();
        for _ in 0..VALUE_BYTES / zeros.len() {
            gz.write_all(&zeros).unwrap();
        }
        gz.write_all(&[0]).unwrap(); // no headers
    }
    let body = gz.finish().unwrap();
    let mut b = BytesMut::new();
    b.put_i64(0);
    b.put_i32((61 - 12 + body.len()) as i32);
    b.put_i32(0);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(1); // gzip
    b.put_i32(RECORDS as i32 - 1);
    b.put_i64(1000);
    b.put_i64(1000);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(RECORDS as i32);
    b.put_slice(&body);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.to_vec()
}

#[test]
fn a_256_mib_gzip_bomb_is_refused_without_allocating_it() {
    let batch = bomb();
    assert!(
        batch.len() < 2 * MIB,
        "the bomb is a small batch ({} bytes)",
        batch.len()
    );
    let limits = Limits::default();
    assert!(limits.decompressed_bytes_max < RECORDS * VALUE_BYTES);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let refusal = validate_batch(&batch, &limits).unwrap_err();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(
        refusal,
        Refusal::TooLarge {
            bytes_max: limits.decompressed_bytes_max
        }
    );
    assert_eq!(refusal.code(), ResponseError::MessageTooLarge.code());
    // One record (1 MiB) and the decoder's buffers, never the 64 MiB cap, let alone 256 MiB.
    assert!(
        peak < 4 * MIB,
        "validation allocated {peak} bytes at its peak"
    );

    // Under a cap that fits, the same bomb passes, still one record at a time.
    let roomy = Limits {
        decompressed_bytes_max: RECORDS * (VALUE_BYTES + 16),
        ..limits
    };
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let validated = validate_batch(&batch, &roomy).unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(validated.header.record_count, RECORDS as i32);
    assert!(validated.records_bytes > RECORDS * VALUE_BYTES);
    assert!(
        peak < 4 * MIB,
        "validation allocated {peak} bytes at its peak"
    );
}
