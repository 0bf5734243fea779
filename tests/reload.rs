//! Configuration changes at run time without a restart: `POST /admin/v1/reload` swaps a new
//! configuration in at once; calls in flight finish, new calls see the new one; an invalid
//! one is refused whole; unchanged connectors keep their cache.

mod common;

use common::*;
use serde_json::Value;

async fn reload(h: &Harness, token: &str) -> (u16, Value) {
    let r = h
        .http
        .post(format!("http://{}/admin/v1/reload", h.gateway.admin_addr))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    (r.status().as_u16(), r.json().await.expect("json"))
}

#[tokio::test]
async fn a_reload_swaps_grants_and_connectors_without_a_restart() {
    let h = Harness::start().await;
    let citizens = h
        .sims
        .data
        .samples("population.citizen", 60)
        .expect("samples");
    let parcel = h.sample("land.parcel");
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", citizens[0]))
            .await
            .status(),
        200
    );
    assert_eq!(
        h.get(&format!("/v1/land-parcels/{parcel}")).await.status(),
        200
    );

    // The land grant goes; lookups keep running while the change lands.
    let grants_file = h.dir.path().join("grants.toml");
    let grants = std::fs::read_to_string(&grants_file).expect("grants");
    let without_land = grants
        .split("[[grant]]")
        .filter(|block| !block.contains("land.parcel"))
        .collect::<Vec<_>>()
        .join("[[grant]]");
    std::fs::write(&grants_file, &without_land).expect("write");
    let running = futures::future::join_all(
        citizens
            .iter()
            .map(|id| h.get_owned(format!("/v1/citizens/{id}"))),
    );
    let ((status, body), statuses) = tokio::join!(reload(&h, "demo-operator-token"), running);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2);
    assert_eq!(body["connectors_rebuilt"].as_array().map(Vec::len), Some(0));
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    assert_eq!(
        h.get(&format!("/v1/land-parcels/{parcel}")).await.status(),
        403
    );
    let cached = h.get(&format!("/v1/citizens/{}", citizens[0])).await;
    assert_eq!(
        cached.headers()["x-cache"],
        "hit",
        "the unchanged connector kept its cache"
    );

    // An invalid file is refused whole; the running configuration stays.
    std::fs::write(
        &grants_file,
        without_land.replace("fields = [\"*\"]", "fields = [\"shoe_size\"]"),
    )
    .expect("write");
    let (status, body) = reload(&h, "demo-operator-token").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or("").contains("shoe_size"),
        "{body}"
    );
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", citizens[1]))
            .await
            .status(),
        200
    );
    assert_eq!(
        h.get(&format!("/v1/land-parcels/{parcel}")).await.status(),
        403
    );

    // A changed connector is rebuilt (its cache starts empty); the others are kept.
    std::fs::write(&grants_file, &grants).expect("write");
    let connectors_file = h.dir.path().join("connectors.toml");
    let connectors = std::fs::read_to_string(&connectors_file).expect("connectors");
    std::fs::write(
        &connectors_file,
        connectors.replacen("ttl_s = 300", "ttl_s = 200", 1),
    )
    .expect("write");
    let (status, body) = reload(&h, "demo-operator-token").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 3);
    assert_eq!(
        body["connectors_rebuilt"],
        serde_json::json!(["population"])
    );
    assert_eq!(
        body["connectors_kept"],
        serde_json::json!(["business", "land"])
    );
    let fresh = h.get(&format!("/v1/citizens/{}", citizens[0])).await;
    assert_eq!(fresh.headers()["x-cache"], "miss");
    assert_eq!(
        h.get(&format!("/v1/land-parcels/{parcel}")).await.status(),
        200,
        "land granted again"
    );

    // Only operators reload, and every attempt is in the audit trail.
    assert_eq!(reload(&h, "demo-auditor-token").await.0, 403);
    let audit = h.gateway.gateway().audit_handle();
    let reloads: Vec<String> = audit
        .store()
        .scan(audit.instance(), 0, 10_000)
        .await
        .expect("scan")
        .into_iter()
        .filter(|r| r.entry.action == "config_reload")
        .map(|r| r.entry.outcome)
        .collect();
    assert_eq!(reloads, ["served", "invalid_request", "served"]);
}

