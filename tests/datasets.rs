//! Data-owner agencies manage datasets, connectors and grants at run time: a provider
//! registers a new REST/JSON dataset against the business simulator and a consumer looks it
//! up with no restart; another agency's datasets are out of reach; lookups running during
//! the changes all succeed; a bad change leaves the running configuration; rollback; every
//! change is in the audit chain, and it verifies.

mod common;

use common::*;
use lienthong::audit::verify::verify;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const BUSINESS_PROVIDER: &str = "test-business-provider-token";
const LAND_PROVIDER: &str = "demo-land-provider-token";
const OPERATOR: &str = "demo-operator-token";
const AUDITOR: &str = "demo-auditor-token";

fn business_provider() -> String {
    format!(
        "\n[[admin.token]]\nname = \"business-registry\"\nsha256 = \"{}\"\nrole = \"provider\"\nagency = \"business\"\n",
        hex::encode(Sha256::digest(BUSINESS_PROVIDER.as_bytes()))
    )
}

/// The new dataset: a brief view of an enterprise from the business registry's REST API,
/// keyed by a pattern rather than a built-in validator.
fn brief(endpoint: &str) -> Value {
    json!({
        "name": "business.brief",
        "description": "An enterprise's name, status and founding date",
        "key": {"pattern": "[0-9]{10}(-[0-9]{3})?"},
        "key_field": "enterprise_code",
        "fields": [
            {"name": "enterprise_code", "type": "string"},
            {"name": "name", "type": "string"},
            {"name": "status", "type": "string"},
            {"name": "founding_date", "type": "string"}
        ],
        "connector": {
            "name": "business-brief",
            "kind": "rest-json",
            "endpoint": endpoint,
            "timeout_ms": 3000,
            "record_path": "Data",
            "auth": {"scheme": "bearer", "token": "demo-business-token"},
            "rest": {"method": "POST", "body": {"type": "ChiTietDoanhNghiep", "msdn": "{key}"}},
            "mapping": {
                "enterprise_code": "MainInformation.ENTERPRISE_CODE",
                "name": "MainInformation.NAME",
                "status": "MainInformation.STATUS",
                "founding_date": {"path": "MainInformation.FOUNDING_DATE", "date": "dd/MM/yyyy"}
            }
        }
    })
}

fn brief_grant() -> Value {
    json!({
        "consumer": "demo-onestop",
        "dataset": "business.brief",
        "procedures": [PROCEDURE],
        "fields": ["enterprise_code", "name"],
        "legal_basis": "Thỏa thuận chia sẻ dữ liệu số 12/2026"
    })
}

async fn admin(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = h
        .http
        .request(method, format!("http://{}{path}", h.gateway.admin_addr))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("sent");
    (r.status().as_u16(), r.json().await.expect("json"))
}

use reqwest::Method;

