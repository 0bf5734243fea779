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
    crash_under_load(false).await;
}

/// The same on a store the version before segments wrote: rows in SQLite and a commit file
/// its crash left. The chain goes on from them into segments, and survives the kill too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_on_a_store_of_the_earlier_format_loses_nothing_either() {
    crash_under_load(true).await;
}

const EARLIER: i64 = 40;

/// What the version before segments left: records 1-30 in SQLite, 31-40 in a commit file.
async fn earlier_store(config: &lienthong::core::model::Model) {
    use lienthong::audit::record::{AuditEntry, GENESIS, link};
    let instance = &config.settings.instance_id;
    let entries = (1..=EARLIER).map(|seq| AuditEntry {
        time_ms: lienthong::audit::record::now_ms() - 60_000 + seq,
        request_id: format!("earlier-{seq}"),
        action: "fetch".into(),
        outcome: "served".into(),
        upstream_ms: -1,
        ..AuditEntry::default()
    });
    let records = link(instance, 1, GENESIS, entries);
    let signer = config.audit.signer();
    let sqlite = lienthong::audit::sqlite::SqliteStore::open(&config.audit.path, true)
        .await
        .expect("sqlite");
    let cp = signer.sign(instance, 30, &records[29].hash, 1);
    sqlite
        .append_all(&records[..30], &[cp])
        .await
        .expect("rows");
    sqlite.pool().close().await;
    let cp = signer.sign(instance, EARLIER, &records[39].hash, 2);
    let line = serde_json::json!({
        "records": records[30..].iter().map(|r| serde_json::json!({
            "instance": r.instance, "seq": r.seq,
            "prev_hash": hex::encode(r.prev_hash), "hash": hex::encode(r.hash),
            "entry": r.entry,
        })).collect::<Vec<_>>(),
        "checkpoint": {
            "instance": cp.instance, "seq": cp.seq, "hash": hex::encode(cp.hash),
            "time_ms": cp.time_ms, "key_id": cp.key_id,
            "signature": hex::encode(&cp.signature),
        },
    });
    let mut file = config.audit.path.as_os_str().to_owned();
    file.push(".commits.1");
    std::fs::write(file, format!("{line}\n")).expect("commit file");
}

async fn crash_under_load(earlier: bool) {
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
    if earlier {
        let config = lienthong::app::build(&Source::File(main.clone()), &BTreeMap::new())
            .expect("config")
            .model;
        earlier_store(&config).await;
    }
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
    // The killed process left its newest segment unindexed, perhaps with a torn last
    // commit; opening the store cuts that off and indexes it.
    let segments = lienthong::audit::segments::Segments::dir_of(&config.audit.path);
    let unindexed = || {
        let names: Vec<String> = std::fs::read_dir(&segments)
            .expect("segments")
            .filter_map(|e| Some(e.ok()?.file_name().to_str()?.to_owned()))
            .collect();
        names
            .iter()
            .filter(|n| {
                n.strip_suffix(".log")
                    .is_some_and(|stem| !names.contains(&format!("{stem}.idx")))
            })
            .count()
    };
    assert!(unindexed() > 0, "the kill left nothing to recover");
    let store = JournaledStore::open(&config.audit.path, true, true)
        .await
        .expect("store");
    assert_eq!(unindexed(), 0, "every segment is indexed at open");
    if earlier {
        let instance = &config.settings.instance_id;
        assert_eq!(
            store.sqlite().count(instance).await.expect("count"),
            EARLIER,
            "the earlier records moved into SQLite once, and stay there"
        );
    }
    let store = &*store;
    let instance = config.settings.instance_id.clone();
    let records = store.scan(&instance, 0, 1_000_000).await.expect("scan");
    if earlier {
        assert!(
            records[..EARLIER as usize]
                .iter()
                .enumerate()
                .all(|(i, r)| r.entry.request_id == format!("earlier-{}", i + 1)),
            "the chain starts with the earlier records"
        );
    }
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
