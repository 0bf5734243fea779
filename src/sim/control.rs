//! The control surface every simulator serves: `GET /_sim/stats` counts calls by operation and
//! shows the context headers last seen; `PUT /_sim/faults` injects latency, errors, malformed
//! payloads, hangs or a full outage; `POST /_sim/reset` zeroes the counters.

use axum::extract::State;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Faults a test or an operator can inject at run time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every call before it is answered.
    pub latency_ms: u64,
    /// Fraction (0..=1) of calls answered with a server error.
    pub error_rate: f64,
    /// Fraction (0..=1) of calls answered with a payload the client cannot use.
    pub malformed_rate: f64,
    /// Calls hang (until the client gives up).
    pub timeout: bool,
    /// The service refuses every call as unavailable.
    pub down: bool,
}

/// What a simulator should do with the call it is handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Error,
    Malformed,
    Down,
}

/// How long a hung call waits before it is released anyway.
const HANG: Duration = Duration::from_secs(300);

/// Context headers a simulator records, so tests can see what the gateway passed on.
pub const RECORDED_HEADERS: &[&str] = &[
    "traceparent",
    "x-road-client",
    "x-procedure-code",
    "x-dossier-id",
    "x-officer-id",
    "x-agency-code",
    "authorization",
];

#[derive(Debug, Default, Serialize)]
struct Stats {
    calls: BTreeMap<String, u64>,
    last_context: BTreeMap<String, String>,
}

/// Shared state of one simulator's control surface.
#[derive(Debug)]
pub struct Control {
    service: &'static str,
    faults: RwLock<Faults>,
    stats: Mutex<Stats>,
    sequence: AtomicU64,
}

#[derive(Serialize)]
struct StatsView<'a> {
    service: &'static str,
    total: u64,
    calls: &'a BTreeMap<String, u64>,
    last_context: &'a BTreeMap<String, String>,
    faults: Faults,
}

impl Control {
    pub fn new(service: &'static str) -> Arc<Control> {
        Arc::new(Control {
            service,
            faults: RwLock::new(Faults::default()),
            stats: Mutex::new(Stats::default()),
            sequence: AtomicU64::new(0),
        })
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.write().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    fn faults(&self) -> Faults {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The value of a context header (e.g. `traceparent`) on the last call that carried it.
    pub fn last_seen(&self, header: &str) -> Option<String> {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.last_context.get(header).cloned()
    }

    /// Calls received so far for `operation`.
    pub fn calls(&self, operation: &str) -> u64 {
        let stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.calls.get(operation).copied().unwrap_or(0)
    }

    /// Counts the call, records its context, applies latency and hangs, and says which fault
    /// (if any) the simulator must answer with.
    pub async fn on_call<'a>(
        &self,
        operation: &str,
        context: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Fault {
        {
            let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            *stats.calls.entry(operation.to_owned()).or_default() += 1;
            for (name, value) in context {
                stats.last_context.insert(name.to_owned(), value);
            }
        }
        let faults = self.faults();
        if faults.down {
            return Fault::Down;
        }
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        if faults.timeout {
            tokio::time::sleep(HANG).await;
        }
        // A deterministic spread: the n-th call fails when its fractional slot falls under
        // the rate, so a rate of 0.5 fails every other call.
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let slot = ((n as f64) * 0.618_033_988_749_895).fract();
        if slot < faults.error_rate {
            Fault::Error
        } else if slot < faults.error_rate + faults.malformed_rate {
            Fault::Malformed
        } else {
            Fault::None
        }
    }

    /// The `/_sim/*` routes.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/_sim/stats", get(stats))
            .route("/_sim/faults", put(set_faults).get(get_faults))
            .route("/_sim/reset", post(reset))
            .with_state(self.clone())
    }
}

async fn stats(State(control): State<Arc<Control>>) -> Json<serde_json::Value> {
    let faults = control.faults();
    let stats = control.stats.lock().unwrap_or_else(|e| e.into_inner());
    let view = StatsView {
        service: control.service,
        total: stats.calls.values().sum(),
        calls: &stats.calls,
        last_context: &stats.last_context,
        faults,
    };
    Json(serde_json::to_value(view).unwrap_or_default())
}

async fn get_faults(State(control): State<Arc<Control>>) -> Json<Faults> {
    Json(control.faults())
}

async fn set_faults(
    State(control): State<Arc<Control>>,
    Json(faults): Json<Faults>,
) -> Json<Faults> {
    control.set_faults(faults.clone());
    Json(faults)
}

async fn reset(State(control): State<Arc<Control>>) -> Json<Faults> {
    *control.stats.lock().unwrap_or_else(|e| e.into_inner()) = Stats::default();
    control.set_faults(Faults::default());
    Json(Faults::default())
}

/// Pulls the recorded context headers out of an HTTP request.
pub fn recorded(headers: &http::HeaderMap) -> Vec<(&'static str, String)> {
    RECORDED_HEADERS
        .iter()
        .filter_map(|&name| {
            let value = headers.get(name)?.to_str().ok()?;
            // Credentials are recorded only as present, never as a value.
            let value = if name == "authorization" {
                "present".to_owned()
            } else {
                value.to_owned()
            };
            Some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn error_rate_fails_that_fraction_of_calls() {
        let control = Control::new("test");
        control.set_faults(Faults {
            error_rate: 0.25,
            ..Faults::default()
        });
        let mut errors = 0;
        for _ in 0..1000 {
            if control.on_call("op", []).await == Fault::Error {
                errors += 1;
            }
        }
        assert!(
            (240..=260).contains(&errors),
            "{errors} errors in 1000 calls"
        );
        assert_eq!(control.calls("op"), 1000);
        control.set_faults(Faults {
            down: true,
            ..Faults::default()
        });
        assert_eq!(control.on_call("op", []).await, Fault::Down);
    }
}
