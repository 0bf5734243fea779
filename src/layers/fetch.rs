//! Fetching a record: the cache first, so that hits spend no provider capacity, then the
//! upstream guard and the connector. Projection to the caller's fields happens after, on
//! every answer, so one cached record serves many grants without leaking across them.

use super::cache::{CacheStatus, RecordCache};
use crate::domain::context::CallContext;
use crate::domain::dataset::Dataset;
use crate::domain::error::{ErrorCode, LookupError};
use crate::domain::record::StoredRecord;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::redact;
use crate::telemetry::trace::{TraceContext, exported_parent};
use crate::upstream::connector::{Call, Connector, UpstreamError};
use crate::upstream::guard::Guard;
use crate::upstream::probe::ProbeState;
use std::sync::Arc;
use tracing::Instrument;

/// One dataset's way to its provider: its cache, its guard and its connector, kept across
/// reloads while the connector's configuration is unchanged.
pub struct Route {
    /// The connector config's fingerprint: a reload keeps this route when it is unchanged.
    pub fingerprint: String,
    pub dataset: Arc<Dataset>,
    pub connector: Connector,
    pub cache: RecordCache,
    pub guard: Guard,
    pub probe: std::sync::Mutex<ProbeState>,
}

/// What a fetch found, and what the provider answered and how fast (`None` when the cache
/// answered alone), for the call's audit record.
pub struct Fetched {
    pub result: Result<(Arc<StoredRecord>, CacheStatus), LookupError>,
    pub upstream: Option<(&'static str, i64)>,
}

/// The cache (single-flight, stale-if-error), then the upstream guard (breaker, in-flight
/// cap, capacity, timeouts, retries) and the connector. The record is the full canonical
/// one; what the provider answered, and how fast, comes back beside it.
pub async fn fetch(
    route: &Route,
    key: &str,
    context: &CallContext,
    (request_id, trace): (&str, &TraceContext),
    (bypass_cache, deadline): (bool, Option<tokio::time::Instant>),
    metrics: &Metrics,
) -> Fetched {
    let connector = route.connector.name();
    let upstream = std::sync::Mutex::new(None);
    // The provider call is boxed: its future (an HTTP or gRPC client's) is large, and is
    // only made on a miss; inline, every call's future would carry its size.
    let served = route
        .cache
        .get_or_fetch(key, bypass_cache, || {
            Box::pin(async {
                let started = std::time::Instant::now();
                let answer = route
                    .guard
                    .call(deadline, || {
                        // Each attempt is a span of its own; the provider hears it as parent.
                        let span = tracing::info_span!("connector", connector);
                        let traceparent = exported_parent(&span, trace);
                        async move {
                            let call = Call {
                                key,
                                request_id,
                                context,
                                traceparent: &traceparent,
                            };
                            route.connector.fetch(&call).await
                        }
                        .instrument(span)
                    })
                    .instrument(tracing::info_span!("upstream_guard", connector))
                    .await;
                let status = match &answer {
                    Ok(Some(_)) => "ok",
                    Ok(None) => "not_found",
                    Err(e) => e.kind(),
                };
                let took = started.elapsed();
                let connector = route.connector.name();
                metrics
                    .upstream
                    .with(&[connector, status])
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics
                    .upstream_seconds
                    .with(&[connector])
                    .observe_duration(took);
                *upstream.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((status, took.as_millis() as i64));
                answer
            })
        })
        .instrument(tracing::info_span!(
            "cache",
            dataset = route.dataset.name.as_str()
        ))
        .await;
    let upstream = upstream.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Ok((_, status)) = &served {
        metrics
            .cache
            .with(&[route.dataset.name.as_str(), status.as_str()])
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let result = match served {
        Ok((Some(record), status)) => Ok((record, status)),
        Ok((None, _)) => Err(LookupError::new(
            ErrorCode::NotFound,
            format!("no {} record has this key", route.dataset.name),
        )),
        Err(e) => Err(upstream_failure(route, &e)),
    };
    Fetched { result, upstream }
}

/// What the caller hears of a provider failure: its kind, never the provider's own words
/// (those go to the logs, quoted values blanked).
fn upstream_failure(route: &Route, e: &UpstreamError) -> LookupError {
    let dataset = &route.dataset.name;
    tracing::warn!(
        connector = route.connector.name(),
        error = %redact(&e.to_string()),
        "upstream call failed"
    );
    match e {
        UpstreamError::Unavailable(_) => LookupError::new(
            ErrorCode::UpstreamUnavailable,
            format!("the provider of {dataset} is unavailable"),
        ),
        UpstreamError::Refused(_) => LookupError::new(
            ErrorCode::UpstreamUnavailable,
            format!(
                "the provider of {dataset} refused the gateway's call (see the gateway's logs)"
            ),
        ),
        UpstreamError::Timeout(_) => LookupError::new(
            ErrorCode::UpstreamTimeout,
            format!("the provider of {dataset} did not answer in time"),
        ),
        UpstreamError::BadResponse(_) => LookupError::new(
            ErrorCode::UpstreamBadResponse,
            format!("the provider of {dataset} sent an unusable response"),
        ),
    }
}
