//! The audit trail end to end: one record per call and per batch item whatever the outcome,
//! no personal data in the store, tampering found, group commit at work, queries recorded.

mod common;

use common::*;
use lienthong::audit::journal::JournaledStore;
use lienthong::audit::record::{Chained, chain_hash};
use lienthong::audit::sqlite::SqliteStore;
use lienthong::audit::store::AuditStore;
use lienthong::audit::verify::{VerifyError, verify};
use lienthong::proto::lienthong::*;
use lienthong::sim::control::Faults;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// Land lookups limited to 2 a minute; checkpoints every 5 records.
async fn harness() -> Harness {
    Harness::start_with(|name, text| match name {
        "grants.toml" => text.replacen(
            "dataset = \"land.parcel\"",
            "dataset = \"land.parcel\"\nquota = \"2/min\"",
            1,
        ),
        "gateway.toml" => text + "checkpoint_every = 5\n",
        _ => text,
    })
    .await
}

async fn chain(h: &Harness) -> Vec<Chained> {
    let audit = h.gateway.gateway().audit_handle();
    audit
        .store()
        .scan(audit.instance(), 0, 100_000)
        .await
        .expect("scan")
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

#[tokio::test]
async fn every_outcome_leaves_exactly_one_record_and_no_personal_data() {
    let h = harness().await;
    let citizens = h
        .sims
        .data
        .samples("population.citizen", 4)
        .expect("samples");
    let (a, b) = (citizens[1].clone(), citizens[2].clone());
    let code = h.sample("business.enterprise");
    let parcel = h.sample("land.parcel");
    let mut expected: Vec<(String, &str)> = Vec::new();
    let mut disclosed: Vec<String> = vec![a.clone(), b.clone(), code.clone(), parcel.clone()];

    let get = |path: String, headers: Vec<(&'static str, &'static str)>, key: bool| {
        let mut r = h.http.get(format!("{}{path}", h.base));
        for (k, v) in [
            ("X-Procedure-Code", PROCEDURE),
            ("X-Dossier-Id", DOSSIER),
            ("X-Officer-Id", OFFICER),
        ] {
            if !headers.iter().any(|(h, _)| *h == k) {
                r = r.header(k, v);
            }
        }
        if key {
            r = r.bearer_auth(API_KEY);
        }
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };

    let served = get(format!("/v1/citizens/{a}"), vec![], true)
        .await
        .expect("sent");
    assert_eq!(served.status(), 200);
    expected.push((request_id(&served), "served"));
    let record: Value = served.json().await.expect("json");
    disclosed.push(record["full_name"].as_str().expect("name").to_owned());
    let hit = get(format!("/v1/citizens/{a}"), vec![], true)
        .await
        .expect("sent");
    assert_eq!(hit.headers()["x-cache"], "hit");
    expected.push((request_id(&hit), "served"));
    // A caller with no credentials leaves no record of its own: the door sums such
    // refusals per source (tests/door.rs).
    let unknown = get(format!("/v1/citizens/{a}"), vec![], false)
        .await
        .expect("sent");
    assert_eq!(unknown.status(), 401);
    let unknown_id = request_id(&unknown);
    for (path, headers, key, outcome) in [
        (
            format!("/v1/citizens/{a}"),
            vec![("X-Procedure-Code", "3.000001")],
            true,
            "permission_denied",
        ),
        ("/v1/citizens/123".to_owned(), vec![], true, "invalid_key"),
        (
            format!("/v1/citizens/{a}"),
            vec![("X-Dossier-Id", "hồ sơ 1")],
            true,
            "invalid_context",
        ),
        (
            "/v1/citizens/001099000017".to_owned(),
            vec![],
            true,
            "not_found",
        ),
        (format!("/v1/land-parcels/{parcel}"), vec![], true, "served"),
        (format!("/v1/land-parcels/{parcel}"), vec![], true, "served"),
        (
            format!("/v1/land-parcels/{parcel}"),
            vec![],
            true,
            "rate_limited",
        ),
    ] {
        let r = get(path.clone(), headers.clone(), key).await.expect("sent");
        expected.push((request_id(&r), outcome));
    }
    h.sims.business.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    let r = get(format!("/v1/enterprises/{code}"), vec![], true)
        .await
        .expect("sent");
    expected.push((request_id(&r), "upstream_unavailable"));
    h.sims.population.set_faults(Faults {
        malformed_rate: 1.0,
        ..Faults::default()
    });
    let r = get(format!("/v1/citizens/{b}"), vec![], true)
        .await
        .expect("sent");
    expected.push((request_id(&r), "upstream_bad_response"));
    h.sims.population.set_faults(Faults::default());

    let post = |path: &str, body: Value| {
        h.http
            .post(format!("{}{path}", h.base))
            .bearer_auth(API_KEY)
            .header("X-Procedure-Code", PROCEDURE)
            .header("X-Dossier-Id", DOSSIER)
            .header("X-Officer-Id", OFFICER)
            .json(&body)
            .send()
    };
    let verified = post(
        "/v1/datasets/population.citizen/verify",
        json!({"key": a, "claims": {"full_name": "Ai Đó"}}),
    )
    .await
    .expect("sent");
    expected.push((request_id(&verified), "served"));
    let batch = post(
        "/v1/batch",
        json!({"items": [
            {"dataset": "population.citizen", "key": a},
            {"dataset": "population.citizen", "key": "12"},
            {"dataset": "tax.payer", "key": "x"}
        ]}),
    )
    .await
    .expect("sent");
    let batch_id = request_id(&batch);
    let items: Vec<Value> = (0..101)
        .map(|_| json!({"dataset": "population.citizen", "key": a}))
        .collect();
    let oversized = post("/v1/batch", json!({ "items": items }))
        .await
        .expect("sent");
    assert_eq!(oversized.status(), 400);
    expected.push((request_id(&oversized), "invalid_request"));
    let malformed = post("/v1/batch", json!({"things": []}))
        .await
        .expect("sent");
    expected.push((request_id(&malformed), "invalid_request"));

    let mut grpc = h.grpc().await;
    let reply = grpc
        .get_citizen(authed(GetCitizenRequest {
            context: context(),
            personal_id: a.clone(),
            fields: vec!["full_name".into()],
        }))
        .await
        .expect("served");
    let grpc_id = reply.into_inner().info.expect("info").request_id;
    expected.push((grpc_id.clone(), "served"));

    let records: Vec<Chained> = chain(&h)
        .await
        .into_iter()
        .filter(|r| r.entry.action != "door_summary")
        .collect();
    let mut by_request: HashMap<&str, Vec<&Chained>> = HashMap::new();
    for r in &records {
        by_request.entry(&r.entry.request_id).or_default().push(r);
    }
    for (id, outcome) in &expected {
        let found = by_request
            .get(id.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert_eq!(
            found.len(),
            1,
            "request {id} ({outcome}) has {} records",
            found.len()
        );
        assert_eq!(found[0].entry.outcome, *outcome, "request {id}");
    }
    let mut batch_outcomes: Vec<&str> = by_request[batch_id.as_str()]
        .iter()
        .map(|r| r.entry.outcome.as_str())
        .collect();
    batch_outcomes.sort_unstable();
    assert!(!by_request.contains_key(unknown_id.as_str()));
    assert_eq!(batch_outcomes, ["invalid_key", "served", "unknown_dataset"]);
    assert_eq!(records.len(), expected.len() + 3, "nothing unaccounted for");

    // What the records say.
    let first = by_request[expected[0].0.as_str()][0];
    assert_eq!(first.entry.actor, "demo-onestop");
    assert_eq!(first.entry.credential, "api_key");
    assert_eq!(
        (
            first.entry.procedure_code.as_str(),
            first.entry.dossier_id.as_str(),
            first.entry.officer_id.as_str()
        ),
        (PROCEDURE, DOSSIER, OFFICER)
    );
    assert_eq!(
        (
            first.entry.cache.as_str(),
            first.entry.upstream_status.as_str()
        ),
        ("miss", "ok")
    );
    assert!(first.entry.fields.iter().any(|f| &**f == "full_name"));
    assert!(first.entry.subject.starts_with("demo-k1:"));
    let hit = by_request[expected[1].0.as_str()][0];
    assert_eq!(
        (hit.entry.cache.as_str(), hit.entry.upstream_ms),
        ("hit", -1)
    );
    assert_eq!(
        hit.entry.subject, first.entry.subject,
        "one subject, one reference"
    );
    let grpc_record = by_request[grpc_id.as_str()][0];
    assert_eq!(grpc_record.entry.transport, "grpc");
    assert_eq!(
        grpc_record.entry.fields,
        [std::sync::Arc::<str>::from("full_name")]
    );
    let down = by_request[expected[9].0.as_str()][0];
    assert_eq!(down.entry.upstream_status, "unavailable");
    let verify_record = by_request[expected[11].0.as_str()][0];
    assert_eq!(
        (
            verify_record.entry.action.as_str(),
            verify_record.entry.detail.as_str()
        ),
        ("verify", "no match")
    );

    // The chain verifies; the store holds none of the keys or names that were served.
    let keys = h.gateway.gateway().config().audit.verify_keys.clone();
    verify(
        h.gateway.gateway().audit_handle().store(),
        &keys,
        |_, _, _| {},
    )
    .await
    .expect("verifies");
    let mut bytes = Vec::new();
    for file in ["audit.db", "audit.db-wal"] {
        if let Ok(b) = std::fs::read(h.dir.path().join("data").join(file)) {
            bytes.extend(b);
        }
    }
    for segment in std::fs::read_dir(h.dir.path().join("data/audit.db.segments")).expect("segments")
    {
        bytes.extend(std::fs::read(segment.expect("entry").path()).expect("read"));
    }
    assert!(bytes.len() > 1000, "the store was read");
    for secret in &disclosed {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret:?} is in the audit store"
        );
    }
}

