//! The door: one transport tier ahead of the core on both listeners. It decides, before a
//! caller's credentials are looked at, what one source (an IPv4 address, an IPv6 /64) may
//! do: how many connections it holds, how many requests it sends, and how long it is shut
//! out after failing to authenticate; it bounds what every connection may cost (timeouts,
//! header and body sizes, HTTP/2 limits) and sheds load it cannot carry. What it refuses
//! before a caller is identified is summed per (source, reason) into one audit record per
//! window (`ledger`), so a flood cannot grow the trail or the logs request by request.
//!
//! Settings: `[door]` (read at start). What a caller sees: docs/operations.md.

mod accept;
mod body;
mod ledger;
mod service;
mod sources;

pub use accept::{Descriptors, raise_descriptor_limit, serve};
pub use body::{BodyFault, FaultCell};
pub use ledger::DOOR_SUMMARY;
pub use service::REQUEST_TIMEOUT_HEADER;
pub use sources::{Cidr, SourceKey};

use crate::audit::writer::AuditLog;
use crate::config::Errors;
use crate::config::raw::RawDoor;
use crate::shared::limiter::QuotaSpec;
use crate::telemetry::metrics::Metrics;
use ledger::Ledger;
use sources::Sources;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Why the door refused a request or a connection (the `reason` of its metric and of its
/// summary records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The core or the admin listener found no consumer or admin for the credentials.
    Unauthenticated,
    /// Over the source's request budget.
    SourceBudget,
    /// In a back-off after too many failed authentications.
    AuthBackoff,
    /// Over the per-source connection cap (closed at accept).
    SourceConnections,
    /// Over the listener's connection cap (closed at accept).
    Connections,
    /// Over the listener's in-flight limit (shed).
    Overloaded,
    /// No complete request head within the header-read timeout (closed).
    HeaderTimeout,
    /// A request head over the header limits.
    HeadersTooLarge,
    /// The TLS handshake failed or timed out (closed).
    TlsHandshake,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Unauthenticated,
        Reason::SourceBudget,
        Reason::AuthBackoff,
        Reason::SourceConnections,
        Reason::Connections,
        Reason::Overloaded,
        Reason::HeaderTimeout,
        Reason::HeadersTooLarge,
        Reason::TlsHandshake,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unauthenticated => "unauthenticated",
            Reason::SourceBudget => "source_budget",
            Reason::AuthBackoff => "auth_backoff",
            Reason::SourceConnections => "source_connections",
            Reason::Connections => "connections",
            Reason::Overloaded => "overloaded",
            Reason::HeaderTimeout => "header_timeout",
            Reason::HeadersTooLarge => "headers_too_large",
            Reason::TlsHandshake => "tls_handshake",
        }
    }
}

/// One listener's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    pub max_in_flight: usize,
}

/// HTTP/2 settings of both listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Limits {
    pub max_concurrent_streams: u32,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_pending_reset_streams: usize,
    pub max_local_reset_streams: usize,
}

/// `[door]`, checked.
#[derive(Debug, Clone)]
pub struct DoorConfig {
    pub source_rate: QuotaSpec,
    pub auth_failures: QuotaSpec,
    pub auth_backoff: Duration,
    pub auth_backoff_max: Duration,
    pub max_sources: usize,
    pub exempt: Vec<Cidr>,
    pub trusted_proxies: Vec<Cidr>,
    pub lookup: ListenerLimits,
    pub admin: ListenerLimits,
    pub descriptor_reserve: u64,
    pub header_read_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
    pub h2: H2Limits,
    pub summary_window: Duration,
}

