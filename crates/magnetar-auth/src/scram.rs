//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), server side, hand-written: the exchange
//! is three messages and the maintained crates for it are client-oriented or unmaintained, while
//! the primitives (`hmac`, `sha2`, `pbkdf2`) are the RustCrypto ones. Credentials are stored as
//! Kafka and RFC 5802 store them: salt, iterations, StoredKey = H(HMAC(SaltedPassword,
//! "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key"); the password itself is
//! never kept.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use magnetar_broker::{Broker, Expect, MetadataError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::{AuthError, Authenticated, Principal};

/// Iteration bounds Kafka enforces on SCRAM credentials.
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 16384;
/// Longest SCRAM user name.
pub const USER_BYTES_MAX: usize = 256;

const STORE_PATH: &str = "/admin/scram-credentials";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
        match self {
            Self::Sha256 => <Hmac<Sha256> as Mac>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
            Self::Sha512 => <Hmac<Sha512> as Mac>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            Self::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }

    fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }
}

/// What is stored for one user and mechanism.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

#[derive(Serialize, Deserialize)]
struct StoredCredential {
    format_version: u32,
    mechanism: ScramMechanism,
    salt: String,
    stored_key: String,
    server_key: String,
    iterations: u32,
}

impl ScramCredential {
    /// From what Kafka's AlterUserScramCredentials carries: the client computed
    /// SaltedPassword = PBKDF2(password, salt, iterations).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: &[u8],
        salted_password: &[u8],
        iterations: u32,
    ) -> Result<Self, AuthError> {
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
            return Err(AuthError::UnacceptableCredential(format!(
                "iterations {iterations} outside [{ITERATIONS_MIN}, {ITERATIONS_MAX}]"
            )));
        }
        if salt.is_empty() || salt.len() > 1024 {
            return Err(AuthError::UnacceptableCredential(
                "salt must have 1 to 1024 bytes".into(),
            ));
        }
        if salted_password.len() != mechanism.output_len() {
            return Err(AuthError::UnacceptableCredential(format!(
                "salted password must have {} bytes for {}",
                mechanism.output_len(),
                mechanism.name()
            )));
        }
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        Ok(Self {
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
            iterations,
        })
    }

    /// From a password, with a fresh random salt.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> Result<Self, AuthError> {
        let salt = random_bytes(24);
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Self::from_salted_password(mechanism, &salt, &salted, iterations)
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A user name as one metadata key segment: bytes outside `[A-Za-z0-9_@-]` are `%XX`.
fn escape_segment(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'@' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// SCRAM credentials in the metadata store, at `/admin/scram-credentials/{user}/{mechanism}`.
pub struct ScramStore {
    broker: Arc<Broker>,
}

impl ScramStore {
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
    }

    fn key(user: &str, mechanism: ScramMechanism) -> String {
        format!("{STORE_PATH}/{}/{}", escape_segment(user), mechanism.name())
    }

    fn check_user(user: &str) -> Result<(), AuthError> {
        if user.is_empty() || user.len() > USER_BYTES_MAX {
            return Err(AuthError::UnacceptableCredential(format!(
                "user name must have 1 to {USER_BYTES_MAX} bytes"
            )));
        }
        Ok(())
    }

    pub async fn get(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<Option<ScramCredential>, AuthError> {
        if Self::check_user(user).is_err() {
            return Ok(None);
        }
        let Some(value) = self
            .broker
            .metadata()
            .get(&Self::key(user, mechanism))
            .await
            .map_err(magnetar_broker::Error::from)?
        else {
            return Ok(None);
        };
        let stored: StoredCredential = serde_json::from_slice(&value.value).map_err(|e| {
            magnetar_broker::Error::Metadata(format!("cannot decode scram credential: {e}"))
        })?;
        let decode = |s: &str| {
            B64.decode(s).map_err(|e| {
                magnetar_broker::Error::Metadata(format!("cannot decode scram credential: {e}"))
            })
        };
        Ok(Some(ScramCredential {
            salt: decode(&stored.salt)?,
            stored_key: decode(&stored.stored_key)?,
            server_key: decode(&stored.server_key)?,
            iterations: stored.iterations,
        }))
    }

    pub async fn put(
        &self,
        user: &str,
        mechanism: ScramMechanism,
        credential: &ScramCredential,
    ) -> Result<(), AuthError> {
        Self::check_user(user)?;
        let stored = StoredCredential {
            format_version: 1,
            mechanism,
            salt: B64.encode(&credential.salt),
            stored_key: B64.encode(&credential.stored_key),
            server_key: B64.encode(&credential.server_key),
            iterations: credential.iterations,
        };
        let value = serde_json::to_vec(&stored)
            .map_err(|e| magnetar_broker::Error::Metadata(format!("cannot encode: {e}")))?;
        self.broker
            .metadata()
            .put(&Self::key(user, mechanism), Bytes::from(value), Expect::Any)
            .await
            .map_err(magnetar_broker::Error::from)?;
        Ok(())
    }

    /// Removes a credential; `false` when there was none.
    pub async fn delete(&self, user: &str, mechanism: ScramMechanism) -> Result<bool, AuthError> {
        Self::check_user(user)?;
        match self
            .broker
            .metadata()
            .delete(&Self::key(user, mechanism), Expect::Any)
            .await
        {
            Ok(()) => Ok(true),
            Err(MetadataError::NotFound { .. }) => Ok(false),
            Err(e) => Err(magnetar_broker::Error::from(e).into()),
        }
    }

    /// Users with their mechanisms and iterations; all users when `users` is `None`.
    pub async fn describe(
        &self,
        users: Option<&[String]>,
    ) -> Result<Vec<(String, Vec<(ScramMechanism, u32)>)>, AuthError> {
        let names: Vec<String> = match users {
            Some(users) => users.to_vec(),
            None => self
                .broker
                .metadata()
                .list_children(STORE_PATH)
                .await
                .map_err(magnetar_broker::Error::from)?
                .iter()
                .filter_map(|s| unescape_segment(s))
                .collect(),
        };
        let mut out = Vec::with_capacity(names.len());
        for user in names {
            let mut mechanisms = Vec::new();
            for mechanism in ScramMechanism::ALL {
                if let Some(c) = self.get(&user, mechanism).await? {
                    mechanisms.push((mechanism, c.iterations));
                }
            }
            out.push((user, mechanisms));
        }
        Ok(out)
    }
}

/// The server side of one SCRAM exchange.
pub(crate) struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

enum State {
    Initial,
    ServerFirstSent {
        user: String,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        credential: ScramCredential,
    },
    Finished,
}

fn malformed(reason: impl Into<String>) -> AuthError {
    AuthError::Malformed {
        mechanism: "SCRAM",
        reason: reason.into(),
    }
}

/// RFC 5802 `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_saslname(name: &str) -> Result<String, AuthError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ScramServer {
    pub(crate) fn new(mechanism: ScramMechanism) -> Self {
        Self {
            mechanism,
            state: State::Initial,
        }
    }

    pub(crate) async fn step(
        &mut self,
        store: &ScramStore,
        input: &[u8],
    ) -> Result<(Vec<u8>, Option<Authenticated>), AuthError> {
        let message = std::str::from_utf8(input).map_err(|_| malformed("message is not utf-8"))?;
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Initial => {
                // gs2-header: cbind-flag "," [authzid] ","
                let mut parts = message.splitn(3, ',');
                let (Some(cbind), Some(authzid), Some(bare)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(malformed("client-first-message has no gs2 header"));
                };
                if cbind != "n" && cbind != "y" {
                    return Err(malformed("channel binding is not supported"));
                }
                let mut user = None;
                let mut client_nonce = None;
                for (i, attr) in bare.split(',').enumerate() {
                    match (i, attr.split_at_checked(2)) {
                        (0, Some(("n=", v))) => user = Some(decode_saslname(v)?),
                        (0, _) => return Err(malformed("client-first-message must start with n=")),
                        (1, Some(("r=", v))) if !v.is_empty() => client_nonce = Some(v),
                        (1, _) => return Err(malformed("client-first-message lacks r=")),
                        _ => {} // extensions (e.g. Kafka's tokenauth) are ignored
                    }
                }
                let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
                    return Err(malformed("client-first-message lacks n= or r="));
                };
                if let Some(authzid) = authzid.strip_prefix("a=") {
                    if decode_saslname(authzid)? != user {
                        return Err(AuthError::BadCredentials);
                    }
                } else if !authzid.is_empty() {
                    return Err(malformed("bad authzid"));
                }
                let Some(credential) = store.get(&user, self.mechanism).await? else {
                    return Err(AuthError::BadCredentials);
                };
                let nonce = format!(
                    "{client_nonce}{}",
                    base64::engine::general_purpose::STANDARD_NO_PAD.encode(random_bytes(18))
                );
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    B64.encode(&credential.salt),
                    credential.iterations
                );
                let reply = server_first.clone().into_bytes();
                self.state = State::ServerFirstSent {
                    user,
                    gs2_header: format!("{cbind},{authzid},"),
                    client_first_bare: bare.to_string(),
                    server_first,
                    nonce,
                    credential,
                };
                Ok((reply, None))
            }
            State::ServerFirstSent {
                user,
                gs2_header,
                client_first_bare,
                server_first,
                nonce,
                credential,
            } => {
                let Some(proof_at) = message.rfind(",p=") else {
                    return Err(malformed("client-final-message lacks p="));
                };
                let without_proof = &message[..proof_at];
                let proof = B64
                    .decode(&message[proof_at + 3..])
                    .map_err(|_| malformed("proof is not base64"))?;
                let mut attrs = without_proof.split(',');
                let channel = attrs.next().and_then(|a| a.strip_prefix("c="));
                let final_nonce = attrs.next().and_then(|a| a.strip_prefix("r="));
                if channel != Some(B64.encode(gs2_header.as_bytes()).as_str()) {
                    return Err(malformed("channel binding does not match the gs2 header"));
                }
                if final_nonce != Some(nonce.as_str()) {
                    return Err(AuthError::BadCredentials);
                }
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let m = self.mechanism;
                let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != client_signature.len() {
                    return Err(AuthError::BadCredentials);
                }
                let client_key: Vec<u8> = proof
                    .iter()
                    .zip(&client_signature)
                    .map(|(a, b)| a ^ b)
                    .collect();
                if !bool::from(m.hash(&client_key).ct_eq(&credential.stored_key)) {
                    return Err(AuthError::BadCredentials);
                }
                let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
                let reply = format!("v={}", B64.encode(server_signature)).into_bytes();
                Ok((
                    reply,
                    Some(Authenticated {
                        principal: Principal { role: user },
                        expires_at_ms: None,
                        namespace_scope: None,
                    }),
                ))
            }
            State::Finished => Err(AuthError::IllegalState),
        }
    }
}

