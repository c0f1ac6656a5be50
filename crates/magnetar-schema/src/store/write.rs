//! Writing subjects: registration (checked completely before anything is written), global ids,
//! soft and hard deletion, all by compare-and-set.

use magnetar_broker::{Expect, MetadataError, TopicName};

use super::{
    metadata_error, now_ms, too_many_updates, FingerprintRecord, IdRecord, Mode, NextId,
    RegisterOptions, Registered, SchemaStore, Subject, SubjectRecord, VersionEntry,
    VersionSelector, CAS_ATTEMPTS, FORMAT_VERSION, ROOT,
};
use crate::compat::{check_schema, Checked};
use crate::types::{Result, Schema, SchemaError};

impl SchemaStore {
    // ---- writing ----

    /// Reads, changes and writes back a subject record with compare-and-set (creating it when
    /// `create`). `change` may refuse.
    pub(super) async fn update_subject<T>(
        &self,
        subject: &Subject,
        create: bool,
        mut change: impl FnMut(&mut SubjectRecord) -> Result<T>,
    ) -> Result<T> {
        let key = Self::subject_key(subject);
        for _ in 0..CAS_ATTEMPTS {
            let (mut record, expect) = match self.subject_record(subject).await? {
                Some((record, version)) => (record, Expect::Version(version)),
                None if create => (
                    SubjectRecord {
                        format_version: FORMAT_VERSION,
                        next_version: 1,
                        ..Default::default()
                    },
                    Expect::Absent,
                ),
                None => return Err(SchemaError::SubjectNotFound(self.subject_name(subject))),
            };
            let out = change(&mut record)?;
            match self
                .metadata()
                .put(&key, Self::to_json(&record)?, expect)
                .await
            {
                Ok(_) => return Ok(out),
                Err(MetadataError::BadVersion { .. }) => continue,
                Err(e) => return Err(metadata_error(e)),
            }
        }
        Err(too_many_updates(&self.subject_name(subject)))
    }

