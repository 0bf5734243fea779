//! Active health probes: one provider asked for one key now, outside the cache and the
//! guard, and what the last probes found.

use super::connector::{Call, Connector};
use crate::audit::record::now_ms;
use crate::domain::context::CallContext;
use crate::domain::dataset::Dataset;
use crate::domain::date::Date;
use crate::telemetry::trace::TraceContext;
use std::sync::Mutex;

/// What the last active health probes of a provider found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeState {
    /// `None` until the first probe (or with no probes configured).
    pub up: Option<bool>,
    pub probes: u64,
    pub failures: u64,
    /// When the last probe ended (Unix ms), and how long it took.
    pub last_ms: i64,
    pub latency_ms: i64,
    /// Why the last failed probe failed: unavailable, refused, timeout, bad_response.
    pub error: &'static str,
    /// What the provider (or the way to it) said, for the provider agency and operators:
    /// a SOAP fault, an HTTP status, an OAuth2 error code.
    pub detail: String,
}

/// Probes `connector` for `key` of `dataset` and records the outcome in `state`: a record or
/// "no such record" means the provider answers. The answer itself is discarded.
pub async fn probe(
    connector: &Connector,
    dataset: &Dataset,
    key: &str,
    state: &Mutex<ProbeState>,
) -> ProbeState {
    let context = CallContext::health_probe();
    let request_id = format!("health-{}", uuid::Uuid::now_v7());
    let traceparent = TraceContext::default().traceparent();
    let started = std::time::Instant::now();
    let answer = match dataset.key.normalize(key, Date::today().year) {
        Err(e) => Err(("invalid_probe_key", e)),
        Ok(key) => connector
            .fetch(&Call {
                key: &key,
                request_id: &request_id,
                context: &context,
                traceparent: &traceparent,
            })
            .await
            .map(|_| ())
            .map_err(|e| (e.kind(), e.to_string())),
    };
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    state.probes += 1;
    state.last_ms = now_ms();
    state.latency_ms = started.elapsed().as_millis() as i64;
    match answer {
        Ok(()) => {
            state.up = Some(true);
            state.error = "";
            state.detail.clear();
        }
        Err((why, detail)) => {
            state.up = Some(false);
            state.failures += 1;
            state.error = why;
            tracing::warn!(
                connector = connector.name(),
                error = why,
                detail = %detail,
                "health probe failed"
            );
            state.detail = detail;
        }
    }
    state.clone()
}
