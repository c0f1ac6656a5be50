//! Appends and group commit: index assignment and queueing under the `append` lock, the flush
//! loop that writes a batch on a blocking thread, rolls segments (writing the sealed one's index)
//! and fsyncs per the policy, then publishes the readable end.

use super::*;

/// An append whose index is assigned; `wait` resolves when it is durable per the policy.
#[derive(Debug)]
pub struct PendingAppend {
    first_index: u64,
    done: oneshot::Receiver<Result<Position, StorageError>>,
}

impl PendingAppend {
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    pub async fn wait(self) -> Result<Position, StorageError> {
        self.done.await.map_err(|_| StorageError::Closed)?
    }
}

impl ManagedLedger {
    /// Assigns the first index under the append lock, calls `build(first_index)` for the entry
    /// (callers patch the index into their payload there), enqueues it and returns at once.
    /// The order of appends is the order of indexes.
    ///
    /// When the ledger's queue already holds its limit of bytes (see
    /// [`APPEND_QUEUE_BYTES_MIN`]) this returns [`StorageError::QueueFull`] without calling
    /// `build`; it does not wait.
    pub fn append_with<F: FnOnce(u64) -> NewEntry>(
        &self,
        build: F,
    ) -> Result<PendingAppend, StorageError> {
        let mut st = lock(&self.append);
        if st.closed {
            return Err(StorageError::Closed);
        }
        if let Some(reason) = &st.failed {
            return Err(StorageError::Failed {
                reason: reason.clone(),
            });
        }
        let queue_max = self.config.queue_bytes_max();
        if st.queued_bytes >= queue_max {
            return Err(StorageError::QueueFull {
                queued_bytes: st.queued_bytes,
                max_bytes: queue_max,
            });
        }
        let first_index = st.next_index;
        let entry = build(first_index);
        let size = entry.payload.len() as u64;
        let next = entry.check(first_index, self.config.entry_bytes_max)?;
        let (tx, rx) = oneshot::channel();
        st.next_index = next;
        st.queued_bytes += size + ENTRY_HEADER_LEN as u64;
        st.queue.push(Queued {
            first_index,
            entry,
            done: tx,
        });
        let start_flush = !st.flushing;
        st.flushing = true;
        drop(st);
        if start_flush {
            if let Some(me) = self.me.upgrade() {
                // Prefer the caller's runtime, so a ledger outliving the runtime it was opened
                // in keeps working.
                let handle = Handle::try_current().unwrap_or_else(|_| self.runtime.clone());
                drop(handle.spawn_blocking(move || me.flush_loop()));
            }
        }
        Ok(PendingAppend {
            first_index,
            done: rx,
        })
    }

    /// Appends and waits until durable; returns the entry's first index and position.
    pub async fn append(&self, entry: NewEntry) -> Result<(u64, Position), StorageError> {
        let pending = self.append_with(|_| entry)?;
        let first = pending.first_index();
        Ok((first, pending.wait().await?))
    }

