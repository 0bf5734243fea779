//! Many stateless replicas on the real PostgreSQL and Redis of this machine: each test has
//! its own schema and key prefix, and cuts a shared service off through a TCP proxy it
//! controls (the services themselves are never touched).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A replica's config directory: the demo config pointed at `sims`, with its own instance
/// id, and `extra` appended to the main file.
fn replica(root: &Path, name: &str, sims: &lienthong::sim::RunningSims, extra: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let extra = extra.to_owned();
    let name = name.to_owned();
    write_config(&dir, sims, move |file, text| match file {
        "gateway.toml" => format!("instance_id = \"{name}\"\n{text}\n{extra}"),
        _ => text,
    })
}

fn storage(url: &str, schema: &str) -> String {
    format!("[storage]\npostgres_url = \"{url}\"\nschema = \"{schema}\"\n")
}

async fn lookup(http: &reqwest::Client, base: &str, path: &str) -> (u16, String) {
    match http
        .get(format!("http://{base}{path}"))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .send()
        .await
    {
        Ok(r) => (
            r.status().as_u16(),
            r.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// `lienthong audit verify --config main`: (success, stdout).
fn verify(main: &Path) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(["audit", "verify", "--config"])
        .arg(main)
        .output()
        .expect("runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Drops a test's schema (what a test leaves when it fails stays for a look).
async fn drop_schema(url: &str, schema: &str) {
    let pool = sqlx::PgPool::connect(url).await.expect("connects");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await
        .expect("dropped");
}

/// Request ids recorded in a schema's audit trail.
async fn recorded_ids(url: &str, schema: &str) -> std::collections::HashSet<String> {
    let pool = sqlx::PgPool::connect(url).await.expect("connects");
    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT request_id FROM {schema}.audit_records"
    )))
    .fetch_all(&pool)
    .await
    .expect("reads");
    ids.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_write_one_postgres_audit_store_and_it_verifies() {
    let Some(url) = postgres_url() else { return };
    lienthong::app::install_crypto();
    let schema = unique("t_audit");
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let root = tempfile::tempdir().expect("dir");
    let a = replica(root.path(), "replica-a", &sims, &storage(&url, &schema));
    let b = replica(root.path(), "replica-b", &sims, &storage(&url, &schema));
    let (_a, lookup_a, _) = spawn_serve(&a, &root.path().join("a.log"), "info");
    let (_b, lookup_b, _) = spawn_serve(&b, &root.path().join("b.log"), "info");
    let citizens = sims
        .data
        .samples("population.citizen", 20)
        .expect("samples");
    let http = reqwest::Client::new();
    let mut served = Vec::new();
    for (i, id) in citizens.iter().enumerate() {
        let base = if i % 2 == 0 { &lookup_a } else { &lookup_b };
        let (status, request_id) = lookup(&http, base, &format!("/v1/citizens/{id}")).await;
        assert_eq!(status, 200);
        served.push(request_id);
    }
    let ids = recorded_ids(&url, &schema).await;
    for id in &served {
        assert!(ids.contains(id), "request {id} has no record");
    }
    // Both chains, each verifiable, verified together from either replica's config.
    let (ok, text) = verify(&a);
    assert!(ok, "{text}");
    assert!(text.contains("replica-a: 10 records"), "{text}");
    assert!(text.contains("replica-b: 10 records"), "{text}");
    // One registry: both run version 1, seeded once.
    let versions: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT version FROM {schema}.registry_versions"
    )))
    .fetch_all(&sqlx::PgPool::connect(&url).await.expect("connects"))
    .await
    .expect("reads");
    assert_eq!(versions, [1]);
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_off_mid_run_no_acknowledged_lookup_lacks_its_record() {
    let Some(url) = postgres_url() else { return };
    lienthong::app::install_crypto();
    let schema = unique("t_cut");
    let proxy = Proxy::start(url_addr(&url)).await;
    let proxied = url.replacen(&url_addr(&url).to_string(), &proxy.addr.to_string(), 1);
    let proxied = if proxied == url {
        // A URL naming the host by name: point it at the proxy explicitly.
        let rest = url.split('@').nth(1).expect("user@host");
        let db = rest.split_once('/').map(|(_, d)| d).unwrap_or("");
        format!(
            "{}@{}/{db}",
            url.split('@').next().expect("scheme"),
            proxy.addr
        )
    } else {
        proxied
    };
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let root = tempfile::tempdir().expect("dir");
    let main = replica(root.path(), "replica-c", &sims, &storage(&proxied, &schema));
    let (_gw, lookup_addr, admin_addr) = spawn_serve(&main, &root.path().join("c.log"), "info");
    let citizens = Arc::new(
        sims.data
            .samples("population.citizen", 200)
            .expect("samples"),
    );
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    let run_for = std::time::Duration::from_millis(4_000);
    let mut clients = Vec::new();
    for c in 0..4 {
        let (http, citizens, base) = (http.clone(), citizens.clone(), lookup_addr.clone());
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut i = c;
            while started.elapsed() < run_for {
                let id = &citizens[i % citizens.len()];
                let (status, request_id) =
                    lookup(&http, &base, &format!("/v1/citizens/{id}")).await;
                seen.push((started.elapsed(), status, request_id));
                i += 4;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            seen
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    proxy.cut();
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let ready: u16 = http
        .get(format!("http://{admin_addr}/readyz"))
        .send()
        .await
        .expect("readyz")
        .status()
        .as_u16();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    proxy.restore();
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.expect("client"));
    }
    assert_eq!(ready, 503, "not ready while the audit store is cut off");
    let refused = all.iter().filter(|(_, s, _)| *s == 503).count();
    let other = all
        .iter()
        .filter(|(_, s, _)| *s != 200 && *s != 503)
        .count();
    assert!(refused > 0, "the cut was felt");
    assert_eq!(other, 0, "only 200 or 503 audit_unavailable: {all:?}");
    // Lookups resume once it is back.
    let last: Vec<u16> = all
        .iter()
        .filter(|(t, _, _)| *t > std::time::Duration::from_millis(3_500))
        .map(|(_, s, _)| *s)
        .collect();
    assert!(
        !last.is_empty() && last.iter().all(|s| *s == 200),
        "{last:?}"
    );
    // Every acknowledged lookup has its record.
    let ids = recorded_ids(&url, &schema).await;
    let served: Vec<&String> = all
        .iter()
        .filter(|(_, s, _)| *s == 200)
        .map(|(_, _, id)| id)
        .collect();
    assert!(served.len() > 20);
    eprintln!(
        "{} lookups: {} served, {refused} refused while the store was cut off",
        all.len(),
        served.len()
    );
    for id in &served {
        assert!(ids.contains(*id), "acknowledged request {id} has no record");
    }
    let (ok, text) = verify(&main);
    assert!(ok, "{text}");
    let ready: Value = http
        .get(format!("http://{admin_addr}/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready", "{ready}");
    drop_schema(&url, &schema).await;
}