#[tokio::test]
async fn versions_are_kept_rolled_back_and_resumed_after_a_restart() {
    let h = Harness::start().await;
    let parcel = h.sample("land.parcel");
    let grants_file = h.dir.path().join("grants.toml");
    let grants = std::fs::read_to_string(&grants_file).expect("grants");
    let without_land = grants
        .split("[[grant]]")
        .filter(|block| !block.contains("land.parcel"))
        .collect::<Vec<_>>()
        .join("[[grant]]");
    std::fs::write(&grants_file, &without_land).expect("write");
    assert_eq!(reload(&h, "demo-operator-token").await.0, 200);
    assert_eq!(
        h.get(&format!("/v1/land-parcels/{parcel}")).await.status(),
        403
    );

    let admin = format!("http://{}", h.gateway.admin_addr);
    let history = |token: &'static str| {
        h.http
            .get(format!("{admin}/admin/v1/registry/versions"))
            .bearer_auth(token)
            .send()
    };
    let body: Value = history("demo-auditor-token")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(body["running"], 2);
    let changes: Vec<&str> = body["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["change"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(changes.len(), 2);
    assert!(
        changes[0].starts_with("reloaded") && changes[1].starts_with("seeded"),
        "{changes:?}"
    );

    // Back to version 1: land is granted again, as a new version 3.
    let rolled: Value = h
        .http
        .post(format!("{admin}/admin/v1/registry/rollback"))
        .bearer_auth("demo-operator-token")
        .json(&serde_json::json!({ "version": 1 }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(rolled["version"], 3, "{rolled}");
    assert_eq!(
        h.get(&format!("/v1/land-parcels/{parcel}")).await.status(),
        200
    );
    let missing = h
        .http
        .post(format!("{admin}/admin/v1/registry/rollback"))
        .bearer_auth("demo-operator-token")
        .json(&serde_json::json!({ "version": 42 }))
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status(), 400);

    // A restart resumes the registry's latest version (3, land granted), not the files
    // (which still lack the land grant).
    let Harness {
        sims, gateway, dir, ..
    } = h;
    gateway.shutdown().await;
    let built = lienthong::app::build(
        &lienthong::config::Source::File(dir.path().join("gateway.toml")),
        &std::collections::BTreeMap::new(),
    )
    .expect("config");
    let restarted = lienthong::app::start(built).await.expect("restarts");
    assert_eq!(restarted.live.version(), 3);
    let r = reqwest::Client::new()
        .get(format!(
            "http://{}/v1/land-parcels/{parcel}",
            restarted.lookup_addr
        ))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200, "version 3 grants land");
    restarted.shutdown().await;
    drop(sims);
}

