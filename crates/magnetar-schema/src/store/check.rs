//! Checking schemas against a subject: parsing with references resolved, the versions a level
//! names, and the reasons a schema is refused.

use std::collections::BTreeSet;

use super::{SchemaStore, Subject, SubjectRecord, VersionEntry, VersionSelector};
use crate::compat::{check_schema, Checked};
use crate::types::{Compatibility, Result, Schema, SchemaError};

impl SchemaStore {
    // ---- checking ----

    /// Parses `schema` with its references resolved; refuses what breaks a limit.
    pub async fn validate(&self, schema: &Schema) -> Result<Checked> {
        if !schema.kind.is_storable() {
            return Err(SchemaError::Invalid(format!(
                "{} is not a schema that can be stored",
                schema.kind
            )));
        }
        if schema.data.len() > self.config.schema_bytes_max {
            return Err(SchemaError::LimitReached(format!(
                "schema of {} bytes exceeds schema_registry.schema_bytes_max ({})",
                schema.data.len(),
                self.config.schema_bytes_max
            )));
        }
        let references = self.resolve_references(schema).await?;
        check_schema(schema, &references)
    }

    /// The schemas `schema` references, transitively, dependencies first, each with the name it
    /// is referenced by. A loop or more than `references_max` references is refused.
    pub(super) async fn resolve_references(
        &self,
        schema: &Schema,
    ) -> Result<Vec<(String, Schema)>> {
        let mut ordered: Vec<(String, Schema)> = Vec::new();
        let mut done: BTreeSet<(String, u32)> = BTreeSet::new();
        // Depth-first with an explicit stack: (reference, children expanded?).
        let mut stack: Vec<(crate::types::SchemaReference, bool)> = schema
            .references
            .iter()
            .rev()
            .map(|r| (r.clone(), false))
            .collect();
        let mut path: Vec<(String, u32)> = Vec::new();
        while let Some((reference, expanded)) = stack.pop() {
            let key = (reference.subject.clone(), reference.version);
            if expanded {
                path.pop();
                if done.insert(key.clone()) {
                    let found = self.referenced(&reference).await?;
                    ordered.push((reference.name.clone(), found));
                }
                continue;
            }
            if path.contains(&key) {
                return Err(SchemaError::Invalid(format!(
                    "reference loop through subject '{}' version {}",
                    reference.subject, reference.version
                )));
            }
            if done.contains(&key) {
                continue;
            }
            if done.len() + path.len() >= self.config.references_max {
                return Err(SchemaError::LimitReached(format!(
                    "more than schema_registry.references_max ({}) references",
                    self.config.references_max
                )));
            }
            let found = self.referenced(&reference).await?;
            path.push(key);
            stack.push((reference, true));
            for child in found.references.iter().rev() {
                stack.push((child.clone(), false));
            }
        }
        Ok(ordered)
    }

    async fn referenced(&self, reference: &crate::types::SchemaReference) -> Result<Schema> {
        let subject = self.subject(&reference.subject)?;
        match self
            .version(&subject, VersionSelector::Number(reference.version), false)
            .await?
        {
            Some(v) => Ok(v.schema),
            None => Err(SchemaError::Invalid(format!(
                "reference '{}' names subject '{}' version {}, which does not exist",
                reference.name, reference.subject, reference.version
            ))),
        }
    }

    /// The checked live versions of a subject, oldest first.
    pub(super) async fn checked_versions(
        &self,
        record: &SubjectRecord,
    ) -> Result<Vec<(VersionEntry, Checked)>> {
        let mut out = Vec::new();
        for entry in record.versions.iter().filter(|v| !v.deleted) {
            let schema = self
                .schema_by_id(entry.id)
                .await?
                .ok_or(SchemaError::SchemaNotFound(entry.id))?;
            let references = self.resolve_references(&schema).await?;
            out.push((entry.clone(), check_schema(&schema, &references)?));
        }
        Ok(out)
    }

    /// The live version of `subject` whose schema is `schema`'s content, if any.
    pub async fn find(&self, subject: &Subject, schema: &Schema) -> Result<Option<(u32, u64)>> {
        let checked = self.validate(schema).await?;
        let Some((record, _)) = self.subject_record(subject).await? else {
            return Ok(None);
        };
        Ok(self
            .checked_versions(&record)
            .await?
            .into_iter()
            .find(|(_, c)| c.normalized == checked.normalized)
            .map(|(e, _)| (e.version, e.id)))
    }

    /// Whether `schema` could be registered under `subject` (against `against`, or the
    /// versions the subject's level names): the reasons it could not, empty when it could.
    pub async fn check(
        &self,
        subject: &Subject,
        schema: &Schema,
        against: Option<VersionSelector>,
    ) -> Result<Vec<String>> {
        let checked = self.validate(schema).await?;
        if against.is_none() && self.registered_fast(subject, &checked).await?.is_some() {
            return Ok(Vec::new());
        }
        let level = self.effective_compatibility(subject).await?;
        let Some((record, _)) = self.subject_record(subject).await? else {
            return Ok(Vec::new());
        };
        let existing = self.checked_versions(&record).await?;
        let existing: Vec<Checked> = match against {
            None => existing.into_iter().map(|(_, c)| c).collect(),
            Some(selector) => {
                let chosen = match selector {
                    VersionSelector::Latest => existing.into_iter().last(),
                    VersionSelector::Number(n) => {
                        existing.into_iter().find(|(e, _)| e.version == n)
                    }
                };
                match chosen {
                    Some((_, c)) => vec![c],
                    None => {
                        return Err(SchemaError::VersionNotFound {
                            subject: self.subject_name(subject),
                            version: format!("{against:?}"),
                        })
                    }
                }
            }
        };
        if existing.iter().any(|c| c.normalized == checked.normalized) {
            return Ok(Vec::new());
        }
        let level = match (against, level.is_transitive()) {
            // One named version: the non-transitive form of the level.
            (Some(_), true) => match level {
                Compatibility::BackwardTransitive => Compatibility::Backward,
                Compatibility::ForwardTransitive => Compatibility::Forward,
                _ => Compatibility::Full,
            },
            _ => level,
        };
        Ok(self
            .counted_check(level, &checked, &existing)
            .err()
            .unwrap_or_default())
    }
}
