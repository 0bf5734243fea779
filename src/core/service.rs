//! The lookup service: the request path both transports share. The order of steps lives in
//! [`Gateway::lookup`], one comment per step saying why it sits there.

use crate::audit::record::{AuditEntry, now_ms};
use crate::audit::writer::{AuditFailure, AuditLog};
use crate::core::model::Model;
use crate::domain::context::{CallContext, RawContext};
use crate::domain::dataset::Dataset;
use crate::domain::date::Date;
use crate::domain::error::{ErrorCode, LookupError};
use crate::domain::record::{Projected, StoredRecord};
pub use crate::layers::authenticate::ClientCertificate;
pub use crate::layers::cache::CacheStatus;
use crate::layers::cache::RecordCache;
use crate::layers::policy::{Consumer, Grant, Mode};
use crate::shared::limiter::{Limiter, QuotaSpec, QuotaState};
use crate::shared::{Refusal, Shared};
use crate::telemetry::metrics::Metrics;
use crate::upstream::connector::{Call, Connector, UpstreamError};
use crate::upstream::guard::{Guard, GuardStatus};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// A call's place in a W3C trace: the trace id (32 hex digits), the gateway's own span id
/// for this call (16 hex digits), and whether the caller samples it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: String,
    pub span_id: String,
    pub sampled: bool,
    /// The caller's span (from its `traceparent`), when it sent one.
    pub parent: Option<String>,
}

impl Default for TraceContext {
    fn default() -> Self {
        TraceContext::continue_from(None)
    }
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

impl TraceContext {
    /// Continues the caller's trace from a `traceparent` value, or starts a new one when
    /// there is none or it is malformed (as W3C Trace Context asks).
    pub fn continue_from(traceparent: Option<&str>) -> TraceContext {
        let parsed = traceparent.and_then(|t| {
            let parts: Vec<&str> = t.trim().split('-').collect();
            let [version, trace, parent, flags] = parts.as_slice() else {
                return None;
            };
            let hex = |s: &str, n: usize| {
                s.len() == n
                    && s.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            };
            let zero = |s: &str| s.bytes().all(|b| b == b'0');
            (hex(version, 2)
                && *version != "ff"
                && hex(trace, 32)
                && !zero(trace)
                && hex(parent, 16)
                && !zero(parent)
                && hex(flags, 2))
            .then(|| {
                let sampled = u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1);
                ((*trace).to_owned(), sampled, Some((*parent).to_owned()))
            })
        });
        let (trace_id, sampled, parent) = parsed.unwrap_or_else(|| (random_hex(16), true, None));
        TraceContext {
            trace_id,
            span_id: random_hex(8),
            sampled,
            parent,
        }
    }

    /// The `traceparent` to send to a provider: this trace, the gateway's span as parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }
}

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
}

/// Which claims match; nothing else about the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub matched: bool,
    pub fields: Vec<(String, bool)>,
}

/// Claims about text match regardless of case and surrounding space ("nguyễn văn an" matches
/// "Nguyễn Văn An"); other values must be equal. A field the record lacks matches nothing.
fn same_value(actual: Option<&serde_json::Value>, claimed: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (actual, claimed) {
        (None, _) => false,
        (Some(Value::String(a)), Value::String(c)) => {
            a.trim().to_lowercase() == c.trim().to_lowercase()
        }
        // Numbers arrive as JSON numbers or, for 64-bit fields, strings.
        (Some(Value::String(a)), Value::Number(n)) => *a == n.to_string(),
        (Some(a), c) => a == c,
    }
}

/// A served lookup: the record projected to what the caller may see.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub dataset: Arc<Dataset>,
    pub key: String,
    pub record: Projected,
    pub cache: CacheStatus,
    /// The tightest quota that applied, for the `RateLimit-*` headers.
    pub quota: Option<QuotaState>,
}

struct Route {
    /// The connector config's fingerprint: a reload keeps this route when it is unchanged.
    fingerprint: String,
    dataset: Arc<Dataset>,
    connector: Connector,
    cache: RecordCache,
    guard: Guard,
    probe: std::sync::Mutex<ProbeState>,
}

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
}

/// The gateway core.
pub struct Gateway {
    config: Arc<Model>,
    routes: HashMap<String, Arc<Route>>,
    /// Each consumer's overall quota, by consumer id.
    consumer_limits: HashMap<String, Limiter>,
    /// Each grant's quota, by the grant's position in the config.
    grant_limits: HashMap<usize, Limiter>,
    /// Quotas shared with other replicas through Redis; the limiters above are then this
    /// replica's share, the fallback while Redis is unreachable.
    shared: Option<Arc<Shared>>,
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
    draining: Arc<std::sync::atomic::AtomicBool>,
    http: reqwest::Client,
}

/// What the request path learned about one call, for its audit record.
struct Facts {
    transport: &'static str,
    request_id: String,
    trace: TraceContext,
    action: &'static str,
    actor: String,
    credential: &'static str,
    context: Option<CallContext>,
    dataset: String,
    subject: String,
    fields: Vec<String>,
    cache: &'static str,
    upstream: Option<(&'static str, i64)>,
    detail: String,
    started: std::time::Instant,
}

/// Facts of a call in progress: if the call is dropped before it ends (the client went
/// away), its record is still written, with the outcome `cancelled`.
struct Pending<'a> {
    audit: &'a AuditLog,
    facts: Option<Facts>,
}