/// Reads `[door]`; every mistake is recorded with its key.
pub fn from_settings(raw: &RawDoor, e: &mut Errors<'_>) -> DoorConfig {
    let mut rate = |key: &str, v: &str, default: &str| {
        QuotaSpec::parse(v).unwrap_or_else(|err| {
            e.add(format!("door.{key}"), err.to_string());
            QuotaSpec::parse(default).expect("default quota parses")
        })
    };
    let source_rate = rate(
        "source_rate",
        &raw.source_rate,
        crate::config::raw::DEFAULT_DOOR_SOURCE_RATE,
    );
    let auth_failures = rate(
        "auth_failures",
        &raw.auth_failures,
        crate::config::raw::DEFAULT_DOOR_AUTH_FAILURES,
    );
    let mut blocks = |key: &str, list: &[String]| -> Vec<Cidr> {
        list.iter()
            .enumerate()
            .filter_map(|(i, c)| {
                Cidr::parse(c)
                    .map_err(|m| e.add(format!("door.{key}[{i}]"), m))
                    .ok()
            })
            .collect()
    };
    let exempt = blocks("exempt", &raw.exempt);
    let trusted_proxies = blocks("trusted_proxies", &raw.trusted_proxies);
    let at_least_one: [(&str, u64); 19] = [
        ("max_sources", raw.max_sources as u64),
        ("max_connections", raw.max_connections as u64),
        (
            "max_connections_per_source",
            raw.max_connections_per_source as u64,
        ),
        ("admin_max_connections", raw.admin_max_connections as u64),
        (
            "admin_max_connections_per_source",
            raw.admin_max_connections_per_source as u64,
        ),
        ("max_in_flight", raw.max_in_flight as u64),
        ("admin_max_in_flight", raw.admin_max_in_flight as u64),
        ("header_read_timeout_ms", raw.header_read_timeout_ms),
        ("body_timeout_ms", raw.body_timeout_ms),
        ("idle_timeout_ms", raw.idle_timeout_ms),
        ("tls_handshake_timeout_ms", raw.tls_handshake_timeout_ms),
        ("max_header_bytes", raw.max_header_bytes as u64),
        ("max_headers", raw.max_headers as u64),
        ("max_body_bytes", raw.max_body_bytes as u64),
        (
            "h2_max_concurrent_streams",
            u64::from(raw.h2_max_concurrent_streams),
        ),
        ("h2_keepalive_interval_ms", raw.h2_keepalive_interval_ms),
        ("h2_keepalive_timeout_ms", raw.h2_keepalive_timeout_ms),
        ("auth_backoff_ms", raw.auth_backoff_ms),
        ("summary_window_ms", raw.summary_window_ms),
    ];
    for (key, v) in at_least_one {
        if v == 0 {
            e.add(format!("door.{key}"), "must be at least 1");
        }
    }
    if raw.auth_backoff_max_ms < raw.auth_backoff_ms {
        e.add(
            "door.auth_backoff_max_ms",
            "must be at least door.auth_backoff_ms",
        );
    }
    if raw.max_connections_per_source > raw.max_connections {
        e.add(
            "door.max_connections_per_source",
            "must be at most door.max_connections",
        );
    }
    if raw.max_header_bytes > 1024 * 1024 {
        e.add("door.max_header_bytes", "must be at most 1048576 (1 MiB)");
    }
    let ms = Duration::from_millis;
    DoorConfig {
        source_rate,
        auth_failures,
        auth_backoff: ms(raw.auth_backoff_ms),
        auth_backoff_max: ms(raw.auth_backoff_max_ms),
        max_sources: raw.max_sources,
        exempt,
        trusted_proxies,
        lookup: ListenerLimits {
            max_connections: raw.max_connections,
            max_connections_per_source: raw.max_connections_per_source,
            max_in_flight: raw.max_in_flight,
        },
        admin: ListenerLimits {
            max_connections: raw.admin_max_connections,
            max_connections_per_source: raw.admin_max_connections_per_source,
            max_in_flight: raw.admin_max_in_flight,
        },
        descriptor_reserve: raw.descriptor_reserve,
        header_read_timeout: ms(raw.header_read_timeout_ms),
        body_timeout: ms(raw.body_timeout_ms),
        idle_timeout: ms(raw.idle_timeout_ms),
        tls_handshake_timeout: ms(raw.tls_handshake_timeout_ms),
        max_header_bytes: raw.max_header_bytes,
        max_headers: raw.max_headers,
        max_body_bytes: raw.max_body_bytes,
        h2: H2Limits {
            max_concurrent_streams: raw.h2_max_concurrent_streams,
            keepalive_interval: ms(raw.h2_keepalive_interval_ms),
            keepalive_timeout: ms(raw.h2_keepalive_timeout_ms),
            max_pending_reset_streams: raw.h2_max_pending_reset_streams,
            max_local_reset_streams: raw.h2_max_local_reset_streams,
        },
        summary_window: ms(raw.summary_window_ms),
    }
}

