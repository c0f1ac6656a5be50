//! Namespace bundles: a namespace's topics split into hash ranges, Pulsar's unit of ownership.
//!
//! A namespace of `N` bundles splits the 32-bit hash space the way Pulsar's
//! `NamespaceBundleFactory.getBundles` does: a segment size of `2^32 / N` (rounded down), the
//! boundaries `0, s, 2s, ..., (N-1)s` and a last upper boundary of `0xffffffff`. Every range is
//! `[lower, upper)` except the last, which also holds `0xffffffff`. Bundles are named as in
//! Pulsar, `0x00000000_0x40000000`.
//!
//! A topic partition maps to a bundle by the **CRC-32 (IEEE 802.3, the zlib/`java.util.zip`
//! polynomial) of its full name** in UTF-8, `persistent://tenant/namespace/local` or, for a
//! partition, `persistent://tenant/namespace/local-partition-N`. That is Pulsar's default
//! (`Hashing.crc32()` over `TopicName.toString()`), so a topic lands in the bundle Pulsar would
//! put it in. The function is implemented here from its definition (a fixed polynomial and
//! table), so it cannot change with a dependency; a test pins known values.

use std::fmt;

use crate::error::Error;
use crate::names::{NamespaceName, TopicName};

/// Pulsar's `defaultNumberOfNamespaceBundles`.
pub const BUNDLE_COUNT_DEFAULT: u32 = 4;

/// Most bundles a namespace may have (Pulsar's `NamespaceBundles.MAX_BUNDLES` is 128).
pub const BUNDLE_COUNT_MAX: u32 = 128;

const CRC32_TABLE: [u32; 256] = crc32_table();

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// CRC-32 (IEEE, reflected polynomial `0xedb88320`, as zlib and `java.util.zip.CRC32`).
pub fn crc32_ieee(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in bytes {
        crc = CRC32_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The hash that places a topic partition in a bundle: CRC-32 of its full name.
pub fn topic_hash(topic: &TopicName, partition: Option<u32>) -> u32 {
    let name = format!(
        "persistent://{}/{}",
        topic.namespace,
        topic.ledger_name(partition)
    );
    crc32_ieee(name.as_bytes())
}

/// One hash range of a namespace: `[lower, upper)`, or `[lower, 0xffffffff]` for the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleRange {
    pub lower: u32,
    pub upper: u32,
}

impl BundleRange {
    /// Whether `hash` falls in this range (the range ending at `0xffffffff` includes it).
    pub fn contains(&self, hash: u32) -> bool {
        self.lower <= hash && (hash < self.upper || (self.upper == u32::MAX && hash == u32::MAX))
    }

    /// Parses Pulsar's name, `0x00000000_0x40000000`.
    pub fn parse(name: &str) -> Result<Self, Error> {
        let bad = || {
            Error::InvalidName(format!(
                "bundle range '{name}' is not 0xXXXXXXXX_0xXXXXXXXX"
            ))
        };
        let (lower, upper) = name.split_once('_').ok_or_else(bad)?;
        let hex = |text: &str| -> Result<u32, Error> {
            let digits = text.strip_prefix("0x").ok_or_else(bad)?;
            if digits.len() != 8 {
                return Err(bad());
            }
            u32::from_str_radix(digits, 16).map_err(|_| bad())
        };
        let range = BundleRange {
            lower: hex(lower)?,
            upper: hex(upper)?,
        };
        if range.lower >= range.upper {
            return Err(bad());
        }
        Ok(range)
    }
}

impl fmt::Display for BundleRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}_0x{:08x}", self.lower, self.upper)
    }
}

/// The ranges of a namespace split into `count` bundles (1..=[`BUNDLE_COUNT_MAX`]).
pub fn bundle_ranges(count: u32) -> Result<Vec<BundleRange>, Error> {
    if !(1..=BUNDLE_COUNT_MAX).contains(&count) {
        return Err(Error::InvalidConfig {
            key: "defaultNumberOfNamespaceBundles".into(),
            reason: format!("{count} is outside 1..={BUNDLE_COUNT_MAX}"),
        });
    }
    // In u64: with one bundle the segment is 2^32, which a u32 cannot hold.
    let segment = (1u64 << 32) / u64::from(count);
    let boundary = |i: u32| u32::try_from(u64::from(i) * segment).unwrap_or(u32::MAX);
    Ok((0..count)
        .map(|i| BundleRange {
            lower: boundary(i),
            upper: if i + 1 == count {
                u32::MAX
            } else {
                boundary(i + 1)
            },
        })
        .collect())
}

/// The index of the range of `count` equal ranges that holds `hash` (same split as
/// [`bundle_ranges`]; `count` must be at least 1).
pub fn range_index(count: u32, hash: u32) -> u32 {
    let count = count.max(1);
    let segment = (1u64 << 32) / u64::from(count);
    let index = u32::try_from(u64::from(hash) / segment).unwrap_or(u32::MAX);
    index.min(count - 1)
}

