//! Where segment bytes live: the seam for local files now and object storage later.
//!
//! All methods block; the ledger calls them from blocking threads only. Implementations must
//! pass [`segment_store_conformance`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::index_file::index_file_name;
use crate::StorageError;

/// Suffix of segment file names; the stem is the base index, zero-padded to 20 digits.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix added to a segment or index file name while log compaction stages its rewritten copy.
pub const STAGED_SUFFIX: &str = ".cleaned";

/// File name of the segment whose first entry has `base_index`.
pub fn segment_file_name(base_index: u64) -> String {
    format!("{base_index:020}{SEGMENT_SUFFIX}")
}

/// A collection of segments, each named by its base index.
pub trait SegmentStore: Send + Sync + 'static {
    /// Base indexes of all segments, ascending.
    fn list(&self) -> Result<Vec<u64>, StorageError>;
    /// Creates a new empty segment; fails if it exists. Durable once this returns.
    fn create(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError>;
    fn open(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError>;
    /// Removes a segment and its index file, if any; readers holding it may finish.
    fn delete(&self, base_index: u64) -> Result<(), StorageError>;
    /// Stores the index file of sealed segment `base_index` (see [`crate::index_file`]),
    /// replacing any previous one atomically; durable once this returns if `sync`.
    fn write_index(&self, base_index: u64, bytes: &[u8], sync: bool) -> Result<(), StorageError>;
    /// The index file of segment `base_index`, `None` if there is none. Reads at most
    /// `max_bytes + 1` bytes, so a longer file shows up as too long, not as a huge allocation.
    fn read_index(&self, base_index: u64, max_bytes: u64) -> Result<Option<Vec<u8>>, StorageError>;
    /// Whether this store can stage rewritten segments for log compaction (the `*_staged`
    /// methods below). Stores that cannot are never compacted.
    fn can_compact(&self) -> bool {
        false
    }
    /// Creates (replacing any leftover) the staged copy of segment `base_index`: written by
    /// compaction, invisible to [`SegmentStore::list`] and `open` until committed.
    fn create_staged(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError> {
        Err(StorageError::Compaction {
            reason: format!("this segment store cannot stage segment {base_index}"),
        })
    }
    /// Stores the index file of the staged segment `base_index`, durably.
    fn write_staged_index(&self, base_index: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let _ = bytes;
        self.create_staged(base_index).map(|_| ())
    }
    /// Replaces segment `base_index` and its index file by their staged copies (each an atomic
    /// rename). Idempotent: a staged file already moved is skipped, so recovery can repeat it.
    /// Without `has_index` (an empty rewritten segment has none) the old index file is
    /// removed instead. Call [`SegmentStore::sync_staged`] after the last one.
    fn commit_staged(&self, base_index: u64, has_index: bool) -> Result<(), StorageError> {
        let _ = has_index;
        self.create_staged(base_index).map(|_| ())
    }
    /// Deletes a segment a compaction swap replaced. The swap is past its commit point, so this
    /// must not fail on what it cannot reach: a store with remote copies drops the segment from
    /// its own records (durably) and deletes the remote objects on a best-effort basis.
    fn delete_replaced(&self, base_index: u64) -> Result<(), StorageError> {
        self.delete(base_index)
    }
    /// Makes the renames and deletions of a compaction swap durable.
    fn sync_staged(&self) -> Result<(), StorageError> {
        Ok(())
    }
    /// Removes every staged file (an uncommitted compaction's leftovers).
    fn discard_staged(&self) -> Result<(), StorageError> {
        Ok(())
    }
    /// Whether this store offloads sealed segments to object storage.
    fn can_offload(&self) -> bool {
        false
    }
    /// Offloads now the sealed segments that end at or before `before_index` (an operator's
    /// request; Pulsar's `topics offload`). `None`: this store does not offload.
    fn offload_before(&self, before_index: u64) -> Option<Result<OffloadOutcome, StorageError>> {
        let _ = before_index;
        None
    }
}

/// What [`SegmentStore::offload_before`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadOutcome {
    /// Segments uploaded (and their local copies deleted) by this call.
    pub segments: u64,
    pub bytes: u64,
    /// The first message index still only on local disk after it (the start of the oldest
    /// local segment, or of the active one).
    pub first_local_index: u64,
}

/// One segment's bytes. The ledger has at most one writer per segment at a time.
pub trait SegmentFile: Send + Sync + 'static {
    /// Current length in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// True for an immutable copy in object storage (an offloaded segment), whose length was
    /// verified at upload and whose reads are remote: opening trusts its index file without
    /// reading the segment.
    fn is_remote(&self) -> bool {
        false
    }
    /// Fills `buf` from `file_offset`; fails if the segment is shorter.
    fn read_exact_at(&self, file_offset: u64, buf: &mut [u8]) -> Result<(), StorageError>;
    /// `len` bytes from `file_offset` in a new buffer; fails if the segment is shorter. The
    /// default zero-fills the buffer and calls [`SegmentFile::read_exact_at`]; a local file
    /// reads straight into the buffer's uninitialised capacity (the scans' and fetches' reads
    /// are not preceded by a memset of what the read overwrites).
    fn read_vec_at(&self, file_offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0u8; len];
        self.read_exact_at(file_offset, &mut buf)?;
        Ok(buf)
    }
    /// Appends `data` at the end.
    fn append(&self, data: &[u8]) -> Result<(), StorageError>;
    /// Makes appended data durable (fdatasync).
    fn sync(&self) -> Result<(), StorageError>;
    /// Cuts the segment to `len` bytes and makes that durable.
    fn truncate(&self, len: u64) -> Result<(), StorageError>;
}

