//! TLS toward providers, over real sockets: a REST provider that demands a client
//! certificate (mTLS) joins through the admin API with one; without it, or with a CA that
//! did not sign the provider's certificate, the registration is refused and nothing is
//! applied. The land registry's gRPC is reached over TLS and over mTLS, with a bearer token
//! in its metadata.

mod common;

use common::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use lienthong::certs::{Authority, Issued};
use lienthong::transport::tls::{ClientAuth, certs_from_pem, key_from_pem, server_config};
use reqwest::Method;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const OPERATOR: &str = "demo-operator-token";

/// The provider's PKI: its CA, its server certificate, and a client certificate it issued
/// to the gateway, as files.
struct Pki {
    dir: tempfile::TempDir,
    ca: Authority,
    server: Issued,
}

impl Pki {
    fn new() -> Pki {
        lienthong::certs::install_crypto();
        let ca = Authority::new("provider CA", 10).expect("CA");
        let server = ca
            .server(&["127.0.0.1".into(), "localhost".into()], 2)
            .expect("server certificate");
        let client = ca.client("lienthong-gateway", &[], 2).expect("client");
        let other = Authority::new("someone else's CA", 10).expect("CA");
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in [
            ("ca.pem", &ca.pem().cert_pem),
            ("other-ca.pem", &other.pem().cert_pem),
            ("client.pem", &client.cert_pem),
            ("client-key.pem", &client.key_pem),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        Pki { dir, ca, server }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Serves `router` over TLS; `mtls` demands a client certificate from this CA.
    async fn serve(&self, router: axum::Router, mtls: bool) -> SocketAddr {
        let ca = certs_from_pem(self.ca.pem().cert_pem.as_bytes()).unwrap();
        let config = server_config(
            certs_from_pem(self.server.cert_pem.as_bytes()).unwrap(),
            key_from_pem(self.server.key_pem.as_bytes()).unwrap(),
            mtls.then_some(ca),
            mtls.then_some(ClientAuth::Required),
            Vec::new(),
        )
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, router) = (acceptor.clone(), router.clone());
                tokio::spawn(async move {
                    // A refused handshake (no client certificate) ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router))
                        .await;
                });
            }
        });
        addr
    }
}

async fn admin(h: &Harness, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    h.admin_call(method, path, OPERATOR, body).await
}

fn insurance_over_tls(name: &str, addr: SocketAddr, tls: Value) -> Value {
    json!({
        "name": name,
        "description": "An insured person, from a provider that demands mTLS",
        "key": {"pattern": "[0-9]{10}"},
        "key_field": "ma_so_bhxh",
        "fields": [
            {"name": "ma_so_bhxh", "type": "string"},
            {"name": "ho_ten", "type": "string"}
        ],
        "connector": {
            "name": format!("{name}-rest"),
            "kind": "rest-json",
            "endpoint": format!("https://127.0.0.1:{}{}/{{key}}", addr.port(), lienthong::sim::insurance::PATH),
            "timeout_ms": 3000,
            "record_path": "data",
            "auth": {"scheme": "api-key", "header": "X-Api-Key", "api_key": lienthong::sim::DEFAULT_INSURANCE_API_KEY},
            "tls": tls,
            "mapping": {"ma_so_bhxh": "maSoBhxh", "ho_ten": "hoTen"}
        }
    })
}

