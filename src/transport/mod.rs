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
use crate::domain::error::LookupError;
use crate::layers::policy::{Consumer, Grant};
use crate::proto::lienthong::{Capabilities, DatasetCapability};
use crate::shared::limiter::QuotaState;

/// The header (REST) or metadata (gRPC) that carries a portal's signed assertion of the
/// citizen's identity, for the citizen's own access report.
pub const ASSERTION_HEADER: &str = "x-citizen-assertion";
/// The call context's headers (gRPC metadata keys of the same names).
pub const PROCEDURE_CODE_HEADER: &str = "x-procedure-code";
pub const DOSSIER_ID_HEADER: &str = "x-dossier-id";
pub const OFFICER_ID_HEADER: &str = "x-officer-id";
pub const AGENCY_CODE_HEADER: &str = "x-agency-code";
pub const PURPOSE_HEADER: &str = "x-purpose";

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

/// The caller a request names: its `Authorization` and `traceparent` values (REST headers
/// and gRPC metadata share them) and the connection's verified client certificate.
pub fn caller(
    authorization: Option<&str>,
    traceparent: Option<&str>,
    certificate: Option<std::sync::Arc<crate::core::request::ClientCertificate>>,
    transport: &'static str,
) -> crate::core::request::Caller {
    crate::core::request::Caller {
        api_key: bearer(authorization),
        certificate,
        transport,
        trace: crate::core::request::TraceContext::continue_from(traceparent),
        request_id: request_id(),
    }
}

/// Whether a request speaks gRPC, by its content type: refusals made before a handler runs
/// answer in the caller's protocol.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// An error in the caller's protocol: a gRPC status with its details, or a problem body.
pub fn refusal(grpc: bool, e: &LookupError, request_id: &str) -> axum::response::Response {
    if grpc {
        grpc::status(e, request_id).into_http()
    } else {
        rest::problem(e, request_id)
    }
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

pub use crate::domain::percent_decode;

/// Whether a `Cache-Control` value asks for a fresh read (`no-cache`).
pub fn wants_fresh(cache_control: Option<&str>) -> bool {
    cache_control.is_some_and(|v| {
        v.split(',')
            .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
    })
}

/// Context from header-like pairs (REST headers or gRPC metadata share the names), as raw
/// bytes. Header values are ASCII: `X-Purpose` and `X-Officer-Id` carry other text
/// percent-encoded (UTF-8). A value that breaks that is named in `malformed`, so that the
/// call is refused with a message that says why, rather than read as absent or altered.
pub fn context_from<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> RawContext {
    let mut malformed = None;
    let mut field = |header: &str, name: &'static str, encoded: bool| -> Option<String> {
        let raw = get(header)?;
        let Ok(text) = std::str::from_utf8(raw) else {
            malformed.get_or_insert((name, RAW_BYTES));
            return None;
        };
        if !text
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            malformed.get_or_insert((name, RAW_BYTES));
            return None;
        }
        if !encoded {
            return Some(text.to_owned());
        }
        percent_decode(text).or_else(|| {
            malformed.get_or_insert((name, "is not valid percent-encoded UTF-8"));
            None
        })
    };
    let context = RawContext {
        procedure_code: field(PROCEDURE_CODE_HEADER, "procedure_code", false),
        dossier_id: field(DOSSIER_ID_HEADER, "dossier_id", false),
        officer_id: field(OFFICER_ID_HEADER, "officer_id", true),
        agency_code: field(AGENCY_CODE_HEADER, "agency_code", false),
        purpose: field(PURPOSE_HEADER, "purpose", true),
        malformed: None,
    };
    RawContext {
        malformed,
        ..context
    }
}

/// Why a header value with bytes outside printable ASCII is refused.
const RAW_BYTES: &str =
    "holds raw non-ASCII bytes: send text other than ASCII percent-encoded (UTF-8), e.g. %C3%A1";

/// A dossier as both transports answer it (REST sends the proto3 JSON form): times in
/// RFC 3339, subjects as keyed references.
pub fn dossier_message(d: &crate::dossiers::Dossier) -> crate::proto::lienthong::Dossier {
    use crate::domain::date::iso_ms;
    let now = crate::audit::record::now_ms();
    let status = d.status_at(now);
    crate::proto::lienthong::Dossier {
        dossier_id: d.dossier_id.clone(),
        procedure_code: d.procedure_code.clone(),
        officer_id: d.officer_id.clone(),
        received_at: iso_ms(d.received_ms),
        declared_at: iso_ms(d.declared_ms),
        expires_at: iso_ms(d.expires_ms),
        status: status.as_str().into(),
        result: match status {
            crate::dossiers::Status::Expired => "expired".into(),
            _ => d.result.clone(),
        },
        closed_at: d.closed_ms.map(iso_ms).unwrap_or_default(),
        subjects: d
            .subjects
            .iter()
            .map(|s| crate::proto::lienthong::DossierSubject {
                dataset: s.dataset.clone(),
                reference: s.reference.clone(),
                added_at: iso_ms(s.added_ms),
                reason: s.added_reason.clone(),
                removed_at: s.removed_ms.map(iso_ms).unwrap_or_default(),
                removed_reason: s.removed_reason.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_percent_escapes_and_bearer() {
        assert_eq!(
            super::percent_decode("c%E1%BA%A5p%20l%E1%BA%A1i").as_deref(),
            Some("cấp lại")
        );
        for bad in ["50%", "abc%ZZ", "abc%", "%C3%28", "%E1%BA"] {
            assert_eq!(super::percent_decode(bad), None, "{bad}");
        }
        assert_eq!(super::bearer(Some("Bearer abc")), Some("abc".into()));
        assert_eq!(super::bearer(Some("Basic abc")), None);
    }

    #[test]
    fn malformed_context_is_named_not_dropped_or_altered() {
        fn headers(pairs: &'static [(&'static str, &'static [u8])]) -> super::RawContext {
            super::context_from(move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v))
        }
        let ok = headers(&[
            ("x-officer-id", b"nguy%E1%BB%85n.van.a"),
            ("x-purpose", b"c%E1%BA%A5p%20l%E1%BA%A1i"),
        ]);
        assert_eq!(ok.malformed, None);
        assert_eq!(ok.officer_id.as_deref(), Some("nguyễn.van.a"));
        assert_eq!(ok.purpose.as_deref(), Some("cấp lại"));
        let bad = headers(&[("x-purpose", b"abc%ZZ")]);
        assert_eq!(
            bad.malformed,
            Some(("purpose", "is not valid percent-encoded UTF-8"))
        );
        let raw = headers(&[("x-officer-id", b"nguy\xe1\xbb\x85n")]);
        assert_eq!(raw.malformed.map(|m| m.0), Some("officer_id"));
        assert!(raw.malformed.unwrap().1.contains("percent-encoded"));
        let latin1 = headers(&[("x-purpose", b"caf\xe9")]);
        assert_eq!(latin1.malformed.map(|m| m.0), Some("purpose"));
    }
}
