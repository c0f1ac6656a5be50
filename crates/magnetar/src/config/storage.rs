//! The `[storage]` section: fsync policy, segment size and age, index interval, entry limit,
//! and tiered storage (sealed segments offloaded to an object store).

use serde::{Deserialize, Serialize};

use super::{one_of, range, Config, ConfigError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    pub fsync: String,
    pub fsync_interval_ms: u64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub index_interval_bytes: u32,
    pub entry_bytes_max: u32,
    /// Under `fsync = always`, the active segment's index is written every this many bytes
    /// appended, so a crash recovery scans only the tail after it; `0` turns it off.
    pub recovery_checkpoint_bytes: u64,
    /// Tiered storage: where sealed segments are offloaded (`file:///absolute/path`,
    /// `s3://bucket/prefix`, `gs://...`, `az://...`, `memory://`); empty: off.
    /// `--object-store` sets it.
    pub object_store: String,
    /// The object store's endpoint (an S3-compatible server's URL); empty: the provider's
    /// environment (`AWS_ENDPOINT_URL`...) or its public endpoint.
    pub object_store_endpoint: String,
    /// The object store's region; empty: the provider's environment (`AWS_REGION`...).
    pub object_store_region: String,
    /// Longest one object-store request may take.
    pub object_store_timeout_ms: u64,
    /// Retries of a failed object-store request (5xx, SlowDown, timeout), with backoff.
    pub object_store_retries: u64,
    /// Sealed bytes a partition keeps on local disk, newest first; -1: no byte bound.
    pub local_retention_bytes: i64,
    /// A sealed segment last written longer ago than this is offloaded; -1: no age bound.
    pub local_retention_ms: i64,
    /// How often the offload pass runs.
    pub offload_interval_ms: u64,
    /// Offloaded segments are read in aligned blocks of this size ...
    pub tier_block_bytes: u64,
    /// ... through a block cache of at most this many bytes (shared by all partitions).
    pub tier_cache_bytes: u64,
    /// Cluster mode's shared WAL: appends of all partitions are batched for this long (or
    /// `wal_object_bytes_max`) into one object.
    pub wal_flush_interval_ms: u64,
    pub wal_object_bytes_max: u64,
    /// An object PUT plus its commit must finish within this long, else the appends fail
    /// (retriable) and nothing of them becomes readable.
    pub wal_commit_timeout_ms: u64,
    /// Appended bytes not yet committed, at most; appends beyond are refused (retriable).
    pub wal_pending_bytes_max: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            fsync: "always".into(),
            fsync_interval_ms: 1000,
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            entry_bytes_max: 16 * 1024 * 1024,
            recovery_checkpoint_bytes: 0,
            object_store: String::new(),
            object_store_endpoint: String::new(),
            object_store_region: String::new(),
            object_store_timeout_ms: 30_000,
            object_store_retries: 3,
            local_retention_bytes: -1,
            local_retention_ms: 60 * 60 * 1000,
            offload_interval_ms: 60_000,
            tier_block_bytes: 1024 * 1024,
            tier_cache_bytes: 64 * 1024 * 1024,
            wal_flush_interval_ms: 20,
            wal_object_bytes_max: 8 * 1024 * 1024,
            wal_commit_timeout_ms: 10_000,
            wal_pending_bytes_max: 64 * 1024 * 1024,
        }
    }
}

impl Config {
    /// `[storage]` ranges and the fsync policy.
    pub(super) fn validate_storage(&self) -> Result<(), ConfigError> {
        let st = &self.storage;
        range(
            "storage.wal_flush_interval_ms",
            st.wal_flush_interval_ms,
            1,
            10_000,
        )?;
        range(
            "storage.wal_object_bytes_max",
            st.wal_object_bytes_max,
            64 * 1024,
            1024 * 1024 * 1024,
        )?;
        range(
            "storage.wal_commit_timeout_ms",
            st.wal_commit_timeout_ms,
            100,
            600_000,
        )?;
        range(
            "storage.wal_pending_bytes_max",
            st.wal_pending_bytes_max,
            1024 * 1024,
            16 * 1024 * 1024 * 1024,
        )?;
        if st.wal_pending_bytes_max < st.wal_object_bytes_max {
            return Err(super::err(format!(
                "storage.wal_pending_bytes_max ({}) must be at least storage.wal_object_bytes_max ({})",
                st.wal_pending_bytes_max, st.wal_object_bytes_max
            )));
        }
        one_of(
            "storage.fsync",
            &self.storage.fsync,
            &["always", "interval", "os"],
        )?;
        range(
            "storage.fsync_interval_ms",
            self.storage.fsync_interval_ms,
            1,
            3_600_000,
        )?;
        range(
            "storage.segment_bytes",
            self.storage.segment_bytes,
            64 * 1024,
            1 << 40,
        )?;
        range(
            "storage.segment_ms",
            self.storage.segment_ms,
            1000,
            365 * 24 * 3_600_000,
        )?;
        range(
            "storage.index_interval_bytes",
            self.storage.index_interval_bytes.into(),
            64,
            16 * 1024 * 1024,
        )?;
        range(
            "storage.entry_bytes_max",
            self.storage.entry_bytes_max.into(),
            1024,
            1024 * 1024 * 1024,
        )?;
        if self.storage.recovery_checkpoint_bytes != 0 {
            // Below 1 MiB the index writes would cost more than the scans they spare.
            range(
                "storage.recovery_checkpoint_bytes",
                self.storage.recovery_checkpoint_bytes,
                1024 * 1024,
                1024 * 1024 * 1024 * 1024,
            )?;
        }
        self.validate_tiering()
    }

    fn validate_tiering(&self) -> Result<(), ConfigError> {
        let s = &self.storage;
        if !s.object_store.is_empty() {
            self.object_store_url()?;
        }
        let endpoint = &s.object_store_endpoint;
        let plain_or_tls = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !(endpoint.is_empty() || plain_or_tls) {
            return Err(super::err(format!(
                "storage.object_store_endpoint = '{endpoint}': give an http:// or https:// URL"
            )));
        }
        for (key, value) in [
            ("storage.local_retention_bytes", s.local_retention_bytes),
            ("storage.local_retention_ms", s.local_retention_ms),
        ] {
            if value < -1 {
                return Err(super::err(format!(
                    "{key} = {value}: use -1 for no bound or a value >= 0"
                )));
            }
        }
        range(
            "storage.object_store_timeout_ms",
            s.object_store_timeout_ms,
            100,
            600_000,
        )?;
        range(
            "storage.object_store_retries",
            s.object_store_retries,
            0,
            10,
        )?;
        range(
            "storage.offload_interval_ms",
            s.offload_interval_ms,
            100,
            24 * 3_600_000,
        )?;
        range(
            "storage.tier_block_bytes",
            s.tier_block_bytes,
            4 * 1024,
            64 * 1024 * 1024,
        )?;
        range(
            "storage.tier_cache_bytes",
            s.tier_cache_bytes,
            s.tier_block_bytes * 4,
            1 << 40,
        )?;
        Ok(())
    }

    /// Where tiered storage offloads to (`storage.object_store`, which must be set).
    pub fn object_store_url(&self) -> Result<crate::remote_store::StoreUrl, ConfigError> {
        crate::remote_store::StoreUrl::parse(&self.storage.object_store)
            .map_err(|reason| super::err(format!("storage.object_store = {reason}")))
    }
}
