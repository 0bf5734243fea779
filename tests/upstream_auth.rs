//! Sector databases join through the admin API, each with the credentials its provider
//! asks for, while the gateway runs: social insurance over REST with OAuth2 client
//! credentials (both client-auth forms) or an API key (in a header, in the query), civil
//! status over SOAP 1.2 with WS-Security. A wrong credential or an unreachable token
//! endpoint is refused at registration, naming what is wrong, and nothing is applied.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const OPERATOR: &str = "demo-operator-token";

async fn admin(h: &Harness, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    h.admin_call(method, path, OPERATOR, body).await
}

/// Registers `dataset` with its connector, probing `probe` first, and grants it to the
/// demo one-stop system.
async fn onboard(h: &Harness, dataset: Value, probe: &str) -> (u16, Value) {
    let name = dataset["name"].as_str().unwrap_or_default().to_owned();
    let (status, body) = admin(
        h,
        Method::POST,
        &format!("/admin/v1/datasets?probe_key={probe}"),
        Some(dataset),
    )
    .await;
    if status != 200 {
        return (status, body);
    }
    h.grant_all(&name).await
}

/// The insured person's record, flattened from the provider's nested answer.
fn insurance(name: &str, h: &Harness, auth: Value) -> Value {
    json!({
        "name": name,
        "description": "An insured person: name, birth date, current employer, health card",
        "key": {"pattern": "[0-9]{10}"},
        "key_field": "ma_so_bhxh",
        "fields": [
            {"name": "ma_so_bhxh", "type": "string"},
            {"name": "ho_ten", "type": "string"},
            {"name": "ngay_sinh", "type": "string"},
            {"name": "don_vi", "type": "string"},
            {"name": "so_the_bhyt", "type": "string"}
        ],
        "connector": {
            "name": format!("{name}-rest"),
            "kind": "rest-json",
            "endpoint": format!("http://{}{}/{{key}}", h.sims.insurance_addr, lienthong::sim::insurance::PATH),
            "timeout_ms": 3000,
            "record_path": "data",
            "data_time": "thoiDiemCapNhat",
            "auth": auth,
            "mapping": {
                "ma_so_bhxh": "maSoBhxh",
                "ho_ten": "hoTen",
                "ngay_sinh": "ngaySinh",
                "don_vi": "donViHienTai.tenDonVi",
                "so_the_bhyt": "theBhyt.soThe"
            }
        }
    })
}

fn oauth2(h: &Harness, client_auth: &str, secret: &str) -> Value {
    json!({
        "scheme": "oauth2",
        "token_url": format!("http://{}{}", h.sims.insurance_addr, lienthong::sim::insurance::TOKEN_PATH),
        "client_id": lienthong::sim::DEFAULT_INSURANCE_CLIENT_ID,
        "client_secret": secret,
        "client_auth": client_auth,
    })
}

/// Social-insurance codes that exist (of citizens old enough to be insured).
fn insured_codes(h: &Harness, n: usize) -> Vec<String> {
    (0..2000)
        .filter_map(|i| lienthong::sim::insurance::code_of(&h.sims.data, i))
        .filter(|c| lienthong::sim::insurance::insured(&h.sims.data, c).is_some())
        .take(n)
        .collect()
}

