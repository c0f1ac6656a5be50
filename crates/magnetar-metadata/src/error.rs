//! The one error type of the metadata store.

use crate::SessionId;

/// Why a metadata operation failed. Messages are lowercase and name the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("key {key} not found")]
    NotFound { key: String },

    /// A compare-and-set precondition failed. `expected: None` means the key was expected to be
    /// absent (or, for a delete with `Expect::Absent`, that nothing was expected to exist);
    /// `actual: None` means the key does not exist.
    #[error(
        "bad version for key {key}: expected {}, actual {}",
        version_text(.expected),
        version_text(.actual)
    )]
    BadVersion {
        key: String,
        expected: Option<u64>,
        actual: Option<u64>,
    },

    /// The key (shortened if long) and the rule it breaks.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },

    #[error("value for key {key} is {size} bytes, more than the maximum of {max} bytes")]
    ValueTooLarge {
        key: String,
        size: usize,
        max: usize,
    },

    /// The stored record was written in a format this build does not know (a newer release, or
    /// damage to the first byte).
    #[error("record for key {key} has unsupported format version {format_version}")]
    UnsupportedFormat { key: String, format_version: u8 },

    /// The stored record has a known format but cannot be decoded.
    #[error("corrupt record for key {key}: {reason}")]
    CorruptRecord { key: String, reason: String },

    /// The engine underneath failed (I/O, a corrupt database file, a task that did not finish).
    #[error("metadata storage failed: {0}")]
    Storage(String),

    /// A transaction holds more compares or operations than a store accepts in one commit.
    #[error(
        "transaction has {compares} compares and {ops} operations, more than the maximum of {max}"
    )]
    TxnTooLarge {
        compares: usize,
        ops: usize,
        max: usize,
    },

    /// An operation bound a key to a session the store no longer has (expired, closed, or
    /// never opened by this store).
    #[error("session {session} has expired or is unknown")]
    SessionExpired { session: SessionId },

    /// A session TTL outside the accepted range.
    #[error("session ttl of {ttl_ms} ms is outside {min_ms}..={max_ms} ms")]
    InvalidTtl {
        ttl_ms: u64,
        min_ms: u64,
        max_ms: u64,
    },

    /// A transaction carries more bytes of keys and values than a store accepts in one commit.
    #[error("transaction carries {size_bytes} bytes of keys and values, more than the maximum of {max_bytes}")]
    TxnSizeTooLarge { size_bytes: usize, max_bytes: usize },

    #[error("metadata store is closed")]
    Closed,
}

fn version_text(version: &Option<u64>) -> String {
    match version {
        Some(version) => format!("version {version}"),
        None => "absent".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_name_the_key() {
        let errors = [
            MetadataError::NotFound { key: "/a".into() },
            MetadataError::BadVersion {
                key: "/a".into(),
                expected: Some(1),
                actual: None,
            },
            MetadataError::InvalidKey {
                key: "/a".into(),
                reason: "must not end with '/'".into(),
            },
            MetadataError::ValueTooLarge {
                key: "/a".into(),
                size: 2,
                max: 1,
            },
            MetadataError::UnsupportedFormat {
                key: "/a".into(),
                format_version: 9,
            },
            MetadataError::CorruptRecord {
                key: "/a".into(),
                reason: "empty record".into(),
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(text.contains("/a"), "{text}");
            assert!(!text.ends_with('.'), "{text}");
            assert!(text.starts_with(|c: char| !c.is_uppercase()), "{text}");
        }
        assert_eq!(
            MetadataError::BadVersion {
                key: "/a".into(),
                expected: Some(1),
                actual: None
            }
            .to_string(),
            "bad version for key /a: expected version 1, actual absent"
        );
    }
}
