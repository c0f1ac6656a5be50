//! The `[tls]` section: the one certificate every TLS listener uses.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{err, Config, ConfigError};

/// TLS (rustls): one certificate for every TLS listener. The Kafka listener uses it when
/// `kafka.security_protocol` is `SSL` or `SASL_SSL`; `enabled` adds the Pulsar TLS port and the
/// HTTPS port next to the plain ones. Paths are PEM files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Pulsar's `tlsEnabled`; setting `brokerServicePortTls` or `webServicePortTls` in a file
    /// turns it on too, as in Pulsar.
    pub enabled: bool,
    /// Pulsar's `brokerServicePortTls` (0: a free port).
    pub pulsar_port: u16,
    /// Pulsar's `webServicePortTls` (0: a free port).
    pub https_port: u16,
    /// Pulsar's `tlsCertificateFilePath`: the certificate chain, leaf first.
    pub cert_chain_file: String,
    /// Pulsar's `tlsKeyFilePath`: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// Pulsar's `tlsTrustCertsFilePath`: CAs for client certificates (mTLS); empty: none asked.
    pub trust_certs_file: String,
    /// Pulsar's `tlsRequireTrustedClientCertOnConnect`: refuse clients without a trusted
    /// certificate. Needs `trust_certs_file`.
    pub require_client_cert: bool,
    /// Longest a TLS handshake may take after accept.
    pub handshake_timeout_ms: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            enabled: false,
            pulsar_port: 6651,
            https_port: 8443,
            cert_chain_file: String::new(),
            key_file: String::new(),
            trust_certs_file: String::new(),
            require_client_cert: false,
            handshake_timeout_ms: 10_000,
        }
    }
}

impl TlsSection {
    /// Whether any listener needs the certificate.
    pub fn needed(&self, kafka_protocols: &[String]) -> bool {
        self.enabled
            || kafka_protocols
                .iter()
                .any(|p| matches!(p.as_str(), "SSL" | "SASL_SSL"))
    }

    /// Reads the PEM files into the server side every TLS listener shares.
    pub fn server(
        &self,
        alpn: &[&[u8]],
    ) -> Result<Arc<magnetar_auth::tls::TlsServer>, magnetar_auth::tls::TlsError> {
        let settings = magnetar_auth::tls::TlsSettings {
            cert_chain: PathBuf::from(&self.cert_chain_file),
            key: PathBuf::from(&self.key_file),
            trust_certs: (!self.trust_certs_file.is_empty())
                .then(|| PathBuf::from(&self.trust_certs_file)),
            require_client_cert: self.require_client_cert,
            handshake_timeout: std::time::Duration::from_millis(self.handshake_timeout_ms),
        };
        magnetar_auth::tls::TlsServer::load(&settings, alpn)
    }
}

impl Config {
    /// TLS: the files are read and checked now, so a bad certificate or key stops startup with
    /// a config error.
    pub(super) fn validate_tls(&self) -> Result<(), ConfigError> {
        let tls = &self.tls;
        if tls.handshake_timeout_ms == 0 || tls.handshake_timeout_ms > 300_000 {
            return Err(err(format!(
                "tls.handshake_timeout_ms = {} is outside the allowed range [1, 300000]",
                tls.handshake_timeout_ms
            )));
        }
        if tls.require_client_cert && tls.trust_certs_file.is_empty() {
            return Err(err(
                "tls.require_client_cert = true (tlsRequireTrustedClientCertOnConnect) needs tls.trust_certs_file (tlsTrustCertsFilePath)",
            ));
        }
        let protocols = self.kafka.protocols();
        if !tls.needed(&protocols) {
            return Ok(());
        }
        let why = if tls.enabled {
            "tls.enabled = true".to_string()
        } else {
            let tls_protocol = protocols
                .iter()
                .find(|p| matches!(p.as_str(), "SSL" | "SASL_SSL"))
                .cloned()
                .unwrap_or_default();
            format!("a {tls_protocol} Kafka listener")
        };
        if tls.cert_chain_file.is_empty() || tls.key_file.is_empty() {
            return Err(err(format!(
                "{why} needs tls.cert_chain_file (tlsCertificateFilePath) and tls.key_file (tlsKeyFilePath)"
            )));
        }
        tls.server(&[])
            .map(|_| ())
            .map_err(|e| err(format!("tls: {e}")))
    }
}