async fn lookup(h: &Harness, dataset: &str, key: &str) -> (u16, Value) {
    let r = h
        .get(&format!("/v1/datasets/{dataset}/records/{key}"))
        .await;
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test]
async fn social_insurance_joins_with_oauth2_in_both_client_auth_forms() {
    let h = Harness::start().await;
    let codes = insured_codes(&h, 6);
    let secret = lienthong::sim::DEFAULT_INSURANCE_CLIENT_SECRET;
    for (n, (form, counter)) in [
        ("basic", lienthong::sim::insurance::TOKEN_BASIC),
        ("post", lienthong::sim::insurance::TOKEN_POST),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("insurance.person_{form}");
        let (status, body) = onboard(
            &h,
            insurance(&name, &h, oauth2(&h, form, secret)),
            &codes[0],
        )
        .await;
        assert_eq!(status, 200, "{form}: {body}");
        assert_eq!(
            h.sims.insurance.calls(counter),
            1,
            "{form}: the probe fetched one token, in that form"
        );

        // Looked up with no restart; the nested answer is flattened by the mapping.
        let (status, record) = lookup(&h, &name, &codes[1]).await;
        assert_eq!(status, 200, "{form}: {record}");
        let expected = lienthong::sim::insurance::insured(&h.sims.data, &codes[1]).unwrap();
        assert_eq!(record["ho_ten"], expected["hoTen"], "{record}");
        assert_eq!(
            record["don_vi"], expected["donViHienTai"]["tenDonVi"],
            "{record}"
        );
        assert_eq!(record["so_the_bhyt"], expected["theBhyt"]["soThe"]);

        // The provider's own time of the record is passed on.
        let again = h
            .get(&format!("/v1/datasets/{name}/records/{}", codes[1]))
            .await;
        assert_eq!(data_time_of(&again), stated_time(&codes[1]), "{form}");

        // The token is cached: another record, no new token.
        let (status, _) = lookup(&h, &name, &codes[2]).await;
        assert_eq!(status, 200);
        assert_eq!(h.sims.insurance.calls(counter), 1, "{form}: token reused");

        // The provider forgets its tokens: the next call meets a 401, fetches one new
        // token, and succeeds.
        let revoked = h
            .http
            .post(format!(
                "http://{}/_sim/revoke-tokens",
                h.sims.insurance_addr
            ))
            .send()
            .await
            .unwrap();
        assert!(revoked.status().is_success());
        let (status, record) = lookup(&h, &name, &codes[3 + n]).await;
        assert_eq!(status, 200, "{form} after revocation: {record}");
        assert_eq!(
            h.sims.insurance.calls(counter),
            2,
            "{form}: exactly one new token after the 401"
        );
    }
    // The secret never leaves the admin API.
    let (_, listed) = admin(&h, Method::GET, "/admin/v1/connectors", None).await;
    let text = listed.to_string();
    assert!(!text.contains(secret), "{text}");
}

#[tokio::test]
async fn a_wrong_client_secret_or_an_unreachable_token_endpoint_is_refused_and_nothing_applied() {
    let h = Harness::start().await;
    let codes = insured_codes(&h, 1);
    let (status, body) = onboard(
        &h,
        insurance("insurance.wrong", &h, oauth2(&h, "basic", "not-the-secret")),
        &codes[0],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("invalid_client"), "{detail}");
    assert!(detail.contains("nothing was applied"), "{detail}");

    // A token endpoint nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut auth = oauth2(&h, "post", lienthong::sim::DEFAULT_INSURANCE_CLIENT_SECRET);
    auth["token_url"] = json!(format!("http://127.0.0.1:{port}/oauth2/token"));
    let (status, body) = onboard(&h, insurance("insurance.unreachable", &h, auth), &codes[0]).await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("oauth2 token endpoint"), "{detail}");

    let (_, datasets) = admin(&h, Method::GET, "/admin/v1/datasets", None).await;
    let names: Vec<&str> = datasets["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("insurance.")),
        "{names:?}"
    );
    let (_, versions) = admin(&h, Method::GET, "/admin/v1/registry/versions", None).await;
    assert_eq!(versions["running"], 1, "{versions}");

    // A config mistake is named before anything is tried.
    let mut auth = oauth2(&h, "sideways", "x");
    auth.as_object_mut().unwrap().remove("client_id");
    let (status, body) = onboard(&h, insurance("insurance.bad", &h, auth), &codes[0]).await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("auth.client_id: missing"), "{detail}");
    assert!(detail.contains("\"sideways\" is not \"basic\""), "{detail}");
}

