//! Consumers and their API keys through the admin API, on a running gateway: a consumer is
//! created and given a key, which works at once; a rotated key works until its set time and
//! no longer; a revoked key stops at once; neither a reload nor a rollback brings back a
//! revoked key or drops an issued one; a consumer's administrator manages its own keys and
//! nothing else; grants are addressed by id and every object refuses a change made against
//! a version it is no longer at.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const OPERATOR: &str = "demo-operator-token";
const ONESTOP_ADMIN: &str = "test-onestop-admin-token";
const OPERATOR_NAME: &str = "operator:61112491";

fn onestop_admin() -> String {
    format!(
        "\n[[admin.token]]\nname = \"onestop-admin\"\nsha256 = \"{}\"\nrole = \"consumer_admin\"\nconsumer = \"demo-onestop\"\n",
        hex::encode(Sha256::digest(ONESTOP_ADMIN.as_bytes()))
    )
}

async fn start() -> Harness {
    let extra = onestop_admin();
    Harness::start_with(move |name, text| match name {
        "gateway.toml" => text.replace("\n[audit]", &format!("{extra}\n[audit]")),
        _ => text,
    })
    .await
}

/// A population lookup with `key` as the API key: (status, problem detail).
async fn lookup_with(h: &Harness, key: &str) -> (u16, String) {
    let id = h.sample("population.citizen");
    let r = with_context(
        h.http
            .get(format!("{}/v1/citizens/{id}", h.base))
            .bearer_auth(key),
    )
    .send()
    .await
    .expect("sent");
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body["detail"].as_str().unwrap_or("").to_owned())
}

fn in_ms(ms: i64) -> String {
    lienthong::domain::date::iso_ms(lienthong::domain::date::now_ms() + ms)
}