impl DoorConfig {
    /// Every limit as `check-config` shows it: (setting, value).
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        let list = |l: &[Cidr]| {
            if l.is_empty() {
                "none".to_owned()
            } else {
                l.iter().map(Cidr::to_string).collect::<Vec<_>>().join(", ")
            }
        };
        vec![
            ("source_rate", self.source_rate.to_string()),
            ("auth_failures", self.auth_failures.to_string()),
            (
                "auth_backoff",
                format!(
                    "{} doubling to {}",
                    ms(self.auth_backoff),
                    ms(self.auth_backoff_max)
                ),
            ),
            ("max_sources", self.max_sources.to_string()),
            ("exempt", list(&self.exempt)),
            ("trusted_proxies", list(&self.trusted_proxies)),
            (
                "lookup connections",
                format!(
                    "{} in all, {} per source; {} requests in flight",
                    self.lookup.max_connections,
                    self.lookup.max_connections_per_source,
                    self.lookup.max_in_flight
                ),
            ),
            (
                "admin connections",
                format!(
                    "{} in all, {} per source; {} requests in flight",
                    self.admin.max_connections,
                    self.admin.max_connections_per_source,
                    self.admin.max_in_flight
                ),
            ),
            ("descriptor_reserve", self.descriptor_reserve.to_string()),
            ("header_read_timeout", ms(self.header_read_timeout)),
            ("body_timeout", ms(self.body_timeout)),
            ("idle_timeout", ms(self.idle_timeout)),
            ("tls_handshake_timeout", ms(self.tls_handshake_timeout)),
            (
                "headers",
                format!(
                    "{} bytes, {} fields",
                    self.max_header_bytes, self.max_headers
                ),
            ),
            ("max_body_bytes", self.max_body_bytes.to_string()),
            (
                "http2",
                format!(
                    "{} streams, ping every {} (timeout {}), {} pending resets, {} local resets",
                    self.h2.max_concurrent_streams,
                    ms(self.h2.keepalive_interval),
                    ms(self.h2.keepalive_timeout),
                    self.h2.max_pending_reset_streams,
                    self.h2.max_local_reset_streams
                ),
            ),
            ("summary_window", ms(self.summary_window)),
        ]
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Lookup,
    Admin,
}

impl Listener {
    fn index(self) -> usize {
        match self {
            Listener::Lookup => 0,
            Listener::Admin => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Lookup => "lookup",
            Listener::Admin => "admin",
        }
    }
}

/// The door's state, shared by both listeners.
pub struct Door {
    config: DoorConfig,
    sources: Sources,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    /// Connections open and requests in flight, per listener.
    open: [AtomicUsize; 2],
    in_flight: [AtomicUsize; 2],
    /// Connection caps after the descriptor limit was taken into account.
    caps: [usize; 2],
}

impl Door {
    /// The door for `config`, with connection caps that fit the descriptors this process
    /// may open (see [`raise_descriptor_limit`]).
    pub fn new(config: DoorConfig, metrics: Arc<Metrics>, descriptors: Descriptors) -> Arc<Door> {
        let caps = descriptors.caps(&config);
        Arc::new(Door {
            sources: Sources::new(
                config.max_sources,
                config.source_rate,
                config.auth_failures,
                (config.auth_backoff, config.auth_backoff_max),
            ),
            ledger: Ledger::new(config.max_sources),
            metrics,
            open: [AtomicUsize::new(0), AtomicUsize::new(0)],
            in_flight: [AtomicUsize::new(0), AtomicUsize::new(0)],
            caps,
            config,
        })
    }

    pub fn config(&self) -> &DoorConfig {
        &self.config
    }

    /// Connection caps in force (lookup, admin).
    pub fn caps(&self) -> [usize; 2] {
        self.caps
    }

    fn limits(&self, listener: Listener) -> &ListenerLimits {
        match listener {
            Listener::Lookup => &self.config.lookup,
            Listener::Admin => &self.config.admin,
        }
    }

    fn exempt(&self, ip: std::net::IpAddr) -> bool {
        sources::listed(&self.config.exempt, ip)
    }

    /// Counts a refusal: its metric, its summary, and (first of its key in the window)
    /// a log line.
    fn refused(&self, listener: Listener, source: SourceKey, reason: Reason) {
        self.metrics
            .door_refusals
            .with(&[listener.as_str(), reason.as_str()])
            .fetch_add(1, Ordering::Relaxed);
        if self.ledger.count(listener.as_str(), source, reason) {
            tracing::warn!(
                listener = listener.as_str(),
                source = %source,
                reason = reason.as_str(),
                "refused at the door (further refusals of this source and reason in this window are counted, not logged)"
            );
        }
    }

    /// Writes the summaries of each window into the audit trail until `stop`, then the last.
    pub async fn summarise(self: Arc<Door>, audit: Arc<AuditLog>, mut stop: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(self.config.summary_window);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            let stopping = tokio::select! {
                _ = every.tick() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            for entry in self.ledger.drain() {
                record_summary(&audit, entry).await;
            }
            if stopping {
                return;
            }
        }
    }
}

/// Records a summary, waiting a while for room in a full queue rather than dropping it: it
/// is the only trace of what it counts.
async fn record_summary(audit: &AuditLog, entry: crate::audit::record::AuditEntry) {
    for _ in 0..50 {
        match audit.record(entry.clone()).await {
            Err(crate::audit::writer::AuditFailure::Full) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "a door summary was not recorded");
                return;
            }
            Ok(()) => return,
        }
    }
    tracing::error!("the audit queue stayed full for 5 s: a door summary was not recorded");
}

#[cfg(test)]
mod tests;
