//! The schema store: subjects with versions, schemas by global id, compatibility levels and
//! modes, in the metadata store.
//!
//! Layout (every value JSON with `format_version`):
//! - `/admin/schemas/topics/{tenant}/{namespace}/{topic}/value` and `.../key`: a topic's value
//!   and key schemas (Pulsar's schema of a topic is its value subject; Confluent's
//!   `<topic>-value` and `<topic>-key` subjects name these records).
//! - `/admin/schemas/subjects/{subject %-encoded}`: any other Confluent subject.
//! - `/admin/schemas/ids/{id}`: a schema by global id (shared by every subject that registered
//!   the same content); `/admin/schemas/fingerprints/{xxh3-128}`: content -> id.
//! - `/admin/schemas/next-id`: the next global id; `/admin/schemas/config`: global level, mode.
//!
//! A subject record lists its versions (number, id, soft-deleted flag) and its own level and
//! mode. Writes are compare-and-set on the subject record, so two registrations racing on one
//! subject are serialized; a schema is checked completely before anything is written.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use magnetar_broker::{Broker, Expect, MetadataError, MetadataStore, NamespaceName, TopicName};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::types::{Compatibility, Result, Schema, SchemaError};

const ROOT: &str = "/admin/schemas";
const FORMAT_VERSION: u32 = 1;
/// Compare-and-set retries of one write before giving up with a metadata error.
const CAS_ATTEMPTS: usize = 16;

/// Limits and defaults of the registry (`[schema_registry]` in the binary's config).
#[derive(Clone, Debug)]
pub struct SchemaConfig {
    /// Largest schema definition accepted, in bytes.
    pub schema_bytes_max: usize,
    /// Versions kept per subject (soft-deleted ones count until deleted permanently).
    pub versions_per_subject_max: usize,
    /// References one schema may have, directly and through its references.
    pub references_max: usize,
    /// The level of subjects without their own and of topics whose namespace sets none.
    pub default_compatibility: Compatibility,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        SchemaConfig {
            schema_bytes_max: 256 * 1024,
            versions_per_subject_max: 1000,
            references_max: 64,
            default_compatibility: Compatibility::Backward,
        }
    }
}

/// Largest `schema_bytes_max` the config may set: a schema is stored base64-encoded in one
/// metadata value, which is at most 1 MiB.
pub const SCHEMA_BYTES_MAX_LIMIT: usize = 640 * 1024;

/// A subject: a topic's value or key schemas, or a free-standing Confluent subject.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Topic { topic: TopicName, key: bool },
    Named(String),
}

impl Subject {
    /// A topic's value schemas (what Pulsar producers and consumers declare).
    pub fn topic_value(topic: TopicName) -> Subject {
        Subject::Topic { topic, key: false }
    }

    pub fn topic(&self) -> Option<&TopicName> {
        match self {
            Subject::Topic { topic, .. } => Some(topic),
            Subject::Named(_) => None,
        }
    }
}

/// Registry-wide access mode (Confluent's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    ReadWrite,
    ReadOnly,
    /// Migration from another registry: registrations name their id and version
    /// ([`SchemaStore::import`]) and are not checked for compatibility; set only on an empty
    /// registry or subject unless forced.
    Import,
}