#[tokio::test]
async fn a_consumer_is_created_and_its_keys_issued_rotated_and_revoked_without_a_restart() {
    let h = start().await;
    let (status, created) = h
        .admin_call(
            Method::POST,
            "/admin/v1/consumers",
            OPERATOR,
            Some(
                json!({"id": "motcua-test", "name": "Hệ thống một cửa (test)", "quota": "600/min"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let (status, again) = h
        .admin_call(
            Method::POST,
            "/admin/v1/consumers",
            OPERATOR,
            Some(json!({"id": "motcua-test", "name": "twice"})),
        )
        .await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("already_exists"))
    );
    let (status, _) = h
        .admin_call(
            Method::POST,
            "/admin/v1/grants",
            OPERATOR,
            Some(json!({
                "consumer": "motcua-test", "dataset": "population.citizen",
                "procedures": [PROCEDURE], "fields": ["*"], "legal_basis": "Nghị định 47/2024/NĐ-CP",
            })),
        )
        .await;
    assert_eq!(status, 200);

    // A key is shown once and works at once; the registry and the answers keep its hash only.
    let (status, issued) = h
        .admin_call(
            Method::POST,
            "/admin/v1/consumers/motcua-test/keys",
            OPERATOR,
            Some(json!({"label": "server 1"})),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    let first = issued["key"].as_str().expect("the key").to_owned();
    let first_id = issued["issued"]["id"].as_str().expect("id").to_owned();
    assert!(first.starts_with("lt_") && first.len() > 40, "{first}");
    assert_eq!(lookup_with(&h, &first).await.0, 200);
    let shown = h
        .admin_json(OPERATOR, "/admin/v1/consumers/motcua-test")
        .await;
    let sha = hex::encode(Sha256::digest(first.as_bytes()));
    assert!(!shown.to_string().contains(&sha), "{shown}");
    assert!(!shown.to_string().contains(&first), "{shown}");
    assert_eq!(shown["keys"][0]["state"], "active", "{shown}");
    assert_eq!(shown["source"], "api");

    // An expiry in the past is refused, naming the field.
    let (status, past) = h
        .admin_call(
            Method::POST,
            "/admin/v1/consumers/motcua-test/keys",
            OPERATOR,
            Some(json!({"expires": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        past["detail"].as_str().unwrap_or("").contains("expires"),
        "{past}"
    );

    // Rotation: the old key works until the time set, the new one at once.
    let (status, rotated) = h
        .admin_call(
            Method::POST,
            &format!("/admin/v1/consumers/motcua-test/keys/{first_id}/rotate"),
            OPERATOR,
            Some(json!({"old_valid_until": in_ms(2_000)})),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["key"].as_str().expect("new key").to_owned();
    let second_id = rotated["issued"]["id"].as_str().expect("id").to_owned();
    assert_eq!(lookup_with(&h, &first).await.0, 200, "the overlap");
    assert_eq!(lookup_with(&h, &second).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2_300)).await;
    let (status, detail) = lookup_with(&h, &first).await;
    assert_eq!(status, 401);
    assert!(detail.contains("no longer valid"), "{detail}");
    assert_eq!(lookup_with(&h, &second).await.0, 200);

    // A version to roll back to: before the revocation and before a third key.
    let versions = h.admin_json(OPERATOR, "/admin/v1/registry/versions").await;
    let before = versions["running"].as_i64().expect("running");

    // Revocation takes effect at once.
    let (status, revoked) = h
        .admin_call(
            Method::DELETE,
            &format!("/admin/v1/consumers/motcua-test/keys/{second_id}"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["revoked"]["state"], "revoked");
    assert_eq!(lookup_with(&h, &second).await.0, 401);
    let (status, third) = h
        .admin_call(
            Method::POST,
            "/admin/v1/consumers/motcua-test/keys",
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let third = third["key"].as_str().expect("key").to_owned();

    // Neither a rollback nor a reload brings back the revoked key or drops the new one;
    // the consumer made through the API stays too. (A reload runs the grants file as it is
    // on disk, without the grant added above: the key is known, the lookup not granted.)
    for (path, body, third_status) in [
        (
            "/admin/v1/registry/rollback",
            Some(json!({"version": before})),
            200,
        ),
        ("/admin/v1/reload", None, 403),
    ] {
        let (status, answer) = h.admin_call(Method::POST, path, OPERATOR, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let (status, detail) = lookup_with(&h, &second).await;
        assert_eq!(status, 401, "after {path}: {detail}");
        let (status, detail) = lookup_with(&h, &third).await;
        assert_eq!(status, third_status, "after {path}: {detail}");
    }
    let (status, _) = h
        .admin_call(
            Method::POST,
            "/admin/v1/grants",
            OPERATOR,
            Some(json!({
                "consumer": "motcua-test", "dataset": "population.citizen",
                "procedures": [PROCEDURE], "fields": ["*"], "legal_basis": "Nghị định 47/2024/NĐ-CP",
            })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(lookup_with(&h, &third).await.0, 200);

    // Switched off, the consumer's keys are refused; switched on, they work again.
    let shown = h
        .admin_json(OPERATOR, "/admin/v1/consumers/motcua-test")
        .await;
    let etag = shown["etag"].as_str().expect("etag").to_owned();
    let (status, off) = h
        .admin_call(
            Method::PUT,
            "/admin/v1/consumers/motcua-test",
            OPERATOR,
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{off}");
    let (status, detail) = lookup_with(&h, &third).await;
    assert_eq!(status, 403);
    assert!(detail.contains("switched off"), "{detail}");
    // A change against the version before is refused, naming the current one.
    let stale = h
        .http
        .put(format!(
            "http://{}/admin/v1/consumers/motcua-test",
            h.gateway.admin_addr
        ))
        .bearer_auth(OPERATOR)
        .header("If-Match", format!("\"{etag}\""))
        .json(&json!({"disabled": false}))
        .send()
        .await
        .expect("sent");
    assert_eq!(stale.status(), 412);
    let body: Value = stale.json().await.expect("json");
    assert_eq!(body["code"], "precondition_failed");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains(off["etag"].as_str().expect("etag")),
        "{body}"
    );
    assert_eq!(lookup_with(&h, &third).await.0, 403, "nothing applied");

    // Every step is in the audit trail, with who did it.
    let trail = h
        .admin_json(
            OPERATOR,
            &format!("/admin/v1/audit/records?consumer={OPERATOR_NAME}&limit=200"),
        )
        .await;
    let actions: Vec<&str> = trail["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for action in [
        "consumer_created",
        "key_issued",
        "key_rotated",
        "key_revoked",
        "consumer_updated",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let rotation = trail["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["action"] == "key_rotated")
        .expect("rotation");
    let detail: Value =
        serde_json::from_str(rotation["detail"].as_str().expect("detail")).expect("json");
    assert_eq!(detail["before"]["state"], "active", "{detail}");
    assert!(detail["after"]["old"]["expires"].is_string(), "{detail}");
    assert!(
        !rotation.to_string().contains(&second),
        "no key in the trail"
    );
}

#[tokio::test]
async fn a_consumer_admin_manages_its_own_keys_and_nothing_else() {
    let h = start().await;
    let (status, listed) = h
        .admin_call(Method::GET, "/admin/v1/consumers", ONESTOP_ADMIN, None)
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = listed["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["demo-onestop"]);
    // Its file key has an id it can be revoked by.
    let file_key = listed["consumers"][0]["keys"][0]["id"]
        .as_str()
        .expect("a file key")
        .to_owned();
    assert!(file_key.starts_with("f-"), "{file_key}");

    for (method, path, body) in [
        (Method::POST, "/admin/v1/consumers/demo-portal/keys", None),
        (Method::GET, "/admin/v1/consumers/demo-portal", None),
        (
            Method::POST,
            "/admin/v1/consumers",
            Some(json!({"id": "mine", "name": "mine"})),
        ),
        (
            Method::PUT,
            "/admin/v1/datasets/population.citizen",
            Some(json!({"disabled": true})),
        ),
    ] {
        let (status, refused) = h.admin_call(method, path, ONESTOP_ADMIN, body).await;
        assert_eq!(status, 403, "{path}: {refused}");
    }

    // Its own: a new key, then the file's key revoked; the new one carries on.
    let (status, issued) = h
        .admin_call(
            Method::POST,
            "/admin/v1/consumers/demo-onestop/keys",
            ONESTOP_ADMIN,
            Some(json!({"expires": in_ms(3_600_000)})),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    let key = issued["key"].as_str().expect("key").to_owned();
    assert_eq!(lookup_with(&h, API_KEY).await.0, 200);
    let (status, revoked) = h
        .admin_call(
            Method::DELETE,
            &format!("/admin/v1/consumers/demo-onestop/keys/{file_key}"),
            ONESTOP_ADMIN,
            None,
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(lookup_with(&h, API_KEY).await.0, 401);
    assert_eq!(lookup_with(&h, &key).await.0, 200);
    let (status, twice) = h
        .admin_call(
            Method::DELETE,
            &format!("/admin/v1/consumers/demo-onestop/keys/{file_key}"),
            ONESTOP_ADMIN,
            None,
        )
        .await;
    assert_eq!(status, 409, "{twice}");
    // A consumer of the file is changed in the file.
    let (status, refused) = h
        .admin_call(
            Method::PUT,
            "/admin/v1/consumers/demo-onestop",
            OPERATOR,
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or("")
            .contains("consumers file"),
        "{refused}"
    );
}

#[tokio::test]
async fn grants_are_addressed_by_id_and_stale_versions_are_refused() {
    let h = start().await;
    let admin = format!("http://{}", h.gateway.admin_addr);
    let listed = h.admin_json(OPERATOR, "/admin/v1/grants").await;
    let grants = listed["grants"].as_array().expect("grants");
    assert!(!grants.is_empty());
    for g in grants {
        let id = g["id"].as_str().expect("id");
        assert!(id.starts_with("g-"), "{g}");
        assert!(g.get("index").is_none());
    }
    let id = grants[0]["id"].as_str().expect("id").to_owned();
    let etag = grants[0]["etag"].as_str().expect("etag").to_owned();

    // The old position addressing is refused, naming the id form.
    let (status, by_index) = h
        .admin_call(
            Method::PUT,
            "/admin/v1/grants/0",
            OPERATOR,
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        by_index["detail"]
            .as_str()
            .unwrap_or("")
            .contains("g-3f9a2c1b7d"),
        "{by_index}"
    );

    // One grant, with its version as ETag.
    let one = h
        .http
        .get(format!("{admin}/admin/v1/grants/{id}"))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("sent");
    assert_eq!(one.status(), 200);
    assert_eq!(
        one.headers()["etag"].to_str().expect("ascii"),
        format!("\"{etag}\"")
    );

    // A change against the current version applies; the same again is stale.
    let change = |tag: String, body: Value| {
        h.http
            .put(format!("{admin}/admin/v1/grants/{id}"))
            .bearer_auth(OPERATOR)
            .header("If-Match", tag)
            .json(&body)
            .send()
    };
    let applied = change(format!("\"{etag}\""), json!({"quota": "6000/min"}))
        .await
        .expect("sent");
    assert_eq!(applied.status(), 200);
    let new_etag = applied.headers()["etag"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_ne!(new_etag, format!("\"{etag}\""));
    let stale = change(format!("\"{etag}\""), json!({"disabled": true}))
        .await
        .expect("sent");
    assert_eq!(stale.status(), 412);
    let body: Value = stale.json().await.expect("json");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains(new_etag.trim_matches('"')),
        "{body}"
    );
    let now = h
        .admin_json(OPERATOR, &format!("/admin/v1/grants/{id}"))
        .await;
    assert_ne!(now["grant"]["disabled"], true, "nothing applied");

    // The id stays when a grant before it goes.
    let later = listed["grants"]
        .as_array()
        .expect("grants")
        .last()
        .expect("one")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _) = h
        .admin_call(
            Method::DELETE,
            &format!("/admin/v1/grants/{id}"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, still) = h
        .admin_call(
            Method::GET,
            &format!("/admin/v1/grants/{later}"),
            OPERATOR,
            None,
        )
        .await;
    assert_eq!(status, 200, "{still}");

    // Datasets and connectors refuse stale versions too, over gRPC as well.
    let dataset = h
        .admin_json(OPERATOR, "/admin/v1/datasets/population.citizen")
        .await;
    assert!(dataset["etag"].is_string(), "{dataset}");
    let stale = h
        .http
        .put(format!("{admin}/admin/v1/datasets/population.citizen"))
        .bearer_auth(OPERATOR)
        .header("If-Match", "\"0000000000000000\"")
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("sent");
    assert_eq!(stale.status(), 412);
    let body: Value = stale.json().await.expect("json");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains(dataset["etag"].as_str().expect("etag")),
        "{body}"
    );
    let current = h
        .http
        .put(format!(
            "{admin}/admin/v1/datasets/population.citizen?dry_run=true"
        ))
        .bearer_auth(OPERATOR)
        .header(
            "If-Match",
            format!("\"{}\"", dataset["etag"].as_str().expect("etag")),
        )
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("sent");
    assert_eq!(current.status(), 200, "the current version is accepted");
    let mut client =
        lienthong::proto::lienthong::admin_service_client::AdminServiceClient::connect(
            admin.clone(),
        )
        .await
        .expect("connects");
    let request = |message| {
        let mut r = tonic::Request::new(message);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {OPERATOR}").parse().expect("ascii"),
        );
        r
    };
    let refused = client
        .update_connector(request(lienthong::proto::lienthong::AdminRequest {
            name: "population".into(),
            body: Some(serde_json::from_value(json!({"timeout_ms": 2500})).expect("struct")),
            expected_version: "0000000000000000".into(),
            ..Default::default()
        }))
        .await
        .expect_err("stale");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    #[allow(deprecated)]
    let by_index = client
        .remove_grant(request(lienthong::proto::lienthong::AdminRequest {
            index: 1,
            ..Default::default()
        }))
        .await
        .expect_err("index");
    assert_eq!(by_index.code(), tonic::Code::InvalidArgument);
    assert!(by_index.message().contains("id"), "{}", by_index.message());
}
