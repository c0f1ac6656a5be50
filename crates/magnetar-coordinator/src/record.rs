//! Kafka's own key/value schemas of `__consumer_offsets`, hand-written (no wire crate may be
//! used below the front end), so a standard decoder of that topic reads what we store.
//!
//! Written: key version 1 `OffsetCommitKey` (`group`, `topic`, `partition`), value version 3
//! `OffsetCommitValue` (`offset`, `leaderEpoch`, `metadata`, `commitTimestamp`); key version 2
//! `GroupMetadataKey` (`group`), value version 3 `GroupMetadataValue` (`protocolType`,
//! `generation`, `protocol`, `leader`, `currentStateTimestamp`, `members` with `memberId`,
//! `groupInstanceId`, `clientId`, `clientHost`, `rebalanceTimeout`, `sessionTimeout`,
//! `subscription`, `assignment`). Read: offset commit values 0 to 3 and group metadata values
//! 0 to 3 (the non-flexible versions). Keys of other record types (KIP-848 consumer groups,
//! share groups) decode as [`DecodedRecord::Unknown`] and are skipped.
//!
//! Encoding is Kafka's classic (non-flexible) encoding: big-endian integers, `string` as an
//! int16 length and UTF-8 bytes (`-1` for null), `bytes` as an int32 length, arrays as an int32
//! count. A tombstone (deleted group or offset) is a record whose value is null.

use bytes::Bytes;

/// Key version of an offset commit record (0 and 1 are both offset commits; we write 1).
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Key version of a group metadata record.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// Value version written for offset commits (adds `leaderEpoch`, drops `expireTimestamp`).
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// Value version written for group metadata (adds `groupInstanceId`).
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// A record that could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

fn codec_error(message: impl Into<String>) -> CodecError {
    CodecError(message.into())
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffsetCommitKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: i64,
    /// `-1` when unknown (and in values before version 3).
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only value version 1 carries it; `-1` otherwise. Read, never written.
    pub expire_timestamp_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupMetadataKey {
    pub group: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state; `-1` when unknown (values before version 2).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadata>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// One record of `__consumer_offsets`; `value: None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorRecord {
    OffsetCommit {
        key: OffsetCommitKey,
        value: Option<OffsetCommitValue>,
    },
    GroupMetadata {
        key: GroupMetadataKey,
        value: Option<GroupMetadataValue>,
    },
}

/// What a stored record decodes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodedRecord {
    Known(CoordinatorRecord),
    /// A record type this coordinator does not use (its key version).
    Unknown(i16),
}

impl CoordinatorRecord {
    pub fn group_id(&self) -> &str {
        match self {
            CoordinatorRecord::OffsetCommit { key, .. } => &key.group,
            CoordinatorRecord::GroupMetadata { key, .. } => &key.group,
        }
    }

    pub fn encode_key(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(64);
        match self {
            CoordinatorRecord::OffsetCommit { key, .. } => {
                put_i16(&mut out, OFFSET_COMMIT_KEY_VERSION);
                put_string(&mut out, &key.group)?;
                put_string(&mut out, &key.topic)?;
                put_i32(&mut out, key.partition);
            }
            CoordinatorRecord::GroupMetadata { key, .. } => {
                put_i16(&mut out, GROUP_METADATA_KEY_VERSION);
                put_string(&mut out, &key.group)?;
            }
        }
        Ok(out)
    }

    /// The encoded value, `None` for a tombstone.
    pub fn encode_value(&self) -> Result<Option<Vec<u8>>, CodecError> {
        let mut out = Vec::with_capacity(64);
        match self {
            CoordinatorRecord::OffsetCommit { value: None, .. }
            | CoordinatorRecord::GroupMetadata { value: None, .. } => return Ok(None),
            CoordinatorRecord::OffsetCommit { value: Some(v), .. } => {
                put_i16(&mut out, OFFSET_COMMIT_VALUE_VERSION);
                put_i64(&mut out, v.offset);
                put_i32(&mut out, v.leader_epoch);
                put_string(&mut out, &v.metadata)?;
                put_i64(&mut out, v.commit_timestamp_ms);
            }
            CoordinatorRecord::GroupMetadata { value: Some(v), .. } => {
                put_i16(&mut out, GROUP_METADATA_VALUE_VERSION);
                put_string(&mut out, &v.protocol_type)?;
                put_i32(&mut out, v.generation);
                put_nullable_string(&mut out, v.protocol.as_deref())?;
                put_nullable_string(&mut out, v.leader.as_deref())?;
                put_i64(&mut out, v.current_state_timestamp_ms);
                put_count(&mut out, v.members.len())?;
                for m in &v.members {
                    put_string(&mut out, &m.member_id)?;
                    put_nullable_string(&mut out, m.group_instance_id.as_deref())?;
                    put_string(&mut out, &m.client_id)?;
                    put_string(&mut out, &m.client_host)?;
                    put_i32(&mut out, m.rebalance_timeout_ms);
                    put_i32(&mut out, m.session_timeout_ms);
                    put_bytes(&mut out, &m.subscription)?;
                    put_bytes(&mut out, &m.assignment)?;
                }
            }
        }
        Ok(Some(out))
    }

