//! Identity over real TLS sockets: client certificates made here with rcgen, verified
//! against the configured CA and mapped to consumers; every way in that must be refused is.

mod common;

use common::*;
use lienthong::certs::{Authority, Issued};
use lienthong::proto::lienthong::lookup_service_client::LookupServiceClient;
use lienthong::proto::lienthong::*;
use lienthong::transport::tls::{certs_from_pem, key_from_pem};
use serde_json::Value;
use std::sync::Arc;

/// Consumer `motcua-hanoi` proves itself with a client certificate; it may read two citizen
/// fields for one procedure. The demo consumer keeps its API key and its wide grants.
const CERT_CONSUMER: &str = r#"
[[consumer]]
id = "motcua-hanoi"
name = "Cổng dịch vụ công Hà Nội"
certificate_names = ["CN=motcua-hanoi", "DNS:motcua.hanoi.gov.vn"]
"#;

const CERT_GRANT: &str = r#"
[[grant]]
consumer = "motcua-hanoi"
dataset = "population.citizen"
procedures = ["1.001612"]
fields = ["full_name", "date_of_birth"]
legal_basis = "Nghị định 47/2020/NĐ-CP"
"#;

struct Pki {
    dir: tempfile::TempDir,
    ca: Authority,
    other_ca: Authority,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Authority::new("test CA", 10).expect("CA");
        let server = ca
            .server(&["localhost".into(), "127.0.0.1".into()], 2)
            .expect("server cert");
        for (name, text) in [
            ("ca.pem", &ca.pem().cert_pem),
            ("server.pem", &server.cert_pem),
            ("server-key.pem", &server.key_pem),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        Pki {
            dir,
            ca,
            other_ca: Authority::new("another CA", 10).expect("CA"),
        }
    }

    fn tls_section(&self, client_auth: &str) -> String {
        let p = |n: &str| self.dir.path().join(n).display().to_string();
        format!(
            "\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\nclient_auth = {client_auth:?}\n",
            p("server.pem"),
            p("server-key.pem"),
            p("ca.pem")
        )
    }

    async fn gateway(&self, client_auth: &str) -> Harness {
        let tls = self.tls_section(client_auth);
        Harness::start_with(move |name, text| match name {
            "gateway.toml" => text + &tls,
            "consumers.toml" => text + CERT_CONSUMER,
            "grants.toml" => text + CERT_GRANT,
            _ => text,
        })
        .await
    }
}

fn rustls_client(ca: &Authority, identity: Option<&Issued>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(ca.pem().cert_pem.as_bytes()).expect("CA pem") {
        roots.add(c).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(
                certs_from_pem(id.cert_pem.as_bytes()).expect("cert"),
                key_from_pem(id.key_pem.as_bytes()).expect("key"),
            )
            .expect("client identity"),
    }
}

fn https(identity: Option<&Issued>, pki: &Pki) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(rustls_client(&pki.ca, identity))
        .build()
        .expect("client")
}