#[tokio::test]
async fn concurrent_lookups_share_commits() {
    let h = harness().await;
    let ids = h
        .sims
        .data
        .samples("population.citizen", 50)
        .expect("samples");
    let grpc = h.grpc().await;
    let calls = ids.iter().cycle().take(200).map(|id| {
        let mut grpc = grpc.clone();
        let id = id.clone();
        async move {
            grpc.get_citizen(authed(GetCitizenRequest {
                context: context(),
                personal_id: id,
                fields: vec![],
            }))
            .await
            .is_ok()
        }
    });
    let served = futures::future::join_all(calls).await;
    assert!(served.iter().all(|ok| *ok));
    let audit = h.gateway.gateway().audit_handle();
    let stats = audit.stats();
    let (commits, records) = (
        stats.commits.load(Ordering::Relaxed),
        stats.records.load(Ordering::Relaxed),
    );
    assert_eq!(records, 200);
    assert!(
        stats.largest_batch.load(Ordering::Relaxed) > 1 && commits < records,
        "{records} records in {commits} commits"
    );
    println!(
        "group commit: {records} records in {commits} commits ({:.1} per commit)",
        records as f64 / commits as f64
    );
}

/// Makes a finished trail of `n` lookups (checkpoints every 5) and returns its directory.
async fn finished_trail(n: usize) -> (tempfile::TempDir, HashMap<String, Vec<u8>>) {
    let h = harness().await;
    let ids = h
        .sims
        .data
        .samples("population.citizen", n as u32)
        .expect("samples");
    for id in &ids {
        assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 200);
    }
    let keys = h.gateway.gateway().config().audit.verify_keys.clone();
    let Harness { gateway, dir, .. } = h;
    gateway.shutdown().await;
    (dir, keys)
}

