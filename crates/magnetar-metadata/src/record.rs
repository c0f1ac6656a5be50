//! The stored record: `[format_version u8][version u64 big-endian][value]`.
//!
//! Every backend that stores bytes (redb now, etcd later) stores this record, so a value always
//! says which format wrote it. A reader that meets a format it does not know returns
//! [`MetadataError::UnsupportedFormat`]; a record too short for its header is
//! [`MetadataError::CorruptRecord`]. Neither panics.

use bytes::Bytes;

use crate::{MetadataError, Versioned, VALUE_SIZE_BYTES_MAX};

/// The format this build writes and the only one it reads.
pub const RECORD_FORMAT_VERSION: u8 = 1;

/// Bytes before the value: format version (1) and modification version (8).
pub const RECORD_HEADER_BYTES: usize = 1 + 8;

/// Encodes a record. The caller has checked the value size and that `version >= 1`; the same
/// checks run again in [`decode`], so a bad record is caught on both sides of the disk.
pub fn encode(version: u64, value: &[u8]) -> Vec<u8> {
    debug_assert!(version >= 1, "versions start at 1");
    debug_assert!(
        value.len() <= VALUE_SIZE_BYTES_MAX,
        "value size checked by the caller"
    );
    let mut record = Vec::with_capacity(RECORD_HEADER_BYTES + value.len());
    record.push(RECORD_FORMAT_VERSION);
    record.extend_from_slice(&version.to_be_bytes());
    record.extend_from_slice(value);
    record
}

/// Decodes the record stored at `key` (named in errors).
pub fn decode(key: &str, record: &[u8]) -> Result<Versioned, MetadataError> {
    let version = decode_version(key, record)?;
    let value = &record[RECORD_HEADER_BYTES..];
    if value.len() > VALUE_SIZE_BYTES_MAX {
        return Err(corrupt(
            key,
            format!(
                "value is {} bytes, more than the maximum of {VALUE_SIZE_BYTES_MAX} bytes",
                value.len()
            ),
        ));
    }
    Ok(Versioned {
        value: Bytes::copy_from_slice(value),
        version,
    })
}

/// Decodes only the header and returns the modification version, without copying the value.
pub fn decode_version(key: &str, record: &[u8]) -> Result<u64, MetadataError> {
    let Some(&format_version) = record.first() else {
        return Err(corrupt(key, "empty record".to_string()));
    };
    if format_version != RECORD_FORMAT_VERSION {
        return Err(MetadataError::UnsupportedFormat {
            key: key.to_string(),
            format_version,
        });
    }
    let Some(header) = record.get(1..RECORD_HEADER_BYTES) else {
        return Err(corrupt(
            key,
            format!(
                "record is {} bytes, shorter than its {RECORD_HEADER_BYTES}-byte header",
                record.len()
            ),
        ));
    };
    let mut version_bytes = [0u8; 8];
    version_bytes.copy_from_slice(header);
    let version = u64::from_be_bytes(version_bytes);
    if version == 0 {
        return Err(corrupt(key, "version 0 (versions start at 1)".to_string()));
    }
    Ok(version)
}

fn corrupt(key: &str, reason: String) -> MetadataError {
    MetadataError::CorruptRecord {
        key: key.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_stable() {
        assert_eq!(encode(258, b"hi"), [1, 0, 0, 0, 0, 0, 0, 1, 2, b'h', b'i']);
    }

    #[test]
    fn bad_records_are_errors() {
        assert!(matches!(
            decode("/k", &[]),
            Err(MetadataError::CorruptRecord { .. })
        ));
        assert_eq!(
            decode("/k", &[7, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(MetadataError::UnsupportedFormat {
                key: "/k".into(),
                format_version: 7
            })
        );
        assert!(matches!(
            decode("/k", &[1, 0, 0]),
            Err(MetadataError::CorruptRecord { .. })
        ));
        assert!(matches!(
            decode("/k", &[1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(MetadataError::CorruptRecord { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(version in 1u64.., value in proptest::collection::vec(any::<u8>(), 0..64)) {
            let decoded = decode("/k", &encode(version, &value)).unwrap();
            prop_assert_eq!(decoded.version, version);
            prop_assert_eq!(&decoded.value[..], &value[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(record in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = decode("/k", &record);
        }
    }
}
