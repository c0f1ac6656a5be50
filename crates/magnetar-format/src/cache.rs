//! A bounded cache of converted entries, so a hot topic is converted once and not once per
//! consumer: used by the Pulsar front end (Kafka entries as Pulsar batches) and by the Kafka front
//! end (Pulsar entries as record batches).
//!
//! Keyed by partition, the entry's first message index, its publish time (a topic deleted and
//! created again reuses indexes, never with the same publish times in practice) and its payload
//! length (log compaction rewrites an entry in place, always shorter). Bounded by the
//! total bytes of the converted payloads; the oldest insertion goes first. Conversion runs
//! outside the lock, so two readers missing together may both convert (the second insert is a
//! no-op).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use magnetar_broker::{Entry, TopicPartition};

type Key = (TopicPartition, u64, i64, u32);

#[derive(Default)]
struct State {
    entries: HashMap<Key, Bytes>,
    order: VecDeque<Key>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

#[derive(Default)]
pub struct ConversionCache {
    state: Mutex<State>,
    bytes_max: usize,
}

/// Counters, for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

impl ConversionCache {
    pub fn new(bytes_max: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            bytes_max,
        }
    }

    /// The converted form of `entry`: cached, or made by `convert` and cached when it fits.
    pub fn get_or_convert<E>(
        &self,
        partition: &TopicPartition,
        entry: &Entry,
        convert: impl FnOnce(&Entry) -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        let key = (
            partition.clone(),
            entry.header.first_index,
            entry.header.publish_time_ms,
            entry.header.payload_len,
        );
        if let Ok(mut s) = self.state.lock() {
            if let Some(body) = s.entries.get(&key).cloned() {
                s.hits += 1;
                return Ok(body);
            }
            s.misses += 1;
        }
        let body = convert(entry)?;
        if let Ok(mut s) = self.state.lock() {
            if body.len() <= self.bytes_max && !s.entries.contains_key(&key) {
                s.bytes += body.len();
                s.entries.insert(key.clone(), body.clone());
                s.order.push_back(key);
                while s.bytes > self.bytes_max {
                    let Some(old) = s.order.pop_front() else {
                        break;
                    };
                    if let Some(b) = s.entries.remove(&old) {
                        s.bytes -= b.len();
                    }
                }
            }
        }
        Ok(body)
    }

    pub fn stats(&self) -> CacheStats {
        self.state
            .lock()
            .map(|s| CacheStats {
                entries: s.entries.len(),
                bytes: s.bytes,
                hits: s.hits,
                misses: s.misses,
            })
            .unwrap_or(CacheStats {
                entries: 0,
                bytes: 0,
                hits: 0,
                misses: 0,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magnetar_broker::{EntryHeader, NamespaceName, PayloadFormat, TopicName};

    fn entry(first_index: u64, publish_time_ms: i64) -> Entry {
        Entry {
            header: EntryHeader {
                first_index,
                message_count: 1,
                publish_time_ms,
                max_timestamp_ms: 0,
                format: PayloadFormat::Pulsar,
                producer: None,
                payload_len: 0,
            },
            payload: Bytes::new(),
        }
    }

    #[test]
    fn hit_miss_and_eviction_by_bytes() {
        let tp = TopicPartition {
            topic: TopicName::new(NamespaceName::new("public", "default").unwrap(), "t").unwrap(),
            partition: 0,
        };
        let cache = ConversionCache::new(250);
        let conversions = std::cell::Cell::new(0);
        let convert = |e: &Entry| -> Result<Bytes, ()> {
            conversions.set(conversions.get() + 1);
            Ok(Bytes::from(vec![e.header.first_index as u8; 100]))
        };
        cache.get_or_convert(&tp, &entry(0, 1), convert).unwrap();
        cache.get_or_convert(&tp, &entry(0, 1), convert).unwrap();
        assert_eq!(conversions.get(), 1, "the second read is a hit");
        assert_eq!(cache.stats().hits, 1);
        assert_eq!(cache.stats().misses, 1);
        // The same index with another publish time (a recreated topic) is another entry.
        cache.get_or_convert(&tp, &entry(0, 2), convert).unwrap();
        assert_eq!(conversions.get(), 2);
        // A third 100-byte entry exceeds 250 bytes: the oldest goes.
        let got = cache.get_or_convert(&tp, &entry(5, 1), convert).unwrap();
        assert_eq!(got[0], 5);
        let s = cache.stats();
        assert_eq!((s.entries, s.bytes), (2, 200));
        cache.get_or_convert(&tp, &entry(0, 1), convert).unwrap();
        assert_eq!(conversions.get(), 4, "the evicted entry is converted again");
        // Conversion errors are returned and not cached; too-large results are not cached.
        let failed: Result<Bytes, &str> = cache.get_or_convert(&tp, &entry(9, 1), |_| Err("bad"));
        assert_eq!(failed, Err("bad"));
        let big = cache
            .get_or_convert(&tp, &entry(10, 1), |_| {
                Ok::<_, ()>(Bytes::from(vec![0; 300]))
            })
            .unwrap();
        assert_eq!(big.len(), 300);
        assert!(cache.stats().bytes <= 250);
    }
}
