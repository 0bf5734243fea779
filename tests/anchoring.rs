//! Off-host anchoring: every checkpoint gets a receipt from each configured witness (an
//! RFC 3161 time-stamping authority, a countersigning witness); a witness that goes down
//! and comes back leaves every checkpoint anchored; a chain rewritten and re-signed with
//! the host's own key is caught through its receipts, kept or removed; and the RFC 3161
//! client works against `openssl ts` too.

mod common;

use common::*;
use lienthong::audit::record::{Signer, chain_hash};
use lienthong::audit::store::AuditStore;
use lienthong::audit::verify::{VerifyError, verify, verify_anchored};
use lienthong::sim::witness::Witnesses;
use std::sync::Arc;
use std::time::Duration;

const SIGNING_SEED: &str = "TmO4lEWqiimgrM4MtiLB8n6/LLmGdhpHZhX0kQjgO8s=";

/// Gateway settings: a checkpoint every 4 records and every second, the witnesses, and
/// an anchoring lag of `lag_s`.
fn anchored(text: String, witnesses: &str, lag_s: u64) -> String {
    text.replace(
        "fsync = true",
        &format!(
            "fsync = true\ncheckpoint_every = 4\ncheckpoint_interval_s = 1\nanchor_lag_s = {lag_s}"
        ),
    ) + witnesses
}

