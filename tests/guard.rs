//! The upstream guard end to end, driven by the simulators' fault controls and call
//! counters: the breaker opens, shows on the admin listener and closes again; stale records
//! cover for an open breaker; retries stay within budget; a dead provider does not hold up
//! lookups to another; an operator purges the cache.

mod common;

use common::*;
use lienthong::sim::control::Faults;
use serde_json::{Value, json};
use std::time::Duration;

const POPULATION_OP: &str = "TraCuuThongTinCongDan";

/// Adds `guard` settings to the population connector's `[connector.guard]`.
fn population_guard(guard: &'static str) -> impl Fn(&str, String) -> String {
    move |name, text| {
        if name == "connectors.toml" {
            text.replacen(
                "[connector.guard]\n",
                &format!("[connector.guard]\n{guard}\n"),
                1,
            )
        } else {
            text
        }
    }
}

async fn breakers(h: &Harness) -> Value {
    h.http
        .get(format!("http://{}/admin/v1/breakers", h.gateway.admin_addr))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

fn connector<'a>(b: &'a Value, name: &str) -> &'a Value {
    b["connectors"]
        .as_array()
        .expect("connectors")
        .iter()
        .find(|c| c["connector"] == name)
        .expect("connector listed")
}

#[tokio::test]
async fn the_breaker_opens_covers_with_stale_records_and_closes_when_the_provider_returns() {
    let h = Harness::start_with(population_guard(
        "retries = 0\nbreaker_consecutive_failures = 3\nbreaker_open_s = 1",
    ))
    .await;
    let ids = h
        .sims
        .data
        .samples("population.citizen", 12)
        .expect("samples");
    // One record cached before the outage.
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", ids[0])).await.status(),
        200
    );

    h.sims.population.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    let mut statuses = Vec::new();
    for id in &ids[1..9] {
        statuses.push(h.get(&format!("/v1/citizens/{id}")).await.status().as_u16());
    }
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    assert_eq!(
        h.sims.population.calls(POPULATION_OP),
        1 + 3,
        "three failures reached the provider, then the breaker stopped the rest"
    );
    let b = breakers(&h).await;
    let population = connector(&b, "population");
    assert_eq!(population["breaker"], "open", "{b}");
    assert_eq!(population["rejected_breaker_open"], 5);
    assert_eq!(connector(&b, "business")["breaker"], "closed");

    // A record still fresh in the cache is served as usual meanwhile.
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", ids[0])).await.headers()["x-cache"],
        "hit"
    );

    // The provider returns; after open_s a probe goes through and closes the breaker.
    h.sims.population.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", ids[9])).await.status(),
        200
    );
    assert_eq!(
        connector(&breakers(&h).await, "population")["breaker"],
        "closed"
    );
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", ids[10])).await.status(),
        200
    );
}

#[tokio::test]
async fn stale_records_cover_for_an_open_breaker() {
    let h = Harness::start_with(|name, text| {
        let text = population_guard(
            "retries = 0\nbreaker_consecutive_failures = 2\nbreaker_open_s = 60",
        )(name, text);
        if name == "connectors.toml" {
            text.replacen("ttl_s = 300", "ttl_s = 1", 1)
        } else {
            text
        }
    })
    .await;
    let ids = h
        .sims
        .data
        .samples("population.citizen", 5)
        .expect("samples");
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", ids[0])).await.status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.sims.population.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    for id in &ids[1..3] {
        assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 503);
    }
    let calls = h.sims.population.calls(POPULATION_OP);
    let stale = h.get(&format!("/v1/citizens/{}", ids[0])).await;
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["x-cache"], "stale");
    assert_eq!(
        h.sims.population.calls(POPULATION_OP),
        calls,
        "the open breaker answered; the provider was not asked"
    );
}

#[tokio::test]
async fn retries_stay_within_the_budget_when_every_call_fails() {
    let h = Harness::start_with(population_guard(
        "retries = 3\nretry_budget = 0.1\nbackoff_ms = 1\nbreaker_consecutive_failures = 100000\nbreaker_min_calls = 100000",
    ))
    .await;
    h.sims.population.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let ids = h
        .sims
        .data
        .samples("population.citizen", 100)
        .expect("samples");
    for id in &ids {
        assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 503);
    }
    let calls = h.sims.population.calls(POPULATION_OP);
    // 100 lookups; with 3 retries each and no budget that would be 400 provider calls.
    assert!(
        (101..=111).contains(&calls),
        "{calls} provider calls for 100 lookups"
    );
    let b = breakers(&h).await;
    assert_eq!(connector(&b, "population")["retries"], calls - 100);
}