impl Pending<'_> {
    fn facts(&mut self) -> &mut Facts {
        self.facts.as_mut().expect("facts until finished")
    }

    fn finish(mut self) -> Facts {
        self.facts.take().expect("finished once")
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(facts) = self.facts.take() {
            self.audit.record_detached(facts.entry("cancelled"));
        }
    }
}

impl Facts {
    fn new(caller: &Caller, action: &'static str, dataset: &str) -> Facts {
        Facts {
            transport: caller.transport,
            request_id: caller.request_id.clone(),
            trace: caller.trace.clone(),
            action,
            actor: String::new(),
            credential: "",
            context: None,
            // As asked (it may name no dataset), bounded so a caller cannot bloat the trail.
            dataset: dataset.chars().take(100).collect(),
            subject: String::new(),
            fields: Vec::new(),
            cache: "",
            upstream: None,
            detail: String::new(),
            started: std::time::Instant::now(),
        }
    }

    fn entry(self, outcome: &str) -> AuditEntry {
        let c = self.context.as_ref();
        let ctx = |f: fn(&CallContext) -> &str| c.map(f).unwrap_or_default().to_owned();
        AuditEntry {
            time_ms: now_ms(),
            request_id: self.request_id,
            trace_id: self.trace.trace_id,
            transport: self.transport.into(),
            actor: self.actor,
            credential: self.credential.into(),
            officer_id: ctx(CallContext::officer_id),
            agency_code: ctx(CallContext::agency_code),
            procedure_code: ctx(CallContext::procedure_code),
            dossier_id: ctx(CallContext::dossier_id),
            purpose: ctx(CallContext::purpose),
            dataset: self.dataset,
            subject: self.subject,
            action: self.action.into(),
            fields: self.fields,
            outcome: outcome.into(),
            cache: self.cache.into(),
            upstream_status: self.upstream.map(|u| u.0).unwrap_or_default().into(),
            upstream_ms: self.upstream.map(|u| u.1).unwrap_or(-1),
            detail: self.detail,
        }
    }
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Compares digests without an early exit, so timing does not reveal how much matched.
pub(crate) fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A message with every quoted value blanked out: parse errors quote the payload values they
/// choke on, which may be a name or an id, and logs must not carry personal data.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        match c {
            '"' | '`' => {
                if !quoted {
                    out.push_str("\"…\"");
                }
                quoted = !quoted;
            }
            _ if quoted => {}
            _ => out.push(c),
        }
    }
    out
}

/// The span of a call, which every log line of it carries (request id, trace id). When
/// spans are exported it continues the caller's trace, and the call's trace context becomes
/// the exported span's, so audit, logs, providers and the collector agree.
fn call_span(caller: &Caller, facts: &mut Facts) -> tracing::Span {
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "call",
        request_id = %caller.request_id,
        trace_id = tracing::field::Empty,
        transport = caller.transport,
    );
    let t = &caller.trace;
    if let (Some(parent), Ok(trace_id)) = (
        &t.parent,
        opentelemetry::trace::TraceId::from_hex(&t.trace_id),
    ) && let Ok(span_id) = opentelemetry::trace::SpanId::from_hex(parent)
    {
        let flags = if t.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let exported = span.context().span().span_context().clone();
    if exported.is_valid() {
        facts.trace = TraceContext {
            trace_id: exported.trace_id().to_string(),
            span_id: exported.span_id().to_string(),
            sampled: exported.is_sampled(),
            parent: t.parent.clone(),
        };
    }
    span.record("trace_id", facts.trace.trace_id.as_str());
    span
}

/// The `traceparent` for a provider call made in `span`: the exported span's context when
/// spans are exported, else the call's own.
fn exported_parent(span: &tracing::Span, trace: &TraceContext) -> String {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let sc = span.context().span().span_context().clone();
    if sc.is_valid() {
        format!(
            "00-{}-{}-{}",
            sc.trace_id(),
            sc.span_id(),
            if sc.is_sampled() { "01" } else { "00" }
        )
    } else {
        trace.traceparent()
    }
}

fn current_year() -> i32 {
    Date::today().year
}

impl Gateway {
    /// Builds the core from validated config.
    pub fn new(config: Arc<Model>, audit: AuditLog) -> Result<Gateway, String> {
        crate::certs::install_crypto();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        let shared = match &config.settings.redis {
            Some(settings) => Some(Arc::new(Shared::new(settings.clone())?)),
            None => None,
        };
        Gateway::build(
            config,
            Arc::new(audit),
            Arc::default(),
            Arc::default(),
            http,
            &HashMap::new(),
            shared,
        )
    }

    /// What this replica shares with the others through Redis, when configured.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }

    /// The core for a new configuration, sharing this one's audit writer, metrics and
    /// drain flag, and keeping each connector whose configuration did not change (its cache,
    /// guard and probe state go on). Quotas start afresh.
    pub fn next(&self, config: Arc<Model>) -> Result<Gateway, String> {
        Gateway::build(
            config,
            self.audit.clone(),
            self.metrics.clone(),
            self.draining.clone(),
            self.http.clone(),
            &self.routes,
            self.shared.clone(),
        )
    }

    /// Which connectors `next` would keep and which it would build anew.
    pub fn connector_changes(&self, config: &Model) -> (Vec<String>, Vec<String>) {
        let mut kept = Vec::new();
        let mut rebuilt = Vec::new();
        for c in &config.connectors {
            let same = self
                .routes
                .get(c.dataset.as_str())
                .is_some_and(|r| r.fingerprint == c.fingerprint);
            if same {
                kept.push(c.name.clone())
            } else {
                rebuilt.push(c.name.clone())
            }
        }
        (kept, rebuilt)
    }