/// A REST GET over TLS with the given headers, and the valid call context where they do not
/// set its headers.
async fn get(
    client: &reqwest::Client,
    h: &Harness,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Value), reqwest::Error> {
    let mut r = client.get(format!(
        "https://127.0.0.1:{}{path}",
        h.gateway.lookup_addr.port()
    ));
    let context = [
        ("X-Procedure-Code", PROCEDURE),
        ("X-Dossier-Id", DOSSIER),
        ("X-Officer-Id", OFFICER),
    ];
    for (k, v) in context
        .iter()
        .filter(|(k, _)| !headers.iter().any(|(h, _)| h == k))
    {
        r = r.header(*k, *v);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let response = r.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

fn population_calls(h: &Harness) -> u64 {
    h.sims.population.calls("TraCuuThongTinCongDan")
}

#[tokio::test]
async fn client_certificate_identifies_the_consumer_and_its_grant_applies() {
    let pki = Pki::new();
    let h = pki.gateway("optional").await;
    let hanoi = pki.ca.client("motcua-hanoi", &[], 1).expect("client cert");
    let client = https(Some(&hanoi), &pki);
    let id = h.sample("population.citizen");

    let (status, body) = get(&client, &h, &format!("/v1/citizens/{id}"), &[])
        .await
        .expect("TLS request");
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&String> = body.as_object().expect("record").keys().collect();
    assert_eq!(keys, ["date_of_birth", "full_name"]);

    let (status, caps) = get(&client, &h, "/v1/capabilities", &[])
        .await
        .expect("TLS");
    assert_eq!(status, 200);
    assert_eq!(caps["consumer"], "motcua-hanoi");

    // A certificate matched by its DNS alternative name alone maps to the same consumer.
    let by_san = pki
        .ca
        .client("portal-node-7", &["MotCua.HaNoi.gov.vn".into()], 1)
        .expect("client cert");
    let (status, caps) = get(&https(Some(&by_san), &pki), &h, "/v1/capabilities", &[])
        .await
        .expect("TLS");
    assert_eq!(status, 200, "{caps}");
    assert_eq!(caps["consumer"], "motcua-hanoi");

    // The API key still works beside certificates when client_auth is optional.
    let (status, caps) = get(
        &https(None, &pki),
        &h,
        "/v1/capabilities",
        &[("Authorization", "Bearer demo-onestop-key")],
    )
    .await
    .expect("TLS");
    assert_eq!(status, 200);
    assert_eq!(caps["consumer"], "demo-onestop");
}

#[tokio::test]
async fn every_denial_path_over_tls() {
    let pki = Pki::new();
    let h = pki.gateway("optional").await;
    let id = h.sample("population.citizen");
    let citizen = format!("/v1/citizens/{id}");
    let hanoi = https(
        Some(&pki.ca.client("motcua-hanoi", &[], 1).expect("cert")),
        &pki,
    );
    let denied = |r: Result<(u16, Value), reqwest::Error>, status: u16, code: &str, names: &str| {
        let (got, body) = r.expect("the TLS request itself succeeds");
        assert_eq!(got, status, "{code}: {body}");
        assert_eq!(body["code"], code, "{body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(names), "{detail:?} should name {names:?}");
    };

    // No credentials at all.
    denied(
        get(&https(None, &pki), &h, &citizen, &[]).await,
        401,
        "unauthenticated",
        "no credentials",
    );
    // A certificate our CA signed, for a name no consumer claims.
    let stranger = pki.ca.client("unregistered", &[], 1).expect("cert");
    denied(
        get(&https(Some(&stranger), &pki), &h, &citizen, &[]).await,
        401,
        "unauthenticated",
        "CN=unregistered",
    );
    // A wrong API key, with or without a certificate.
    let wrong_key = [("Authorization", "Bearer not-the-key")];
    denied(
        get(&https(None, &pki), &h, &citizen, &wrong_key).await,
        401,
        "unauthenticated",
        "API key",
    );
    denied(
        get(&hanoi, &h, &citizen, &wrong_key).await,
        401,
        "unauthenticated",
        "API key",
    );
    // A certificate and a key that belong to different consumers.
    denied(
        get(
            &hanoi,
            &h,
            &citizen,
            &[("Authorization", "Bearer demo-onestop-key")],
        )
        .await,
        401,
        "unauthenticated",
        "different consumers",
    );
    // Authenticated, but outside the grant: dataset, field, procedure.
    let enterprise = h.sample("business.enterprise");
    denied(
        get(&hanoi, &h, &format!("/v1/enterprises/{enterprise}"), &[]).await,
        403,
        "permission_denied",
        "business.enterprise",
    );
    denied(
        get(
            &hanoi,
            &h,
            &format!("{citizen}?fields=full_name,permanent_residence"),
            &[],
        )
        .await,
        403,
        "permission_denied",
        "permanent_residence",
    );
    denied(
        get(&hanoi, &h, &citizen, &[("X-Procedure-Code", "2.000001")]).await,
        403,
        "permission_denied",
        "2.000001",
    );
    // A malformed call context.
    denied(
        get(&hanoi, &h, &citizen, &[("X-Dossier-Id", "dossier 12")]).await,
        400,
        "invalid_context",
        "dossier_id",
    );

    // A certificate from another CA, even with a registered name, fails the handshake.
    let forged = pki.other_ca.client("motcua-hanoi", &[], 1).expect("cert");
    let refused = get(&https(Some(&forged), &pki), &h, &citizen, &[]).await;
    assert!(refused.is_err(), "another CA's certificate was accepted");
    // Plaintext to the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://{}{citizen}", h.gateway.lookup_addr))
        .bearer_auth(API_KEY)
        .send()
        .await;
    match plain {
        Err(_) => {}
        Ok(r) => assert!(
            !r.status().is_success(),
            "plaintext was served: {}",
            r.status()
        ),
    }
    // Not one of these reached the national database.
    assert_eq!(population_calls(&h), 0);
}

#[tokio::test]
async fn required_client_certificates_refuse_api_key_only_clients() {
    let pki = Pki::new();
    let h = pki.gateway("required").await;
    let id = h.sample("population.citizen");
    let refused = get(
        &https(None, &pki),
        &h,
        &format!("/v1/citizens/{id}"),
        &[("Authorization", "Bearer demo-onestop-key")],
    )
    .await;
    assert!(refused.is_err(), "served without a client certificate");
    let hanoi = pki.ca.client("motcua-hanoi", &[], 1).expect("cert");
    let (status, _) = get(
        &https(Some(&hanoi), &pki),
        &h,
        &format!("/v1/citizens/{id}"),
        &[],
    )
    .await
    .expect("TLS");
    assert_eq!(status, 200);
    assert_eq!(population_calls(&h), 1);
}

#[tokio::test]
async fn grpc_over_mutual_tls() {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let pki = Pki::new();
    let h = pki.gateway("optional").await;
    let id = h.sample("population.citizen");
    let channel = |identity: Option<&Issued>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca.pem().cert_pem))
            .domain_name("localhost");
        if let Some(i) = identity {
            tls = tls.identity(Identity::from_pem(&i.cert_pem, &i.key_pem));
        }
        Channel::from_shared(format!(
            "https://127.0.0.1:{}",
            h.gateway.lookup_addr.port()
        ))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
    };
    let request = || GetCitizenRequest {
        personal_id: id.clone(),
        context: context(),
        fields: vec![],
    };

    let hanoi = pki.ca.client("motcua-hanoi", &[], 1).expect("cert");
    let mut grpc = LookupServiceClient::new(channel(Some(&hanoi)).connect().await.expect("h2"));
    let found = grpc
        .get_citizen(request())
        .await
        .expect("served")
        .into_inner();
    let record = found.record.expect("record");
    assert_eq!(record.personal_id, "", "personal_id is not granted");
    assert!(!record.full_name.is_empty());
    assert!(record.permanent_residence.is_none());

    let mut anonymous = LookupServiceClient::new(channel(None).connect().await.expect("h2"));
    let status = anonymous
        .get_citizen(request())
        .await
        .expect_err("no credentials");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn certificates_from_the_certs_command_turn_on_mtls() {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("tls");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(["certs", "--out"])
        .arg(&out)
        .args(["--client", "motcua-hanoi", "--days", "3"])
        .output()
        .expect("lienthong certs runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("certificate_names = [\"CN=motcua-hanoi\"]"),
        "{stdout}"
    );
    let read = |name: &str| std::fs::read_to_string(out.join(name)).expect(name);

    let tls = format!(
        "\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        out.join("server.pem").display().to_string(),
        out.join("server-key.pem").display().to_string(),
        out.join("ca.pem").display().to_string(),
    );
    let h = Harness::start_with(move |name, text| match name {
        "gateway.toml" => text + &tls,
        "consumers.toml" => text + CERT_CONSUMER,
        "grants.toml" => text + CERT_GRANT,
        _ => text,
    })
    .await;
    let ca = Authority::load(&read("ca.pem"), &read("ca-key.pem")).expect("CA loads");
    let client = Issued {
        cert_pem: read("client-motcua-hanoi.pem"),
        key_pem: read("client-motcua-hanoi-key.pem"),
    };
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(rustls_client(&ca, Some(&client)))
        .build()
        .expect("client");
    let (status, caps) = get(&http, &h, "/v1/capabilities", &[]).await.expect("TLS");
    assert_eq!(status, 200, "{caps}");
    assert_eq!(caps["consumer"], "motcua-hanoi");
}

#[tokio::test]
async fn a_record_cached_for_a_wider_grant_leaves_only_the_narrow_grants_fields() {
    let pki = Pki::new();
    let h = pki.gateway("optional").await;
    let id = h.sample("population.citizen");
    let citizen = format!("/v1/citizens/{id}");

    // The demo consumer's grant covers every field: its lookup fills the cache.
    let wide = https(None, &pki);
    let key = [("Authorization", "Bearer demo-onestop-key")];
    let (status, full) = get(&wide, &h, &citizen, &key).await.expect("TLS");
    assert_eq!(status, 200);
    assert!(full.as_object().expect("record").len() > 10, "{full}");

    // The certificate consumer, granted two fields, is served from that cache entry.
    let hanoi = pki.ca.client("motcua-hanoi", &[], 1).expect("cert");
    let narrow = https(Some(&hanoi), &pki);
    let response = narrow
        .get(format!(
            "https://127.0.0.1:{}{citizen}",
            h.gateway.lookup_addr.port()
        ))
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .send()
        .await
        .expect("TLS");
    assert_eq!(response.headers()["x-cache"], "hit");
    let body: Value = response.json().await.expect("json");
    let keys: Vec<&String> = body.as_object().expect("record").keys().collect();
    assert_eq!(keys, ["date_of_birth", "full_name"]);
    assert_eq!(body["full_name"], full["full_name"]);
    let (status, _) = get(
        &narrow,
        &h,
        &format!("{citizen}?fields=full_name,permanent_residence"),
        &[],
    )
    .await
    .expect("TLS");
    assert_eq!(
        status, 403,
        "a cached field outside the grant stays refused"
    );

    // The same through a batch and through the generic route.
    let batch: Value = narrow
        .post(format!(
            "https://127.0.0.1:{}/v1/batch",
            h.gateway.lookup_addr.port()
        ))
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .json(&serde_json::json!({"items": [{"dataset": "population.citizen", "key": id}]}))
        .send()
        .await
        .expect("TLS")
        .json()
        .await
        .expect("json");
    assert_eq!(batch["items"][0]["cache"], "hit", "{batch}");
    let keys: Vec<&String> = batch["items"][0]["record"]
        .as_object()
        .expect("record")
        .keys()
        .collect();
    assert_eq!(keys, ["date_of_birth", "full_name"]);
    let (_, generic) = get(
        &narrow,
        &h,
        &format!("/v1/datasets/population.citizen/records/{id}"),
        &[],
    )
    .await
    .expect("TLS");
    assert_eq!(generic.as_object().expect("record").len(), 2, "{generic}");
    assert_eq!(
        population_calls(&h),
        1,
        "one provider call served all of them"
    );
}

/// Admin callers known by their certificate: an operator and the land registry.
const ADMIN_CLIENTS: &str = r#"
[[admin.client]]
name = "ops-alice"
certificate_names = ["CN=ops-alice"]
role = "operator"

[[admin.client]]
name = "land-registry-officer"
certificate_names = ["CN=land-officer"]
role = "provider"
agency = "land"
"#;

#[tokio::test]
async fn admin_callers_prove_themselves_with_client_certificates_over_rest_and_grpc() {
    use lienthong::proto::lienthong::AdminRequest;
    use lienthong::proto::lienthong::admin_service_client::AdminServiceClient;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let pki = Pki::new();
    let tls = pki.tls_section("optional");
    let h = Harness::start_with(move |name, text| match name {
        "gateway.toml" => {
            text.replace(
                "operator_token_sha256 =",
                "tls = true\noperator_token_sha256 =",
            )
            .replace("\n[audit]", &format!("{ADMIN_CLIENTS}\n[audit]"))
                + &tls
        }
        "consumers.toml" => text + CERT_CONSUMER,
        _ => text,
    })
    .await;
    let admin = format!("https://localhost:{}", h.gateway.admin_addr.port());
    let issue = |cn: &str| pki.ca.client(cn, &[], 1).expect("client cert");
    let (ops, land, consumer) = (
        issue("ops-alice"),
        issue("land-officer"),
        issue("motcua-hanoi"),
    );
    let put = |client: reqwest::Client, dataset: &str, off: bool| {
        let url = format!("{admin}/admin/v1/datasets/{dataset}");
        async move {
            let r = client
                .put(url)
                .json(&serde_json::json!({ "disabled": off }))
                .send()
                .await
                .expect("sent");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };

    // REST: the operator's certificate may list; the land registry's may switch its own
    // dataset off and on, and not another agency's.
    let r = https(Some(&ops), &pki)
        .get(format!("{admin}/admin/v1/datasets"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let (status, body) = put(https(Some(&land), &pki), "business.enterprise", true).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = put(https(Some(&land), &pki), "land.parcel", true).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = put(https(Some(&land), &pki), "land.parcel", false).await;
    assert_eq!(status, 200);
    // A consumer's certificate is not an admin credential; neither is none.
    let r = https(Some(&consumer), &pki)
        .get(format!("{admin}/admin/v1/datasets"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 401);
    let r = https(None, &pki)
        .get(format!("{admin}/admin/v1/datasets"))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 401);
    // A token still works over TLS; plaintext to the admin port is not served.
    let r = https(None, &pki)
        .get(format!("{admin}/admin/v1/grants"))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 200);
    let plain = reqwest::Client::new()
        .get(format!("http://{}/admin/v1/datasets", h.gateway.admin_addr))
        .bearer_auth("demo-operator-token")
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200));

    // gRPC AdminService on the same listener, with the same rules.
    let channel = |identity: &Issued| {
        Channel::from_shared(admin.clone())
            .expect("uri")
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&pki.ca.pem().cert_pem))
                    .identity(Identity::from_pem(&identity.cert_pem, &identity.key_pem))
                    .domain_name("localhost"),
            )
            .expect("tls config")
            .connect_lazy()
    };
    let mut as_ops = AdminServiceClient::new(channel(&ops));
    let listed = as_ops
        .list_datasets(AdminRequest::default())
        .await
        .expect("list")
        .into_inner();
    let listed = serde_json::to_value(&listed).expect("json");
    let names: Vec<&str> = listed["datasets"]
        .as_array()
        .expect("datasets")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["population.citizen", "business.enterprise", "land.parcel"]
    );
    let mut as_land = AdminServiceClient::new(channel(&land));
    let body = |v: Value| Some(serde_json::from_value(v).expect("struct"));
    let refused = as_land
        .update_dataset(AdminRequest {
            name: "population.citizen".into(),
            body: body(serde_json::json!({"disabled": true})),
            ..Default::default()
        })
        .await
        .expect_err("not theirs");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let dry = as_land
        .update_dataset(AdminRequest {
            name: "land.parcel".into(),
            body: body(serde_json::json!({"disabled": true})),
            dry_run: true,
            ..Default::default()
        })
        .await
        .expect("a dry run of their own")
        .into_inner();
    assert_eq!(serde_json::to_value(&dry).expect("json")["valid"], true);
    let wrong = as_ops
        .update_dataset(AdminRequest {
            name: "land.parcel".into(),
            body: body(serde_json::json!({"fields": []})),
            ..Default::default()
        })
        .await
        .expect_err("a built-in schema does not change");
    assert_eq!(wrong.code(), tonic::Code::InvalidArgument);

    // Who did what is in the chain, with the kind of credential.
    let trail: Value = https(Some(&ops), &pki)
        .get(format!(
            "{admin}/admin/v1/audit/records?dataset=land.parcel"
        ))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let switched: Vec<(&str, &str)> = trail["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "dataset_updated")
        .map(|r| {
            (
                r["consumer"].as_str().unwrap_or(""),
                r["credential"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        switched,
        [
            ("land-registry-officer", "admin_certificate"),
            ("land-registry-officer", "admin_certificate")
        ]
    );
}

#[tokio::test]
async fn a_stalled_or_failed_handshake_is_closed_and_counted_at_the_door() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let tls = pki.tls_section("optional");
    let h = Harness::start_with(move |name, text| match name {
        "gateway.toml" => text + &tls + "\n[door]\ntls_handshake_timeout_ms = 300\n",
        _ => text,
    })
    .await;
    // A client that connects and never says hello.
    let mut silent = tokio::net::TcpStream::connect(h.gateway.lookup_addr)
        .await
        .expect("connects");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(3), silent.read(&mut buf))
        .await
        .expect("closed by the handshake timeout")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    // One that speaks plain HTTP to the TLS port.
    let mut plain = tokio::net::TcpStream::connect(h.gateway.lookup_addr)
        .await
        .expect("connects");
    plain
        .write_all(b"GET /v1/capabilities HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sent");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), plain.read(&mut buf)).await;
    let metrics = reqwest::get(format!("http://{}/metrics", h.gateway.admin_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "lienthong_door_refusals_total{listener=\"lookup\",reason=\"tls_handshake\"} 2"
        ),
        "{metrics}"
    );
}

