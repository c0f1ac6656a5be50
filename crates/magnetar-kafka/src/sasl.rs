//! The SASL side of one Kafka connection on a `SASL_PLAINTEXT` listener, as Kafka's broker does
//! it (SaslServerAuthenticator):
//!
//! - before authentication only ApiVersions and SaslHandshake are served; any other request
//!   closes the connection ("unexpected request during SASL handshake");
//! - SaslHandshake v1 is followed by SaslAuthenticate requests (KIP-152); SaslHandshake v0 by
//!   raw SASL tokens, each a 4-byte length and the bytes, with no Kafka header (the legacy
//!   framing of kafka-python and old Java clients);
//! - a failed authentication is answered (SASL_AUTHENTICATION_FAILED with the reason, or in the
//!   legacy framing nothing), then the connection closes after `failed_authentication_delay_ms`;
//! - SaslAuthenticate v1+ tells the client its session lifetime (KIP-368): the time left until
//!   the token expires. A client re-authenticates with SaslHandshake v1 + SaslAuthenticate on the
//!   same connection (same mechanism, same principal); once the session expired, any request
//!   other than that re-authentication closes the connection.
//!
//! The mechanisms themselves are magnetar-auth's; this module only frames their messages.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use magnetar_auth::{AuthError, Authenticated, Authenticator, Mechanism, SaslSession, SaslStep};
use magnetar_broker::NamespaceName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::api::Session;
use crate::codec::Request;
use crate::error_code;

enum Phase {
    /// Waiting for SaslHandshake (ApiVersions is served too).
    Handshake,
    /// After SaslHandshake v1: SaslAuthenticate requests carry the exchange.
    Authenticate(SaslSession),
    /// After SaslHandshake v0: raw length-prefixed SASL tokens carry the exchange.
    RawTokens(SaslSession),
    Authenticated {
        authenticated: Authenticated,
        mechanism: Mechanism,
        /// A re-authentication in progress (KIP-368).
        reauth: Option<SaslSession>,
    },
    /// The exchange failed; the connection closes.
    Failed,
}

/// Whether a request may be served in the connection's current state.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Serve,
    Close(String),
}

/// What to do after a SASL request.
pub struct SaslReply {
    pub response: ResponseKind,
    /// The connection is now authenticated as this (first time or re-authenticated).
    pub session: Option<Session>,
    /// Failure: close the connection after this delay (the response is sent first).
    pub close_after: Option<Duration>,
}

/// What to do after a raw SASL token (legacy framing).
pub enum RawOutcome {
    Continue,
    Authenticated(Session),
    Close(Duration),
}

/// Largest raw SASL token frame.
const RAW_TOKEN_BYTES_MAX: usize = magnetar_auth::sasl::SASL_MESSAGE_BYTES_MAX;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub struct ConnectionAuth {
    authenticator: Arc<Authenticator>,
    /// The namespace part of the broker's default namespace (`kafka.namespace`), for PLAIN
    /// usernames that name only a tenant.
    namespace_local: String,
    failed_delay: Duration,
    phase: Phase,
}

impl ConnectionAuth {
    pub fn new(
        authenticator: Arc<Authenticator>,
        default_namespace: &NamespaceName,
        failed_authentication_delay_ms: u64,
    ) -> Self {
        Self {
            authenticator,
            namespace_local: default_namespace.namespace.clone(),
            failed_delay: Duration::from_millis(failed_authentication_delay_ms),
            phase: Phase::Handshake,
        }
    }