/// Segments as files in one directory.
#[derive(Debug)]
pub struct LocalSegmentStore {
    dir: PathBuf,
}

impl LocalSegmentStore {
    pub fn new(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create directory", dir, e))?;
        Ok(LocalSegmentStore {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, base_index: u64) -> PathBuf {
        self.dir.join(segment_file_name(base_index))
    }

    fn index_path(&self, base_index: u64) -> PathBuf {
        self.dir.join(index_file_name(base_index))
    }

    fn staged(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(STAGED_SUFFIX);
        PathBuf::from(name)
    }
}

/// Renames `from` over `to`; `Ok(false)` when `from` does not exist (already renamed).
fn rename_if_present(from: &Path, to: &Path) -> Result<bool, StorageError> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("rename staged file", to, e)),
    }
}

/// fsync a directory so a created, renamed or deleted name inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("sync directory", dir, e))
}

impl SegmentStore for LocalSegmentStore {
    fn list(&self) -> Result<Vec<u64>, StorageError> {
        let rd = std::fs::read_dir(&self.dir)
            .map_err(|e| StorageError::io("list directory", &self.dir, e))?;
        let mut bases = Vec::new();
        for item in rd {
            let item = item.map_err(|e| StorageError::io("list directory", &self.dir, e))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(SEGMENT_SUFFIX) {
                match stem.parse::<u64>() {
                    Ok(base) if stem.len() == 20 => bases.push(base),
                    _ => tracing::warn!(
                        file = name,
                        "ignoring file with a segment suffix but no valid base index"
                    ),
                }
            }
        }
        bases.sort_unstable();
        Ok(bases)
    }

    fn create(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError> {
        let path = self.path(base_index);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StorageError::io("create segment", &path, e))?;
        sync_dir(&self.dir)?;
        Ok(Arc::new(LocalSegmentFile {
            file,
            path,
            len: AtomicU64::new(0),
        }))
    }