async fn first_break(store: &JournaledStore, keys: &HashMap<String, Vec<u8>>) -> (i64, String) {
    match verify(store, keys, |_, _, _| {}).await {
        Err(VerifyError::Broken(b)) => (b.seq, b.what),
        other => panic!("tampering not found: {other:?}"),
    }
}

fn at(records: &mut [Chained], seq: i64) -> &mut Chained {
    records
        .iter_mut()
        .find(|r| r.seq == seq)
        .expect("the record")
}

#[tokio::test]
async fn verification_finds_alteration_deletion_insertion_and_a_rewritten_chain() {
    let (dir, keys) = finished_trail(12).await;
    let data = dir.path().join("data");
    let original = JournaledStore::open(&data.join("audit.db"), false, false)
        .await
        .expect("open");
    let reports = verify(original.as_ref(), &keys, |_, _, _| {})
        .await
        .expect("intact");
    assert_eq!(reports[0].records, 12);
    assert_eq!(
        reports[0].after_last_checkpoint, 0,
        "shutdown signed the head"
    );
    let instance = reports[0].instance.clone();
    drop(original);

    let (altered, _a) = tampered(&data, |r, _| {
        at(r, 7).entry.officer_id = "someone-else".into();
    })
    .await;
    let (seq, what) = first_break(&altered, &keys).await;
    assert_eq!(seq, 7);
    assert!(what.contains("altered"), "{what}");

    let (deleted, _d) = tampered(&data, |r, _| r.retain(|r| r.seq != 4)).await;
    let (seq, what) = first_break(&deleted, &keys).await;
    assert_eq!(seq, 4);
    assert!(what.contains("missing"), "{what}");

    let (truncated, _t) = tampered(&data, |r, _| r.retain(|r| r.seq <= 9)).await;
    let (seq, what) = first_break(&truncated, &keys).await;
    assert_eq!(seq, 10);
    assert!(what.contains("removed"), "{what}");

    // Insertion: make room at 5 and put a record there that links to record 4.
    let (inserted, _i) = tampered(&data, |r, _| {
        let four = at(r, 4).clone();
        let mut forged = at(r, 5).clone();
        forged.entry.actor = "intruder".into();
        forged.prev_hash = four.hash;
        forged.hash = chain_hash(&four.hash, &instance, 5, &forged.entry);
        for x in r.iter_mut().filter(|x| x.seq >= 5) {
            x.seq += 1;
        }
        r.insert(4, forged);
    })
    .await;
    let (seq, what) = first_break(&inserted, &keys).await;
    assert!((5..=6).contains(&seq), "{seq}: {what}");

    // A chain rewritten after an alteration (every hash recomputed) still contradicts the
    // signed checkpoints.
    let (rewritten, _r) = tampered(&data, |r, _| {
        let mut prev = at(r, 2).hash;
        for x in r.iter_mut().filter(|x| x.seq >= 3) {
            if x.seq == 3 {
                x.entry.outcome = "not_found".into();
            }
            x.prev_hash = prev;
            x.hash = chain_hash(&prev, &instance, x.seq, &x.entry);
            prev = x.hash;
        }
    })
    .await;
    let (seq, what) = first_break(&rewritten, &keys).await;
    assert_eq!(seq, 5, "the first checkpoint after the change");
    assert!(what.contains("checkpoint"), "{what}");

    // The command says the same, names the record and exits non-zero.
    let (_, changed) = tampered(&data, |r, _| {
        at(r, 7).entry.officer_id = "someone-else".into();
    })
    .await;
    std::fs::remove_dir_all(data.join("audit.db.segments")).expect("remove");
    std::fs::rename(
        changed.path().join("audit.db.segments"),
        data.join("audit.db.segments"),
    )
    .expect("put the changed segments in place");
    let gateway_toml = dir.path().join("gateway.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(["audit", "verify", "--config"])
        .arg(&gateway_toml)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("record 7") && stderr.contains("altered"),
        "{stderr}"
    );
}

