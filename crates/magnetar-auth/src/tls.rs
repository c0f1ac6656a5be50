//! TLS for every front end (rustls with the ring provider): the server certificate chain and key
//! from PEM files, an optional trust CA for client certificates (mTLS), and the handshake run
//! after accept with a time limit. With mTLS the client certificate's subject common name (CN)
//! is the role, as Pulsar's `tls` authentication provider does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
pub use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// What a TLS listener is built from.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// PEM file with the server certificate chain (leaf first).
    pub cert_chain: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file with the CAs trusted for client certificates; `None`: client certificates are
    /// not asked for.
    pub trust_certs: Option<PathBuf>,
    /// With `trust_certs`: refuse clients without a certificate signed by those CAs. Without
    /// it, a client certificate is optional (but verified when sent).
    pub require_client_cert: bool,
    /// Longest a handshake may take after accept.
    pub handshake_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or invalid (a startup error).
    #[error("{0}")]
    Config(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("TLS handshake timed out after {0:?}")]
    Timeout(Duration),
}

/// The client certificate's subject, when the client sent one (verified against the trust CA).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject distinguished name as written in the certificate, e.g. `C=US, O=acme, CN=app`.
    pub subject: String,
    /// The subject's common name (CN), the role.
    pub common_name: Option<String>,
}

/// A configured TLS server side, shared by a listener's connections.
pub struct TlsServer {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    // Read first so a missing file says so (the PEM iterator's error is less clear).
    let bytes = std::fs::read(path)
        .map_err(|e| TlsError::Config(format!("cannot read {what} {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Config(format!("{what} {}: invalid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::Config(format!(
            "{what} {}: no CERTIFICATE block in the file",
            path.display()
        )));
    }
    Ok(certs)
}

impl TlsServer {
    /// Reads and checks the PEM files; every failure is one [`TlsError::Config`] message.
    pub fn load(settings: &TlsSettings, alpn: &[&[u8]]) -> Result<Arc<Self>, TlsError> {
        let chain = read_certs("TLS certificate file", &settings.cert_chain)?;
        let key_bytes = std::fs::read(&settings.key).map_err(|e| {
            TlsError::Config(format!(
                "cannot read TLS key file {}: {e}",
                settings.key.display()
            ))
        })?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
            TlsError::Config(format!(
                "TLS key file {}: no usable private key: {e}",
                settings.key.display()
            ))
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(format!("TLS protocol versions: {e}")))?;
        let builder = match &settings.trust_certs {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs("TLS trust certificates file", path)? {
                    roots.add(cert).map_err(|e| {
                        TlsError::Config(format!(
                            "TLS trust certificates file {}: {e}",
                            path.display()
                        ))
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if settings.require_client_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier.build().map_err(|e| {
                    TlsError::Config(format!(
                        "TLS trust certificates file {}: {e}",
                        path.display()
                    ))
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            TlsError::Config(format!(
                "TLS certificate {} and key {} do not make a usable pair: {e}",
                settings.cert_chain.display(),
                settings.key.display()
            ))
        })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            handshake_timeout: settings.handshake_timeout,
        }))
    }

    /// Runs the server handshake on an accepted stream, within the handshake timeout. Returns
    /// the encrypted stream and the verified client certificate's subject, if one was sent.
    pub async fn accept<S>(
        &self,
        stream: S,
    ) -> Result<(TlsStream<S>, Option<PeerIdentity>), TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let tls = tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream))
            .await
            .map_err(|_| TlsError::Timeout(self.handshake_timeout))?
            .map_err(|e| TlsError::Handshake(explain(e)))?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| peer_identity(leaf.as_ref()));
        Ok((tls, peer))
    }
}

/// Why webpki refuses X.509 version 1 and 2 certificates, said where the handshake fails.
pub const CERT_VERSION_REASON: &str = "the client certificate is X.509 version 1 (or 2), and only \
     version 3 certificates are accepted: rustls/webpki refuse older versions because they carry \
     no extensions (basicConstraints, keyUsage), so a v1 certificate cannot be told apart from a \
     CA; re-issue it as v3 (openssl x509 -req with -extfile, or openssl req -x509 -addext)";

/// Replaces rustls' debug-formatted reason for a refused client certificate version (webpki's
/// `UnsupportedCertVersion`, reported as `Other(OtherError(UnsupportedCertVersion))`) by a
/// sentence naming it; other errors pass unchanged.
fn explain(error: std::io::Error) -> std::io::Error {
    let unsupported_version = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(e, rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))
                if format!("{other:?}").contains("UnsupportedCertVersion"))
        });
    if unsupported_version {
        std::io::Error::new(error.kind(), CERT_VERSION_REASON)
    } else {
        error
    }
}

/// The subject of a DER certificate; `None` if it does not parse (it was verified by rustls, so
/// this does not happen with a trust CA configured).
pub fn peer_identity(der: &[u8]) -> Option<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    Some(PeerIdentity {
        subject: subject.to_string(),
        common_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> TlsSettings {
        TlsSettings {
            cert_chain: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            trust_certs: None,
            require_client_cert: false,
            handshake_timeout: Duration::from_millis(200),
        }
    }

    #[test]
    fn missing_and_invalid_files_are_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = TlsServer::load(&settings(dir.path()), &[]).unwrap_err();
        assert!(
            e.to_string().contains("cannot read TLS certificate file"),
            "{e}"
        );
        std::fs::write(dir.path().join("cert.pem"), "not a pem").unwrap();
        let e = TlsServer::load(&settings(dir.path()), &[]).unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
        std::fs::write(
            dir.path().join("cert.pem"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = TlsServer::load(&settings(dir.path()), &[]).unwrap_err();
        assert!(e.to_string().contains("cannot read TLS key file"), "{e}");
        std::fs::write(dir.path().join("key.pem"), "garbage").unwrap();
        let e = TlsServer::load(&settings(dir.path()), &[]).unwrap_err();
        assert!(e.to_string().contains("no usable private key"), "{e}");
    }

    #[test]
    fn an_unsupported_certificate_version_is_named() {
        // The shape rustls reports webpki's refusal in (its Debug names the variant).
        #[derive(Debug)]
        struct UnsupportedCertVersion;
        impl std::fmt::Display for UnsupportedCertVersion {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("unsupported certificate version")
            }
        }
        impl std::error::Error for UnsupportedCertVersion {}
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
            rustls::OtherError(std::sync::Arc::new(UnsupportedCertVersion)),
        ));
        let e = explain(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            refused,
        ));
        assert!(e.to_string().contains("X.509 version 1"), "{e}");
        let other = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = explain(std::io::Error::new(std::io::ErrorKind::InvalidData, other));
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    }

    #[test]
    fn garbage_certificates_have_no_identity() {
        assert_eq!(peer_identity(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(peer_identity(&[]), None);
    }
}