    fn build(
        config: Arc<Model>,
        audit: Arc<AuditLog>,
        metrics: Arc<Metrics>,
        draining: Arc<std::sync::atomic::AtomicBool>,
        http: reqwest::Client,
        previous: &HashMap<String, Arc<Route>>,
        shared: Option<Arc<Shared>>,
    ) -> Result<Gateway, String> {
        let mut routes = HashMap::new();
        for c in &config.connectors {
            let dataset = config
                .dataset(&c.dataset)
                .ok_or_else(|| format!("unknown dataset {}", c.dataset))?
                .clone();
            if let Some(kept) = previous
                .get(&dataset.name)
                .filter(|r| r.fingerprint == c.fingerprint)
            {
                routes.insert(dataset.name.clone(), kept.clone());
                continue;
            }
            let connector = Connector::new(c.clone(), dataset.clone(), http.clone())
                .map_err(|e| format!("connector {}: {e}", c.name))?;
            let cache = RecordCache::new(c.cache);
            let guard = match &shared {
                Some(shared) => {
                    Guard::new(c.guard.clone(), c.timeout).share_capacity(shared.clone(), &c.name)
                }
                None => Guard::new(c.guard.clone(), c.timeout),
            };
            routes.insert(
                dataset.name.clone(),
                Arc::new(Route {
                    fingerprint: c.fingerprint.clone(),
                    dataset,
                    connector,
                    cache,
                    guard,
                    probe: std::sync::Mutex::new(ProbeState::default()),
                }),
            );
        }
        // With shared quotas, the local limiters hold this replica's share.
        let local = |q: QuotaSpec| match &shared {
            Some(s) => Limiter::new(crate::shared::share(q, s.settings().replicas)),
            None => Limiter::new(q),
        };
        let consumer_limits = config
            .consumers
            .iter()
            .filter_map(|c| Some((c.id.clone(), local(c.quota?))))
            .collect();
        let grant_limits = config
            .grants
            .iter()
            .enumerate()
            .filter_map(|(i, g)| Some((i, local(g.quota?))))
            .collect();
        Ok(Gateway {
            config,
            routes,
            consumer_limits,
            grant_limits,
            shared,
            audit,
            metrics,
            draining,
            http,
        })
    }

