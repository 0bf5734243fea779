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
    replica_dir(root, name, sims, extra, |_, text| text)
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
    lienthong::certs::install_crypto();
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
    lienthong::certs::install_crypto();
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

fn redis(url: &str, prefix: &str, fallback: &str) -> String {
    format!(
        "[redis]\nurl = \"{url}\"\nkey_prefix = \"{prefix}:\"\nreplicas = 2\non_unavailable = \"{fallback}\"\ntimeout_ms = 100\n"
    )
}

/// The demo's citizen grant with a quota.
fn with_quota(quota: &str) -> impl Fn(&str, String) -> String + Clone {
    let quota = quota.to_owned();
    move |file: &str, text: String| match file {
        "grants.toml" => text.replacen(
            "modes = [\"fetch\", \"verify\"]",
            &format!("modes = [\"fetch\", \"verify\"]\nquota = \"{quota}\""),
            1,
        ),
        _ => text,
    }
}

async fn metric(http: &reqwest::Client, admin: &str, name: &str) -> Option<f64> {
    let text = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_quota_through_redis() {
    let Some(url) = redis_url() else { return };
    lienthong::certs::install_crypto();
    let prefix = unique("t_quota");
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let root = tempfile::tempdir().expect("dir");
    let shared = redis(&url, &prefix, "local-share");
    let a = replica_dir(root.path(), "qa", &sims, &shared, with_quota("30/min"));
    let b = replica_dir(root.path(), "qb", &sims, &shared, with_quota("30/min"));
    let (_a, lookup_a, admin_a) = spawn_serve(&a, &root.path().join("a.log"), "info");
    let (_b, lookup_b, _) = spawn_serve(&b, &root.path().join("b.log"), "info");
    let citizens = sims
        .data
        .samples("population.citizen", 10)
        .expect("samples");
    let http = reqwest::Client::new();
    let calls = (0..90).map(|i| {
        let base = if i % 2 == 0 { &lookup_a } else { &lookup_b };
        let path = format!("/v1/citizens/{}", citizens[i % citizens.len()]);
        let http = http.clone();
        async move { lookup(&http, base, &path).await.0 }
    });
    let started = std::time::Instant::now();
    let statuses = futures::future::join_all(calls).await;
    let elapsed = started.elapsed().as_secs_f64();
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(admitted + refused, 90, "{statuses:?}");
    // One quota for both: 30, plus what refilled (one per 2 s) while the calls ran; not 30
    // each.
    let allowed = 30 + (elapsed / 2.0).ceil() as usize;
    assert!(
        (30..=allowed).contains(&admitted),
        "admitted {admitted} in {elapsed:.2}s"
    );
    assert!(
        metric(&http, &admin_a, "lienthong_quota_store_seconds_count")
            .await
            .unwrap_or(0.0)
            >= 45.0,
        "the limiter's own latency is measured"
    );
    assert_eq!(
        metric(&http, &admin_a, "lienthong_quota_fallback_total").await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cut_off_mid_run_falls_back_and_recovers() {
    let Some(url) = redis_url() else { return };
    lienthong::certs::install_crypto();
    let prefix = unique("t_cut");
    let proxy = Proxy::start(url_addr(&url)).await;
    let proxied = format!("redis://{}", proxy.addr);
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let root = tempfile::tempdir().expect("dir");
    // One replica shares what it can; another, configured to fail closed, refuses.
    let share = replica_dir(
        root.path(),
        "share",
        &sims,
        &redis(&proxied, &prefix, "local-share"),
        with_quota("40/min"),
    );
    let closed = replica_dir(
        root.path(),
        "closed",
        &sims,
        &redis(&proxied, &format!("{prefix}c"), "fail-closed"),
        with_quota("40/min"),
    );
    let (_s, lookup_s, admin_s) = spawn_serve(&share, &root.path().join("s.log"), "info");
    let (_c, lookup_c, _) = spawn_serve(&closed, &root.path().join("c.log"), "info");
    let id = sims.data.samples("population.citizen", 1).expect("samples")[0].clone();
    let path = format!("/v1/citizens/{id}");
    let http = reqwest::Client::new();
    for _ in 0..5 {
        assert_eq!(lookup(&http, &lookup_s, &path).await.0, 200);
        assert_eq!(lookup(&http, &lookup_c, &path).await.0, 200);
    }
    assert_eq!(
        metric(&http, &admin_s, "lienthong_quota_store_up").await,
        Some(1.0)
    );

    proxy.cut();
    // While Redis is unreachable: this replica's share (40 ÷ 2 = 20) in memory, answered
    // as 200 or 429, never a server error.
    let mut during = Vec::new();
    for _ in 0..30 {
        during.push(lookup(&http, &lookup_s, &path).await.0);
    }
    let admitted = during.iter().filter(|s| **s == 200).count();
    assert!(during.iter().all(|s| *s == 200 || *s == 429), "{during:?}");
    assert!(
        (20..=21).contains(&admitted),
        "share admitted {admitted}: {during:?}"
    );
    assert_eq!(
        metric(&http, &admin_s, "lienthong_quota_store_up").await,
        Some(0.0)
    );
    assert!(
        metric(&http, &admin_s, "lienthong_quota_fallback_total")
            .await
            .unwrap_or(0.0)
            >= 29.0
    );
    // Failing closed: refused as overloaded, with a Retry-After.
    let r = http
        .get(format!("http://{lookup_c}{path}"))
        .bearer_auth(API_KEY)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["code"], "overloaded");

    // Redis returns: within a couple of seconds quotas are shared again.
    proxy.restore();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, _) = lookup(&http, &lookup_c, &path).await;
        if s == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fail-closed replica did not recover: {s}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The sharing replica reconnects on its own schedule (a failed check skips Redis for a
    // moment, and the connection redials with a backoff): it too shares again within the
    // deadline.
    loop {
        let _ = lookup(&http, &lookup_s, &path).await;
        if metric(&http, &admin_s, "lienthong_quota_store_up").await == Some(1.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sharing replica did not reach Redis again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_and_registry_changes_through_one_replica_reach_the_other() {
    let (Some(pg), Some(redis_url)) = (postgres_url(), redis_url()) else {
        return;
    };
    lienthong::certs::install_crypto();
    let schema = unique("t_sync");
    let prefix = unique("t_sync");
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let root = tempfile::tempdir().expect("dir");
    let extra = format!(
        "{}{}",
        storage(&pg, &schema),
        redis(&redis_url, &prefix, "local-share")
    );
    let a = replica(root.path(), "sync-a", &sims, &extra);
    let b = replica(root.path(), "sync-b", &sims, &extra);
    let (_a, _lookup_a, admin_a) = spawn_serve(&a, &root.path().join("a.log"), "info");
    let (_b, lookup_b, admin_b) = spawn_serve(&b, &root.path().join("b.log"), "info");
    let http = reqwest::Client::new();
    let id = sims.data.samples("population.citizen", 1).expect("samples")[0].clone();
    let citizen = format!("/v1/citizens/{id}");
    let cache = |http: reqwest::Client, base: String, path: String| async move {
        http.get(format!("http://{base}{path}"))
            .bearer_auth(API_KEY)
            .header("X-Procedure-Code", PROCEDURE)
            .header("X-Dossier-Id", DOSSIER)
            .header("X-Officer-Id", OFFICER)
            .send()
            .await
            .expect("sent")
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        cache(http.clone(), lookup_b.clone(), citizen.clone()).await,
        "miss"
    );
    assert_eq!(
        cache(http.clone(), lookup_b.clone(), citizen.clone()).await,
        "hit"
    );

    // A purge through replica A empties replica B's cache too.
    let purged = http
        .post(format!("http://{admin_a}/admin/v1/cache/purge"))
        .bearer_auth("demo-operator-token")
        .json(&serde_json::json!({"dataset": "population.citizen", "key": id}))
        .send()
        .await
        .expect("sent");
    assert_eq!(purged.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut after = String::new();
    while std::time::Instant::now() < deadline {
        // Read B's purge counter rather than its cache, so the check does not refill it.
        if metric(&http, &admin_b, "lienthong_replica_events_total").await >= Some(1.0) {
            after = cache(http.clone(), lookup_b.clone(), citizen.clone()).await;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(after, "miss", "replica B obeyed A's purge");

    // A grant removed through replica A stops replica B's lookups, with no restart.
    let parcel = sims.data.samples("land.parcel", 1).expect("samples")[0].clone();
    assert_eq!(
        lookup(&http, &lookup_b, &format!("/v1/land-parcels/{parcel}"))
            .await
            .0,
        200
    );
    let grants: Value = http
        .get(format!("http://{admin_a}/admin/v1/grants"))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let grant_id = grants["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .find(|g| g["grant"]["dataset"] == "land.parcel")
        .expect("land grant")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let removed = http
        .delete(format!("http://{admin_a}/admin/v1/grants/{grant_id}"))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .expect("sent");
    assert_eq!(removed.status(), 200);
    let changed_at = std::time::Instant::now();
    loop {
        let status = lookup(&http, &lookup_b, &format!("/v1/land-parcels/{parcel}"))
            .await
            .0;
        if status == 403 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            changed_at.elapsed() < std::time::Duration::from_secs(3),
            "replica B still runs the old grants"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    eprintln!("replica B followed in {:?}", changed_at.elapsed());
    let versions: Value = http
        .get(format!("http://{admin_b}/admin/v1/registry/versions"))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(versions["running"], 2, "{versions}");
    drop_schema(&pg, &schema).await;
}

/// A lookup through `base` with `key`: its status.
async fn status_with(http: &reqwest::Client, base: &str, path: &str, key: &str) -> u16 {
    http.get(format!("http://{base}{path}"))
        .bearer_auth(key)
        .header("X-Procedure-Code", PROCEDURE)
        .header("X-Dossier-Id", DOSSIER)
        .header("X-Officer-Id", OFFICER)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_one_replica_stops_working_on_the_other() {
    let (Some(pg), Some(redis_url)) = (postgres_url(), redis_url()) else {
        return;
    };
    lienthong::certs::install_crypto();
    let schema = unique("t_revoke");
    let prefix = unique("t_revoke");
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let root = tempfile::tempdir().expect("dir");
    // The polls below fail authentication on purpose, many times over: the door's back-off
    // for failing sources would answer them 429 instead, so it is set out of reach.
    let extra = format!(
        "{}{}[door]\nauth_failures = \"100000/min\"\n",
        storage(&pg, &schema),
        redis(&redis_url, &prefix, "local-share")
    );
    let a = replica(root.path(), "revoke-a", &sims, &extra);
    let b = replica(root.path(), "revoke-b", &sims, &extra);
    let (_a, _lookup_a, admin_a) = spawn_serve(&a, &root.path().join("a.log"), "info");
    let (_b, lookup_b, _admin_b) = spawn_serve(&b, &root.path().join("b.log"), "info");
    let http = reqwest::Client::new();
    let id = sims.data.samples("population.citizen", 1).expect("samples")[0].clone();
    let citizen = format!("/v1/citizens/{id}");
    let deadline = std::time::Duration::from_secs(3);

    // Keys issued through A, each waited for on B.
    let mut keys = Vec::new();
    for _ in 0..5 {
        let issued: Value = http
            .post(format!(
                "http://{admin_a}/admin/v1/consumers/demo-onestop/keys"
            ))
            .bearer_auth("demo-operator-token")
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        let key = issued["key"].as_str().expect("key").to_owned();
        let kid = issued["issued"]["id"].as_str().expect("id").to_owned();
        let since = std::time::Instant::now();
        // 429 too: the key was taken (authentication comes before the quota).
        while !matches!(
            status_with(&http, &lookup_b, &citizen, &key).await,
            200 | 429
        ) {
            assert!(since.elapsed() < deadline, "replica B never took key {kid}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        keys.push((key, kid));
    }

    // Each revoked through A: B refuses it within the bounded wait; the delay is measured
    // from A's answer to B's first refusal.
    let mut delays = Vec::new();
    for (key, kid) in &keys {
        let revoked = http
            .delete(format!(
                "http://{admin_a}/admin/v1/consumers/demo-onestop/keys/{kid}"
            ))
            .bearer_auth("demo-operator-token")
            .send()
            .await
            .expect("sent");
        assert_eq!(revoked.status(), 200);
        let since = std::time::Instant::now();
        loop {
            match status_with(&http, &lookup_b, &citizen, key).await {
                401 => break,
                200 | 429 => {}
                other => panic!("replica B answered {other}"),
            }
            assert!(
                since.elapsed() < deadline,
                "replica B still takes key {kid} after {deadline:?}; its log:\n{}",
                std::fs::read_to_string(root.path().join("b.log")).unwrap_or_default()
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        delays.push(since.elapsed());
    }
    delays.sort();
    eprintln!(
        "revocation reached replica B in {:?} (min), {:?} (median), {:?} (max) of {}",
        delays[0],
        delays[delays.len() / 2],
        delays[delays.len() - 1],
        delays.len()
    );
    // The demo's own key was never touched.
    let untouched = status_with(&http, &lookup_b, &citizen, API_KEY).await;
    assert!(matches!(untouched, 200 | 429), "{untouched}");
    drop_schema(&pg, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_capacity_toward_a_provider() {
    let Some(url) = redis_url() else { return };
    lienthong::certs::install_crypto();
    let prefix = unique("t_cap");
    let sims = lienthong::sim::spawn(lienthong::sim::SimOptions::ephemeral())
        .await
        .expect("simulators");
    let root = tempfile::tempdir().expect("dir");
    // 2 calls a second toward the population database, 6 at once, no waiting: across both
    // replicas, not each.
    let slow = |file: &str, text: String| match file {
        "connectors.toml" => text.replacen(
            "capacity_rps = 200\nburst = 50",
            "capacity_rps = 2\nburst = 6\nmax_wait_ms = 0",
            1,
        ),
        _ => text,
    };
    let shared = redis(&url, &prefix, "local-share");
    let a = replica_dir(root.path(), "ca", &sims, &shared, slow);
    let b = replica_dir(root.path(), "cb", &sims, &shared, slow);
    let (_a, lookup_a, _) = spawn_serve(&a, &root.path().join("a.log"), "info");
    let (_b, lookup_b, _) = spawn_serve(&b, &root.path().join("b.log"), "info");
    let citizens = sims
        .data
        .samples("population.citizen", 40)
        .expect("samples");
    let http = reqwest::Client::new();
    // Distinct keys, so every call misses the cache and needs the provider.
    let calls = citizens.iter().enumerate().map(|(i, id)| {
        let base = if i % 2 == 0 { &lookup_a } else { &lookup_b };
        let path = format!("/v1/citizens/{id}");
        let http = http.clone();
        async move { lookup(&http, base, &path).await.0 }
    });
    let started = std::time::Instant::now();
    let statuses = futures::future::join_all(calls).await;
    let elapsed = started.elapsed().as_secs_f64();
    let served = statuses.iter().filter(|s| **s == 200).count();
    let provider_calls = sims.population.calls("TraCuuThongTinCongDan");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    // The burst of 6 plus what refilled at 2/s while the calls ran (each replica alone would
    // have let 6 through).
    let allowed = 6 + (elapsed * 2.0).ceil() as u64;
    assert!(
        provider_calls >= 6 && provider_calls <= allowed,
        "{provider_calls} provider calls in {elapsed:.2}s, {served} served"
    );
    assert_eq!(served as u64, provider_calls);
}

#[tokio::test]
async fn a_large_batch_goes_into_postgres_whole_and_in_order() {
    use lienthong::audit::record::{AuditEntry, Chained, GENESIS, chain_hash};
    use lienthong::audit::store::AuditStore;
    let Some(url) = postgres_url() else { return };
    let schema = unique("t_batch");
    let store = lienthong::audit::postgres::PostgresStore::open(&url, &schema, true)
        .await
        .expect("store");
    // More rows than one statement carries (16), so the batch spans several statements in
    // its transaction.
    let mut prev = GENESIS;
    let records: Vec<Chained> = (1..=50)
        .map(|seq| {
            let entry = AuditEntry {
                time_ms: 1_764_300_000_000 + seq,
                request_id: format!("req-{seq}"),
                action: "lookup".into(),
                outcome: "served".into(),
                fields: vec!["full_name".into()],
                upstream_ms: -1,
                ..AuditEntry::default()
            };
            let hash = chain_hash(&prev, "batch", seq, &entry);
            let r = Chained {
                instance: "batch".into(),
                seq,
                prev_hash: prev,
                hash,
                entry,
            };
            prev = hash;
            r
        })
        .collect();
    store.append(records.clone(), None).await.expect("appended");
    let back = store.scan("batch", 0, 100).await.expect("scanned");
    assert_eq!(back, records);
    assert_eq!(store.head("batch").await.expect("head"), Some((50, prev)));
    drop_schema(&url, &schema).await;
}
