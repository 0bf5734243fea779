//! What a REST request brings, read without refusing anything yet: the caller its
//! credentials name, the call context, the query, the caller's deadline. Whatever is wrong
//! with them is kept as a problem and answered only after authentication, so an unknown
//! caller hears only that it is unknown, and a known one leaves its record.

use super::problem;
use crate::core::gateway::Gateway;
use crate::core::request::{Caller, ClientCertificate};
use crate::domain::context::RawContext;
use crate::domain::error::{ErrorCode, LookupError};
use crate::transport::door::{BodyFault, REQUEST_TIMEOUT_HEADER};
use crate::transport::{
    AGENCY_CODE_HEADER, DOSSIER_ID_HEADER, OFFICER_ID_HEADER, PROCEDURE_CODE_HEADER,
    PURPOSE_HEADER, context_from, percent_decode, wants_fresh,
};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::Response;
use std::sync::Arc;
use std::time::Duration;
use utoipa::IntoParams;

/// The query a lookup takes.
#[derive(Default, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct Fields {
    /// Comma-separated field names (proto names, e.g. `full_name,date_of_birth`); absent
    /// means every field the grant allows. Given at most once.
    fields: Option<String>,
}

/// The longest deadline a caller may set, in milliseconds.
const MAX_TIMEOUT_MS: u64 = 600_000;

/// A request's caller and context, its cache directive, asked fields and deadline, and the
/// first thing found wrong with them.
pub(super) struct Incoming {
    pub(super) context: RawContext,
    pub(super) fresh: bool,
    pub(super) caller: Caller,
    pub(super) fields: Vec<String>,
    pub(super) deadline: Option<tokio::time::Instant>,
    /// Evidence asked for with `X-Evidence`.
    pub(super) evidence: Evidence,
    pub(super) problem: Option<LookupError>,
}

/// The request header asking for evidence, and the answer's header carrying it.
pub(super) const EVIDENCE_HEADER: &str = "x-evidence";

/// How an answer's evidence is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Evidence {
    #[default]
    None,
    /// `X-Evidence: jws`: the usual body, the JWS in the `X-Evidence` response header.
    Header,
    /// `X-Evidence: bundle`: the body is the document to file, `{"answer", "evidence",
    /// "key_id"}`, which `lienthong evidence verify` reads.
    Bundle,
}

impl Evidence {
    pub(super) fn wanted(self) -> bool {
        self != Evidence::None
    }

