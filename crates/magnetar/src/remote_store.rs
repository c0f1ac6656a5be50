//! The object store behind tiered storage, from `storage.object_store`: `file:///path`,
//! `memory://`, `s3://bucket[/prefix]`, `gs://bucket[/prefix]`, `az://container[/prefix]`.
//!
//! Credentials, region and endpoint come from each provider's standard environment (S3:
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`; GCS: `GOOGLE_SERVICE_ACCOUNT`...; Azure:
//! `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`...), read by `object_store`'s
//! builders; `storage.object_store_endpoint` and `storage.object_store_region` (Pulsar's
//! `s3ManagedLedgerOffloadServiceEndpoint` / `...Region`) override the endpoint and region.
//! An `http://` endpoint turns plain HTTP on (a loopback MinIO or moto server).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::aws::AmazonS3ConfigKey;
use object_store::azure::AzureConfigKey;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::gcp::GoogleConfigKey;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};

/// Where `storage.object_store` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A directory on this machine (tests, a mounted NFS share).
    File(PathBuf),
    /// The process's memory: gone at exit. Tests and trials only.
    Memory,
    S3 {
        bucket: String,
        prefix: String,
    },
    Gcs {
        bucket: String,
        prefix: String,
    },
    Azure {
        container: String,
        prefix: String,
    },
}

impl StoreUrl {
    /// Parses `url`; the error says what form is expected.
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "'{url}' is not a URL: use file:///path, memory://, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"
            ));
        };
        match scheme {
            "file" => {
                let path = PathBuf::from(rest);
                if !path.is_absolute() {
                    return Err(format!("'{url}': the path must be absolute (file:///...)"));
                }
                Ok(StoreUrl::File(path))
            }
            "memory" if rest.is_empty() || rest == "/" => Ok(StoreUrl::Memory),
            "memory" => Err(format!("'{url}': memory:// takes no path")),
            "s3" | "s3a" | "gs" | "az" | "azure" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if !valid_bucket(bucket) {
                    return Err(format!(
                        "'{url}': '{bucket}' is not a bucket name (3-63 characters: lowercase letters, digits, '.', '-')"
                    ));
                }
                let prefix = prefix.trim_matches('/').to_string();
                if let Err(e) = ObjectPath::parse(&prefix) {
                    return Err(format!("'{url}': the prefix '{prefix}' is not valid: {e}"));
                }
                let bucket = bucket.to_string();
                Ok(match scheme {
                    "s3" | "s3a" => StoreUrl::S3 { bucket, prefix },
                    "gs" => StoreUrl::Gcs { bucket, prefix },
                    _ => StoreUrl::Azure {
                        container: bucket,
                        prefix,
                    },
                })
            }
            other => Err(format!(
                "'{url}': the scheme '{other}' is not supported (file, memory, s3, gs, az)"
            )),
        }
    }
}