    fn open(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError> {
        let path = self.path(base_index);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io("open segment", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StorageError::io("stat segment", &path, e))?
            .len();
        Ok(Arc::new(LocalSegmentFile {
            file,
            path,
            len: AtomicU64::new(len),
        }))
    }

    fn delete(&self, base_index: u64) -> Result<(), StorageError> {
        let path = self.path(base_index);
        std::fs::remove_file(&path).map_err(|e| StorageError::io("delete segment", &path, e))?;
        let index = self.index_path(base_index);
        match std::fs::remove_file(&index) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io("delete segment index", &index, e)),
        }
        sync_dir(&self.dir)
    }

    fn write_index(&self, base_index: u64, bytes: &[u8], sync: bool) -> Result<(), StorageError> {
        use std::io::Write;
        let path = self.index_path(base_index);
        let tmp = path.with_extension("idx.tmp");
        let mut f =
            File::create(&tmp).map_err(|e| StorageError::io("create temp file", &tmp, e))?;
        f.write_all(bytes)
            .and_then(|()| if sync { f.sync_all() } else { Ok(()) })
            .map_err(|e| StorageError::io("write segment index", &tmp, e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| StorageError::io("rename segment index", &path, e))?;
        if sync {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn can_compact(&self) -> bool {
        true
    }

    fn create_staged(&self, base_index: u64) -> Result<Arc<dyn SegmentFile>, StorageError> {
        let path = Self::staged(&self.path(base_index));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StorageError::io("create staged segment", &path, e))?;
        Ok(Arc::new(LocalSegmentFile {
            file,
            path,
            len: AtomicU64::new(0),
        }))
    }

    fn write_staged_index(&self, base_index: u64, bytes: &[u8]) -> Result<(), StorageError> {
        use std::io::Write;
        let path = Self::staged(&self.index_path(base_index));
        let mut f =
            File::create(&path).map_err(|e| StorageError::io("create staged index", &path, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| StorageError::io("write staged index", &path, e))
    }

    fn commit_staged(&self, base_index: u64, has_index: bool) -> Result<(), StorageError> {
        // The index first: a crash between the two renames leaves the new index beside the old
        // segment, which recovery (repeating this) fixes; opening checks an index against its
        // segment anyway.
        let index = self.index_path(base_index);
        if has_index {
            rename_if_present(&Self::staged(&index), &index)?;
        } else {
            match std::fs::remove_file(&index) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("delete segment index", &index, e)),
            }
        }
        let seg = self.path(base_index);
        rename_if_present(&Self::staged(&seg), &seg)?;
        Ok(())
    }

    fn sync_staged(&self) -> Result<(), StorageError> {
        sync_dir(&self.dir)
    }

    fn discard_staged(&self) -> Result<(), StorageError> {
        let rd = std::fs::read_dir(&self.dir)
            .map_err(|e| StorageError::io("list directory", &self.dir, e))?;
        let mut removed = false;
        for item in rd {
            let item = item.map_err(|e| StorageError::io("list directory", &self.dir, e))?;
            let name = item.file_name();
            if name.to_str().is_some_and(|n| n.ends_with(STAGED_SUFFIX)) {
                let path = item.path();
                std::fs::remove_file(&path)
                    .map_err(|e| StorageError::io("remove staged file", &path, e))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn read_index(&self, base_index: u64, max_bytes: u64) -> Result<Option<Vec<u8>>, StorageError> {
        use std::io::Read;
        let path = self.index_path(base_index);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io("open segment index", &path, e)),
        };
        let mut out = Vec::new();
        f.take(max_bytes.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| StorageError::io("read segment index", &path, e))?;
        Ok(Some(out))
    }
}

/// A local segment file, read and written with positional I/O.
#[derive(Debug)]
pub struct LocalSegmentFile {
    file: File,
    path: PathBuf,
    len: AtomicU64,
}

impl SegmentFile for LocalSegmentFile {
    fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    fn read_exact_at(&self, file_offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.file
            .read_exact_at(buf, file_offset)
            .map_err(|e| StorageError::io("read segment", &self.path, e))
    }

    fn read_vec_at(&self, file_offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut buf = Vec::with_capacity(len);
        while buf.len() < len {
            let at = file_offset + buf.len() as u64;
            // rustix's pread fills the spare capacity and sets the length to what was read:
            // no unsafe here and no zeroing first.
            match rustix::io::pread(&self.file, rustix::buffer::spare_capacity(&mut buf), at) {
                Ok(0) => {
                    let eof = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "read to {} past the segment's end",
                            file_offset + len as u64
                        ),
                    );
                    return Err(StorageError::io("read segment", &self.path, eof));
                }
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(StorageError::io("read segment", &self.path, e.into())),
            }
        }
        // The allocator may have given more capacity than asked, and pread may have used it.
        buf.truncate(len);
        Ok(buf)
    }

    fn append(&self, data: &[u8]) -> Result<(), StorageError> {
        let at = self.len();
        self.file
            .write_all_at(data, at)
            .map_err(|e| StorageError::io("write segment", &self.path, e))?;
        self.len.store(at + data.len() as u64, Ordering::Release);
        Ok(())
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(|e| StorageError::io("sync segment", &self.path, e))
    }

    fn truncate(&self, len: u64) -> Result<(), StorageError> {
        self.file
            .set_len(len)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| StorageError::io("truncate segment", &self.path, e))?;
        self.len.store(len, Ordering::Release);
        Ok(())
    }
}

