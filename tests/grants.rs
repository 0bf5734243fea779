//! Grants decide what leaves: dataset, procedure and fields, deny by default; discovery shows
//! a consumer what its grants allow.

mod common;

use common::*;
use lienthong::proto::lienthong::*;
use serde_json::Value;

/// The demo consumer may read only two citizen fields, for procedure 1.001612 and the
/// 2.000* family, and nothing of the land registry.
const NARROW_GRANTS: &str = r#"
[[grant]]
consumer = "demo-onestop"
dataset = "population.citizen"
procedures = ["1.001612", "2.000*"]
fields = ["full_name", "date_of_birth"]
legal_basis = "Nghị định 47/2020/NĐ-CP"

[[grant]]
consumer = "demo-onestop"
dataset = "business.enterprise"
procedures = ["1.*"]
fields = ["*"]
legal_basis = "Nghị định 47/2020/NĐ-CP"
"#;

async fn narrow() -> Harness {
    Harness::start_with(|name, text| {
        if name == "grants.toml" {
            NARROW_GRANTS.to_owned()
        } else {
            text
        }
    })
    .await
}

async fn get_with(h: &Harness, path: &str, procedure: &str) -> (u16, Value) {
    let r = h
        .http
        .get(format!("{}{path}", h.base))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", procedure)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .send()
        .await
        .expect("sent");
    (r.status().as_u16(), r.json().await.expect("json"))
}

#[tokio::test]
async fn no_field_list_returns_exactly_the_granted_fields() {
    let h = narrow().await;
    let id = h.sample("population.citizen");
    let (status, body) = get_with(&h, &format!("/v1/citizens/{id}"), PROCEDURE).await;
    assert_eq!(status, 200);
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["date_of_birth", "full_name"]);

    let mut grpc = h.grpc().await;
    let reply = grpc
        .get_citizen(authed(GetCitizenRequest {
            context: context(),
            personal_id: id,
            fields: vec![],
        }))
        .await
        .expect("served")
        .into_inner();
    let record = reply.record.expect("record");
    assert!(!record.full_name.is_empty() && !record.date_of_birth.is_empty());
    assert_eq!(
        record.personal_id, "",
        "a field outside the grant never leaves"
    );
    assert_eq!(record.permanent_residence, None);
}

#[tokio::test]
async fn every_denial_is_permission_denied_naming_what() {
    let h = narrow().await;
    let id = h.sample("population.citizen");
    let denied = |(status, body): (u16, Value), what: &str| {
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["code"], "permission_denied");
        let detail = body["detail"].as_str().expect("detail");
        assert!(detail.contains(what), "{detail} should name {what}");
    };
    denied(
        get_with(
            &h,
            &format!("/v1/citizens/{id}?fields=full_name,personal_id"),
            PROCEDURE,
        )
        .await,
        "personal_id",
    );
    denied(
        get_with(&h, &format!("/v1/citizens/{id}"), "1.001613").await,
        "1.001613",
    );
    denied(
        get_with(
            &h,
            &format!("/v1/land-parcels/{}", h.sample("land.parcel")),
            PROCEDURE,
        )
        .await,
        "land.parcel",
    );
    let (status, _) = get_with(&h, &format!("/v1/citizens/{id}"), "2.000884").await;
    assert_eq!(status, 200, "a prefix grant admits the family");
    assert_eq!(
        h.sims.land.calls("TraCuuThuaDat"),
        0,
        "a denied lookup never reaches the provider"
    );

    let mut grpc = h.grpc().await;
    let status = grpc
        .get_citizen(authed(GetCitizenRequest {
            context: context(),
            personal_id: id,
            fields: vec!["spouse".into()],
        }))
        .await
        .expect_err("denied");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("spouse"));
}