    /// Registers `schema` under `subject`: the existing version when the subject has the same
    /// schema, else a new version once it passes the subject's compatibility level. Nothing
    /// is written for a schema that is refused.
    pub async fn register(
        &self,
        subject: &Subject,
        schema: &Schema,
        options: RegisterOptions,
    ) -> Result<Registered> {
        let checked = self.validate(schema).await?;
        if let Some(found) = self.registered_fast(subject, &checked).await? {
            return Ok(found);
        }
        for _ in 0..CAS_ATTEMPTS {
            let current = self.subject_record(subject).await?;
            let existing = match &current {
                Some((record, _)) => self.checked_versions(record).await?,
                None => Vec::new(),
            };
            if let Some((entry, _)) = existing
                .iter()
                .find(|(_, c)| c.normalized == checked.normalized)
            {
                return Ok(Registered {
                    id: entry.id,
                    version: entry.version,
                    created: false,
                });
            }
            match self.effective_mode(subject).await? {
                Mode::ReadOnly => {
                    return Err(SchemaError::ReadOnly(format!(
                        "subject '{}' is in read-only mode",
                        self.subject_name(subject)
                    )))
                }
                Mode::Import => {
                    return Err(SchemaError::ReadOnly(format!(
                        "subject '{}' is in IMPORT mode: a registration names its schema id (and version)",
                        self.subject_name(subject)
                    )))
                }
                Mode::ReadWrite => {}
            }
            if !existing.is_empty() && !options.allow_new_version {
                return Err(SchemaError::Incompatible(
                    "the topic has a different schema and schema auto-update is disabled for its namespace"
                        .into(),
                ));
            }
            let level = self.effective_compatibility(subject).await?;
            let old: Vec<Checked> = existing.into_iter().map(|(_, c)| c).collect();
            if let Err(reasons) = self.counted_check(level, &checked, &old) {
                return Err(SchemaError::Incompatible(reasons.join("; ")));
            }
            if let Some((record, _)) = &current {
                if record.versions.len() >= self.config.versions_per_subject_max {
                    return Err(SchemaError::LimitReached(format!(
                        "subject '{}' has {} versions, schema_registry.versions_per_subject_max",
                        self.subject_name(subject),
                        record.versions.len()
                    )));
                }
            }
            let id = self.id_for(schema, &checked).await?;
            let seen: Vec<VersionEntry> = current
                .as_ref()
                .map(|(r, _)| r.versions.clone())
                .unwrap_or_default();
            let appended = self
                .update_subject(subject, true, |record| {
                    if record.versions != seen {
                        // Changed by someone else meanwhile: check again from the top.
                        return Ok(None);
                    }
                    let version = record.next_version.max(1);
                    record.next_version = version + 1;
                    record.versions.push(VersionEntry {
                        version,
                        id,
                        deleted: false,
                        created_ms: now_ms(),
                    });
                    Ok(Some(version))
                })
                .await;
            match appended {
                Ok(Some(version)) => {
                    self.counters
                        .registrations
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Ok(Registered {
                        id,
                        version,
                        created: true,
                    });
                }
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(too_many_updates(&self.subject_name(subject)))
    }

    /// The common case of a producer reconnecting: the content's id (by fingerprint) is a live
    /// version of the subject, found without parsing every version.
    pub(super) async fn registered_fast(
        &self,
        subject: &Subject,
        checked: &Checked,
    ) -> Result<Option<Registered>> {
        let Some(id) = self.fingerprint_id(checked).await? else {
            return Ok(None);
        };
        let Some((record, _)) = self.subject_record(subject).await? else {
            return Ok(None);
        };
        Ok(record
            .versions
            .iter()
            .find(|v| !v.deleted && v.id == id)
            .map(|v| Registered {
                id,
                version: v.version,
                created: false,
            }))
    }

    /// The id whose content is `checked`'s, if one was registered (the fingerprint's id, its
    /// stored content compared).
    async fn fingerprint_id(&self, checked: &Checked) -> Result<Option<u64>> {
        let hash = twox_hash::XxHash3_128::oneshot(checked.normalized.as_bytes());
        let key = format!("{ROOT}/fingerprints/{hash:032x}");
        let Some((FingerprintRecord { id, .. }, _)) = self.get_json(&key).await? else {
            return Ok(None);
        };
        let Some(stored) = self.schema_by_id(id).await? else {
            return Ok(None);
        };
        let references = self.resolve_references(&stored).await?;
        Ok((check_schema(&stored, &references)?.normalized == checked.normalized).then_some(id))
    }

    /// The global id of `schema`'s content: the existing one, or a new one (the next id,
    /// compare-and-set, then the id record and the fingerprint).
    async fn id_for(&self, schema: &Schema, checked: &Checked) -> Result<u64> {
        if let Some(id) = self.fingerprint_id(checked).await? {
            return Ok(id);
        }
        let hash = twox_hash::XxHash3_128::oneshot(checked.normalized.as_bytes());
        let fingerprint_key = format!("{ROOT}/fingerprints/{hash:032x}");
        let next_key = format!("{ROOT}/next-id");
        let id = loop {
            let (next, expect) = match self.get_json::<NextId>(&next_key).await? {
                Some((n, version)) => (n.next, Expect::Version(version)),
                None => (1, Expect::Absent),
            };
            let record = NextId {
                format_version: FORMAT_VERSION,
                next: next + 1,
            };
            match self
                .metadata()
                .put(&next_key, Self::to_json(&record)?, expect)
                .await
            {
                Ok(_) => break next,
                Err(MetadataError::BadVersion { .. }) => continue,
                Err(e) => return Err(metadata_error(e)),
            }
        };
        let record = IdRecord {
            format_version: FORMAT_VERSION,
            id,
            schema: schema.clone(),
        };
        self.metadata()
            .put(
                &format!("{ROOT}/ids/{id}"),
                Self::to_json(&record)?,
                Expect::Absent,
            )
            .await
            .map_err(metadata_error)?;
        let fingerprint = FingerprintRecord {
            format_version: FORMAT_VERSION,
            id,
        };
        self.metadata()
            .put(&fingerprint_key, Self::to_json(&fingerprint)?, Expect::Any)
            .await
            .map_err(metadata_error)?;
        Ok(id)
    }

    /// IMPORT mode: registers `schema` under `subject` with the given global id and version
    /// (the subject's next version when `None`), without a compatibility check, as a migration
    /// from another registry keeps its ids. The id must be free or hold the same content; the
    /// version must be free or hold the same id. Later ids are taken after the highest one.
    pub async fn import(
        &self,
        subject: &Subject,
        schema: &Schema,
        id: u64,
        version: Option<u32>,
    ) -> Result<Registered> {
        let name = self.subject_name(subject);
        if self.effective_mode(subject).await? != Mode::Import {
            return Err(SchemaError::ReadOnly(format!(
                "a schema id can be given only in IMPORT mode (subject '{name}')"
            )));
        }
        if id == 0 || id > i32::MAX as u64 {
            return Err(SchemaError::InvalidRequest(format!(
                "schema id {id} is not between 1 and 2^31-1"
            )));
        }
        let checked = self.validate(schema).await?;
        match self.schema_by_id(id).await? {
            Some(stored) => {
                let references = self.resolve_references(&stored).await?;
                if check_schema(&stored, &references)?.normalized != checked.normalized {
                    return Err(SchemaError::ReadOnly(format!(
                        "schema id {id} holds another schema; overwriting it is not permitted"
                    )));
                }
            }
            None => self.write_imported_id(id, schema, &checked).await?,
        }
        let max = self.config.versions_per_subject_max;
        let (version, created) = self
            .update_subject(subject, true, |record| {
                let version = version.unwrap_or(record.next_version.max(1));
                if let Some(v) = record.versions.iter().find(|v| v.version == version) {
                    if v.id == id {
                        return Ok((version, false));
                    }
                    return Err(SchemaError::ReadOnly(format!(
                        "version {version} of subject '{name}' holds schema id {}",
                        v.id
                    )));
                }
                if record.versions.len() >= max {
                    return Err(SchemaError::LimitReached(format!(
                        "subject '{name}' has {} versions, schema_registry.versions_per_subject_max",
                        record.versions.len()
                    )));
                }
                record.versions.push(VersionEntry {
                    version,
                    id,
                    deleted: false,
                    created_ms: now_ms(),
                });
                record.versions.sort_by_key(|v| v.version);
                record.next_version = record.next_version.max(version.saturating_add(1));
                Ok((version, true))
            })
            .await?;
        if created {
            self.counters
                .registrations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Registered {
            id,
            version,
            created,
        })
    }

    /// Writes an imported id's record, its fingerprint when the content has none yet, and
    /// moves `next-id` past it.
    async fn write_imported_id(&self, id: u64, schema: &Schema, checked: &Checked) -> Result<()> {
        let record = IdRecord {
            format_version: FORMAT_VERSION,
            id,
            schema: schema.clone(),
        };
        match self
            .metadata()
            .put(
                &format!("{ROOT}/ids/{id}"),
                Self::to_json(&record)?,
                Expect::Absent,
            )
            .await
        {
            Ok(_) => {}
            // Written by a concurrent import of the same id: compared by the caller's retry.
            Err(MetadataError::BadVersion { .. }) => {
                return Err(SchemaError::ReadOnly(format!(
                    "schema id {id} was written concurrently; retry"
                )))
            }
            Err(e) => return Err(metadata_error(e)),
        }
        let hash = twox_hash::XxHash3_128::oneshot(checked.normalized.as_bytes());
        let fingerprint = FingerprintRecord {
            format_version: FORMAT_VERSION,
            id,
        };
        match self
            .metadata()
            .put(
                &format!("{ROOT}/fingerprints/{hash:032x}"),
                Self::to_json(&fingerprint)?,
                Expect::Absent,
            )
            .await
        {
            Ok(_) | Err(MetadataError::BadVersion { .. }) => {}
            Err(e) => return Err(metadata_error(e)),
        }
        let next_key = format!("{ROOT}/next-id");
        for _ in 0..CAS_ATTEMPTS {
            let (next, expect) = match self.get_json::<NextId>(&next_key).await? {
                Some((n, version)) => (n.next, Expect::Version(version)),
                None => (1, Expect::Absent),
            };
            if next > id {
                return Ok(());
            }
            let record = NextId {
                format_version: FORMAT_VERSION,
                next: id + 1,
            };
            match self
                .metadata()
                .put(&next_key, Self::to_json(&record)?, expect)
                .await
            {
                Ok(_) => return Ok(()),
                Err(MetadataError::BadVersion { .. }) => continue,
                Err(e) => return Err(metadata_error(e)),
            }
        }
        Err(too_many_updates("next-id"))
    }

    /// The ids of live schemas that reference one of `versions` of `subject`.
    async fn referenced_by(&self, subject: &Subject, versions: &[u32]) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        for other in self.subjects(false).await? {
            for v in self.versions(&other, false).await?.unwrap_or_default() {
                let Some(schema) = self.schema_by_id(v.id).await? else {
                    continue;
                };
                let refers = schema.references.iter().any(|r| {
                    versions.contains(&r.version)
                        && self.subject(&r.subject).ok().as_ref() == Some(subject)
                });
                if refers && !ids.contains(&v.id) {
                    ids.push(v.id);
                }
            }
        }
        Ok(ids)
    }

    /// Confluent's 42206: a version other schemas reference is not deleted.
    async fn refuse_referenced(&self, subject: &Subject, versions: &[u32]) -> Result<()> {
        let ids = self.referenced_by(subject, versions).await?;
        if ids.is_empty() {
            return Ok(());
        }
        Err(SchemaError::Referenced(format!(
            "subject '{}' version(s) {versions:?} are referenced by schema id(s) {ids:?}; delete those first",
            self.subject_name(subject)
        )))
    }

    /// Soft-deletes (or, `permanent`, removes a soft-deleted) version; answers its number. A
    /// version that other live schemas reference is refused ([`SchemaError::Referenced`]).
    pub async fn delete_version(
        &self,
        subject: &Subject,
        selector: VersionSelector,
        permanent: bool,
    ) -> Result<u32> {
        self.check_writable(subject).await?;
        let name = self.subject_name(subject);
        let all = self.versions(subject, true).await?.unwrap_or_default();
        let target = match selector {
            VersionSelector::Latest => all.iter().rev().find(|v| !v.deleted),
            VersionSelector::Number(n) => all.iter().find(|v| v.version == n),
        };
        if let Some(target) = target {
            self.refuse_referenced(subject, &[target.version]).await?;
        }
        let version = self
            .update_subject(subject, false, |record| {
                let position = match selector {
                    VersionSelector::Latest => record.versions.iter().rposition(|v| !v.deleted),
                    VersionSelector::Number(n) => {
                        record.versions.iter().position(|v| v.version == n)
                    }
                };
                let not_found = || SchemaError::VersionNotFound {
                    subject: name.clone(),
                    version: match selector {
                        VersionSelector::Latest => "latest".into(),
                        VersionSelector::Number(n) => n.to_string(),
                    },
                };
                let at = position.ok_or_else(not_found)?;
                let entry = &mut record.versions[at];
                let version = entry.version;
                if permanent {
                    if !entry.deleted {
                        return Err(SchemaError::NotSoftDeleted(format!(
                            "version {version} of subject '{name}' must be soft-deleted before it is deleted permanently"
                        )));
                    }
                    record.versions.remove(at);
                    self.forget_framing_ids();
                } else if entry.deleted {
                    return Err(SchemaError::VersionNotFound {
                        subject: name.clone(),
                        version: format!("{version} (soft-deleted)"),
                    });
                } else {
                    entry.deleted = true;
                }
                Ok(version)
            })
            .await?;
        Ok(version)
    }

    /// Soft-deletes every version of a subject, or (`permanent`) removes a subject whose
    /// versions are all soft-deleted; answers the versions. A subject whose versions other live
    /// schemas reference is refused ([`SchemaError::Referenced`]).
    pub async fn delete_subject(&self, subject: &Subject, permanent: bool) -> Result<Vec<u32>> {
        self.check_writable(subject).await?;
        let name = self.subject_name(subject);
        let Some((record, version)) = self.subject_record(subject).await? else {
            return Err(SchemaError::SubjectNotFound(name));
        };
        let numbers: Vec<u32> = record.versions.iter().map(|v| v.version).collect();
        self.refuse_referenced(subject, &numbers).await?;
        if permanent {
            if record.versions.iter().any(|v| !v.deleted) {
                return Err(SchemaError::NotSoftDeleted(format!(
                    "subject '{name}' must be soft-deleted before it is deleted permanently"
                )));
            }
            match self
                .metadata()
                .delete(&Self::subject_key(subject), Expect::Version(version))
                .await
            {
                Ok(()) | Err(MetadataError::NotFound { .. }) => {}
                Err(e) => return Err(metadata_error(e)),
            }
            self.forget_framing_ids();
            return Ok(record.versions.iter().map(|v| v.version).collect());
        }
        if record.versions.iter().all(|v| v.deleted) {
            return Err(SchemaError::SubjectNotFound(format!(
                "{name} (soft-deleted)"
            )));
        }
        self.update_subject(subject, false, |record| {
            let mut deleted = Vec::new();
            for v in record.versions.iter_mut().filter(|v| !v.deleted) {
                v.deleted = true;
                deleted.push(v.version);
            }
            Ok(deleted)
        })
        .await
    }

    /// Removes a topic's value and key schemas at once (the topic was deleted: Pulsar deletes
    /// a topic's schema with it). The schemas' global ids stay readable, as every id does;
    /// answers how many subjects were removed.
    pub async fn delete_topic_schemas(&self, topic: &TopicName) -> Result<usize> {
        let mut removed = 0;
        for key in [false, true] {
            let subject = Subject::Topic {
                topic: topic.clone(),
                key,
            };
            match self
                .metadata()
                .delete(&Self::subject_key(&subject), Expect::Any)
                .await
            {
                Ok(()) => removed += 1,
                Err(MetadataError::NotFound { .. }) => {}
                Err(e) => return Err(metadata_error(e)),
            }
        }
        if removed > 0 {
            self.forget_framing_ids();
            tracing::info!(topic = %topic, subjects = removed, "deleted the schemas of a deleted topic");
        }
        Ok(removed)
    }

    async fn check_writable(&self, subject: &Subject) -> Result<()> {
        if self.effective_mode(subject).await? == Mode::ReadOnly {
            return Err(SchemaError::ReadOnly(format!(
                "subject '{}' is in read-only mode",
                self.subject_name(subject)
            )));
        }
        Ok(())
    }
}