impl Mode {
    pub fn parse(name: &str) -> Option<Mode> {
        match name.to_ascii_uppercase().as_str() {
            "READWRITE" => Some(Mode::ReadWrite),
            "READONLY" => Some(Mode::ReadOnly),
            "IMPORT" => Some(Mode::Import),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::ReadWrite => "READWRITE",
            Mode::ReadOnly => "READONLY",
            Mode::Import => "IMPORT",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    pub version: u32,
    pub id: u64,
    #[serde(default)]
    pub deleted: bool,
    pub created_ms: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SubjectRecord {
    format_version: u32,
    #[serde(default)]
    versions: Vec<VersionEntry>,
    /// The next version number: versions are never reused until the subject is deleted
    /// permanently.
    next_version: u32,
    #[serde(default)]
    compatibility: Option<Compatibility>,
    #[serde(default)]
    mode: Option<Mode>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct IdRecord {
    format_version: u32,
    id: u64,
    schema: Schema,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct GlobalConfig {
    format_version: u32,
    #[serde(default)]
    compatibility: Option<Compatibility>,
    #[serde(default)]
    mode: Option<Mode>,
}

/// A version of a subject, with its schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVersion {
    pub version: u32,
    pub id: u64,
    pub deleted: bool,
    pub created_ms: i64,
    pub schema: Schema,
}

/// The outcome of a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered {
    pub id: u64,
    pub version: u32,
    /// `false` when the subject already had this schema (nothing was written).
    pub created: bool,
}

/// How a registration may change a subject.
#[derive(Clone, Copy, Debug)]
pub struct RegisterOptions {
    /// Pulsar's `isAllowAutoUpdateSchema`: a subject that has versions may get a new one.
    pub allow_new_version: bool,
}

impl Default for RegisterOptions {
    fn default() -> Self {
        RegisterOptions {
            allow_new_version: true,
        }
    }
}

/// Which versions a lookup means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    Number(u32),
}

/// What the registry did since start, for `/metrics` (plain atomics: the metrics crate reads
/// them at scrape time).
#[derive(Debug, Default)]
pub struct SchemaCounters {
    /// New versions written, by either protocol (an existing version found is not one).
    pub registrations: AtomicU64,
    /// Checks of a schema against a subject's versions under a level (registrations that
    /// needed one, consumers' checks, the compatibility endpoints).
    pub compatibility_checks: AtomicU64,
    /// Those that found the schema incompatible.
    pub compatibility_failures: AtomicU64,
    /// Confluent REST requests by HTTP status (a handful of statuses: a small map).
    registry_requests: Mutex<BTreeMap<u16, u64>>,
}

impl SchemaCounters {
    pub fn record_registry_request(&self, status: u16) {
        *self
            .registry_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    /// Confluent REST requests so far, by status.
    pub fn registry_requests(&self) -> Vec<(u16, u64)> {
        self.registry_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(s, n)| (*s, *n))
            .collect()
    }
}

/// The schema registry over the broker's metadata store.
pub struct SchemaStore {
    broker: Arc<Broker>,
    config: SchemaConfig,
    counters: SchemaCounters,
    /// Confluent ids of topics' Pulsar schema versions, for framing Pulsar records to Kafka
    /// consumers (`framing.rs`); a version's id never changes while its subject exists, so the
    /// cache is cleared only when versions are removed.
    framing_ids: Mutex<std::collections::HashMap<(TopicName, i64), Option<u32>>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// %-encodes a subject name into one key segment (only `[A-Za-z0-9_-]` stay as they are).
fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Subject names are bounded so their keys are (Confluent has no stated limit).
pub const SUBJECT_LENGTH_MAX: usize = 255;

fn metadata_error(e: MetadataError) -> SchemaError {
    SchemaError::Broker(e.into())
}

impl std::fmt::Debug for SchemaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SchemaStore {
    pub fn new(broker: Arc<Broker>, config: SchemaConfig) -> Self {
        SchemaStore {
            broker,
            config,
            counters: SchemaCounters::default(),
            framing_ids: Mutex::new(std::collections::HashMap::new()),
        }
    }

    pub fn counters(&self) -> &SchemaCounters {
        &self.counters
    }

    /// [`check_compatibility`](crate::compat::check_compatibility), counted.
    pub(crate) fn counted_check(
        &self,
        level: Compatibility,
        new: &crate::compat::Checked,
        existing: &[crate::compat::Checked],
    ) -> std::result::Result<(), Vec<String>> {
        let result = crate::compat::check_compatibility(level, new, existing);
        if !existing.is_empty() {
            self.counters
                .compatibility_checks
                .fetch_add(1, Ordering::Relaxed);
            if result.is_err() {
                self.counters
                    .compatibility_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// Global ids assigned so far: schemas registered (one per distinct content).
    pub async fn ids_assigned(&self) -> Result<u64> {
        Ok(self
            .get_json::<NextId>(&format!("{ROOT}/next-id"))
            .await?
            .map_or(0, |(n, _)| n.next.saturating_sub(1)))
    }

    pub fn config(&self) -> &SchemaConfig {
        &self.config
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    fn metadata(&self) -> &Arc<dyn MetadataStore> {
        self.broker.metadata()
    }

    /// The subject a Confluent subject name means: `<topic>-value` / `<topic>-key` with a
    /// valid topic name (any of its three forms; bare names in the Kafka namespace) is that
    /// topic's record, anything else a named subject.
    pub fn subject(&self, name: &str) -> Result<Subject> {
        if name.is_empty() || name.len() > SUBJECT_LENGTH_MAX || name.chars().any(char::is_control)
        {
            return Err(SchemaError::InvalidRequest(format!(
                "invalid subject name (1..{SUBJECT_LENGTH_MAX} bytes, no control characters)"
            )));
        }
        for (suffix, key) in [("-value", false), ("-key", true)] {
            if let Some(topic) = name.strip_suffix(suffix) {
                if let Ok(topic) = self.broker.parse_topic(topic) {
                    return Ok(Subject::Topic { topic, key });
                }
            }
        }
        Ok(Subject::Named(name.to_string()))
    }

    /// The Confluent name of a subject (topics by the short name a Kafka client uses).
    pub fn subject_name(&self, subject: &Subject) -> String {
        match subject {
            Subject::Topic { topic, key } => format!(
                "{}-{}",
                topic.short_name(&self.broker.config().default_namespace),
                if *key { "key" } else { "value" }
            ),
            Subject::Named(name) => name.clone(),
        }
    }

    fn subject_key(subject: &Subject) -> String {
        match subject {
            Subject::Topic { topic, key } => format!(
                "{ROOT}/topics/{}/{}/{}/{}",
                topic.namespace.tenant,
                topic.namespace.namespace,
                topic.local,
                if *key { "key" } else { "value" }
            ),
            Subject::Named(name) => format!("{ROOT}/subjects/{}", encode_segment(name)),
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, u64)>> {
        let Some(v) = self.metadata().get(key).await.map_err(metadata_error)? else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&v.value).map_err(|e| {
            SchemaError::Broker(magnetar_broker::Error::Metadata(format!(
                "record {key} does not decode: {e}"
            )))
        })?;
        Ok(Some((value, v.version)))
    }

    fn to_json<T: Serialize>(value: &T) -> Result<bytes::Bytes> {
        serde_json::to_vec(value)
            .map(bytes::Bytes::from)
            .map_err(|e| SchemaError::Broker(magnetar_broker::Error::Metadata(e.to_string())))
    }

    async fn subject_record(&self, subject: &Subject) -> Result<Option<(SubjectRecord, u64)>> {
        self.get_json(&Self::subject_key(subject)).await
    }

    /// The schema with global id `id`.
    pub async fn schema_by_id(&self, id: u64) -> Result<Option<Schema>> {
        Ok(self
            .get_json::<IdRecord>(&format!("{ROOT}/ids/{id}"))
            .await?
            .map(|(r, _)| r.schema))
    }

    // ---- levels and modes ----

    async fn global(&self) -> Result<(GlobalConfig, Option<u64>)> {
        Ok(match self.get_json(&format!("{ROOT}/config")).await? {
            Some((config, version)) => (config, Some(version)),
            None => (GlobalConfig::default(), None),
        })
    }

    async fn update_global(&self, change: impl Fn(&mut GlobalConfig)) -> Result<()> {
        let key = format!("{ROOT}/config");
        for _ in 0..CAS_ATTEMPTS {
            let (mut config, version) = self.global().await?;
            config.format_version = FORMAT_VERSION;
            change(&mut config);
            let expect = version.map_or(Expect::Absent, Expect::Version);
            match self
                .metadata()
                .put(&key, Self::to_json(&config)?, expect)
                .await
            {
                Ok(_) => return Ok(()),
                Err(MetadataError::BadVersion { .. }) => continue,
                Err(e) => return Err(metadata_error(e)),
            }
        }
        Err(too_many_updates("the registry config"))
    }

    /// The global level (the configured default when none was set).
    pub async fn global_compatibility(&self) -> Result<Compatibility> {
        Ok(self
            .global()
            .await?
            .0
            .compatibility
            .unwrap_or(self.config.default_compatibility))
    }

    pub async fn set_global_compatibility(&self, level: Option<Compatibility>) -> Result<()> {
        self.update_global(|c| c.compatibility = level).await
    }

    pub async fn global_mode(&self) -> Result<Mode> {
        Ok(self.global().await?.0.mode.unwrap_or(Mode::ReadWrite))
    }

    pub async fn set_global_mode(&self, mode: Option<Mode>) -> Result<()> {
        self.update_global(|c| c.mode = mode).await
    }

    /// A subject's own level, if it has one.
    pub async fn subject_compatibility(&self, subject: &Subject) -> Result<Option<Compatibility>> {
        Ok(self
            .subject_record(subject)
            .await?
            .and_then(|(r, _)| r.compatibility))
    }

    /// A subject's own mode, if it has one.
    pub async fn subject_mode(&self, subject: &Subject) -> Result<Option<Mode>> {
        Ok(self
            .subject_record(subject)
            .await?
            .and_then(|(r, _)| r.mode))
    }

    pub async fn set_subject_compatibility(
        &self,
        subject: &Subject,
        level: Option<Compatibility>,
    ) -> Result<()> {
        self.update_subject(subject, true, |r| {
            r.compatibility = level;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    pub async fn set_subject_mode(&self, subject: &Subject, mode: Option<Mode>) -> Result<()> {
        self.update_subject(subject, true, |r| {
            r.mode = mode;
            Ok(())
        })
        .await
        .map(|_| ())
    }

    /// The namespace's schema policies of a topic subject: (level, new versions allowed,
    /// validation enforced).
    pub async fn namespace_policy(
        &self,
        namespace: &NamespaceName,
    ) -> Result<(Option<Compatibility>, bool, bool)> {
        let policies = self.broker.namespace_policies(namespace).await?;
        let Some(p) = policies else {
            return Ok((None, true, false));
        };
        let level = p
            .schema_compatibility_strategy
            .as_deref()
            .and_then(Compatibility::parse);
        Ok((
            level,
            p.schema_auto_update_allowed.unwrap_or(true),
            p.schema_validation_enforced.unwrap_or(false),
        ))
    }

    /// The level a subject is checked at: its own, else (a topic's) its namespace's, else
    /// the global one.
    pub async fn effective_compatibility(&self, subject: &Subject) -> Result<Compatibility> {
        if let Some(level) = self.subject_compatibility(subject).await? {
            return Ok(level);
        }
        if let Some(topic) = subject.topic() {
            if let (Some(level), _, _) = self.namespace_policy(&topic.namespace).await? {
                return Ok(level);
            }
        }
        self.global_compatibility().await
    }

    /// Whether IMPORT mode may be set (globally, or on `subject`): only where no schema was
    /// ever registered (soft-deleted versions count), unless `force`.
    pub async fn check_import_allowed(&self, subject: Option<&Subject>, force: bool) -> Result<()> {
        if force {
            return Ok(());
        }
        let found = match subject {
            None => !self.subjects(true).await?.is_empty(),
            Some(subject) => self
                .subject_record(subject)
                .await?
                .is_some_and(|(r, _)| !r.versions.is_empty()),
        };
        if found {
            return Err(SchemaError::ReadOnly(match subject {
                None => "cannot import since found existing subjects (set IMPORT with force=true to allow it)".into(),
                Some(s) => format!(
                    "cannot import since subject '{}' has versions (set IMPORT with force=true to allow it)",
                    self.subject_name(s)
                ),
            }));
        }
        Ok(())
    }

    pub(crate) async fn effective_mode(&self, subject: &Subject) -> Result<Mode> {
        match self.subject_mode(subject).await? {
            Some(mode) => Ok(mode),
            None => self.global_mode().await,
        }
    }

    // ---- reading ----

    /// The versions of a subject (with soft-deleted ones when asked); `None` for an unknown
    /// subject.
    pub async fn versions(
        &self,
        subject: &Subject,
        include_deleted: bool,
    ) -> Result<Option<Vec<VersionEntry>>> {
        let Some((record, _)) = self.subject_record(subject).await? else {
            return Ok(None);
        };
        let versions: Vec<VersionEntry> = record
            .versions
            .into_iter()
            .filter(|v| include_deleted || !v.deleted)
            .collect();
        if versions.is_empty() && !include_deleted {
            return Ok(None);
        }
        Ok(Some(versions))
    }

    /// One version of a subject with its schema (`Latest`: the newest live one).
    pub async fn version(
        &self,
        subject: &Subject,
        selector: VersionSelector,
        include_deleted: bool,
    ) -> Result<Option<StoredVersion>> {
        let Some(versions) = self.versions(subject, include_deleted).await? else {
            return Ok(None);
        };
        let entry = match selector {
            VersionSelector::Latest => versions.iter().rev().find(|v| !v.deleted),
            VersionSelector::Number(n) => versions.iter().find(|v| v.version == n),
        };
        let Some(entry) = entry.cloned() else {
            return Ok(None);
        };
        let schema = self
            .schema_by_id(entry.id)
            .await?
            .ok_or(SchemaError::SchemaNotFound(entry.id))?;
        Ok(Some(StoredVersion {
            version: entry.version,
            id: entry.id,
            deleted: entry.deleted,
            created_ms: entry.created_ms,
            schema,
        }))
    }

    /// Every subject (those whose versions are all soft-deleted only when asked).
    pub async fn subjects(&self, include_deleted: bool) -> Result<Vec<Subject>> {
        let mut out = Vec::new();
        let md = self.metadata();
        for name in md
            .list_children(&format!("{ROOT}/subjects"))
            .await
            .map_err(metadata_error)?
        {
            if let Some(decoded) = decode_segment(&name) {
                out.push(Subject::Named(decoded));
            }
        }
        let topics_root = format!("{ROOT}/topics");
        for tenant in md
            .list_children(&topics_root)
            .await
            .map_err(metadata_error)?
        {
            let tenant_key = format!("{topics_root}/{tenant}");
            for ns in md
                .list_children(&tenant_key)
                .await
                .map_err(metadata_error)?
            {
                let ns_key = format!("{tenant_key}/{ns}");
                for topic in md.list_children(&ns_key).await.map_err(metadata_error)? {
                    let topic_key = format!("{ns_key}/{topic}");
                    for role in md.list_children(&topic_key).await.map_err(metadata_error)? {
                        let Ok(name) = NamespaceName::new(&tenant, &ns)
                            .and_then(|n| TopicName::new(n, &topic))
                        else {
                            continue;
                        };
                        out.push(Subject::Topic {
                            topic: name,
                            key: role == "key",
                        });
                    }
                }
            }
        }
        let mut kept = Vec::with_capacity(out.len());
        for subject in out {
            if include_deleted || self.versions(&subject, false).await?.is_some() {
                kept.push(subject);
            }
        }
        kept.sort();
        Ok(kept)
    }

    /// The subjects and versions that hold schema `id`.
    pub async fn subjects_of_id(&self, id: u64) -> Result<Vec<(Subject, u32)>> {
        let mut out = Vec::new();
        for subject in self.subjects(false).await? {
            for v in self.versions(&subject, false).await?.unwrap_or_default() {
                if v.id == id {
                    out.push((subject.clone(), v.version));
                }
            }
        }
        Ok(out)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct FingerprintRecord {
    format_version: u32,
    id: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct NextId {
    format_version: u32,
    next: u64,
}

fn too_many_updates(what: &str) -> SchemaError {
    SchemaError::Broker(magnetar_broker::Error::Metadata(format!(
        "too many concurrent updates of {what}"
    )))
}

mod check;
mod framing;
mod write;

#[cfg(test)]
mod tests;
