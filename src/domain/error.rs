//! The one error-code table: every failure a caller can see, with its gRPC status and HTTP
//! status. Transports translate through it and nowhere else.

use std::time::Duration;

/// Stable error codes (the `code` of a problem body, the `reason` of gRPC `ErrorInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Unauthenticated,
    PermissionDenied,
    InvalidKey,
    InvalidContext,
    InvalidRequest,
    UnknownDataset,
    NotFound,
    RateLimited,
    Overloaded,
    UpstreamUnavailable,
    UpstreamTimeout,
    UpstreamBadResponse,
    AuditUnavailable,
    Internal,
    UnknownRoute,
    MethodNotAllowed,
    PayloadTooLarge,
    HeadersTooLarge,
    RequestTimeout,
    DeadlineExceeded,
    PurposeNotBound,
    AlreadyExists,
    DossierEnded,
    RegisterUnavailable,
    PreconditionFailed,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 25] = [
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::InvalidKey,
        ErrorCode::InvalidContext,
        ErrorCode::InvalidRequest,
        ErrorCode::UnknownDataset,
        ErrorCode::NotFound,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::UpstreamUnavailable,
        ErrorCode::UpstreamTimeout,
        ErrorCode::UpstreamBadResponse,
        ErrorCode::AuditUnavailable,
        ErrorCode::Internal,
        ErrorCode::UnknownRoute,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::HeadersTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::DeadlineExceeded,
        ErrorCode::PurposeNotBound,
        ErrorCode::AlreadyExists,
        ErrorCode::DossierEnded,
        ErrorCode::RegisterUnavailable,
        ErrorCode::PreconditionFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::InvalidContext => "invalid_context",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnknownDataset => "unknown_dataset",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::UpstreamBadResponse => "upstream_bad_response",
            ErrorCode::AuditUnavailable => "audit_unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::UnknownRoute => "unknown_route",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::PurposeNotBound => "purpose_not_bound",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::DossierEnded => "dossier_ended",
            ErrorCode::RegisterUnavailable => "register_unavailable",
            ErrorCode::PreconditionFailed => "precondition_failed",
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::PermissionDenied | ErrorCode::PurposeNotBound => Code::PermissionDenied,
            ErrorCode::AlreadyExists => Code::AlreadyExists,
            ErrorCode::DossierEnded | ErrorCode::PreconditionFailed => Code::FailedPrecondition,
            ErrorCode::RegisterUnavailable => Code::Unavailable,
            ErrorCode::InvalidKey | ErrorCode::InvalidContext | ErrorCode::InvalidRequest => {
                Code::InvalidArgument
            }
            ErrorCode::UnknownDataset | ErrorCode::NotFound => Code::NotFound,
            ErrorCode::RateLimited | ErrorCode::PayloadTooLarge | ErrorCode::HeadersTooLarge => {
                Code::ResourceExhausted
            }
            ErrorCode::UnknownRoute | ErrorCode::MethodNotAllowed => Code::Unimplemented,
            ErrorCode::RequestTimeout | ErrorCode::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorCode::Overloaded
            | ErrorCode::UpstreamUnavailable
            | ErrorCode::UpstreamBadResponse
            | ErrorCode::AuditUnavailable => Code::Unavailable,
            ErrorCode::UpstreamTimeout => Code::DeadlineExceeded,
            ErrorCode::Internal => Code::Internal,
        }
    }

    pub fn http_status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            ErrorCode::Unauthenticated => S::UNAUTHORIZED,
            ErrorCode::PermissionDenied | ErrorCode::PurposeNotBound => S::FORBIDDEN,
            ErrorCode::AlreadyExists | ErrorCode::DossierEnded => S::CONFLICT,
            ErrorCode::RegisterUnavailable => S::SERVICE_UNAVAILABLE,
            ErrorCode::PreconditionFailed => S::PRECONDITION_FAILED,
            ErrorCode::InvalidKey | ErrorCode::InvalidContext | ErrorCode::InvalidRequest => {
                S::BAD_REQUEST
            }
            ErrorCode::UnknownDataset | ErrorCode::NotFound => S::NOT_FOUND,
            ErrorCode::RateLimited => S::TOO_MANY_REQUESTS,
            ErrorCode::Overloaded
            | ErrorCode::UpstreamUnavailable
            | ErrorCode::AuditUnavailable => S::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamTimeout => S::GATEWAY_TIMEOUT,
            ErrorCode::UpstreamBadResponse => S::BAD_GATEWAY,
            ErrorCode::Internal => S::INTERNAL_SERVER_ERROR,
            ErrorCode::UnknownRoute => S::NOT_FOUND,
            ErrorCode::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            ErrorCode::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            ErrorCode::HeadersTooLarge => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::RequestTimeout => S::REQUEST_TIMEOUT,
            ErrorCode::DeadlineExceeded => S::GATEWAY_TIMEOUT,
        }
    }

    /// A short human title for problem bodies.
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "caller not authenticated",
            ErrorCode::PermissionDenied => "not permitted",
            ErrorCode::InvalidKey => "malformed key",
            ErrorCode::InvalidContext => "missing or malformed call context",
            ErrorCode::InvalidRequest => "malformed request",
            ErrorCode::UnknownDataset => "unknown dataset",
            ErrorCode::NotFound => "no such record",
            ErrorCode::RateLimited => "rate limit exceeded",
            ErrorCode::Overloaded => "gateway overloaded",
            ErrorCode::UpstreamUnavailable => "provider unavailable",
            ErrorCode::UpstreamTimeout => "provider timed out",
            ErrorCode::UpstreamBadResponse => "provider sent an unusable response",
            ErrorCode::AuditUnavailable => "audit store unavailable",
            ErrorCode::Internal => "internal error",
            ErrorCode::UnknownRoute => "no such route",
            ErrorCode::MethodNotAllowed => "method not allowed on this route",
            ErrorCode::PayloadTooLarge => "request body too large",
            ErrorCode::HeadersTooLarge => "request headers too large",
            ErrorCode::RequestTimeout => "request body too slow",
            ErrorCode::DeadlineExceeded => "caller's deadline passed",
            ErrorCode::PurposeNotBound => "call not bound to a declared dossier",
            ErrorCode::AlreadyExists => "already declared",
            ErrorCode::DossierEnded => "dossier closed or expired",
            ErrorCode::RegisterUnavailable => "dossier register unavailable",
            ErrorCode::PreconditionFailed => "changed since the version named",
        }
    }
}

