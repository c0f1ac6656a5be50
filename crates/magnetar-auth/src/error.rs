/// Why authentication failed. Messages are safe to send to the client: they never echo a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("token expired")]
    TokenExpired,
    #[error("unsupported sasl mechanism {0}")]
    UnsupportedMechanism(String),
    #[error("malformed {mechanism} message: {reason}")]
    Malformed {
        mechanism: &'static str,
        reason: String,
    },
    #[error("invalid credentials")]
    BadCredentials,
    #[error("unacceptable credential: {0}")]
    UnacceptableCredential(String),
    #[error("sasl exchange already finished")]
    IllegalState,
    #[error(transparent)]
    Broker(#[from] magnetar_broker::Error),
}
