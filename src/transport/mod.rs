//! Transports: the REST and gRPC adapters (translation only, no logic of their own) on the
//! lookup listener, and the admin listener.

pub mod admin;
pub mod admin_grpc;
pub mod door;
pub mod grpc;
pub mod openapi;
pub mod rest;
pub mod tls;

use crate::domain::context::RawContext;
use crate::layers::policy::{Consumer, Grant};
use crate::proto::lienthong::{Capabilities, DatasetCapability};
use crate::shared::limiter::QuotaState;

/// The core version current when a request arrived; the request keeps it to the end.
pub struct Current(pub std::sync::Arc<crate::core::gateway::Gateway>);

impl axum::extract::FromRequestParts<std::sync::Arc<crate::core::live::Live>> for Current {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        _: &mut axum::http::request::Parts,
        live: &std::sync::Arc<crate::core::live::Live>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Current(live.current()))
    }
}

/// What a consumer's grants allow, as both transports answer it.
pub fn capabilities(consumer: &Consumer, grants: &[&Grant]) -> Capabilities {
    Capabilities {
        consumer: consumer.id.clone(),
        quota: consumer.quota.map(|q| q.to_string()).unwrap_or_default(),
        datasets: grants
            .iter()
            .map(|g| DatasetCapability {
                dataset: g.dataset.clone(),
                fields: g.fields.clone(),
                procedures: g.procedures.iter().map(|p| p.as_config()).collect(),
                legal_basis: g.legal_basis.clone(),
                modes: g.modes.iter().map(|m| m.as_str().to_owned()).collect(),
                valid_from: g.valid_from.map(|d| d.to_string()).unwrap_or_default(),
                valid_until: g.valid_until.map(|d| d.to_string()).unwrap_or_default(),
                quota: g.quota.map(|q| q.to_string()).unwrap_or_default(),
                allow_cache_bypass: g.allow_cache_bypass,
            })
            .collect(),
    }
}

/// The `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (whole seconds,
/// rounded up) values of a quota's state; gRPC sends them as metadata of the same names.
pub fn rate_limit_headers(state: &QuotaState) -> [(&'static str, String); 3] {
    let reset = state.reset.as_secs() + u64::from(state.reset.subsec_nanos() > 0);
    [
        ("ratelimit-limit", state.limit.to_string()),
        ("ratelimit-remaining", state.remaining.to_string()),
        ("ratelimit-reset", reset.to_string()),
    ]
}

/// A fresh request id (time-ordered UUID).
pub fn request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The key out of `Authorization: Bearer KEY`.
pub fn bearer(value: Option<&str>) -> Option<String> {
    let v = value?.trim();
    let (scheme, key) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim().to_owned())
        .filter(|k| !k.is_empty())
}

/// Decodes %XX escapes (UTF-8); malformed escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a `Cache-Control` value asks for a fresh read (`no-cache`).
pub fn wants_fresh(cache_control: Option<&str>) -> bool {
    cache_control.is_some_and(|v| {
        v.split(',')
            .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
    })
}

/// Context from header-like pairs (REST headers or gRPC metadata share the names).
pub fn context_from(get: impl Fn(&str) -> Option<String>) -> RawContext {
    RawContext {
        procedure_code: get("x-procedure-code"),
        dossier_id: get("x-dossier-id"),
        officer_id: get("x-officer-id"),
        agency_code: get("x-agency-code"),
        purpose: get("x-purpose").map(|p| percent_decode(&p)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_percent_escapes_and_bearer() {
        assert_eq!(
            super::percent_decode("c%E1%BA%A5p%20l%E1%BA%A1i"),
            "cấp lại"
        );
        assert_eq!(super::percent_decode("50%"), "50%");
        assert_eq!(super::bearer(Some("Bearer abc")), Some("abc".into()));
        assert_eq!(super::bearer(Some("Basic abc")), None);
    }
}
