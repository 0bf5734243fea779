//! The record cache end to end, against the simulators' call counters and fault controls:
//! a herd of misses makes one provider call, a failing provider gets a stale record served
//! and marked, absent keys are remembered, and a fresh read needs the grant's leave.

mod common;

use common::*;
use lienthong::proto::lienthong::*;
use lienthong::sim::control::Faults;
use std::collections::BTreeMap;
use std::time::Duration;

const POPULATION_OP: &str = "TraCuuThongTinCongDan";

#[tokio::test]
async fn a_thousand_concurrent_lookups_of_one_cold_key_make_one_provider_call() {
    let h = Harness::start().await;
    // A slow provider keeps the first call in flight while the others arrive.
    h.sims.population.set_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    let id = h.sample("population.citizen");
    let grpc = h.grpc().await;
    let calls = (0..1000).map(|_| {
        let mut grpc = grpc.clone();
        let id = id.clone();
        tokio::spawn(async move {
            grpc.get_citizen(authed(GetCitizenRequest {
                context: context(),
                personal_id: id,
                fields: vec!["full_name".into()],
            }))
            .await
            .map(|r| r.into_inner().info.expect("info").cache)
        })
    });
    let mut statuses = BTreeMap::new();
    for call in futures::future::join_all(calls).await {
        let cache = call.expect("task").expect("served");
        *statuses.entry(cache).or_insert(0u32) += 1;
    }
    assert_eq!(h.sims.population.calls(POPULATION_OP), 1, "{statuses:?}");
    assert_eq!(statuses.get("miss"), Some(&1), "{statuses:?}");
    assert_eq!(statuses.values().sum::<u32>(), 1000);
    assert!(
        statuses
            .keys()
            .all(|s| ["miss", "coalesced", "hit"].contains(&s.as_str())),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_failing_provider_gets_the_stale_record_served_and_marked() {
    // Population records are fresh for one second here.
    let h = Harness::start_with(|name, text| {
        if name == "connectors.toml" {
            text.replacen("ttl_s = 300", "ttl_s = 1", 1)
        } else {
            text
        }
    })
    .await;
    let id = h.sample("population.citizen");
    let path = format!("/v1/citizens/{id}");
    let first = h.get(&path).await;
    assert_eq!(first.headers()["x-cache"], "miss");
    let record: serde_json::Value = first.json().await.expect("json");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sims.population.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    let stale = h.get(&path).await;
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["x-cache"], "stale");
    assert_eq!(
        stale.json::<serde_json::Value>().await.expect("json"),
        record
    );
    // The refresh was tried (and retried once, within the guard's retry budget).
    assert_eq!(h.sims.population.calls(POPULATION_OP), 1 + 2);

    // A key never fetched has nothing stale to fall back on.
    let other = h
        .sims
        .data
        .samples("population.citizen", 5)
        .expect("samples")[4]
        .clone();
    let failed = h.get(&format!("/v1/citizens/{other}")).await;
    assert_eq!(failed.status(), 503);

    // Back up: the next lookup refreshes.
    h.sims.population.set_faults(Faults::default());
    assert_eq!(h.get(&path).await.headers()["x-cache"], "miss");
}

#[tokio::test]
async fn absent_keys_are_remembered() {
    let h = Harness::start().await;
    let missing = "001099000017";
    assert!(lienthong::domain::ids::PersonalId::parse(missing, 2026).is_ok());
    let first = h.get(&format!("/v1/citizens/{missing}")).await;
    assert_eq!(first.status(), 404, "this id is not in the simulated data");
    let second = h.get(&format!("/v1/citizens/{missing}")).await;
    assert_eq!(second.status(), 404);
    assert_eq!(h.sims.population.calls(POPULATION_OP), 1);
}

#[tokio::test]
async fn a_fresh_read_needs_the_grants_leave() {
    let allow = |name: &str, text: String| {
        if name == "grants.toml" {
            text.replacen(
                "dataset = \"population.citizen\"",
                "dataset = \"population.citizen\"\nallow_cache_bypass = true",
                1,
            )
        } else {
            text
        }
    };
    for allowed in [false, true] {
        let h = if allowed {
            Harness::start_with(allow).await
        } else {
            Harness::start().await
        };
        let id = h.sample("population.citizen");
        let path = format!("{}/v1/citizens/{id}", h.base);
        assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 200);
        let fresh = h
            .http
            .get(&path)
            .bearer_auth(API_KEY)
            .header("X-Procedure-Code", PROCEDURE)
            .header("X-Dossier-Id", DOSSIER)
            .header("X-Officer-Id", OFFICER)
            .header("Cache-Control", "no-cache")
            .send()
            .await
            .expect("sent");
        if allowed {
            assert_eq!(fresh.status(), 200);
            assert_eq!(fresh.headers()["x-cache"], "miss");
            assert_eq!(h.sims.population.calls(POPULATION_OP), 2);
        } else {
            assert_eq!(fresh.status(), 403);
            let body: serde_json::Value = fresh.json().await.expect("json");
            assert!(
                body["detail"].as_str().unwrap_or("").contains("no-cache"),
                "{body}"
            );
            assert_eq!(h.sims.population.calls(POPULATION_OP), 1);
        }
    }
}
