//! The population database's signed-header scheme, which the gateway's connector signs with
//! and the simulator checks.

use base64::Engine;
use sha2::{Digest, Sha256};

/// How far a signed request's `Timestamp` may be from the receiver's clock.
pub const SIGNATURE_MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// The digest in the population scheme: hex SHA-256 of url + user + timestamp + secret.
pub fn signed_header_digest(url: &str, user: &str, timestamp_ms: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    for part in [url, user, timestamp_ms, secret] {
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The `Authorization` value: `Basic base64(user:digest)`.
pub fn signed_header_authorization(
    url: &str,
    user: &str,
    timestamp_ms: &str,
    secret: &str,
) -> String {
    let digest = signed_header_digest(url, user, timestamp_ms, secret);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{digest}"))
    )
}
