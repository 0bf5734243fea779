//! Prometheus metrics without a metrics framework: counters and histograms on atomics,
//! labelled series found through a read-mostly map, rendered in the text exposition format
//! on the admin listener's `/metrics`. Label values are bounded by construction: datasets and
//! consumers come from config (anything else is `unknown` / `anonymous`), outcomes from the
//! error table; no keys, dossier ids or officer ids are ever labels.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Bucket bounds in seconds: sub-millisecond cache hits up to provider timeouts.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket bounds for counts (records per audit commit).
pub const COUNT_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths, to stay on integers.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        // Cumulative buckets are summed at render time; here only the first bucket counts.
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Renders as one histogram series (no HELP/TYPE lines).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            braces(labels),
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// One series: its label values and its value.
type Series<T> = (Vec<String>, Arc<T>);

/// A family of series of one kind, by label values.
#[derive(Debug)]
pub struct Family<T> {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    /// Keyed by the label values joined with U+001F (which no label value holds). Label
    /// values come from config, not callers, so a fast hasher is safe here.
    series: RwLock<HashMap<String, Series<T>, foldhash::fast::RandomState>>,
    make: fn() -> T,
}

impl<T> Family<T> {
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        make: fn() -> T,
    ) -> Family<T> {
        Family {
            name,
            help,
            labels,
            series: RwLock::new(HashMap::default()),
            make,
        }
    }

    /// The series for these label values (in the family's label order).
    pub fn with(&self, values: &[&str]) -> Arc<T> {
        thread_local! {
            /// The key of a lookup, joined in a buffer kept for the next one: a call counts
            /// into several series, and none of those lookups allocates.
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        KEY.with_borrow_mut(|key| {
            key.clear();
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    key.push('\u{1f}');
                }
                key.push_str(v);
            }
            if let Some((_, s)) = self
                .series
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(key.as_str())
            {
                return s.clone();
            }
            self.series
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.clone())
                .or_insert_with(|| {
                    (
                        values.iter().map(|v| (*v).to_owned()).collect(),
                        Arc::new((self.make)()),
                    )
                })
                .1
                .clone()
        })
    }

    fn sorted(&self) -> Vec<(String, Arc<T>)> {
        let mut all: Vec<(String, Arc<T>)> = self
            .series
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(values, s)| (label_text(self.labels, values), s.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// `a="x",b="y"` with values escaped per the exposition format.
pub fn label_text(names: &[&str], values: &[String]) -> String {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{n}=\"{v}\"")
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Family<AtomicU64> {
    pub fn render_counter(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} counter",
            self.name, self.help, self.name
        );
        for (labels, c) in self.sorted() {
            let _ = writeln!(
                out,
                "{}{{{labels}}} {}",
                self.name,
                c.load(Ordering::Relaxed)
            );
        }
    }
}

impl Family<Histogram> {
    pub fn render_histogram(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} histogram",
            self.name, self.help, self.name
        );
        for (labels, h) in self.sorted() {
            h.render(out, self.name, &labels);
        }
    }
}

