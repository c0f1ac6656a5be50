//! The benchmark header at the start of every payload: the intended send time (from the rate
//! schedule) and the actual send time, both in nanoseconds of the run's `Clock`. Consumers
//! derive end-to-end latency from it; a stalled producer shows up as send delay instead of
//! vanishing from the figures (coordinated omission).

/// `MPF1`, then intended send time (u64 BE), then actual send time (u64 BE).
pub const HEADER_BYTES: usize = 20;
const MAGIC: &[u8; 4] = b"MPF1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub intended_ns: u64,
    pub sent_ns: u64,
}

/// Writes the header over the first `HEADER_BYTES` of `payload` (checked by the workload's
/// minimum message size).
pub fn write_header(payload: &mut [u8], header: Header) {
    payload[..4].copy_from_slice(MAGIC);
    payload[4..12].copy_from_slice(&header.intended_ns.to_be_bytes());
    payload[12..20].copy_from_slice(&header.sent_ns.to_be_bytes());
}

/// Reads the header; `None` for a message this tool did not write.
pub fn read_header(payload: &[u8]) -> Option<Header> {
    if payload.len() < HEADER_BYTES || &payload[..4] != MAGIC {
        return None;
    }
    let intended_ns = u64::from_be_bytes(payload[4..12].try_into().ok()?);
    let sent_ns = u64::from_be_bytes(payload[12..20].try_into().ok()?);
    Some(Header {
        intended_ns,
        sent_ns,
    })
}

/// Small deterministic generator (SplitMix64) for payload bytes and random keys; benchmark
/// payloads need no cryptographic quality.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// The payload template: the file's bytes repeated or cut to `size`, or random bytes.
pub fn template(size: usize, file_bytes: Option<&[u8]>, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; size];
    match file_bytes {
        Some(bytes) if !bytes.is_empty() => {
            for (i, b) in out.iter_mut().enumerate() {
                *b = bytes[i % bytes.len()];
            }
        }
        _ => SplitMix64::new(seed).fill(&mut out),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut p = template(100, None, 7);
        let h = Header {
            intended_ns: 1_700_000_000_123_456_789,
            sent_ns: 1_700_000_000_123_999_999,
        };
        write_header(&mut p, h);
        assert_eq!(read_header(&p), Some(h));
        assert_eq!(p.len(), 100);
        assert_eq!(read_header(b"MPF1short"), None);
        assert_eq!(read_header(&[0u8; 64]), None);
    }

    #[test]
    fn template_repeats_the_file() {
        assert_eq!(template(5, Some(b"ab"), 0), b"ababa");
        let a = template(64, None, 1);
        assert_ne!(a, vec![0u8; 64]);
        assert_eq!(a, template(64, None, 1));
    }
}
