//! Health: active probes of each provider, which critical connectors are down (readiness),
//! and the live state `/metrics` shows beside the request path's series.

use super::gateway::Gateway;
use crate::telemetry::state::{AuditState, ConnectorState, Snapshot};
use crate::upstream::guard::BreakerState;
use crate::upstream::probe::{self, ProbeState};
use std::sync::atomic::Ordering::Relaxed;

impl Gateway {
    /// Probes one provider now, outside the cache and the guard: a record or "no such
    /// record" means it answers. The answer itself is discarded.
    pub async fn probe(&self, dataset: &str, key: &str) -> ProbeState {
        let Some(route) = self.routes.get(dataset) else {
            return ProbeState::default();
        };
        probe::probe(&route.connector, &route.dataset, key, &route.probe).await
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
                (route.guard.status().breaker == BreakerState::Open || probe_down)
                    .then(|| c.name.clone())
            })
            .collect();
        down.sort();
        down
    }

    /// Everything `/metrics` shows: the request path's series, and the live state of the
    /// guards, probes, caches and audit writer.
    pub async fn render_metrics(&self) -> String {
        for r in self.routes.values() {
            r.cache.settle().await;
        }
        let mut out = String::with_capacity(16 * 1024);
        self.metrics.render(&mut out);
        if let Some(shared) = &self.shared {
            shared.render(&mut out);
        }
        let probed: Vec<(String, ProbeState)> = self.probes();
        let connectors = self
            .guards()
            .into_iter()
            .map(
                |(name, _, status, [_, _, retries, rejected_open, rejected_busy])| {
                    let probe = probed.iter().find(|(n, _)| *n == name).map(|(_, p)| p);
                    ConnectorState {
                        breaker: match status.breaker {
                            BreakerState::Closed => 0,
                            BreakerState::HalfOpen => 1,
                            BreakerState::Open => 2,
                        },
                        in_flight: status.in_flight as u64,
                        waiting: status.waiting,
                        retries,
                        rejected_open,
                        rejected_busy,
                        up: probe.and_then(|p| p.up),
                        probe_ms: probe.map(|p| p.latency_ms).unwrap_or_default(),
                        name,
                    }
                },
            )
            .collect();
        let mut cache_entries: Vec<(String, u64)> = self
            .routes
            .values()
            .map(|r| (r.dataset.name.clone(), r.cache.len()))
            .collect();
        cache_entries.sort();
        let w = self.audit.stats();
        let snapshot = Snapshot {
            connectors,
            cache_entries,
            audit: AuditState {
                backlog: w.backlog.load(Relaxed),
                records: w.records.load(Relaxed),
                commits: w.commits.load(Relaxed),
                failures: w.failures.load(Relaxed),
                checkpoints: w.checkpoints.load(Relaxed),
                batch_sizes: &w.batch_sizes,
                commit_seconds: &w.commit_seconds,
            },
        };
        crate::telemetry::state::render(&mut out, &snapshot);
        let now_s = crate::domain::date::now_ms() / 1000;
        // The listener's own certificates as last loaded from their files (they reload on
        // a change), the providers' client certificates as this version holds them.
        let served = self
            .metrics
            .served_certificates
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let listener_from_files = served.is_some();
        let held = self
            .config()
            .certificates
            .iter()
            .filter(|c| !listener_from_files || c.role == "upstream_client")
            .map(|c| (c.role, c.subject.clone(), c.not_after_s));
        let certificates: Vec<(String, f64)> = served
            .unwrap_or_default()
            .into_iter()
            .chain(held)
            .map(|(role, subject, not_after_s)| {
                (
                    crate::telemetry::metrics::label_text(
                        &["role", "subject"],
                        &[role.to_owned(), subject],
                    ),
                    (not_after_s - now_s) as f64,
                )
            })
            .collect();
        let anchoring = self.audit.anchoring();
        let label = |w: &str| crate::telemetry::metrics::label_text(&["witness"], &[w.to_owned()]);
        let lag: Vec<(String, f64)> = anchoring
            .lag_seconds(crate::domain::date::now_ms())
            .into_iter()
            .map(|(w, s)| (label(&w), s))
            .collect();
        crate::telemetry::metrics::render_gauge(
            &mut out,
            "lienthong_anchor_lag_seconds",
            "How long the oldest checkpoint a witness has not yet answered for has waited (0: every checkpoint anchored), by witness.",
            &lag,
        );
        let failures: Vec<(String, u64)> = anchoring
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(w, n)| (label(w), *n))
            .collect();
        crate::telemetry::metrics::render_counter(
            &mut out,
            "lienthong_anchor_failures_total",
            "Requests to a witness that brought no receipt (it was down, or answered wrongly); each is tried again.",
            &failures,
        );
        crate::telemetry::metrics::render_gauge(
            &mut out,
            "lienthong_certificate_expiry_seconds",
            "Seconds until each certificate the gateway holds expires (negative: expired), by role (server, client_ca, upstream_client) and subject CN.",
            &certificates,
        );
        out
    }
}