#[tokio::test]
async fn audit_queries_need_an_operator_and_are_themselves_recorded() {
    let h = harness().await;
    let id = h.sample("population.citizen");
    for _ in 0..3 {
        assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 200);
    }
    let admin = format!("http://{}", h.gateway.admin_addr);

    let anonymous = h
        .http
        .get(format!("{admin}/admin/v1/audit/records"))
        .send()
        .await
        .expect("sent");
    assert_eq!(anonymous.status(), 401);

    let report: Value = h
        .http
        .get(format!(
            "{admin}/admin/v1/audit/report?dataset=population.citizen&subject={id}"
        ))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let rows = report["records"].as_array().expect("records");
    assert_eq!(rows.len(), 3, "{report}");
    assert_eq!(rows[0]["consumer"], "demo-onestop");
    assert_eq!(rows[0]["dossier_id"], DOSSIER);
    assert!(
        rows[0]["fields"]
            .as_array()
            .expect("fields")
            .contains(&json!("full_name"))
    );

    // Pages: one record at a time, newest first, until there is no next page.
    let mut seen = 0;
    let mut token: Option<String> = None;
    loop {
        let mut url = format!("{admin}/admin/v1/audit/records?consumer=demo-onestop&limit=1");
        if let Some(t) = &token {
            url.push_str(&format!("&page_token={t}"));
        }
        let page: Value = h
            .http
            .get(url)
            .bearer_auth("demo-operator-token")
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        seen += page["records"].as_array().expect("records").len();
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, 3, "three lookups by demo-onestop, one per page");

    let bad = h
        .http
        .get(format!("{admin}/admin/v1/audit/records?from=yesterday"))
        .bearer_auth("demo-operator-token")
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status(), 400);

    let reads: Vec<Chained> = chain(&h)
        .await
        .into_iter()
        .filter(|r| r.entry.action == "audit_read")
        .collect();
    assert_eq!(reads.len(), 4, "the report and the three pages");
    assert!(reads.iter().all(|r| r.entry.actor.starts_with("operator:")));
    assert!(
        reads.iter().all(|r| !r.entry.detail.contains(&id)),
        "the subject's key is not written"
    );
}