    /// Drains the queue batch by batch; runs on a blocking thread, one per ledger at a time.
    fn flush_loop(self: Arc<Self>) {
        loop {
            let batch = {
                let mut st = lock(&self.append);
                if st.queue.is_empty() || st.failed.is_some() {
                    let leftover = std::mem::take(&mut st.queue);
                    st.queued_bytes = 0;
                    st.flushing = false;
                    let waiters = std::mem::take(&mut st.idle_waiters);
                    let reason = st.failed.clone().unwrap_or_default();
                    drop(st);
                    for q in leftover {
                        let _ = q.done.send(Err(StorageError::Failed {
                            reason: reason.clone(),
                        }));
                    }
                    for w in waiters {
                        let _ = w.send(());
                    }
                    return;
                }
                st.queued_bytes = 0;
                std::mem::take(&mut st.queue)
            };
            match self.write_batch(&batch) {
                Ok(positions) => {
                    for (q, p) in batch.into_iter().zip(positions) {
                        let _ = q.done.send(Ok(p));
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    tracing::error!(dir = %self.dir.display(), error = %reason, "append failed, ledger refuses appends until reopened");
                    lock(&self.append).failed = Some(reason.clone());
                    for q in batch {
                        let _ = q.done.send(Err(StorageError::Failed {
                            reason: reason.clone(),
                        }));
                    }
                }
            }
        }
    }

    /// Writes one batch, rolling segments as needed; fsyncs once at the end under `always`.
    fn write_batch(&self, batch: &[Queued]) -> Result<Vec<Position>, StorageError> {
        let now = self.clock.now_ms();
        let (mut file, mut base, mut seg_bytes, mut seg_first_publish, mut expected) = {
            let s = read(&self.state);
            let a = s.active()?;
            (
                a.file.clone(),
                a.base_index,
                a.bytes,
                a.first_publish_ms,
                s.end_index,
            )
        };
        let mut buf: Vec<u8> = Vec::with_capacity(
            batch
                .iter()
                .map(|q| q.entry.payload.len() + ENTRY_HEADER_LEN)
                .sum(),
        );
        let mut written: Vec<(u64, EntryHeader, u64)> = Vec::with_capacity(batch.len());
        let mut new_segments: Vec<(u64, Arc<dyn SegmentFile>)> = Vec::new();
        let mut positions = Vec::with_capacity(batch.len());
        let mut syncs = 0u64;
        for q in batch {
            let header = q.entry.header(q.first_index, now);
            if header.first_index != expected {
                return Err(StorageError::Failed {
                    reason: format!(
                        "index order broken before write: expected {expected}, got {}",
                        header.first_index
                    ),
                });
            }
            let len = header.encoded_len();
            let used = seg_bytes + buf.len() as u64;
            let too_big = used + len > self.config.segment_bytes;
            let too_old = seg_first_publish
                .is_some_and(|t| now.saturating_sub(t) >= self.config.segment_ms as i64);
            if used > 0 && (too_big || too_old) {
                if !buf.is_empty() {
                    file.append(&buf)?;
                    buf.clear();
                }
                // Seal. Under `always` the old segment is durable before the new one exists,
                // so recovery only ever has to repair the last segment (and the sync is cheap:
                // only this batch's bytes are unsynced). Under `os`/`interval` no append waited
                // for a sync, so the old segment may hold up to `segment_bytes` of dirty pages:
                // syncing them here stalled every append queued behind the roll for as long as
                // the disk took (0.4 to 2.5 s for a 1 GiB segment, the p99 of a 50k msg/s run,
                // `perf/results/2026-12-04/hotpath/`). It is synced on the blocking pool
                // instead; a machine crash before that completes may leave a torn tail on that
                // sealed segment (found at open: reads reaching it fail), which these policies
                // accept (they lose recent writes on a machine crash by definition).
                if self.config.fsync == FsyncPolicy::Always {
                    self.timed_sync(file.as_ref())?;
                    syncs += 1;
                } else {
                    self.sync_sealed_later(file.clone());
                }
                let nf = self.store.create(header.first_index)?;
                new_segments.push((header.first_index, nf.clone()));
                file = nf;
                base = header.first_index;
                seg_bytes = 0;
                seg_first_publish = None;
            }
            let pos = seg_bytes + buf.len() as u64;
            let at = buf.len();
            // The one copy of the payload (into the write buffer), with the index written in and
            // the entry CRC computed once over the bytes as they will be stored.
            encode_entry_with_index(&header, &q.entry.payload, q.entry.first_index_at, &mut buf);
            // Paired invariant, write side: what we write decodes to what we meant (index
            // order, count, lengths). It covers the header only: the CRC was computed a moment
            // ago over these very bytes of `buf`, so hashing them again would only re-read the
            // same memory (it was a third CRC pass per produced byte); the CRC is verified on
            // every read and, for the last segment, at recovery.
            match decode_header(&buf[at..]) {
                Ok((h, _)) if h == header => {}
                _ => {
                    return Err(StorageError::Failed {
                        reason: format!(
                            "entry {} failed its check before write",
                            header.first_index
                        ),
                    })
                }
            }
            seg_first_publish.get_or_insert(now);
            written.push((base, header, pos));
            positions.push(Position {
                segment_base_index: base,
                file_offset: pos,
            });
            expected = header.end_index();
        }
        if !buf.is_empty() {
            file.append(&buf)?;
        }
        let synced = match self.config.fsync {
            FsyncPolicy::Always => {
                self.timed_sync(file.as_ref())?;
                syncs += 1;
                true
            }
            FsyncPolicy::Interval { .. } => {
                self.dirty.store(true, Ordering::Release);
                false
            }
            FsyncPolicy::Os => false,
        };
        let rolled = new_segments.len();
        let sealed: Vec<SegmentInfo> = {
            let mut s = write(&self.state);
            for (b, f) in new_segments {
                s.segments
                    .push(SegmentInfo::new(b, f, self.config.index_interval_bytes));
            }
            for (b, header, pos) in &written {
                if let Some(seg) = s.segments.iter_mut().rev().find(|seg| seg.base_index == *b) {
                    seg.on_append(header, *pos);
                }
            }
            s.end_index = expected;
            let n = s.segments.len();
            s.segments[n.saturating_sub(rolled + 1)..n.saturating_sub(1)].to_vec()
        };
        if rolled > 0 {
            self.counters
                .rolls
                .fetch_add(rolled as u64, Ordering::Release);
        }
        for seg in &sealed {
            self.write_segment_index(seg);
        }
        if synced {
            self.checkpoint_active();
        }
        self.end_tx.send_replace(expected);
        let n = batch.len() as u64;
        self.counters.fsyncs.fetch_add(syncs, Ordering::Relaxed);
        self.counters.appends.fetch_add(n, Ordering::Relaxed);
        if synced {
            self.counters.appends_synced.fetch_add(n, Ordering::Relaxed);
        }
        Ok(positions)
    }

    /// Persists a sealed segment's index beside it. A failure only costs a scan of that segment
    /// at the next open, so it is logged, not returned.
    fn write_segment_index(&self, seg: &SegmentInfo) {
        let sync = self.config.fsync == FsyncPolicy::Always;
        let written = encode_index(seg).and_then(|bytes| {
            self.store
                .write_index(seg.base_index, &bytes, sync)
                .map_err(|e| e.to_string())
        });
        if let Err(reason) = written {
            tracing::warn!(dir = %self.dir.display(), file = %index_file_name(seg.base_index), reason = %reason, "segment index not written; the next open rebuilds it from the segment");
        }
    }

    /// A recovery checkpoint of the active segment (see
    /// [`LedgerConfig::recovery_checkpoint_bytes`]): called right after an fsync under
    /// `always`, so the index written covers only durable bytes. Inline on the append path, so
    /// it is ordered with the roll's index write of the same segment (an older checkpoint can
    /// never overwrite a sealed segment's index); it costs one index encode, write and fsync
    /// per `recovery_checkpoint_bytes` appended. A failure is logged: it only costs a longer
    /// scan after a crash.
    fn checkpoint_active(&self) {
        let every = self.config.recovery_checkpoint_bytes;
        if every == 0 {
            return;
        }
        let encoded = {
            let s = read(&self.state);
            let Ok(seg) = s.active() else { return };
            let mut last = lock(&self.checkpoint);
            let grown = if last.0 == seg.base_index {
                seg.bytes.saturating_sub(last.1)
            } else {
                seg.bytes
            };
            if grown < every || seg.entries == 0 {
                return;
            }
            *last = (seg.base_index, seg.bytes);
            (seg.base_index, encode_index(seg))
        };
        let (base, bytes) = encoded;
        let written = bytes.and_then(|bytes| {
            self.store
                .write_index(base, &bytes, true)
                .map_err(|e| e.to_string())
        });
        match written {
            Ok(()) => {
                self.counters.checkpoints.fetch_add(1, Ordering::Release);
                tracing::debug!(dir = %self.dir.display(), segment = base, "recovery checkpoint written");
            }
            Err(reason) => {
                tracing::warn!(dir = %self.dir.display(), file = %index_file_name(base), reason = %reason, "recovery checkpoint not written; a crash scans the whole active segment");
            }
        }
    }

    /// fdatasync of a just-sealed segment off the append path (`os`/`interval`); a failure is
    /// logged: nothing acknowledged waited for it.
    fn sync_sealed_later(&self, file: Arc<dyn SegmentFile>) {
        let Some(me) = self.me.upgrade() else { return };
        let handle = Handle::try_current().unwrap_or_else(|_| self.runtime.clone());
        drop(handle.spawn_blocking(move || match me.timed_sync(file.as_ref()) {
            Ok(()) => {
                me.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(dir = %me.dir.display(), %error, "fsync of a sealed segment failed; a machine crash may leave its tail torn");
            }
        }));
    }

    pub(super) async fn sync_active(&self) -> Result<(), StorageError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let file = read(&self.state).active()?.file.clone();
        let me = self.me.upgrade().ok_or(StorageError::Closed)?;
        tokio::task::spawn_blocking(move || me.timed_sync(file.as_ref())).await??;
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// fdatasync of a segment file, timed into the fsync latency histogram.
    fn timed_sync(&self, file: &dyn SegmentFile) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let result = file.sync();
        self.counters.fsync_latency.observe(started.elapsed());
        result
    }

    /// Waits for queued appends to be written, then fsyncs the active segment.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let wait = {
            let mut st = lock(&self.append);
            if st.queue.is_empty() && !st.flushing {
                None
            } else {
                let (tx, rx) = oneshot::channel();
                st.idle_waiters.push(tx);
                Some(rx)
            }
        };
        if let Some(rx) = wait {
            let _ = rx.await;
        }
        self.dirty.store(true, Ordering::Release);
        self.sync_active().await
    }
}
