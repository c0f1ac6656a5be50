//! Authentication on the Pulsar protocol, as Pulsar's broker does it with
//! `AuthenticationProviderToken`: CONNECT carries `auth_method_name = "token"` and the JWT in
//! `auth_data`; a bad or missing token is answered with an AuthenticationError and the connection
//! closes. `tls` takes the client certificate's CN, `basic` (`AuthenticationProviderBasic`, when
//! configured) checks `user:password`; a CONNECT whose method no provider serves (no credentials)
//! gets `anonymousUserRole` when one is set. When the token expires, a client that announced `supports_auth_refresh` gets an
//! AUTH_CHALLENGE (`PulsarAuthRefresh`) and must answer with AUTH_RESPONSE carrying a fresh token
//! for the same role within [`REFRESH_GRACE`]; other clients are disconnected at expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::connection::{Connection, Handled, Next, Reply};
use crate::error::{Answer, CommandFailure};
use crate::proto::base_command::Type;
use crate::proto::{AuthData, BaseCommand, CommandAuthChallenge, CommandConnect, ServerError};

/// How long a client has to answer an AUTH_CHALLENGE.
pub(crate) const REFRESH_GRACE: Duration = Duration::from_secs(30);
/// Pulsar's challenge payload asking for fresh credentials.
const REFRESH_AUTH_DATA: &[u8] = b"PulsarAuthRefresh";

/// The authentication state of one Pulsar connection.
#[derive(Debug, Default)]
pub(crate) struct ConnectionAuth {
    pub role: Option<String>,
    pub expires_at_ms: Option<i64>,
    pub refresh_supported: bool,
    /// When an AUTH_CHALLENGE was sent and not yet answered.
    pub challenge_sent_ms: Option<i64>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl ConnectionAuth {
    /// How long until the connection must act on expiry (challenge or close), if ever.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        let at = match (self.challenge_sent_ms, self.expires_at_ms) {
            (Some(sent), _) => sent.saturating_add(REFRESH_GRACE.as_millis() as i64),
            (None, Some(expiry)) => expiry,
            (None, None) => return None,
        };
        Some(Duration::from_millis(
            u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0),
        ))
    }
}

impl Connection {
    /// Checks CONNECT's credentials when authentication is on. A refusal closes the connection.
    pub(crate) fn authenticate_connect(
        &mut self,
        connect: &CommandConnect,
    ) -> Result<(), CommandFailure> {
        let Some(authenticator) = self.service.config.authenticator.clone() else {
            return Ok(());
        };
        let method = connect.auth_method_name.as_deref().unwrap_or("none");
        let result = match method {
            "token" => std::str::from_utf8(connect.auth_data.as_deref().unwrap_or_default())
                .map_err(|_| "token is not utf-8".to_string())
                .and_then(|token| {
                    authenticator
                        .authenticate_token(token.trim())
                        .map_err(|e| e.to_string())
                }),
            // Pulsar's `AuthenticationProviderTls`: the client certificate's CN is the role.
            "tls" => match self.tls_peer.as_ref().and_then(|p| p.common_name.clone()) {
                Some(role) => Ok(magnetar_auth::Authenticated {
                    principal: magnetar_auth::Principal { role },
                    expires_at_ms: None,
                    namespace_scope: None,
                }),
                None => Err("auth method tls needs a TLS connection with a client certificate that has a CN".to_string()),
            },
            // Pulsar's `AuthenticationProviderBasic`: `user:password`, the user is the role.
            "basic" if authenticator.basic_enabled() => {
                std::str::from_utf8(connect.auth_data.as_deref().unwrap_or_default())
                    .map_err(|_| "basic credentials are not utf-8".to_string())
                    .and_then(|credentials| {
                        authenticator
                            .authenticate_basic(credentials)
                            .map_err(|e| e.to_string())
                    })
            }
            // As Pulsar: a method no provider serves (a client without credentials sends none)
            // gets `anonymousUserRole` when one is set.
            other => match authenticator.anonymous_role() {
                Some(role) => Ok(magnetar_auth::Authenticated {
                    principal: magnetar_auth::Principal {
                        role: role.to_string(),
                    },
                    expires_at_ms: None,
                    namespace_scope: None,
                }),
                None => Err(format!(
                    "authentication method '{other}' is not supported (use {})",
                    if authenticator.basic_enabled() {
                        "token, tls or basic"
                    } else {
                        "token or tls"
                    }
                )),
            },
        };
        match result {
            Ok(authenticated) => {
                tracing::info!(peer = %self.peer, role = %authenticated.principal.role, "pulsar client authenticated");
                self.auth = ConnectionAuth {
                    role: Some(authenticated.principal.role),
                    expires_at_ms: authenticated.expires_at_ms,
                    refresh_supported: connect
                        .feature_flags
                        .as_ref()
                        .is_some_and(|f| f.supports_auth_refresh()),
                    challenge_sent_ms: None,
                };
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(peer = %self.peer, method, %reason, "pulsar authentication failed");
                Err(CommandFailure::new(
                    Answer::Request(u64::MAX),
                    ServerError::AuthenticationError,
                    format!("Unable to authenticate: {reason}"),
                )
                .then_close(format!("authentication failed: {reason}")))
            }
        }
    }

    /// The expiry deadline passed: challenge a client that can refresh, else disconnect.
    pub(crate) async fn on_auth_deadline(&mut self) -> Next {
        if self.auth.challenge_sent_ms.is_some() {
            return Next::Close("token expired and was not refreshed".into());
        }
        if !self.auth.refresh_supported {
            return Next::Close("token expired".into());
        }
        self.auth.challenge_sent_ms = Some(now_ms());
        self.send(BaseCommand {
            r#type: Type::AuthChallenge as i32,
            auth_challenge: Some(CommandAuthChallenge {
                server_version: Some(format!("magnetar-{}", env!("CARGO_PKG_VERSION"))),
                challenge: Some(AuthData {
                    auth_method_name: Some("token".into()),
                    auth_data: Some(REFRESH_AUTH_DATA.to_vec()),
                }),
                protocol_version: Some(self.protocol_version),
            }),
            ..Default::default()
        })
        .await;
        Next::Continue
    }

    /// AUTH_RESPONSE: a fresh token for the same role.
    pub(crate) fn on_auth_response(&mut self, command: BaseCommand) -> Handled {
        let Some(authenticator) = self.service.config.authenticator.clone() else {
            return Ok(Reply::Nothing);
        };
        let token = command
            .auth_response
            .and_then(|r| r.response)
            .and_then(|d| d.auth_data)
            .unwrap_or_default();
        let result = std::str::from_utf8(&token)
            .map_err(|_| "token is not utf-8".to_string())
            .and_then(|t| {
                authenticator
                    .authenticate_token(t.trim())
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(a) if Some(&a.principal.role) == self.auth.role.as_ref() => {
                tracing::info!(peer = %self.peer, role = %a.principal.role, "pulsar client refreshed its token");
                self.auth.expires_at_ms = a.expires_at_ms;
                self.auth.challenge_sent_ms = None;
                Ok(Reply::Nothing)
            }
            Ok(_) => Ok(Reply::Close("refreshed token names another role".into())),
            Err(reason) => {
                tracing::warn!(peer = %self.peer, %reason, "pulsar token refresh failed");
                Err(CommandFailure::new(
                    Answer::Request(u64::MAX),
                    ServerError::AuthenticationError,
                    format!("Unable to refresh authentication: {reason}"),
                )
                .then_close(format!("token refresh failed: {reason}")))
            }
        }
    }
}