/// Makes the running gateway's audit store unable to commit, or able again: its data
/// directory moves aside and a plain file takes its name, so no segment can be created.
/// (A flush seals the current segment, so the next commit needs a new one.)
async fn break_store(h: &Harness, broken: bool) {
    let data = h.dir.path().join("data");
    let aside = h.dir.path().join("data.aside");
    if broken {
        h.gateway
            .gateway()
            .audit_handle()
            .store()
            .flush()
            .await
            .expect("flush");
        std::fs::rename(&data, &aside).expect("move aside");
        std::fs::write(&data, b"not a directory").expect("file in its place");
    } else {
        std::fs::remove_file(&data).expect("remove the file");
        std::fs::rename(&aside, &data).expect("move back");
    }
}

#[tokio::test]
async fn a_second_gateway_on_the_same_audit_store_is_refused_at_start() {
    let h = Harness::start().await;
    let built = lienthong::app::build(
        &lienthong::config::Source::File(h.dir.path().join("gateway.toml")),
        &std::collections::BTreeMap::new(),
    )
    .expect("config");
    let refused = lienthong::app::start(built).await;
    let refusal = refused.err().expect("a second gateway does not start");
    assert!(
        matches!(refusal, lienthong::app::StartError::StoreHeld(_)),
        "{refusal:?}"
    );
    let message = refusal.to_string();
    assert!(
        message.contains("another process is already serving"),
        "{message}"
    );
    // The first one serves on.
    let ids = h
        .sims
        .data
        .samples("population.citizen", 1)
        .expect("samples");
    assert_eq!(
        h.get(&format!("/v1/citizens/{}", ids[0])).await.status(),
        200
    );
}

#[tokio::test]
async fn a_failing_store_refuses_lookups_or_serves_and_records_the_gap_as_configured() {
    for fail_open in [false, true] {
        let h = Harness::start_with(move |name, text| match name {
            "gateway.toml" if fail_open => text.replace(
                "on_store_failure = \"fail-closed\"",
                "on_store_failure = \"fail-open\"",
            ),
            _ => text,
        })
        .await;
        let ids = h
            .sims
            .data
            .samples("population.citizen", 4)
            .expect("samples");
        assert_eq!(
            h.get(&format!("/v1/citizens/{}", ids[0])).await.status(),
            200
        );
        break_store(&h, true).await;
        let during = h.get(&format!("/v1/citizens/{}", ids[1])).await;
        if fail_open {
            assert_eq!(during.status(), 200, "fail-open serves");
        } else {
            assert_eq!(during.status(), 503);
            let body: Value = during.json().await.expect("json");
            assert_eq!(body["code"], "audit_unavailable");
            assert!(body.get("full_name").is_none());
        }
        break_store(&h, false).await;
        assert_eq!(
            h.get(&format!("/v1/citizens/{}", ids[2])).await.status(),
            200
        );
        let records = chain(&h).await;
        let actions: Vec<&str> = records.iter().map(|r| r.entry.action.as_str()).collect();
        if fail_open {
            assert_eq!(actions, ["fetch", "audit_gap", "fetch"]);
            assert!(
                records[1].entry.detail.starts_with("1 call(s)"),
                "{}",
                records[1].entry.detail
            );
        } else {
            assert_eq!(actions, ["fetch", "fetch"]);
        }
        let keys = h.gateway.gateway().config().audit.verify_keys.clone();
        verify(
            h.gateway.gateway().audit_handle().store(),
            &keys,
            |_, _, _| {},
        )
        .await
        .expect("the chain is whole");
    }
}