/// Waits until every checkpoint of the store has a receipt from each of `n` witnesses.
async fn all_anchored(store: &dyn AuditStore, n: usize, within: Duration) -> (usize, usize) {
    let until = tokio::time::Instant::now() + within;
    loop {
        let instance = store.instances().await.unwrap()[0].clone();
        let checkpoints = store.checkpoints(&instance).await.unwrap().len();
        let receipts = store.receipts(&instance).await.unwrap().len();
        if checkpoints > 0 && receipts == checkpoints * n {
            return (checkpoints, receipts);
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{checkpoints} checkpoints, {receipts} receipts after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(h: &Harness, name: &str) -> String {
    let text = h
        .http
        .get(format!("http://{}/metrics", h.gateway.admin_addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_anchored_through_an_outage_and_a_rewritten_chain_is_caught() {
    let witnesses = Arc::new(Witnesses::new("witness-test", &[3; 32]).unwrap());
    let (witness_addr, _task) =
        lienthong::sim::witness::spawn("127.0.0.1:0".parse().unwrap(), witnesses.clone())
            .await
            .unwrap();
    let proxy = Proxy::start(witness_addr).await;
    let keep = tempfile::tempdir().unwrap();
    let pem = keep.path().join("tsa.pem");
    std::fs::write(&pem, witnesses.certificate_pem()).unwrap();
    let config = format!(
        "\n[[audit.witnesses]]\nname = \"tsa\"\nkind = \"rfc3161\"\nurl = \"http://{0}/tsa\"\ncertificate = \"{1}\"\n\n[[audit.witnesses]]\nname = \"countersigner\"\nkind = \"countersign\"\nurl = \"http://{0}/v1/countersign\"\npublic_key = \"{2}\"\n",
        proxy.addr,
        pem.display(),
        witnesses.public_key()
    );
    let h = Harness::start_with(|name, text| {
        if name == "gateway.toml" {
            anchored(text, &config, 3)
        } else {
            text
        }
    })
    .await;
    let code = h.sample("business.enterprise");
    for _ in 0..10 {
        assert_eq!(
            h.get(&format!("/v1/enterprises/{code}")).await.status(),
            200
        );
    }
    let g = h.gateway.gateway();
    let store = g.audit_handle();
    let (before, _) = all_anchored(store.store(), 2, Duration::from_secs(15)).await;

    // The witnesses go away: lookups go on, their checkpoints wait, the lag shows.
    proxy.cut();
    for _ in 0..10 {
        assert_eq!(
            h.get(&format!("/v1/enterprises/{code}")).await.status(),
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let lag = metric(&h, "lienthong_anchor_lag_seconds").await;
    for witness in ["tsa", "countersigner"] {
        let line = lag
            .lines()
            .find(|l| l.contains(&format!("witness=\"{witness}\"")))
            .unwrap_or_else(|| panic!("{lag}"));
        let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(seconds >= 1.0, "{line}");
    }
    assert!(
        metric(&h, "lienthong_anchor_failures_total")
            .await
            .contains("witness=\"tsa\""),
        "failures are counted"
    );
    let instance = store.store().instances().await.unwrap()[0].clone();
    let waiting = store.store().checkpoints(&instance).await.unwrap().len();
    assert!(
        waiting > before,
        "checkpoints went on without the witnesses"
    );
    // While a receipt is missing past the lag, verification says so.
    let anchoring = g.config().audit.anchoring.clone();
    let keys = g.config().audit.verify_keys.clone();
    match verify_anchored(store.store(), &keys, &anchoring, |_, _, _| {}).await {
        Err(VerifyError::Broken(b)) => assert!(b.what.contains("no receipt"), "{b}"),
        other => panic!("a checkpoint unanchored past the lag passed: {other:?}"),
    }

    // They come back: every checkpoint is anchored, the lag falls to 0.
    proxy.restore();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (after, _) = all_anchored(store.store(), 2, Duration::from_secs(15)).await;
    assert!(after >= waiting);
    let lag = metric(&h, "lienthong_anchor_lag_seconds").await;
    assert!(
        lag.lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.ends_with(" 0")),
        "{lag}"
    );
    let reports = verify_anchored(store.store(), &keys, &anchoring, |_, _, _| {})
        .await
        .expect("anchored trail verifies");
    assert_eq!(reports[0].anchoring.anchored, after);
    // The countersigner's own log holds the chain's heads.
    assert_eq!(witnesses.log(&instance).len(), after);

    // Someone with root rewrites the chain from record 3 and re-signs every checkpoint
    // with the host's key: the chain and its signatures hold, the receipts do not.
    drop(store);
    drop(g);
    let Harness { gateway, dir, .. } = h;
    gateway.shutdown().await;
    let data = dir.path().join("data");
    let signer = {
        use base64::Engine;
        Signer::from_seed(
            "demo-s1",
            &base64::engine::general_purpose::STANDARD
                .decode(SIGNING_SEED)
                .unwrap(),
        )
        .unwrap()
    };
    let (rewritten, _copy) = tampered(&data, |records, checkpoints| {
        let mut prev = records.iter().find(|r| r.seq == 2).unwrap().hash;
        for r in records.iter_mut().filter(|r| r.seq >= 3) {
            if r.seq == 3 {
                r.entry.officer_id = "someone-else".into();
            }
            r.prev_hash = prev;
            r.hash = chain_hash(&prev, &r.instance, r.seq, &r.entry);
            prev = r.hash;
        }
        for cp in checkpoints.iter_mut() {
            let hash = records.iter().find(|r| r.seq == cp.seq).unwrap().hash;
            *cp = signer.sign(&cp.instance, cp.seq, &hash, cp.time_ms);
        }
    })
    .await;
    verify(rewritten.as_ref(), &keys, |_, _, _| {})
        .await
        .expect("without its anchors, the re-signed chain would pass");
    match verify_anchored(rewritten.as_ref(), &keys, &anchoring, |_, _, _| {}).await {
        Err(VerifyError::Broken(b)) => {
            assert!(b.what.contains("does not match the local chain"), "{b}")
        }
        other => panic!("a rewritten chain passed its anchors: {other:?}"),
    }
    // The witness would not countersign the rewritten head either.
    let cps = rewritten.checkpoints(&instance).await.unwrap();
    let refused = reqwest::Client::new()
        .post(format!("http://{witness_addr}/v1/countersign"))
        .json(&lienthong::domain::witness::Head {
            instance: instance.clone(),
            seq: cps[1].seq,
            hash: hex::encode(cps[1].hash),
            time_ms: cps[1].time_ms,
        })
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);

    // …and with the receipts removed too, the checkpoints stand unanchored past the lag.
    let db = _copy.path().join("audit.db");
    drop(rewritten);
    {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .connect()
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_receipts")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let reopened = lienthong::audit::journal::JournaledStore::open(&db, false, false)
        .await
        .unwrap();
    match verify_anchored(reopened.as_ref(), &keys, &anchoring, |_, _, _| {}).await {
        Err(VerifyError::Broken(b)) => assert!(b.what.contains("no receipt"), "{b}"),
        other => panic!("a chain stripped of its receipts passed: {other:?}"),
    }
}

/// A time-stamping authority that is `openssl ts -reply`, behind a small HTTP server.
async fn openssl_tsa(dir: &std::path::Path) -> Option<std::net::SocketAddr> {
    let ok = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    std::fs::write(
        dir.join("tsa.cnf"),
        "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\nserial = ./serial\ncrypto_device = builtin\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256\ness_cert_id_alg = sha256\n[ req ]\ndistinguished_name = dn\nprompt = no\n[ dn ]\nCN = openssl test TSA\n[ ext ]\nextendedKeyUsage = critical,timeStamping\n",
    )
    .unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    if !ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "tsa.key",
        "-out",
        "tsa.pem",
        "-days",
        "2",
        "-config",
        "tsa.cnf",
        "-extensions",
        "ext",
    ]) {
        return None;
    }
    let dir = dir.to_owned();
    let app = axum::Router::new().route(
        "/tsa",
        axum::routing::post(move |body: axum::body::Bytes| {
            let dir = dir.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let n = uuid::Uuid::new_v4();
                    let (q, r) = (format!("{n}.tsq"), format!("{n}.tsr"));
                    std::fs::write(dir.join(&q), &body).unwrap();
                    let out = std::process::Command::new("openssl")
                        .args(["ts", "-reply", "-queryfile", &q, "-signer", "tsa.pem"])
                        .args(["-inkey", "tsa.key", "-config", "tsa.cnf", "-out", &r])
                        .current_dir(&dir)
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    std::fs::read(dir.join(&r)).unwrap()
                })
                .await
                .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Some(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rfc3161_client_works_against_openssl_ts() {
    let tsa_dir = tempfile::tempdir().unwrap();
    let Some(tsa) = openssl_tsa(tsa_dir.path()).await else {
        assert!(
            std::env::var("LIENTHONG_CI").is_err(),
            "openssl is required under LIENTHONG_CI"
        );
        eprintln!("skipped: openssl is not installed");
        return;
    };
    let config = format!(
        "\n[[audit.witnesses]]\nname = \"openssl\"\nkind = \"rfc3161\"\nurl = \"http://{tsa}/tsa\"\ncertificate = \"{}\"\n",
        tsa_dir.path().join("tsa.pem").display()
    );
    let h = Harness::start_with(|name, text| {
        if name == "gateway.toml" {
            anchored(text, &config, 600)
        } else {
            text
        }
    })
    .await;
    let code = h.sample("business.enterprise");
    for _ in 0..8 {
        assert_eq!(
            h.get(&format!("/v1/enterprises/{code}")).await.status(),
            200
        );
    }
    let g = h.gateway.gateway();
    let store = g.audit_handle();
    all_anchored(store.store(), 1, Duration::from_secs(20)).await;
    let reports = verify_anchored(
        store.store(),
        &g.config().audit.verify_keys,
        &g.config().audit.anchoring,
        |_, _, _| {},
    )
    .await
    .expect("openssl's tokens check");
    assert!(reports[0].anchoring.anchored >= 2);

    // And openssl itself agrees that a kept receipt stamps that checkpoint.
    let instance = store.store().instances().await.unwrap()[0].clone();
    let receipt = store.store().receipts(&instance).await.unwrap().remove(0);
    let cp = store
        .store()
        .checkpoints(&instance)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.seq == receipt.seq)
        .unwrap();
    std::fs::write(tsa_dir.path().join("kept.tst"), &receipt.body).unwrap();
    let digest = hex::encode(lienthong::audit::anchor::checkpoint_digest(&cp));
    let out = std::process::Command::new("openssl")
        .args([
            "ts",
            "-verify",
            "-digest",
            &digest,
            "-in",
            "kept.tst",
            "-token_in",
        ])
        .args(["-CAfile", "tsa.pem", "-untrusted", "tsa.pem"])
        .current_dir(tsa_dir.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verification: OK"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