#[tokio::test]
async fn a_hung_provider_does_not_hold_up_lookups_to_another() {
    let h = Harness::start_with(population_guard(
        "max_in_flight = 4\nmax_wait_ms = 100\nretries = 0\nbreaker_consecutive_failures = 100000\nbreaker_min_calls = 100000",
    ))
    .await;
    h.sims.population.set_faults(Faults {
        timeout: true,
        ..Faults::default()
    });
    let citizens = h
        .sims
        .data
        .samples("population.citizen", 40)
        .expect("samples");
    let enterprises = h
        .sims
        .data
        .samples("business.enterprise", 40)
        .expect("samples");
    let stuck = futures::future::join_all(
        citizens
            .iter()
            .map(|id| h.get_owned(format!("/v1/citizens/{id}"))),
    );
    let meanwhile = async {
        // While population calls hang, its guard holds 4 at the provider and turns the rest away.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = breakers(&h).await;
        let population = connector(&b, "population");
        assert_eq!(population["in_flight"], 4, "{b}");
        assert_eq!(
            population["waiting"], 0,
            "nothing queues past max_wait: {b}"
        );
        assert_eq!(population["rejected_capacity"], 36, "{b}");
        assert_eq!(h.sims.population.calls(POPULATION_OP), 4);

        // Enterprises are served meanwhile, every one.
        let served = futures::future::join_all(
            enterprises
                .iter()
                .map(|code| h.get_owned(format!("/v1/enterprises/{code}"))),
        )
        .await;
        assert!(served.iter().all(|s| *s == 200), "{served:?}");
        assert_eq!(
            h.sims.business.calls(lienthong::sim::business::OPERATION),
            40
        );
        assert_eq!(connector(&breakers(&h).await, "business")["waiting"], 0);
    };
    let (stuck, ()) = tokio::join!(stuck, meanwhile);
    // The four at the provider gave up at the connector's timeout; the rest were refused.
    assert_eq!(stuck.iter().filter(|s| **s == 504).count(), 4, "{stuck:?}");
    assert_eq!(stuck.iter().filter(|s| **s == 503).count(), 36, "{stuck:?}");
}

#[tokio::test]
async fn an_operator_purges_a_key_or_a_dataset_and_the_purge_is_recorded() {
    let h = Harness::start().await;
    let ids = h
        .sims
        .data
        .samples("population.citizen", 3)
        .expect("samples");
    for id in &ids {
        assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 200);
    }
    let purge = |body: Value, token: Option<&'static str>| {
        let mut r = h
            .http
            .post(format!(
                "http://{}/admin/v1/cache/purge",
                h.gateway.admin_addr
            ))
            .json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let refused = purge(json!({"dataset": "population.citizen"}), None)
        .await
        .expect("sent");
    assert_eq!(refused.status(), 401);

    let one = purge(
        json!({"dataset": "population.citizen", "key": ids[0]}),
        Some("demo-operator-token"),
    )
    .await
    .expect("sent");
    assert_eq!(one.status(), 200);
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", ids[0])).await.headers()["x-cache"],
        "miss"
    );
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", ids[1])).await.headers()["x-cache"],
        "hit"
    );

    let all = purge(
        json!({"dataset": "population.citizen"}),
        Some("demo-operator-token"),
    )
    .await
    .expect("sent");
    assert_eq!(all.status(), 200);
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", ids[1])).await.headers()["x-cache"],
        "miss"
    );
    let bad = purge(json!({"dataset": "tax.payer"}), Some("demo-operator-token"))
        .await
        .expect("sent");
    assert_eq!(bad.status(), 404);

    let audit = h.gateway.gateway().audit_handle();
    let purges = audit
        .store()
        .scan(audit.instance(), 0, 1000)
        .await
        .expect("scan")
        .into_iter()
        .filter(|r| r.entry.action == "cache_purge")
        .count();
    assert_eq!(purges, 2);
}

