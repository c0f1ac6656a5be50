//! JWT tokens as Pulsar's token authentication makes them: signed with a secret key (HS256) or a
//! private key (RS256, ES256), the role in a configurable claim (default `sub`), expiry in `exp`
//! honoured to the second with no leeway. Key pairs are written as Pulsar writes them (PKCS#8
//! DER private key, X.509 SubjectPublicKeyInfo DER public key); PEM is accepted too.

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::AuthError;

/// Longest token accepted; real tokens are a few hundred bytes.
pub const TOKEN_BYTES_MAX: usize = 16 * 1024;

/// The claims of a validated token.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenClaims {
    pub role: String,
    /// The `exp` claim, in Unix seconds.
    pub expires_at_s: Option<u64>,
    pub claims: Map<String, Value>,
}

/// Checks tokens against one key.
pub struct TokenValidator {
    key: DecodingKey,
    validation: Validation,
    role_claim: String,
}

impl std::fmt::Debug for TokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenValidator")
            .field("algorithms", &self.validation.algorithms)
            .field("role_claim", &self.role_claim)
            .finish()
    }
}

fn validation(algorithms: Vec<Algorithm>) -> Validation {
    let mut v = Validation::new(algorithms[0]);
    v.algorithms = algorithms;
    // Pulsar tokens often carry no `exp` (they never expire) and no `aud`.
    v.required_spec_claims.clear();
    v.validate_exp = true;
    v.validate_aud = false;
    v.leeway = 0;
    v
}

/// A key's bytes as PEM: PEM input is kept, DER input is wrapped with `label`.
fn as_pem(bytes: &[u8], label: &str) -> Vec<u8> {
    if bytes
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(5)
        .eq(b"-----".iter())
    {
        return bytes.to_vec();
    }
    let body = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem.into_bytes()
}

impl TokenValidator {
    /// HS256 with a secret key (raw bytes, as `pulsar tokens create-secret-key` writes them).
    pub fn from_secret_key(secret: &[u8], role_claim: &str) -> Result<Self, AuthError> {
        if secret.len() < 32 {
            return Err(AuthError::InvalidKey(format!(
                "the token secret key has {} bytes; HS256 needs at least 32",
                secret.len()
            )));
        }
        Ok(Self {
            key: DecodingKey::from_secret(secret),
            validation: validation(vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]),
            role_claim: role_claim.to_string(),
        })
    }

    /// RS256 or ES256 with a public key (DER or PEM); the algorithm follows the key's type.
    pub fn from_public_key(public: &[u8], role_claim: &str) -> Result<Self, AuthError> {
        let pem = as_pem(public, "PUBLIC KEY");
        let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            (
                key,
                vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
            )
        } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            (key, vec![Algorithm::ES256])
        } else {
            return Err(AuthError::InvalidKey(
                "the token public key is neither an RSA nor an EC public key (DER or PEM)".into(),
            ));
        };
        Ok(Self {
            key,
            validation: validation(algorithms),
            role_claim: role_claim.to_string(),
        })
    }

    /// Validates signature, algorithm and expiry, and reads the role.
    pub fn validate(&self, token: &str) -> Result<TokenClaims, AuthError> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err(AuthError::InvalidToken(format!(
                "token longer than {TOKEN_BYTES_MAX} bytes"
            )));
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::TokenExpired,
            ErrorKind::InvalidSignature => {
                AuthError::InvalidToken("signature does not match the broker's key".into())
            }
            ErrorKind::InvalidAlgorithm => AuthError::InvalidToken(format!(
                "signed with an algorithm the broker's key does not verify (expected one of {:?})",
                self.validation.algorithms
            )),
            ErrorKind::ImmatureSignature => {
                AuthError::InvalidToken("token is not valid yet (nbf)".into())
            }
            _ => AuthError::InvalidToken(e.to_string()),
        })?;
        let claims = data.claims;
        let role = match claims.get(&self.role_claim) {
            Some(Value::String(role)) if !role.is_empty() => role.clone(),
            _ => {
                return Err(AuthError::InvalidToken(format!(
                    "token has no '{}' claim naming a role",
                    self.role_claim
                )))
            }
        };
        let expires_at_s = claims.get("exp").and_then(Value::as_u64);
        Ok(TokenClaims {
            role,
            expires_at_s,
            claims,
        })
    }
}