/// S3 / GCS bucket and Azure container names: 3-63 of `a-z 0-9 . -`, starting and ending
/// with a letter or digit.
fn valid_bucket(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    (3..=63).contains(&name.len())
        && name.chars().all(ok_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Endpoint and region overrides (empty: the environment's), and the bounds of every request.
#[derive(Debug, Clone)]
pub struct StoreOverrides {
    pub endpoint: String,
    pub region: String,
    /// Longest one HTTP request may take (connecting: at most 5 s of it).
    pub request_timeout: Duration,
    /// Retries of a failed request (5xx, SlowDown, a timeout), with exponential backoff, all
    /// within `request_timeout * (retries + 1)`.
    pub retries: usize,
}

impl Default for StoreOverrides {
    fn default() -> Self {
        StoreOverrides {
            endpoint: String::new(),
            region: String::new(),
            request_timeout: Duration::from_secs(30),
            retries: 3,
        }
    }
}

impl StoreOverrides {
    /// The request and connect timeouts as client settings. Applied key by key on top of what
    /// the builder read from the environment (replacing its `ClientOptions` would drop
    /// `AWS_ALLOW_HTTP`, proxies and the like).
    fn client_keys(&self) -> [(ClientConfigKey, String); 2] {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        [
            (ClientConfigKey::Timeout, ms(self.request_timeout)),
            (
                ClientConfigKey::ConnectTimeout,
                ms(self.request_timeout.min(Duration::from_secs(5))),
            ),
        ]
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: self.retries,
            retry_timeout: self.request_timeout * (self.retries as u32 + 1),
        }
    }
}

/// The object store `[storage]` names (`object_store` with its endpoint, region, timeout and
/// retries): tiered storage's standalone, the shared WAL's in cluster mode.
pub fn open_configured(config: &crate::config::Config) -> anyhow::Result<Arc<dyn ObjectStore>> {
    use anyhow::Context;
    let storage = &config.storage;
    open(
        &config.object_store_url()?,
        &StoreOverrides {
            endpoint: storage.object_store_endpoint.clone(),
            region: storage.object_store_region.clone(),
            request_timeout: Duration::from_millis(storage.object_store_timeout_ms),
            retries: storage.object_store_retries as usize,
        },
    )
    .with_context(|| format!("cannot open the object store {}", storage.object_store))
}

/// Opens the store `url` names. Builds clients only; nothing is contacted until first use.
pub fn open(url: &StoreUrl, overrides: &StoreOverrides) -> anyhow::Result<Arc<dyn ObjectStore>> {
    install_tls_provider();
    let with_prefix = |store: Arc<dyn ObjectStore>, prefix: &str| -> Arc<dyn ObjectStore> {
        if prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        }
    };
    Ok(match url {
        StoreUrl::File(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the object store directory {}: {e}",
                    dir.display()
                )
            })?;
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?)
        }
        StoreUrl::Memory => Arc::new(object_store::memory::InMemory::new()),
        StoreUrl::S3 { bucket, prefix } => {
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(overrides.retry());
            for (key, value) in overrides.client_keys() {
                builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
            }
            if !overrides.endpoint.is_empty() {
                builder = builder
                    .with_endpoint(&overrides.endpoint)
                    .with_allow_http(overrides.endpoint.starts_with("http://"));
            } else if std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| e.starts_with("http://"))
                && std::env::var_os("AWS_ALLOW_HTTP").is_none()
            {
                builder = builder.with_allow_http(true);
            }
            if !overrides.region.is_empty() {
                builder = builder.with_region(&overrides.region);
            }
            with_prefix(Arc::new(builder.build()?), prefix)
        }
        StoreUrl::Gcs { bucket, prefix } => {
            let mut builder = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(overrides.retry());
            for (key, value) in overrides.client_keys() {
                builder = builder.with_config(GoogleConfigKey::Client(key), value);
            }
            if !overrides.endpoint.is_empty() {
                builder = builder.with_url(&overrides.endpoint);
            }
            with_prefix(Arc::new(builder.build()?), prefix)
        }
        StoreUrl::Azure { container, prefix } => {
            let mut builder = MicrosoftAzureBuilder::from_env()
                .with_container_name(container)
                .with_retry(overrides.retry());
            for (key, value) in overrides.client_keys() {
                builder = builder.with_config(AzureConfigKey::Client(key), value);
            }
            if !overrides.endpoint.is_empty() {
                builder = builder
                    .with_endpoint(overrides.endpoint.clone())
                    .with_allow_http(overrides.endpoint.starts_with("http://"));
            }
            with_prefix(Arc::new(builder.build()?), prefix)
        }
    })
}

/// The cloud clients speak TLS through rustls with no provider of their own: ring, the one
/// this binary's listeners use, becomes the process default (a second call is a no-op).
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme_and_refuses_bad_ones() {
        assert_eq!(
            StoreUrl::parse("file:///var/tier"),
            Ok(StoreUrl::File("/var/tier".into()))
        );
        assert_eq!(StoreUrl::parse("memory://"), Ok(StoreUrl::Memory));
        assert_eq!(
            StoreUrl::parse("s3://my-bucket/a/b/"),
            Ok(StoreUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            })
        );
        assert_eq!(
            StoreUrl::parse("gs://bkt"),
            Ok(StoreUrl::Gcs {
                bucket: "bkt".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            StoreUrl::parse("az://ctr/p"),
            Ok(StoreUrl::Azure {
                container: "ctr".into(),
                prefix: "p".into()
            })
        );
        for bad in [
            "file://relative",
            "memory://x",
            "s3://",
            "s3://UPPER",
            "s3://ab",
            "s3://-bucket",
            "ftp://x/y",
            "bucket",
            "s3://bkt/a//b",
        ] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn an_s3_store_builds_from_the_url_and_overrides_without_contacting_anything() {
        let url = StoreUrl::parse("s3://bucket-1/tier").unwrap();
        let store = open(
            &url,
            &StoreOverrides {
                endpoint: "http://127.0.0.1:9".into(),
                region: "eu-west-1".into(),
                ..StoreOverrides::default()
            },
        )
        .unwrap();
        assert_eq!(format!("{store}"), "PrefixObjectStore(tier)");
        let plain = open(
            &StoreUrl::parse("s3://bucket-1").unwrap(),
            &StoreOverrides::default(),
        )
        .unwrap();
        assert!(format!("{plain}").contains("bucket-1"), "{plain}");
    }
}
