//! Pulsar's `AuthenticationProviderBasic`: a file of `user:hash` lines (htpasswd style), named
//! by `basicAuthConf` as a path, `file:///path`, `data:;base64,...` or bare base64. A client
//! sends auth method `basic` with `user:password` (the binary protocol) or
//! `Authorization: Basic base64(user:password)` (HTTP).
//!
//! Hashes accepted: APR1-MD5 (`$apr1$salt$hash`, what `htpasswd -m` writes and what Pulsar's
//! documentation uses), implemented here on the `md-5` crate, and bcrypt (`$2y$`, `$2b$`, `$2a$`,
//! `htpasswd -B`) through the `bcrypt` crate. Pulsar also accepts traditional crypt(3) DES
//! hashes; those are refused when the file is read, naming the user: DES crypt uses only the
//! first 8 characters of a password, and no well-kept crate implements it.

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use crate::{key, AuthError};

/// Largest number of users read from a file (a limit on memory; Pulsar has none).
pub const USERS_MAX: usize = 100_000;

/// One user's stored hash, by scheme.
#[derive(Clone, PartialEq, Eq)]
enum Hash {
    /// `$apr1$salt$hash`: the salt and the whole string to compare.
    Apr1 { salt: String, full: String },
    /// `$2y$cost$...`.
    Bcrypt(String),
}

/// The users of a basic authentication file.
#[derive(Clone, Default)]
pub struct BasicUsers {
    users: std::collections::HashMap<String, Hash>,
}

impl std::fmt::Debug for BasicUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicUsers")
            .field("users", &self.users.len())
            .finish()
    }
}

impl BasicUsers {
    /// Reads the file `basicAuthConf` names (path, `file:`, `data:` or base64).
    pub fn load(source: &str) -> Result<Self, AuthError> {
        let bytes = key::read_key(source).map_err(|e| {
            let reason = match e {
                AuthError::InvalidKey(reason) => reason,
                other => other.to_string(),
            };
            AuthError::InvalidKey(format!("basic authentication file: {reason}"))
        })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            AuthError::InvalidKey("basic authentication file is not utf-8 text".into())
        })?;
        Self::parse(text)
    }

    /// Parses `user:hash` lines; blank lines are skipped. Every error names the line.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let mut users = std::collections::HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: String| {
                AuthError::InvalidKey(format!(
                    "basic authentication file, line {}: {reason}",
                    number + 1
                ))
            };
            let Some((user, hash)) = line.split_once(':') else {
                return Err(bad("expected user:hash".into()));
            };
            if user.is_empty() || hash.contains(':') {
                return Err(bad("expected user:hash".into()));
            }
            let hash = if let Some(rest) = hash.strip_prefix("$apr1$") {
                let salt = rest
                    .split_once('$')
                    .map(|(salt, _)| salt)
                    .filter(|s| !s.is_empty() && s.len() <= 8)
                    .ok_or_else(|| bad(format!("user '{user}': malformed $apr1$ hash")))?;
                Hash::Apr1 {
                    salt: salt.to_string(),
                    full: hash.to_string(),
                }
            } else if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
                Hash::Bcrypt(hash.to_string())
            } else if hash.starts_with('$') {
                let scheme = hash.split('$').nth(1).unwrap_or_default();
                return Err(bad(format!(
                    "user '{user}': hash scheme ${scheme}$ is not supported (use $apr1$, htpasswd -m, or bcrypt, htpasswd -B)"
                )));
            } else {
                return Err(bad(format!(
                    "user '{user}': crypt(3) DES hashes are not supported, they use only the first 8 characters of a password (re-hash with htpasswd -m or -B)"
                )));
            };
            if users.len() >= USERS_MAX {
                return Err(bad(format!("more than {USERS_MAX} users")));
            }
            users.insert(user.to_string(), hash);
        }
        Ok(Self { users })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks a password; the role is the user name. The error does not say which part was wrong
    /// (Pulsar: "Unknown user or invalid password").
    pub fn verify(&self, user: &str, password: &str) -> Result<(), AuthError> {
        let ok = match self.users.get(user) {
            Some(Hash::Apr1 { salt, full }) => {
                let computed = apr1(password.as_bytes(), salt.as_bytes());
                bool::from(computed.as_bytes().ct_eq(full.as_bytes()))
            }
            Some(Hash::Bcrypt(hash)) => bcrypt::verify(password, hash).unwrap_or(false),
            None => false,
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::BadCredentials)
        }
    }
}

