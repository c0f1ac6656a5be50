//! SASL: PLAIN, OAUTHBEARER and SCRAM-SHA-256/512 as the broker runs them ([`sasl`]).

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, OnceLock};

use magnetar_auth::{
    AuthConfig, Authenticator, Mechanism, SaslStep, ScramCredential, ScramMechanism,
};
use magnetar_broker::{Broker, BrokerConfig, SystemClock};
use magnetar_metadata::MemoryStore;

/// The user that has SCRAM credentials (with a password no input can know).
pub const SCRAM_USER: &str = "alice";
/// In a message after the first, this is replaced by the nonce of the server's challenge, so
/// the fuzzer can reach the SCRAM final step (the nonce is random per exchange).
pub const NONCE_PLACEHOLDER: &[u8] = b"@NONCE@";
/// Separates the client messages in an input.
pub const SEPARATOR: u8 = 0xff;
/// Most messages taken from one input.
const STEPS_MAX: usize = 4;

fn random_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&RandomState::new().hash_one(i).to_le_bytes());
    }
    out
}

struct Fixture {
    authenticator: Authenticator,
    _dir: tempfile::TempDir,
}

/// One authenticator per process: token key and SCRAM password are random, never written down.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        crate::block_on(async {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let broker = Broker::open(
                BrokerConfig::for_data_dir(dir.path()),
                Arc::new(MemoryStore::new()),
                Arc::new(SystemClock),
            )
            .await
            .expect("a broker for the sasl target");
            let secret: String = random_bytes().iter().map(|b| format!("{b:02x}")).collect();
            let config = AuthConfig {
                enabled: true,
                token_secret_key: Some(format!("data:;base64,{}", to_base64(&random_bytes()))),
                token_public_key: None,
                token_auth_claim: "sub".into(),
                mechanisms: Mechanism::ALL.to_vec(),
                superuser_roles: vec!["admin".into()],
                ..Default::default()
            };
            let authenticator =
                Authenticator::new(&config, broker).expect("an authenticator for the target");
            for mechanism in [ScramMechanism::Sha256, ScramMechanism::Sha512] {
                let credential = ScramCredential::from_password(mechanism, &secret, 4096)
                    .expect("a scram credential");
                authenticator
                    .scram()
                    .put(SCRAM_USER, mechanism, &credential)
                    .await
                    .expect("store the scram credential");
            }
            Fixture {
                authenticator,
                _dir: dir,
            }
        })
    })
}

fn to_base64(data: &[u8]) -> String {
    magnetar_format::base64::encode(data)
}

/// The nonce (`r=`) of a SCRAM server-first message.
fn server_nonce(challenge: &[u8]) -> Option<&[u8]> {
    challenge
        .split(|&b| b == b',')
        .find_map(|attr| attr.strip_prefix(b"r="))
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while !rest.is_empty() {
        if rest.starts_with(needle) {
            out.extend_from_slice(with);
            rest = &rest[needle.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

/// Input: a byte choosing the mechanism, then the client's messages separated by `0xff`.
///
/// Properties: no exchange authenticates (the token key and the SCRAM password are random per
/// process, so success would be a forgery); a challenge is at most the client's message plus a
/// constant; once an exchange failed or finished, every further message is refused.
pub fn sasl(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mechanism = Mechanism::ALL[usize::from(which) % Mechanism::ALL.len()];
    let fixture = fixture();
    let auth = &fixture.authenticator;
    crate::block_on(async {
        let mut session = auth
            .start(mechanism.name())
            .expect("every mechanism is enabled");
        let mut nonce: Vec<u8> = Vec::new();
        let mut over = false;
        for message in rest.split(|&b| b == SEPARATOR).take(STEPS_MAX) {
            let message = if nonce.is_empty() {
                message.to_vec()
            } else {
                replace(message, NONCE_PLACEHOLDER, &nonce)
            };
            let step = session.step(auth, &message).await;
            if over {
                assert!(step.is_err(), "a finished exchange took another message");
                continue;
            }
            match step {
                Ok(SaslStep::Challenge(challenge)) => {
                    assert!(
                        challenge.len() <= message.len() + 512,
                        "challenge of {} bytes for a message of {}",
                        challenge.len(),
                        message.len()
                    );
                    if let Some(n) = server_nonce(&challenge) {
                        nonce = n.to_vec();
                    }
                }
                Ok(SaslStep::Done { authenticated, .. }) => {
                    panic!("{mechanism:?} authenticated {authenticated:?} without the secret")
                }
                Err(_) => over = true,
            }
        }
    });
}
