//! One citizen, every disclosure, in one call: a man who is the legal representative of an
//! enterprise and the father of a child sees the enterprise's lookup, the child's and his
//! own in one report, over the admin API, the CLI and the portal (on its signed assertion),
//! where a withheld grant's entry is only counted. Assertions that are expired, foreign or
//! replayed are refused. And nothing at rest (stores, Redis, logs) holds any id used.

mod common;

use common::*;
use lienthong::sim::data::SimData;
use serde_json::{Value, json};
use sha2::Digest;
use std::path::Path;

const PORTAL_KEY: &str = "portal-key";
const INVESTIGATOR_KEY: &str = "investigator-key";
const ISSUER: &str = "https://dichvucong.gov.vn";

fn sha(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// An Ed25519 key pair: (PKCS#8 DER private key, PEM public key).
fn ed25519() -> (Vec<u8>, String) {
    use base64::Engine;
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("pair");
    let mut spki = hex::decode("302a300506032b6570032100").expect("prefix");
    spki.extend_from_slice(pair.public_key().as_ref());
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(spki)
    );
    (pkcs8.as_ref().to_vec(), pem)
}

/// The portal's assertion that `sub` is the citizen, signed with `key`.
fn assertion(key: &[u8], sub: &str, iat_offset: i64, lifetime: i64, jti: &str) -> String {
    let now = lienthong::audit::record::now_ms() / 1000 + iat_offset;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("portal-1".into());
    jsonwebtoken::encode(
        &header,
        &json!({"sub": sub, "iss": ISSUER, "aud": "lienthong", "iat": now, "exp": now + lifetime, "jti": jti}),
        &jsonwebtoken::EncodingKey::from_ed_der(key),
    )
    .expect("signed")
}

/// A man who represents an enterprise and fathers (or mothers) a child in the simulated
/// data: (the person, the enterprise, the child).
fn family(data: &SimData) -> (String, String, String) {
    for j in 0..data.enterprises() {
        let Some((e, _)) = data.enterprise_at(j) else {
            continue;
        };
        for rep in &e.legal_representatives {
            let id = lienthong::domain::ids::PersonalId::parse(&rep.personal_id, 2026)
                .expect("a valid id");
            if let Some(child) = data.children_of(&id).into_iter().next() {
                return (rep.personal_id.clone(), e.enterprise_code, child);
            }
        }
    }
    panic!("no representative with a child in the simulated data");
}

/// Every file under `dir`, read as bytes, with its path.
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
}

