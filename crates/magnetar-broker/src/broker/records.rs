//! The broker's records in the metadata store: JSON values carrying a `format_version`, read and
//! written with the store's versions (compare-and-set). Every service below keeps its records
//! through this, so the encoding and the version check live in one place.

use std::sync::Arc;

use bytes::Bytes;
use magnetar_metadata::{Expect, MetadataError, MetadataStore};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::resources::FORMAT_VERSION;

/// The metadata store, with JSON values. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub(crate) struct Records {
    store: Arc<dyn MetadataStore>,
}

impl Records {
    pub(crate) fn new(store: Arc<dyn MetadataStore>) -> Self {
        Self { store }
    }

    /// The store itself, for what is not a JSON record (children, existence, deletes, watches).
    pub(crate) fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// A record and its version; `None` when the key is absent.
    pub(crate) async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, u64)>> {
        match self.store.get(key).await? {
            Some(v) => Ok(Some((from_json(key, &v.value)?, v.version))),
            None => Ok(None),
        }
    }

    /// Writes `value` at `key` under `expect`; the store's answer is the caller's to read (a lost
    /// compare-and-set is `MetadataError::BadVersion`).
    pub(crate) async fn put<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        expect: Expect,
    ) -> Result<std::result::Result<u64, MetadataError>> {
        let bytes = to_json(value)?;
        Ok(self.store.put(key, bytes, expect).await)
    }

    /// Creates a record; `false` when the key already exists.
    pub(crate) async fn put_if_absent<T: Serialize>(&self, key: &str, value: &T) -> Result<bool> {
        match self.put(key, value, Expect::Absent).await? {
            Ok(_) => Ok(true),
            Err(MetadataError::BadVersion { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Metadata(format!("cannot encode value: {e}")))
}

fn from_json<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T> {
    #[derive(serde::Deserialize)]
    struct Probe {
        format_version: u32,
    }
    let probe: Probe = serde_json::from_slice(value)
        .map_err(|e| Error::Metadata(format!("cannot decode '{key}': {e}")))?;
    if probe.format_version > FORMAT_VERSION {
        return Err(Error::Metadata(format!(
            "'{key}' has format version {} and this broker reads up to {FORMAT_VERSION}",
            probe.format_version
        )));
    }
    serde_json::from_slice(value)
        .map_err(|e| Error::Metadata(format!("cannot decode '{key}': {e}")))
}