#[tokio::test]
async fn a_provider_registers_a_dataset_and_a_consumer_looks_it_up_without_a_restart() {
    let provider = business_provider();
    let h = Harness::start_with(move |name, text| match name {
        "gateway.toml" => text.replace("\n[audit]", &format!("{provider}\n[audit]")),
        _ => text,
    })
    .await;
    let h = Arc::new(h);
    let code = h.sample("business.enterprise");
    let path = format!("/v1/datasets/business.brief/records/{code}");
    let endpoint = format!("http://{}/api/dkkd/v1/doanhnghiep", h.sims.business_addr);

    // Lookups run against the built-in datasets through every change below.
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let citizens = h
        .sims
        .data
        .samples("population.citizen", 20)
        .expect("samples");
    let background = {
        let (h, stop, served, failed) = (h.clone(), stop.clone(), served.clone(), failed.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let status = h
                    .get_owned(format!("/v1/citizens/{}", citizens[i % citizens.len()]))
                    .await;
                if status == 200 { &served } else { &failed }.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        })
    };

    // Unknown before it is registered.
    assert_eq!(h.get(&path).await.status(), 404);

    // A dry run checks the whole change and applies nothing.
    let (status, dry) = admin(
        &h,
        Method::POST,
        "/admin/v1/datasets?dry_run=true",
        BUSINESS_PROVIDER,
        Some(brief(&endpoint)),
    )
    .await;
    assert_eq!((status, dry["valid"].clone()), (200, json!(true)), "{dry}");
    assert_eq!(
        h.get(&path).await.status(),
        404,
        "a dry run applies nothing"
    );

    // A bad change is refused whole, naming every problem; nothing changes.
    let mut bad = brief(&endpoint);
    bad["fields"][2]["type"] = json!("text");
    bad["connector"]["mapping"]["shoe_size"] = json!("MainInformation.SIZE");
    let (status, refused) = admin(
        &h,
        Method::POST,
        "/admin/v1/datasets",
        BUSINESS_PROVIDER,
        Some(bad),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    let detail = refused["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("dataset[0].field[2].type"), "{detail}");
    assert!(detail.contains("\"text\" is not a field type"), "{detail}");
    let (_, versions) = admin(
        &h,
        Method::GET,
        "/admin/v1/registry/versions",
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(versions["running"], 1, "{versions}");

    // The business registry registers its dataset, probing the provider first.
    let (status, created) = admin(
        &h,
        Method::POST,
        &format!("/admin/v1/datasets?probe_key={code}"),
        BUSINESS_PROVIDER,
        Some(brief(&endpoint)),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["version"], 2);
    assert_eq!(
        created["after"]["connector"]["auth"]["token"], "(set)",
        "credentials never leave"
    );

    // Registered, but not yet granted.
    let denied = h.get(&path).await;
    assert_eq!(denied.status(), 403);

    let (status, granted) = admin(
        &h,
        Method::POST,
        "/admin/v1/grants",
        BUSINESS_PROVIDER,
        Some(brief_grant()),
    )
    .await;
    assert_eq!(status, 200, "{granted}");
    assert_eq!(granted["version"], 3);

    // The consumer looks it up: only the granted fields, the same name the built-in
    // dataset gives.
    let found = h.get(&path).await;
    assert_eq!(found.status(), 200);
    let record: Value = found.json().await.expect("json");
    let keys: Vec<&String> = record.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["enterprise_code", "name"], "{record}");
    let full: Value = h
        .get(&format!("/v1/enterprises/{code}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(record["name"], full["name"]);
    assert_eq!(record["enterprise_code"], code);
    // Over gRPC too.
    let mut grpc = h.grpc().await;
    let answer = grpc
        .get(authed(lienthong::proto::lienthong::GetRequest {
            dataset: "business.brief".into(),
            key: code.clone(),
            fields: vec!["name".into()],
            context: context(),
        }))
        .await
        .expect("grpc get")
        .into_inner();
    let name = answer.record.expect("record").fields["name"].clone();
    assert_eq!(serde_json::to_value(&name).expect("json"), full["name"]);
    // A key the pattern refuses never reaches the provider.
    let bad_key = h.get("/v1/datasets/business.brief/records/12345").await;
    assert_eq!(bad_key.status(), 400);
    // It is listed with its schema; capabilities show the grant.
    let (_, shown) = admin(
        &h,
        Method::GET,
        "/admin/v1/datasets/business.brief",
        BUSINESS_PROVIDER,
        None,
    )
    .await;
    assert_eq!(shown["key"], json!({"pattern": "[0-9]{10}(-[0-9]{3})?"}));
    assert_eq!(shown["owner"], "business");
    assert_eq!(shown["fields"].as_array().map(Vec::len), Some(4));
    assert_eq!(shown["grants"].as_array().map(Vec::len), Some(1));
    assert_eq!(shown["connector"]["name"], "business-brief");

    // Another agency's data is out of reach, both ways.
    let land_grant = {
        let (_, all) = admin(&h, Method::GET, "/admin/v1/grants", OPERATOR, None).await;
        all["grants"]
            .as_array()
            .expect("grants")
            .iter()
            .find(|g| g["grant"]["dataset"] == "land.parcel")
            .expect("a land grant")["id"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    let refusals = [
        (
            Method::PUT,
            "/admin/v1/connectors/land".to_owned(),
            BUSINESS_PROVIDER,
            Some(json!({"timeout_ms": 1})),
        ),
        (
            Method::PUT,
            "/admin/v1/datasets/land.parcel".to_owned(),
            BUSINESS_PROVIDER,
            Some(json!({"disabled": true})),
        ),
        (
            Method::DELETE,
            format!("/admin/v1/grants/{land_grant}"),
            BUSINESS_PROVIDER,
            None,
        ),
        (
            Method::POST,
            "/admin/v1/grants".to_owned(),
            BUSINESS_PROVIDER,
            Some(json!({
                "consumer": "demo-onestop", "dataset": "land.parcel", "procedures": ["*"],
                "fields": ["*"], "legal_basis": "none"
            })),
        ),
        (
            Method::POST,
            "/admin/v1/datasets".to_owned(),
            BUSINESS_PROVIDER,
            Some({
                let mut b = brief(&endpoint);
                b["name"] = json!("land.extra");
                b
            }),
        ),
        (
            Method::PUT,
            "/admin/v1/datasets/business.brief".to_owned(),
            LAND_PROVIDER,
            Some(json!({"disabled": true})),
        ),
        (
            Method::PUT,
            "/admin/v1/connectors/business-brief".to_owned(),
            LAND_PROVIDER,
            Some(json!({"timeout_ms": 1})),
        ),
        (
            Method::POST,
            "/admin/v1/datasets".to_owned(),
            AUDITOR,
            Some(brief(&endpoint)),
        ),
    ];
    for (method, path, token, body) in refusals {
        let (status, answer) = admin(&h, method.clone(), &path, token, body).await;
        assert_eq!(status, 403, "{method} {path} as {token}: {answer}");
    }
    let (_, theirs) = admin(
        &h,
        Method::GET,
        "/admin/v1/connectors",
        BUSINESS_PROVIDER,
        None,
    )
    .await;
    let names: Vec<&str> = theirs["connectors"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["business", "business-brief"],
        "only its own agency's"
    );

    // Switched off, the dataset is refused; switched on, it serves again.
    let (status, off) = admin(
        &h,
        Method::PUT,
        "/admin/v1/datasets/business.brief",
        BUSINESS_PROVIDER,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 200, "{off}");
    let refused = h.get(&path).await;
    assert_eq!(refused.status(), 404);
    let problem: Value = refused.json().await.expect("json");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("switched off"),
        "{problem}"
    );
    let (status, _) = admin(
        &h,
        Method::PUT,
        "/admin/v1/datasets/business.brief",
        BUSINESS_PROVIDER,
        Some(json!({"disabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h.get(&path).await.status(), 200);

    // A grant switched off admits nothing.
    let (_, mine) = admin(&h, Method::GET, "/admin/v1/grants", BUSINESS_PROVIDER, None).await;
    let grant_id = mine["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .find(|g| g["grant"]["dataset"] == "business.brief")
        .expect("the new grant")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _) = admin(
        &h,
        Method::PUT,
        &format!("/admin/v1/grants/{grant_id}"),
        BUSINESS_PROVIDER,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let off = h.get(&path).await;
    assert_eq!(off.status(), 403);

    // Rollback to before the dataset existed: it is gone; the history says who did what.
    let (status, rolled) = admin(
        &h,
        Method::POST,
        "/admin/v1/registry/rollback",
        OPERATOR,
        Some(json!({"version": 1})),
    )
    .await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(h.get(&path).await.status(), 404);
    let (_, versions) = admin(
        &h,
        Method::GET,
        "/admin/v1/registry/versions",
        AUDITOR,
        None,
    )
    .await;
    let changes: Vec<(String, String)> = versions["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["actor"].as_str().unwrap_or("").to_owned(),
                v["change"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let business = "business-registry".to_owned();
    assert!(changes.contains(&(business.clone(), "dataset business.brief registered".into())));
    assert!(changes.contains(&(
        business.clone(),
        "dataset business.brief switched off".into()
    )));
    assert!(
        changes
            .iter()
            .any(|(a, c)| a == &business && c.contains("grant") && c.contains("switched off"))
    );
    assert_eq!(changes[0].1, "rolled back to version 1");

    stop.store(true, Ordering::SeqCst);
    background.await.expect("background lookups");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "every lookup during the changes succeeded"
    );
    assert!(served.load(Ordering::SeqCst) > 10);

    // Every change is in the audit chain with who and what, and the chain verifies.
    let (status, trail) = admin(
        &h,
        Method::GET,
        "/admin/v1/audit/records?dataset=business.brief&limit=100",
        AUDITOR,
        None,
    )
    .await;
    assert_eq!(status, 200, "{trail}");
    let actions: Vec<(&str, &str, &str)> = trail["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["transport"] == "admin")
        .map(|r| {
            (
                r["action"].as_str().unwrap_or(""),
                r["consumer"].as_str().unwrap_or(""),
                r["outcome"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for expected in [
        ("dataset_created", "business-registry", "served"),
        ("dataset_created", "business-registry", "invalid_request"),
        ("grant_added", "business-registry", "served"),
        ("dataset_updated", "business-registry", "served"),
        ("grant_updated", "business-registry", "served"),
    ] {
        assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
    }
    let created = trail["records"]
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["action"] == "dataset_created" && r["outcome"] == "served")
        .expect("the creation");
    let detail: Value =
        serde_json::from_str(created["detail"].as_str().unwrap_or("")).expect("json");
    assert_eq!(detail["before"], Value::Null);
    assert_eq!(detail["after"]["dataset"]["name"], "business.brief");
    assert_eq!(detail["after"]["connector"]["auth"]["token"], "(set)");
    let keys = h.gateway.gateway().config().audit.verify_keys.clone();
    verify(
        h.gateway.gateway().audit_handle().store(),
        &keys,
        |_, _, _| {},
    )
    .await
    .expect("the chain verifies");
}

#[tokio::test]
async fn a_registered_dataset_survives_a_restart_and_its_schema_is_enforced() {
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let dir = tempfile::tempdir().expect("dir");
    let main = write_config(dir.path(), &sims, |_, t| t);
    let endpoint = format!("http://{}/api/dkkd/v1/doanhnghiep", sims.business_addr);
    let code = sims
        .data
        .samples("business.enterprise", 2)
        .expect("samples")[1]
        .clone();
    let log = dir.path().join("serve.log");
    {
        let (_child, _lookup, admin_addr) = spawn_serve(&main, &log, "info");
        let http = reqwest::Client::new();
        // A schema the provider's answer does not fit (a name is not a number): the probe
        // fails, and nothing is applied.
        let mut wrong = brief(&endpoint);
        wrong["fields"][1]["type"] = json!("int64");
        let r = http
            .post(format!(
                "http://{admin_addr}/admin/v1/datasets?probe_key={code}"
            ))
            .bearer_auth(OPERATOR)
            .json(&wrong)
            .send()
            .await
            .expect("sent");
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 400, "{body}");
        assert!(
            body["detail"].as_str().unwrap_or("").contains("probe"),
            "{body}"
        );
        let r = http
            .post(format!("http://{admin_addr}/admin/v1/datasets"))
            .bearer_auth(OPERATOR)
            .json(&brief(&endpoint))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 200);
    }
    // The registry holds it: a new process resumes the latest version.
    let (_child, lookup, admin_addr) = spawn_serve(&main, &log, "info");
    let http = reqwest::Client::new();
    let listed: Value = http
        .get(format!("http://{admin_addr}/admin/v1/datasets"))
        .bearer_auth(AUDITOR)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = listed["datasets"]
        .as_array()
        .expect("datasets")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(names.contains(&"business.brief"), "{names:?}");
    let grant = http
        .post(format!("http://{admin_addr}/admin/v1/grants"))
        .bearer_auth(OPERATOR)
        .json(&brief_grant())
        .send()
        .await
        .expect("sent");
    assert_eq!(grant.status(), 200);
    let r = http
        .get(format!(
            "http://{lookup}/v1/datasets/business.brief/records/{code}"
        ))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn lienthong_admin_wraps_the_same_operations_for_scripts() {
    let h = Harness::start().await;
    let code = h.sample("business.enterprise");
    let endpoint = format!("http://{}/api/dkkd/v1/doanhnghiep", h.sims.business_addr);
    let dir = h.dir.path().to_owned();
    std::fs::write(dir.join("brief.json"), brief(&endpoint).to_string()).expect("write");
    std::fs::write(dir.join("grant.json"), brief_grant().to_string()).expect("write");
    let mut bad = brief_grant();
    bad["fields"] = json!(["shoe_size"]);
    std::fs::write(dir.join("bad-grant.json"), bad.to_string()).expect("write");
    let admin = format!("http://{}", h.gateway.admin_addr);
    let run = |args: &[&str]| {
        let mut all = vec!["admin".to_owned(), "--admin".into(), admin.clone()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
                .args(all)
                .current_dir(dir)
                .env("LIENTHONG_ADMIN_TOKEN", OPERATOR)
                .env_remove("LIENTHONG_CONFIG")
                .output()
                .expect("runs");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let (ok, out, err) = run(&["datasets", "create", "-f", "brief.json", "--dry-run"])
        .await
        .expect("task");
    assert!(
        ok && out.starts_with("valid, nothing applied"),
        "{out}{err}"
    );
    let (ok, out, err) = run(&[
        "datasets",
        "create",
        "-f",
        "brief.json",
        "--probe-key",
        &code,
    ])
    .await
    .expect("task");
    assert!(ok, "{err}");
    assert!(
        out.trim()
            .starts_with("version 2: dataset business.brief registered (etag "),
        "{out}"
    );
    let (ok, out, _) = run(&["grants", "add", "-f", "grant.json"])
        .await
        .expect("task");
    assert!(ok && out.starts_with("version 3:"), "{out}");
    assert_eq!(
        h.get(&format!("/v1/datasets/business.brief/records/{code}"))
            .await
            .status(),
        200
    );
    let (ok, out, err) = run(&["grants", "add", "-f", "bad-grant.json"])
        .await
        .expect("task");
    assert!(!ok, "{out}");
    assert!(err.contains("400") && err.contains("shoe_size"), "{err}");
    let (_, listed, _) = run(&["datasets"]).await.expect("task");
    let row = listed
        .lines()
        .find(|l| l.starts_with("business.brief"))
        .expect("listed");
    assert!(
        row.contains("enterprise_code,name,status,founding_date"),
        "{row}"
    );
    let (_, grants, _) = run(&["grants"]).await.expect("task");
    let grant_id = grants
        .lines()
        .find(|l| l.contains("business.brief"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the new grant")
        .to_owned();
    // A list position, as grants were once addressed, is refused naming the id form.
    let (ok, _, err) = run(&["grants", "disable", "0"]).await.expect("task");
    assert!(
        !ok && err.contains("400") && err.contains("g-3f9a2c1b7d"),
        "{err}"
    );
    let (ok, out, _) = run(&["grants", "disable", &grant_id]).await.expect("task");
    assert!(ok && out.contains("switched off"), "{out}");
    let (_, grants, _) = run(&["grants"]).await.expect("task");
    assert!(
        grants
            .lines()
            .any(|l| l.contains("business.brief") && l.ends_with("(off)")),
        "{grants}"
    );
    assert_eq!(
        h.get(&format!("/v1/datasets/business.brief/records/{code}"))
            .await
            .status(),
        403
    );
    let (ok, out, _) = run(&["rollback", "--version", "3"]).await.expect("task");
    assert!(ok && out.starts_with("running version 5"), "{out}");
    assert_eq!(
        h.get(&format!("/v1/datasets/business.brief/records/{code}"))
            .await
            .status(),
        200
    );
    let (_, versions, _) = run(&["versions"]).await.expect("task");
    assert_eq!(versions.lines().count(), 5, "{versions}");
    // The same history over gRPC on the plaintext admin listener, with the token.
    let mut grpc = lienthong::proto::lienthong::admin_service_client::AdminServiceClient::connect(
        admin.clone(),
    )
    .await
    .expect("connects");
    let mut request = tonic::Request::new(lienthong::proto::lienthong::AdminRequest::default());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {AUDITOR}").parse().expect("metadata"),
    );
    let listed = grpc
        .list_versions(request)
        .await
        .expect("versions")
        .into_inner();
    let listed = serde_json::to_value(&listed).expect("json");
    assert_eq!(
        listed["running"].as_f64(),
        Some(5.0),
        "Struct numbers are doubles"
    );
    assert_eq!(listed["versions"].as_array().map(Vec::len), Some(5));
    let unauthenticated = grpc
        .list_versions(lienthong::proto::lienthong::AdminRequest::default())
        .await
        .expect_err("no credential");
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
    let (ok, shown, _) = run(&["datasets", "show", "business.brief", "--json"])
        .await
        .expect("task");
    assert!(ok);
    let shown: Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["connector"]["auth"]["token"], "(set)");
}

#[tokio::test]
async fn a_connector_added_at_run_time_is_health_checked_and_its_metrics_show_it() {
    let h = Harness::start().await;
    let code = h.sample("business.enterprise");
    let endpoint = format!("http://{}/api/dkkd/v1/doanhnghiep", h.sims.business_addr);
    let mut body = brief(&endpoint);
    body["connector"]["health"] = json!({"probe_key": code, "interval_ms": 100});
    let (status, created) =
        admin(&h, Method::POST, "/admin/v1/datasets", OPERATOR, Some(body)).await;
    assert_eq!(status, 200, "{created}");
    let metrics = format!("http://{}/metrics", h.gateway.admin_addr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, breakers) = admin(&h, Method::GET, "/admin/v1/breakers", OPERATOR, None).await;
        let probe = breakers["connectors"]
            .as_array()
            .expect("connectors")
            .iter()
            .find(|c| c["connector"] == "business-brief")
            .map(|c| c["health_probe"].clone())
            .unwrap_or(Value::Null);
        if probe["up"] == true && probe["probes"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no repeated probes of the new connector: {breakers}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let text = h
        .http
        .get(&metrics)
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("lienthong_connector_up{connector=\"business-brief\"} 1"),
        "{text}"
    );
    // The provider goes down: the probe says so.
    h.http
        .put(format!("http://{}/_sim/faults", h.sims.business_addr))
        .json(&json!({"down": true}))
        .send()
        .await
        .expect("faults set");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = h
            .http
            .get(&metrics)
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("text");
        if text.contains("lienthong_connector_up{connector=\"business-brief\"} 0") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the probe did not see the outage"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