#[tokio::test]
async fn an_api_key_goes_in_a_header_or_in_the_query() {
    let h = Harness::start().await;
    let codes = insured_codes(&h, 3);
    let key = lienthong::sim::DEFAULT_INSURANCE_API_KEY;
    for (name, auth) in [
        (
            "insurance.by_header",
            json!({"scheme": "api-key", "header": "X-Api-Key", "api_key": key}),
        ),
        (
            "insurance.by_query",
            json!({"scheme": "api-key", "query": "api_key", "api_key": key}),
        ),
    ] {
        let (status, body) = onboard(&h, insurance(name, &h, auth), &codes[0]).await;
        assert_eq!(status, 200, "{name}: {body}");
        let (status, record) = lookup(&h, name, &codes[1]).await;
        assert_eq!(status, 200, "{name}: {record}");
        assert_eq!(record["ma_so_bhxh"], codes[1].as_str());
    }
    // A wrong key is refused by the provider, and the registration with it.
    let (status, body) = onboard(
        &h,
        insurance(
            "insurance.wrong_key",
            &h,
            json!({"scheme": "api-key", "query": "api_key", "api_key": "guess"}),
        ),
        &codes[0],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or_default().contains("401"),
        "{body}"
    );
    // Both places at once is a config mistake.
    let (status, body) = onboard(
        &h,
        insurance(
            "insurance.both",
            &h,
            json!({"scheme": "api-key", "query": "k", "header": "X-K", "api_key": key}),
        ),
        &codes[0],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("exactly one of `header`"),
        "{body}"
    );
}

fn civil(h: &Harness, name: &str, password: &str) -> Value {
    json!({
        "name": name,
        "description": "A birth registration (khai sinh)",
        "key": {"pattern": "[0-9]{5}-[0-9]{4}-[0-9]{2}-[0-9]{6}"},
        "key_field": "so_dang_ky",
        "fields": [
            {"name": "so_dang_ky", "type": "string"},
            {"name": "ho_ten", "type": "string"},
            {"name": "ngay_sinh", "type": "string"},
            {"name": "so_dinh_danh", "type": "string", "personal_id": true},
            {"name": "ho_ten_me", "type": "string"}
        ],
        "connector": {
            "name": format!("{name}-soap"),
            "kind": "soap-xml",
            "endpoint": format!("http://{}{}", h.sims.civil_addr, lienthong::sim::civil::PATH),
            "timeout_ms": 3000,
            "record_path": "Envelope.Body.TraCuuKhaiSinhResponse.KetQua",
            "auth": {"scheme": "ws-security", "user": lienthong::sim::DEFAULT_CIVIL_USER, "password": password},
            "soap": {
                "version": "1.2",
                "namespace": lienthong::sim::civil::NAMESPACE,
                "operation": lienthong::sim::civil::OPERATION,
                "fields": {"SoDangKy": {"MaCoQuan": "{key.0}", "Nam": "{key.1}", "Quyen": "{key.2}", "So": "{key.3}"}}
            },
            "mapping": {
                "so_dang_ky": "SoDangKy",
                "ho_ten": "HoTen",
                "ngay_sinh": "NgaySinh",
                "so_dinh_danh": "SoDinhDanh",
                "ho_ten_me": "HoTenMe"
            }
        }
    })
}

#[tokio::test]
async fn civil_status_joins_over_soap_1_2_with_ws_security() {
    let h = Harness::start().await;
    let keys: Vec<String> = (0..3)
        .filter_map(|i| lienthong::sim::civil::key_of(&h.sims.data, i))
        .collect();
    // A wrong password: the provider's fault is named, nothing applied.
    let (status, body) = onboard(&h, civil(&h, "civil.birth", "wrong"), &keys[0]).await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("wrong user name or password"), "{detail}");

    let (status, body) = onboard(
        &h,
        civil(&h, "civil.birth", lienthong::sim::DEFAULT_CIVIL_PASSWORD),
        &keys[0],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for key in &keys[1..] {
        let (status, record) = lookup(&h, "civil.birth", key).await;
        assert_eq!(status, 200, "{record}");
        let expected: std::collections::HashMap<_, _> =
            lienthong::sim::civil::birth(&h.sims.data, key)
                .unwrap()
                .into_iter()
                .collect();
        assert_eq!(record["so_dang_ky"], key.as_str());
        assert_eq!(record["ho_ten"], expected["HoTen"].as_str());
        assert_eq!(record["ho_ten_me"], expected["HoTenMe"].as_str());
    }
    // Each call carried a fresh nonce: the simulator refuses a replay, and none was seen.
    assert_eq!(h.sims.civil.calls(lienthong::sim::civil::OPERATION), 3);
    // A SOAP 1.2 ws-security scheme on a REST connector is a config mistake.
    let mut wrong = insurance(
        "insurance.wsse",
        &h,
        json!({"scheme": "ws-security", "user": "u", "password": "p"}),
    );
    wrong["connector"]["name"] = json!("insurance-wsse");
    let (status, body) = onboard(&h, wrong, "0100000000").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("only for soap-xml connectors"),
        "{body}"
    );
}

