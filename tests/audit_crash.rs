//! The gateway process killed with SIGKILL in the middle of concurrent load: every response a
//! client received has its record, and the chain verifies. Its logs, meanwhile, hold none of
//! the personal ids or names it served.

mod common;

use common::*;
use lienthong::audit::journal::JournaledStore;
use lienthong::audit::store::AuditStore;
use lienthong::audit::verify::verify;
use lienthong::config::Source;
use lienthong::sim::{self, SimOptions, control::Faults};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_record() {
    let sims = sim::spawn(SimOptions::ephemeral())
        .await
        .expect("simulators");
    // Some calls fail upstream, so error paths log too.
    sims.business.set_faults(Faults {
        malformed_rate: 0.3,
        error_rate: 0.2,
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("dir");
    let main = write_config(dir.path(), &sims, |_, text| text);
    let log = dir.path().join("gateway.log");
    let (mut child, lookup, _) = spawn_serve(&main, &log, "info");
    let base = format!("http://{lookup}");

    let citizens = sims
        .data
        .samples("population.citizen", 40)
        .expect("samples");
    let enterprises = sims
        .data
        .samples("business.enterprise", 40)
        .expect("samples");
    let received: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
    let served_names: Arc<Mutex<HashSet<String>>> = Arc::default();
    lienthong::certs::install_crypto();
    let http = reqwest::Client::new();
    let mut workers = Vec::new();
    for w in 0..16 {
        let (http, base, received, names) = (
            http.clone(),
            base.clone(),
            received.clone(),
            served_names.clone(),
        );
        let (citizens, enterprises) = (citizens.clone(), enterprises.clone());
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let path = if (w + i) % 3 == 0 {
                    format!(
                        "/v1/enterprises/{}",
                        enterprises[(w * 7 + i) % enterprises.len()]
                    )
                } else {
                    format!("/v1/citizens/{}", citizens[(w * 5 + i) % citizens.len()])
                };
                let sent = http
                    .get(format!("{base}{path}"))
                    .bearer_auth(API_KEY)
                    .header("X-Procedure-Code", PROCEDURE)
                    .header("X-Dossier-Id", DOSSIER)
                    .header("X-Officer-Id", OFFICER)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let Ok(r) = sent else { break };
                let id = r.headers()["x-request-id"]
                    .to_str()
                    .expect("ascii")
                    .to_owned();
                let status = r.status().as_u16();
                // A response counts as received only once its body has arrived.
                let Ok(body) = r.json::<serde_json::Value>().await else {
                    break;
                };
                for field in ["full_name", "name"] {
                    if let Some(n) = body[field].as_str() {
                        names.lock().unwrap().insert(n.to_owned());
                    }
                }
                received.lock().unwrap().push((id, status));
            }
        }));
    }
    // Let load build, then kill the process without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.0.kill().expect("SIGKILL");
    child.0.wait().expect("reaped");
    for w in workers {
        let _ = w.await;
    }
    let received = received.lock().unwrap().clone();
    let served = received.iter().filter(|(_, s)| *s == 200).count();
    assert!(
        served > 50,
        "load was running: {} responses",
        received.len()
    );

    let config = lienthong::app::build(&Source::File(main), &BTreeMap::new())
        .expect("config")
        .model;
    // The killed process left its latest group commits in commit files, not yet moved into
    // SQLite; opening the store moves them in.
    let commit_files = || {
        std::fs::read_dir(config.audit.path.parent().expect("data dir"))
            .expect("data dir")
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("audit.db.commits.") && !name.ends_with(".lock")
            })
            .count()
    };
    assert!(
        commit_files() > 0,
        "the kill left no commit file: nothing to recover"
    );
    let store = JournaledStore::open(&config.audit.path, true, true)
        .await
        .expect("store");
    assert_eq!(commit_files(), 0, "recovered commit files are removed");
    let store = &*store;
    let instance = config.settings.instance_id.clone();
    let records = store.scan(&instance, 0, 1_000_000).await.expect("scan");
    let recorded: HashSet<&str> = records
        .iter()
        .map(|r| r.entry.request_id.as_str())
        .collect();
    let missing: Vec<_> = received
        .iter()
        .filter(|(id, _)| !recorded.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} responses without a record: {missing:?}",
        missing.len()
    );
    let reports = verify(store, &config.audit.verify_keys, |_, _, _| {})
        .await
        .expect("the chain verifies after the crash");
    println!(
        "crash: {} responses received ({served} served), {} records, {} after the last checkpoint",
        received.len(),
        records.len(),
        reports[0].after_last_checkpoint
    );

    // The logs say what happened without saying whose data it was.
    let logs = std::fs::read_to_string(&log).expect("log");
    assert!(
        logs.contains("upstream call failed"),
        "error paths were logged"
    );
    let names = served_names.lock().unwrap().clone();
    assert!(!names.is_empty());
    for secret in citizens.iter().chain(&enterprises).chain(&names) {
        assert!(
            !logs.contains(secret.as_str()),
            "{secret:?} appears in the logs"
        );
    }
}
