//! Spans over OTLP to a collector inside the test: a span per call continuing the caller's
//! trace, with cache, upstream guard and connector spans as children; the provider hears the
//! connector span as its parent; the audit record names the same trace; no personal data in
//! span attributes.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default, Clone)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().expect("lock");
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_with_their_parent_links() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let otlp = listener.local_addr().expect("addr");
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let dir = tempfile::tempdir().expect("dir");
    let main = write_config(dir.path(), &sims, |name, text| {
        if name == "gateway.toml" {
            text + &format!("\n[telemetry]\notlp_endpoint = \"http://{otlp}\"\n")
        } else {
            text
        }
    });
    let log = dir.path().join("gateway.log");
    let (mut child, lookup, _) = spawn_serve(&main, &log, "info");

    lienthong::certs::install_crypto();
    let id = sims.data.samples("population.citizen", 2).expect("samples")[1].clone();
    let response = reqwest::Client::new()
        .get(format!("http://{lookup}/v1/citizens/{id}"))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let record: serde_json::Value = response.json().await.expect("json");
    let name = record["full_name"].as_str().expect("name").to_owned();

    // Shutting down flushes the span exporter.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while child.0.try_wait().expect("wait").is_none() {
        assert!(std::time::Instant::now() < deadline, "did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let spans = collector.0.lock().expect("lock").clone();
    let named = |n: &str| {
        spans.iter().find(|s| s.name == n).unwrap_or_else(|| {
            panic!(
                "no {n} span among {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let (call, cache, guard, connector) = (
        named("call"),
        named("cache"),
        named("upstream_guard"),
        named("connector"),
    );
    for s in [call, cache, guard, connector] {
        assert_eq!(
            hex::encode(&s.trace_id),
            TRACE,
            "{} continues the caller's trace",
            s.name
        );
    }
    assert_eq!(
        hex::encode(&call.parent_span_id),
        PARENT,
        "the call's parent is the caller's span"
    );
    assert_eq!(cache.parent_span_id, call.span_id);
    assert_eq!(guard.parent_span_id, cache.span_id);
    assert_eq!(connector.parent_span_id, guard.span_id);

    // The provider heard the connector span as its parent.
    let heard = sims
        .population
        .last_seen("traceparent")
        .expect("traceparent");
    assert_eq!(
        heard,
        format!("00-{TRACE}-{}-01", hex::encode(&connector.span_id))
    );

    // The audit record names the trace.
    let store = lienthong::audit::journal::JournaledStore::open(
        &dir.path().join("data/audit.db"),
        false,
        false,
    )
    .await
    .expect("store");
    let store = store.as_ref();
    let instances = lienthong::audit::store::AuditStore::instances(store)
        .await
        .expect("instances");
    let records = lienthong::audit::store::AuditStore::scan(store, &instances[0], 0, 10)
        .await
        .expect("scan");
    assert_eq!(records[0].entry.trace_id, TRACE);

    // No personal data in what was exported.
    let exported = format!("{spans:?}");
    for secret in [id.as_str(), name.as_str(), DOSSIER, OFFICER] {
        assert!(
            !exported.contains(secret),
            "{secret:?} is in the exported spans"
        );
    }
    server.abort();
}
