//! Evidence over REST: asked for with `X-Evidence: jws` (the JWS in the `X-Evidence`
//! response header) or `X-Evidence: bundle` (the body is the document to file:
//! `{"answer", "evidence", "key_id"}`); and `GET /v1/keys`, the JWKS that verifies it.

use super::incoming::{EVIDENCE_HEADER, Evidence};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::IntoResponse;
use std::sync::Arc;

/// The body to send for an answer whose JSON is `json`, with its evidence as asked: the
/// JWS goes in the header, or the body becomes the bundle.
pub(super) fn body(mode: Evidence, json: Vec<u8>, jws: Option<&str>, h: &mut HeaderMap) -> Vec<u8> {
    let Some(jws) = jws else { return json };
    if let Ok(v) = HeaderValue::from_str(jws) {
        h.insert(HeaderName::from_static(EVIDENCE_HEADER), v);
    }
    match mode {
        Evidence::Bundle => {
            let answer = serde_json::from_slice(&json).unwrap_or_default();
            crate::audit::evidence::bundle(answer, jws)
                .to_string()
                .into_bytes()
        }
        Evidence::Header | Evidence::None => json,
    }
}

/// `GET /v1/keys`: every evidence key, old ones included, with its validity (public, as a
/// JWKS is: it holds public keys only).
pub(super) async fn keys(live: Arc<crate::core::live::Live>) -> axum::response::Response {
    let jwks = live.current().config().audit.evidence.jwks();
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        jwks.to_string(),
    )
        .into_response()
}
