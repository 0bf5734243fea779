//! WS-Security UsernameToken (OASIS Username Token Profile 1.0/1.1): the password digest
//! both the SOAP connector and the civil-status simulator compute.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// The `wsse` namespace.
pub const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// The `wsu` namespace (`Created`).
pub const WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
/// `Password/@Type` of a digest.
pub const PASSWORD_DIGEST: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest";
/// `Nonce/@EncodingType`.
pub const BASE64_BINARY: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";

/// PasswordDigest = Base64(SHA-1(nonce + created + password)), the nonce as its raw bytes
/// (decoded from its Base64 form) and `created` exactly as sent.
pub fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(nonce);
    ctx.update(created.as_bytes());
    ctx.update(password.as_bytes());
    BASE64.encode(ctx.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_digest_matches_an_independent_implementation() {
        // Computed with Python, not with this code:
        // base64.b64encode(hashlib.sha1(bytes(range(16)) + b"2025-11-28T08:00:00Z"
        //                  + b"s3cret").digest())
        let nonce: Vec<u8> = (0u8..16).collect();
        let digest = password_digest(&nonce, "2025-11-28T08:00:00Z", "s3cret");
        assert_eq!(digest, "pYdy0mbhvkN4cAuXkO4oQjwORXQ=");
        // Every input is in the digest.
        assert_ne!(
            password_digest(&nonce, "2025-11-28T08:00:01Z", "s3cret"),
            digest
        );
        assert_ne!(
            password_digest(&nonce[1..], "2025-11-28T08:00:00Z", "s3cret"),
            digest
        );
        assert_ne!(
            password_digest(&nonce, "2025-11-28T08:00:00Z", "s3cret!"),
            digest
        );
    }
}