    /// Decodes a stored key and value (`None` for a tombstone).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<DecodedRecord, CodecError> {
        let mut k = Reader::new(key);
        let key_version = k.i16()?;
        let record = match key_version {
            0 | 1 => {
                let key = OffsetCommitKey {
                    group: k.string()?,
                    topic: k.string()?,
                    partition: k.i32()?,
                };
                k.finish("offset commit key")?;
                let value = value.map(decode_offset_commit_value).transpose()?;
                CoordinatorRecord::OffsetCommit { key, value }
            }
            2 => {
                let key = GroupMetadataKey { group: k.string()? };
                k.finish("group metadata key")?;
                let value = value.map(decode_group_metadata_value).transpose()?;
                CoordinatorRecord::GroupMetadata { key, value }
            }
            other => return Ok(DecodedRecord::Unknown(other)),
        };
        Ok(DecodedRecord::Known(record))
    }
}

fn decode_offset_commit_value(bytes: &[u8]) -> Result<OffsetCommitValue, CodecError> {
    let mut r = Reader::new(bytes);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(codec_error(format!(
            "unsupported offset commit value version {version}"
        )));
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp_ms = r.i64()?;
    let expire_timestamp_ms = if version == 1 { r.i64()? } else { -1 };
    r.finish("offset commit value")?;
    Ok(OffsetCommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

fn decode_group_metadata_value(bytes: &[u8]) -> Result<GroupMetadataValue, CodecError> {
    let mut r = Reader::new(bytes);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(codec_error(format!(
            "unsupported group metadata value version {version}"
        )));
    }
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.count()?;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = Bytes::copy_from_slice(r.bytes()?);
        let assignment = Bytes::copy_from_slice(r.bytes()?);
        members.push(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            // Version 0 has no rebalance timeout; Kafka uses the session timeout then.
            rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                session_timeout_ms
            } else {
                rebalance_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    r.finish("group metadata value")?;
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

pub(crate) fn put_i16(out: &mut Vec<u8>, v: i16) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub(crate) fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_be_bytes());
}
pub(crate) fn put_string(out: &mut Vec<u8>, s: &str) -> Result<(), CodecError> {
    let len = i16::try_from(s.len())
        .map_err(|_| codec_error(format!("string of {} bytes is too long", s.len())))?;
    put_i16(out, len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}
fn put_nullable_string(out: &mut Vec<u8>, s: Option<&str>) -> Result<(), CodecError> {
    match s {
        Some(s) => put_string(out, s),
        None => {
            put_i16(out, -1);
            Ok(())
        }
    }
}
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), CodecError> {
    let len = i32::try_from(b.len())
        .map_err(|_| codec_error(format!("bytes field of {} bytes is too long", b.len())))?;
    put_i32(out, len);
    out.extend_from_slice(b);
    Ok(())
}
pub(crate) fn put_count(out: &mut Vec<u8>, n: usize) -> Result<(), CodecError> {
    let n = i32::try_from(n).map_err(|_| codec_error(format!("array of {n} items is too long")))?;
    put_i32(out, n);
    Ok(())
}

/// A bounds-checked big-endian reader: malformed input is an error, never a panic.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| {
                codec_error(format!(
                    "truncated: {n} bytes wanted at {} of {}",
                    self.at,
                    self.buf.len()
                ))
            })?;
        let slice = &self.buf[self.at..end];
        self.at = end;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn i8(&mut self) -> Result<i8, CodecError> {
        Ok(i8::from_be_bytes(self.array()?))
    }
    pub(crate) fn i16(&mut self) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub(crate) fn nullable_string(&mut self) -> Result<Option<String>, CodecError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let raw = self.take(len as usize)?;
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| codec_error("string is not valid UTF-8"))
    }

    pub(crate) fn string(&mut self) -> Result<String, CodecError> {
        self.nullable_string()?
            .ok_or_else(|| codec_error("null string in a non-nullable field"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.i32()?;
        if len < 0 {
            // Kafka writes empty, not null, bytes here; accept null as empty.
            return Ok(&[]);
        }
        self.take(len as usize)
    }

    /// An array count, checked against the bytes left (each item takes at least one byte), so a
    /// hostile count cannot make us allocate.
    fn count(&mut self) -> Result<usize, CodecError> {
        let n = self.i32()?;
        if n < 0 {
            return Ok(0);
        }
        let n = n as usize;
        if n > self.remaining() {
            return Err(codec_error(format!(
                "array count {n} exceeds the {} bytes left",
                self.remaining()
            )));
        }
        Ok(n)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }

    pub(crate) fn finish(&self, what: &str) -> Result<(), CodecError> {
        if self.remaining() != 0 {
            return Err(codec_error(format!(
                "{what} has {} trailing bytes",
                self.remaining()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
