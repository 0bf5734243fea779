//! The live state `/metrics` shows beside the request path's series: each connector's guard
//! and health probe, each dataset's cache, and the audit writer. The core takes a
//! [`Snapshot`]; this renders it.

use super::metrics::{Histogram, label_text, render_counter, render_gauge};
use std::fmt::Write;

/// One connector's guard and probe, as counted now.
#[derive(Debug, Clone, Default)]
pub struct ConnectorState {
    pub name: String,
    /// 0 closed, 1 half open, 2 open.
    pub breaker: u8,
    pub in_flight: u64,
    pub waiting: u64,
    pub retries: u64,
    pub rejected_open: u64,
    pub rejected_busy: u64,
    /// The last active probe: answered or not (`None`: never probed), and how long it took.
    pub up: Option<bool>,
    pub probe_ms: i64,
}

/// The audit writer's counters.
pub struct AuditState<'a> {
    pub backlog: u64,
    pub records: u64,
    pub commits: u64,
    pub failures: u64,
    pub checkpoints: u64,
    pub batch_sizes: &'a Histogram,
    pub commit_seconds: &'a Histogram,
}

/// Everything beside the request path's series.
pub struct Snapshot<'a> {
    /// Sorted by name.
    pub connectors: Vec<ConnectorState>,
    /// Records held per dataset, sorted by dataset.
    pub cache_entries: Vec<(String, u64)>,
    pub audit: AuditState<'a>,
}

/// Appends the snapshot's series to `out` in the Prometheus text format.
pub fn render(out: &mut String, s: &Snapshot<'_>) {
    let connector = |c: &ConnectorState| label_text(&["connector"], std::slice::from_ref(&c.name));
    let each = |f: &dyn Fn(&ConnectorState) -> Option<f64>| -> Vec<(String, f64)> {
        s.connectors
            .iter()
            .filter_map(|c| Some((connector(c), f(c)?)))
            .collect()
    };
    render_gauge(
        out,
        "lienthong_breaker_state",
        "Circuit breaker per connector: 0 closed, 1 half open, 2 open.",
        &each(&|c| Some(f64::from(c.breaker))),
    );
    render_gauge(
        out,
        "lienthong_upstream_in_flight",
        "Calls at the provider now, per connector.",
        &each(&|c| Some(c.in_flight as f64)),
    );
    render_gauge(
        out,
        "lienthong_upstream_waiting",
        "Calls waiting for provider capacity or an in-flight slot, per connector.",
        &each(&|c| Some(c.waiting as f64)),
    );
    render_gauge(
        out,
        "lienthong_connector_up",
        "Last active health probe per probed connector: 1 answered, 0 failed.",
        &each(&|c| c.up.map(|up| if up { 1.0 } else { 0.0 })),
    );
    render_gauge(
        out,
        "lienthong_connector_probe_seconds",
        "How long the last active health probe took, per probed connector.",
        &each(&|c| c.up.map(|_| c.probe_ms as f64 / 1000.0)),
    );
    let mut rejected = Vec::new();
    let mut retries = Vec::new();
    for c in &s.connectors {
        for (reason, n) in [
            ("breaker_open", c.rejected_open),
            ("capacity", c.rejected_busy),
        ] {
            rejected.push((
                label_text(
                    &["connector", "reason"],
                    &[c.name.clone(), reason.to_owned()],
                ),
                n,
            ));
        }
        retries.push((connector(c), c.retries));
    }
    render_counter(
        out,
        "lienthong_upstream_rejected_total",
        "Provider calls refused by the guard, by reason.",
        &rejected,
    );
    render_counter(
        out,
        "lienthong_upstream_retries_total",
        "Retries made by the guard, per connector.",
        &retries,
    );
    let entries: Vec<(String, f64)> = s
        .cache_entries
        .iter()
        .map(|(dataset, n)| {
            (
                label_text(&["dataset"], std::slice::from_ref(dataset)),
                *n as f64,
            )
        })
        .collect();
    render_gauge(
        out,
        "lienthong_cache_entries",
        "Records held in the cache, per dataset.",
        &entries,
    );
    let a = &s.audit;
    render_gauge(
        out,
        "lienthong_audit_backlog",
        "Audit records waiting for the writer.",
        &[(String::new(), a.backlog as f64)],
    );
    for (name, help, v) in [
        (
            "lienthong_audit_records_total",
            "Audit records committed.",
            a.records,
        ),
        (
            "lienthong_audit_commits_total",
            "Audit transactions committed.",
            a.commits,
        ),
        (
            "lienthong_audit_failures_total",
            "Audit commits that failed.",
            a.failures,
        ),
        (
            "lienthong_audit_checkpoints_total",
            "Chain heads signed.",
            a.checkpoints,
        ),
    ] {
        render_counter(out, name, help, &[(String::new(), v)]);
    }
    for (name, help, h) in [
        (
            "lienthong_audit_commit_records",
            "Records per audit commit (group commit).",
            a.batch_sizes,
        ),
        (
            "lienthong_audit_commit_duration_seconds",
            "Time an audit commit takes.",
            a.commit_seconds,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        h.render(out, name, "");
    }
}