/// A key that signs tokens (`magnetar tokens create`).
pub struct SigningKey {
    key: EncodingKey,
    algorithm: Algorithm,
}

impl SigningKey {
    /// HS256 with a secret key.
    pub fn from_secret_key(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.len() < 32 {
            return Err(AuthError::InvalidKey(format!(
                "the secret key has {} bytes; HS256 needs at least 32",
                secret.len()
            )));
        }
        Ok(Self {
            key: EncodingKey::from_secret(secret),
            algorithm: Algorithm::HS256,
        })
    }

    /// RS256 or ES256 with a PKCS#8 private key (DER or PEM), by the key's type.
    pub fn from_private_key(private: &[u8]) -> Result<Self, AuthError> {
        let pem = as_pem(private, "PRIVATE KEY");
        if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
            return Ok(Self {
                key,
                algorithm: Algorithm::RS256,
            });
        }
        if let Ok(key) = EncodingKey::from_ec_pem(&pem) {
            return Ok(Self {
                key,
                algorithm: Algorithm::ES256,
            });
        }
        Err(AuthError::InvalidKey(
            "the private key is neither an RSA nor an EC PKCS#8 private key (DER or PEM)".into(),
        ))
    }

    pub fn algorithm_name(&self) -> String {
        format!("{:?}", self.algorithm)
    }

    /// Signs a token for `subject` (in `sub`, as `pulsar tokens create` does), expiring at
    /// `expires_at_s` (Unix seconds) when given.
    pub fn create_token(
        &self,
        subject: &str,
        expires_at_s: Option<u64>,
    ) -> Result<String, AuthError> {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(subject.to_string()));
        if let Some(exp) = expires_at_s {
            claims.insert("exp".into(), Value::from(exp));
        }
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.key)
            .map_err(|e| AuthError::InvalidKey(format!("cannot sign the token: {e}")))
    }
}

/// The header and claims of a token, without checking its signature (`tokens show`).
pub fn inspect(token: &str) -> Result<(Value, Value), AuthError> {
    let mut parts = token.trim().split('.');
    let (Some(header), Some(claims), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::InvalidToken(
            "a token has three parts separated by '.'".into(),
        ));
    };
    let decode = |part: &str| -> Result<Value, AuthError> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|e| AuthError::InvalidToken(format!("not base64url: {e}")))?;
        serde_json::from_slice(&raw).map_err(|e| AuthError::InvalidToken(format!("not JSON: {e}")))
    };
    Ok((decode(header)?, decode(claims)?))
}

/// A fresh 32-byte HS256 secret key, as `pulsar tokens create-secret-key` makes.
pub fn generate_secret_key() -> Vec<u8> {
    use rand::RngCore;
    let mut key = vec![0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    key
}

/// The key-pair algorithms `create-key-pair` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPairAlgorithm {
    RS256,
    ES256,
}

impl std::str::FromStr for KeyPairAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "RS256" => Ok(Self::RS256),
            "ES256" => Ok(Self::ES256),
            other => Err(format!("unsupported algorithm {other}; use RS256 or ES256")),
        }
    }
}

/// A fresh key pair: (PKCS#8 DER private key, X.509 SubjectPublicKeyInfo DER public key).
pub fn generate_key_pair(algorithm: KeyPairAlgorithm) -> Result<(Vec<u8>, Vec<u8>), AuthError> {
    let failed = |e: &dyn std::fmt::Display| AuthError::InvalidKey(format!("key generation: {e}"));
    match algorithm {
        KeyPairAlgorithm::RS256 => {
            use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
            let private =
                rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(|e| failed(&e))?;
            let public = rsa::RsaPublicKey::from(&private);
            let private = private.to_pkcs8_der().map_err(|e| failed(&e))?;
            let public = public.to_public_key_der().map_err(|e| failed(&e))?;
            Ok((private.as_bytes().to_vec(), public.as_bytes().to_vec()))
        }
        KeyPairAlgorithm::ES256 => {
            use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
            let private = p256::SecretKey::random(&mut rand::rngs::OsRng);
            let public = private.public_key();
            let private = private.to_pkcs8_der().map_err(|e| failed(&e))?;
            let public = public.to_public_key_der().map_err(|e| failed(&e))?;
            Ok((private.as_bytes().to_vec(), public.as_bytes().to_vec()))
        }
    }
}