#[tokio::test]
async fn retention_archives_old_records_to_signed_chained_files_and_what_remains_verifies() {
    use lienthong::audit::retention::archive_expired;
    let (dir, keys) = finished_trail(12).await;
    let config = lienthong::app::build(
        &lienthong::config::Source::File(dir.path().join("gateway.toml")),
        &std::collections::BTreeMap::new(),
    )
    .expect("config")
    .model;
    let store = JournaledStore::open(&config.audit.path, false, false)
        .await
        .expect("open");
    let store = store.as_ref();
    let instance = config.settings.instance_id.clone();
    let records = store.scan(&instance, 0, 100).await.expect("scan");
    let signer = config.audit.signer();
    let archive_dir = dir.path().join("data/archive");

    // Everything before record 7 has expired.
    let made = archive_expired(
        store,
        &instance,
        records[6].entry.time_ms,
        &archive_dir,
        &signer,
    )
    .await
    .expect("archived");
    let expired_count = records
        .iter()
        .filter(|r| r.entry.time_ms < records[6].entry.time_ms)
        .count() as i64;
    assert_eq!(made.len(), 1);
    assert_eq!((made[0].first_seq, made[0].last_seq), (1, expired_count));
    assert_eq!(
        store.count(&instance).await.expect("count"),
        12 - expired_count
    );
    let report = &verify(store, &keys, |_, _, _| {})
        .await
        .expect("what remains verifies")[0];
    assert_eq!(
        (
            report.first_seq,
            report.archived_through,
            report.archives_checked
        ),
        (expired_count + 1, expired_count, 1)
    );

    // The rest, in a second archive chained to the first.
    let made = archive_expired(
        store,
        &instance,
        lienthong::audit::record::now_ms() + 1,
        &archive_dir,
        &signer,
    )
    .await
    .expect("archived");
    assert_eq!(made.last().expect("archive").last_seq, 12);
    assert_eq!(store.count(&instance).await.expect("count"), 0);
    assert_eq!(
        store.head(&instance).await.expect("head").map(|h| h.0),
        Some(12),
        "the chain goes on from the archive"
    );
    let report = &verify(store, &keys, |_, _, _| {}).await.expect("verifies")[0];
    assert_eq!(report.archives_checked, 2);

    // An archive file changed after it was written is found.
    let first_file = std::fs::read_dir(&archive_dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .min()
        .expect("a file");
    let text = std::fs::read_to_string(&first_file).expect("read");
    std::fs::write(
        &first_file,
        text.replacen("demo-onestop", "demo-onestoq", 1),
    )
    .expect("write");
    match verify(store, &keys, |_, _, _| {}).await {
        Err(VerifyError::Broken(b)) => assert!(b.what.contains("changed"), "{b}"),
        other => panic!("a changed archive was not noticed: {other:?}"),
    }
}

#[tokio::test]
async fn verifying_a_long_trail_reports_progress_page_by_page() {
    use lienthong::audit::record::{AuditEntry, Signer, SubjectKey, SubjectKeys};
    use lienthong::audit::writer::{AuditLog, Durability, WriterSettings};
    let dir = tempfile::tempdir().expect("dir");
    let store = std::sync::Arc::new(
        SqliteStore::open(&dir.path().join("audit.db"), false)
            .await
            .expect("open"),
    );
    let signer = || Signer::from_seed("s1", &[5; 32]).expect("seed");
    let (log, task) = AuditLog::start(
        store.clone(),
        "gw-long",
        SubjectKeys::new(vec![SubjectKey::new("k1", b"0123456789abcdef")]),
        signer(),
        WriterSettings {
            durability: Durability::Async,
            queue_capacity: 30_000,
            max_batch: 5_000,
            checkpoint_every: 7_000,
            ..WriterSettings::default()
        },
    )
    .await
    .expect("writer");
    for n in 0..25_000 {
        log.record(AuditEntry {
            time_ms: n,
            outcome: "served".into(),
            ..AuditEntry::default()
        })
        .await
        .expect("queued");
    }
    drop(log);
    task.await.expect("writer finished");
    let keys = HashMap::from([("s1".to_owned(), signer().public_key())]);
    let mut seen = Vec::new();
    let reports = verify(store.as_ref(), &keys, |_, done, total| {
        seen.push((done, total))
    })
    .await
    .expect("verifies");
    assert_eq!(seen, [(10_000, 25_000), (20_000, 25_000), (25_000, 25_000)]);
    assert_eq!(reports[0].records, 25_000);
    // At least one per 7,000 records (signed at the end of the batch that crosses it).
    assert!(reports[0].checkpoints >= 3, "{:?}", reports[0]);
    assert_eq!(reports[0].after_last_checkpoint, 0);
}

#[tokio::test]
async fn a_call_the_client_abandons_still_leaves_its_record() {
    let h = harness().await;
    h.sims.population.set_faults(Faults {
        latency_ms: 600,
        ..Faults::default()
    });
    let id = h.sample("population.citizen");
    let mut grpc = h.grpc().await;
    let request = authed(GetCitizenRequest {
        context: context(),
        personal_id: id,
        fields: vec![],
    });
    // The client stops waiting without having told the server a deadline: it just goes.
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        grpc.get_citizen(request),
    )
    .await;
    assert!(gave_up.is_err(), "the call was still running");
    // The server drops the call when the client resets the stream; its record follows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let records = chain(&h).await;
        if let Some(r) = records.iter().find(|r| r.entry.outcome == "cancelled") {
            assert_eq!(records.len(), 1);
            assert_eq!(r.entry.actor, "demo-onestop");
            assert!(r.entry.subject.starts_with("demo-k1:"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no record: {records:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `lienthong audit records` as a process on `gateway.toml` in `dir`, its stdout closed at
/// once (as `| head -0` would), or read whole: (exit status, stdout, stderr).
fn audit_records(dir: &std::path::Path, close_stdout: bool) -> (bool, String, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lienthong"))
        .args(["audit", "records", "--json", "--config"])
        .arg(dir.join("gateway.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut out = String::new();
    if close_stdout {
        drop(stdout);
    } else {
        stdout.read_to_string(&mut out).expect("stdout");
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    let status = child.wait().expect("exits");
    (status.success(), out, err)
}

#[tokio::test]
async fn audit_commands_end_quietly_on_a_closed_pipe_and_point_to_the_live_view() {
    let h = harness().await;
    let id = h.sample("population.citizen");
    assert_eq!(h.get(&format!("/v1/citizens/{id}")).await.status(), 200);
    let dir = h.dir.path().to_owned();

    // Beside the running gateway, which holds the store: the command says where the live
    // view is, on stderr, so the JSON on stdout stays whole.
    let (ok, out, err) = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || audit_records(&dir, false)
    })
    .await
    .expect("joins");
    assert!(ok, "{err}");
    assert!(
        err.contains("a running gateway serves") && err.contains("/admin/v1/audit/records"),
        "{err}"
    );
    let page: Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert!(page["records"].is_array(), "{page}");

    // Stopped, the gateway holds nothing: no note. A reader that went away ends the
    // command quietly, not with a panic.
    let Harness {
        gateway, dir: kept, ..
    } = h;
    gateway.shutdown().await;
    let (ok, out, err) = audit_records(kept.path(), false);
    assert!(ok && !err.contains("running gateway"), "{err}");
    assert!(out.contains("\"dataset\": \"population.citizen\""), "{out}");
    let (ok, _, err) = audit_records(kept.path(), true);
    assert!(ok, "a closed stdout is not a failure: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
