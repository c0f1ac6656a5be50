//! Opaque snapshots of the caller's state (`<index>.snapshot`), written atomically up to the
//! readable end, newest [`SNAPSHOTS_KEPT`] kept.

use super::*;

/// Suffix of snapshot file names; the stem is the index the snapshot is valid up to (every
/// entry below it is covered), zero-padded to 20 digits.
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Snapshots kept per ledger: writing one deletes all but the newest this many.
pub const SNAPSHOTS_KEPT: usize = 2;
/// Largest snapshot blob accepted (written or read).
pub const SNAPSHOT_BYTES_MAX: u64 = 64 << 20;
const SNAPSHOT_MAGIC: &[u8; 4] = b"MGPS";
const SNAPSHOT_VERSION: u8 = 1;
/// Magic, version, reserved (8) + index (8) + blob length (4); the CRC32C of all that and the
/// blob follows the blob.
const SNAPSHOT_HEADER_LEN: usize = 20;

impl ManagedLedger {
    /// Stores an opaque `blob` (the caller's state covering every entry below `index`) as a
    /// snapshot named by `index`, then deletes all but the newest [`SNAPSHOTS_KEPT`]. Refuses
    /// an `index` beyond the readable end: a snapshot must never cover entries a crash could
    /// still lose. The file is written atomically and fsynced.
    pub async fn write_snapshot(&self, index: u64, blob: Bytes) -> Result<(), StorageError> {
        let end = self.end_index();
        if index > end || index < self.start_index() {
            return Err(StorageError::IndexOutOfRange {
                requested: index,
                start: self.start_index(),
                end,
            });
        }
        if blob.len() as u64 > SNAPSHOT_BYTES_MAX {
            return Err(StorageError::EntryTooLarge {
                size: blob.len() as u64,
                max: SNAPSHOT_BYTES_MAX,
            });
        }
        let dir = self.dir.clone();
        let _admin = self.admin.lock().await;
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + blob.len() + 4);
            out.extend_from_slice(SNAPSHOT_MAGIC);
            out.extend_from_slice(&[SNAPSHOT_VERSION, 0, 0, 0]);
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&(blob.len() as u32).to_le_bytes());
            out.extend_from_slice(&blob);
            let crc = crc32c::crc32c(&out);
            out.extend_from_slice(&crc.to_le_bytes());
            atomic_write(&dir, &snapshot_file_name(index), &out)?;
            let indexes = list_snapshots(&dir)?;
            let old = indexes.len().saturating_sub(SNAPSHOTS_KEPT);
            for i in &indexes[..old] {
                remove_snapshot(&dir, *i)?;
            }
            Ok(())
        })
        .await?
    }

    /// The valid snapshots, newest first: (index, blob). A file that does not check out (bad
    /// magic, version or CRC, truncated, or beyond the readable end) is deleted with a warning
    /// and skipped, so the caller falls back to an older one or to the log.
    pub async fn snapshots(&self) -> Result<Vec<(u64, Bytes)>, StorageError> {
        let dir = self.dir.clone();
        let end = self.end_index();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for index in list_snapshots(&dir)?.into_iter().rev() {
                match read_snapshot(&dir, index) {
                    Ok(_) if index > end => {
                        tracing::warn!(dir = %dir.display(), file = %snapshot_file_name(index), end_index = end, "deleting snapshot beyond the end of the log");
                        remove_snapshot(&dir, index)?;
                    }
                    Ok(blob) => out.push((index, blob)),
                    Err(reason) => {
                        tracing::warn!(dir = %dir.display(), file = %snapshot_file_name(index), reason = %reason, "deleting invalid snapshot");
                        remove_snapshot(&dir, index)?;
                    }
                }
            }
            Ok(out)
        })
        .await?
    }
}

fn snapshot_file_name(index: u64) -> String {
    format!("{index:020}{SNAPSHOT_SUFFIX}")
}

/// Indexes of the snapshot files in `dir`, ascending.
pub(super) fn list_snapshots(dir: &Path) -> Result<Vec<u64>, StorageError> {
    let rd = std::fs::read_dir(dir).map_err(|e| StorageError::io("list directory", dir, e))?;
    let mut out = Vec::new();
    for item in rd {
        let item = item.map_err(|e| StorageError::io("list directory", dir, e))?;
        let name = item.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SNAPSHOT_SUFFIX)) else {
            continue;
        };
        if let (20, Ok(index)) = (stem.len(), stem.parse::<u64>()) {
            out.push(index);
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub(super) fn remove_snapshot(dir: &Path, index: u64) -> Result<(), StorageError> {
    let path = dir.join(snapshot_file_name(index));
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("delete snapshot", &path, e)),
    }
}

/// The blob of snapshot `index`, or why it is not valid.
fn read_snapshot(dir: &Path, index: u64) -> Result<Bytes, String> {
    use std::io::Read;
    let path = dir.join(snapshot_file_name(index));
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| {
            f.take(SNAPSHOT_BYTES_MAX + SNAPSHOT_HEADER_LEN as u64 + 5)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() < SNAPSHOT_HEADER_LEN + 4 {
        return Err(format!("truncated: {} bytes", bytes.len()));
    }
    if &bytes[..4] != SNAPSHOT_MAGIC {
        return Err("bad magic".to_string());
    }
    if bytes[4] != SNAPSHOT_VERSION {
        return Err(format!("unsupported format version {}", bytes[4]));
    }
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(&bytes[16..20]);
    let blob_len = u32::from_le_bytes(len4) as usize;
    if bytes.len() != SNAPSHOT_HEADER_LEN + blob_len + 4 {
        return Err(format!(
            "truncated: {} bytes for a blob of {blob_len}",
            bytes.len()
        ));
    }
    let body_end = bytes.len() - 4;
    len4.copy_from_slice(&bytes[body_end..]);
    if crc32c::crc32c(&bytes[..body_end]) != u32::from_le_bytes(len4) {
        return Err("crc mismatch".to_string());
    }
    let mut idx8 = [0u8; 8];
    idx8.copy_from_slice(&bytes[8..16]);
    if u64::from_le_bytes(idx8) != index {
        return Err("index in the file differs from its name".to_string());
    }
    Ok(Bytes::from(bytes).slice(SNAPSHOT_HEADER_LEN..body_end))
}

/// Deletes snapshots beyond the recovered end: they cover entries a crash lost (possible
/// under the `interval` and `os` fsync policies), so they must never be used.
pub(super) fn discard_snapshots_beyond(dir: &Path, end_index: u64) -> Result<(), StorageError> {
    for index in list_snapshots(dir)? {
        if index > end_index {
            tracing::warn!(dir = %dir.display(), file = %snapshot_file_name(index), end_index, "deleting snapshot beyond the recovered end of the log");
            remove_snapshot(dir, index)?;
        }
    }
    Ok(())
}
