//! Durable cursors (subscriptions): acknowledgements, resets, backlog, and the coalesced writes of
//! the cursor file.

use super::*;

impl ManagedLedger {
    // ---- cursors ----

    /// Applies `change` to cursor `name` and persists the book: at once, or for an
    /// acknowledgement (`coalesce`) at most once per `cursor_persist_interval_ms`.
    async fn update_cursor(
        &self,
        name: &str,
        coalesce: bool,
        change: impl FnOnce(
            Option<&mut CursorState>,
            u64,
            u64,
        ) -> Result<Option<CursorState>, StorageError>,
    ) -> Result<Option<CursorState>, StorageError> {
        let (start, end) = {
            let s = read(&self.state);
            (s.start_index, s.end_index)
        };
        let result = {
            let mut book = lock(&self.cursors);
            let result = change(book.cursors.get_mut(name), start, end)?;
            match &result {
                Some(state) => {
                    book.cursors.insert(name.to_string(), state.clone());
                }
                None => {
                    book.cursors.remove(name);
                }
            }
            book.version += 1;
            result
        };
        let interval_ms = self.config.cursor_persist_interval_ms;
        if coalesce && interval_ms > 0 {
            let now = self.clock.now_ms();
            let mut timer = lock(&self.cursor_timer);
            let interval = i64::try_from(interval_ms).unwrap_or(i64::MAX);
            let due = timer
                .last_write_ms
                .map_or(now, |t| t.saturating_add(interval));
            if due > now {
                // Written within the interval: a delayed write (one per ledger) takes this
                // change and every other one made until then.
                if timer.scheduled.as_ref().is_none_or(|t| t.is_finished()) {
                    let weak = self.me.clone();
                    let delay = std::time::Duration::from_millis((due - now) as u64);
                    timer.scheduled = Some(self.runtime.spawn(async move {
                        tokio::time::sleep(delay).await;
                        let Some(ledger) = weak.upgrade() else { return };
                        if let Err(e) = ledger.persist_cursors().await {
                            tracing::error!(dir = %ledger.dir.display(), error = %e, "writing the cursor file failed");
                        }
                    }));
                }
                return Ok(result);
            }
        }
        self.persist_cursors().await?;
        Ok(result)
    }

    /// Writes the cursor book if it changed since the last write.
    pub(super) async fn persist_cursors(&self) -> Result<(), StorageError> {
        let mut written = self.cursor_persist.lock().await;
        let (version, bytes) = {
            let book = lock(&self.cursors);
            if book.version <= *written {
                return Ok(());
            }
            (book.version, encode_cursors(&book.cursors))
        };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || atomic_write(&dir, CURSORS_FILE_NAME, &bytes))
            .await??;
        *written = version;
        lock(&self.cursor_timer).last_write_ms = Some(self.clock.now_ms());
        Ok(())
    }

    /// Creates cursor `name` at `start`, or returns its state if it exists.
    pub async fn open_cursor(
        &self,
        name: &str,
        start: CursorStart,
    ) -> Result<CursorState, StorageError> {
        crate::cursor::check_name(name)?;
        if let Some(c) = self.cursor(name) {
            return Ok(c);
        }
        let state = self
            .update_cursor(name, false, |existing, s, e| {
                Ok(Some(match existing {
                    Some(c) => c.clone(),
                    None => CursorState::new(match start {
                        CursorStart::Earliest => s,
                        CursorStart::Latest => e,
                        CursorStart::Index(i) => i.clamp(s, e),
                    }),
                }))
            })
            .await?;
        state.ok_or_else(|| StorageError::CursorNotFound {
            name: name.to_string(),
        })
    }

    fn not_found(name: &str) -> StorageError {
        StorageError::CursorNotFound {
            name: name.to_string(),
        }
    }

    /// Acknowledges individual ranges of indexes (below the end index).
    pub async fn ack(
        &self,
        name: &str,
        ranges: &[Range<u64>],
    ) -> Result<CursorState, StorageError> {
        let ranges = ranges.to_vec();
        self.update_cursor(name, true, |c, _, end| {
            let c = c.ok_or_else(|| Self::not_found(name))?;
            if let Some(r) = ranges.iter().find(|r| r.end > end || r.start > r.end) {
                return Err(StorageError::CursorInvalid {
                    name: name.to_string(),
                    reason: format!(
                        "ack range {}..{} is invalid or beyond end index {end}",
                        r.start, r.end
                    ),
                });
            }
            for r in ranges {
                c.ack(r);
            }
            Ok(Some(c.clone()))
        })
        .await?
        .ok_or_else(|| Self::not_found(name))
    }

    /// Acknowledges everything up to and including `index`.
    pub async fn ack_cumulative(
        &self,
        name: &str,
        index: u64,
    ) -> Result<CursorState, StorageError> {
        self.update_cursor(name, true, |c, _, end| {
            let c = c.ok_or_else(|| Self::not_found(name))?;
            if index >= end {
                return Err(StorageError::CursorInvalid {
                    name: name.to_string(),
                    reason: format!("cumulative ack of {index} is at or beyond end index {end}"),
                });
            }
            c.ack_cumulative(index);
            Ok(Some(c.clone()))
        })
        .await?
        .ok_or_else(|| Self::not_found(name))
    }

    /// Moves the cursor to `index` (clamped into the ledger), forgetting individual acks.
    pub async fn reset_cursor(&self, name: &str, index: u64) -> Result<CursorState, StorageError> {
        self.update_cursor(name, false, |c, start, end| {
            let c = c.ok_or_else(|| Self::not_found(name))?;
            c.reset(index.clamp(start, end));
            Ok(Some(c.clone()))
        })
        .await?
        .ok_or_else(|| Self::not_found(name))
    }

    /// Deletes the cursor; returns whether it existed.
    pub async fn delete_cursor(&self, name: &str) -> Result<bool, StorageError> {
        if self.cursor(name).is_none() {
            return Ok(false);
        }
        self.update_cursor(name, false, |_, _, _| Ok(None)).await?;
        Ok(true)
    }

    pub fn cursor(&self, name: &str) -> Option<CursorState> {
        lock(&self.cursors).cursors.get(name).cloned()
    }

    pub fn cursors(&self) -> Vec<(String, CursorState)> {
        lock(&self.cursors)
            .cursors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Unacknowledged messages between the cursor and the end index.
    pub fn backlog(&self, name: &str) -> Result<u64, StorageError> {
        let c = self.cursor(name).ok_or_else(|| Self::not_found(name))?;
        let s = read(&self.state);
        Ok(c.backlog(s.start_index, s.end_index))
    }
}