/// Pulsar's relative time (`30s`, `10m`, `3h`, `1d`, `2w`, `1y`; a bare number is seconds).
pub fn parse_relative_time_s(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a relative time such as 30s, 10m, 3h, 1d, 2w, 1y"))?;
    let unit_s: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'y' => 365 * 86_400,
        other => return Err(format!("unknown time unit '{other}' in '{text}'")),
    };
    number
        .checked_mul(unit_s)
        .ok_or_else(|| format!("'{text}' is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_s() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn secret_key_round_trip_and_expiry() {
        let secret = generate_secret_key();
        let signer = SigningKey::from_secret_key(&secret).unwrap();
        let validator = TokenValidator::from_secret_key(&secret, "sub").unwrap();
        let token = signer.create_token("alice", None).unwrap();
        let claims = validator.validate(&token).unwrap();
        assert_eq!(claims.role, "alice");
        assert_eq!(claims.expires_at_s, None);
        let token = signer.create_token("bob", Some(now_s() + 60)).unwrap();
        assert_eq!(validator.validate(&token).unwrap().role, "bob");
        let expired = signer.create_token("bob", Some(now_s() - 1)).unwrap();
        assert!(matches!(
            validator.validate(&expired),
            Err(AuthError::TokenExpired)
        ));
        let other = TokenValidator::from_secret_key(&generate_secret_key(), "sub").unwrap();
        assert!(matches!(
            other.validate(&token),
            Err(AuthError::InvalidToken(_))
        ));
        // A custom role claim that the token lacks.
        let custom = TokenValidator::from_secret_key(&secret, "role").unwrap();
        assert!(custom.validate(&token).is_err());
        // A tampered payload.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"root"}"#);
        parts[1] = &forged;
        assert!(validator.validate(&parts.join(".")).is_err());
        assert!(validator.validate("not a token").is_err());
    }

    #[test]
    fn key_pairs_in_der_and_pem() {
        for algorithm in [KeyPairAlgorithm::ES256, KeyPairAlgorithm::RS256] {
            let (private, public) = generate_key_pair(algorithm).unwrap();
            let signer = SigningKey::from_private_key(&private).unwrap();
            assert_eq!(signer.algorithm_name(), format!("{algorithm:?}"));
            let token = signer.create_token("carol", Some(now_s() + 60)).unwrap();
            let validator = TokenValidator::from_public_key(&public, "sub").unwrap();
            assert_eq!(validator.validate(&token).unwrap().role, "carol");
            let pem = as_pem(&public, "PUBLIC KEY");
            let validator = TokenValidator::from_public_key(&pem, "sub").unwrap();
            assert_eq!(validator.validate(&token).unwrap().role, "carol");
            // An HS256 token signed with the public key bytes (algorithm confusion) is refused.
            let confused = SigningKey::from_secret_key(&public)
                .unwrap()
                .create_token("mallory", None)
                .unwrap();
            assert!(validator.validate(&confused).is_err());
        }
    }

    #[test]
    fn relative_times_and_inspect() {
        assert_eq!(parse_relative_time_s("1d"), Ok(86_400));
        assert_eq!(parse_relative_time_s("30"), Ok(30));
        assert_eq!(parse_relative_time_s("2w"), Ok(14 * 86_400));
        assert!(parse_relative_time_s("1x").is_err());
        assert!(parse_relative_time_s("").is_err());
        let signer = SigningKey::from_secret_key(&[7u8; 32]).unwrap();
        let token = signer.create_token("dave", Some(5)).unwrap();
        let (header, claims) = inspect(&token).unwrap();
        assert_eq!(header["alg"], "HS256");
        assert_eq!(claims["sub"], "dave");
        assert_eq!(claims["exp"], 5);
    }
}