/// A civil-status registration's number as a composite key: the registering authority,
/// the book's year, the book and the number, each held by its own field (listed first).
fn registration_key() -> Value {
    json!({"parts": [
        {"name": "authority", "pattern": "[0-9]{5}"},
        {"name": "year", "pattern": "[0-9]{4}"},
        {"name": "book", "pattern": "[0-9]{2}"},
        {"name": "number", "pattern": "[0-9]{6}"}
    ]})
}

/// The birth registration again, keyed by a composite of its four parts, each held by its
/// own field and named in the request.
fn civil_composite(h: &Harness, name: &str, element: &str) -> Value {
    json!({
        "name": name,
        "description": "A birth registration, by authority, book year, book and number",
        "key": registration_key(),
        "key_fields": ["co_quan", "nam", "quyen", "so"],
        "fields": [
            {"name": "co_quan", "type": "string"},
            {"name": "nam", "type": "string"},
            {"name": "quyen", "type": "string"},
            {"name": "so", "type": "string"},
            {"name": "ho_ten", "type": "string"}
        ],
        "connector": {
            "name": format!("{}-soap", name.replace('.', "-")),
            "kind": "soap-xml",
            "endpoint": format!("http://{}{}", h.sims.civil_addr, lienthong::sim::civil::PATH),
            "timeout_ms": 3000,
            "record_path": "Envelope.Body.TraCuuKhaiSinhResponse.KetQua",
            "auth": {"scheme": "ws-security", "user": lienthong::sim::DEFAULT_CIVIL_USER, "password": lienthong::sim::DEFAULT_CIVIL_PASSWORD},
            "soap": {
                "version": "1.2",
                "namespace": lienthong::sim::civil::NAMESPACE,
                "operation": lienthong::sim::civil::OPERATION,
                "fields": {"SoDangKy": {"MaCoQuan": "{key.authority}", "Nam": "{key.year}", "Quyen": element, "So": "{key.number}"}}
            },
            "mapping": {"co_quan": "CoQuanDangKy", "nam": "Nam", "quyen": "Quyen", "so": "So", "ho_ten": "HoTen"}
        }
    })
}

#[tokio::test]
async fn a_dataset_keyed_by_a_composite_of_four_fields_joins_and_each_part_is_checked() {
    let h = Harness::start().await;
    let keys: Vec<String> = (0..3)
        .filter_map(|i| lienthong::sim::civil::key_of(&h.sims.data, i))
        .collect();
    // A template naming a part the key does not have is refused, naming the parts it has.
    let (status, body) = onboard(
        &h,
        civil_composite(&h, "civil.registration", "{key.page}"),
        &keys[0],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("no part \"page\"") && detail.contains("authority, year, book, number"),
        "{detail}"
    );
    // So is a field list that does not name one field per part.
    let mut short = civil_composite(&h, "civil.registration", "{key.book}");
    short["key_fields"] = json!(["co_quan", "nam", "so"]);
    let (status, body) = onboard(&h, short, &keys[0]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("4 parts"),
        "{body}"
    );

    let (status, body) = onboard(
        &h,
        civil_composite(&h, "civil.registration", "{key.book}"),
        &keys[0],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let shown = h
        .admin_json(
            "demo-operator-token",
            "/admin/v1/datasets/civil.registration",
        )
        .await;
    assert_eq!(
        shown["key_fields"],
        json!(["co_quan", "nam", "quyen", "so"]),
        "{shown}"
    );
    assert_eq!(shown["key"]["separator"], "-", "{shown}");
    for key in &keys[1..] {
        let (status, record) = lookup(&h, "civil.registration", key).await;
        assert_eq!(status, 200, "{record}");
        let parts: Vec<&str> = key.split('-').collect();
        let held: Vec<Value> = ["co_quan", "nam", "quyen", "so"]
            .iter()
            .map(|f| record[*f].clone())
            .collect();
        let asked: Vec<Value> = parts.iter().map(|p| json!(p)).collect();
        assert_eq!(held, asked, "{record}");
    }
    // Each part is checked before any provider call, and the refusal names the part.
    let calls = h.sims.civil.calls(lienthong::sim::civil::OPERATION);
    let parts: Vec<&str> = keys[1].split('-').collect();
    for (bad, part) in [
        (
            format!("{}-{}-{}-{}", parts[0], &parts[1][2..], parts[2], parts[3]),
            "part year",
        ),
        (
            format!("{}-{}-{}", parts[0], parts[1], parts[3]),
            "has 3 parts",
        ),
        (
            format!("{}-{}-{}-{}", parts[0], parts[1], "A1", parts[3]),
            "part book",
        ),
    ] {
        let (status, problem) = lookup(&h, "civil.registration", &bad).await;
        assert_eq!(status, 400, "{bad}: {problem}");
        assert_eq!(problem["code"], "invalid_key");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(part),
            "{problem}"
        );
    }
    assert_eq!(h.sims.civil.calls(lienthong::sim::civil::OPERATION), calls);
    // A provider answering another registration than asked is a bad response.
    let (status, body) = onboard(
        &h,
        {
            let mut other = civil_composite(&h, "civil.swapped", "{key.book}");
            other["connector"]["mapping"]["so"] = json!("Nam");
            other
        },
        &keys[0],
    )
    .await;
    assert_eq!(status, 400, "the probe refuses it: {body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("does not match the key"),
        "{body}"
    );
}