    /// Whether the next frame is a raw SASL token rather than a Kafka request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.phase, Phase::RawTokens(_))
    }

    /// Checks a request's api key against the state, before it is decoded.
    pub fn admit(&self, api_key: i16) -> Admission {
        let name = |key: i16| {
            ApiKey::try_from(key)
                .map(|k| format!("{k:?}"))
                .unwrap_or_else(|_| key.to_string())
        };
        let handshake = ApiKey::SaslHandshake as i16;
        let authenticate = ApiKey::SaslAuthenticate as i16;
        match &self.phase {
            Phase::Handshake if api_key == ApiKey::ApiVersions as i16 || api_key == handshake => {
                Admission::Serve
            }
            Phase::Handshake => Admission::Close(format!(
                "unexpected request {} during SASL handshake (not authenticated)",
                name(api_key)
            )),
            Phase::Authenticate(_) if api_key == authenticate => Admission::Serve,
            Phase::Authenticate(_) => Admission::Close(format!(
                "unexpected request {} while waiting for SaslAuthenticate",
                name(api_key)
            )),
            Phase::RawTokens(_) | Phase::Failed => {
                Admission::Close("unexpected kafka request during SASL authentication".into())
            }
            Phase::Authenticated {
                authenticated,
                reauth,
                ..
            } => {
                let expired = authenticated
                    .expires_at_ms
                    .is_some_and(|expiry| expiry <= now_ms());
                if !expired
                    || (reauth.is_none() && api_key == handshake)
                    || (reauth.is_some() && api_key == authenticate)
                {
                    Admission::Serve
                } else {
                    Admission::Close(format!(
                        "session of '{}' expired without re-authentication",
                        authenticated.principal.role
                    ))
                }
            }
        }
    }

    /// Handles SaslHandshake or SaslAuthenticate; `None` for any other request.
    pub async fn handle(&mut self, request: Request) -> Option<SaslReply> {
        let version = request.header.api_version;
        match request.body {
            RequestKind::SaslHandshake(r) => Some(self.handshake(version, r)),
            RequestKind::SaslAuthenticate(r) => Some(self.authenticate(version, r).await),
            _ => None,
        }
    }

    fn mechanism_names(&self) -> Vec<StrBytes> {
        self.authenticator
            .mechanisms()
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect()
    }

    fn handshake(&mut self, version: i16, request: SaslHandshakeRequest) -> SaslReply {
        let mut response = SaslHandshakeResponse::default().with_mechanisms(self.mechanism_names());
        let refuse = |mut response: SaslHandshakeResponse, code: ResponseError| {
            response.error_code = code.code();
            SaslReply {
                response: ResponseKind::SaslHandshake(response),
                session: None,
                close_after: Some(Duration::ZERO),
            }
        };
        let requested = request.mechanism.as_str();
        match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::Handshake => match self.authenticator.start(requested) {
                Ok(session) => {
                    self.phase = if version >= 1 {
                        Phase::Authenticate(session)
                    } else {
                        Phase::RawTokens(session)
                    };
                    SaslReply {
                        response: ResponseKind::SaslHandshake(response),
                        session: None,
                        close_after: None,
                    }
                }
                Err(e) => {
                    tracing::warn!(mechanism = requested, error = %e, "kafka sasl handshake refused");
                    refuse(response, ResponseError::UnsupportedSaslMechanism)
                }
            },
            Phase::Authenticated {
                authenticated,
                mechanism,
                reauth: None,
            } if version >= 1 => {
                if requested != mechanism.name() {
                    tracing::warn!(
                        mechanism = requested,
                        "re-authentication with another mechanism refused"
                    );
                    return refuse(response, ResponseError::UnsupportedSaslMechanism);
                }
                match self.authenticator.start(requested) {
                    Ok(session) => {
                        self.phase = Phase::Authenticated {
                            authenticated,
                            mechanism,
                            reauth: Some(session),
                        };
                        SaslReply {
                            response: ResponseKind::SaslHandshake(response),
                            session: None,
                            close_after: None,
                        }
                    }
                    Err(_) => refuse(response, ResponseError::UnsupportedSaslMechanism),
                }
            }
            _ => {
                response.mechanisms.clear();
                refuse(response, ResponseError::IllegalSaslState)
            }
        }
    }

    async fn authenticate(&mut self, version: i16, request: SaslAuthenticateRequest) -> SaslReply {
        let (mut session, previous) = match std::mem::replace(&mut self.phase, Phase::Failed) {
            Phase::Authenticate(session) => (session, None),
            Phase::Authenticated {
                authenticated,
                mechanism,
                reauth: Some(session),
            } => (session, Some((authenticated, mechanism))),
            Phase::Authenticated {
                authenticated,
                mechanism,
                reauth: None,
            } => {
                // Kafka answers a stray SaslAuthenticate after authentication and keeps going.
                self.phase = Phase::Authenticated {
                    authenticated,
                    mechanism,
                    reauth: None,
                };
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate after authentication without a SaslHandshake",
                    )));
                return SaslReply {
                    response: ResponseKind::SaslAuthenticate(response),
                    session: None,
                    close_after: None,
                };
            }
            _ => {
                let response = SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code());
                return SaslReply {
                    response: ResponseKind::SaslAuthenticate(response),
                    session: None,
                    close_after: Some(Duration::ZERO),
                };
            }
        };
        let mechanism = session.mechanism();
        let step = session
            .step(&self.authenticator, &request.auth_bytes)
            .await
            .and_then(|step| match (step, &previous) {
                (SaslStep::Done { authenticated, .. }, Some((before, _)))
                    if authenticated.principal != before.principal =>
                {
                    Err(AuthError::InvalidToken(
                        "re-authentication must keep the same principal".into(),
                    ))
                }
                (step, _) => Ok(step),
            });
        let failed = |e: AuthError| {
            let (code, close_after) = self.failure(mechanism, &e);
            let message = if code == ResponseError::SaslAuthenticationFailed {
                format!("Authentication failed: {e}")
            } else {
                e.to_string()
            };
            let response = SaslAuthenticateResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message)));
            SaslReply {
                response: ResponseKind::SaslAuthenticate(response),
                session: None,
                close_after: Some(close_after),
            }
        };
        match step {
            Ok(SaslStep::Challenge(bytes)) => {
                self.phase = match previous {
                    None => Phase::Authenticate(session),
                    Some((authenticated, mechanism)) => Phase::Authenticated {
                        authenticated,
                        mechanism,
                        reauth: Some(session),
                    },
                };
                SaslReply {
                    response: ResponseKind::SaslAuthenticate(
                        SaslAuthenticateResponse::default()
                            .with_error_message(None)
                            .with_auth_bytes(Bytes::from(bytes)),
                    ),
                    session: None,
                    close_after: None,
                }
            }
            Ok(SaslStep::Done {
                response,
                authenticated,
            }) => match self.session_of(&authenticated) {
                Ok(connection_session) => {
                    let mut reply = SaslAuthenticateResponse::default()
                        .with_error_message(None)
                        .with_auth_bytes(Bytes::from(response));
                    if version >= 1 {
                        reply.session_lifetime_ms = authenticated
                            .expires_at_ms
                            .map(|expiry| (expiry - now_ms()).max(1))
                            .unwrap_or(0);
                    }
                    tracing::info!(
                        role = %authenticated.principal.role,
                        mechanism = mechanism.name(),
                        reauthentication = previous.is_some(),
                        "kafka client authenticated"
                    );
                    self.phase = Phase::Authenticated {
                        authenticated,
                        mechanism,
                        reauth: None,
                    };
                    SaslReply {
                        response: ResponseKind::SaslAuthenticate(reply),
                        session: Some(connection_session),
                        close_after: None,
                    }
                }
                Err(e) => failed(e),
            },
            Err(e) => failed(e),
        }
    }

    /// How a failed exchange is answered: its Kafka error ([`error_code::auth_error`]) and when
    /// the connection closes. A failed authentication closes after
    /// `failed_authentication_delay_ms` (slowing down password guessing, as Kafka does); the
    /// broker's own failure (its credential store unreachable, shutting down) closes at once, so
    /// the client reconnects and retries without taking it for bad credentials.
    fn failure(&self, mechanism: Mechanism, e: &AuthError) -> (ResponseError, Duration) {
        let code = error_code::auth_error(e);
        if code == ResponseError::SaslAuthenticationFailed {
            tracing::warn!(mechanism = mechanism.name(), error = %e, "kafka sasl authentication failed");
            (code, self.failed_delay)
        } else {
            tracing::warn!(mechanism = mechanism.name(), error = %e, code = ?code, "kafka sasl authentication could not complete");
            (code, Duration::ZERO)
        }
    }

    /// The connection's session: the principal and, for KoP's PLAIN usernames, the namespace
    /// bare topic names resolve in.
    fn session_of(&self, authenticated: &Authenticated) -> Result<Session, AuthError> {
        let default_namespace = match authenticated.namespace_scope.as_deref() {
            None => None,
            Some(scope) => {
                let namespace = if scope.contains('/') {
                    NamespaceName::parse(scope)
                } else {
                    NamespaceName::new(scope, &self.namespace_local)
                };
                Some(namespace.map_err(|e| AuthError::Malformed {
                    mechanism: "PLAIN",
                    reason: format!("the username must be a tenant or tenant/namespace: {e}"),
                })?)
            }
        };
        Ok(Session {
            principal: Some(authenticated.principal.clone()),
            default_namespace,
            // The connection sets the address.
            host: None,
        })
    }

    /// Reads one raw SASL token (legacy framing after SaslHandshake v0), steps the mechanism
    /// and writes its reply, length-prefixed.
    pub async fn raw_exchange<R, W>(&mut self, reader: &mut R, writer: &mut W) -> RawOutcome
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Phase::RawTokens(mut session) = std::mem::replace(&mut self.phase, Phase::Failed)
        else {
            return RawOutcome::Close(Duration::ZERO);
        };
        let mut prefix = [0u8; 4];
        if reader.read_exact(&mut prefix).await.is_err() {
            return RawOutcome::Close(Duration::ZERO);
        }
        let length = i32::from_be_bytes(prefix);
        let Ok(length) = usize::try_from(length) else {
            tracing::warn!(
                length,
                "closing kafka connection: negative sasl token length"
            );
            return RawOutcome::Close(Duration::ZERO);
        };
        if length > RAW_TOKEN_BYTES_MAX {
            tracing::warn!(
                length,
                max = RAW_TOKEN_BYTES_MAX,
                "closing kafka connection: sasl token too large"
            );
            return RawOutcome::Close(Duration::ZERO);
        }
        let mut token = vec![0u8; length];
        if reader.read_exact(&mut token).await.is_err() {
            return RawOutcome::Close(Duration::ZERO);
        }
        let mechanism = session.mechanism();
        let (reply, outcome) = match session.step(&self.authenticator, &token).await {
            Ok(SaslStep::Challenge(bytes)) => {
                self.phase = Phase::RawTokens(session);
                (bytes, RawOutcome::Continue)
            }
            Ok(SaslStep::Done {
                response,
                authenticated,
            }) => match self.session_of(&authenticated) {
                Ok(connection_session) => {
                    tracing::info!(
                        role = %authenticated.principal.role,
                        mechanism = mechanism.name(),
                        "kafka client authenticated (legacy sasl framing)"
                    );
                    self.phase = Phase::Authenticated {
                        authenticated,
                        mechanism,
                        reauth: None,
                    };
                    (response, RawOutcome::Authenticated(connection_session))
                }
                Err(e) => return RawOutcome::Close(self.failure(mechanism, &e).1),
            },
            Err(e) => return RawOutcome::Close(self.failure(mechanism, &e).1),
        };
        let mut frame = BytesMut::with_capacity(4 + reply.len());
        frame.put_u32(reply.len() as u32);
        frame.put_slice(&reply);
        if writer.write_all(&frame).await.is_err() || writer.flush().await.is_err() {
            return RawOutcome::Close(Duration::ZERO);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use magnetar_auth::AuthConfig;
    use magnetar_broker::{Broker, BrokerConfig, SystemClock};
    use magnetar_metadata::MemoryStore;

    const FAILED_DELAY_MS: u64 = 250;

    async fn scram_connection() -> (ConnectionAuth, Arc<Broker>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(
            BrokerConfig::for_data_dir(dir.path()),
            Arc::new(MemoryStore::new()),
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        let config = AuthConfig {
            enabled: true,
            mechanisms: vec![Mechanism::ScramSha256],
            ..Default::default()
        };
        let authenticator = Arc::new(Authenticator::new(&config, broker.clone()).unwrap());
        let mut auth = ConnectionAuth::new(
            authenticator,
            &broker.config().default_namespace,
            FAILED_DELAY_MS,
        );
        let handshake = auth.handshake(
            1,
            SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256")),
        );
        assert_eq!(handshake.close_after, None);
        (auth, broker, dir)
    }

    async fn client_first(auth: &mut ConnectionAuth) -> (i16, Option<Duration>) {
        let request = SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from_static(b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL"));
        let reply = auth.authenticate(1, request).await;
        let ResponseKind::SaslAuthenticate(response) = reply.response else {
            panic!("not a SaslAuthenticate response");
        };
        (response.error_code, reply.close_after)
    }

    #[tokio::test]
    async fn unknown_credentials_fail_authentication_after_the_delay() {
        let (mut auth, _broker, _dir) = scram_connection().await;
        let (code, close_after) = client_first(&mut auth).await;
        assert_eq!(code, ResponseError::SaslAuthenticationFailed.code());
        assert_eq!(close_after, Some(Duration::from_millis(FAILED_DELAY_MS)));
    }

    #[tokio::test]
    async fn a_broker_that_cannot_read_credentials_is_not_an_authentication_failure() {
        let (mut auth, broker, _dir) = scram_connection().await;
        // The credential store is gone (the broker is shutting down): the client must retry,
        // not give up on its credentials.
        broker.metadata().close().await.unwrap();
        let (code, close_after) = client_first(&mut auth).await;
        assert_eq!(code, ResponseError::NotLeaderOrFollower.code());
        assert_ne!(code, ResponseError::SaslAuthenticationFailed.code());
        assert_eq!(close_after, Some(Duration::ZERO));
    }
}
