//! `/metrics` on the admin listener: Prometheus text that counts what happened, with labels
//! that stay bounded and never carry a key, a dossier id or an officer id.

mod common;

use common::*;
use std::collections::BTreeMap;

/// Every sample of the exposition: (name, labels) → value.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name value");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.trim_end_matches('}');
                    let labels = rest
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once("=\"").expect("label");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            (name, labels, value.parse().expect("number"))
        })
        .collect()
}

fn value(
    all: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    want: &[(&str, &str)],
) -> f64 {
    all.iter()
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

pub async fn metrics(h: &Harness) -> String {
    h.http
        .get(format!("http://{}/metrics", h.gateway.admin_addr))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn metrics_count_calls_cache_upstream_and_audit_without_personal_data() {
    let h = Harness::start().await;
    let id = h.sample("population.citizen");
    assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 200);
    assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 200);
    assert_eq!(h.get("/v1/citizens/123").await.status(), 400);
    assert_eq!(
        h.get(&format!("/v1/datasets/tax.payer/records/{id}"))
            .await
            .status(),
        404
    );
    let anonymous = h
        .http
        .get(format!("{}/v1/citizens/{id}", h.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);

    let text = metrics(&h).await;
    let all = samples(&text);
    let served = [
        ("dataset", "population.citizen"),
        ("consumer", "demo-onestop"),
        ("transport", "rest"),
        ("outcome", "served"),
    ];
    assert_eq!(
        value(&all, "lienthong_requests_total", &served),
        2.0,
        "{text}"
    );
    assert_eq!(
        value(&all, "lienthong_request_duration_seconds_count", &served),
        2.0
    );
    assert_eq!(
        value(
            &all,
            "lienthong_requests_total",
            &[("outcome", "invalid_key")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &all,
            "lienthong_requests_total",
            &[("dataset", "unknown"), ("outcome", "unknown_dataset")]
        ),
        1.0,
        "a dataset not in config is labelled unknown, not by its name"
    );
    assert_eq!(
        value(
            &all,
            "lienthong_requests_total",
            &[("consumer", "anonymous"), ("outcome", "unauthenticated")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &all,
            "lienthong_cache_requests_total",
            &[("result", "miss")]
        ),
        1.0
    );
    assert_eq!(
        value(&all, "lienthong_cache_requests_total", &[("result", "hit")]),
        1.0
    );
    assert_eq!(
        value(
            &all,
            "lienthong_upstream_requests_total",
            &[("connector", "population"), ("status", "ok")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &all,
            "lienthong_upstream_duration_seconds_count",
            &[("connector", "population")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &all,
            "lienthong_breaker_state",
            &[("connector", "population")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &all,
            "lienthong_cache_entries",
            &[("dataset", "population.citizen")]
        ),
        1.0
    );
    // Five calls, of which the unauthenticated one is summed at the door, not recorded.
    assert_eq!(value(&all, "lienthong_audit_records_total", &[]), 4.0);
    assert_eq!(
        value(
            &all,
            "lienthong_door_refusals_total",
            &[("listener", "lookup"), ("reason", "unauthenticated")]
        ),
        1.0
    );
    assert!(value(&all, "lienthong_audit_commit_records_count", &[]) >= 1.0);
    assert_eq!(value(&all, "lienthong_in_flight_requests", &[]), 0.0);
    // Histogram buckets are cumulative and end at the count.
    let inf = value(
        &all,
        "lienthong_request_duration_seconds_bucket",
        &[("outcome", "served"), ("le", "+Inf")],
    );
    assert_eq!(inf, 2.0);

    for secret in [id.as_str(), DOSSIER, OFFICER, "tax.payer"] {
        assert!(!text.contains(secret), "{secret:?} appears in /metrics");
    }
    // Every family is declared once, with HELP and TYPE.
    let mut types = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).expect("name");
        assert!(
            types.insert(name.to_owned(), ()).is_none(),
            "{name} declared twice"
        );
    }
    assert!(types.len() >= 15, "{types:?}");
}