/// The contract every [`SegmentStore`] must meet. Panics (as a test) on the first violation.
/// Give it an empty store.
pub fn segment_store_conformance(store: &dyn SegmentStore) {
    assert_eq!(
        store.list().expect("list"),
        Vec::<u64>::new(),
        "a new store is empty"
    );
    let a = store.create(0).expect("create 0");
    assert!(a.is_empty());
    assert!(
        store.create(0).is_err(),
        "create must refuse an existing segment"
    );
    let b = store.create(1_000).expect("create 1000");
    let c = store.create(20).expect("create 20");
    assert_eq!(
        store.list().expect("list"),
        vec![0, 20, 1_000],
        "list is ascending"
    );

    a.append(b"hello ").expect("append");
    a.append(b"world").expect("append");
    a.sync().expect("sync");
    assert_eq!(a.len(), 11);
    let mut buf = [0u8; 5];
    a.read_exact_at(6, &mut buf).expect("read");
    assert_eq!(&buf, b"world");
    assert!(
        a.read_exact_at(8, &mut buf).is_err(),
        "read past the end must fail"
    );
    assert_eq!(a.read_vec_at(6, 5).expect("read vec"), b"world");
    assert_eq!(a.read_vec_at(11, 0).expect("empty read vec"), b"");
    assert_eq!(a.read_vec_at(0, 11).expect("read vec"), b"hello world");
    assert!(
        a.read_vec_at(8, 5).is_err(),
        "read_vec_at past the end must fail"
    );

    let reopened = store.open(0).expect("open");
    assert_eq!(reopened.len(), 11, "open sees appended bytes");
    let mut all = [0u8; 11];
    reopened.read_exact_at(0, &mut all).expect("read");
    assert_eq!(&all, b"hello world");

    a.truncate(5).expect("truncate");
    assert_eq!(a.len(), 5);
    assert_eq!(
        store.open(0).expect("open").len(),
        5,
        "truncate is visible to open"
    );
    a.append(b"!").expect("append after truncate");
    let mut six = [0u8; 6];
    a.read_exact_at(0, &mut six).expect("read");
    assert_eq!(&six, b"hello!");

    assert_eq!(store.read_index(1_000, 64).expect("read index"), None);
    store
        .write_index(1_000, b"first", true)
        .expect("write index");
    store
        .write_index(1_000, b"second", false)
        .expect("replace index");
    assert_eq!(
        store.read_index(1_000, 64).expect("read index").as_deref(),
        Some(&b"second"[..]),
        "write_index replaces"
    );
    assert_eq!(
        store
            .read_index(1_000, 3)
            .expect("read index")
            .map(|v| v.len()),
        Some(4),
        "read_index stops one byte past max_bytes"
    );
    assert_eq!(
        store.list().expect("list"),
        vec![0, 20, 1_000],
        "an index file is not a segment"
    );

    drop((b, c));
    store.delete(20).expect("delete");
    assert_eq!(store.list().expect("list"), vec![0, 1_000]);
    store.delete(1_000).expect("delete");
    assert_eq!(
        store.read_index(1_000, 64).expect("read index"),
        None,
        "delete removes the segment's index"
    );
    assert!(
        store.open(20).is_err(),
        "a deleted segment cannot be opened"
    );
    // A reader holding a deleted segment can still read it.
    store.delete(0).expect("delete");
    a.read_exact_at(0, &mut six).expect("read after delete");
}

#[cfg(test)]
mod tests {
    use super::SegmentStore;

    #[test]
    fn local_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::LocalSegmentStore::new(dir.path()).unwrap();
        super::segment_store_conformance(&store);
        std::fs::write(dir.path().join("junk.seg"), b"x").unwrap();
        assert_eq!(store.list().unwrap(), Vec::<u64>::new());
    }
}