/// Writes one gauge family from values computed at scrape time.
pub fn render_gauge(out: &mut String, name: &str, help: &str, series: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in series {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// Writes one counter family from values kept elsewhere.
pub fn render_counter(out: &mut String, name: &str, help: &str, series: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, v) in series {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

fn counter() -> AtomicU64 {
    AtomicU64::new(0)
}

fn seconds() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

/// The gateway's own series; the rest are read from live state at scrape time.
#[derive(Debug)]
pub struct Metrics {
    pub requests: Family<AtomicU64>,
    pub request_seconds: Family<Histogram>,
    pub cache: Family<AtomicU64>,
    pub upstream: Family<AtomicU64>,
    pub upstream_seconds: Family<Histogram>,
    pub rate_limited: Family<AtomicU64>,
    pub in_flight: AtomicU64,
    /// Refusals at the door (before a caller is identified), by listener and reason.
    pub door_refusals: Family<AtomicU64>,
    /// Open connections on the lookup and admin listeners.
    pub connections: [AtomicU64; 2],
    /// Misuse alerts raised, by rule and consumer (never by officer: unbounded).
    pub misuse_alerts: Family<AtomicU64>,
    /// The listener's certificates as last loaded from their files, (role, subject CN,
    /// notAfter in Unix seconds), once a file change was taken without a reload: the
    /// expiry gauge shows what is served.
    pub served_certificates: std::sync::RwLock<Option<Vec<ServedCertificate>>>,
}

/// A certificate the listener serves: (role, subject CN, notAfter in Unix seconds).
pub type ServedCertificate = (&'static str, String, i64);

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::new(
                "lienthong_requests_total",
                "Lookup, verify and batch-item calls by outcome.",
                &["dataset", "consumer", "transport", "outcome"],
                counter,
            ),
            request_seconds: Family::new(
                "lienthong_request_duration_seconds",
                "Time from a call's arrival to its answer, audit commit included.",
                &["dataset", "consumer", "transport", "outcome"],
                seconds,
            ),
            cache: Family::new(
                "lienthong_cache_requests_total",
                "Cache answers by result: hit, miss, stale, coalesced.",
                &["dataset", "result"],
                counter,
            ),
            upstream: Family::new(
                "lienthong_upstream_requests_total",
                "Provider calls (after the guard's retries) by connector and status.",
                &["connector", "status"],
                counter,
            ),
            upstream_seconds: Family::new(
                "lienthong_upstream_duration_seconds",
                "Provider call time by connector, retries included.",
                &["connector"],
                seconds,
            ),
            rate_limited: Family::new(
                "lienthong_rate_limited_total",
                "Calls refused by a quota, by consumer and dataset.",
                &["consumer", "dataset"],
                counter,
            ),
            in_flight: AtomicU64::new(0),
            door_refusals: Family::new(
                "lienthong_door_refusals_total",
                "Requests and connections refused at the door, before a caller is identified, \
                 by listener and reason.",
                &["listener", "reason"],
                counter,
            ),
            connections: [AtomicU64::new(0), AtomicU64::new(0)],
            misuse_alerts: Family::new(
                "lienthong_misuse_alerts_total",
                "Misuse alerts raised (each rule fires once per period and actor), by rule and \
                 consumer.",
                &["rule", "consumer"],
                counter,
            ),
            served_certificates: std::sync::RwLock::new(None),
        }
    }
}

/// Counts a call as in flight until dropped.
pub struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    pub fn render(&self, out: &mut String) {
        self.requests.render_counter(out);
        self.request_seconds.render_histogram(out);
        self.cache.render_counter(out);
        self.upstream.render_counter(out);
        self.upstream_seconds.render_histogram(out);
        self.rate_limited.render_counter(out);
        render_gauge(
            out,
            "lienthong_in_flight_requests",
            "Calls being answered now.",
            &[(String::new(), self.in_flight.load(Ordering::Relaxed) as f64)],
        );
        self.door_refusals.render_counter(out);
        self.misuse_alerts.render_counter(out);
        render_gauge(
            out,
            "lienthong_open_connections",
            "Connections open now, by listener.",
            &[
                (
                    label_text(&["listener"], &["lookup".into()]),
                    self.connections[0].load(Ordering::Relaxed) as f64,
                ),
                (
                    label_text(&["listener"], &["admin".into()]),
                    self.connections[1].load(Ordering::Relaxed) as f64,
                ),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_in_the_exposition_format() {
        let m = Metrics::default();
        m.requests
            .with(&["population.citizen", "demo-onestop", "rest", "served"])
            .fetch_add(3, Ordering::Relaxed);
        let h = m
            .request_seconds
            .with(&["population.citizen", "demo-onestop", "rest", "served"]);
        h.observe(0.0007);
        h.observe(0.2);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains(
            "lienthong_requests_total{dataset=\"population.citizen\",consumer=\"demo-onestop\",transport=\"rest\",outcome=\"served\"} 3"
        ), "{out}");
        assert!(out.contains("le=\"0.0005\"} 0"));
        assert!(out.contains("le=\"0.001\"} 1"));
        assert!(out.contains("le=\"0.25\"} 2"));
        assert!(out.contains("le=\"+Inf\"} 2"));
        assert!(out.contains("lienthong_request_duration_seconds_count{dataset=\"population.citizen\",consumer=\"demo-onestop\",transport=\"rest\",outcome=\"served\"} 2"));
        assert_eq!(
            label_text(&["a"], &["say \"hi\"\n".to_owned()]),
            "a=\"say \\\"hi\\\"\\n\""
        );
        // The same series is found again, not duplicated.
        let again = m
            .requests
            .with(&["population.citizen", "demo-onestop", "rest", "served"]);
        assert_eq!(again.load(Ordering::Relaxed), 3);
    }
}