    pub fn config(&self) -> &Model {
        &self.config
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The audit writer's handle, shared by every version of the core.
    pub fn audit_handle(&self) -> Arc<AuditLog> {
        self.audit.clone()
    }

    /// Each connector's guard: (connector, dataset, status, calls, attempts, retries).
    pub fn guards(&self) -> Vec<(String, String, GuardStatus, [u64; 5])> {
        let mut out: Vec<_> = self
            .routes
            .values()
            .map(|r| {
                let s = r.guard.stats();
                let n =
                    |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                (
                    r.connector.name().to_owned(),
                    r.dataset.name.clone(),
                    r.guard.status(),
                    [
                        n(&s.calls),
                        n(&s.attempts),
                        n(&s.retries),
                        n(&s.rejected_open),
                        n(&s.rejected_busy),
                    ],
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// From now on readiness is false: the gateway is shutting down.
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Probes one provider now, outside the cache and the guard: a record or "no such
    /// record" means it answers. The answer itself is discarded.
    pub async fn probe(&self, dataset: &str, key: &str) -> ProbeState {
        let Some(route) = self.routes.get(dataset) else {
            return ProbeState::default();
        };
        let context = CallContext::health_probe();
        let request_id = format!("health-{}", uuid::Uuid::now_v7());
        let traceparent = TraceContext::default().traceparent();
        let started = std::time::Instant::now();
        let answer = match route.dataset.key.normalize(key, current_year()) {
            Err(_) => Err("invalid_probe_key"),
            Ok(key) => route
                .connector
                .fetch(&Call {
                    key: &key,
                    request_id: &request_id,
                    context: &context,
                    traceparent: &traceparent,
                })
                .await
                .map(|_| ())
                .map_err(|e| e.kind()),
        };
        let mut state = route.probe.lock().unwrap_or_else(|p| p.into_inner());
        state.probes += 1;
        state.last_ms = now_ms();
        state.latency_ms = started.elapsed().as_millis() as i64;
        match answer {
            Ok(()) => {
                state.up = Some(true);
                state.error = "";
            }
            Err(why) => {
                state.up = Some(false);
                state.failures += 1;
                state.error = why;
                tracing::warn!(
                    connector = route.connector.name(),
                    error = why,
                    "health probe failed"
                );
            }
        }
        state.clone()
    }

    /// Each probed connector's state: (connector, state).
    pub fn probes(&self) -> Vec<(String, ProbeState)> {
        let mut out: Vec<_> = self
            .config
            .connectors
            .iter()
            .filter(|c| c.health.is_some())
            .filter_map(|c| {
                let route = self.routes.get(c.dataset.as_str())?;
                let state = route
                    .probe
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                Some((c.name.clone(), state))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Connectors marked critical whose breaker is open or whose last probe failed (the
    /// provider is hard down).
    pub fn critical_down(&self) -> Vec<String> {
        let mut down: Vec<String> = self
            .config
            .connectors
            .iter()
            .filter(|c| c.critical)
            .filter_map(|c| {
                let route = self.routes.get(c.dataset.as_str())?;
                let probe_down =
                    route.probe.lock().unwrap_or_else(|p| p.into_inner()).up == Some(false);
                (route.guard.status().breaker == crate::upstream::guard::BreakerState::Open
                    || probe_down)
                    .then(|| c.name.clone())
            })
            .collect();
        down.sort();
        down
    }

    /// Everything `/metrics` shows: the request path's series, and the live state of the
    /// guards, caches and audit writer.
    pub async fn render_metrics(&self) -> String {
        for r in self.routes.values() {
            r.cache.settle().await;
        }
        use crate::telemetry::metrics::{label_text, render_counter, render_gauge};
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::with_capacity(16 * 1024);
        self.metrics.render(&mut out);
        if let Some(shared) = &self.shared {
            shared.render(&mut out);
        }
        let guards = self.guards();
        let by = |f: &dyn Fn(&GuardStatus, &[u64; 5]) -> f64| -> Vec<(String, f64)> {
            guards
                .iter()
                .map(|(name, _, s, c)| {
                    (
                        label_text(&["connector"], std::slice::from_ref(name)),
                        f(s, c),
                    )
                })
                .collect()
        };
        render_gauge(
            &mut out,
            "lienthong_breaker_state",
            "Circuit breaker per connector: 0 closed, 1 half open, 2 open.",
            &by(&|s, _| match s.breaker {
                crate::upstream::guard::BreakerState::Closed => 0.0,
                crate::upstream::guard::BreakerState::HalfOpen => 1.0,
                crate::upstream::guard::BreakerState::Open => 2.0,
            }),
        );
        render_gauge(
            &mut out,
            "lienthong_upstream_in_flight",
            "Calls at the provider now, per connector.",
            &by(&|s, _| s.in_flight as f64),
        );
        render_gauge(
            &mut out,
            "lienthong_upstream_waiting",
            "Calls waiting for provider capacity or an in-flight slot, per connector.",
            &by(&|s, _| s.waiting as f64),
        );
        let probes = self.probes();
        render_gauge(
            &mut out,
            "lienthong_connector_up",
            "Last active health probe per probed connector: 1 answered, 0 failed.",
            &probes
                .iter()
                .filter_map(|(name, p)| {
                    Some((
                        label_text(&["connector"], std::slice::from_ref(name)),
                        if p.up? { 1.0 } else { 0.0 },
                    ))
                })
                .collect::<Vec<_>>(),
        );
        render_gauge(
            &mut out,
            "lienthong_connector_probe_seconds",
            "How long the last active health probe took, per probed connector.",
            &probes
                .iter()
                .filter(|(_, p)| p.up.is_some())
                .map(|(name, p)| {
                    (
                        label_text(&["connector"], std::slice::from_ref(name)),
                        p.latency_ms as f64 / 1000.0,
                    )
                })
                .collect::<Vec<_>>(),
        );
        let mut rejected = Vec::new();
        let mut retries = Vec::new();
        for (name, _, _, [_, _, r, open, busy]) in &guards {
            for (reason, n) in [("breaker_open", open), ("capacity", busy)] {
                rejected.push((
                    label_text(&["connector", "reason"], &[name.clone(), reason.to_owned()]),
                    *n,
                ));
            }
            retries.push((label_text(&["connector"], std::slice::from_ref(name)), *r));
        }
        render_counter(
            &mut out,
            "lienthong_upstream_rejected_total",
            "Provider calls refused by the guard, by reason.",
            &rejected,
        );
        render_counter(
            &mut out,
            "lienthong_upstream_retries_total",
            "Retries made by the guard, per connector.",
            &retries,
        );
        let mut entries: Vec<(String, f64)> = self
            .routes
            .values()
            .map(|r| {
                (
                    label_text(&["dataset"], &[r.dataset.name.to_owned()]),
                    r.cache.len() as f64,
                )
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        render_gauge(
            &mut out,
            "lienthong_cache_entries",
            "Records held in the cache, per dataset.",
            &entries,
        );
        let w = self.audit.stats();
        render_gauge(
            &mut out,
            "lienthong_audit_backlog",
            "Audit records waiting for the writer.",
            &[(String::new(), w.backlog.load(Relaxed) as f64)],
        );
        for (name, help, v) in [
            (
                "lienthong_audit_records_total",
                "Audit records committed.",
                &w.records,
            ),
            (
                "lienthong_audit_commits_total",
                "Audit transactions committed.",
                &w.commits,
            ),
            (
                "lienthong_audit_failures_total",
                "Audit commits that failed.",
                &w.failures,
            ),
            (
                "lienthong_audit_checkpoints_total",
                "Chain heads signed.",
                &w.checkpoints,
            ),
        ] {
            render_counter(&mut out, name, help, &[(String::new(), v.load(Relaxed))]);
        }
        for (name, help, h) in [
            (
                "lienthong_audit_commit_records",
                "Records per audit commit (group commit).",
                &w.batch_sizes,
            ),
            (
                "lienthong_audit_commit_duration_seconds",
                "Time an audit commit takes.",
                &w.commit_seconds,
            ),
        ] {
            use std::fmt::Write;
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            h.render(&mut out, name, "");
        }
        out
    }

    /// Forgets cached records: one key of a dataset, or all of it. Returns how many records
    /// the dataset held before.
    pub async fn purge(&self, dataset: &str, key: Option<&str>) -> Result<u64, LookupError> {
        let route = self.routes.get(dataset).ok_or_else(|| {
            LookupError::new(ErrorCode::UnknownDataset, format!("no dataset {dataset:?}"))
        })?;
        route.cache.settle().await;
        let before = route.cache.len();
        match key {
            None => route.cache.purge_all(),
            Some(key) => {
                let key = route
                    .dataset
                    .key
                    .normalize(key, current_year())
                    .map_err(|rule| LookupError::new(ErrorCode::InvalidKey, rule))?;
                route.cache.purge_key(&key).await;
            }
        }
        Ok(before)
    }

    /// Step 1, audit: records the call's facts and outcome, and lets the result leave only
    /// once the record is committed (in sync durability). When the record cannot be kept the
    /// caller gets an error and no data.
    async fn audited<T>(
        &self,
        facts: Facts,
        result: Result<T, LookupError>,
    ) -> Result<T, LookupError> {
        let outcome = match &result {
            Ok(_) => "served",
            Err(e) => e.code.as_str(),
        };
        // Metric labels stay bounded: a dataset from config (else "unknown"), a consumer
        // from config (else "anonymous").
        let dataset = match self.routes.get(facts.dataset.as_str()) {
            Some(r) => r.dataset.name.as_str(),
            None if facts.dataset.is_empty() => "none",
            None => "unknown",
        };
        let consumer = if facts.actor.is_empty() {
            "anonymous".to_owned()
        } else {
            facts.actor.clone()
        };
        let (transport, started) = (facts.transport, facts.started);
        let answer = self.commit_audit(facts.entry(outcome), result).await;
        let outcome = match &answer {
            Ok(_) => "served",
            Err(e) => e.code.as_str(),
        };
        let labels = [dataset, consumer.as_str(), transport, outcome];
        self.metrics
            .requests
            .with(&labels)
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.metrics
            .request_seconds
            .with(&labels)
            .observe_duration(started.elapsed());
        answer
    }

    async fn commit_audit<T>(
        &self,
        entry: AuditEntry,
        result: Result<T, LookupError>,
    ) -> Result<T, LookupError> {
        match self.audit.record(entry).await {
            Ok(()) => result,
            Err(AuditFailure::Full) => Err(LookupError {
                retry_after: Some(Duration::from_secs(1)),
                ..LookupError::new(
                    ErrorCode::Overloaded,
                    "the audit trail is saturated, so no data was released; retry shortly",
                )
            }),
            Err(_) if self.audit.fail_open() => result,
            Err(e) => {
                tracing::error!(error = %e, "audit record not kept; call refused");
                Err(LookupError::new(
                    ErrorCode::AuditUnavailable,
                    "the audit trail cannot record this call, so no data was released",
                ))
            }
        }
    }

    /// Records a call refused before the core could run it (a malformed body), and returns
    /// the error to send (or the audit's own error when the record cannot be kept).
    pub async fn refuse(
        &self,
        caller: &Caller,
        action: &'static str,
        error: LookupError,
    ) -> LookupError {
        let mut facts = Facts::new(caller, action, "");
        if let Ok((consumer, credential)) = self.authenticate(caller) {
            facts.actor = consumer.id.clone();
            facts.credential = credential;
        }
        match self.audited::<()>(facts, Err(error)).await {
            Err(e) => e,
            Ok(()) => unreachable!("an error stays an error"),
        }
    }

    /// The request path, one step after another; the upstream guard (step 7) is still a
    /// timeout per connector.
    pub async fn lookup(
        &self,
        caller: &Caller,
        request: LookupRequest,
    ) -> Result<Lookup, LookupError> {
        // 1. audit — outermost, so every outcome (denied, throttled, absent, failed, served)
        //    leaves exactly one record, committed before the answer leaves.
        let _in_flight = self.metrics.enter();
        let mut pending = Pending {
            audit: &self.audit,
            facts: Some(Facts::new(caller, "fetch", &request.dataset)),
        };
        let span = call_span(caller, pending.facts());
        let result = self
            .lookup_steps(caller, request, pending.facts())
            .instrument(span)
            .await;
        let mut facts = pending.finish();
        if let Ok(found) = &result {
            facts.fields = found.record.names().map(str::to_owned).collect();
        }
        self.audited(facts, result).await
    }

    async fn lookup_steps(
        &self,
        caller: &Caller,
        request: LookupRequest,
        facts: &mut Facts,
    ) -> Result<Lookup, LookupError> {
        // 2. authenticate — nothing is validated or looked up for an unknown caller.
        let (consumer, credential) = self.authenticate(caller)?;
        facts.actor = consumer.id.clone();
        facts.credential = credential;
        // 3. validate — dataset, key, context and fields, before any upstream call.
        let (route, key, context) = self.validate(
            &request.dataset,
            &request.key,
            &request.context,
            &request.fields,
        )?;
        facts.subject = self.audit.subject(&route.dataset.name, &key);
        facts.context = Some(context.clone());
        // 4. authorize — the grant decides which fields may leave.
        let (grant_index, grant, fields) = self.authorize(
            consumer,
            &route.dataset.name,
            Mode::Fetch,
            &context,
            &request.fields,
        )?;
        if request.bypass_cache && !grant.allow_cache_bypass {
            return Err(LookupError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "the grant on {} does not allow bypassing the cache (Cache-Control: no-cache)",
                    route.dataset.name
                ),
            ));
        }
        // 5. rate limit — before the cache, so cached answers count against the quota too.
        let quota = self
            .admit(consumer, grant_index, &route.dataset.name)
            .await?;
        // 6-8. cache, upstream guard, connector. The cache holds full records, so projection
        // to this caller's grant happens after it, on every response.
        let (record, cache) = self
            .fetch(
                route,
                &key,
                &context,
                caller,
                (request.bypass_cache, request.deadline),
                facts,
            )
            .await?;
        Ok(Lookup {
            dataset: route.dataset.clone(),
            key,
            record: record.project(&fields),
            cache,
            quota,
        })
    }

    /// Checks claimed values against a record and says which match, disclosing nothing else.
    /// Same path as a lookup, under the grant's `verify` mode; claims name granted fields.
    pub async fn verify(
        &self,
        caller: &Caller,
        request: VerifyRequest,
    ) -> Result<Verification, LookupError> {
        let _in_flight = self.metrics.enter();
        let mut pending = Pending {
            audit: &self.audit,
            facts: Some(Facts::new(caller, "verify", &request.dataset)),
        };
        let span = call_span(caller, pending.facts());
        let result = self
            .verify_steps(caller, request, pending.facts())
            .instrument(span)
            .await;
        let mut facts = pending.finish();
        if let Ok(v) = &result {
            facts.detail = if v.matched { "match" } else { "no match" }.into();
        }
        self.audited(facts, result).await
    }

    async fn verify_steps(
        &self,
        caller: &Caller,
        request: VerifyRequest,
        facts: &mut Facts,
    ) -> Result<Verification, LookupError> {
        let (consumer, credential) = self.authenticate(caller)?;
        facts.actor = consumer.id.clone();
        facts.credential = credential;
        if request.claims.is_empty() {
            return Err(LookupError::new(
                ErrorCode::InvalidRequest,
                "claims must name at least one field",
            ));
        }
        let fields: Vec<String> = request.claims.keys().cloned().collect();
        let (route, key, context) =
            self.validate(&request.dataset, &request.key, &request.context, &fields)?;
        facts.subject = self.audit.subject(&route.dataset.name, &key);
        facts.context = Some(context.clone());
        facts.fields = fields.clone();
        if let Some((f, _)) = request
            .claims
            .iter()
            .find(|(_, v)| v.is_object() || v.is_array())
        {
            return Err(LookupError::new(
                ErrorCode::InvalidRequest,
                format!("claim {f:?} must be a single value, not a structure"),
            ));
        }
        let (grant_index, _, _) = self.authorize(
            consumer,
            &route.dataset.name,
            Mode::Verify,
            &context,
            &fields,
        )?;
        self.admit(consumer, grant_index, &route.dataset.name)
            .await?;
        let (record, _) = self
            .fetch(route, &key, &context, caller, (false, None), facts)
            .await?;
        let fields: Vec<(String, bool)> = request
            .claims
            .iter()
            .map(|(f, claimed)| (f.clone(), same_value(record.get(f).as_ref(), claimed)))
            .collect();
        Ok(Verification {
            matched: fields.iter().all(|(_, m)| *m),
            fields,
        })
    }

    /// Steps 6-8: the cache (single-flight, stale-if-error), then the upstream guard
    /// (breaker, in-flight cap, capacity, timeouts, retries) and the connector. The record is
    /// the full canonical one. What the provider answered, and how fast, goes into the call's
    /// facts.
    async fn fetch(
        &self,
        route: &Route,
        key: &str,
        context: &CallContext,
        caller: &Caller,
        (bypass_cache, deadline): (bool, Option<tokio::time::Instant>),
        facts: &mut Facts,
    ) -> Result<(Arc<StoredRecord>, CacheStatus), LookupError> {
        let trace = facts.trace.clone();
        let connector = route.connector.name();
        let upstream = std::sync::Mutex::new(None);
        let served = route
            .cache
            .get_or_fetch(key, bypass_cache, || async {
                let started = std::time::Instant::now();
                let answer = route
                    .guard
                    .call(deadline, || {
                        // Each attempt is a span of its own; the provider hears it as parent.
                        let span = tracing::info_span!("connector", connector);
                        let traceparent = exported_parent(&span, &trace);
                        let request_id = caller.request_id.as_str();
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
                self.metrics
                    .upstream
                    .with(&[connector, status])
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.metrics
                    .upstream_seconds
                    .with(&[connector])
                    .observe_duration(took);
                *upstream.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((status, took.as_millis() as i64));
                answer
            })
            .instrument(tracing::info_span!(
                "cache",
                dataset = route.dataset.name.as_str()
            ))
            .await;
        facts.upstream = upstream.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Ok((_, status)) = &served {
            facts.cache = status.as_str();
            self.metrics
                .cache
                .with(&[route.dataset.name.as_str(), status.as_str()])
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        match served {
            Ok((Some(record), status)) => Ok((record, status)),
            Ok((None, _)) => Err(LookupError::new(
                ErrorCode::NotFound,
                format!("no {} record has this key", route.dataset.name),
            )),
            Err(e) => Err(self.upstream_failure(route, &e)),
        }
    }

    /// Looks up many items under one context, `concurrency` at a time, yielding results in
    /// request order; each item is a lookup with its own audit record. Call
    /// [`Gateway::admit_batch`] first.
    pub fn batch<'a>(
        &'a self,
        caller: &'a Caller,
        context: RawContext,
        items: Vec<BatchItem>,
    ) -> impl Stream<Item = BatchOutcome> + 'a {
        futures::stream::iter(items.into_iter().enumerate())
            .map(move |(index, item)| {
                let request = LookupRequest {
                    dataset: item.dataset.clone(),
                    key: item.key.clone(),
                    fields: item.fields,
                    context: context.clone(),
                    bypass_cache: false,
                    deadline: None,
                };
                async move {
                    let result = self.lookup(caller, request).await;
                    BatchOutcome {
                        index,
                        dataset: item.dataset,
                        key: item.key,
                        result,
                    }
                }
            })
            .buffered(self.config.settings.batch_concurrency)
    }

    /// The caller's grants, as discovery shows them: (consumer id, grants).
    pub fn capabilities(&self, caller: &Caller) -> Result<(&Consumer, Vec<&Grant>), LookupError> {
        let (consumer, _) = self.authenticate(caller)?;
        let grants = self
            .config
            .grants
            .iter()
            .filter(|g| g.consumer == consumer.id && !g.disabled)
            .filter(|g| self.config.dataset(&g.dataset).is_some_and(|d| !d.disabled))
            .collect();
        Ok((consumer, grants))
    }

    /// Whether a batch of `len` items may start: failures here fail the whole call (no
    /// per-item outcomes for an unknown caller or an oversized batch), with one audit record.
    pub async fn admit_batch(&self, caller: &Caller, len: usize) -> Result<(), LookupError> {
        let admitted = (|| {
            if len > self.config.settings.max_batch_items {
                return Err(LookupError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "a batch holds at most {} items, this one {len}",
                        self.config.settings.max_batch_items
                    ),
                ));
            }
            self.authenticate(caller).map(|_| ())
        })();
        match admitted {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut facts = Facts::new(caller, "batch", "");
                facts.detail = format!("{len} items");
                self.audited(facts, Err(e)).await
            }
        }
    }

    /// Certificate or API key → consumer. A certificate the CA signed but no consumer claims
    /// does not authenticate by itself; with both credentials they must name the same consumer.
    fn authenticate(&self, caller: &Caller) -> Result<(&Consumer, &'static str), LookupError> {
        let unauthenticated = |m: String| LookupError::new(ErrorCode::Unauthenticated, m);
        let by_certificate = caller.certificate.as_deref().map(|cert| {
            let owner = self.config.consumers.iter().find(|c| {
                c.certificate_names
                    .iter()
                    .any(|n| cert.names.iter().any(|m| m == n))
            });
            (cert, owner)
        });
        let by_key = caller
            .api_key
            .as_deref()
            .map(|key| self.consumer_for_key(key));
        match (by_certificate, by_key) {
            (None, None) => Err(unauthenticated(
                "no credentials: present a client certificate or send Authorization: Bearer <api key>"
                    .into(),
            )),
            (_, Some(None)) => Err(unauthenticated("the API key is not recognised".into())),
            (Some((_, Some(a))), Some(Some(b))) if a.id != b.id => Err(unauthenticated(
                "the client certificate and the API key belong to different consumers".into(),
            )),
            (Some((_, Some(consumer))), _) => Ok((consumer, "certificate")),
            (_, Some(Some(consumer))) => Ok((consumer, "api_key")),
            (Some((cert, None)), None) => Err(unauthenticated(format!(
                "the client certificate ({}) is not registered to any consumer",
                cert.names.join(", ")
            ))),
        }
    }

    fn consumer_for_key(&self, key: &str) -> Option<&Consumer> {
        let digest = sha256(key);
        // Check every key of every consumer: the time taken does not depend on which matched.
        let mut found = None;
        for consumer in &self.config.consumers {
            for hash in &consumer.key_hashes {
                if same_digest(hash, &digest) {
                    found = Some(consumer);
                }
            }
        }
        found
    }

    fn validate(
        &self,
        dataset: &str,
        key: &str,
        context: &RawContext,
        fields: &[String],
    ) -> Result<(&Route, String, CallContext), LookupError> {
        let route = self.routes.get(dataset).ok_or_else(|| {
            LookupError::new(
                ErrorCode::UnknownDataset,
                format!("no dataset named {dataset:?}"),
            )
        })?;
        // Whether it is switched off comes from this version's config: a route (and its
        // cache) outlives a switch.
        if self.config.dataset(dataset).is_some_and(|d| d.disabled) {
            return Err(LookupError::new(
                ErrorCode::UnknownDataset,
                format!("dataset {dataset} is switched off by its owner"),
            ));
        }
        let key = route
            .dataset
            .key
            .normalize(key, current_year())
            .map_err(|rule| LookupError::new(ErrorCode::InvalidKey, rule))?;
        let context = self
            .config
            .context_rules
            .validate(context)
            .map_err(|rule| LookupError::new(ErrorCode::InvalidContext, rule))?;
        if let Some(f) = fields.iter().find(|f| !route.dataset.has_field(f)) {
            return Err(LookupError::new(
                ErrorCode::InvalidRequest,
                format!("{} has no field {f:?}", route.dataset.name),
            ));
        }
        Ok((route, key, context))
    }

    /// Counts the call against the grant's quota, then the consumer's; the state of the
    /// tighter one goes with the answer. A refusal by the grant's quota does not use up the
    /// consumer's.
    async fn admit(
        &self,
        consumer: &Consumer,
        grant_index: usize,
        dataset: &str,
    ) -> Result<Option<QuotaState>, LookupError> {
        let refused = |refusal: Refusal, whose: String| match refusal {
            Refusal::Over(over) => {
                self.metrics
                    .rate_limited
                    .with(&[consumer.id.as_str(), dataset])
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let retry = over.retry_after.max(Duration::from_millis(1));
                LookupError {
                    retry_after: Some(retry),
                    quota: Some(over.state),
                    ..LookupError::new(
                        ErrorCode::RateLimited,
                        format!("{whose} is used up; retry in {} ms", retry.as_millis()),
                    )
                }
            }
            Refusal::Unavailable => LookupError {
                retry_after: Some(Duration::from_secs(1)),
                ..LookupError::new(
                    ErrorCode::Overloaded,
                    format!("{whose} cannot be checked: the shared quota store is unreachable"),
                )
            },
        };
        let grant = self
            .config
            .grants
            .get(grant_index)
            .and_then(|g| Some((g.quota?, self.grant_limits.get(&grant_index)?)));
        let by_grant = match grant {
            None => None,
            Some((spec, local)) => {
                let name = format!("grant:{}:{dataset}:{grant_index}", consumer.id);
                Some(
                    self.check_quota(&name, spec, local)
                        .await
                        .map_err(|r| refused(r, format!("the quota of {spec} on {dataset}")))?,
                )
            }
        };
        let by_consumer = match consumer
            .quota
            .and_then(|q| Some((q, self.consumer_limits.get(&consumer.id)?)))
        {
            None => None,
            Some((spec, local)) => {
                let name = format!("consumer:{}", consumer.id);
                Some(
                    self.check_quota(&name, spec, local)
                        .await
                        .map_err(|r| refused(r, format!("the consumer's quota of {spec}")))?,
                )
            }
        };
        Ok(QuotaState::tighter(by_grant, by_consumer))
    }

    /// One quota: shared through Redis when configured, else this process's limiter.
    async fn check_quota(
        &self,
        name: &str,
        spec: QuotaSpec,
        local: &Limiter,
    ) -> Result<QuotaState, Refusal> {
        match &self.shared {
            Some(shared) => shared.check(&shared.key(name, spec), spec, local).await,
            None => local.check().map_err(Refusal::Over),
        }
    }

    /// The grant that admits this call (its position in the config, itself), and the fields
    /// it lets leave.
    pub fn authorize(
        &self,
        consumer: &Consumer,
        dataset: &str,
        mode: Mode,
        context: &CallContext,
        asked: &[String],
    ) -> Result<(usize, &Grant, Vec<String>), LookupError> {
        let grants: Vec<_> = self
            .config
            .grants
            .iter()
            .enumerate()
            .filter(|(_, g)| g.consumer == consumer.id && g.dataset == dataset)
            .collect();
        if grants.is_empty() {
            return Err(LookupError::new(
                ErrorCode::PermissionDenied,
                format!("no grant on {dataset} for this consumer"),
            ));
        }
        let grants: Vec<_> = grants.into_iter().filter(|(_, g)| !g.disabled).collect();
        if grants.is_empty() {
            return Err(LookupError::new(
                ErrorCode::PermissionDenied,
                format!("the grant on {dataset} is switched off"),
            ));
        }
        let today = Date::today();
        let grants: Vec<_> = grants
            .into_iter()
            .filter(|(_, g)| g.in_force(today))
            .collect();
        if grants.is_empty() {
            return Err(LookupError::new(
                ErrorCode::PermissionDenied,
                format!("the grant on {dataset} is not in force today"),
            ));
        }
        let grants: Vec<_> = grants
            .into_iter()
            .filter(|(_, g)| g.modes.contains(&mode))
            .collect();
        if grants.is_empty() {
            return Err(LookupError::new(
                ErrorCode::PermissionDenied,
                format!("mode {} is not granted on {dataset}", mode.as_str()),
            ));
        }
        let &(index, grant) = grants
            .iter()
            .find(|(_, g)| {
                g.procedures
                    .iter()
                    .any(|p| p.matches(context.procedure_code()))
            })
            .ok_or_else(|| {
                LookupError::new(
                    ErrorCode::PermissionDenied,
                    format!(
                        "procedure {} is not granted on {dataset}",
                        context.procedure_code()
                    ),
                )
            })?;
        if asked.is_empty() {
            return Ok((index, grant, grant.fields.clone()));
        }
        if let Some(f) = asked.iter().find(|f| !grant.fields.contains(f)) {
            return Err(LookupError::new(
                ErrorCode::PermissionDenied,
                format!("field {f:?} of {dataset} is not granted"),
            ));
        }
        Ok((index, grant, asked.to_vec()))
    }

    fn upstream_failure(&self, route: &Route, e: &UpstreamError) -> LookupError {
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn claims_match_text_loosely_and_other_values_exactly() {
        let same = |a: serde_json::Value, c: serde_json::Value| super::same_value(Some(&a), &c);
        assert!(same(json!("Nguyễn Văn An"), json!("  nguyễn văn an ")));
        assert!(
            !same(json!("Nguyễn Văn An"), json!("Nguyen Van An")),
            "diacritics matter"
        );
        assert!(
            same(json!("12500000000"), json!(12_500_000_000u64)),
            "int64 fields are strings"
        );
        assert!(!same(json!("12500000000"), json!(12_500_000_001u64)));
        assert!(same(json!(true), json!(true)) && !same(json!(true), json!("true")));
        assert!(
            !super::same_value(None, &json!("x")),
            "an absent field matches nothing"
        );
    }

    #[test]
    fn redaction_blanks_quoted_values() {
        assert_eq!(
            super::redact(r#"invalid type: string "Nguyễn Văn An", expected i64 at `full_name`"#),
            r#"invalid type: string "…", expected i64 at "…""#
        );
        assert_eq!(
            super::redact("provider unavailable: 503"),
            "provider unavailable: 503"
        );
    }

    #[test]
    fn current_year_is_plausible() {
        let y = super::current_year();
        assert!((2025..2200).contains(&y), "{y}");
    }
}