async fn get(http: &reqwest::Client, url: String, key: &str) -> (u16, Value) {
    let r = http.get(url).bearer_auth(key).send().await.expect("sent");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_sees_every_disclosure_about_him_in_one_report() {
    lienthong::certs::install_crypto();
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let (person, enterprise, child) = family(&sims.data);
    let (portal_private, portal_public) = ed25519();
    let (foreign_private, _) = ed25519();
    let redis = redis_url();
    let prefix = unique("report");
    let root = tempfile::tempdir().expect("dir");
    let redis_section = redis
        .as_ref()
        .map(|url| format!("[redis]\nurl = \"{url}\"\nkey_prefix = \"{prefix}:\"\n"))
        .unwrap_or_default();
    let main = write_config(root.path(), &sims, |file, text| match file {
        "gateway.toml" => format!("{text}\n{redis_section}"),
        "consumers.toml" => format!(
            "{text}\n[[consumer]]\nid = \"investigator\"\nname = \"Cơ quan điều tra\"\n\
             api_key_sha256 = [\"{}\"]\n\n[[consumer]]\nid = \"portal\"\n\
             name = \"Cổng Dịch vụ công quốc gia\"\napi_key_sha256 = [\"{}\"]\n\
             [consumer.assertion]\nissuer = \"{ISSUER}\"\n[[consumer.assertion.keys]]\n\
             kid = \"portal-1\"\nalg = \"EdDSA\"\npublic_key_pem = \"\"\"\n{portal_public}\"\"\"\n",
            sha(INVESTIGATOR_KEY),
            sha(PORTAL_KEY)
        ),
        "grants.toml" => format!(
            "{text}\n[[grant]]\nconsumer = \"investigator\"\ndataset = \"population.citizen\"\n\
             procedures = [\"1.*\"]\nfields = [\"full_name\"]\ncitizen_report = \"withheld\"\n\
             legal_basis = \"Bộ luật Tố tụng hình sự 2015\"\n\n[[grant]]\nconsumer = \"portal\"\n\
             dataset = \"population.citizen\"\nprocedures = [\"1.*\"]\nfields = [\"full_name\"]\n\
             modes = [\"report\"]\nlegal_basis = \"Nghị định 45/2020/NĐ-CP\"\n"
        ),
        _ => text,
    });
    let log = root.path().join("gateway.log");
    let (server, lookup, admin) = spawn_serve(&main, &log, "info");
    let http = reqwest::Client::new();
    let lookup_as = |key: &'static str, path: String| {
        http.get(format!("http://{lookup}{path}"))
            .bearer_auth(key)
            .header("X-Procedure-Code", PROCEDURE)
            .header("X-Dossier-Id", DOSSIER)
            .header("X-Officer-Id", OFFICER)
            .send()
    };
    // The enterprise he represents, his child, himself; and an investigator's lookup.
    for path in [
        format!("/v1/enterprises/{enterprise}"),
        format!("/v1/citizens/{child}"),
        format!("/v1/citizens/{person}"),
    ] {
        assert_eq!(lookup_as(API_KEY, path).await.expect("sent").status(), 200);
    }
    let investigated = lookup_as(INVESTIGATOR_KEY, format!("/v1/citizens/{person}"))
        .await
        .expect("sent");
    assert_eq!(investigated.status(), 200);

    // Operators and auditors: all four, in full.
    let (status, full) = get(
        &http,
        format!("http://{admin}/admin/v1/audit/citizen-report?personal_id={person}"),
        "demo-auditor-token",
    )
    .await;
    assert_eq!(status, 200, "{full}");
    let entries = full["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 4, "{full}");
    let find = |dataset: &str, consumer: &str| {
        entries
            .iter()
            .find(|e| e["dataset"] == dataset && e["consumer"] == consumer)
            .unwrap_or_else(|| panic!("no {dataset} entry of {consumer}: {full}"))
    };
    let as_representative = find("business.enterprise", "demo-onestop");
    assert_eq!(as_representative["role"], "appears");
    assert_eq!(
        as_representative["appears_in"],
        json!(["legal_representatives"])
    );
    assert_eq!(as_representative["legal_basis"], "Nghị định 47/2020/NĐ-CP");
    assert_eq!(as_representative["procedure_name"], "Đăng ký thường trú");
    assert_eq!(
        as_representative["consumer_name"],
        "Hệ thống thông tin giải quyết TTHC (demo)"
    );
    assert_eq!(as_representative["format_version"], 2);
    let as_parent = entries
        .iter()
        .find(|e| e["role"] == "appears" && e["dataset"] == "population.citizen")
        .expect("the child's lookup");
    let appears: Vec<&str> = as_parent["appears_in"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        appears.contains(&"father") || appears.contains(&"mother"),
        "{as_parent}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["role"] == "subject" && e["consumer"] == "demo-onestop")
    );
    let withheld = find("population.citizen", "investigator");
    assert_eq!(
        (withheld["withheld"].as_bool(), withheld["role"].as_str()),
        (Some(true), Some("subject"))
    );
    assert_eq!(withheld["legal_basis"], "Bộ luật Tố tụng hình sự 2015");
    assert!(
        !full.to_string().contains(&person),
        "the report names no id"
    );
    // The same over gRPC (AdminService).
    let mut admin_grpc =
        lienthong::proto::lienthong::admin_service_client::AdminServiceClient::connect(format!(
            "http://{admin}"
        ))
        .await
        .expect("connects");
    let body: pbjson_types::Struct =
        serde_json::from_value(json!({"personal_id": person})).expect("struct");
    let request = authed_as(
        "demo-auditor-token",
        lienthong::proto::lienthong::AdminRequest {
            body: Some(body),
            ..Default::default()
        },
    );
    let over_grpc: Value = serde_json::to_value(
        admin_grpc
            .citizen_report(request)
            .await
            .expect("served")
            .into_inner(),
    )
    .expect("json");
    assert_eq!(over_grpc["entries"].as_array().map(Vec::len), Some(4));

    // The portal, on the citizen's assertion: three detailed, the investigator's counted.
    let portal_report = |token: String| {
        http.get(format!("http://{lookup}/v1/me/access-report"))
            .bearer_auth(PORTAL_KEY)
            .header("X-Citizen-Assertion", token)
            .send()
    };
    let token = assertion(&portal_private, &person, 0, 120, "jti-1");
    let r = portal_report(token.clone()).await.expect("sent");
    assert_eq!(r.status(), 200);
    let mine: Value = r.json().await.expect("json");
    assert_eq!(mine["entries"].as_array().map(Vec::len), Some(3), "{mine}");
    assert_eq!(mine["withheld_count"], 1, "{mine}");
    assert!(!mine.to_string().contains("investigator"), "{mine}");
    assert!(!mine.to_string().contains("Tố tụng"), "{mine}");

    // Refused: the same assertion again, an expired one, one signed by another key, one
    // that lives too long, none at all; and no way to ask about anyone else.
    for (why, token) in [
        ("replayed", token),
        (
            "expired",
            assertion(&portal_private, &person, -400, 120, "jti-2"),
        ),
        (
            "foreign",
            assertion(&foreign_private, &person, 0, 120, "jti-3"),
        ),
        (
            "too long",
            assertion(&portal_private, &person, 0, 3_600, "jti-4"),
        ),
    ] {
        let r = portal_report(token).await.expect("sent");
        assert_eq!(r.status(), 403, "{why}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["code"], "permission_denied", "{why}: {body}");
        assert!(!body.to_string().contains(&person), "{why}");
    }
    let none = http
        .get(format!("http://{lookup}/v1/me/access-report"))
        .bearer_auth(PORTAL_KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(none.status(), 400);
    let someone_else = http
        .get(format!(
            "http://{lookup}/v1/me/access-report?personal_id={child}"
        ))
        .bearer_auth(PORTAL_KEY)
        .header(
            "X-Citizen-Assertion",
            assertion(&portal_private, &person, 0, 120, "jti-5"),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(
        someone_else.status(),
        400,
        "the report takes no other person"
    );
    // A consumer without a report grant is refused, whatever it asserts.
    let (status, _) = get(
        &http,
        format!("http://{lookup}/v1/me/access-report"),
        API_KEY,
    )
    .await;
    assert_eq!(status, 403);

    // gRPC, with a fresh assertion: the same three entries.
    let mut client = lienthong::proto::lienthong::access_report_service_client::AccessReportServiceClient::connect(
        format!("http://{lookup}"),
    )
    .await
    .expect("connects");
    let request = authed_as(
        PORTAL_KEY,
        lienthong::proto::lienthong::AccessReportRequest {
            assertion: assertion(&portal_private, &person, 0, 120, "jti-6"),
            limit: 0,
            page_token: String::new(),
        },
    );
    let report = client
        .get_my_access_report(request)
        .await
        .expect("served")
        .into_inner();
    assert_eq!((report.entries.len(), report.withheld_count), (3, 1));

    // Each report served was audited, the portal's with the citizen as its subject.
    let (_, records) = get(
        &http,
        format!("http://{admin}/admin/v1/audit/records?consumer=portal&limit=50"),
        "demo-operator-token",
    )
    .await;
    let served: Vec<&Value> = records["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "citizen_report" && r["outcome"] == "served")
        .collect();
    assert_eq!(served.len(), 2, "{records}");
    assert!(
        served
            .iter()
            .all(|r| r["subject"].as_str().is_some_and(|s| !s.is_empty()))
    );

    // A dossier declared for the two of them: the register keeps references only.
    let declared = http
        .post(format!("http://{lookup}/v1/dossiers"))
        .bearer_auth(API_KEY)
        .json(&json!({
            "dossier_id": "000.00.53.H48-251130-0077",
            "procedure_code": PROCEDURE,
            "received_at": lienthong::domain::date::iso_ms(lienthong::audit::record::now_ms()),
            "subjects": [
                {"dataset": "population.citizen", "key": person},
                {"dataset": "population.citizen", "key": child},
            ],
        }))
        .send()
        .await
        .expect("sent");
    assert_eq!(declared.status(), 201);

    // The CLI, where the gateway ran, after it stopped.
    drop(server);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args([
            "audit",
            "report",
            "--personal-id",
            &person,
            "--json",
            "--config",
        ])
        .arg(&main)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(cli["entries"].as_array().map(Vec::len), Some(4), "{cli}");

    // Nothing at rest holds an id used: not the stores, not the commit files, not the log,
    // not Redis.
    let mut all = Vec::new();
    files(root.path(), &mut all);
    for store in ["audit.db", "dossiers.db", "registry.db"] {
        assert!(all.iter().any(|(p, _)| p.ends_with(store)), "{store}");
    }
    for (path, bytes) in &all {
        for id in [&person, &child] {
            assert!(
                !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
                "{path} holds {id}"
            );
        }
    }
    if let Some(url) = redis {
        let client = redis::Client::open(url.as_str()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connects");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        assert!(keys.iter().any(|k| k.contains("jti")), "{keys:?}");
        for k in keys {
            let dump: Vec<u8> = redis::cmd("DUMP")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .expect("dump");
            for id in [&person, &child] {
                assert!(!k.contains(id.as_str()));
                assert!(!dump.windows(id.len()).any(|w| w == id.as_bytes()), "{k}");
            }
            let _: i64 = redis::cmd("DEL")
                .arg(&k)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
    }
}

/// The same report from the shared PostgreSQL store: mentions are indexed there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_reads_the_people_named_in_records_from_postgresql() {
    let Some(pg) = postgres_url() else { return };
    lienthong::certs::install_crypto();
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let (person, enterprise, child) = family(&sims.data);
    let schema = unique("t_report");
    let root = tempfile::tempdir().expect("dir");
    let main = write_config(root.path(), &sims, |file, text| match file {
        "gateway.toml" => {
            format!("{text}\n[storage]\npostgres_url = \"{pg}\"\nschema = \"{schema}\"\n")
        }
        _ => text,
    });
    let built = lienthong::app::build(
        &lienthong::config::Source::File(main),
        &std::collections::BTreeMap::new(),
    )
    .expect("valid");
    let running = lienthong::app::start(built).await.expect("starts");
    let http = reqwest::Client::new();
    for path in [
        format!("/v1/enterprises/{enterprise}"),
        format!("/v1/citizens/{child}"),
    ] {
        let r = with_context(http.get(format!("http://{}{path}", running.lookup_addr)))
            .send()
            .await
            .expect("sent");
        assert_eq!(r.status(), 200);
    }
    let (status, report) = get(
        &http,
        format!(
            "http://{}/admin/v1/audit/citizen-report?personal_id={person}",
            running.admin_addr
        ),
        "demo-operator-token",
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let entries = report["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{report}");
    assert!(entries.iter().all(|e| e["role"] == "appears"));
    running.shutdown().await;
    drop_schema(&pg, &schema).await;
}