    fn of(value: Option<&HeaderValue>) -> Result<Evidence, LookupError> {
        match value.map(|v| v.to_str().map(str::trim)) {
            None => Ok(Evidence::None),
            Some(Ok(v)) if v.eq_ignore_ascii_case("jws") => Ok(Evidence::Header),
            Some(Ok(v)) if v.eq_ignore_ascii_case("bundle") => Ok(Evidence::Bundle),
            Some(_) => Err(invalid(
                "X-Evidence must be \"jws\" (the evidence in the X-Evidence response header) or \"bundle\" (the answer, its evidence and key id as one JSON document to file)",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Incoming {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Incoming::read(parts))
    }
}

impl Incoming {
    pub(super) fn read(parts: &Parts) -> Incoming {
        let heads = Heads::of(&parts.headers);
        let caller = crate::transport::caller(
            text(heads.authorization),
            text(heads.traceparent),
            parts.extensions.get::<Arc<ClientCertificate>>().cloned(),
            "rest",
        );
        let (fields, query_problem) = match query_fields(&parts.uri) {
            Ok(f) => (f, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let (deadline, deadline_problem) = match deadline(heads.timeout) {
            Ok(d) => (d, None),
            Err(e) => (None, Some(e)),
        };
        let (evidence, evidence_problem) = match Evidence::of(heads.evidence) {
            Ok(e) => (e, None),
            Err(e) => (Evidence::None, Some(e)),
        };
        Incoming {
            context: context_from(|name| heads.context(name).map(|v| v.as_bytes())),
            fresh: wants_fresh(text(heads.cache_control)),
            caller,
            fields,
            deadline,
            evidence,
            problem: query_problem.or(deadline_problem).or(evidence_problem),
        }
    }
}

fn invalid(message: impl Into<String>) -> LookupError {
    LookupError::new(ErrorCode::InvalidRequest, message)
}

/// The `fields` parameter, split; a parameter given twice, unknown or badly encoded is a
/// problem.
fn query_fields(uri: &Uri) -> Result<Vec<String>, LookupError> {
    let Some(query) = uri.query() else {
        return Ok(Vec::new());
    };
    let mut fields: Option<String> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_decode(&s.replace('+', " "));
        let name =
            decode(name).ok_or_else(|| invalid("the query is not valid percent-encoded UTF-8"))?;
        if name != "fields" {
            return Err(invalid(format!(
                "unknown query parameter {:?}: a lookup takes only `fields`",
                truncate(&name)
            )));
        }
        if fields.is_some() {
            return Err(invalid(
                "the query parameter `fields` is given more than once: list the fields comma-separated in one",
            ));
        }
        fields = Some(decode(value).ok_or_else(|| {
            invalid("the query parameter `fields` is not valid percent-encoded UTF-8")
        })?);
    }
    Ok(fields
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect())
}

/// A header's value as text, when it is.
fn text(v: Option<&HeaderValue>) -> Option<&str> {
    v.and_then(|v| v.to_str().ok())
}

/// The headers a lookup reads, found in one pass over the request's head instead of a
/// lookup each (which parses and hashes the name again). The first value of a name counts,
/// as with `HeaderMap::get`.
#[derive(Default)]
struct Heads<'a> {
    authorization: Option<&'a HeaderValue>,
    traceparent: Option<&'a HeaderValue>,
    cache_control: Option<&'a HeaderValue>,
    timeout: Option<&'a HeaderValue>,
    evidence: Option<&'a HeaderValue>,
    procedure_code: Option<&'a HeaderValue>,
    dossier_id: Option<&'a HeaderValue>,
    officer_id: Option<&'a HeaderValue>,
    agency_code: Option<&'a HeaderValue>,
    purpose: Option<&'a HeaderValue>,
}

impl<'a> Heads<'a> {
    fn of(headers: &'a HeaderMap) -> Heads<'a> {
        let mut h = Heads::default();
        for (name, value) in headers {
            let slot = match name.as_str() {
                "authorization" => &mut h.authorization,
                "traceparent" => &mut h.traceparent,
                "cache-control" => &mut h.cache_control,
                REQUEST_TIMEOUT_HEADER => &mut h.timeout,
                EVIDENCE_HEADER => &mut h.evidence,
                PROCEDURE_CODE_HEADER => &mut h.procedure_code,
                DOSSIER_ID_HEADER => &mut h.dossier_id,
                OFFICER_ID_HEADER => &mut h.officer_id,
                AGENCY_CODE_HEADER => &mut h.agency_code,
                PURPOSE_HEADER => &mut h.purpose,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        h
    }

    /// A context header, by the name [`context_from`] asks for.
    fn context(&self, name: &str) -> Option<&'a HeaderValue> {
        match name {
            PROCEDURE_CODE_HEADER => self.procedure_code,
            DOSSIER_ID_HEADER => self.dossier_id,
            OFFICER_ID_HEADER => self.officer_id,
            AGENCY_CODE_HEADER => self.agency_code,
            PURPOSE_HEADER => self.purpose,
            _ => None,
        }
    }
}

/// The caller's deadline from `X-Request-Timeout-Ms`, kept back a little as gRPC's is, so
/// the answer reaches the caller before its own clock runs out.
fn deadline(value: Option<&HeaderValue>) -> Result<Option<tokio::time::Instant>, LookupError> {
    let Some(v) = value else {
        return Ok(None);
    };
    let ms = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
        .ok_or_else(|| {
            invalid(format!(
                "X-Request-Timeout-Ms must be a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS}"
            ))
        })?;
    let t = Duration::from_millis(ms);
    let margin = (t / 10).min(Duration::from_millis(100));
    Ok(Some(tokio::time::Instant::now() + (t - margin)))
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The body of a known caller's request, or the answer to send: `unauthenticated` for an
/// unknown caller (before a byte of the body is read), else `payload_too_large`,
/// `request_timeout` or `invalid_request`, each recorded.
pub(super) async fn read_body(
    g: &Gateway,
    caller: &Caller,
    action: &'static str,
    body: axum::body::Body,
) -> Result<bytes::Bytes, Response> {
    if let Err(e) = g.identify(caller) {
        return Err(problem(&e, &caller.request_id));
    }
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => Ok(bytes),
        Err(e) => {
            let error = match BodyFault::of(&e) {
                Some(BodyFault::TooLarge(limit)) => LookupError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the request body is over the limit of {limit} bytes (door.max_body_bytes)"
                    ),
                ),
                Some(BodyFault::TooSlow(t)) => LookupError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "the request body did not arrive within {} ms (door.body_timeout_ms)",
                        t.as_millis()
                    ),
                ),
                None => invalid(format!("the request body could not be read: {e}")),
            };
            let error = Box::pin(g.refuse(caller, action, error)).await;
            Err(problem(&error, &caller.request_id))
        }
    }
}

/// A request for no route: `unknown_route` (404), or for a gRPC method this port does not
/// serve, UNIMPLEMENTED with its ErrorInfo. Recorded when the caller is known.
pub(super) async fn unrouted(
    live: Arc<crate::core::live::Live>,
    request: axum::extract::Request,
) -> Response {
    let g = live.current();
    let (parts, _) = request.into_parts();
    let incoming = Incoming::read(&parts);
    let (method, uri) = (&parts.method, &parts.uri);
    let grpc = crate::transport::is_grpc(&parts.headers);
    let mut caller = incoming.caller;
    let error = if grpc {
        caller.transport = "grpc";
        LookupError::new(
            ErrorCode::UnknownRoute,
            format!(
                "no gRPC method {} here: the services are listed by server reflection",
                truncate(uri.path())
            ),
        )
    } else {
        LookupError::new(
            ErrorCode::UnknownRoute,
            format!(
                "no route {method} {}: the routes are listed in /openapi.json",
                truncate(uri.path())
            ),
        )
    };
    let error = g.refuse(&caller, "request", error).await;
    crate::transport::refusal(grpc, &error, &caller.request_id)
}

/// A known path asked with a method it does not take: `method_not_allowed` (405) with the
/// `Allow` header, recorded when the caller is known. (The router calls this only then.)
pub(super) async fn method_not_allowed(
    live: Arc<crate::core::live::Live>,
    request: axum::extract::Request,
) -> Response {
    let g = live.current();
    let (parts, _) = request.into_parts();
    let incoming = Incoming::read(&parts);
    let path = parts.uri.path();
    // Lookups are reads; a batch and a verify are posts.
    let allow = if path == "/v1/batch" || path.ends_with("/verify") {
        "POST"
    } else {
        "GET,HEAD"
    };
    let error = LookupError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} does not take {}: it takes {allow} (see /openapi.json)",
            truncate(path),
            parts.method
        ),
    );
    let error = g.refuse(&incoming.caller, "request", error).await;
    let mut answer = problem(&error, &incoming.caller.request_id);
    answer
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_takes_fields_once() {
        let q = |s: &str| query_fields(&s.parse::<Uri>().unwrap());
        assert_eq!(q("/x").unwrap(), Vec::<String>::new());
        assert_eq!(
            q("/x?fields=full_name,%20date_of_birth").unwrap(),
            ["full_name", "date_of_birth"]
        );
        let twice = q("/x?fields=a&fields=b").unwrap_err();
        assert!(twice.message.contains("more than once"));
        let unknown = q("/x?field=a").unwrap_err();
        assert!(
            unknown
                .message
                .contains("unknown query parameter \"field\"")
        );
        assert!(q("/x?fields=%ZZ").is_err());
    }

    #[test]
    fn the_deadline_header_is_milliseconds() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(REQUEST_TIMEOUT_HEADER, v.parse().unwrap());
            deadline(Heads::of(&m).timeout)
        };
        assert!(h("250").unwrap().is_some());
        for bad in ["0", "-1", "1.5", "2s", "600001"] {
            let e = h(bad).unwrap_err();
            assert!(e.message.contains("X-Request-Timeout-Ms"), "{bad}");
        }
        assert_eq!(
            deadline(Heads::of(&HeaderMap::new()).timeout).unwrap(),
            None
        );
    }

    #[test]
    fn the_head_is_read_in_one_pass_as_lookups_by_name_would_read_it() {
        let mut m = HeaderMap::new();
        for (name, value) in [
            ("Authorization", "Bearer k1"),
            ("X-Procedure-Code", "1.001612"),
            ("x-dossier-id", "000.00.53.H48-251128-0001"),
            ("X-Officer-Id", "canbo01"),
            ("X-Agency-Code", "H48"),
            ("X-Purpose", "x"),
            ("Cache-Control", "no-cache"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (REQUEST_TIMEOUT_HEADER, "250"),
            ("X-Other", "y"),
        ] {
            m.insert(
                name.parse::<axum::http::HeaderName>().unwrap(),
                value.parse().unwrap(),
            );
        }
        // A second value of a name: the first counts, as `get` reads it.
        m.append("x-dossier-id", "other".parse().unwrap());
        let h = Heads::of(&m);
        for (got, name) in [
            (h.authorization, "authorization"),
            (h.traceparent, "traceparent"),
            (h.cache_control, "cache-control"),
            (h.timeout, REQUEST_TIMEOUT_HEADER),
        ] {
            assert_eq!(got, m.get(name), "{name}");
        }
        for name in [
            "x-procedure-code",
            "x-dossier-id",
            "x-officer-id",
            "x-agency-code",
            "x-purpose",
        ] {
            assert_eq!(h.context(name), m.get(name), "{name}");
            assert!(h.context(name).is_some(), "{name}");
        }
        assert_eq!(h.context("x-other"), None);
        assert_eq!(
            h.context("x-dossier-id").unwrap(),
            "000.00.53.H48-251128-0001"
        );
    }
}
