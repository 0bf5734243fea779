//! What the transports hand the core and get back: who is calling, a lookup, a verify, a
//! batch item, and their answers.

use crate::domain::context::RawContext;
use crate::domain::dataset::Dataset;
use crate::domain::error::{LookupError, QuotaState};
use crate::domain::record::Projected;
pub use crate::layers::authenticate::ClientCertificate;
pub use crate::layers::cache::CacheStatus;
pub use crate::layers::claims::Verification;
pub use crate::telemetry::trace::TraceContext;
use std::sync::Arc;

/// How the caller proved who it is.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// An API key presented as `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// A verified client certificate (mTLS).
    pub certificate: Option<Arc<ClientCertificate>>,
    /// "rest" or "grpc", for the audit record.
    pub transport: &'static str,
    /// The W3C trace this call belongs to (the caller's `traceparent`, or a new one).
    pub trace: TraceContext,
    /// Request id assigned by the transport (echoed as `X-Request-Id`).
    pub request_id: String,
}

/// One lookup as a transport received it.
#[derive(Debug, Clone, Default)]
pub struct LookupRequest {
    pub dataset: String,
    pub key: String,
    /// Fields asked for; empty means every granted field.
    pub fields: Vec<String>,
    pub context: RawContext,
    /// Asked for a fresh read from the provider (`Cache-Control: no-cache`); the grant
    /// must allow it.
    pub bypass_cache: bool,
    /// The caller's deadline (gRPC `grpc-timeout`): provider calls give up by then.
    pub deadline: Option<tokio::time::Instant>,
    /// Asked for evidence (REST `X-Evidence`, gRPC `RequestContext.evidence`).
    pub evidence: bool,
}

/// One item of a batch: the batch's context applies to all.
#[derive(Debug, Clone, Default)]
pub struct BatchItem {
    pub dataset: String,
    pub key: String,
    pub fields: Vec<String>,
}

/// The outcome of one batch item, with the item's dataset and key as asked.
#[derive(Debug)]
pub struct BatchOutcome {
    pub index: usize,
    pub dataset: String,
    pub key: String,
    pub result: Result<Lookup, LookupError>,
}

/// A verify call: claimed values for fields of one record.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    pub dataset: String,
    pub key: String,
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub context: RawContext,
    /// Asked for evidence, as for a lookup.
    pub evidence: bool,
}

/// A served lookup: the record projected to what the caller may see.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub dataset: Arc<Dataset>,
    pub key: String,
    pub record: Projected,
    pub cache: CacheStatus,
    /// When the gateway fetched the record from the provider, and the provider's own time
    /// of the data where it stated one.
    pub freshness: Arc<crate::domain::record::Freshness>,
    /// The tightest quota that applied, for the `RateLimit-*` headers.
    pub quota: Option<QuotaState>,
    /// The evidence (a compact JWS), when it was asked for.
    pub evidence: Option<String>,
}
