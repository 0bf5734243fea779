//! W3C Trace Context: continuing a caller's trace (`traceparent`), the span of each call,
//! and the `traceparent` a provider hears.

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
    let mut buffer = uuid::Uuid::encode_buffer();
    while out.len() < bytes * 2 {
        out.push_str(uuid::Uuid::new_v4().simple().encode_lower(&mut buffer));
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

/// The span of a call, which every log line of it carries (request id, trace id). When
/// spans are exported it continues the caller's trace `t`, which then becomes the exported
/// span's (so audit, logs, providers and the collector agree): `t` is changed only then.
#[inline]
pub fn call_span(request_id: &str, transport: &'static str, t: &mut TraceContext) -> tracing::Span {
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let span = tracing::info_span!(
        "call",
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        transport,
    );
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
        *t = TraceContext {
            trace_id: exported.trace_id().to_string(),
            span_id: exported.span_id().to_string(),
            sampled: exported.is_sampled(),
            parent: t.parent.take(),
        };
    }
    span.record("trace_id", t.trace_id.as_str());
    span
}

/// The `traceparent` for a provider call made in `span`: the exported span's context when
/// spans are exported, else the call's own.
#[inline]
pub fn exported_parent(span: &tracing::Span, trace: &TraceContext) -> String {
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
