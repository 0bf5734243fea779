//! Quotas from grants and consumers hold under concurrency, count cached answers too, and
//! tell the caller when to come back (REST headers, gRPC RetryInfo and metadata).

mod common;

use common::*;
use lienthong::proto::lienthong::*;
use serde_json::Value;
use tonic_types::StatusExt;

/// Ten citizen lookups a minute on the grant; the demo consumer as a whole may make 30.
async fn limited() -> Harness {
    Harness::start_with(|name, text| match name {
        "grants.toml" => text.replacen(
            "dataset = \"population.citizen\"",
            "dataset = \"population.citizen\"\nquota = \"10/min\"",
            1,
        ),
        "consumers.toml" => text + "quota = \"30/min\"\n",
        _ => text,
    })
    .await
}

#[tokio::test]
async fn a_grant_quota_holds_under_concurrent_lookups_including_cached_ones() {
    let h = limited().await;
    let id = h.sample("population.citizen");
    let path = format!("/v1/citizens/{id}");
    let responses = futures::future::join_all((0..50).map(|_| h.get(&path))).await;
    let mut admitted = 0;
    let mut remaining = Vec::new();
    for r in responses {
        match r.status().as_u16() {
            200 => {
                admitted += 1;
                assert_eq!(r.headers()["ratelimit-limit"], "10");
                remaining.push(
                    r.headers()["ratelimit-remaining"]
                        .to_str()
                        .expect("ascii")
                        .parse::<u32>()
                        .expect("number"),
                );
            }
            429 => {
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .expect("ascii")
                    .parse()
                    .expect("seconds");
                assert!((1..=6).contains(&retry), "one call refills in 6 s: {retry}");
                assert_eq!(r.headers()["ratelimit-remaining"], "0");
                let body: Value = r.json().await.expect("json");
                assert_eq!(body["code"], "rate_limited");
                assert!(
                    body["detail"]
                        .as_str()
                        .unwrap_or("")
                        .contains("10/min on population.citizen"),
                    "{body}"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(admitted, 10, "exactly the quota was admitted");
    remaining.sort_unstable();
    assert_eq!(remaining, (0..10).collect::<Vec<u32>>());
    // The provider was asked once; the other admitted calls were cache hits or coalesced,
    // and still counted against the quota.
    assert_eq!(h.sims.population.calls("TraCuuThongTinCongDan"), 1);

    // Over gRPC the same refusal, with RetryInfo and the quota in the trailers.
    let mut grpc = h.grpc().await;
    let status = grpc
        .get_citizen(authed(GetCitizenRequest {
            context: context(),
            personal_id: id,
            fields: vec![],
        }))
        .await
        .expect_err("over quota");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    let details = status.get_error_details();
    assert!(
        details.retry_info().and_then(|r| r.retry_delay).is_some(),
        "RetryInfo carries the delay"
    );
    assert_eq!(
        status.metadata().get("ratelimit-limit").expect("limit"),
        "10"
    );
}

#[tokio::test]
async fn the_consumers_overall_quota_spans_its_grants() {
    let h = limited().await;
    // Enterprises: the grant has no quota of its own, so the consumer's 30/min decides.
    let code = h.sample("business.enterprise");
    let mut statuses = Vec::new();
    for _ in 0..32 {
        let r = h.get(&format!("/v1/enterprises/{code}")).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let body: Value = r.json().await.expect("json");
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap_or("")
                    .contains("consumer's quota of 30/min"),
                "{body}"
            );
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 30);
    assert_eq!(statuses[30..], [429, 429]);
    // And it is used up for citizens too, although their grant has calls left.
    let id = h.sample("population.citizen");
    assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 429);

    let caps: Value = h.get("/v1/capabilities").await.json().await.expect("json");
    assert_eq!(caps["quota"], "30/min");
    let citizen = caps["datasets"]
        .as_array()
        .expect("datasets")
        .iter()
        .find(|d| d["dataset"] == "population.citizen")
        .expect("citizen grant");
    assert_eq!(citizen["quota"], "10/min");
}
