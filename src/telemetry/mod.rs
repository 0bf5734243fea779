//! Logs (readable text in the demo, JSON lines when configured), OpenTelemetry spans over
//! OTLP when configured ([`trace`] continues callers' traces), and the Prometheus metrics
//! ([`metrics`], with the live state of guards, caches and the audit writer in [`state`]).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

pub use crate::config::OtelSettings;

/// Keeps the span exporter alive; `shutdown` flushes what is buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("span export did not flush: {e}");
        }
    }
}

/// Installs the global subscriber once; later calls are ignored (tests start many
/// gateways). Logs go to stdout, text or JSON, filtered by `level` (or `LIENTHONG_LOG`);
/// spans at info and above go to OTLP when `otel` is set. Must run inside a Tokio runtime.
pub fn init(json: bool, level: &str, otel: Option<&OtelSettings>) -> Telemetry {
    let filter = EnvFilter::try_from_env("LIENTHONG_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let logs = if json {
        fmt::layer().json().with_target(false).boxed()
    } else {
        fmt::layer().with_target(false).boxed()
    }
    .with_filter(filter);
    let mut provider = None;
    let spans = otel.and_then(|o| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(o.endpoint.clone())
            .build()
            .map_err(|e| eprintln!("OTLP exporter not started: {e}"))
            .ok()?;
        let p = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                o.sampling_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(o.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = p.tracer("lienthong");
        provider = Some(p);
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(LevelFilter::INFO),
        )
    });
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    Telemetry { provider }
}

pub mod metrics;
pub mod state;
pub mod trace;

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

#[cfg(test)]
mod tests {
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
}
