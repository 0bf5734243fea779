//! W3C trace context: a caller's `traceparent` is continued, sent on to the provider with the
//! gateway's own span as parent, and written in the audit record; without one, a trace starts.

mod common;

use common::*;
use lienthong::proto::lienthong::*;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_PARENT: &str = "00f067aa0ba902b7";

async fn trace_ids(h: &Harness) -> Vec<String> {
    let audit = h.gateway.gateway().audit_handle();
    audit
        .store()
        .scan(audit.instance(), 0, 100)
        .await
        .expect("scan")
        .into_iter()
        .map(|r| r.entry.trace_id)
        .collect()
}

fn parts(traceparent: &str) -> Vec<String> {
    traceparent.split('-').map(str::to_owned).collect()
}

#[tokio::test]
async fn a_callers_trace_is_continued_to_the_provider_and_into_the_audit_record() {
    let h = Harness::start().await;
    let id = h.sample("population.citizen");
    let r = h
        .http
        .get(format!("{}/v1/citizens/{id}", h.base))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .header(
            "traceparent",
            format!("00-{CALLER_TRACE}-{CALLER_PARENT}-01"),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let seen = h.sims.population.last_seen("traceparent").expect("sent on");
    let p = parts(&seen);
    assert_eq!(
        (p[0].as_str(), p[1].as_str(), p[3].as_str()),
        ("00", CALLER_TRACE, "01")
    );
    assert_eq!(p[2].len(), 16);
    assert_ne!(
        p[2], CALLER_PARENT,
        "the provider's parent is the gateway's span"
    );
    assert_eq!(trace_ids(&h).await, [CALLER_TRACE]);

    // Over gRPC to the land registry, the same.
    let mut grpc = h.grpc().await;
    let mut request = authed(GetLandParcelRequest {
        context: context(),
        parcel_id: h.sample("land.parcel"),
        fields: vec![],
    });
    let other_trace = "0af7651916cd43dd8448eb211c80319c";
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{other_trace}-b7ad6b7169203331-00")
            .parse()
            .expect("metadata"),
    );
    grpc.get_land_parcel(request).await.expect("served");
    let seen = h.sims.land.last_seen("traceparent").expect("sent on");
    assert_eq!(parts(&seen)[1], other_trace);
    assert_eq!(parts(&seen)[3], "00", "not sampled stays not sampled");
    assert_eq!(trace_ids(&h).await[1], other_trace);
}

#[tokio::test]
async fn without_a_valid_traceparent_a_new_trace_starts() {
    let h = Harness::start().await;
    let ids = h
        .sims
        .data
        .samples("population.citizen", 3)
        .expect("samples");
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", ids[0])).await.status(),
        200
    );
    let r = h
        .http
        .get(format!("{}/v1/citizens/{}", h.base, ids[1]))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .header(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let traces = trace_ids(&h).await;
    assert_eq!(traces.len(), 2);
    for t in &traces {
        assert_eq!(t.len(), 32);
        assert!(
            t.bytes().all(|b| b.is_ascii_hexdigit()) && t != "00000000000000000000000000000000"
        );
    }
    assert_ne!(traces[0], traces[1]);
    let seen = h.sims.population.last_seen("traceparent").expect("sent on");
    assert_eq!(
        parts(&seen)[1],
        traces[1],
        "the provider saw the trace the audit names"
    );
}
