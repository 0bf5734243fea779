use super::*;
use crate::audit::record::GENESIS;
use crate::audit::record::testing::chain;
use crate::audit::verify::verify;
use std::collections::HashMap;

fn signer() -> Signer {
    Signer::from_seed("s1", &[9; 32]).expect("seed")
}

fn keys() -> HashMap<String, Vec<u8>> {
    [("s1".to_owned(), signer().public_key())].into()
}

/// One commit-file line as the version before segments wrote it.
fn legacy_line(records: &[Chained], checkpoint: Option<&Checkpoint>) -> String {
    let line = serde_json::json!({
        "records": records.iter().map(|r| serde_json::json!({
            "instance": r.instance,
            "seq": r.seq,
            "prev_hash": hex::encode(r.prev_hash),
            "hash": hex::encode(r.hash),
            "entry": r.entry,
        })).collect::<Vec<_>>(),
        "checkpoint": checkpoint.map(|c| serde_json::json!({
            "instance": c.instance,
            "seq": c.seq,
            "hash": hex::encode(c.hash),
            "time_ms": c.time_ms,
            "key_id": c.key_id,
            "signature": hex::encode(&c.signature),
        })),
    });
    format!("{line}\n")
}

#[tokio::test]
async fn commits_go_to_the_segments_and_another_process_reads_them_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.db");
    let store = JournaledStore::open(&path, true, true).await.expect("open");
    assert!(store.owns());
    let records = chain("gw", 1, 10, GENESIS);
    let cp = signer().sign("gw", 10, &records[9].hash, 1);
    store
        .append(records.clone(), Some(&cp))
        .await
        .expect("commit");
    // Nothing of the gateway's chain is in SQLite: the commit wrote one segment frame.
    assert_eq!(store.sqlite().count("gw").await.expect("count"), 0);
    assert_eq!(store.count("gw").await.expect("count"), 10);
    let other = JournaledStore::open(&path, true, false)
        .await
        .expect("a reader");
    assert!(!other.owns());
    assert_eq!(other.scan("gw", 0, 100).await.expect("scan"), records);
    assert_eq!(
        other.head("gw").await.expect("head"),
        Some((10, records[9].hash))
    );
    assert!(
        other
            .append(chain("gw", 11, 1, records[9].hash), None)
            .await
            .is_err()
    );
    // The command's own chain goes to SQLite, beside; the gateway's chain cannot be
    // extended from outside.
    let read = AuditEntry {
        action: "audit_read".into(),
        ..AuditEntry::default()
    };
    let cli = other
        .append_at_head("gw.cli", &read, Some(&signer()))
        .await
        .expect("the command's chain");
    assert_eq!(cli.seq, 1);
    assert!(other.append_at_head("gw", &read, None).await.is_err());
    let reports = verify(other.as_ref(), &keys(), |_, _, _| {})
        .await
        .expect("intact");
    assert_eq!(
        reports
            .iter()
            .map(|r| (r.instance.as_str(), r.records))
            .collect::<Vec<_>>(),
        vec![("gw", 10), ("gw.cli", 1)]
    );
}

#[tokio::test]
async fn a_store_of_the_earlier_format_is_taken_over_and_its_chain_continues_in_segments() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.db");
    let all = chain("gw", 1, 90, GENESIS);
    let s = signer();
    {
        // What the version before segments left: rows in SQLite, and commit files a crash
        // left behind (one record both moved and still in its file; a torn last line).
        let sqlite = SqliteStore::open(&path, false).await.expect("open");
        let cp = s.sign("gw", 40, &all[39].hash, 1);
        sqlite.append_all(&all[..40], &[cp]).await.expect("rows");
        let mut text = legacy_line(&all[39..50], None);
        text.push_str(&legacy_line(
            &all[50..60],
            Some(&s.sign("gw", 60, &all[59].hash, 2)),
        ));
        std::fs::write(sibling(&path, "1"), text).expect("file 1");
        let mut torn = legacy_line(&all[60..62], None);
        torn.truncate(torn.len() / 2);
        std::fs::write(sibling(&path, "2"), torn).expect("file 2");
    }
    let store = JournaledStore::open(&path, true, true)
        .await
        .expect("opens");
    assert!(!sibling(&path, "1").exists() && !sibling(&path, "2").exists());
    assert_eq!(
        store.head("gw").await.expect("head"),
        Some((60, all[59].hash))
    );
    let cp = s.sign("gw", 90, &all[89].hash, 3);
    store
        .append(all[60..90].to_vec(), Some(&cp))
        .await
        .expect("continues");
    assert_eq!(store.scan("gw", 0, 1000).await.expect("scan"), all);
    assert_eq!(
        store.scan("gw", 55, 10).await.expect("scan"),
        all[55..65].to_vec()
    );
    assert_eq!(store.count("gw").await.expect("count"), 90);
    assert_eq!(store.checkpoints("gw").await.expect("cps").len(), 3);
    let reports = verify(store.as_ref(), &keys(), |_, _, _| {})
        .await
        .expect("intact");
    assert_eq!(
        (reports[0].records, reports[0].after_last_checkpoint),
        (90, 0)
    );
    // A query answers from both parts, newest first.
    let q = Query {
        officer_id: Some("canbo01".into()),
        limit: 100,
        ..Query::default()
    };
    let got = store.query(&q).await.expect("query");
    let mut want: Vec<&Chained> = all
        .iter()
        .filter(|r| r.entry.officer_id == "canbo01")
        .collect();
    want.reverse();
    assert_eq!(got.iter().collect::<Vec<_>>(), want);
    // Archiving from the start takes SQLite's part and then the segments'.
    let expired = store
        .expired("gw", all[70].entry.time_ms, 1000)
        .await
        .expect("expired");
    assert_eq!(expired, all[..70].to_vec());
    store
        .archived(&Archive {
            instance: "gw".into(),
            first_seq: 1,
            last_seq: 70,
            last_hash: all[69].hash,
            file: "a".into(),
            file_hash: [0; 32],
            time_ms: 1,
        })
        .await
        .expect("archived");
    assert_eq!(
        store.scan("gw", 0, 1000).await.expect("scan"),
        all[70..].to_vec()
    );
    assert_eq!(store.count("gw").await.expect("count"), 20);
    assert_eq!(
        store
            .query(&Query {
                limit: 1000,
                ..Query::default()
            })
            .await
            .expect("q")
            .len(),
        20
    );
}

#[tokio::test]
async fn a_damaged_line_in_an_earlier_commit_file_stops_the_open() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.db");
    let all = chain("gw", 1, 4, GENESIS);
    let mut text = legacy_line(&all[..2], None);
    text.push_str("{not json\n");
    text.push_str(&legacy_line(&all[2..], None));
    SqliteStore::open(&path, false).await.expect("create");
    std::fs::write(sibling(&path, "1"), text).expect("file");
    let refused = JournaledStore::open(&path, true, false).await;
    assert!(
        refused.as_ref().is_err_and(|e| e.0.contains("damaged")),
        "{:?}",
        refused.err().map(|e| e.0)
    );
}