#[tokio::test]
async fn grants_are_added_and_removed_through_the_admin_api_with_dry_runs() {
    let h = Harness::start().await;
    let admin = format!("http://{}", h.gateway.admin_addr);
    let parcel = h.sample("land.parcel");
    let grant = serde_json::json!({
        "consumer": "demo-onestop",
        "dataset": "land.parcel",
        "procedures": ["3.*"],
        "fields": ["parcel_id", "area_m2"],
        "legal_basis": "Luật Đất đai 2024",
    });
    let post = |body: Value, query: &'static str, token: &'static str| {
        h.http
            .post(format!("{admin}/admin/v1/grants{query}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let under_3 = || async {
        h.http
            .get(format!("{}/v1/land-parcels/{parcel}", h.base))
            .bearer_auth(API_KEY)
            .header("X-Procedure-Code", "3.000123")
            .header("X-Dossier-Id", DOSSIER)
            .header("X-Officer-Id", OFFICER)
            .send()
            .await
            .expect("sent")
            .status()
            .as_u16()
    };
    assert_eq!(under_3().await, 403, "procedure 3.* is not granted yet");

    // A dry run checks without applying; a bad grant is refused with its problems named.
    let dry: Value = post(grant.clone(), "?dry_run=true", "demo-operator-token")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(dry["valid"], true, "{dry}");
    assert_eq!(under_3().await, 403);
    let mut bad = grant.clone();
    bad["fields"] = serde_json::json!(["parcel_id", "owner_shoe_size"]);
    bad["consumer"] = serde_json::json!("nobody");
    let refused = post(bad, "", "demo-operator-token").await.expect("sent");
    assert_eq!(refused.status(), 400);
    let detail = refused.json::<Value>().await.expect("json")["detail"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        detail.contains("owner_shoe_size") && detail.contains("nobody"),
        "{detail}"
    );

    // The land registry may add a grant on land, not on population.
    let mut population = grant.clone();
    population["dataset"] = serde_json::json!("population.citizen");
    assert_eq!(
        post(population, "", "demo-land-provider-token")
            .await
            .expect("sent")
            .status(),
        403
    );
    let added: Value = post(grant, "", "demo-land-provider-token")
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(added["version"], 2, "{added}");
    assert_eq!(under_3().await, 200, "the new grant serves at once");

    // It is listed, and removed again by its index.
    let listed: Value = h
        .http
        .get(format!("{admin}/admin/v1/grants"))
        .bearer_auth("demo-land-provider-token")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let mine = listed["grants"].as_array().expect("grants");
    assert!(
        mine.iter().all(|g| g["grant"]["dataset"] == "land.parcel"),
        "{listed}"
    );
    let grant_id = mine
        .iter()
        .find(|g| g["grant"]["procedures"][0] == "3.*")
        .expect("the new grant")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let removed = h
        .http
        .delete(format!("{admin}/admin/v1/grants/{grant_id}"))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .expect("sent");
    assert_eq!(removed.status(), 200);
    assert_eq!(under_3().await, 403);

    // Both changes are in the audit chain with what was before and after.
    let audit = h.gateway.gateway().audit_handle();
    let changes: Vec<(String, Value)> = audit
        .store()
        .scan(audit.instance(), 0, 10_000)
        .await
        .expect("scan")
        .into_iter()
        .filter(|r| r.entry.action.starts_with("grant_"))
        .map(|r| {
            (
                r.entry.action,
                serde_json::from_str(&r.entry.detail).expect("json detail"),
            )
        })
        .collect();
    assert_eq!(
        changes.len(),
        3,
        "the refused one, the addition, the removal"
    );
    assert_eq!(changes[1].0, "grant_added");
    assert_eq!(changes[1].1["before"], Value::Null);
    assert_eq!(changes[1].1["after"]["procedures"][0], "3.*");
    assert_eq!(changes[2].0, "grant_removed");
    assert_eq!(changes[2].1["before"]["dataset"], "land.parcel");
}

#[tokio::test]
async fn connectors_are_changed_over_the_admin_api_after_a_probe() {
    let h = Harness::start().await;
    let admin = format!("http://{}", h.gateway.admin_addr);
    let id = h.sample("population.citizen");
    assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 200);
    let put = |body: Value, query: String, token: &'static str| {
        h.http
            .put(format!("{admin}/admin/v1/connectors/population{query}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };

    // Listed with credentials redacted.
    let listed: Value = h
        .http
        .get(format!("{admin}/admin/v1/connectors"))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let population = listed["connectors"]
        .as_array()
        .expect("connectors")
        .iter()
        .find(|c| c["name"] == "population")
        .expect("listed");
    assert_eq!(population["auth"]["secret"], "(set)");
    assert!(!listed.to_string().contains("demo-population-secret"));

    // A bad value is refused in a dry run, naming it.
    let refused = put(
        serde_json::json!({"timeout_ms": 0}),
        "?dry_run=true".into(),
        "demo-operator-token",
    )
    .await
    .expect("sent");
    assert_eq!(refused.status(), 400);
    assert!(
        refused.json::<Value>().await.expect("json")["detail"]
            .as_str()
            .unwrap_or("")
            .contains("timeout_ms")
    );

    // An endpoint nobody answers fails its probe: nothing changes.
    let dead = put(
        serde_json::json!({"endpoint": "http://127.0.0.1:9/csdlqgdc/037/TraCuuThongTinCongDan"}),
        format!("?probe_key={id}"),
        "demo-operator-token",
    )
    .await
    .expect("sent");
    assert_eq!(dead.status(), 400);
    let detail = dead.json::<Value>().await.expect("json")["detail"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(
        detail.contains("probe") && detail.contains("unavailable"),
        "{detail}"
    );
    assert_eq!(
        h.get(&format!("/v1/citizens/{id}")).await.headers()["x-cache"],
        "hit",
        "still the old connector"
    );

    // A good change passes its probe and goes live; the connector is rebuilt.
    let ok: Value = put(
        serde_json::json!({"cache": {"ttl_s": 120}}),
        format!("?probe_key={id}"),
        "demo-operator-token",
    )
    .await
    .expect("sent")
    .json()
    .await
    .expect("json");
    assert_eq!(ok["version"], 2, "{ok}");
    assert_eq!(ok["connectors_rebuilt"], serde_json::json!(["population"]));
    assert_eq!(ok["after"]["cache"]["ttl_s"], 120);
    assert_eq!(
        h.get(&format!("/v1/citizens/{id}")).await.headers()["x-cache"],
        "miss"
    );

    // The land registry may not touch the population connector.
    assert_eq!(
        put(
            serde_json::json!({"timeout_ms": 2000}),
            String::new(),
            "demo-land-provider-token"
        )
        .await
        .expect("sent")
        .status(),
        403
    );
    let audit = h.gateway.gateway().audit_handle();
    let updates: Vec<String> = audit
        .store()
        .scan(audit.instance(), 0, 10_000)
        .await
        .expect("scan")
        .into_iter()
        .filter(|r| r.entry.action == "connector_updated")
        .map(|r| r.entry.outcome)
        .collect();
    assert_eq!(updates, ["invalid_request", "served"]);
}
