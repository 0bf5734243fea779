//! Logging set-up: readable text in the demo, JSON lines when configured. (Metrics and
//! OpenTelemetry tracing join here in a later issue.)

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are ignored (tests start many gateways).
pub fn init(json: bool, level: &str) {
    let filter = EnvFilter::try_from_env("LIENTHONG_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
pub mod metrics;
