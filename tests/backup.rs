//! Backup and restore of the embedded store, as an operator runs them: `lienthong backup`
//! under load goes through the running gateway's admin listener; the copy restores into
//! another place, verifies, and holds every record acknowledged before the backup started;
//! a restore never overwrites a live store, and a damaged backup is refused.

mod common;

use common::*;
use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};

fn lienthong(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(args)
        .env_remove("LIENTHONG_CONFIG")
        .env_remove("LIENTHONG_ADMIN_TOKEN")
        .output()
        .expect("lienthong runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every request id the audit store at `dir` holds.
async fn request_ids(main: &std::path::Path) -> HashSet<String> {
    let built = lienthong::app::build(
        &lienthong::config::Source::File(main.to_owned()),
        &Default::default(),
    )
    .expect("config");
    let (store, _) = lienthong::app::open_store(&built.model)
        .await
        .expect("store opens");
    let mut ids = HashSet::new();
    for instance in store.instances().await.expect("instances") {
        let mut after = 0;
        loop {
            let page = store.scan(&instance, after, 1000).await.expect("scan");
            let Some(last) = page.last() else { break };
            after = last.seq;
            ids.extend(page.into_iter().map(|r| r.entry.request_id));
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_elsewhere_verifies_and_holds_every_acknowledged_record() {
    let h = Harness::start().await;
    let main = h.dir.path().join("gateway.toml");
    let admin = format!("http://{}", h.gateway.admin_addr);
    let codes = h
        .sims
        .data
        .samples("business.enterprise", 20)
        .expect("samples");

    // Load: eight clients looking up enterprises until told to stop; each answer's request
    // id is noted with the moment it was acknowledged.
    let acknowledged: Arc<Mutex<Vec<(std::time::Instant, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for client in 0..8 {
        let (http, base, codes) = (h.http.clone(), h.base.clone(), codes.clone());
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut i = client;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let code = &codes[i % codes.len()];
                i += 1;
                let r = with_context(http.get(format!("{base}/v1/enterprises/{code}")))
                    .send()
                    .await
                    .expect("sent");
                if r.status() == 200 {
                    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
                    acknowledged
                        .lock()
                        .unwrap()
                        .push((std::time::Instant::now(), id));
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // The backup, while the load goes on: the CLI sees the gateway holds the store and
    // goes through its admin listener.
    let to = h.dir.path().join("backup-1");
    let started = std::time::Instant::now();
    let (ok, stdout, stderr) = {
        let (main, to, admin) = (main.clone(), to.clone(), admin.clone());
        tokio::task::spawn_blocking(move || {
            lienthong(&[
                "backup",
                "--to",
                to.to_str().unwrap(),
                "--config",
                main.to_str().unwrap(),
                "--admin",
                &admin,
                "--token",
                "demo-operator-token",
            ])
        })
        .await
        .unwrap()
    };
    assert!(ok, "{stderr}");
    assert!(stdout.contains("every record through #"), "{stdout}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let before: Vec<&String> = acknowledged
        .iter()
        .filter(|(at, _)| *at < started)
        .map(|(_, id)| id)
        .collect();
    let during = acknowledged.len() - before.len();
    assert!(
        before.len() >= 20 && during >= 1,
        "load before ({}) and during/after ({during}) the backup",
        before.len()
    );

    // The backup is recorded as the operator's.
    let records = h
        .admin_json(
            "demo-operator-token",
            "/admin/v1/audit/records?consumer=operator:61112491&limit=20",
        )
        .await;
    assert!(
        records["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "backup" && r["outcome"] == "served"),
        "{records}"
    );

    // A backup into a directory that holds something is refused.
    let (ok, _, stderr) = lienthong(&[
        "backup",
        "--to",
        to.to_str().unwrap(),
        "--config",
        main.to_str().unwrap(),
        "--admin",
        &admin,
        "--token",
        "demo-operator-token",
    ]);
    assert!(!ok && stderr.contains("not empty"), "{stderr}");

    // A restore over the live store is refused, and leaves it alone.
    let (ok, _, stderr) = lienthong(&[
        "restore",
        "--from",
        to.to_str().unwrap(),
        "--config",
        main.to_str().unwrap(),
        "--replace",
    ]);
    assert!(!ok && stderr.contains("a gateway is serving"), "{stderr}");

    // Restored elsewhere (the same configuration, in another folder): it verifies and
    // holds every record acknowledged before the backup started.
    let elsewhere = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(h.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, elsewhere.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let other = elsewhere.path().join("gateway.toml");
    let (ok, stdout, stderr) = lienthong(&[
        "restore",
        "--from",
        to.to_str().unwrap(),
        "--config",
        other.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("restored"), "{stdout}");
    let (ok, stdout, stderr) = lienthong(&["audit", "verify", "--config", other.to_str().unwrap()]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("verifies"), "{stdout}");
    let restored = request_ids(&other).await;
    let missing: Vec<&&String> = before
        .iter()
        .filter(|id| !restored.contains(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged before the backup are missing",
        missing.len(),
        before.len()
    );

    // A second restore refuses the data now there, unless told to move it aside.
    let (ok, _, stderr) = lienthong(&[
        "restore",
        "--from",
        to.to_str().unwrap(),
        "--config",
        other.to_str().unwrap(),
    ]);
    assert!(!ok && stderr.contains("--replace"), "{stderr}");

    // A damaged backup is refused, naming the file, before anything is touched.
    let damaged = h.dir.path().join("backup-damaged");
    std::fs::create_dir_all(damaged.join("segments")).unwrap();
    std::fs::create_dir_all(damaged.join("db")).unwrap();
    std::fs::create_dir_all(damaged.join("archive")).unwrap();
    for sub in ["segments", "db", "archive"] {
        for entry in std::fs::read_dir(to.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, damaged.join(sub).join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(to.join("MANIFEST.json"), damaged.join("MANIFEST.json")).unwrap();
    let log = std::fs::read_dir(damaged.join("segments"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&log, bytes).unwrap();
    let third = tempfile::tempdir().unwrap();
    std::fs::copy(&other, third.path().join("gateway.toml")).unwrap();
    for f in [
        "connectors.toml",
        "consumers.toml",
        "grants.toml",
        "procedures.toml",
    ] {
        std::fs::copy(elsewhere.path().join(f), third.path().join(f)).unwrap();
    }
    let (ok, _, stderr) = lienthong(&[
        "restore",
        "--from",
        damaged.to_str().unwrap(),
        "--config",
        third.path().join("gateway.toml").to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("damaged") && stderr.contains("segments/"),
        "{stderr}"
    );
    assert!(!third.path().join("data").join("audit.db").exists());
}