/// Splits `user:password` (the client's auth data); the password may contain ':'.
pub fn split_credentials(data: &str) -> Result<(&str, &str), AuthError> {
    data.split_once(':')
        .filter(|(user, _)| !user.is_empty())
        .ok_or_else(|| AuthError::Malformed {
            mechanism: "basic",
            reason: "expected user:password".into(),
        })
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// APR1-MD5 (Apache's variant of md5-crypt, magic `$apr1$`), as `htpasswd -m` and Apache
/// Commons Codec's `Md5Crypt.apr1Crypt` compute it.
pub fn apr1(password: &[u8], salt: &[u8]) -> String {
    const MAGIC: &[u8] = b"$apr1$";
    let salt = &salt[..salt.len().min(8)];
    let mut ctx = Md5::new();
    ctx.update(password);
    ctx.update(MAGIC);
    ctx.update(salt);
    let mut alt = Md5::new();
    alt.update(password);
    alt.update(salt);
    alt.update(password);
    let alt = alt.finalize();
    let mut left = password.len();
    while left > 0 {
        ctx.update(&alt[..left.min(16)]);
        left = left.saturating_sub(16);
    }
    let mut i = password.len();
    while i != 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut sum = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(sum);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(sum);
        } else {
            c.update(password);
        }
        sum = c.finalize();
    }
    let f = sum;
    let mut out = String::with_capacity(37);
    out.push_str("$apr1$");
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut to64 = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        to64(
            (u32::from(f[a]) << 16) | (u32::from(f[b]) << 8) | u32::from(f[c]),
            4,
        );
    }
    to64(u32::from(f[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // `openssl passwd -apr1 -salt saltsalt password`.
    const APR1_PASSWORD: &str = "$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/";

    #[test]
    fn apr1_matches_openssl() {
        assert_eq!(apr1(b"password", b"saltsalt"), APR1_PASSWORD);
    }

    #[test]
    fn users_verify_apr1_and_bcrypt() {
        let bcrypt_hash = bcrypt::hash("secret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let users =
            BasicUsers::parse(&format!("alice:{APR1_PASSWORD}\n\nbob:{bcrypt_hash}\n")).unwrap();
        assert_eq!(users.len(), 2);
        users.verify("alice", "password").unwrap();
        users.verify("bob", "secret").unwrap();
        assert!(matches!(
            users.verify("alice", "Password"),
            Err(AuthError::BadCredentials)
        ));
        assert!(users.verify("bob", "password").is_err());
        assert!(users.verify("carol", "password").is_err());
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, needle) in [
            ("alice\n", "line 1: expected user:hash"),
            (
                "a:$apr1$x$y\nbob:abJnggxhB/yWI\n",
                "line 2: user 'bob': crypt(3) DES",
            ),
            ("a:$6$salt$hash\n", "hash scheme $6$ is not supported"),
            ("a:$apr1$nosalt\n", "malformed $apr1$ hash"),
            ("a:b:c\n", "expected user:hash"),
        ] {
            let e = BasicUsers::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn load_reads_data_urls_and_paths() {
        use base64::Engine;
        let text = format!("alice:{APR1_PASSWORD}\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&text);
        let users = BasicUsers::load(&format!("data:;base64,{b64}")).unwrap();
        users.verify("alice", "password").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, &text).unwrap();
        BasicUsers::load(path.to_str().unwrap())
            .unwrap()
            .verify("alice", "password")
            .unwrap();
        assert!(BasicUsers::load("/does/not/exist")
            .unwrap_err()
            .to_string()
            .contains("basic authentication file"));
    }

    #[test]
    fn credentials_split_at_the_first_colon() {
        assert_eq!(split_credentials("u:p:q").unwrap(), ("u", "p:q"));
        assert!(split_credentials("nopassword").is_err());
        assert!(split_credentials(":p").is_err());
    }
}
