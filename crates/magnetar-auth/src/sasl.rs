//! SASL mechanisms as byte-in/byte-out state machines, independent of how a protocol frames
//! the tokens (Kafka's SaslAuthenticate or its legacy raw frames).
//!
//! - PLAIN, the KoP way: `[authzid] NUL username NUL password` with username = tenant (or
//!   `tenant/namespace`) and password = `token:<JWT>`; the token's role is the principal.
//! - OAUTHBEARER (RFC 7628): `n,,\x01auth=Bearer <JWT>\x01\x01`. On a bad token the server
//!   answers the error JSON `{"status":"invalid_token"}`, the client acknowledges with `\x01`,
//!   and then the exchange fails (RFC 7628 section 3.2.2).
//! - SCRAM-SHA-256/512 ([`crate::scram`]).

use crate::scram::{ScramMechanism, ScramServer};
use crate::{AuthError, Authenticated, Authenticator};

/// Largest SASL message accepted from a client.
pub const SASL_MESSAGE_BYTES_MAX: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    OAuthBearer,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::OAuthBearer,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ];

    /// The IANA name clients send.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::OAuthBearer => "OAUTHBEARER",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The result of one step of an exchange.
#[derive(Debug)]
pub enum SaslStep {
    /// Send this to the client and wait for its next message.
    Challenge(Vec<u8>),
    /// Success: send `response` (possibly empty) and the client is `authenticated`.
    Done {
        response: Vec<u8>,
        authenticated: Authenticated,
    },
}

/// One SASL exchange on one connection.
pub struct SaslSession {
    mechanism: Mechanism,
    state: State,
}

enum State {
    Start,
    /// OAUTHBEARER sent its error JSON; the next client message ends the exchange with this.
    OAuthFailed(AuthError),
    Scram(ScramServer),
    Finished,
}

impl SaslSession {
    pub(crate) fn new(mechanism: Mechanism) -> Self {
        let state = match mechanism {
            Mechanism::ScramSha256 => State::Scram(ScramServer::new(ScramMechanism::Sha256)),
            Mechanism::ScramSha512 => State::Scram(ScramServer::new(ScramMechanism::Sha512)),
            Mechanism::Plain | Mechanism::OAuthBearer => State::Start,
        };
        Self { mechanism, state }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Handles the client's next message.
    pub async fn step(
        &mut self,
        authenticator: &Authenticator,
        input: &[u8],
    ) -> Result<SaslStep, AuthError> {
        if input.len() > SASL_MESSAGE_BYTES_MAX {
            self.state = State::Finished;
            return Err(AuthError::Malformed {
                mechanism: self.mechanism.name(),
                reason: format!("message longer than {SASL_MESSAGE_BYTES_MAX} bytes"),
            });
        }
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Start => match self.mechanism {
                Mechanism::Plain => {
                    plain(authenticator, input).map(|authenticated| SaslStep::Done {
                        response: Vec::new(),
                        authenticated,
                    })
                }
                Mechanism::OAuthBearer => match oauthbearer(authenticator, input) {
                    Ok(authenticated) => Ok(SaslStep::Done {
                        response: Vec::new(),
                        authenticated,
                    }),
                    Err(e @ AuthError::Malformed { .. }) => Err(e),
                    Err(e) => {
                        self.state = State::OAuthFailed(e);
                        Ok(SaslStep::Challenge(
                            br#"{"status":"invalid_token"}"#.to_vec(),
                        ))
                    }
                },
                Mechanism::ScramSha256 | Mechanism::ScramSha512 => Err(AuthError::IllegalState),
            },
            State::OAuthFailed(e) => Err(e),
            State::Scram(mut server) => {
                let (reply, authenticated) = server.step(authenticator.scram(), input).await?;
                match authenticated {
                    Some(authenticated) => Ok(SaslStep::Done {
                        response: reply,
                        authenticated,
                    }),
                    None => {
                        self.state = State::Scram(server);
                        Ok(SaslStep::Challenge(reply))
                    }
                }
            }
            State::Finished => Err(AuthError::IllegalState),
        }
    }
}