#[tokio::test]
async fn capabilities_show_what_the_grants_allow() {
    let h = narrow().await;
    let r = h
        .http
        .get(format!("{}/v1/capabilities", h.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["consumer"], "demo-onestop");
    assert_eq!(body["datasets"][0]["dataset"], "population.citizen");
    assert_eq!(
        body["datasets"][0]["fields"],
        serde_json::json!(["full_name", "date_of_birth"])
    );
    assert_eq!(
        body["datasets"][0]["procedures"],
        serde_json::json!(["1.001612", "2.000*"])
    );
    assert_eq!(body["datasets"].as_array().expect("list").len(), 2);

    let anonymous = h
        .http
        .get(format!("{}/v1/capabilities", h.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);

    let mut grpc = h.grpc().await;
    let caps = grpc
        .list_capabilities(authed(ListCapabilitiesRequest {}))
        .await
        .expect("caps")
        .into_inner();
    assert_eq!(caps.consumer, "demo-onestop");
    let business = caps
        .datasets
        .iter()
        .find(|d| d.dataset == "business.enterprise")
        .expect("business");
    assert!(
        business
            .fields
            .contains(&"legal_representatives".to_owned()),
        "`*` expands to every field"
    );
}

/// A verify-only grant: the consumer may check a name and a birth date, never read them.
const VERIFY_ONLY: &str = r#"
[[grant]]
consumer = "demo-onestop"
dataset = "population.citizen"
procedures = ["1.*"]
fields = ["full_name", "date_of_birth"]
modes = ["verify"]
legal_basis = "Nghị định 47/2020/NĐ-CP"
"#;

async fn verify_rest(h: &Harness, key: &str, claims: Value) -> (u16, Value) {
    let r = h
        .http
        .post(format!("{}/v1/datasets/population.citizen/verify", h.base))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .json(&serde_json::json!({ "key": key, "claims": claims }))
        .send()
        .await
        .expect("sent");
    (r.status().as_u16(), r.json().await.expect("json"))
}

#[tokio::test]
async fn verify_answers_match_per_claim_and_discloses_nothing_else() {
    let h = Harness::start_with(|name, text| {
        if name == "grants.toml" {
            VERIFY_ONLY.to_owned()
        } else {
            text
        }
    })
    .await;
    let id = h.sample("population.citizen");
    let citizen = h
        .sims
        .data
        .citizen(&lienthong::domain::ids::PersonalId::parse(&id, 2026).expect("valid"))
        .expect("exists");

    let (status, body) = get_with(&h, &format!("/v1/citizens/{id}"), PROCEDURE).await;
    assert_eq!(status, 403, "verify does not allow fetch");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("mode fetch")
    );

    let claims = serde_json::json!({ "full_name": citizen.full_name.to_uppercase(), "date_of_birth": citizen.date_of_birth });
    let (status, body) = verify_rest(&h, &id, claims).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({ "match": true, "fields": { "full_name": true, "date_of_birth": true } })
    );

    let (_, body) = verify_rest(&h, &id, serde_json::json!({ "full_name": "Nguyễn Không Phải", "date_of_birth": citizen.date_of_birth })).await;
    assert_eq!(
        body,
        serde_json::json!({ "match": false, "fields": { "full_name": false, "date_of_birth": true } })
    );

    let (status, body) = verify_rest(&h, &id, serde_json::json!({ "personal_id": id })).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("permission_denied")),
        "claims only on granted fields"
    );
    let (status, body) = verify_rest(&h, &id, serde_json::json!({ "shoe_size": 42 })).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = verify_rest(&h, &id, serde_json::json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) =
        verify_rest(&h, "001090000001", serde_json::json!({ "full_name": "x" })).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));

    let mut grpc = h.grpc().await;
    let claims = [(
        "full_name".to_owned(),
        pbjson_types::Value::from(citizen.full_name.clone()),
    )]
    .into_iter()
    .collect();
    let reply = grpc
        .verify(authed(VerifyRequest {
            context: context(),
            dataset: "population.citizen".into(),
            key: id,
            claims,
        }))
        .await
        .expect("verify")
        .into_inner();
    assert!(reply.r#match);
    assert_eq!(reply.fields.get("full_name"), Some(&true));
}

#[tokio::test]
async fn a_grant_outside_its_validity_is_denied() {
    let expired = r#"
[[grant]]
consumer = "demo-onestop"
dataset = "population.citizen"
procedures = ["1.*"]
fields = ["*"]
valid_from = "2020-01-01"
valid_until = "2024-12-31"
legal_basis = "Thỏa thuận kết nối 2020-2024"

[[grant]]
consumer = "demo-onestop"
dataset = "business.enterprise"
procedures = ["1.*"]
fields = ["*"]
valid_from = "2020-01-01"
legal_basis = "Nghị định 47/2020/NĐ-CP"
"#;
    let h = Harness::start_with(|name, text| {
        if name == "grants.toml" {
            expired.to_owned()
        } else {
            text
        }
    })
    .await;
    let (status, body) = get_with(
        &h,
        &format!("/v1/citizens/{}", h.sample("population.citizen")),
        PROCEDURE,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("not in force")
    );
    let (status, _) = get_with(
        &h,
        &format!("/v1/enterprises/{}", h.sample("business.enterprise")),
        PROCEDURE,
    )
    .await;
    assert_eq!(
        status, 200,
        "an open-ended grant in force since 2020 admits"
    );
    assert_eq!(h.sims.population.calls("TraCuuThongTinCongDan"), 0);
    let caps: Value = h
        .http
        .get(format!("{}/v1/capabilities", h.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(caps["datasets"][0]["valid_until"], "2024-12-31");
    assert_eq!(caps["datasets"][1]["valid_until"], Value::Null);
}