#[tokio::test]
async fn a_marriage_registry_joins_keyed_by_its_registration_number() {
    let h = Harness::start().await;
    let keys = h
        .sims
        .data
        .samples(lienthong::sim::civil::MARRIAGE_DATASET, 3)
        .expect("samples");
    let dataset = json!({
        "name": "civil.marriage",
        "description": "A marriage registration (kết hôn)",
        "key": registration_key(),
        "key_fields": ["co_quan", "nam", "quyen", "so"],
        "fields": [
            {"name": "co_quan", "type": "string"},
            {"name": "nam", "type": "string"},
            {"name": "quyen", "type": "string"},
            {"name": "so", "type": "string"},
            {"name": "ngay_dang_ky", "type": "string"},
            {"name": "ho_ten_chong", "type": "string"},
            {"name": "so_dinh_danh_chong", "type": "string", "personal_id": true},
            {"name": "ho_ten_vo", "type": "string"},
            {"name": "so_dinh_danh_vo", "type": "string", "personal_id": true}
        ],
        "connector": {
            "name": "civil-marriage-soap",
            "kind": "soap-xml",
            "endpoint": format!("http://{}{}", h.sims.civil_addr, lienthong::sim::civil::PATH),
            "timeout_ms": 3000,
            "record_path": "Envelope.Body.TraCuuKetHonResponse.KetQua",
            "data_time": "ThoiDiemDuLieu",
            "auth": {"scheme": "ws-security", "user": lienthong::sim::DEFAULT_CIVIL_USER, "password": lienthong::sim::DEFAULT_CIVIL_PASSWORD},
            "soap": {
                "version": "1.2",
                "namespace": lienthong::sim::civil::NAMESPACE,
                "operation": lienthong::sim::civil::MARRIAGE_OPERATION,
                "fields": {"SoDangKy": {"MaCoQuan": "{key.authority}", "Nam": "{key.year}", "Quyen": "{key.book}", "So": "{key.number}"}}
            },
            "mapping": {
                "co_quan": "CoQuanDangKy", "nam": "Nam", "quyen": "Quyen", "so": "So",
                "ngay_dang_ky": "NgayDangKy",
                "ho_ten_chong": "HoTenChong", "so_dinh_danh_chong": "SoDinhDanhChong",
                "ho_ten_vo": "HoTenVo", "so_dinh_danh_vo": "SoDinhDanhVo"
            }
        }
    });
    let (status, body) = onboard(&h, dataset, &keys[0]).await;
    assert_eq!(status, 200, "{body}");
    for key in &keys[1..] {
        let (status, record) = lookup(&h, "civil.marriage", key).await;
        assert_eq!(status, 200, "{record}");
        let expected: std::collections::HashMap<_, _> =
            lienthong::sim::civil::marriage(&h.sims.data, key)
                .expect("a marriage")
                .into_iter()
                .collect();
        assert_eq!(record["ho_ten_chong"], expected["HoTenChong"].as_str());
        assert_eq!(record["so_dinh_danh_vo"], expected["SoDinhDanhVo"].as_str());
        // The spouses are the population register's people.
        let (status, wife) = h
            .get(&format!(
                "/v1/citizens/{}",
                record["so_dinh_danh_vo"].as_str().expect("id")
            ))
            .await
            .json::<Value>()
            .await
            .map(|v| (200, v))
            .unwrap_or((0, Value::Null));
        assert_eq!(status, 200);
        assert!(
            wife.to_string().contains(expected["HoTenVo"].as_str()),
            "{wife}"
        );
    }
    // The registry states when each record was last updated, and the answer says so.
    let stated = h
        .get(&format!("/v1/datasets/civil.marriage/records/{}", keys[1]))
        .await;
    assert_eq!(data_time_of(&stated), stated_time(&keys[1]));
    // A birth number is not a marriage number.
    let birth = lienthong::sim::civil::key_of(&h.sims.data, 5).expect("a birth");
    assert_eq!(lookup(&h, "civil.marriage", &birth).await.0, 404);
}