#[tokio::test]
async fn the_callers_grpc_deadline_bounds_the_provider_call() {
    use lienthong::proto::lienthong::*;
    let h = Harness::start().await;
    h.sims.population.set_faults(Faults {
        latency_ms: 2500,
        ..Faults::default()
    });
    let mut grpc = h.grpc().await;
    let mut request = authed(GetCitizenRequest {
        context: context(),
        personal_id: h.sample("population.citizen"),
        fields: vec![],
    });
    // A 1 s deadline, told to the server, where the connector alone would wait 3 s. The
    // server answers a tenth early (100 ms here, the most it keeps back), which must cover
    // writing the call's audit record before the client's own timer fires; with 500 ms
    // (50 ms kept back) a loaded CI machine lost that race now and then.
    request
        .metadata_mut()
        .insert("grpc-timeout", "1000m".parse().expect("metadata"));
    let started = std::time::Instant::now();
    let status = grpc.get_citizen(request).await.expect_err("deadline");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "answered before the provider"
    );
    let audit = h.gateway.gateway().audit_handle();
    let records = audit
        .store()
        .scan(audit.instance(), 0, 10)
        .await
        .expect("scan");
    assert_eq!(records.len(), 1);
    // The caller's own deadline cut the provider call off: its code, not the provider's.
    assert_eq!(records[0].entry.outcome, "deadline_exceeded");
    assert!(
        (800..2000).contains(&records[0].entry.upstream_ms),
        "{:?}",
        records[0].entry
    );
}

#[tokio::test]
async fn admin_roles_limit_what_each_credential_may_do() {
    let h = Harness::start().await;
    let admin = format!("http://{}", h.gateway.admin_addr);
    let get = |path: &str, token: &'static str| {
        h.http
            .get(format!("{admin}{path}"))
            .bearer_auth(token)
            .send()
    };
    let purge = |dataset: &str, token: &'static str| {
        h.http
            .post(format!("{admin}/admin/v1/cache/purge"))
            .bearer_auth(token)
            .json(&json!({ "dataset": dataset }))
            .send()
    };
    // The auditor reads the trail, and nothing else.
    assert_eq!(
        get("/admin/v1/audit/records", "demo-auditor-token")
            .await
            .expect("sent")
            .status(),
        200
    );
    let refused = get("/admin/v1/breakers", "demo-auditor-token")
        .await
        .expect("sent");
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.expect("json");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("operator or provider"),
        "{body}"
    );
    assert_eq!(
        purge("land.parcel", "demo-auditor-token")
            .await
            .expect("sent")
            .status(),
        403
    );

    // The land registry's credential sees and purges only land.
    let b: Value = get("/admin/v1/breakers", "demo-land-provider-token")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = b["connectors"]
        .as_array()
        .expect("connectors")
        .iter()
        .map(|c| c["connector"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["land"]);
    assert_eq!(
        purge("land.parcel", "demo-land-provider-token")
            .await
            .expect("sent")
            .status(),
        200
    );
    let other = purge("population.citizen", "demo-land-provider-token")
        .await
        .expect("sent");
    assert_eq!(other.status(), 403);
    assert_eq!(
        get("/admin/v1/audit/records", "demo-land-provider-token")
            .await
            .expect("sent")
            .status(),
        403
    );

    // The operator may do all of it; the purge is recorded under the credential's name.
    let all: Value = get("/admin/v1/breakers", "demo-operator-token")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(all["connectors"].as_array().expect("connectors").len(), 3);
    let audit = h.gateway.gateway().audit_handle();
    let purgers: Vec<String> = audit
        .store()
        .scan(audit.instance(), 0, 100)
        .await
        .expect("scan")
        .into_iter()
        .filter(|r| r.entry.action == "cache_purge")
        .map(|r| r.entry.actor)
        .collect();
    assert_eq!(purgers, ["demo-land-registry"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_command_shows_breakers_and_purges() {
    let h = Harness::start().await;
    let id = h.sample("population.citizen");
    assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 200);
    let admin = format!("http://{}", h.gateway.admin_addr);
    let run = |args: Vec<String>, token: &'static str| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
                .arg("admin")
                .args(args)
                .env("LIENTHONG_ADMIN_TOKEN", token)
                .env_remove("LIENTHONG_CONFIG")
                .output()
                .expect("runs")
        })
    };
    let out = run(
        vec!["--admin".into(), admin.clone(), "breakers".into()],
        "demo-operator-token",
    )
    .await
    .expect("task");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let population = text
        .lines()
        .find(|l| l.starts_with("population"))
        .expect("row");
    assert!(population.contains("closed"), "{text}");
    assert_eq!(
        population.split_whitespace().nth(3),
        Some("1"),
        "one provider call: {text}"
    );

    let out = run(
        vec![
            "--admin".into(),
            admin.clone(),
            "purge".into(),
            "--dataset".into(),
            "population.citizen".into(),
        ],
        "demo-operator-token",
    )
    .await
    .expect("task");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 records were held"));
    assert_eq!(
        h.get(&format!("/v1/citizens/{id}")).await.headers()["x-cache"],
        "miss"
    );

    let out = run(
        vec!["--admin".into(), admin, "breakers".into()],
        "demo-auditor-token",
    )
    .await
    .expect("task");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