/// The client side, for tests and tools: (client-first, then a function of server-first).
#[cfg(test)]
pub(crate) mod client {
    use super::*;

    pub(crate) fn first(user: &str, nonce: &str) -> String {
        format!("n,,n={user},r={nonce}")
    }

    pub(crate) fn last(
        m: ScramMechanism,
        password: &str,
        client_first: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = &attrs[0][2..];
        let salt = B64.decode(&attrs[1][2..]).unwrap();
        let iterations: u32 = attrs[2][2..].parse().unwrap();
        let salted = m.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", &client_first[3..]);
        let signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = m.hmac(&salted, b"Server Key");
        let expected = m.hmac(&server_key, auth_message.as_bytes());
        (format!("{without_proof},p={}", B64.encode(proof)), expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 section 3: user "user", password "pencil".
        let m = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let credential = ScramCredential::from_salted_password(m, &salt, &salted, 4096).unwrap();
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let without_proof = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let client_key = m.hmac(&salted, b"Client Key");
        let signature = m.hmac(&credential.stored_key, auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            B64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_signature = m.hmac(&credential.server_key, auth.as_bytes());
        assert_eq!(
            B64.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn saslnames_and_escaping() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert!(decode_saslname("a=b").is_err());
        let user = "tenant/role.x %";
        assert_eq!(unescape_segment(&escape_segment(user)).unwrap(), user);
        assert!(!escape_segment("..").contains('.'));
    }

    #[test]
    fn credentials_are_bounded() {
        let m = ScramMechanism::Sha512;
        assert!(ScramCredential::from_salted_password(m, b"salt", &[0; 64], 100).is_err());
        assert!(ScramCredential::from_salted_password(m, b"salt", &[0; 32], 4096).is_err());
        assert!(ScramCredential::from_salted_password(m, b"", &[0; 64], 4096).is_err());
        assert!(ScramCredential::from_salted_password(m, b"salt", &[0; 64], 4096).is_ok());
    }
}