/// What `openssl x509` (an implementation apart from the gateway's) reads of a PEM file:
/// its subject CN and its notAfter, Unix seconds.
fn openssl_expiry(path: &std::path::Path) -> (String, i64) {
    let out = std::process::Command::new("openssl")
        .args([
            "x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-subject",
        ])
        .args(["-nameopt", "RFC2253", "-in"])
        .arg(path)
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_default()
            .to_owned()
    };
    let not_after = field("notAfter=").replacen(' ', "T", 1);
    let subject = field("subject=");
    let cn = subject
        .split(',')
        .find_map(|p| p.strip_prefix("CN="))
        .unwrap_or_default()
        .to_owned();
    let ms = lienthong::domain::date::parse_rfc3339_ms(&not_after)
        .unwrap_or_else(|| panic!("openssl printed {text:?}"));
    (cn, ms / 1000)
}

#[tokio::test]
async fn certificate_expiry_is_a_gauge_that_openssl_agrees_with() {
    let pki = Pki::new();
    let h = pki.gateway("optional").await;
    let text = reqwest::get(format!("http://{}/metrics", h.gateway.admin_addr))
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    let now_s = lienthong::domain::date::now_ms() / 1000;
    for (role, file) in [("server", "server.pem"), ("client_ca", "ca.pem")] {
        let (cn, not_after) = openssl_expiry(&pki.dir.path().join(file));
        let prefix =
            format!("lienthong_certificate_expiry_seconds{{role=\"{role}\",subject=\"{cn}\"}} ");
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{prefix} in:\n{text}"))
            .parse()
            .expect("a number");
        let expected = (not_after - now_s) as f64;
        assert!(
            (value - expected).abs() <= 5.0,
            "{role}: {value} vs {expected}"
        );
        // The server certificate is issued for two days, the CA for ten.
        let days = if role == "server" { 2.0 } else { 10.0 };
        assert!(
            value > (days - 1.0) * 86400.0 && value <= days * 86400.0,
            "{value}"
        );
    }
}