/// Every file under `dir`, read whole, holds `needle` nowhere.
fn nowhere_under(dir: &std::path::Path, needle: &[u8]) -> Result<(), String> {
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            nowhere_under(&path, needle)?;
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            return Err(format!("{} holds it", path.display()));
        }
    }
    Ok(())
}

#[tokio::test]
async fn secrets_sent_through_the_api_are_stored_sealed_and_need_a_secrets_key() {
    let h = Harness::start().await;
    let codes = insured_codes(&h, 2);
    // A secret no other part of the system knows, so that finding it means it leaked.
    let secret = lienthong::sim::DEFAULT_INSURANCE_CLIENT_SECRET;
    let (status, body) = onboard(
        &h,
        insurance("insurance.sealed", &h, oauth2(&h, "basic", secret)),
        &codes[0],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, listed) = admin(&h, Method::GET, "/admin/v1/connectors", None).await;
    assert!(
        listed.to_string().contains("\"client_secret\":\"(set)\""),
        "{listed}"
    );
    let running = h.gateway.live.current();
    let connectors = &running
        .config()
        .settings
        .files
        .iter()
        .find(|(role, _)| role == "connectors")
        .expect("the connectors file")
        .1;
    assert!(
        connectors.contains("client_secret = \"sealed:v1:"),
        "{connectors}"
    );
    assert!(!connectors.contains(secret));
    // The registry, the audit trail and every other file the gateway wrote.
    nowhere_under(h.dir.path(), secret.as_bytes()).expect("the secret is stored sealed only");
    let (status, record) = lookup(&h, "insurance.sealed", &codes[1]).await;
    assert_eq!(status, 200, "{record}");

    // A changed secret is sealed too; a wrong one is refused by the probe, nothing applied.
    let (status, body) = admin(
        &h,
        Method::PATCH,
        &format!(
            "/admin/v1/connectors/insurance.sealed-rest?probe_key={}",
            codes[0]
        ),
        Some(json!({"auth": {"client_secret": "rotated-wrong"}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid_client")
    );
    nowhere_under(h.dir.path(), b"rotated-wrong").expect("a refused secret is not kept either");

    // A gateway with no secrets key refuses an inline secret, naming the ways that work;
    // a secret in a file on the gateway's host is taken.
    let h = Harness::start_with(|name, text| match name {
        "gateway.toml" => text
            .lines()
            .filter(|l| !l.starts_with("secrets_key"))
            .map(|l| format!("{l}\n"))
            .collect(),
        _ => text,
    })
    .await;
    let (status, body) = onboard(
        &h,
        insurance("insurance.unsealed", &h, oauth2(&h, "basic", secret)),
        &codes[0],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("auth.client_secret") && detail.contains("secrets_key"),
        "{detail}"
    );
    let file = h.dir.path().join("insurance-secret.txt");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let mut auth = oauth2(&h, "basic", secret);
    auth.as_object_mut().unwrap().remove("client_secret");
    auth["client_secret_file"] = json!(file.display().to_string());
    let (status, body) = onboard(&h, insurance("insurance.from_file", &h, auth), &codes[0]).await;
    assert_eq!(status, 200, "{body}");
}

/// The insured person's whole record: the employer as a nested record, the contribution
/// periods as repeated records.
fn insurance_nested(h: &Harness, name: &str) -> Value {
    let mut d = insurance(
        name,
        h,
        json!({"scheme": "api-key", "header": "X-Api-Key", "api_key": lienthong::sim::DEFAULT_INSURANCE_API_KEY}),
    );
    d["fields"] = json!([
        {"name": "ma_so_bhxh", "type": "string"},
        {"name": "ho_ten", "type": "string"},
        {"name": "don_vi", "type": "record", "fields": [
            {"name": "ten", "type": "string"},
            {"name": "ma_so_doanh_nghiep", "type": "string"}
        ]},
        {"name": "qua_trinh_dong", "type": "record", "repeated": true, "fields": [
            {"name": "tu_thang", "type": "string"},
            {"name": "den_thang", "type": "string"},
            {"name": "muc_luong", "type": "int64"}
        ]}
    ]);
    d["connector"]["mapping"] = json!({
        "ma_so_bhxh": "maSoBhxh",
        "ho_ten": "hoTen",
        "don_vi": {"path": "donViHienTai", "fields": {"ten": "tenDonVi", "ma_so_doanh_nghiep": "maSoDoanhNghiep"}},
        "qua_trinh_dong": {"each": "quaTrinhDong", "fields": {"tu_thang": "tuThang", "den_thang": "denThang", "muc_luong": "mucLuong"}}
    });
    d
}

#[tokio::test]
async fn a_registered_dataset_may_have_nested_and_repeated_records() {
    let h = Harness::start().await;
    let codes = insured_codes(&h, 2);

    // A record with no fields, and a mapping into a field the nested record lacks: refused.
    let mut bad = insurance_nested(&h, "insurance.bad");
    bad["fields"][2]["fields"] = json!([]);
    let (status, body) = onboard(&h, bad, &codes[0]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("field[2].fields: a record needs its fields"),
        "{body}"
    );
    let mut bad = insurance_nested(&h, "insurance.bad");
    bad["connector"]["mapping"]["don_vi"]["fields"]["dia_chi"] = json!("diaChi");
    let (status, body) = onboard(&h, bad, &codes[0]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("has no field \"dia_chi\""),
        "{body}"
    );

    let (status, body) = onboard(&h, insurance_nested(&h, "insurance.full"), &codes[0]).await;
    assert_eq!(status, 200, "{body}");
    let (status, record) = lookup(&h, "insurance.full", &codes[1]).await;
    assert_eq!(status, 200, "{record}");
    let expected = lienthong::sim::insurance::insured(&h.sims.data, &codes[1]).unwrap();
    assert_eq!(
        record["don_vi"]["ten"], expected["donViHienTai"]["tenDonVi"],
        "{record}"
    );
    let periods = record["qua_trinh_dong"].as_array().expect("a list");
    let sent = expected["quaTrinhDong"].as_array().unwrap();
    assert_eq!(periods.len(), sent.len(), "{record}");
    for (got, sent) in periods.iter().zip(sent) {
        assert_eq!(got["tu_thang"], sent["tuThang"]);
        // int64 travels as a string, as proto3's JSON mapping writes it.
        assert_eq!(
            got["muc_luong"],
            json!(sent["mucLuong"].to_string()),
            "{got}"
        );
    }
    // The admin API shows the schema as it was given.
    let (_, shown) = admin(&h, Method::GET, "/admin/v1/datasets/insurance.full", None).await;
    let fields = &shown["fields"];
    assert_eq!(fields[2]["type"], "record", "{shown}");
    assert_eq!(
        fields[2]["fields"][1]["name"], "ma_so_doanh_nghiep",
        "{shown}"
    );
    assert_eq!(fields[3]["repeated"], true, "{shown}");
}