/// A failed call as the caller sees it: a code and a message naming what was wrong, never
/// personal data or internals.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct LookupError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<Duration>,
    /// The quota that refused the call, for the `RateLimit-*` headers.
    pub quota: Option<QuotaState>,
}

impl LookupError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> LookupError {
        LookupError {
            code,
            message: message.into(),
            retry_after: None,
            quota: None,
        }
    }
}

/// A quota's state after a decision, as the `RateLimit-*` headers tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaState {
    /// Calls the quota allows at once (`RateLimit-Limit`).
    pub limit: u32,
    /// Calls left right now (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the quota is whole again (`RateLimit-Reset`).
    pub reset: Duration,
}

impl QuotaState {
    /// The tighter of two states: the one with fewer calls left.
    pub fn tighter(a: Option<QuotaState>, b: Option<QuotaState>) -> Option<QuotaState> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.remaining < a.remaining { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in docs/errors.md, row by row.
    #[test]
    fn error_table_matches_the_contract() {
        let expected: [(&str, tonic::Code, u16); 25] = [
            ("unauthenticated", tonic::Code::Unauthenticated, 401),
            ("permission_denied", tonic::Code::PermissionDenied, 403),
            ("invalid_key", tonic::Code::InvalidArgument, 400),
            ("invalid_context", tonic::Code::InvalidArgument, 400),
            ("invalid_request", tonic::Code::InvalidArgument, 400),
            ("unknown_dataset", tonic::Code::NotFound, 404),
            ("not_found", tonic::Code::NotFound, 404),
            ("rate_limited", tonic::Code::ResourceExhausted, 429),
            ("overloaded", tonic::Code::Unavailable, 503),
            ("upstream_unavailable", tonic::Code::Unavailable, 503),
            ("upstream_timeout", tonic::Code::DeadlineExceeded, 504),
            ("upstream_bad_response", tonic::Code::Unavailable, 502),
            ("audit_unavailable", tonic::Code::Unavailable, 503),
            ("internal", tonic::Code::Internal, 500),
            ("unknown_route", tonic::Code::Unimplemented, 404),
            ("method_not_allowed", tonic::Code::Unimplemented, 405),
            ("payload_too_large", tonic::Code::ResourceExhausted, 413),
            ("headers_too_large", tonic::Code::ResourceExhausted, 431),
            ("request_timeout", tonic::Code::DeadlineExceeded, 408),
            ("deadline_exceeded", tonic::Code::DeadlineExceeded, 504),
            ("purpose_not_bound", tonic::Code::PermissionDenied, 403),
            ("already_exists", tonic::Code::AlreadyExists, 409),
            ("dossier_ended", tonic::Code::FailedPrecondition, 409),
            ("register_unavailable", tonic::Code::Unavailable, 503),
            ("precondition_failed", tonic::Code::FailedPrecondition, 412),
        ];
        for (code, (name, grpc, http)) in ErrorCode::ALL.iter().zip(expected) {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.grpc_code(), grpc, "{name}");
            assert_eq!(code.http_status().as_u16(), http, "{name}");
        }
    }
}