#[tokio::test]
async fn a_rest_provider_that_demands_a_client_certificate_gets_one() {
    let pki = Pki::new();
    let h = Harness::start().await;
    let router = lienthong::sim::insurance::router(
        h.sims.data.clone(),
        lienthong::sim::SimOptions::ephemeral().insurance_account,
        lienthong::sim::control::Control::new("insurance-mtls"),
        Default::default(),
    );
    let addr = pki.serve(router, true).await;
    let code = h.sims.data.samples("insurance.person", 2).unwrap();

    // Without a client certificate the provider ends the handshake: refused, nothing applied.
    let (status, body) = admin(
        &h,
        Method::POST,
        &format!("/admin/v1/datasets?probe_key={}", code[0]),
        Some(insurance_over_tls(
            "insurance.no_cert",
            addr,
            json!({"ca_file": pki.path("ca.pem")}),
        )),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("probe"),
        "{body}"
    );

    // A CA that did not sign the provider's certificate: refused too.
    let (status, body) = admin(
        &h,
        Method::POST,
        &format!("/admin/v1/datasets?probe_key={}", code[0]),
        Some(insurance_over_tls(
            "insurance.wrong_ca",
            addr,
            json!({"ca_file": pki.path("other-ca.pem"), "client_cert_file": pki.path("client.pem"), "client_key_file": pki.path("client-key.pem")}),
        )),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // A missing file is named before anything is tried.
    let (status, body) = admin(
        &h,
        Method::POST,
        "/admin/v1/datasets",
        Some(insurance_over_tls(
            "insurance.no_file",
            addr,
            json!({"ca_file": pki.path("nowhere.pem")}),
        )),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("tls.ca_file: cannot read"), "{detail}");

    let (_, versions) = admin(&h, Method::GET, "/admin/v1/registry/versions", None).await;
    assert_eq!(versions["running"], 1, "nothing applied: {versions}");

    // With the certificate the provider issued: registered, granted, looked up.
    let (status, body) = admin(
        &h,
        Method::POST,
        &format!("/admin/v1/datasets?probe_key={}", code[0]),
        Some(insurance_over_tls(
            "insurance.mtls",
            addr,
            json!({"ca_file": pki.path("ca.pem"), "client_cert_file": pki.path("client.pem"), "client_key_file": pki.path("client-key.pem")}),
        )),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = h.grant_all("insurance.mtls").await;
    assert_eq!(status, 200, "{body}");
    let r = h
        .get(&format!("/v1/datasets/insurance.mtls/records/{}", code[1]))
        .await;
    assert_eq!(r.status(), 200);
    let record: Value = r.json().await.unwrap();
    assert_eq!(record["ma_so_bhxh"], code[1].as_str(), "{record}");
    // The client certificate toward the provider is watched for expiry (two days).
    let metrics = reqwest::get(format!("http://{}/metrics", h.gateway.admin_addr))
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    let left: f64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "lienthong_certificate_expiry_seconds{role=\"upstream_client\",subject=\"lienthong-gateway\"} ",
            )
        })
        .unwrap_or_else(|| panic!("the upstream client certificate in:\n{metrics}"))
        .parse()
        .expect("a number");
    assert!(left > 86_400.0 && left <= 2.0 * 86_400.0, "{left}");
}

/// The land connector of the demo config, pointed at `addr` over https with `tls` and a
/// bearer token.
fn land_over_tls(text: String, addr: SocketAddr, tls: &str) -> String {
    let land = text.find("name = \"land\"").expect("the land connector");
    let text = format!(
        "{}{}",
        &text[..land],
        text[land..].replacen(
            "endpoint = \"http://127.0.0.1:",
            "endpoint = \"https://127.0.0.1:",
            1
        )
    );
    let cache = text[land..].find("[connector.cache]").unwrap() + land;
    let text = format!(
        "{}[connector.auth]\nscheme = \"bearer\"\ntoken = \"land-token\"\n\n[connector.tls]\n{tls}\n{}",
        &text[..cache],
        &text[cache..]
    );
    let old = format!(
        "127.0.0.1:{}",
        text[land..]
            .split("https://127.0.0.1:")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
    );
    text.replace(
        &format!("https://{old}"),
        &format!("https://127.0.0.1:{}", addr.port()),
    )
}

fn file_line(key: &str, path: &Path) -> String {
    format!("{key} = {:?}\n", path.display().to_string())
}

#[tokio::test]
async fn the_land_registry_is_reached_over_tls_and_mtls_with_a_token_in_its_metadata() {
    for mtls in [false, true] {
        let pki = Pki::new();
        let control = lienthong::sim::control::Control::new("land-tls");
        let data = std::sync::Arc::new(lienthong::sim::data::SimData::new(
            lienthong::sim::data::DEFAULT_SEED,
            lienthong::sim::data::DEFAULT_CITIZENS,
            lienthong::sim::data::DEFAULT_ENTERPRISES,
            lienthong::sim::data::DEFAULT_PARCELS,
        ));
        let addr = pki
            .serve(lienthong::sim::land::router(data, control.clone()), mtls)
            .await;
        let dir: PathBuf = pki.dir.path().to_owned();
        let mut tls = file_line("ca_file", &dir.join("ca.pem"));
        if mtls {
            tls += &file_line("client_cert_file", &dir.join("client.pem"));
            tls += &file_line("client_key_file", &dir.join("client-key.pem"));
        }
        let h = Harness::start_with(move |name, text| match name {
            "connectors.toml" => land_over_tls(text, addr, &tls),
            _ => text,
        })
        .await;
        let parcel = h.sample("land.parcel");
        let r = h.get(&format!("/v1/land-parcels/{parcel}")).await;
        assert_eq!(r.status(), 200, "mtls={mtls}: {:?}", r.text().await);
        assert_eq!(control.calls("TraCuuThuaDat"), 1, "mtls={mtls}");
        assert_eq!(
            control.last_seen("authorization").as_deref(),
            Some("present"),
            "the bearer token went in the metadata"
        );
    }
}