fn plain(authenticator: &Authenticator, input: &[u8]) -> Result<Authenticated, AuthError> {
    let malformed = |reason: &str| AuthError::Malformed {
        mechanism: "PLAIN",
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(input).map_err(|_| malformed("message is not utf-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected authzid NUL username NUL password"));
    };
    if username.is_empty() {
        return Err(malformed(
            "the username must name the tenant (or tenant/namespace)",
        ));
    }
    if !authzid.is_empty() && authzid != username {
        return Err(AuthError::BadCredentials);
    }
    let Some(token) = password.strip_prefix("token:") else {
        return Err(AuthError::InvalidToken(
            "the PLAIN password must be token:<jwt>".into(),
        ));
    };
    let mut authenticated = authenticator.authenticate_token(token)?;
    authenticated.namespace_scope = Some(username.to_string());
    Ok(authenticated)
}

fn oauthbearer(authenticator: &Authenticator, input: &[u8]) -> Result<Authenticated, AuthError> {
    let malformed = |reason: &str| AuthError::Malformed {
        mechanism: "OAUTHBEARER",
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(input).map_err(|_| malformed("message is not utf-8"))?;
    let mut pairs = text.split('\u{1}');
    let header = pairs.next().unwrap_or_default();
    if !header.starts_with("n,") && !header.starts_with("y,") {
        return Err(malformed("expected a gs2 header such as n,,"));
    }
    let mut bearer = None;
    for pair in pairs {
        if let Some(value) = pair.strip_prefix("auth=") {
            let (scheme, token) = value
                .split_once(' ')
                .ok_or_else(|| malformed("auth must be 'Bearer <token>'"))?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(malformed("auth must be 'Bearer <token>'"));
            }
            bearer = Some(token.trim());
        }
    }
    let token = bearer.ok_or_else(|| malformed("no auth=Bearer key"))?;
    authenticator.authenticate_token(token)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use magnetar_broker::{Broker, BrokerConfig, SystemClock};
    use magnetar_metadata::MemoryStore;

    use super::*;
    use crate::scram::{client, ScramCredential};
    use crate::token::SigningKey;
    use crate::AuthConfig;

    const SECRET: [u8; 32] = [42; 32];

    async fn authenticator() -> (Authenticator, tempfile::TempDir) {
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
            token_secret_key: Some(format!(
                "data:;base64,{}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, SECRET)
            )),
            token_public_key: None,
            token_auth_claim: "sub".into(),
            mechanisms: Mechanism::ALL.to_vec(),
            superuser_roles: vec!["admin".into()],
            ..Default::default()
        };
        (Authenticator::new(&config, broker).unwrap(), dir)
    }

    fn token(role: &str, exp: Option<u64>) -> String {
        SigningKey::from_secret_key(&SECRET)
            .unwrap()
            .create_token(role, exp)
            .unwrap()
    }

    #[tokio::test]
    async fn plain_with_token_password() {
        let (auth, _dir) = authenticator().await;
        let mut session = auth.start("PLAIN").unwrap();
        let message = format!("\0acme/sales\0token:{}", token("alice", None));
        let SaslStep::Done { authenticated, .. } =
            session.step(&auth, message.as_bytes()).await.unwrap()
        else {
            panic!("expected done")
        };
        assert_eq!(authenticated.principal.role, "alice");
        assert_eq!(authenticated.namespace_scope.as_deref(), Some("acme/sales"));
        assert!(session.step(&auth, b"again").await.is_err());
        let mut session = auth.start("PLAIN").unwrap();
        assert!(session.step(&auth, b"\0acme\0secret").await.is_err());
        let mut session = auth.start("PLAIN").unwrap();
        let expired = format!("\0acme\0token:{}", token("alice", Some(1)));
        assert!(matches!(
            session.step(&auth, expired.as_bytes()).await,
            Err(AuthError::TokenExpired)
        ));
        assert!(auth.start("GSSAPI").is_err());
    }

    #[tokio::test]
    async fn oauthbearer_success_and_rfc7628_failure() {
        let (auth, _dir) = authenticator().await;
        let mut session = auth.start("OAUTHBEARER").unwrap();
        let message = format!("n,,\u{1}auth=Bearer {}\u{1}\u{1}", token("bob", None));
        let SaslStep::Done { authenticated, .. } =
            session.step(&auth, message.as_bytes()).await.unwrap()
        else {
            panic!("expected done")
        };
        assert_eq!(authenticated.principal.role, "bob");
        let mut session = auth.start("OAUTHBEARER").unwrap();
        let SaslStep::Challenge(json) = session
            .step(&auth, b"n,,\x01auth=Bearer nope\x01\x01")
            .await
            .unwrap()
        else {
            panic!("expected the error challenge")
        };
        assert_eq!(json, br#"{"status":"invalid_token"}"#);
        assert!(matches!(
            session.step(&auth, b"\x01").await,
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[tokio::test]
    async fn scram_exchange_against_the_store() {
        let (auth, _dir) = authenticator().await;
        for (mechanism, scram) in [
            (Mechanism::ScramSha256, ScramMechanism::Sha256),
            (Mechanism::ScramSha512, ScramMechanism::Sha512),
        ] {
            let credential = ScramCredential::from_password(scram, "pencil", 4096).unwrap();
            auth.scram().put("carol", scram, &credential).await.unwrap();
            for (password, ok) in [("pencil", true), ("wrong", false)] {
                let mut session = auth.start(mechanism.name()).unwrap();
                let first = client::first("carol", "abc123");
                let SaslStep::Challenge(server_first) =
                    session.step(&auth, first.as_bytes()).await.unwrap()
                else {
                    panic!("expected server-first")
                };
                let server_first = String::from_utf8(server_first).unwrap();
                let (last, expected) = client::last(scram, password, &first, &server_first);
                match session.step(&auth, last.as_bytes()).await {
                    Ok(SaslStep::Done {
                        response,
                        authenticated,
                    }) => {
                        assert!(ok);
                        assert_eq!(authenticated.principal.role, "carol");
                        let v = base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            expected,
                        );
                        assert_eq!(String::from_utf8(response).unwrap(), format!("v={v}"));
                    }
                    Err(AuthError::BadCredentials) => assert!(!ok),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        let mut session = auth.start("SCRAM-SHA-256").unwrap();
        assert!(matches!(
            session.step(&auth, b"n,,n=nobody,r=x").await,
            Err(AuthError::BadCredentials)
        ));
        let described = auth.scram().describe(None).await.unwrap();
        assert_eq!(described.len(), 1);
        assert_eq!(described[0].1.len(), 2);
        assert!(auth
            .scram()
            .delete("carol", ScramMechanism::Sha256)
            .await
            .unwrap());
        assert!(!auth
            .scram()
            .delete("carol", ScramMechanism::Sha256)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn enabled_without_key_is_refused() {
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
            mechanisms: vec![Mechanism::Plain],
            ..Default::default()
        };
        let e = Authenticator::new(&config, broker).err().unwrap();
        assert!(e.to_string().contains("no token secret key"), "{e}");
    }

    #[tokio::test]
    async fn basic_provider_and_anonymous_role() {
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
            anonymous_role: Some("guest".into()),
            basic_auth_conf: Some(format!(
                "data:;base64,{}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    "alice:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/\n"
                )
            )),
            ..Default::default()
        };
        let auth = Authenticator::new(&config, broker.clone()).unwrap();
        assert_eq!(auth.anonymous_role(), Some("guest"));
        assert!(auth.basic_enabled());
        let a = auth.authenticate_basic("alice:password").unwrap();
        assert_eq!(a.principal.role, "alice");
        assert!(matches!(
            auth.authenticate_basic("alice:wrong"),
            Err(AuthError::BadCredentials)
        ));
        assert!(auth.authenticate_basic("alice").is_err());
        // Without the provider, basic is refused; an empty anonymous role is none.
        let config = AuthConfig {
            enabled: true,
            mechanisms: vec![Mechanism::ScramSha256],
            anonymous_role: Some(String::new()),
            ..Default::default()
        };
        let auth = Authenticator::new(&config, broker).unwrap();
        assert_eq!(auth.anonymous_role(), None);
        assert!(auth.authenticate_basic("alice:password").is_err());
    }
}
