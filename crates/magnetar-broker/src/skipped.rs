//! Skipped entries: the operator's way past a stored entry that cannot be served.
//!
//! An entry can be unreadable for a protocol without anything being wrong with the partition: a
//! Pulsar message written in a form the Kafka conversion refuses, or a Kafka batch the Pulsar
//! conversion refuses; or it is corrupt on disk (its CRC no longer matches). The front ends count
//! such entries (`magnetar_server_unreadable_entries_total{protocol}`) and log them with their
//! index; under Kafka's `fail` policy the consumer stops at the entry, as a Kafka consumer stops
//! at a corrupt batch. The operator then marks the entry skipped (admin API
//! `PUT /admin/v2/persistent/{tenant}/{namespace}/{topic}/skippedEntries/{index}`): the mark is
//! kept in the topic's metadata (so it survives restarts and, later, moves with the topic to
//! another broker), and every front end then serves the entry's offsets as empty — Kafka fetches
//! get an empty batch over them, Pulsar subscriptions acknowledge them — whatever its policy.
//! Nothing is deleted: unmarking the entry serves it again if it has become readable.
//!
//! The set is bounded per partition ([`SKIPPED_ENTRIES_PER_PARTITION_MAX`]); marks below the
//! partition's start (removed by retention) are dropped when the next mark is written.

use std::ops::Range;

use crate::broker::Broker;
use crate::error::{Error, Result};
use crate::names::TopicPartition;
use crate::resources::TopicMetadata;

/// How many entries of one partition may be marked skipped at once.
pub const SKIPPED_ENTRIES_PER_PARTITION_MAX: usize = 1024;

impl TopicMetadata {
    /// The message indexes of the skipped entry of `partition` that holds `index`, if any.
    pub fn skipped_entry(&self, partition: u32, index: u64) -> Option<Range<u64>> {
        let marks = self.skipped_entries.get(&partition)?;
        let (first, count) = marks.range(..=index).next_back()?;
        let end = first.saturating_add(u64::from((*count).max(1)));
        (index < end).then_some(*first..end)
    }
}

impl Broker {
    /// Marks the stored entry of `tp` that holds `index` as skipped; returns its message
    /// indexes. The entry's header is read without checking its payload CRC, so an entry that
    /// is corrupt on disk can be marked too.
    pub async fn skip_entry(&self, tp: &TopicPartition, index: u64) -> Result<Range<u64>> {
        let log = self.partition(tp).await?;
        let start = log.start_index();
        let end = log.end_index();
        if index < start || index >= end {
            return Err(Error::IndexOutOfRange {
                requested: index,
                start,
                end,
            });
        }
        let header = log
            .ledger()
            .scan_headers(index, 1)
            .await?
            .into_iter()
            .next()
            .ok_or(Error::IndexOutOfRange {
                requested: index,
                start,
                end,
            })?;
        let range = header.first_index..header.end_index();
        let count = header.message_count;
        self.update_topic(&tp.topic, |metadata| {
            let marks = metadata.skipped_entries.entry(tp.partition).or_default();
            marks.retain(|first, count| first.saturating_add(u64::from(*count)) > start);
            if !marks.contains_key(&range.start) && marks.len() >= SKIPPED_ENTRIES_PER_PARTITION_MAX
            {
                return Err(Error::InvalidRequest(format!(
                    "partition {tp} already has {SKIPPED_ENTRIES_PER_PARTITION_MAX} skipped entries"
                )));
            }
            marks.insert(range.start, count);
            Ok(())
        })
        .await?;
        tracing::warn!(partition = %tp, first_index = range.start, end_index = range.end, "entry marked skipped by an operator: its offsets are served empty");
        Ok(range)
    }

    /// Removes the skip mark of the entry of `tp` starting at `first_index`; `false` if there
    /// was none.
    pub async fn unskip_entry(&self, tp: &TopicPartition, first_index: u64) -> Result<bool> {
        let mut removed = false;
        self.update_topic(&tp.topic, |metadata| {
            removed = false;
            if let Some(marks) = metadata.skipped_entries.get_mut(&tp.partition) {
                removed = marks.remove(&first_index).is_some();
                if marks.is_empty() {
                    metadata.skipped_entries.remove(&tp.partition);
                }
            }
            Ok(())
        })
        .await?;
        if removed {
            tracing::info!(partition = %tp, first_index, "skip mark removed by an operator");
        }
        Ok(removed)
    }

    /// The skipped entries of `tp`, as message index ranges, in order.
    pub async fn skipped_entries(&self, tp: &TopicPartition) -> Result<Vec<Range<u64>>> {
        let metadata = self
            .topic(&tp.topic)
            .await?
            .ok_or_else(|| Error::TopicNotFound {
                topic: tp.topic.to_string(),
            })?;
        Ok(metadata
            .skipped_entries
            .get(&tp.partition)
            .map(|marks| {
                marks
                    .iter()
                    .map(|(first, count)| *first..first.saturating_add(u64::from((*count).max(1))))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The skipped entry of `tp` holding `index`, if an operator marked one (a metadata read:
    /// for the error paths of the front ends, not per entry served).
    pub async fn skipped_entry(&self, tp: &TopicPartition, index: u64) -> Option<Range<u64>> {
        match self.topic(&tp.topic).await {
            Ok(Some(metadata)) => metadata.skipped_entry(tp.partition, index),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_covers_the_whole_entry() {
        let mut metadata = TopicMetadata {
            format_version: 1,
            partitioned: true,
            partitions: 2,
            configs: Default::default(),
            created_ms: 0,
            skipped_entries: Default::default(),
            namespace_defaults: Default::default(),
        };
        metadata.skipped_entries.entry(1).or_default().insert(10, 5);
        assert_eq!(metadata.skipped_entry(1, 9), None);
        assert_eq!(metadata.skipped_entry(1, 10), Some(10..15));
        assert_eq!(metadata.skipped_entry(1, 14), Some(10..15));
        assert_eq!(metadata.skipped_entry(1, 15), None);
        assert_eq!(metadata.skipped_entry(0, 12), None);
        // An older metadata record (no field) still reads.
        let json = r#"{"format_version":1,"partitioned":false,"partitions":0,"created_ms":5}"#;
        let old: TopicMetadata = serde_json::from_str(json).unwrap();
        assert!(old.skipped_entries.is_empty());
    }
}
