//! Reads: bounded reads of entries or headers across segments, by index and by timestamp.

use super::*;

impl ManagedLedger {
    pub(super) fn check_range(&self, index: u64) -> Result<(u64, u64), StorageError> {
        let s = read(&self.state);
        if index < s.start_index || index > s.end_index {
            return Err(StorageError::IndexOutOfRange {
                requested: index,
                start: s.start_index,
                end: s.end_index,
            });
        }
        Ok((s.start_index, s.end_index))
    }

    /// Reads whole entries from within one segment starting at the entry containing `from`.
    async fn read_segment(
        &self,
        from: u64,
        verify_crc: bool,
        max_bytes: usize,
        max_entries: usize,
        at_least_one: bool,
    ) -> Result<(SegmentRead, u64), StorageError> {
        let (file, base, start, limit, seg_end, gaps) = {
            let s = read(&self.state);
            let Some(seg) = s.segment_for(from) else {
                return Ok((
                    SegmentRead {
                        items: Vec::new(),
                        bytes: 0,
                        budget_hit: false,
                    },
                    from,
                ));
            };
            (
                seg.file.clone(),
                seg.base_index,
                seg.start_point(from),
                seg.bytes,
                seg.end_index,
                seg.compacted,
            )
        };
        let result = tokio::task::spawn_blocking(move || {
            read_entries(
                file.as_ref(),
                base,
                start,
                limit,
                seg_end,
                from,
                verify_crc,
                gaps,
                max_bytes,
                max_entries,
                at_least_one,
            )
        })
        .await?;
        if let Err(StorageError::Corrupt {
            segment,
            file_offset,
            reason,
        }) = &result
        {
            self.counters.corrupt_reads.fetch_add(1, Ordering::Relaxed);
            tracing::error!(dir = %self.dir.display(), segment, file_offset, reason = %reason, "corrupt entry on read");
        }
        Ok((result?, seg_end))
    }

    async fn read_items(
        &self,
        from_index: u64,
        verify_crc: bool,
        max_bytes: usize,
        max_entries: usize,
    ) -> Result<Vec<(EntryHeader, Option<Bytes>)>, StorageError> {
        let (_, end) = self.check_range(from_index)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut from = from_index;
        while from < end && out.len() < max_entries.max(1) {
            let (r, seg_end) = self
                .read_segment(
                    from,
                    verify_crc,
                    max_bytes.saturating_sub(bytes),
                    max_entries.max(1) - out.len(),
                    out.is_empty(),
                )
                .await?;
            if r.items.is_empty() && !r.budget_hit && seg_end == from {
                break; // index no longer in any segment (deleted under us) or end reached
            }
            bytes += r.bytes;
            out.extend(r.items);
            if r.budget_hit {
                break;
            }
            from = seg_end;
        }
        Ok(out)
    }

    /// Reads whole entries starting at the entry containing `from_index`, up to `max_bytes`
    /// (encoded size) and `max_entries`, but always at least one entry if one exists.
    /// Empty when `from_index` is the end index.
    pub async fn read(
        &self,
        from_index: u64,
        max_bytes: usize,
        max_entries: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        let items = self
            .read_items(from_index, true, max_bytes, max_entries)
            .await?;
        Ok(items
            .into_iter()
            .map(|(header, payload)| Entry {
                header,
                payload: payload.unwrap_or_default(),
            })
            .collect())
    }

    /// Headers from the entry containing `from_index`, at most `max_entries` (for rebuilding
    /// producer state). Payload CRCs are not checked.
    pub async fn scan_headers(
        &self,
        from_index: u64,
        max_entries: usize,
    ) -> Result<Vec<EntryHeader>, StorageError> {
        let items = self
            .read_items(from_index, false, usize::MAX, max_entries)
            .await?;
        Ok(items.into_iter().map(|(h, _)| h).collect())
    }