/// A bundle: a namespace and one of its ranges. The unit of ownership.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bundle {
    pub namespace: NamespaceName,
    pub range: BundleRange,
}

impl Bundle {
    /// The bundles of `namespace` split into `count`.
    pub fn all(namespace: &NamespaceName, count: u32) -> Result<Vec<Bundle>, Error> {
        Ok(bundle_ranges(count)?
            .into_iter()
            .map(|range| Bundle {
                namespace: namespace.clone(),
                range,
            })
            .collect())
    }

    /// The bundle of a topic partition in its namespace of `count` bundles.
    pub fn of_topic(
        topic: &TopicName,
        partition: Option<u32>,
        count: u32,
    ) -> Result<Bundle, Error> {
        let ranges = bundle_ranges(count)?;
        let hash = topic_hash(topic, partition);
        let range = ranges[range_index(count, hash) as usize];
        debug_assert!(range.contains(hash));
        Ok(Bundle {
            namespace: topic.namespace.clone(),
            range,
        })
    }
}

impl fmt::Display for Bundle {
    /// Pulsar's form, `tenant/namespace/0x00000000_0x40000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32_known_values() {
        assert_eq!(crc32_ieee(b""), 0);
        assert_eq!(crc32_ieee(b"123456789"), 0xcbf4_3926);
        assert_eq!(
            crc32_ieee(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
    }

    #[test]
    fn pulsar_default_bundles() {
        let names: Vec<String> = bundle_ranges(BUNDLE_COUNT_DEFAULT)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "0x00000000_0x40000000",
                "0x40000000_0x80000000",
                "0x80000000_0xc0000000",
                "0xc0000000_0xffffffff",
            ]
        );
        assert_eq!(
            bundle_ranges(1).unwrap(),
            [BundleRange {
                lower: 0,
                upper: u32::MAX
            }]
        );
        assert!(bundle_ranges(0).is_err());
        assert!(bundle_ranges(BUNDLE_COUNT_MAX + 1).is_err());
    }

    #[test]
    fn topic_bundle_is_pinned() {
        // Pinned so that a change of hash or split is caught: these must never move.
        let ns = NamespaceName::new("public", "default").unwrap();
        let topic = TopicName::new(ns, "my-topic").unwrap();
        let hash = topic_hash(&topic, None);
        assert_eq!(hash, crc32_ieee(b"persistent://public/default/my-topic"));
        let bundle = Bundle::of_topic(&topic, None, 4).unwrap();
        assert!(bundle.range.contains(hash));
        assert_eq!(
            topic_hash(&topic, Some(3)),
            crc32_ieee(b"persistent://public/default/my-topic-partition-3")
        );
    }

    #[test]
    fn parse_errors() {
        assert!(BundleRange::parse("0x00000000_0x40000000").is_ok());
        for bad in [
            "",
            "0x0_0x1",
            "00000000_40000000",
            "0x40000000_0x00000000",
            "0x0000000g_0x40000000",
            "0x00000000-0x40000000",
        ] {
            assert!(BundleRange::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn ranges_cover_the_hash_space_once(count in 1u32..=BUNDLE_COUNT_MAX, hash: u32) {
            let ranges = bundle_ranges(count).unwrap();
            prop_assert_eq!(ranges.len(), count as usize);
            prop_assert_eq!(ranges[0].lower, 0);
            prop_assert_eq!(ranges[ranges.len() - 1].upper, u32::MAX);
            for pair in ranges.windows(2) {
                prop_assert_eq!(pair[0].upper, pair[1].lower);
            }
            let holding: Vec<usize> = ranges
                .iter()
                .enumerate()
                .filter(|(_, range)| range.contains(hash))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(holding, vec![range_index(count, hash) as usize]);
        }

        #[test]
        fn range_names_round_trip(count in 1u32..=BUNDLE_COUNT_MAX) {
            for range in bundle_ranges(count).unwrap() {
                prop_assert_eq!(BundleRange::parse(&range.to_string()).unwrap(), range);
            }
        }

        #[test]
        fn topic_lands_in_its_hash_range(local in "[a-z0-9._-]{1,40}", partition in proptest::option::of(0u32..1000), count in 1u32..=16) {
            prop_assume!(local != "." && local != "..");
            let ns = NamespaceName::new("t", "ns").unwrap();
            let topic = TopicName::new(ns, &local).unwrap();
            let bundle = Bundle::of_topic(&topic, partition, count).unwrap();
            prop_assert!(bundle.range.contains(topic_hash(&topic, partition)));
            prop_assert_eq!(bundle, Bundle::of_topic(&topic, partition, count).unwrap());
        }
    }
}