/// A client trusting only `ca`, with `identity` if given.
fn https_trusting(ca: &Authority, identity: Option<&Issued>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(rustls_client(ca, identity))
        .build()
        .expect("client")
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart_while_an_old_connection_finishes() {
    let pki = Pki::new();
    let h = pki.gateway("optional").await;
    let key = [("Authorization", "Bearer demo-onestop-key")];
    // A connection made before the rotation.
    let old = https_trusting(&pki.ca, None);
    let (status, _) = get(&old, &h, "/v1/capabilities", &key).await.expect("TLS");
    assert_eq!(status, 200);

    // The certificate is replaced on disk by one from another CA (the key first, as a
    // careless copy might: the pair does not match until the certificate follows).
    let rotated_ca = Authority::new("rotated CA", 10).expect("CA");
    let rotated = rotated_ca
        .server(&["localhost".into(), "127.0.0.1".into()], 5)
        .expect("server cert");
    std::fs::write(pki.dir.path().join("server-key.pem"), &rotated.key_pem).expect("key");
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let (status, _) = get(&https_trusting(&pki.ca, None), &h, "/v1/capabilities", &key)
        .await
        .expect("a half-written pair leaves the old certificate in place");
    assert_eq!(status, 200);
    std::fs::write(pki.dir.path().join("server.pem"), &rotated.cert_pem).expect("cert");

    // New connections get the new certificate within the watcher's period.
    let since = std::time::Instant::now();
    let fresh = loop {
        let client = https_trusting(&rotated_ca, None);
        if let Ok((status, _)) = get(&client, &h, "/v1/capabilities", &key).await {
            break status;
        }
        assert!(
            since.elapsed() < std::time::Duration::from_secs(5),
            "the new certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(fresh, 200);
    assert!(
        get(&https_trusting(&pki.ca, None), &h, "/v1/capabilities", &key)
            .await
            .is_err(),
        "a new connection no longer gets the old certificate"
    );
    // The connection made before carries on, on its own session.
    let (status, _) = get(&old, &h, "/v1/capabilities", &key)
        .await
        .expect("the old connection still answers");
    assert_eq!(status, 200);
    // The expiry gauge shows the certificate now served (five days; the first had two),
    // with no reload.
    let metrics = reqwest::get(format!("http://{}/metrics", h.gateway.admin_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let server: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("lienthong_certificate_expiry_seconds{role=\"server\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(server.len(), 1, "{metrics}");
    assert!(
        (4.0 * 86_400.0..6.0 * 86_400.0).contains(&server[0]),
        "the gauge shows {} s, not the rotated certificate's five days",
        server[0]
    );
}

#[tokio::test]
async fn a_client_certificate_its_ca_revoked_is_refused() {
    let pki = Pki::new();
    let kept = pki.ca.client("motcua-hanoi", &[], 1).expect("client cert");
    let lost = pki
        .ca
        .client("portal-node-7", &["motcua.hanoi.gov.vn".into()], 1)
        .expect("client cert");
    let crl = pki
        .ca
        .revocation_list(&[lost.cert_pem.as_str()], 7)
        .expect("CRL");
    std::fs::write(pki.dir.path().join("ca.crl"), &crl).expect("write");
    let tls = format!(
        "{}crl_files = [{:?}]\n",
        pki.tls_section("optional"),
        pki.dir.path().join("ca.crl").display().to_string()
    );
    let h = Harness::start_with(move |name, text| match name {
        "gateway.toml" => text + &tls,
        "consumers.toml" => text + CERT_CONSUMER,
        "grants.toml" => text + CERT_GRANT,
        _ => text,
    })
    .await;
    let (status, caps) = get(&https(Some(&kept), &pki), &h, "/v1/capabilities", &[])
        .await
        .expect("a certificate not revoked is taken");
    assert_eq!(status, 200, "{caps}");
    assert_eq!(caps["consumer"], "motcua-hanoi");
    let refused = get(&https(Some(&lost), &pki), &h, "/v1/capabilities", &[]).await;
    assert!(
        refused.is_err(),
        "a revoked certificate is refused in the handshake"
    );
    // A revocation list that does not read is named when the config is checked.
    std::fs::write(pki.dir.path().join("bad.crl"), "not a CRL").expect("write");
    let mut errors = Vec::new();
    let raw = lienthong::config::raw::RawTls {
        cert: pki.dir.path().join("server.pem").display().to_string(),
        key: pki.dir.path().join("server-key.pem").display().to_string(),
        client_ca: Some(pki.dir.path().join("ca.pem").display().to_string()),
        client_auth: None,
        crl_files: vec![pki.dir.path().join("bad.crl").display().to_string()],
    };
    let loaded = lienthong::transport::tls::from_settings(
        &lienthong::config::Source::demo(),
        &raw,
        &mut lienthong::config::Errors {
            file: "gateway.toml".into(),
            all: &mut errors,
        },
    );
    assert!(loaded.is_none() || !errors.is_empty());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].key, "tls.crl_files[0]");
}

#[tokio::test]
async fn the_certs_command_revokes_a_client_and_a_running_gateway_takes_the_new_list() {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("tls");
    let certs = |args: &[&str]| {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
            .args(["certs", "--out"])
            .arg(&out)
            .args(args)
            .output()
            .expect("lienthong certs runs");
        let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(
            run.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&run.stderr)
        );
        stdout
    };
    certs(&[
        "--client",
        "motcua-hanoi",
        "--client",
        "motcua-hue",
        "--days",
        "3",
    ]);
    let printed = certs(&["--revoke", "motcua-hue", "--days", "3"]);
    assert!(printed.contains("crl_files = ["), "{printed}");
    let tls = format!(
        "\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\ncrl_files = [{:?}]\n",
        out.join("server.pem").display().to_string(),
        out.join("server-key.pem").display().to_string(),
        out.join("ca.pem").display().to_string(),
        out.join("ca.crl").display().to_string(),
    );
    let h = Harness::start_with(move |name, text| match name {
        "gateway.toml" => text + &tls,
        "consumers.toml" => text + CERT_CONSUMER,
        "grants.toml" => text + CERT_GRANT,
        _ => text,
    })
    .await;
    let read = |name: &str| std::fs::read_to_string(out.join(name)).expect(name);
    let ca = Authority::load(&read("ca.pem"), &read("ca-key.pem")).expect("CA loads");
    let client = |name: &str| {
        https_trusting(
            &ca,
            Some(&Issued {
                cert_pem: read(&format!("client-{name}.pem")),
                key_pem: read(&format!("client-{name}-key.pem")),
            }),
        )
    };
    let (status, caps) = get(&client("motcua-hanoi"), &h, "/v1/capabilities", &[])
        .await
        .expect("not revoked");
    assert_eq!(status, 200, "{caps}");
    assert!(
        get(&client("motcua-hue"), &h, "/v1/capabilities", &[])
            .await
            .is_err(),
        "revoked"
    );
    // Revoked while the gateway runs: the list is written anew, and taken within seconds.
    certs(&["--revoke", "motcua-hanoi", "--days", "3"]);
    assert_eq!(read("revoked.txt"), "motcua-hue\nmotcua-hanoi\n");
    let since = std::time::Instant::now();
    while get(&client("motcua-hanoi"), &h, "/v1/capabilities", &[])
        .await
        .is_ok()
    {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(5),
            "the new list was never taken"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        get(&client("motcua-hue"), &h, "/v1/capabilities", &[])
            .await
            .is_err(),
        "an earlier revocation stays in the new list"
    );
}