    /// The first entry whose max timestamp is at or above `timestamp_ms`.
    pub async fn find_by_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<EntryHeader>, StorageError> {
        let (candidates, start) = {
            let s = read(&self.state);
            let c: Vec<_> = s
                .segments
                .iter()
                .filter(|seg| {
                    seg.end_index > s.start_index
                        && seg
                            .index
                            .max_timestamp_ms()
                            .is_some_and(|m| m >= timestamp_ms)
                })
                .map(|seg| {
                    (
                        seg.file.clone(),
                        seg.base_index,
                        seg.index.lookup_time(timestamp_ms),
                        seg.bytes,
                        seg.compacted,
                    )
                })
                .collect();
            (c, s.start_index)
        };
        for (file, base, point, limit, gaps) in candidates {
            let point = point.unwrap_or(IndexPoint {
                first_index: base,
                file_offset: 0,
                max_timestamp_before_ms: i64::MIN,
            });
            let found = tokio::task::spawn_blocking(move || {
                let mut found = None;
                let end = scan_entries(file.as_ref(), point, limit, false, gaps, |h, _, _| {
                    if h.max_timestamp_ms >= timestamp_ms && h.end_index() > start {
                        found = Some(*h);
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })?;
                match (found, end.bad) {
                    (None, Some(reason)) => Err(StorageError::Corrupt {
                        segment: base,
                        file_offset: end.pos,
                        reason,
                    }),
                    (found, _) => Ok(found),
                }
            })
            .await??;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The first entry with the largest max timestamp among readable entries.
    pub async fn max_timestamp_entry(&self) -> Result<Option<EntryHeader>, StorageError> {
        let (best, partial) = {
            let s = read(&self.state);
            let mut best: Option<(i64, u64)> = None;
            let mut partial = None;
            for seg in s
                .segments
                .iter()
                .filter(|seg| seg.end_index > s.start_index)
            {
                if seg.base_index < s.start_index {
                    partial = Some(s.start_index);
                    continue;
                }
                if let (Some(m), Some((idx, _))) = (
                    seg.index.max_timestamp_ms(),
                    seg.index.max_timestamp_entry(),
                ) {
                    if best.is_none_or(|(bm, _)| m > bm) {
                        best = Some((m, idx));
                    }
                }
            }
            (best, partial)
        };
        // The first segment may be cut mid-way by truncation: its index also covers dead
        // entries, so scan its live part. It comes first, so it wins ties.
        let mut from_partial: Option<EntryHeader> = None;
        if let Some(start) = partial {
            let (r, _) = self
                .read_segment(start, false, usize::MAX, usize::MAX, true)
                .await?;
            for (h, _) in r.items {
                if from_partial.is_none_or(|p| h.max_timestamp_ms > p.max_timestamp_ms) {
                    from_partial = Some(h);
                }
            }
        }
        match (from_partial, best) {
            (Some(p), Some((ts, _))) if p.max_timestamp_ms >= ts => Ok(Some(p)),
            (Some(p), None) => Ok(Some(p)),
            (_, Some((_, idx))) => Ok(self.scan_headers(idx, 1).await?.into_iter().next()),
            (None, None) => Ok(None),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn read_entries(
    file: &dyn SegmentFile,
    base: u64,
    start: IndexPoint,
    limit: u64,
    seg_end: u64,
    from: u64,
    verify_crc: bool,
    gaps: bool,
    max_bytes: usize,
    max_entries: usize,
    at_least_one: bool,
) -> Result<SegmentRead, StorageError> {
    let mut items = Vec::new();
    let mut bytes = 0usize;
    let mut budget_hit = false;
    // Sized to what was asked: the budget plus a header, within [64 KiB, 1 MiB].
    let chunk_bytes = (max_bytes as u64)
        .saturating_add(ENTRY_HEADER_LEN as u64)
        .clamp(READ_CHUNK_BYTES_MIN, SCAN_CHUNK_BYTES);
    let end = scan_entries_from(
        file,
        start,
        limit,
        verify_crc,
        gaps,
        from,
        chunk_bytes,
        |h, _, payload| {
            if h.end_index() <= from {
                return ControlFlow::Continue(());
            }
            let len = h.encoded_len() as usize;
            if !(items.is_empty() && at_least_one) && bytes.saturating_add(len) > max_bytes {
                budget_hit = true;
                return ControlFlow::Break(());
            }
            bytes += len;
            items.push((*h, payload));
            if items.len() >= max_entries {
                budget_hit = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        },
    )?;
    // A compacted segment may end with a gap: its data ends before `seg_end` without damage.
    let short = end.bad.is_some() || (!gaps && end.next_index < seg_end);
    if !end.stopped && short {
        if !items.is_empty() {
            // What precedes the bad entry is served; the next read starts at it and fails.
            return Ok(SegmentRead {
                items,
                bytes,
                budget_hit: true,
            });
        }
        return Err(StorageError::Corrupt {
            segment: base,
            file_offset: end.pos,
            reason: end.bad.unwrap_or_else(|| {
                format!("segment ends at index {} before {seg_end}", end.next_index)
            }),
        });
    }
    Ok(SegmentRead {
        items,
        bytes,
        budget_hit,
    })
}
